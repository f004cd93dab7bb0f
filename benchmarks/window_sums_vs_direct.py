"""Kernel windows: per-pixel products summed over each window vs every tap correlated directly.

Run: ``python benchmarks/window_sums_vs_direct.py`` (output in benchmarks/window_sums_vs_direct.txt).
Both forms alternate in one process on the kernel-3 / stride-2 configuration of the benchmark tool
(4 x 64 x 48 x 64, patch 9) and on kernel 5 / stride 2 and kernel 3 / stride 1 of the same inputs;
medians of 10 after 2 warm-ups.  With 64 channels the window-sum form runs on the CPU's row path and
the direct form on the channel-vector kernels (the row path takes single taps only): the choice the
op makes.
"""

import statistics
import time

import torch

import corr_taichi
from corr_taichi import _dispatch

CHOICE = _dispatch.WINDOW_SUMS_FROM
WINDOW_SUMS, DIRECT = 0.0, float("inf")  # thresholds that always and never take the window-sum form


def run(a, b, cfg):
    start = time.perf_counter()
    out = corr_taichi.correlation(a, b, **cfg)
    middle = time.perf_counter()
    torch.autograd.grad(out, (a, b), torch.ones_like(out))
    return middle - start, time.perf_counter() - middle


CONFIGS = [  # (kernel, stride): taps x output pixels / input pixels = 2.25, 6.25, 9
    dict(kernel_size=3, patch_size=9, stride=2, padding=1),
    dict(kernel_size=5, patch_size=9, stride=2, padding=2),
    dict(kernel_size=3, patch_size=9, stride=1, padding=1),
]


def main() -> None:
    a, b = (torch.randn(4, 64, 48, 64, requires_grad=True) for _ in range(2))
    for cfg in CONFIGS:
        times = {"window sums": [], "direct": []}
        for k in range(12):
            for name, choice in (("window sums", WINDOW_SUMS), ("direct", DIRECT)):
                _dispatch.WINDOW_SUMS_FROM = choice
                result = run(a, b, cfg)
                if k >= 2:
                    times[name].append(result)
        _dispatch.WINDOW_SUMS_FROM = CHOICE
        print(f"kernel {cfg['kernel_size']}, stride {cfg['stride']}:")
        for name, runs in times.items():
            forward = 1e3 * statistics.median(r[0] for r in runs)
            backward = 1e3 * statistics.median(r[1] for r in runs)
            print(f"  {name:12s} forward {forward:6.1f} ms  backward {backward:6.1f} ms")

if __name__ == "__main__":
    main()
