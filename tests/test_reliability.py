"""Reliability: determinism, bounded compilation, odd strides, NaN/Inf, edge fuzzing (threads and processes:
tests/test_concurrency.py)."""


import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import corr_taichi
from corr_taichi import _dispatch, _kernels, _pixel_tile_kernels, _row_kernels, reference
from corr_taichi._geometry import sampler_geometry
from corr_taichi._runtime import ti


def _pair(seed, shape=(2, 5, 9, 10), dtype=torch.float32, requires_grad=False):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(shape, dtype=dtype, generator=gen).requires_grad_(requires_grad) for _ in range(2))


def test_forward_and_backward_bitwise_deterministic():
    cfg = dict(kernel_size=3, patch_size=7, stride=(1, 2), padding=1, dilation_patch=2)
    torch.use_deterministic_algorithms(True)
    try:
        runs = []
        for _ in range(3):
            a, b = _pair(0, requires_grad=True)
            out = corr_taichi.correlation(a, b, **cfg)
            grads = torch.autograd.grad(out, (a, b), torch.ones_like(out))
            runs.append((out.detach(), *grads))
    finally:
        torch.use_deterministic_algorithms(False)
    for run in runs[1:]:
        for x, y in zip(runs[0], run):
            assert torch.equal(x, y)


def _compiled_instances():
    kernels = []
    for dtype in (ti.f32, ti.f64):  # the kernels are built per dtype
        windows = _kernels.window_kernels(dtype)
        kernels += [windows.window_sum, windows.window_sum_grad]
        family = _kernels.correlation_kernels(dtype)
        kernels += [family.forward, family.transpose]
        for vectors in (1, 2, 4, 8, 16):  # the gradient kernels, per chunk of channel vectors
            gradients = _kernels.gradient_kernels(dtype, vectors)
            kernels += [gradients.grad_input1, gradients.grad_input2]
        kernels.append(_pixel_tile_kernels.forward_kernel(dtype))
        for vectors in (1, 2, 4):  # the pixel-tiled gradients, per chunk (which sets the tile)
            tiled = _pixel_tile_kernels.gradient_kernels(dtype, *_dispatch.pixel_tile_shape(vectors))
            kernels += [tiled.grad_input1, tiled.grad_input2]
        rows = _row_kernels.row_kernels(dtype)
        kernels += [rows.forward, rows.grad_input1, rows.grad_input2]
    return sum(len(k._primal.compiled_kernels) for k in kernels)


def _many_calls(offset):
    for k in range(offset, offset + 30):
        shape = (1 + k % 3, 1 + k % 5, 3 + k % 7, 4 + k % 6)
        for dtype in (torch.float32, torch.float64, torch.bfloat16):
            a, b = _pair(k, shape, dtype, requires_grad=True)
            out = corr_taichi.correlation(a, b, patch_size=1 + k % 4, kernel_size=1 + k % 2, stride=1 + k % 3,
                                          dilation_patch=1 + k % 2)
            out.float().sum().backward()


def test_kernel_instances_do_not_grow_with_shapes_or_parameters():
    """Taichi compiles per dtype (and a few layout variants), never per shape or parameter set; the
    pixel-tiled gradient kernels also per chunk size (3), the row path's three kernels per
    displacement count of a window, 1 to 16, and phase of the patch row's starts, 0 to 15 (earlier
    tests in this process may have compiled any of those)."""
    _many_calls(0)
    settled = _compiled_instances()
    assert settled <= 16 * 2 + 2 * 2 * 3 + 3 * 2 * 16 * 16  # (2 window kernels + 4 forward and layout kernels
    # + 2 row kernels, of which the gradient comes in 2 variants) x 2 dtypes, x Taichi's layout variants; +
    # the pixel-tiled gradients' 3 chunk sizes x 2 kernels x 2 dtypes; + the 3 row kernels per slot count
    # and phase x 2 dtypes
    _many_calls(100)
    assert _compiled_instances() == settled


def test_expanded_and_strided_inputs():
    a = torch.randn(1, 3, 1, 8, dtype=torch.float64).expand(2, 3, 6, 8)  # stride-0 batch and rows
    b = torch.randn(2, 3, 12, 8, dtype=torch.float64)[:, :, ::2]
    torch.testing.assert_close(corr_taichi.correlation(a, b, patch_size=3),
                               reference.correlation(a.contiguous(), b.contiguous(), patch_size=3))


def test_nan_and_inf_propagate_like_the_reference():
    a, b = _pair(3, (1, 2, 6, 7), torch.float64)
    a[0, 0, 2, 3] = float("nan")
    b[0, 1, 4, 1] = float("inf")
    cfg = dict(patch_size=3, kernel_size=2)
    got, exp = corr_taichi.correlation(a, b, **cfg), reference.correlation(a, b, **cfg)
    assert torch.equal(got.isnan(), exp.isnan())
    assert torch.equal(got.isinf(), exp.isinf())
    finite = exp.isfinite()
    torch.testing.assert_close(got[finite], exp[finite])


EDGE = st.one_of(st.just(1), st.integers(1, 4), st.integers(5, 9))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=EDGE, w=EDGE, c=st.integers(1, 3), b=st.integers(1, 2),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)), p=st.tuples(st.integers(1, 11), st.integers(1, 11)),
    s=st.tuples(st.integers(1, 10), st.integers(1, 10)), pad=st.tuples(st.integers(0, 6), st.integers(0, 6)),
    d=st.tuples(st.integers(1, 10), st.integers(1, 10)), dp=st.tuples(st.integers(1, 10), st.integers(1, 10)),
    seed=st.integers(0, 2**16),
)
def test_fuzz_against_reference(h, w, c, b, k, p, s, pad, d, dp, seed):
    """Weighted to the edges: H or W of 1, patches, kernels, strides and dilations beyond the image,
    paddings larger than the kernel."""
    if (h + 2 * pad[0] - ((k[0] - 1) * d[0] + 1)) < 0 or (w + 2 * pad[1] - ((k[1] - 1) * d[1] + 1)) < 0:
        with pytest.raises(ValueError, match="output would be empty"):
            corr_taichi.correlation(torch.zeros(b, c, h, w), torch.zeros(b, c, h, w), k, p, s, pad, d, dp)
        return
    gen = torch.Generator().manual_seed(seed)
    x1 = torch.randn(b, c, h, w, dtype=torch.float64, generator=gen, requires_grad=True)
    x2 = torch.randn(b, c, h, w, dtype=torch.float64, generator=gen, requires_grad=True)
    got = corr_taichi.correlation(x1, x2, k, p, s, pad, d, dp)
    exp = reference.correlation(x1, x2, k, p, s, pad, d, dp)
    torch.testing.assert_close(got, exp, rtol=1e-12, atol=1e-12)
    grad = torch.randn(got.shape, dtype=torch.float64, generator=gen)
    for g, e in zip(torch.autograd.grad(got, (x1, x2), grad), torch.autograd.grad(exp, (x1, x2), grad)):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


# Calls beyond 32-bit indexing are split into pieces (whole images x patch rows).  The limit is
# lowered here so that the splitting is tested on small tensors; benchmarks/stress.py checks a real
# 2.3e9-element output.
SPLIT_CASES = [
    ((3, 4, 9, 11), dict(patch_size=5), 600),  # one image per piece, patch rows split
    ((3, 4, 9, 11), dict(patch_size=5), 5000),  # whole images, two per piece
    ((2, 3, 8, 9), dict(kernel_size=3, patch_size=(5, 3), padding=1, dilation_patch=2), 250),  # window sums
    ((2, 1, 10, 7), dict(kernel_size=2, patch_size=3, stride=(3, 2), padding=1), 100),  # direct multi-tap
]


@pytest.mark.parametrize("shape,cfg,limit", SPLIT_CASES)
def test_calls_split_below_the_index_limit_match_the_reference(force_paths, shape, cfg, limit):
    a, b = _pair(7, shape, torch.float64, requires_grad=True)
    expected = reference.correlation(a, b, **cfg)
    want = torch.autograd.grad(expected, (a, b), torch.ones_like(expected))
    force_paths(max_elements=limit)
    geometry = sampler_geometry(shape[2], shape[3], **cfg)
    assert len(_dispatch.pieces_of(geometry, *shape, limit=limit)) > 1
    out = corr_taichi.correlation(a, b, **cfg)
    got = torch.autograd.grad(out, (a, b), torch.ones_like(out))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_split_refuses_what_cannot_be_split(force_paths):
    force_paths(max_elements=100)
    a, b = _pair(0, (1, 2, 8, 8))  # one image holds 128 elements
    with pytest.raises(NotImplementedError, match="2\\*\\*31"):
        corr_taichi.correlation(a, b, patch_size=3)
