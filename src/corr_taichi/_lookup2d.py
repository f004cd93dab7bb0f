"""The 2-D flow-guided lookup (RAFT's correlation lookup), registered with ``torch.library``.

``corr_taichi::correlation_lookup(fmap1, fmap2, coords, radius, x_major, scale)`` samples the
correlation of each ``fmap1`` pixel with each map of the list ``fmap2`` (one map, or a pyramid's levels,
level ``i`` at ``coords / 2**i``) bilinearly at the ``(2R + 1)**2`` positions ``coords + (dx, dy)``,
without the all-pairs volume, into one ``(B, L (2R + 1)**2, H1, W1)`` tensor: RAFT's block in one call,
written in place by the kernels (no per-level buffers, no concatenation).  Taichi kernels for the
forward and every gradient (:mod:`._lookup2d_kernels`), fake tensors for ``torch.compile``, and a
pure-PyTorch decomposition (:func:`.reference.correlation_lookup_levels`) for ONNX and for processes
where Taichi cannot run.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _lookup2d_kernels
from ._lookup1d import _gradient, _reference_grads, _taichi, _vectors
from ._kernels import LANES
from ._layouts import _COMPUTE, _channel_vectors
from ._library import custom_op
from ._op import _launch
from ._runtime import MAX_ELEMENTS, usable
from .reference import correlation_lookup_levels

#: a coordinate is moved here when it is not finite (so that no kernel turns it into an index); the
#: pixel's outputs are then set to NaN, as ``grid_sample`` gives.
_FAR = -1.0e9


def _kernels(dtype: torch.dtype, radius: int, x_major: bool, cpu: bool):
    return _lookup2d_kernels.lookup_kernels(_taichi(dtype), radius, x_major, cpu)


def _coordinates(coords: Tensor, device: torch.device, compute: torch.dtype) -> tuple[Tensor, Tensor | None]:
    """``coords`` on ``device`` in ``compute``, contiguous, with non-finite values moved far outside; and
    the ``(B, 1, H, W)`` mask of pixels that had one (``None`` when all are finite)."""
    xy = coords.to(device=device, dtype=compute).contiguous()
    bad = ~torch.isfinite(xy)
    if not bool(bad.any()):
        return xy, None
    return torch.where(bad, torch.full_like(xy, _FAR), xy), bad.any(dim=1, keepdim=True)


def _sorted_by_window(window_cells, xy: Tensor, shrink: float, height: int, width: int,
                      taps: int) -> tuple[Tensor, Tensor]:
    """The pixels of ``fmap1`` sorted stably by the cell of their window's origin (at ``shrink * xy``) in
    ``fmap2``'s ``height x width`` grid (:func:`._lookup2d_kernels.lookup_kernels`' ``window_cells``), as ``order``
    (flat pixel indices, int32), and where each cell's run starts in it (``starts``, one past the last
    cell too).  A few hundred microseconds at RAFT's sizes: one sort of one key per pixel."""
    batch, _, rows, columns = xy.shape
    cells = torch.empty(batch, rows, columns, dtype=torch.int32, device=xy.device)
    window_cells(xy, cells, shrink, height, width)
    count = batch * (height + taps - 1) * (width + taps - 1)
    keys = cells.flatten()
    order = torch.sort(keys, stable=True).indices.to(torch.int32)
    starts = torch.zeros(count + 2, dtype=torch.int32, device=xy.device)
    torch.cumsum(torch.bincount(keys, minlength=count + 1), 0, out=starts[1:])
    return starts, order


def _check_index_limit(fmap1: Tensor, levels: list[Tensor], radius: int) -> None:
    """Taichi indexes ndarrays with 32-bit ints: refuse a call whose buffers would exceed that."""
    batch, channels, height, width = fmap1.shape
    padded = _channel_vectors(channels) * LANES
    pixels = batch * height * width
    largest = max([pixels * max(padded, (2 * radius + 2) ** 2, len(levels) * (2 * radius + 1) ** 2)]
                  + [batch * padded * level[0, 0].numel() for level in levels])
    if largest > MAX_ELEMENTS:
        raise ValueError(f"correlation_lookup: a buffer of this call would hold {largest} elements, more than "
                         f"Taichi's 32-bit indexing allows ({MAX_ELEMENTS}); split the batch")


def _fallback(fmap1: Tensor, levels: list[Tensor]) -> bool:
    return fmap1.numel() == 0 or any(level.numel() == 0 for level in levels) or not usable()


def _shrink(level: int) -> float:
    """The factor of level ``level``'s coordinates: ``1 / 2**level``, exact in every float type."""
    return 0.5**level


def _levels_reference_grads(levels: list[Tensor], needed: tuple, grad_out: Tensor, fmap1: Tensor, coords: Tensor,
                            radius: int, x_major: bool, scale: float) -> tuple[Tensor, list[Tensor], Tensor]:
    """The gradients from the pure-PyTorch lookup (processes where Taichi cannot run), through
    :func:`._lookup1d._reference_grads` with the levels as inputs of their own; NaN for a coordinate that is
    not finite, as the kernels give."""
    need_fmap1, need_levels, need_coords = needed

    def lookup(a: Tensor, xy: Tensor, *bs: Tensor) -> Tensor:
        return correlation_lookup_levels(a, list(bs), xy, radius, x_major, scale)

    grad_a, grad_xy, *grad_levels = _reference_grads(lookup, (fmap1, coords, *levels),
                                                     (need_fmap1, need_coords) + (need_levels,) * len(levels),
                                                     grad_out)
    if need_coords:
        grad_xy = grad_xy.masked_fill(~torch.isfinite(coords).all(1, keepdim=True), float("nan"))
    return grad_a, grad_levels, grad_xy


@custom_op("corr_taichi::correlation_lookup")
def correlation_lookup_op(fmap1: Tensor, fmap2: list[Tensor], coords: Tensor, radius: int, x_major: bool,
                          scale: float) -> Tensor:
    """The lookups of ``fmap1`` in each map of ``fmap2`` (a pyramid's levels: level ``i`` at ``coords /
    2**i``), concatenated level-major: ``(B, L (2R + 1)**2, H1, W1)``, contiguous."""
    fmap1, coords = fmap1.detach(), coords.detach()
    levels = [level.detach() for level in fmap2]
    compute = _COMPUTE[fmap1.dtype]
    if _fallback(fmap1, levels):
        out = correlation_lookup_levels(fmap1.to(compute), [level.to(compute) for level in levels], coords, radius,
                                        x_major, scale)
        return out.to(fmap1.dtype)
    _check_index_limit(fmap1, levels, radius)
    batch, _, height, width = fmap1.shape
    window = (2 * radius + 1) ** 2
    with _launch(fmap1.device) as (device, cpu):
        forward = _kernels(fmap1.dtype, radius, x_major, cpu)[0]
        a = _vectors(fmap1, device)
        xy, bad = _coordinates(coords, device, compute)
        out = torch.empty(batch, len(levels) * window, height, width, dtype=compute, device=device)
        for i, level in enumerate(levels):
            forward(a, _vectors(level, device), xy, out, float(scale), _shrink(i), i * window)
    if bad is not None:
        out.masked_fill_(bad, float("nan"))
    return out.to(device=fmap1.device, dtype=fmap1.dtype)


@correlation_lookup_op.register_fake
def _correlation_lookup_fake(fmap1, fmap2, coords, radius, x_major, scale):
    return fmap1.new_empty(fmap1.shape[0], len(fmap2) * (2 * radius + 1) ** 2, fmap1.shape[2], fmap1.shape[3])


@custom_op("corr_taichi::correlation_lookup_backward")
def correlation_lookup_backward_op(grad_out: Tensor, fmap1: Tensor, fmap2: list[Tensor], coords: Tensor, radius: int,
                                   x_major: bool, scale: float, need_fmap1: bool, need_fmap2: bool,
                                   need_coords: bool) -> tuple[Tensor, list[Tensor], Tensor]:
    """The gradients of :func:`correlation_lookup_op` for the output gradient ``grad_out``: ``fmap1``'s and the
    coordinates' summed over the levels, and each level's; an empty tensor for each one not needed."""
    grad_out, fmap1, coords = grad_out.detach(), fmap1.detach(), coords.detach()
    levels = [level.detach() for level in fmap2]
    needed = (need_fmap1, need_fmap2, need_coords)
    if _fallback(fmap1, levels):
        return _levels_reference_grads(levels, needed, grad_out, fmap1, coords, radius, x_major, scale)
    _check_index_limit(fmap1, levels, radius)
    compute = _COMPUTE[fmap1.dtype]
    taps, window = 2 * radius + 2, (2 * radius + 1) ** 2
    grad_levels = [level.new_empty(0) for level in levels]
    with _launch(fmap1.device) as (device, cpu):
        _, pixel_backward, window_cells, grad_fmap2 = _kernels(fmap1.dtype, radius, x_major, cpu)
        a = _vectors(fmap1, device)
        xy, bad = _coordinates(coords, device, compute)
        g = grad_out.to(device=device, dtype=compute).contiguous()
        weights = torch.empty(a.shape[0], a.shape[1], a.shape[2], taps * taps, dtype=compute, device=device)
        grad_xy = torch.empty_like(xy) if need_coords else xy.new_empty(1, 1, 1, 1)

        def pixels(grad_a: Tensor) -> None:  # every level's weights, with grad_fmap2 of each in between
            for i, level in enumerate(levels):
                b = _vectors(level, device)
                pixel_backward(g, a, b, xy, weights, grad_a, grad_xy, float(scale), _shrink(i), i * window,
                               int(need_fmap1), int(need_coords), int(i > 0))
                if need_fmap2:
                    starts, order = _sorted_by_window(window_cells, xy, _shrink(i), b.shape[1], b.shape[2], taps)
                    grad_levels[i] = _gradient(level, device, lambda view: grad_fmap2(weights, a, starts, order, view))

        grad_a = _gradient(fmap1, device, pixels) if need_fmap1 else fmap1.new_empty(0)
        if not need_fmap1:
            pixels(a.new_empty((1, 1, 1) + a.shape[3:]))
        grad_coords = coords.new_empty(0)
        if need_coords:
            if bad is not None:
                grad_xy.masked_fill_(bad, float("nan"))
            grad_coords = grad_xy.to(device=coords.device, dtype=coords.dtype)
    return grad_a, grad_levels, grad_coords


@correlation_lookup_backward_op.register_fake
def _correlation_lookup_backward_fake(grad_out, fmap1, fmap2, coords, radius, x_major, scale, need_fmap1, need_fmap2,
                                      need_coords):
    def like(t: Tensor, need: bool) -> Tensor:
        return torch.empty_like(t, memory_format=torch.channels_last) if need else t.new_empty(0)

    return (like(fmap1, need_fmap1), [like(level, need_fmap2) for level in fmap2],
            torch.empty_like(coords) if need_coords else coords.new_empty(0))


correlation_lookup_backward_op.not_differentiable()


def _setup(ctx, inputs, output) -> None:
    fmap1, fmap2, coords, radius, x_major, scale = inputs
    ctx.save_for_backward(fmap1, coords, *fmap2)
    ctx.radius, ctx.x_major, ctx.scale = radius, x_major, scale


def _backward(ctx, grad_out: Tensor):
    fmap1, coords, *levels = ctx.saved_tensors
    need_fmap1, need_levels, need_coords = ctx.needs_input_grad[:3]
    need_fmap2 = any(need_levels)
    grad_a, grad_levels, grad_xy = correlation_lookup_backward_op(grad_out, fmap1, levels, coords, ctx.radius,
                                                                  ctx.x_major, ctx.scale, need_fmap1, need_fmap2,
                                                                  need_coords)
    return (grad_a if need_fmap1 else None,
            [grad if need else None for grad, need in zip(grad_levels, need_levels)],
            grad_xy if need_coords else None, None, None, None)


correlation_lookup_op.register_autograd(_backward, setup_context=_setup)
