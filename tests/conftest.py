import random

import pytest
import torch


@pytest.fixture
def rng():
    return random.Random(1234)


def randn(*shape, dtype=torch.float64, requires_grad=False, seed=None):
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    t = torch.randn(*shape, dtype=dtype, generator=generator)
    return t.requires_grad_(requires_grad)
