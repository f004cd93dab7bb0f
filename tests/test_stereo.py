"""correlation1d against its loop definition, the reference's VJP and gradcheck."""

import numpy as np
import pytest
import torch

import corr_taichi
from corr_taichi import reference

from . import oracle
from .cases import gradcheck

CASES = [
    (dict(max_disp=4), (2, 3, 5, 9)),
    (dict(max_disp=6, kernel_size=3, padding=1), (1, 4, 6, 8)),
    (dict(max_disp=3, kernel_size=(1, 3), stride=(1, 2), dilation=2), (2, 2, 5, 11)),
    (dict(max_disp=12), (1, 2, 3, 7)),  # disparities beyond the image
    (dict(max_disp=3, both_directions=True), (1, 3, 4, 9)),
    (dict(max_disp=2, both_directions=True, kernel_size=2, stride=2, padding=1), (2, 2, 7, 8)),
    (dict(max_disp=0), (1, 2, 3, 4)),
]


@pytest.mark.parametrize("cfg,shape", CASES)
def test_forward_matches_definition(cfg, shape):
    gen = torch.Generator().manual_seed(len(str(cfg)))
    left = torch.randn(shape, dtype=torch.float64, generator=gen)
    right = torch.randn(shape, dtype=torch.float64, generator=gen)
    got = corr_taichi.correlation1d(left, right, **cfg)
    expected = oracle.correlation1d(left.numpy(), right.numpy(), **cfg)
    assert tuple(got.shape) == expected.shape
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(reference.correlation1d(left, right, **cfg).numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cfg,shape", CASES)
def test_backward_and_gradcheck(cfg, shape):
    gen = torch.Generator().manual_seed(3)
    left = torch.randn(shape, dtype=torch.float64, generator=gen, requires_grad=True)
    right = torch.randn(shape, dtype=torch.float64, generator=gen, requires_grad=True)
    out = corr_taichi.correlation1d(left, right, **cfg)
    grad = torch.randn(out.shape, dtype=torch.float64, generator=gen)
    got = torch.autograd.grad(out, (left, right), grad)
    expected = torch.autograd.grad(reference.correlation1d(left, right, **cfg), (left, right), grad)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)
    small = tuple(t.detach()[:1, :2].requires_grad_() for t in (left, right))
    assert gradcheck(lambda a, b: corr_taichi.correlation1d(a, b, **cfg), small)


def test_bad_arguments():
    x = torch.randn(1, 2, 4, 5)
    with pytest.raises(ValueError, match="max_disp"):
        corr_taichi.correlation1d(x, x, max_disp=-1)
    with pytest.raises(TypeError, match="both_directions"):
        corr_taichi.correlation1d(x, x, max_disp=2, both_directions=1)
    with pytest.raises(ValueError, match="kernel_size"):
        corr_taichi.correlation1d(x, x, max_disp=2, kernel_size=0)
