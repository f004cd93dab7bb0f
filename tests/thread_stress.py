"""Concurrency stress: 8 threads x 25 calls of mixed configurations and dtypes, forward and backward,
each result compared with the float64 pure-PyTorch reference.

Run it in a fresh process (``tests/test_threads.py`` does, with an empty Taichi offline cache), so that
the threads' first calls are the process's first calls and every kernel compiles under contention:

    TI_OFFLINE_CACHE_FILE_PATH=$(mktemp -d) python -m tests.thread_stress

It prints one line per failure and ends with ``N passed, N failed``; the exit status is 1 on any failure.
"""

from __future__ import annotations

import sys
import threading

import torch

import corr_taichi
from corr_taichi import reference

THREADS, CALLS = 8, 25

# (name, input shape, parameters): each reaches a different CPU path of the op (the path is chosen from
# the geometry and the channel count, see the README's design notes).
CASES = [
    ("row path", (1, 5, 9, 21), dict(patch_size=5, dilation_patch=2)),
    ("channel vectors", (2, 20, 8, 9), dict(patch_size=3, stride=2)),
    ("pixel tiles", (1, 260, 5, 7), dict(patch_size=3)),
    ("window sums", (1, 3, 7, 10), dict(kernel_size=3, patch_size=3, padding=1)),
    ("direct window", (1, 17, 9, 8), dict(kernel_size=2, patch_size=(3, 5), stride=2, padding=1)),
    ("correlation1d", (1, 6, 5, 19), dict(max_disp=6)),
    ("CorrTaichi", (1, 7, 6, 9), dict(max_disp=2, dila_patch=2)),
    ("groupwise_correlation1d", (1, 12, 5, 19), dict(max_disp=5, groups=4)),
    ("correlation_lookup1d", (1, 20, 4, 13), dict(radius=3)),
    ("volume_lookup1d", (1, 5, 6, 11), dict(radius=2)),
]
DTYPES = [torch.float16, torch.float32, torch.float64]
#: relative tolerance of each dtype, against the float64 result's largest magnitude
TOLERANCE = {torch.float16: 2e-3, torch.float32: 1e-5, torch.float64: 1e-10}


def _coords(x: torch.Tensor, width: int) -> torch.Tensor:
    """Lookup coordinates (fractional, some outside the row of ``width``) from a slice of an input."""
    return x.detach().double() * 4 + width / 2  # in float64 for both sides, whatever the input's dtype


def _call(name: str, x1: torch.Tensor, x2: torch.Tensor, cfg: dict, ours: bool) -> torch.Tensor:
    if name == "groupwise_correlation1d":
        if ours:
            return corr_taichi.groupwise_correlation1d(x1, x2, **cfg)
        per = x1.shape[1] // cfg["groups"]
        return torch.stack([reference.correlation1d(x1[:, g * per:(g + 1) * per], x2[:, g * per:(g + 1) * per],
                                                    cfg["max_disp"]) / per for g in range(cfg["groups"])], 1)
    if name == "correlation_lookup1d":
        fn = corr_taichi.correlation_lookup1d if ours else reference.correlation_lookup1d
        return fn(x1, x2, _coords(x1[:, 0], x1.shape[3]), cfg["radius"], 0.5)
    if name == "volume_lookup1d":  # the inputs read as volumes (B, H, W1, W2) = (1, C, H, W)
        fn = corr_taichi.volume_lookup1d if ours else reference.volume_lookup1d
        return fn(x1 + x2, _coords(x1[..., 0], x1.shape[3]), cfg["radius"])
    if name == "correlation1d":
        return (corr_taichi.correlation1d if ours else reference.correlation1d)(x1, x2, **cfg)
    if name == "CorrTaichi":
        if ours:
            return corr_taichi.CorrTaichi(**cfg)(x1, x2)
        # the original layer: displacements -max_disp, -max_disp + dila_patch, ... (centred here, as
        # 2 * max_disp is a multiple of dila_patch)
        size = 2 * cfg["max_disp"] // cfg["dila_patch"] + 1
        return reference.correlation(x1, x2, patch_size=size, dilation_patch=cfg["dila_patch"]).flatten(1, 2)
    return (corr_taichi.correlation if ours else reference.correlation)(x1, x2, **cfg)


def _check(index: int, call: int, failures: list[str], dtypes: tuple) -> None:
    name, shape, cfg = CASES[(index + call) % len(CASES)]
    dtype = dtypes[(index * 7 + call) % len(dtypes)]
    gen = torch.Generator().manual_seed(1000 * index + call)
    x1, x2 = (torch.randn(shape, dtype=torch.float64, generator=gen) for _ in range(2))
    a, b = (x.to(dtype).requires_grad_() for x in (x1, x2))
    out = _call(name, a, b, cfg, ours=True)
    grad_out = torch.randn(out.shape, dtype=torch.float64, generator=gen)
    grads = torch.autograd.grad(out, (a, b), grad_out.to(dtype))
    # the reference, in float64 on the same (rounded) inputs
    ra, rb = (x.detach().double().requires_grad_() for x in (a, b))
    expected = _call(name, ra, rb, cfg, ours=False)
    want = torch.autograd.grad(expected, (ra, rb), grad_out)
    for what, got, exp in (("forward", out, expected), ("grad1", grads[0], want[0]), ("grad2", grads[1], want[1])):
        tol = TOLERANCE[dtype] * max(1.0, exp.abs().max().item())
        if got.dtype != dtype or got.shape != exp.shape or not torch.allclose(got.double(), exp, rtol=0, atol=tol):
            err = (got.double() - exp).abs().max().item() if got.shape == exp.shape else "shape"
            failures.append(f"thread {index} call {call}: {name} {dtype} {what}: max error {err}, tolerance {tol}")


def main(dtypes: tuple = tuple(DTYPES)) -> int:
    """The stress over ``dtypes`` (default: all three); the exit status."""
    failures: list[str] = []
    checked = [0] * THREADS
    start = threading.Barrier(THREADS)

    def work(index: int) -> None:
        start.wait()  # every thread's first call at once: the process's first call is contended
        for call in range(CALLS):
            try:
                _check(index, call, failures, dtypes)
            except Exception as error:  # reported, and counted as a failed call
                failures.append(f"thread {index} call {call}: {type(error).__name__}: {error}")
            checked[index] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for line in failures:
        print(line)
    failed = len({line.split(":")[0] for line in failures})
    print(f"{sum(checked) - failed} passed, {failed} failed")
    return 1 if failures or sum(checked) != THREADS * CALLS else 0


if __name__ == "__main__":
    sys.exit(main())
