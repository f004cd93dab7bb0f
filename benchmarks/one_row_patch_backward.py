"""Backward of one-row patches (1-D correlation, group-wise volumes): the row path against the
channel-vector kernels, both forced, alternating within each repeat; medians of 7 after 2 warm-ups, ms.

Run: ``python benchmarks/one_row_patch_backward.py`` (output in benchmarks/one-row-patch-backward.json).
It sets the rule in ``_dispatch.plan`` that the row path's backward takes one-row patches (and
leaves one-column patches to the channel-vector kernels).
"""

import json
import statistics
import sys
import time

import torch

import corr_taichi
from corr_taichi._dispatch import force_paths
from corr_taichi.bench import provenance

CASES = {  # name -> (function of two inputs, input shape)
    "correlation1d C=16": (lambda a, b: corr_taichi.correlation1d(a, b, 40), (4, 16, 48, 64)),
    "correlation1d C=32": (lambda a, b: corr_taichi.correlation1d(a, b, 40), (4, 32, 48, 64)),
    "correlation1d C=64": (lambda a, b: corr_taichi.correlation1d(a, b, 40), (4, 64, 48, 64)),
    "correlation1d C=128": (lambda a, b: corr_taichi.correlation1d(a, b, 40), (4, 128, 48, 64)),
    "patch 1x41 C=128": (lambda a, b: corr_taichi.correlation(a, b, patch_size=(1, 41)), (4, 128, 48, 64)),
    "gwcnet crop (40 groups of 8)": (lambda a, b: corr_taichi.groupwise_correlation1d(a, b, 47, 40), (1, 320, 64, 128)),
    "igev crop (8 groups of 12)": (lambda a, b: corr_taichi.groupwise_correlation1d(a, b, 47, 8), (1, 96, 64, 128)),
}


def main() -> None:
    results = {}
    for name, (fn, shape) in CASES.items():
        gen = torch.Generator().manual_seed(0)
        a, b = (torch.randn(shape, generator=gen).requires_grad_() for _ in range(2))
        times = {"row path": [], "channel vectors": []}
        outs = {}
        for path, forced in (("row path", True), ("channel vectors", False)):
            with force_paths(row_path=forced):
                outs[path] = fn(a, b)
        grad = torch.randn_like(outs["row path"])
        for repeat in range(9):
            for path, forced in (("row path", True), ("channel vectors", False)):
                with force_paths(row_path=forced):
                    start = time.perf_counter()
                    torch.autograd.grad(outs[path], (a, b), grad, retain_graph=True)
                    if repeat >= 2:
                        times[path].append((time.perf_counter() - start) * 1e3)
        results[name] = {path: statistics.median(t) for path, t in times.items()}
        print(f"{name:<30} row path {results[name]['row path']:7.1f} ms   channel vectors "
              f"{results[name]['channel vectors']:7.1f} ms", file=sys.stderr)
    with open("benchmarks/one-row-patch-backward.json", "w") as f:
        json.dump({"provenance": provenance(), "unit": "ms, median of 7 after 2 warm-ups", "backward": results}, f,
                  indent=2)


if __name__ == "__main__":
    main()
