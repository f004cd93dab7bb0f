"""Inputs shared by several test files: random tensors from fixed seeds (never the global generator)."""

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
