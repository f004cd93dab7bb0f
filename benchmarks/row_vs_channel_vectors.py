"""The CPU's two paths side by side: the row path (vectors along rows) and the channel-vector kernels.

Run: ``python benchmarks/row_vs_channel_vectors.py`` (output in benchmarks/row-vs-channel-vectors.txt).
Each configuration runs the public op with each path forced (``corr_taichi._dispatch.force_paths``), both paths
alternating within each repeat (this machine is shared and noisy); medians of 7 after 2 warm-ups,
forward and backward (both input gradients, through autograd) in ms.  These figures set the rule in
``_dispatch`` (``ROW_MAX_CHANNELS``...): which channel counts and patch rows the row path takes, forward and backward.
"""

import statistics
import time

import torch

import corr_taichi
from corr_taichi._dispatch import force_paths
from corr_taichi.bench import CONFIGS

CASES = {
    "pwc2": CONFIGS["pwc2"],  # C = 32, patch 9
    "pwc2 patch 5": ((4, 32, 96, 128), dict(patch_size=5)),
    "pwc2 patch 3": ((4, 32, 96, 128), dict(patch_size=3)),
    "pwc2 patch 9x1": ((4, 32, 96, 128), dict(patch_size=(9, 1))),
    "pwc2 C=64": ((4, 64, 96, 128), dict(patch_size=9)),
    "pwc2 C=128": ((4, 128, 96, 128), dict(patch_size=9)),
    "C=192 patch 9": ((4, 192, 24, 32), dict(patch_size=9)),  # PWC-Net's top level has 196 channels
    "C=256 patch 9": ((4, 256, 48, 64), dict(patch_size=9)),
    "kernel3": CONFIGS["kernel3"],  # C = 64, per-pixel products at stride 2
    "C=64 patch 2": ((4, 64, 48, 64), dict(patch_size=2)),
    "row": CONFIGS["row"],  # C = 128, patch 1 x 41
    "column": CONFIGS["column"],  # C = 128, patch 41 x 1: one displacement per patch row
    "stereo1d": CONFIGS["stereo1d"],  # correlation1d, C = 128, 41 disparities (right to left)
    "stereo1d C=32": ((4, 32, 48, 64), dict(max_disp=40)),
}


def clock(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    torch.manual_seed(0)
    print(f"{torch.get_num_threads()} threads; medians of 7 after 2 warm-ups, ms (forward / backward)")
    print(f"{'config':<14}{'channel vectors':>18}{'row path':>18}")
    for name, (shape, params) in CASES.items():
        op = corr_taichi.correlation1d if name.startswith("stereo1d") else corr_taichi.correlation
        x1, x2 = (torch.randn(shape).requires_grad_() for _ in range(2))
        grad = torch.randn_like(op(x1, x2, **params))
        times = {(path, pass_): [] for path in (False, True) for pass_ in ("forward", "backward")}
        for k in range(9):
            for path in (False, True):
                with force_paths(row_path=path):
                    with torch.no_grad():
                        forward = clock(lambda: op(x1, x2, **params))
                    out = op(x1, x2, **params)
                    backward = clock(lambda: torch.autograd.grad(out, (x1, x2), grad))
                if k >= 2:
                    times[path, "forward"].append(forward)
                    times[path, "backward"].append(backward)
        cells = [f"{statistics.median(times[path, 'forward']):.1f} / {statistics.median(times[path, 'backward']):.1f}"
                 for path in (False, True)]
        print(f"{name:<14}{cells[0]:>18}{cells[1]:>18}")


if __name__ == "__main__":
    main()
