"""Forward (and backward) of this layer against spatial_correlation_sampler, when it is installed.

Run: ``python -m tests.check_fwd_with_other_impl [cpu|cuda]``
"""

import random
import sys

import torch

import corr_taichi


def main(device: str = "cpu") -> int:
    try:
        from spatial_correlation_sampler import spatial_correlation_sample
    except ImportError:
        print("SKIPPED: spatial_correlation_sampler is not installed "
              "(scripts/install_spatial_correlation_sampler_cpu.sh builds it for a CPU-only torch)")
        return 0
    r = random.Random(0)
    worst = 0.0
    for trial in range(30):
        cfg = dict(
            kernel_size=(r.randint(1, 3), r.randint(1, 3)), patch_size=(r.randint(1, 7), r.randint(1, 7)),
            stride=(r.randint(1, 2), r.randint(1, 2)), padding=(r.randint(0, 2), r.randint(0, 2)),
            dilation=(r.randint(1, 2), r.randint(1, 2)), dilation_patch=(r.randint(1, 3), r.randint(1, 3)),
        )
        shape = (r.randint(1, 3), r.randint(1, 16), r.randint(6, 14), r.randint(6, 14))
        x1 = torch.randn(shape, dtype=torch.float64, device=device, requires_grad=True)
        x2 = torch.randn(shape, dtype=torch.float64, device=device, requires_grad=True)
        ours = corr_taichi.correlation(x1, x2, **cfg)
        theirs = spatial_correlation_sample(x1, x2, **cfg)
        if ours.shape != theirs.shape:
            print(f"FAIL shape {tuple(ours.shape)} != {tuple(theirs.shape)} for {cfg}")
            return 1
        grad = torch.randn_like(ours)
        g_ours = torch.autograd.grad(ours, (x1, x2), grad)
        g_theirs = torch.autograd.grad(theirs, (x1, x2), grad)
        err = max((ours - theirs).abs().max().item(), *((a - b).abs().max().item() for a, b in zip(g_ours, g_theirs)))
        worst = max(worst, err)
        if err > 1e-10:
            print(f"FAIL max abs difference {err:.3e} for {cfg} on {shape}")
            return 1
    print(f"OK: 30 random configurations, forward and backward, max abs difference {worst:.2e} (float64, {device})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "cpu"))
