"""The 2-D flow-guided lookup (RAFT's correlation lookup), registered with ``torch.library``.

``corr_taichi::correlation_lookup(fmap1, fmap2, coords, radius, x_major, scale)`` samples the
correlation of each ``fmap1`` pixel with ``fmap2`` bilinearly at the ``(2R + 1)**2`` positions
``coords + (dx, dy)``, without the all-pairs volume.  Taichi kernels for the forward and every gradient
(:mod:`._lookup2d_kernels`), fake tensors for ``torch.compile``, and a pure-PyTorch decomposition
(:func:`.reference.correlation_lookup`) for ONNX and for processes where Taichi cannot run.
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
from .reference import correlation_lookup

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


def _sorted_by_window(window_cells, xy: Tensor, height: int, width: int, taps: int) -> tuple[Tensor, Tensor]:
    """The pixels of ``fmap1`` sorted stably by the cell of their window's origin in ``fmap2``'s
    ``height x width`` grid (:func:`._lookup2d_kernels.lookup_kernels`' ``window_cells``), as ``order``
    (flat pixel indices, int32), and where each cell's run starts in it (``starts``, one past the last
    cell too).  A few hundred microseconds at RAFT's sizes: one sort of one key per pixel."""
    batch, _, rows, columns = xy.shape
    cells = torch.empty(batch, rows, columns, dtype=torch.int32, device=xy.device)
    window_cells(xy, cells, height, width)
    count = batch * (height + taps - 1) * (width + taps - 1)
    keys = cells.flatten()
    order = torch.sort(keys, stable=True).indices.to(torch.int32)
    starts = torch.zeros(count + 2, dtype=torch.int32, device=xy.device)
    torch.cumsum(torch.bincount(keys, minlength=count + 1), 0, out=starts[1:])
    return starts, order


def _check_index_limit(fmap1: Tensor, fmap2: Tensor, radius: int) -> None:
    """Taichi indexes ndarrays with 32-bit ints: refuse a call whose buffers would exceed that."""
    batch, channels, height, width = fmap1.shape
    padded = _channel_vectors(channels) * LANES
    largest = max(batch * height * width * max(padded, (2 * radius + 2) ** 2), batch * padded * fmap2[0, 0].numel())
    if largest > MAX_ELEMENTS:
        raise ValueError(f"correlation_lookup: a buffer of this call would hold {largest} elements, more than "
                         f"Taichi's 32-bit indexing allows ({MAX_ELEMENTS}); split the batch")


def _fallback(fmap1: Tensor, fmap2: Tensor) -> bool:
    return fmap1.numel() == 0 or fmap2.numel() == 0 or not usable()


@custom_op("corr_taichi::correlation_lookup")
def correlation_lookup_op(fmap1: Tensor, fmap2: Tensor, coords: Tensor, radius: int, x_major: bool,
                          scale: float) -> Tensor:
    fmap1, fmap2, coords = fmap1.detach(), fmap2.detach(), coords.detach()
    compute = _COMPUTE[fmap1.dtype]
    if _fallback(fmap1, fmap2):
        out = correlation_lookup(fmap1.to(compute), fmap2.to(compute), coords, radius, x_major, scale)
        return out.to(fmap1.dtype)
    _check_index_limit(fmap1, fmap2, radius)
    batch, _, height, width = fmap1.shape
    with _launch(fmap1.device) as (device, cpu):
        a, b = _vectors(fmap1, device), _vectors(fmap2, device)
        xy, bad = _coordinates(coords, device, compute)
        out = torch.empty(batch, height, width, (2 * radius + 1) ** 2, dtype=compute, device=device)
        _kernels(fmap1.dtype, radius, x_major, cpu)[0](a, b, xy, out, float(scale))
        out = out.permute(0, 3, 1, 2)  # channels_last: each pixel's window is written in one place
    if bad is not None:
        out.masked_fill_(bad, float("nan"))
    return out.to(device=fmap1.device, dtype=fmap1.dtype)


@correlation_lookup_op.register_fake
def _correlation_lookup_fake(fmap1, fmap2, coords, radius, x_major, scale):
    shape = (fmap1.shape[0], (2 * radius + 1) ** 2, fmap1.shape[2], fmap1.shape[3])
    return torch.empty(shape, dtype=fmap1.dtype, device=fmap1.device, memory_format=torch.channels_last)


@custom_op("corr_taichi::correlation_lookup_backward")
def correlation_lookup_backward_op(grad_out: Tensor, fmap1: Tensor, fmap2: Tensor, coords: Tensor, radius: int,
                                   x_major: bool, scale: float, need_fmap1: bool, need_fmap2: bool,
                                   need_coords: bool) -> tuple[Tensor, Tensor, Tensor]:
    grad_out, fmap1, fmap2, coords = grad_out.detach(), fmap1.detach(), fmap2.detach(), coords.detach()
    needed = (need_fmap1, need_fmap2, need_coords)
    if _fallback(fmap1, fmap2):
        return _reference_grads(correlation_lookup, (fmap1, fmap2, coords), needed, grad_out, radius, x_major, scale)
    _check_index_limit(fmap1, fmap2, radius)
    compute = _COMPUTE[fmap1.dtype]
    taps = 2 * radius + 2
    grads = [fmap1.new_empty(0), fmap2.new_empty(0), coords.new_empty(0)]
    with _launch(fmap1.device) as (device, cpu):
        _, pixel_backward, window_cells, grad_fmap2 = _kernels(fmap1.dtype, radius, x_major, cpu)
        a, b = _vectors(fmap1, device), _vectors(fmap2, device)
        xy, bad = _coordinates(coords, device, compute)
        g = grad_out.to(device=device, dtype=compute).permute(0, 2, 3, 1).contiguous()  # pixel-major
        weights = torch.empty(a.shape[0], a.shape[1], a.shape[2], taps * taps, dtype=compute, device=device)
        grad_xy = torch.empty_like(xy) if need_coords else xy.new_empty(1, 1, 1, 1)

        def pixels(grad_a: Tensor) -> None:
            pixel_backward(g, a, b, xy, weights, grad_a, grad_xy, float(scale), int(need_fmap1), int(need_coords))

        if need_fmap1:
            grads[0] = _gradient(fmap1, device, pixels)
        else:
            pixels(a.new_empty((1, 1, 1) + a.shape[3:]))
        if need_fmap2:
            starts, order = _sorted_by_window(window_cells, xy, b.shape[1], b.shape[2], taps)
            grads[1] = _gradient(fmap2, device, lambda view: grad_fmap2(weights, a, starts, order, view))
        if need_coords:
            if bad is not None:
                grad_xy.masked_fill_(bad, float("nan"))
            grads[2] = grad_xy.to(device=coords.device, dtype=coords.dtype)
    return tuple(grads)


@correlation_lookup_backward_op.register_fake
def _correlation_lookup_backward_fake(grad_out, fmap1, fmap2, coords, radius, x_major, scale, need_fmap1, need_fmap2,
                                      need_coords):
    def like(t: Tensor, need: bool) -> Tensor:
        return torch.empty_like(t, memory_format=torch.channels_last) if need else t.new_empty(0)

    return (like(fmap1, need_fmap1), like(fmap2, need_fmap2),
            torch.empty_like(coords) if need_coords else coords.new_empty(0))


correlation_lookup_backward_op.not_differentiable()


def _setup(ctx, inputs, output) -> None:
    fmap1, fmap2, coords, radius, x_major, scale = inputs
    ctx.save_for_backward(fmap1, fmap2, coords)
    ctx.radius, ctx.x_major, ctx.scale = radius, x_major, scale


def _backward(ctx, grad_out: Tensor):
    fmap1, fmap2, coords = ctx.saved_tensors
    needed = ctx.needs_input_grad[:3]
    grads = correlation_lookup_backward_op(grad_out, fmap1, fmap2, coords, ctx.radius, ctx.x_major, ctx.scale,
                                           *needed)
    return (*(grad if need else None for grad, need in zip(grads, needed)), None, None, None)


correlation_lookup_op.register_autograd(_backward, setup_context=_setup)
