"""The package's import graph: no cycles, and no imports of the package's own modules inside functions
(the usual way to dodge a cycle).  Read from the source with ``ast``, so it sees every import,
whatever has been imported already."""

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "corr_taichi"


def _modules() -> dict[str, Path]:
    """dotted module name -> file, for every module of the package (a package is its ``__init__``)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("corr_taichi",) + path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, bool]]:
    """``(imported module, at module level)`` for each of the package's modules ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:  # a submodule imported by name, else a name from the module
                targets.append(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        found += [(t, id(node) in top_level) for t in targets if t in modules and t != name]
    return found


def test_the_package_has_no_import_cycles():
    modules = _modules()
    graph = {name: {t for t, _ in _imports(name, path, modules)} for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_package_imports_its_own_modules_at_module_level_only():
    modules = _modules()
    nested = [f"{name} imports {target} inside a function" for name, path in modules.items()
              for target, top in _imports(name, path, modules) if not top]
    assert not nested


def test_the_checks_see_a_cycle(tmp_path, monkeypatch):
    """The cycle check itself fails on a package with a cycle (a lazy import included)."""
    package = tmp_path / "corr_taichi"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def f():\n    from .a import g\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    try:
        test_the_package_has_no_import_cycles()
    except AssertionError as e:
        assert "corr_taichi.a -> corr_taichi.b -> corr_taichi.a" in str(e)
    else:
        raise AssertionError("the cycle a -> b -> a was not found")
