"""Stereo cost volumes: one-sided 1-D correlation (DispNetC and its descendants), group-wise correlation
(GwcNet, ACVNet, CFNet, PCWNet, IGEV-Stereo) and the 1-D lookups of RAFT-Stereo and IGEV-Stereo."""

from __future__ import annotations

import math

from torch import Tensor

from . import _lookup1d, _op
from ._geometry import (IntPair, as_int, check_lookup1d, check_volume_lookup1d,
                        correlation1d_geometry, prepare_inputs)


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

        out[b, d, h, w] = sum_c sum_{i<kH, j<kW} left[b, c, u + i*dilH, v + j*dilW]
                                                 * right[b, c, u + i*dilH, v + j*dilW - d]

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


def groupwise_correlation1d(
    left: Tensor,
    right: Tensor,
    max_disp: int,
    groups: int,
    kernel_size: IntPair = 1,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    both_directions: bool = False,
) -> Tensor:
    r"""Group-wise correlation volume (GwcNet): the channels split into ``groups`` groups of ``C / groups``,
    and for each group the mean over its channels of :func:`correlation1d`'s products.

    Shape:
        - left, right: ``(B, C, H, W)``, ``C`` a multiple of ``groups``
        - output: ``(B, groups, max_disp + 1, oH, oW)`` (``2 * max_disp + 1`` disparities with
          ``both_directions``), ``oH``, ``oW`` as in :func:`correlation1d`

    .. code-block:: text

        out[b, g, d, h, w] = 1/(C/G) sum_{c in group g} sum_{i<kH, j<kW} left[b, c, y, x] * right[b, c, y, x - d]

    with ``y = h*strideH - padH + i*dilH``, ``x = w*strideW - padW + j*dilW``; zero where ``x - d`` lies
    outside the image (so disparities ``d >= W`` give zeros).  The volume is computed by the correlation
    kernels directly (no per-disparity product tensor), forward and backward.

    Example:
        >>> import torch, corr_taichi
        >>> left, right = torch.randn(1, 32, 12, 20), torch.randn(1, 32, 12, 20)
        >>> corr_taichi.groupwise_correlation1d(left, right, max_disp=7, groups=8).shape
        torch.Size([1, 8, 8, 12, 20])
    """
    api = "groupwise_correlation1d"
    left, right = prepare_inputs(left, right, api)
    groups = as_int(groups, f"{api}: groups", 1)
    batch, channels, height, width = left.shape
    if channels % groups:
        raise ValueError(f"{api}: groups must divide the channel count {channels}, got {groups}")
    per_group = channels // groups
    g = correlation1d_geometry(height, width, max_disp, kernel_size, stride, padding, dilation, both_directions,
                               api=api)
    # each group is an image of C/G channels: the core op on (B*G, C/G, H, W), scaled by 1/(C/G)
    grouped = (x.reshape(batch * groups, per_group, height, width) for x in (left, right))
    out = _op.apply(*grouped, g, 1.0 / per_group)
    return out.view(batch, groups, g.patch_w, g.out_h, g.out_w)


def volume_lookup1d(volume: Tensor, coords: Tensor, radius: int) -> Tensor:
    r"""Linear lookup in a precomputed 1-D cost volume (RAFT-Stereo's ``corr_sampler``).

    Shape:
        - volume: ``(B, H, W1, W2)``, e.g. ``volume[b, h, x1, x2]`` the correlation of left ``x1`` with
          right ``x2`` in row ``h``
        - coords: ``(B, H, W1)``, a position along ``W2`` for each pixel
        - output: ``(B, 2 * radius + 1, H, W1)``

    .. code-block:: text

        out[b, k + R, h, w] = (1 - t) * volume[b, h, w, x0 + k] + t * volume[b, h, w, x0 + k + 1]

    with ``x0 = floor(coords[b, h, w])``, ``t = coords[b, h, w] - x0``, ``k = -R..R`` and zeros outside
    ``0..W2-1`` (``grid_sample``'s bilinear sampling with ``align_corners=True`` and zero padding, in one
    dimension).  Differentiable in ``volume`` and ``coords`` (the derivative of the blend weights; at an
    integer coordinate the one from the right).  Any floating dtype; half precision computes in float32.

    Example:
        >>> import torch, corr_taichi
        >>> volume, coords = torch.randn(1, 4, 10, 10), torch.rand(1, 4, 10) * 9
        >>> corr_taichi.volume_lookup1d(volume, coords, radius=2).shape
        torch.Size([1, 5, 4, 10])
    """
    radius = check_volume_lookup1d(volume, coords, radius, "volume_lookup1d")
    return _lookup1d.volume_lookup1d_op(volume, coords, radius)


def correlation_lookup1d(fmap1: Tensor, fmap2: Tensor, coords: Tensor, radius: int,
                         scale: float | None = None) -> Tensor:
    r""":func:`volume_lookup1d` in the volume ``scale * sum_c fmap1[b, c, h, x1] * fmap2[b, c, h, x2]``,
    computed on the fly: the ``W1 x W2`` volume is never formed (memory of the output only).

    Shape:
        - fmap1: ``(B, C, H, W1)``, fmap2: ``(B, C, H, W2)``
        - coords: ``(B, H, W1)``
        - output: ``(B, 2 * radius + 1, H, W1)``

    ``scale`` defaults to ``1 / sqrt(C)``, RAFT-Stereo's.  Differentiable in ``fmap1``, ``fmap2`` and
    ``coords``; every gradient is written by one thread per element (deterministic).

    Example:
        >>> import torch, corr_taichi
        >>> f1, f2 = torch.randn(1, 16, 4, 10), torch.randn(1, 16, 4, 12)
        >>> corr_taichi.correlation_lookup1d(f1, f2, torch.rand(1, 4, 10) * 11, radius=3).shape
        torch.Size([1, 7, 4, 10])
    """
    radius = check_lookup1d(fmap1, fmap2, coords, radius, "correlation_lookup1d")
    scale = 1.0 / math.sqrt(max(fmap1.shape[1], 1)) if scale is None else float(scale)
    return _lookup1d.correlation_lookup1d_op(fmap1, fmap2, coords, radius, scale)
