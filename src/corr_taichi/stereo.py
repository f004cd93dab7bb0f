"""One-sided 1-D correlation, the cost volume of stereo networks (DispNetC and its descendants)."""

from __future__ import annotations

import dataclasses

from torch import Tensor

from . import _op
from ._geometry import Geometry, IntPair, as_int, as_pair, prepare_inputs, sampler_geometry


def correlation1d_geometry(
    height: int, width: int, max_disp: int, kernel_size: IntPair = 1, stride: IntPair = 1, padding: IntPair = 0,
    dilation: IntPair = 1, both_directions: bool = False, api: str = "correlation1d",
) -> Geometry:
    """Displacement ``d`` (channel ``d``, or ``d + max_disp`` with ``both_directions``) pairs left ``x``
    with right ``x - d``: a one-row patch whose displacements run right to left."""
    max_disp = as_int(max_disp, f"{api}: max_disp", 0)
    if not isinstance(both_directions, bool):
        raise TypeError(f"{api}: both_directions must be a bool, got {both_directions!r}")
    as_pair(kernel_size, f"{api}: kernel_size", 1)
    base = sampler_geometry(height, width, kernel_size, 1, stride, padding, dilation, 1, api=api)
    count = 2 * max_disp + 1 if both_directions else max_disp + 1
    first = max_disp if both_directions else 0
    return dataclasses.replace(base, patch_w=count, patch_dilation_w=-1, first_w=first)


def correlation1d(
    left: Tensor,
    right: Tensor,
    max_disp: int,
    kernel_size: IntPair = 1,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    both_directions: bool = False,
) -> Tensor:
    r"""Horizontal (stereo) correlation: ``out[:, d] = corr(left at x, right at x - d)``.

    For inputs ``(B, C, H, W)`` the output is ``(B, max_disp + 1, oH, oW)`` with ``oH``, ``oW`` as in
    :func:`corr_taichi.correlation` (kernel window anchored at its top-left, zero padding) and

    .. code-block:: text

        out[b, d, h, w] = sum_c sum_{i<kH, j<kW} left[b, c, u + i*dilH, v + j*dilW] * right[b, c, u + i*dilH, v + j*dilW - d]

    with ``u = h*strideH - padH``, ``v = w*strideW - padW``; a term counts only where both pixels lie
    inside the image.  With ``both_directions=True`` the displacements run from ``-max_disp`` to
    ``max_disp`` (``2*max_disp + 1`` channels, channel ``d + max_disp``).

    Example:
        >>> import torch, corr_taichi
        >>> left, right = torch.randn(1, 16, 24, 32), torch.randn(1, 16, 24, 32)
        >>> corr_taichi.correlation1d(left, right, max_disp=8).shape
        torch.Size([1, 9, 24, 32])
    """
    left, right = prepare_inputs(left, right, "correlation1d")
    g = correlation1d_geometry(left.shape[2], left.shape[3], max_disp, kernel_size, stride, padding, dilation,
                               both_directions)
    return _op.apply(left, right, g).view(left.shape[0], g.patch_w, g.out_h, g.out_w)
