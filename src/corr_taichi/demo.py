"""The seed's FlowNetC-configuration example, then a small timing table (this layer vs pure PyTorch).

Run: ``python -m corr_taichi.demo``
"""

from __future__ import annotations

import statistics
import time

import torch

from . import CorrTaichi, reference
from ._geometry import legacy_geometry


def _median_ms(fn, repeats: int = 3) -> float:
    fn()  # warm-up (compiles the Taichi kernels on the first call)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    B, C, H, W = 4, 256, 48, 64
    layer = CorrTaichi(max_disp=20, dila_patch=2)
    x0 = torch.randn(B, C, H, W, requires_grad=True)
    x1 = torch.randn_like(x0, requires_grad=True)
    corr = layer(x0, x1)
    print(f"Input tensor size:  {tuple(x0.shape)}")
    print(f"Output tensor size: {tuple(corr.shape)}")

    geometry = legacy_geometry(H, W, 20, 2)
    expected = reference.correlation_from_geometry(x0.detach(), x1.detach(), geometry).view_as(corr)
    print(f"max |corr_taichi - pure PyTorch| = {(corr.detach() - expected).abs().max().item():.2e}")

    grad = torch.randn_like(corr)
    rows = []
    for name, forward in (
        ("corr_taichi", lambda a, b: layer(a, b)),
        ("pure PyTorch", lambda a, b: reference.correlation_from_geometry(a, b, geometry)),
    ):
        fwd = _median_ms(lambda: forward(x0.detach(), x1.detach()))
        bwd = _median_ms(lambda: torch.autograd.grad(forward(x0, x1).view_as(grad), (x0, x1), grad))
        rows.append((name, fwd, bwd - fwd))
    print(f"\nFlowNetC configuration, B={B} C={C} {H}x{W}, 441 displacements, CPU, "
          f"{torch.get_num_threads()} threads (median of 3)")
    print(f"{'implementation':<14} {'forward ms':>11} {'backward ms':>12}")
    for name, fwd, bwd in rows:
        print(f"{name:<14} {fwd:>11.1f} {bwd:>12.1f}")


if __name__ == "__main__":
    main()
