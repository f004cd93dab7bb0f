"""The CPU kernels tiled over pixels (``_pixel_tile_kernels``) at their edges, against the float64
reference: the forward's 4 x 4 tiles and their fallbacks, the gradients' tiles of 4 and 8 pixels,
phases that end in single pixels, patches narrower than a tile, right-to-left patches, output columns
that miss some input pixels, row strides, and channel counts for each chunk size."""

import dataclasses

import pytest
import torch

from corr_taichi import _dispatch, _kernel_helpers, _op, _pixel_tile_kernels
from corr_taichi._geometry import Geometry
from corr_taichi._runtime import current_arch_name
from corr_taichi.reference import correlation_from_geometry

from .cases import randn


def _single_tap(height, width, patch, patch_dilation, first, origin=(0, 0), out=None, stride_h=1):
    out_h, out_w = out or (height, width)
    return Geometry(1, 1, 1, 1, stride_h, 1, *origin, *patch, *patch_dilation, *first, out_h, out_w)


CASES = [
    # (channels, height, width, geometry); the chunk of channel vectors and the tile follow from channels
    (64, 6, 37, _single_tap(6, 37, (7, 9), (2, 2), (-6, -8))),  # 4 x 4 tiles, two phases ending in singles
    (32, 5, 29, _single_tap(5, 29, (3, 5), (1, 1), (-1, -2))),  # 8-pixel tiles, patch narrower than a tile
    (16, 4, 40, _single_tap(4, 40, (2, 11), (1, 3), (0, -15))),  # three phases
    (48, 3, 35, _single_tap(3, 35, (1, 13), (1, -1), (0, 0))),  # right to left (one-sided stereo)
    (80, 5, 33, _single_tap(5, 33, (3, 6), (2, -2), (-2, 5))),  # right to left, dilated
    (5, 7, 30, _single_tap(7, 30, (5, 7), (1, 2), (-2, -6), origin=(2, 3), out=(3, 24))),  # outputs miss pixels
    (40, 9, 26, _single_tap(9, 26, (3, 9), (2, 1), (-2, -4), origin=(-1, -2), out=(6, 30), stride_h=2)),
    (64, 4, 21, _single_tap(4, 21, (2, 21), (1, 1), (0, -10))),  # every displacement leaves the image somewhere
]


@pytest.mark.parametrize("channels,height,width,g", CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tiled_kernels_match_reference(force_paths, op_plans, channels, height, width, g, dtype):
    force_paths(row_path=False)
    shape = (2, channels, height, width)
    seed = channels + height + width
    x1 = randn(*shape, dtype=dtype, seed=seed).requires_grad_()
    x2 = randn(*shape, dtype=dtype, seed=seed + 1).requires_grad_()
    out = _op.apply(x1, x2, g, 0.5)
    grad_out = randn(*out.shape, dtype=dtype, seed=seed + 2)
    grad1, grad2 = torch.autograd.grad(out, (x1, x2), grad_out)

    r1, r2 = (x.detach().double().requires_grad_() for x in (x1, x2))
    expected = correlation_from_geometry(r1, r2, g, 0.5)
    expected1, expected2 = torch.autograd.grad(expected, (r1, r2), grad_out.double())
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.double(), expected, **tol)
    torch.testing.assert_close(grad1.double(), expected1, **tol)
    torch.testing.assert_close(grad2.double(), expected2, **tol)

    if current_arch_name() not in ("x64", "arm64"):
        return  # a GPU backend: its own kernels ran
    vectors, pixels = _dispatch.pixel_tile_shape(-(-channels // _kernel_helpers.LANES))
    forward, backward = op_plans
    assert forward.path == ("pixel_tiles" if g.patch_dilation_w > 0 else "channel_vectors")
    assert (backward.path, backward.vectors, backward.pixels) == ("pixel_tiles", vectors, pixels)


def test_tile_shapes():
    """Chunks of 4, 2 or 1 channel vectors (the largest dividing the count), 4 or 8 pixels per tile."""
    assert [_dispatch.pixel_tile_shape(groups) for groups in (1, 2, 3, 4, 6, 8, 16)] == [
        (1, 8), (2, 8), (1, 8), (4, 4), (2, 8), (4, 4), (4, 4)]


@pytest.mark.parametrize("change,gradients,forward", [
    (dict(), True, True),
    (dict(stride_h=2), True, True),
    (dict(patch_dilation_w=-1), True, False),
    (dict(stride_w=2), False, False),
    (dict(kernel_w=3), False, False),
    (dict(kernel_h=2), False, False),
])
def test_which_geometries_take_pixel_tiles(change, gradients, forward):
    g = dataclasses.replace(_single_tap(8, 8, (3, 3), (1, 1), (-1, -1)), **change)
    assert _pixel_tile_kernels.takes(g) is gradients
    assert _pixel_tile_kernels.takes_forward(g) is forward
