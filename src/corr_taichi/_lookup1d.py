"""The 1-D lookups (RAFT-Stereo's correlation lookup), registered with ``torch.library``.

* ``corr_taichi::volume_lookup1d(volume, coords, radius)``: a precomputed volume ``(B, H, W1, W2)``
  sampled linearly at ``coords + k`` (``k = -R..R``) into ``(B, 2R + 1, H, W1)``;
* ``corr_taichi::correlation_lookup1d(fmap1, fmap2, coords, radius, scale)``: the same values for the
  volume ``scale * <fmap1[:, :, h, w1], fmap2[:, :, h, w2]>``, computed on the fly, never formed.

Both have Taichi kernels for the forward and every gradient (:mod:`._lookup1d_kernels`), fake tensors
for ``torch.compile`` and a pure-PyTorch decomposition (:mod:`.reference`) for ONNX and for processes
where Taichi cannot run.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _lookup1d_kernels
from ._layouts import _COMPUTE, _cpu_gradient, _cpu_layout
from ._library import custom_op, reference_vjp
from ._op import _launch
from ._runtime import TAICHI_DTYPES, usable
from .reference import correlation_lookup1d, volume_lookup1d


def _taichi(dtype: torch.dtype):
    return TAICHI_DTYPES[_COMPUTE[dtype]]


def _vectors(t: Tensor, device: torch.device) -> Tensor:
    """``(B, C, H, W)`` on ``device`` as the feature kernels' ``(B, H, W, V, LANES)``: the core op's CPU
    layout (channels-last vectors, zero-padded), free for an aligned channels_last tensor of the compute
    dtype whose channels fill whole vectors (``CorrBlock1D`` keeps its feature maps so)."""
    return _cpu_layout(t.to(device))


def _gradient(like: Tensor, device: torch.device, launch) -> Tensor:
    """``launch(view)`` writes a gradient in the feature kernels' layout; returned as ``like``'s
    ``(B, C, H, W)`` channels_last tensor, on its device and of its dtype."""
    grad, view = _cpu_gradient(like.to(device), _COMPUTE[like.dtype])
    launch(view)
    return grad.to(device=like.device, dtype=like.dtype).contiguous(memory_format=torch.channels_last)


def _reference_grads(function, inputs: tuple[Tensor, ...], needed: tuple[bool, ...], grad_out: Tensor, *args):
    """Gradients from the pure-PyTorch implementation (processes where Taichi cannot run)."""
    grads = reference_vjp(lambda *xs: function(*xs, *args), tuple(x.to(_COMPUTE[x.dtype]) for x in inputs), grad_out)
    return tuple(grad.to(x.dtype) if need else x.new_empty(0) for x, grad, need in zip(inputs, grads, needed))


# --------------------------------------------------------------------------- lookup in a volume


@custom_op("corr_taichi::volume_lookup1d")
def volume_lookup1d_op(volume: Tensor, coords: Tensor, radius: int) -> Tensor:
    volume, coords = volume.detach(), coords.detach()
    batch, height, width, _ = volume.shape
    if volume.numel() == 0 or not usable():
        return volume_lookup1d(volume.to(_COMPUTE[volume.dtype]), coords, radius).to(volume.dtype)
    with _launch(volume.device) as (device, _):
        compute = _COMPUTE[volume.dtype]
        vol = volume.to(device=device, dtype=compute).contiguous()
        xs = coords.to(device=device, dtype=compute).contiguous()
        out = torch.empty(batch, 2 * radius + 1, height, width, dtype=compute, device=device)
        forward, _, _ = _lookup1d_kernels.volume_kernels(_taichi(volume.dtype), radius)
        forward(vol, xs, out)
    return out.to(device=volume.device, dtype=volume.dtype)


@volume_lookup1d_op.register_fake
def _volume_lookup1d_fake(volume: Tensor, coords: Tensor, radius: int) -> Tensor:
    return volume.new_empty(volume.shape[0], 2 * radius + 1, volume.shape[1], volume.shape[2])


@custom_op("corr_taichi::volume_lookup1d_backward")
def volume_lookup1d_backward_op(grad_out: Tensor, volume: Tensor, coords: Tensor, radius: int, need_volume: bool,
                                need_coords: bool) -> tuple[Tensor, Tensor]:
    grad_out, volume, coords = grad_out.detach(), volume.detach(), coords.detach()
    needed = (need_volume, need_coords)
    if volume.numel() == 0 or not usable():
        return _reference_grads(volume_lookup1d, (volume, coords), needed, grad_out, radius)
    with _launch(volume.device) as (device, _):
        compute = _COMPUTE[volume.dtype]
        vol = volume.to(device=device, dtype=compute).contiguous()
        xs = coords.to(device=device, dtype=compute).contiguous()
        g = grad_out.to(device=device, dtype=compute).contiguous()
        _, grad_volume_kernel, grad_coords_kernel = _lookup1d_kernels.volume_kernels(_taichi(volume.dtype), radius)
        grads = [volume.new_empty(0), coords.new_empty(0)]
        if need_volume:
            grad = torch.empty_like(vol)
            grad_volume_kernel(g, xs, grad)
            grads[0] = grad.to(device=volume.device, dtype=volume.dtype)
        if need_coords:
            grad = torch.empty_like(xs)
            grad_coords_kernel(g, vol, xs, grad)
            grads[1] = grad.to(device=coords.device, dtype=coords.dtype)
    return tuple(grads)


@volume_lookup1d_backward_op.register_fake
def _volume_lookup1d_backward_fake(grad_out, volume, coords, radius, need_volume, need_coords):
    return (torch.empty_like(volume) if need_volume else volume.new_empty(0),
            torch.empty_like(coords) if need_coords else coords.new_empty(0))


volume_lookup1d_backward_op.not_differentiable()


def _volume_setup(ctx, inputs, output) -> None:
    volume, coords, radius = inputs
    ctx.save_for_backward(volume, coords)
    ctx.radius = radius


def _volume_backward(ctx, grad_out: Tensor):
    volume, coords = ctx.saved_tensors
    need_volume, need_coords = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    grad_volume, grad_coords = volume_lookup1d_backward_op(grad_out, volume, coords, ctx.radius, need_volume,
                                                           need_coords)
    return (grad_volume if need_volume else None), (grad_coords if need_coords else None), None


volume_lookup1d_op.register_autograd(_volume_backward, setup_context=_volume_setup)


# --------------------------------------------------------------------------- lookup on the fly


@custom_op("corr_taichi::correlation_lookup1d")
def correlation_lookup1d_op(fmap1: Tensor, fmap2: Tensor, coords: Tensor, radius: int, scale: float) -> Tensor:
    fmap1, fmap2, coords = fmap1.detach(), fmap2.detach(), coords.detach()
    batch, _, height, width = fmap1.shape
    if fmap1.numel() == 0 or fmap2.numel() == 0 or not usable():
        compute = _COMPUTE[fmap1.dtype]
        return correlation_lookup1d(fmap1.to(compute), fmap2.to(compute), coords, radius, scale).to(fmap1.dtype)
    with _launch(fmap1.device) as (device, _):
        compute = _COMPUTE[fmap1.dtype]
        a, b = _vectors(fmap1, device), _vectors(fmap2, device)
        xs = coords.to(device=device, dtype=compute).contiguous()
        out = torch.empty(batch, 2 * radius + 1, height, width, dtype=compute, device=device)
        forward = _lookup1d_kernels.feature_kernels(_taichi(fmap1.dtype), radius)[0]
        forward(a, b, xs, out, float(scale))
    return out.to(device=fmap1.device, dtype=fmap1.dtype)


@correlation_lookup1d_op.register_fake
def _correlation_lookup1d_fake(fmap1: Tensor, fmap2: Tensor, coords: Tensor, radius: int, scale: float) -> Tensor:
    return fmap1.new_empty(fmap1.shape[0], 2 * radius + 1, fmap1.shape[2], fmap1.shape[3])


@custom_op("corr_taichi::correlation_lookup1d_backward")
def correlation_lookup1d_backward_op(grad_out: Tensor, fmap1: Tensor, fmap2: Tensor, coords: Tensor, radius: int,
                                     scale: float, need_fmap1: bool, need_fmap2: bool,
                                     need_coords: bool) -> tuple[Tensor, Tensor, Tensor]:
    grad_out, fmap1, fmap2, coords = grad_out.detach(), fmap1.detach(), fmap2.detach(), coords.detach()
    needed = (need_fmap1, need_fmap2, need_coords)
    if fmap1.numel() == 0 or fmap2.numel() == 0 or not usable():
        return _reference_grads(correlation_lookup1d, (fmap1, fmap2, coords), needed, grad_out, radius, scale)
    with _launch(fmap1.device) as (device, _):
        compute = _COMPUTE[fmap1.dtype]
        a, b = _vectors(fmap1, device), _vectors(fmap2, device)
        xs = coords.to(device=device, dtype=compute).contiguous()
        g = grad_out.to(device=device, dtype=compute).contiguous()
        _, grad1, grad2, grad_xs = _lookup1d_kernels.feature_kernels(_taichi(fmap1.dtype), radius)
        grads = [fmap1.new_empty(0), fmap2.new_empty(0), coords.new_empty(0)]
        for i, (need, kernel, partner) in enumerate(((need_fmap1, grad1, b), (need_fmap2, grad2, a))):
            if need:
                grads[i] = _gradient((fmap1, fmap2)[i], device,
                                     lambda view: kernel(g, partner, xs, view, float(scale)))
        if need_coords:
            grad = torch.empty_like(xs)
            grad_xs(g, a, b, xs, grad, float(scale))
            grads[2] = grad.to(device=coords.device, dtype=coords.dtype)
    return tuple(grads)


@correlation_lookup1d_backward_op.register_fake
def _correlation_lookup1d_backward_fake(grad_out, fmap1, fmap2, coords, radius, scale, need_fmap1, need_fmap2,
                                        need_coords):
    def like(t: Tensor, need: bool) -> Tensor:
        return torch.empty_like(t, memory_format=torch.channels_last) if need else t.new_empty(0)

    return (like(fmap1, need_fmap1), like(fmap2, need_fmap2),
            torch.empty_like(coords) if need_coords else coords.new_empty(0))


correlation_lookup1d_backward_op.not_differentiable()


def _features_setup(ctx, inputs, output) -> None:
    fmap1, fmap2, coords, radius, scale = inputs
    ctx.save_for_backward(fmap1, fmap2, coords)
    ctx.radius, ctx.scale = radius, scale


def _features_backward(ctx, grad_out: Tensor):
    fmap1, fmap2, coords = ctx.saved_tensors
    needed = ctx.needs_input_grad[:3]
    grads = correlation_lookup1d_backward_op(grad_out, fmap1, fmap2, coords, ctx.radius, ctx.scale, *needed)
    return (*(grad if need else None for grad, need in zip(grads, needed)), None, None)


correlation_lookup1d_op.register_autograd(_features_backward, setup_context=_features_setup)
