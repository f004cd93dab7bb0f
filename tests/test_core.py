"""The core op against the float64 loop oracle, the pure-PyTorch reference and gradcheck."""

import os
import random
import zlib

import numpy as np
import pytest
import torch

import corr_taichi
from corr_taichi import reference

from . import oracle
from .cases import gradcheck
from .fresh import run


def random_config(r: random.Random):
    """A random parameter set (per-axis where it matters) and an input size that gives a non-empty output."""
    def maybe_pair(lo, hi):
        a = r.randint(lo, hi)
        return a if r.random() < 0.4 else (a, r.randint(lo, hi))

    while True:
        cfg = dict(
            kernel_size=maybe_pair(1, 3),
            patch_size=maybe_pair(1, 6),
            stride=maybe_pair(1, 3),
            padding=maybe_pair(0, 3),
            dilation=maybe_pair(1, 3),
            dilation_patch=maybe_pair(1, 3),
        )
        shape = (r.randint(1, 2), r.choice([1, 2, 3, 5]), r.choice([1, 2, 5, 7]), r.choice([1, 3, 6, 9]))
        try:
            corr_taichi.Correlation(**cfg)
            out = oracle.sampler(np.zeros(shape), np.zeros(shape), **cfg)
        except ValueError:
            continue
        if out.shape[-1] >= 1 and out.shape[-2] >= 1:
            return cfg, shape


CONFIGS = [random_config(random.Random(seed)) for seed in range(40)]
FIXED = [
    (dict(), (2, 3, 5, 7)),
    (dict(patch_size=4, dilation_patch=2), (1, 2, 6, 5)),  # even patch
    (dict(kernel_size=3, patch_size=(1, 7)), (1, 4, 5, 9)),  # 1-row patch
    (dict(kernel_size=(2, 3), patch_size=(5, 1), stride=(2, 3), padding=(3, 4)), (2, 1, 7, 8)),
    (dict(patch_size=9, dilation_patch=3), (1, 2, 4, 4)),  # displacements beyond the image
    (dict(stride=5, padding=4, kernel_size=2), (1, 3, 3, 4)),  # stride and padding larger than usual
    (dict(patch_size=3), (1, 1, 1, 1)),
    (dict(patch_size=5, kernel_size=(1, 3)), (2, 3, 1, 8)),  # H = 1
    (dict(patch_size=5, kernel_size=(3, 1)), (2, 3, 8, 1)),  # W = 1
]


@pytest.mark.parametrize("cfg,shape", FIXED + CONFIGS)
def test_forward_matches_loop_oracle(cfg, shape):
    seed = zlib.crc32(repr((cfg, shape)).encode()) % 1000  # the same in every process
    x1 = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    x2 = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    expected = oracle.sampler(x1.numpy(), x2.numpy(), **cfg)
    got = corr_taichi.correlation(x1, x2, **cfg)
    assert got.dtype == torch.float64 and tuple(got.shape) == expected.shape
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)
    # The pure-PyTorch reference follows the same definition.
    np.testing.assert_allclose(reference.correlation(x1, x2, **cfg).numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cfg,shape", FIXED + CONFIGS[:20])
def test_backward_matches_reference_vjp(cfg, shape):
    gen = torch.Generator().manual_seed(7)
    x1 = torch.randn(*shape, dtype=torch.float64, generator=gen, requires_grad=True)
    x2 = torch.randn(*shape, dtype=torch.float64, generator=gen, requires_grad=True)
    out = corr_taichi.correlation(x1, x2, **cfg)
    grad = torch.randn(out.shape, dtype=torch.float64, generator=gen)
    got = torch.autograd.grad(out, (x1, x2), grad)
    expected = torch.autograd.grad(reference.correlation(x1, x2, **cfg), (x1, x2), grad)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


# Channel counts that fill several 16-channel vectors of the CPU kernels (with padding where not a
# multiple of 16), several chunks of the backward's accumulators, and grad_input2's passes of patch rows.
WIDE = [
    (dict(patch_size=9, dilation_patch=2), (1, 250, 6, 7)),  # 16 vectors; grad_input2 in 2 passes
    (dict(patch_size=(11, 9), padding=1), (2, 300, 5, 9)),  # 19 vectors: 2 chunks; 2 passes
    (dict(kernel_size=3, patch_size=5, stride=2, padding=1), (2, 40, 7, 8)),  # several taps at a stride
    (dict(kernel_size=3, patch_size=(9, 1)), (1, 64, 6, 5)),  # several taps at stride 1 (window sums)
]


@pytest.mark.parametrize("cfg,shape", WIDE)
def test_wide_channels_match_reference(cfg, shape):
    gen = torch.Generator().manual_seed(shape[1])
    x1 = torch.randn(*shape, dtype=torch.float64, generator=gen, requires_grad=True)
    x2 = torch.randn(*shape, dtype=torch.float64, generator=gen, requires_grad=True)
    got = corr_taichi.correlation(x1, x2, **cfg)
    expected = reference.correlation(x1, x2, **cfg)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-10)
    grad_out = torch.randn(got.shape, dtype=torch.float64, generator=gen)
    got_grads = torch.autograd.grad(got, (x1, x2), grad_out)
    expected_grads = torch.autograd.grad(expected, (x1, x2), grad_out)
    for g, e in zip(got_grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("cfg,shape", FIXED[1:6] + CONFIGS[:12])
def test_gradcheck(cfg, shape):
    gen = torch.Generator().manual_seed(11)
    shape = (1, min(shape[1], 2)) + shape[2:]
    x1 = torch.randn(*shape, dtype=torch.float64, generator=gen, requires_grad=True)
    x2 = torch.randn(*shape, dtype=torch.float64, generator=gen, requires_grad=True)
    assert gradcheck(lambda a, b: corr_taichi.correlation(a, b, **cfg), (x1, x2))


def test_float32_close_to_float64():
    gen = torch.Generator().manual_seed(3)
    x1 = torch.randn(2, 64, 9, 10, generator=gen)
    x2 = torch.randn(2, 64, 9, 10, generator=gen)
    cfg = dict(kernel_size=3, patch_size=5, padding=1)
    got = corr_taichi.correlation(x1, x2, **cfg)
    assert got.dtype == torch.float32
    expected = oracle.sampler(x1.double().numpy(), x2.double().numpy(), **cfg)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_only_one_input_requires_grad():
    gen = torch.Generator().manual_seed(5)
    x1 = torch.randn(1, 3, 6, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    x2 = torch.randn(1, 3, 6, 7, dtype=torch.float64, generator=gen)
    out = corr_taichi.correlation(x1, x2, patch_size=3)
    (g1,) = torch.autograd.grad(out.sum(), (x1,))
    (e1,) = torch.autograd.grad(reference.correlation(x1, x2, patch_size=3).sum(), (x1,))
    torch.testing.assert_close(g1, e1)
    assert x2.grad is None


def test_inputs_not_modified_and_views_accepted():
    gen = torch.Generator().manual_seed(9)
    base1 = torch.randn(2, 4, 9, 12, dtype=torch.float64, generator=gen)
    base2 = torch.randn(2, 4, 9, 12, dtype=torch.float64, generator=gen)
    x1 = base1[:, :, 1:8, ::2]  # non-contiguous views
    x2 = base2.to(memory_format=torch.channels_last)[:, :, 1:8, ::2]
    before1, before2 = base1.clone(), base2.clone()
    got = corr_taichi.correlation(x1, x2, patch_size=3, kernel_size=2)
    expected = oracle.sampler(x1.numpy(), x2.contiguous().numpy(), patch_size=3, kernel_size=2)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(base1, before1) and torch.equal(base2, before2)


def test_zero_batch_and_zero_channels():
    out = corr_taichi.correlation(torch.randn(0, 3, 5, 5), torch.randn(0, 3, 5, 5), patch_size=3)
    assert out.shape == (0, 3, 3, 5, 5)
    out = corr_taichi.correlation(torch.randn(2, 0, 5, 5), torch.randn(2, 0, 5, 5), patch_size=3)
    assert out.shape == (2, 3, 3, 5, 5) and torch.count_nonzero(out) == 0


def test_module_matches_function():
    gen = torch.Generator().manual_seed(2)
    x1 = torch.randn(1, 3, 7, 8, dtype=torch.float64, generator=gen)
    x2 = torch.randn(1, 3, 7, 8, dtype=torch.float64, generator=gen)
    cfg = dict(kernel_size=(1, 3), patch_size=(3, 5), stride=(2, 1), padding=(0, 1), dilation=2, dilation_patch=(1, 2))
    layer = corr_taichi.Correlation(**cfg)
    assert torch.equal(layer(x1, x2), corr_taichi.correlation(x1, x2, **cfg))
    assert "patch_size=(3, 5)" in repr(layer)


def test_runs_on_the_requested_backend():
    """With CORR_TAICHI_ARCH set (the Vulkan pass of ``make test``), the kernels really ran there (in a
    fresh process, which inherits the variable: the backend is chosen at the runtime's start)."""
    result = run(
        """
        import torch, corr_taichi
        from corr_taichi import _runtime
        corr_taichi.correlation(torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3))
        print(_runtime.current_arch_name())
        """
    )
    assert result.returncode == 0, result.stderr
    expected = {"cpu": ("x64", "arm64"), "vulkan": ("vulkan",), "cuda": ("cuda",)}
    assert result.stdout.strip() in expected[os.environ.get("CORR_TAICHI_ARCH", "cpu")]
