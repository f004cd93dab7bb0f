"""The GPU kernels' tiling: which calls take the tiled kernels, and shapes that cross every tile and
chunk boundary (columns beyond one tile, patch rows beyond one chunk, channel counts that fill no
chunk) against the float64 reference.

On the CPU backend these shapes test the CPU kernels; in the Vulkan pass (``scripts/test_vulkan.sh``)
they test the tiled and simple GPU kernels, and the test also checks which of the two ran.
"""

import random

import pytest
import torch

import corr_taichi
from corr_taichi import _dispatch, _geometry, _gpu_kernels, reference
from corr_taichi._runtime import current_arch_name

from .cases import randn


def _tiled(shape, **cfg):
    """Whether a GPU backend runs ``correlation(..., **cfg)`` on inputs of ``shape`` on the tiled kernels."""
    g = _geometry.sampler_geometry(shape[2], shape[3], **cfg)
    paths = {_dispatch.plan(g, shape, "vulkan", backward).path for backward in (False, True)}
    assert len(paths) == 1  # the forward and the backward take the same kernel family
    return paths == {"gpu_tiled"}


@pytest.mark.parametrize("cfg,expected", [
    (dict(patch_size=21, dilation_patch=2), True),  # FlowNetC
    (dict(patch_size=9), True),  # PWC-Net
    (dict(kernel_size=3, patch_size=5, padding=1), True),  # window sums over single-tap products
    (dict(patch_size=(1, 41)), True),  # stereo-style 1-row patch
    (dict(patch_size=7, stride=2, dilation_patch=2), True),
    (dict(kernel_size=3, patch_size=5, stride=3), False),  # several taps at a stride: computed directly
    (dict(patch_size=3, dilation_patch=5), False),  # a patch chunk reaches beyond the shared band
    (dict(patch_size=3, stride=3), False),  # a tile of output columns reaches beyond the shared band
])
def test_which_calls_take_the_tiled_kernels(cfg, expected):
    shape = (2, 64, 48, 64)
    assert _tiled(shape, **cfg) is expected


@pytest.mark.parametrize("shape,expected", [
    ((1, 8, 5, 16), True),
    ((1, 7, 5, 16), False),  # too few channels to fill a tile
    ((1, 8, 5, 15), False),  # too few columns
])
def test_small_calls_take_the_simple_kernels(shape, expected):
    assert _tiled(shape, patch_size=9) is expected


def test_band_limit_is_exact():
    """The widest patch dilation the band holds is taken, one more is not."""
    shape = (1, 8, 16, 40)
    widest = (_gpu_kernels.BAND - _gpu_kernels.TILE_W) // (_gpu_kernels.PATCH_CHUNK - 1)
    assert _tiled(shape, patch_size=3, dilation_patch=widest)
    assert not _tiled(shape, patch_size=3, dilation_patch=widest + 1)


CASES = [
    # (cfg, shape, kernels the GPU backends run)
    (dict(patch_size=21, dilation_patch=2), (2, 37, 5, 70), "tiled"),  # 3 column tiles, 2 patch chunks
    (dict(patch_size=(3, 17), stride=2, padding=1), (1, 9, 7, 80), "tiled"),
    (dict(patch_size=5, dilation_patch=(1, 4), padding=(0, 2)), (1, 33, 6, 35), "tiled"),
    (dict(kernel_size=3, patch_size=5, padding=1), (1, 11, 5, 40), "tiled"),
    (dict(patch_size=(1, 19)), (2, 70, 3, 33), "tiled"),  # 3 channel chunks, 1-row patch
    (dict(kernel_size=2, patch_size=3, stride=3), (1, 4, 6, 40), "simple"),  # several taps, computed directly
    (dict(patch_size=3, dilation_patch=7), (1, 6, 5, 45), "simple"),
    (dict(patch_size=5), (2, 6, 4, 40), "simple"),  # too few channels
]


@pytest.mark.parametrize("cfg,shape,variant", CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tile_and_chunk_boundaries_match_reference(force_paths, op_plans, cfg, shape, variant, dtype):
    # on the CPU: its channel-vector kernels (tests/test_row_path.py has the rest)
    force_paths(row_path=False)
    seed = sum(shape) + len(str(cfg))
    x1 = randn(*shape, dtype=dtype, seed=seed).requires_grad_()
    x2 = randn(*shape, dtype=dtype, seed=seed + 1).requires_grad_()
    out = corr_taichi.correlation(x1, x2, **cfg)
    grad_out = randn(*out.shape, dtype=dtype, seed=seed + 2)
    grad1, grad2 = torch.autograd.grad(out, (x1, x2), grad_out)

    r1, r2 = (x.detach().double().requires_grad_() for x in (x1, x2))
    expected = reference.correlation(r1, r2, **cfg)
    expected1, expected2 = torch.autograd.grad(expected, (r1, r2), grad_out.double())
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.double(), expected, **tol)
    torch.testing.assert_close(grad1.double(), expected1, **tol)
    torch.testing.assert_close(grad2.double(), expected2, **tol)

    ran = [p.path for p in op_plans]
    if current_arch_name() in ("x64", "arm64"):
        assert len(ran) == 2 and "row" not in ran
    else:
        assert ran == [f"gpu_{variant}"] * 2


def _random_call(seed: int):
    """A random single-tap or windowed parameter set on an image wide enough for the tiled kernels."""
    r = random.Random(seed)

    def maybe_pair(lo, hi):
        return r.randint(lo, hi) if r.random() < 0.5 else (r.randint(lo, hi), r.randint(lo, hi))

    while True:
        cfg = dict(kernel_size=maybe_pair(1, 3) if r.random() < 0.3 else 1, patch_size=maybe_pair(1, 23),
                   stride=maybe_pair(1, 2), padding=maybe_pair(0, 3), dilation_patch=maybe_pair(1, 4))
        shape = (r.randint(1, 2), r.randint(8, 40), r.randint(2, 7), r.randint(16, 90))
        try:
            _geometry.sampler_geometry(shape[2], shape[3], **cfg)
        except ValueError:
            continue
        return cfg, shape, r.choice([torch.float32, torch.float64, torch.float16, torch.bfloat16])


@pytest.mark.parametrize("seed", range(10))
def test_random_wide_calls_match_reference(seed):
    cfg, shape, dtype = _random_call(seed)
    x1 = randn(*shape, seed=seed).to(dtype).requires_grad_()
    x2 = randn(*shape, seed=seed + 100).to(dtype).requires_grad_()
    out = corr_taichi.correlation(x1, x2, **cfg)
    grad_out = randn(*out.shape, seed=seed + 200).to(dtype)
    got = (out, *torch.autograd.grad(out, (x1, x2), grad_out))

    r1, r2 = (x.detach().double().requires_grad_() for x in (x1, x2))
    expected = reference.correlation(r1, r2, **cfg)
    expected = (expected, *torch.autograd.grad(expected, (r1, r2), grad_out.double()))
    # relative to the largest magnitude: half-precision inputs are rounded, the sums are float32
    tol = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 2e-2}[dtype]
    for x, y in zip(got, expected):
        assert x.dtype == dtype
        assert (x.double() - y).abs().max() <= tol * (1 + y.abs().max())
