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


#: the kernel modules, and what they may import of the package: the shared Taichi helpers, the runtime,
#: and the pure shape arithmetic
KERNEL_MODULES = ("_kernels", "_pixel_tile_kernels", "_row_kernels", "_gpu_kernels", "_lookup1d_kernels",
                  "_lookup2d_kernels")
KERNEL_IMPORTS = {"corr_taichi._kernel_helpers", "corr_taichi._runtime", "corr_taichi._geometry"}


def test_kernel_modules_import_only_the_shared_helpers_and_the_runtime():
    modules = _modules()
    assert {f"corr_taichi.{m}" for m in KERNEL_MODULES} <= set(modules)
    wrong = {f"corr_taichi.{m}": {t for t, _ in _imports(f"corr_taichi.{m}", modules[f"corr_taichi.{m}"], modules)}
             - KERNEL_IMPORTS for m in KERNEL_MODULES}
    assert not {m: t for m, t in wrong.items() if t}


#: the most lines (docstring included) and the deepest nesting of loops and branches of a Taichi function
MAX_LINES, MAX_DEPTH = 60, 6


def _depth(node: ast.AST) -> int:
    """The deepest nesting of ``for``/``while``/``if``/``with``/``try`` below ``node`` (an ``elif`` is one
    level deeper than its ``if``, as the AST has it); nested function definitions are their own."""
    deepest = 0
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        nested = isinstance(child, (ast.For, ast.While, ast.If, ast.With, ast.Try))
        deepest = max(deepest, _depth(child) + nested)
    return deepest


def _taichi_functions(path: Path) -> list[ast.FunctionDef]:
    tree = ast.parse(path.read_text())
    return [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
            and any(ast.unparse(d) in ("ti.func", "ti.kernel") for d in node.decorator_list)]


def test_taichi_functions_read_in_one_sitting():
    too_long = [f"{path.name}:{f.lineno} {f.name}: {f.end_lineno - f.lineno + 1} lines, depth {_depth(f)}"
                for path in _modules().values() for f in _taichi_functions(path)
                if f.end_lineno - f.lineno + 1 > MAX_LINES or _depth(f) > MAX_DEPTH]
    assert not too_long


def test_the_size_check_sees_a_deep_function(tmp_path):
    path = tmp_path / "k.py"
    body = "".join("    " * (k + 1) + f"for i{k} in range(2):\n" for k in range(7)) + "    " * 8 + "pass\n"
    path.write_text("@ti.kernel\ndef k():\n" + body)
    (found,) = _taichi_functions(path)
    assert _depth(found) == 7
