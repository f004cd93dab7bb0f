"""Cold start: how long a new process waits for its first results (``python -m corr_taichi.bench --cold``).

Each case runs in fresh processes, first with an empty Taichi offline cache (a new directory, which that
process fills), then again with that cache warm.  A process reports, in seconds:

* ``import``: ``import corr_taichi`` (torch already imported);
* ``init``: starting the Taichi runtime;
* ``first_forward`` / ``first_backward``: the first call, which compiles (or loads) the kernels and then runs;
* ``forward`` / ``backward``: the same call again (the work itself, with nothing left to compile);

so that ``first - again`` is what a first call costs over a later one.  Before them the process runs one
backward of plain torch, whose first call imports torch's symbolic-shape machinery (reported as
``torch_first_backward``; a network's first backward pays it with or without this layer).  The cases:

* ``floor``: Taichi's own floor, a trivial kernel's first launch (its ``first_forward``);
* ``flownetc``, ``pwc2``: the benchmark's configurations of those names (``CONFIGS``), forward then backward;
* ``pwc5``: the first forward + backward of a 5-level PWC-style network (``examples/models.py``'s ``PWCLite``,
  1 x 3 x 128 x 192 images): five correlation configurations, one per pyramid level (its ``first_forward``
  is the forward and backward together).

With ``--backends`` it runs under each Taichi implementation named (``taichi``, ``quadrants``), side by side.
"""

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

CASES = ("floor", "flownetc", "pwc2", "pwc5")
#: where ``PWCLite`` lives in a source checkout
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "models.py"
_METRICS = ("import", "torch_first_backward", "init", "first_forward", "first_backward", "forward", "backward")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _load_models():
    spec = importlib.util.spec_from_file_location("corr_taichi_examples_models", EXAMPLES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: a fresh process: torch imported, then ``import corr_taichi`` timed (whichever is first on the path: see
#: ``source``), then :func:`_child`, from this file
_CHILD = """
import importlib.util, json, sys, time
import torch
start = time.perf_counter()
import corr_taichi
imported = time.perf_counter() - start
spec = importlib.util.spec_from_file_location("corr_taichi_bench_cold", sys.argv[3])
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
result = bench._child(sys.argv[1], sys.argv[2], corr_taichi, json.loads(sys.argv[4]))
print(json.dumps(dict(result, **{"import": imported})))
"""


def _child(case: str, cache: str, corr_taichi, config) -> dict:
    """One fresh process's measurements of ``case`` with the offline cache in ``cache``, of the imported
    package ``corr_taichi`` (passed in: this file runs as a module of its own there, see ``_CHILD``);
    ``config``: the case's ``[shape, parameters]``, where it is a correlation configuration."""
    result = {"case": case}
    # torch's own first backward imports its symbolic-shape machinery (sympy: 0.3-0.5 s here), which any
    # process's first backward pays with or without this layer: done first, and reported apart
    weight = torch.randn(3, requires_grad=True)
    result["torch_first_backward"] = _timed(lambda: torch.autograd.grad((weight * 2).sum(), weight,
                                                                        torch.ones(())))
    _runtime = corr_taichi._runtime
    result["backend"] = getattr(_runtime, "BACKEND", "taichi")  # a commit before the choice ran on taichi
    result["init"] = _timed(lambda: corr_taichi.init("cpu", offline_cache_file_path=cache))
    torch.manual_seed(0)
    if case == "floor":
        ti = _runtime.ti

        @ti.kernel
        def add(x: ti.types.ndarray(ndim=1), value: ti.f32):
            for i in x:
                x[i] += value

        x = torch.zeros(8)
        result["first_forward"] = _timed(lambda: add(x, 1.0))
        result["forward"] = _timed(lambda: add(x, 1.0))
        return result
    if case == "pwc5":
        model = _load_models().PWCLite(levels=5)
        images = torch.randn(1, 3, 128, 192), torch.randn(1, 3, 128, 192)
        step = lambda: model(*images).square().mean().backward()  # noqa: E731
        result["first_forward"] = _timed(step)
        result["forward"] = _timed(step)
        return result
    shape, params = config
    a, b = (torch.randn(shape, requires_grad=True) for _ in range(2))
    for prefix in ("first_", ""):
        start = time.perf_counter()
        out = corr_taichi.correlation(a, b, **params)
        result[prefix + "forward"] = time.perf_counter() - start
        grad = torch.randn_like(out)
        result[prefix + "backward"] = _timed(lambda: torch.autograd.grad(out, (a, b), grad))
    return result


def _run_child(case: str, cache: str, backend: str, source: str | None, config) -> dict:
    env = dict(os.environ, CORR_TAICHI_BACKEND=backend)
    if source:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", _CHILD, case, cache, __file__, json.dumps(config)], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cold-start case {case} ({backend}) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


#: the ``sources`` entry that means the installed package
INSTALLED = "installed"


def run(backends: list[str], cases: list[str], runs: int, configs: dict, progress=None,
        sources: tuple[str, ...] = (INSTALLED,)) -> list[dict]:
    """Medians over ``runs`` of each (source, backend, case, cache state): per case a new empty cache
    directory, then a second process with it warm.  Each run goes through every source, backend and case
    in turn, so that they alternate on a shared machine.  ``configs``: the correlation cases' ``(shape,
    parameters)`` by name; ``sources``: corr_taichi source trees (``src`` folders, e.g. an earlier commit's)
    to measure, :data:`INSTALLED` for the installed package."""
    cases = [case for case in cases if case != "pwc5" or EXAMPLES.exists()]  # installed without the examples
    samples: dict[tuple, list] = {}
    for _ in range(runs):
        for source in sources:
            path = None if source == INSTALLED else source
            for backend in backends:
                for case in cases:
                    with tempfile.TemporaryDirectory(prefix="corr-taichi-cold-") as cache:
                        for state in ("empty", "warm"):
                            measured = _run_child(case, cache, backend, path, configs.get(case))
                            samples.setdefault((source, backend, case, state), []).append(measured)
                    if progress:
                        progress()
    rows = []
    for (source, backend, case, state), measured in samples.items():
        row = {"source": source, "backend": backend, "case": case, "cache": state, "runs": runs}
        for metric in _METRICS:
            values = [m[metric] for m in measured if metric in m]
            if values:
                row[metric] = statistics.median(values)
        rows.append(row)
    return rows


def print_table(rows: list[dict], title: str) -> None:
    print(title)
    head = ["source", "backend", "case", "cache", "import", "torch bwd", "init", "1st fwd", "1st bwd", "fwd", "bwd",
            "1st fwd-fwd", "1st bwd-bwd"]
    print(" ".join(f"{h:>11}" for h in head))
    for r in rows:
        cells = [Path(r["source"]).parent.name or r["source"], r["backend"], r["case"], r["cache"]]
        for metric in _METRICS:
            cells.append(f"{r[metric]:.3f}" if metric in r else "-")
        for first, again in (("first_forward", "forward"), ("first_backward", "backward")):
            cells.append(f"{r[first] - r[again]:.3f}" if first in r and again in r else "-")
        print(" ".join(f"{c:>11}" for c in cells))
