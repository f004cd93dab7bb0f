"""What one call costs when there is almost nothing to compute: the op's fixed cost per call.

PWC-Net's coarse levels correlate images of a few pixels, and every call, however small, pays for the
custom op's dispatch, the parameter and shape arithmetic and each Taichi launch (Python argument
handling, then waking Taichi's threads).  This times the three CPU paths on tiny inputs: the row path
(a PWC-like patch of 9 on 32 channels: two launches forward, four backward), the channel-vector
kernels (a FlowNetC-like patch on 256 channels: three forward, five backward) and a 3x3 kernel window
(per-pixel products summed over each window).

Run: ``python benchmarks/fixed_cost.py`` (output in benchmarks/fixed-cost.txt).  Medians and 10th
percentiles of 300 calls after 20 warm-up calls, microseconds; the backward is
``torch.autograd.grad`` of both inputs.
"""

import statistics
import time

import torch

from corr_taichi.functional import correlation

CASES = {
    "row path (1x32x16x16, patch 9)": ((1, 32, 16, 16), dict(patch_size=9)),
    "channel vectors (1x256x6x8, patch 21, dil. 2)": ((1, 256, 6, 8), dict(patch_size=21, dilation_patch=2)),
    "kernel 3, stride 2 (1x64x12x16, patch 9)": ((1, 64, 12, 16), dict(kernel_size=3, patch_size=9, stride=2,
                                                                         padding=1)),
}


def _times_us(fn, warmup: int = 20, repeats: int = 300) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e6)
    return sorted(times)


def main() -> None:
    print(f"{torch.get_num_threads()} threads; microseconds per call, median (10th percentile)")
    gen = torch.Generator().manual_seed(0)
    for name, (shape, params) in CASES.items():
        x1 = torch.randn(shape, generator=gen).requires_grad_()
        x2 = torch.randn(shape, generator=gen).requires_grad_()
        out = correlation(x1, x2, **params)
        grad = torch.randn(out.shape, generator=gen)

        def forward():
            with torch.no_grad():
                correlation(x1, x2, **params)

        def backward():
            torch.autograd.grad(out, (x1, x2), grad, retain_graph=True)

        cells = []
        for fn in (forward, backward):
            times = _times_us(fn)
            cells.append(f"{statistics.median(times):6.0f} ({times[len(times) // 10]:4.0f})")
        print(f"{name:<48} forward {cells[0]}   backward {cells[1]}")


if __name__ == "__main__":
    main()
