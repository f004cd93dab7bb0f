"""Pure-PyTorch correlation: the oracle for the tests and the "pure PyTorch" benchmark baseline.

A loop over displacements of shifted products summed over channels, followed by a box filter for the
kernel window.  Differentiable by autograd, any dtype and device, no Taichi.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._geometry import Geometry, IntPair, correlation1d_geometry, prepare_inputs, sampler_geometry


def _shifted(x: Tensor, shift_h: int, shift_w: int) -> Tensor | None:
    """``x[..., y + shift_h, x + shift_w]`` with zeros outside, or None when nothing overlaps."""
    height, width = x.shape[-2:]
    if abs(shift_h) >= height or abs(shift_w) >= width:
        return None
    return F.pad(x, (-shift_w, shift_w, -shift_h, shift_h))


def correlation_from_geometry(input1: Tensor, input2: Tensor, geometry: Geometry, scale: float = 1.0) -> Tensor:
    """The op for any :class:`Geometry`: ``(B, PH, PW, oH, oW)``."""
    g = geometry
    batch, _, height, width = input1.shape
    products = []
    for ph in range(g.patch_h):
        for pw in range(g.patch_w):
            shifted = _shifted(input2, g.first_h + ph * g.patch_dilation_h, g.first_w + pw * g.patch_dilation_w)
            if shifted is None:
                products.append(input1.new_zeros(batch, height, width))
            else:
                products.append((input1 * shifted).sum(1))
    stacked = torch.stack(products, 1)  # (B, PH*PW, H, W): per-pixel products for every displacement
    # Window sum: crop/pad the product map to the rows and columns the kernel taps reach, then a
    # ones-kernel convolution with the op's stride and dilation.
    last_h = g.origin_h + (g.out_h - 1) * g.stride_h + (g.kernel_h - 1) * g.dilation_h
    last_w = g.origin_w + (g.out_w - 1) * g.stride_w + (g.kernel_w - 1) * g.dilation_w
    top, left = max(0, -g.origin_h), max(0, -g.origin_w)
    padded = F.pad(stacked, (left, max(0, last_w - (width - 1)), top, max(0, last_h - (height - 1))))
    framed = padded[..., g.origin_h + top:last_h + top + 1, g.origin_w + left:last_w + left + 1]
    channels = stacked.shape[1]
    ones = stacked.new_ones(channels, 1, g.kernel_h, g.kernel_w)
    summed = F.conv2d(framed, ones, stride=(g.stride_h, g.stride_w), dilation=(g.dilation_h, g.dilation_w),
                      groups=channels)
    return (summed * scale).view(g.output_shape(batch))


def correlation(
    input1: Tensor,
    input2: Tensor,
    kernel_size: IntPair = 1,
    patch_size: IntPair = 1,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    dilation_patch: IntPair = 1,
) -> Tensor:
    """Same signature and result as :func:`corr_taichi.correlation`, in plain PyTorch."""
    input1, input2 = prepare_inputs(input1, input2, "reference.correlation")
    geometry = sampler_geometry(
        input1.shape[2], input1.shape[3], kernel_size, patch_size, stride, padding, dilation, dilation_patch,
        api="reference.correlation",
    )
    return correlation_from_geometry(input1, input2, geometry)


def correlation1d(left: Tensor, right: Tensor, max_disp: int, kernel_size: IntPair = 1, stride: IntPair = 1,
                  padding: IntPair = 0, dilation: IntPair = 1, both_directions: bool = False) -> Tensor:
    """Same signature and result as :func:`corr_taichi.correlation1d`, in plain PyTorch."""
    left, right = prepare_inputs(left, right, "reference.correlation1d")
    g = correlation1d_geometry(left.shape[2], left.shape[3], max_disp, kernel_size, stride, padding, dilation,
                               both_directions, api="reference.correlation1d")
    return correlation_from_geometry(left, right, g).view(left.shape[0], g.patch_w, g.out_h, g.out_w)


def _lookup_columns(coords: Tensor, radius: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """For coordinates ``(B, H, W1)``: the ``2R + 2`` column indices ``floor(x) - R + j`` (clamped into the
    row, ``(B, H, W1, 2R + 2)``), which of them lie inside it, and the blend weight ``t = x - floor(x)``
    (zero for coordinates so far outside that no column is inside, as in the kernels)."""
    p0 = torch.floor(coords)
    outside = (p0 < -2 * radius - 2) | (p0 > width + radius + 1)
    t = torch.where(outside, torch.zeros_like(coords), coords - p0)
    p0 = torch.where(outside, torch.full_like(p0, -2 * radius - 2), p0)
    columns = p0.to(torch.int64).unsqueeze(-1) - radius + torch.arange(2 * radius + 2, device=coords.device)
    inside = (columns >= 0) & (columns < width)
    return columns.clamp(0, max(width - 1, 0)), inside, t


def _blend(values: Tensor, t: Tensor) -> Tensor:
    """``(1 - t) v[k] + t v[k + 1]`` for ``k = 0..2R``, from ``(B, H, W1, 2R + 2)`` to ``(B, 2R + 1, H, W1)``."""
    t = t.unsqueeze(-1)
    return ((1 - t) * values[..., :-1] + t * values[..., 1:]).permute(0, 3, 1, 2)


def volume_lookup1d(volume: Tensor, coords: Tensor, radius: int) -> Tensor:
    """Same result as :func:`corr_taichi.volume_lookup1d`, in plain PyTorch (gather and blend)."""
    columns, inside, t = _lookup_columns(coords.to(volume.dtype), radius, volume.shape[3])
    if volume.shape[3] == 0:
        return volume.new_zeros(volume.shape[0], 2 * radius + 1, *volume.shape[1:3])
    values = volume.gather(3, columns) * inside
    return _blend(values, t)


def correlation_lookup1d(fmap1: Tensor, fmap2: Tensor, coords: Tensor, radius: int, scale: float = 1.0) -> Tensor:
    """Same result as :func:`corr_taichi.correlation_lookup1d`, in plain PyTorch: the ``2R + 2`` columns of
    ``fmap2`` around each coordinate gathered, their dot products with ``fmap1``, blended."""
    batch, channels, height, width = fmap1.shape
    columns, inside, t = _lookup_columns(coords.to(fmap1.dtype), radius, fmap2.shape[3])
    if fmap2.shape[3] == 0:
        return fmap1.new_zeros(batch, 2 * radius + 1, height, width)
    rows2 = fmap2.permute(0, 2, 3, 1)  # (B, H, W2, C)
    index = columns.reshape(batch, height, -1, 1).expand(-1, -1, -1, channels)  # (B, H, W1 * (2R + 2), C)
    partners = rows2.gather(2, index).view(batch, height, width, -1, channels)
    values = (partners * fmap1.permute(0, 2, 3, 1).unsqueeze(3)).sum(-1) * inside
    return _blend(values, t) * scale


def correlation_lookup(fmap1: Tensor, fmap2: Tensor, coords: Tensor, radius: int, x_major: bool = True,
                       scale: float = 1.0) -> Tensor:
    """Same result as :func:`corr_taichi.correlation_lookup`, in plain PyTorch: for each of the ``2R + 2``
    rows of whole pixels around each coordinate, the ``2R + 2`` pixels of ``fmap2`` gathered and dotted
    with ``fmap1`` (memory of ``C x (2R + 2)`` values per pixel at a time), then blended bilinearly.  Also
    the pure-PyTorch on-the-fly baseline of the benchmarks, and the ONNX decomposition (Gather, Mul,
    ReduceSum)."""
    batch, channels, height, width = fmap1.shape
    height2, width2 = fmap2.shape[2:]
    side, taps, pixels = 2 * radius + 1, 2 * radius + 2, height * width
    xy = coords.to(fmap1.dtype)
    finite = torch.isfinite(xy)
    xy = torch.where(finite, xy, torch.full_like(xy, -1.0e9))  # far outside: reads nothing
    if height2 == 0 or width2 == 0:
        return fmap1.new_zeros(batch, side * side, height, width)
    columns, column_inside, fx = _lookup_columns(xy[:, 0], radius, width2)  # (B, H, W, taps)
    rows, row_inside, fy = _lookup_columns(xy[:, 1], radius, height2)
    flat2, f1 = fmap2.flatten(2), fmap1.flatten(2).unsqueeze(-1)  # (B, C, H2 W2), (B, C, H W, 1)
    dots = []
    for j in range(taps):
        index = (rows[..., j : j + 1] * width2 + columns).reshape(batch, 1, pixels * taps)
        partners = flat2.gather(2, index.expand(-1, channels, -1)).view(batch, channels, pixels, taps)
        inside = (row_inside[..., j : j + 1] & column_inside).view(batch, pixels, taps)
        dots.append((partners * f1).sum(1) * inside)
    d = torch.stack(dots, 2)  # (B, H W, row j, column i)
    fx, fy = fx.reshape(batch, pixels, 1, 1), fy.reshape(batch, pixels, 1, 1)
    along_x = (1 - fx) * d[..., :-1] + fx * d[..., 1:]
    blended = (1 - fy) * along_x[:, :, :-1] + fy * along_x[:, :, 1:]  # (B, H W, dy, dx)
    blended = blended.permute(0, 3, 2, 1) if x_major else blended.permute(0, 2, 3, 1)
    out = blended.reshape(batch, side * side, height, width) * scale
    return out.masked_fill(~finite.all(1, keepdim=True), float("nan"))


def correlation_lookup_levels(fmap1: Tensor, levels: list[Tensor], coords: Tensor, radius: int, x_major: bool = True,
                              scale: float = 1.0) -> Tensor:
    """:func:`correlation_lookup` of ``fmap1`` in each map of ``levels`` (a pyramid: level ``i`` at ``coords /
    2**i``), concatenated level-major along the channels, as RAFT's ``CorrBlock`` concatenates its levels."""
    xy = coords.to(fmap1.dtype)
    return torch.cat([correlation_lookup(fmap1, level, xy / 2**i, radius, x_major, scale)
                      for i, level in enumerate(levels)], dim=1)
