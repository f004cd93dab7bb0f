"""Does a CPU kernel run slower when compiled without Taichi's own IR optimisation loop?

    python benchmarks/quick_compile.py [--cases pwc2 flownetc raft ...] [--repeats 151] [--json FILE]

In one process, every kernel that a case's forward and backward launch is compiled twice: with Taichi's
defaults (A) and with ``corr_taichi._runtime.QUICK_COMPILE`` (B, ``advanced_optimization=False``).  Each
pair is then launched alternately (ABAB..., BABA... on odd repeats) with the arguments that one real call
gave it, and the ratio B / A is taken per pair of launches: the median and quartiles of those ratios say
whether B is slower, with the machine's drift cancelled pair by pair.  Kernels marked
``@locked.quick_compile`` in the package are flagged; the others keep Taichi's defaults.  Each kernel's
first call (its compile, with an empty offline cache) is also timed, for A and B.

Cases: the benchmark tool's ``flownetc``, ``pwc2``, ``kernel3``, ``row``, ``column``, and ``raft`` (RAFT's
block at 55 x 128, 256 channels, 4 levels, radius 4, one lookup: forward and the three gradients).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
import warnings

import torch

import corr_taichi
from corr_taichi import (_kernels, _lookup1d_kernels, _lookup2d_kernels, _pixel_tile_kernels, _row_kernels, _runtime,
                         bench, raft)
from corr_taichi._provenance import provenance

ti = _runtime.ti
FACTORIES = ((_row_kernels, ("row_kernels",)), (_lookup2d_kernels, ("lookup_kernels",)),
             (_pixel_tile_kernels, ("forward_kernel", "gradient_kernels")),
             (_kernels, ("window_kernels", "correlation_kernels", "gradient_kernels")),
             (_lookup1d_kernels, ("volume_kernels", "feature_kernels")))


class Variants:
    """The kernel factories duplicated: variant A's and B's kernels are separate Taichi kernels, A's
    compiled with this package's options less ``QUICK_COMPILE`` (Taichi's own optimisation on), B's with
    it, whatever the package marks (:attr:`marked` keeps the mark)."""

    OPTIONS = {"A": _runtime.KERNEL_OPTIONS, "B": _runtime.KERNEL_OPTIONS + _runtime.QUICK_COMPILE}

    def __init__(self) -> None:
        self.current = "A"
        self.marked: set[int] = set()  # ids of the kernels of both variants the package compiles quickly
        for module, names in FACTORIES:
            for name in names:
                factory = getattr(module, name).__wrapped__
                caches = {v: functools.cache(functools.partial(self._build, factory, v)) for v in "AB"}
                setattr(module, name, lambda *a, _caches=caches, **k: _caches[self.current](*a, **k))

    def _build(self, factory, variant: str, *args, **kwargs):
        made = factory(*args, **kwargs)
        for kernel in self._kernels(made):
            if kernel.options != _runtime.KERNEL_OPTIONS:
                self.marked.add(id(kernel))
            kernel.options = self.OPTIONS[variant]
        return made

    def _kernels(self, made):
        if isinstance(made, _runtime.locked):
            yield made
        elif isinstance(made, (tuple, list)):
            for item in made:
                yield from self._kernels(item)
        elif hasattr(made, "__dict__"):
            for item in vars(made).values():
                yield from self._kernels(item)


def case_call(case: str):
    """A function running the case's forward and backward once, with fixed inputs."""
    torch.manual_seed(0)
    if case == "raft":
        c, h, w = 256, 55, 128
        f1, f2 = (torch.randn(1, c, h, w, requires_grad=True) for _ in range(2))
        y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                              indexing="ij")
        coords = (torch.stack([x, y])[None] + 2 * torch.randn(1, 2, h, w)).requires_grad_()

        def call():
            out = raft.CorrBlock(f1, f2, num_levels=4, radius=4)(coords)
            torch.autograd.grad(out, (f1, f2, coords), torch.ones_like(out))
        return call
    shape, params = bench.CONFIGS[case]
    a, b = (torch.randn(shape, requires_grad=True) for _ in range(2))

    def call():
        out = corr_taichi.correlation(a, b, **params)
        torch.autograd.grad(out, (a, b), torch.ones_like(out))
    return call


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["pwc2", "flownetc", "raft", "kernel3", "row"])
    parser.add_argument("--repeats", type=int, default=151)
    parser.add_argument("--json")
    args = parser.parse_args()
    # a replayed launch hands Taichi tensors that require grad outside autograd; Taichi looks at their .grad
    warnings.filterwarnings("ignore", message="The .grad attribute of a Tensor that is not a leaf")
    corr_taichi.init("cpu", offline_cache_file_path=tempfile.mkdtemp())  # empty: first calls compile
    variants = Variants()
    launches, first = [], {}
    plain_call = _runtime.locked.__call__

    def recording_call(kernel, *kernel_args):
        start = time.perf_counter()
        result = plain_call(kernel, *kernel_args)
        if id(kernel) not in first:
            ti.sync()
            first[id(kernel)] = (case, time.perf_counter() - start)
        launches.append((kernel, kernel_args))
        return result

    rows = []
    for case in args.cases:
        recorded = {}
        call = case_call(case)
        _runtime.locked.__call__ = recording_call
        for variant in "AB":
            variants.current = variant
            launches.clear()
            call()
            recorded[variant] = list(launches)
        _runtime.locked.__call__ = plain_call
        done = set()
        for (a, a_args), (b, _) in zip(recorded["A"], recorded["B"], strict=True):
            if id(a) in done:
                continue
            done.add(id(a))
            times = {"A": [], "B": []}
            for repeat in range(args.repeats):
                for variant, kernel in (("A", a), ("B", b))[:: 1 if repeat % 2 == 0 else -1]:
                    ti.sync()
                    start = time.perf_counter()
                    plain_call(kernel, *a_args)
                    ti.sync()
                    times[variant].append(time.perf_counter() - start)
            ratios = sorted(tb / ta for ta, tb in zip(times["A"], times["B"]))
            row = {"case": case, "kernel": a.kernel.__name__,
                   "quick_compile": id(b) in variants.marked,
                   "ms_A": statistics.median(times["A"]) * 1e3, "ms_B": statistics.median(times["B"]) * 1e3,
                   "ratio_B_A": statistics.median(ratios), "ratio_q1": ratios[len(ratios) // 4],
                   "ratio_q3": ratios[3 * len(ratios) // 4],
                   # the kernel's first call in the process, where this case made it (else an earlier case)
                   "first_call_s_A": first[id(a)][1] if first[id(a)][0] == case else None,
                   "first_call_s_B": first[id(b)][1] if first[id(b)][0] == case else None}
            rows.append(row)
            print(f"{case:9s} {row['kernel']:15s} {'quick' if row['quick_compile'] else '     '}  "
                  f"A {row['ms_A']:8.2f} ms  B {row['ms_B']:8.2f} ms  B/A {row['ratio_B_A']:.3f} "
                  f"({row['ratio_q1']:.3f}-{row['ratio_q3']:.3f})  first call A {seconds(row['first_call_s_A'])}  "
                  f"B {seconds(row['first_call_s_B'])}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"provenance": provenance("python benchmarks/quick_compile.py"), "repeats": args.repeats,
                       "rows": rows}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
