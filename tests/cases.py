"""Inputs shared by several test files: random tensors from fixed seeds (never the global generator)."""

import os

import torch


def randn(*shape, seed: int, dtype=torch.float64, requires_grad=False):
    """Standard normal values of ``dtype`` from the generator seeded with ``seed``."""
    t = torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    return t.requires_grad_(requires_grad)


def seeded(shape, seed: int, dtype=torch.float64, requires_grad=False):
    """Standard normal values drawn in float64 from the generator seeded with ``seed``, then rounded to
    ``dtype`` (so that every dtype sees the same values, to its precision)."""
    t = randn(*shape, seed=seed).to(dtype)
    return t.requires_grad_(requires_grad)


def gradcheck(fn, inputs) -> bool:
    """``torch.autograd.gradcheck`` of ``fn`` at ``inputs``: every element's numerical derivative on the
    CPU backend; on a GPU backend (the Vulkan pass, where each of the thousands of launches of a full
    check round-trips through the device) gradcheck's fast mode, which compares the analytic and the
    numerical derivative along random directions in a handful of launches."""
    on_gpu = os.environ.get("CORR_TAICHI_ARCH", "cpu") not in ("cpu", "x64", "arm64")
    return torch.autograd.gradcheck(fn, inputs, fast_mode=on_gpu)
