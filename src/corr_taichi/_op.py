"""The core op, registered with ``torch.library`` (forward, backward, fake tensors, autograd).

``corr_taichi::correlation(input1, input2, geometry, scale)`` takes the 16 ints of a
:class:`~corr_taichi._geometry.Geometry` and a scale factor; every public API is a thin mapping onto
it.  Registering it (rather than calling Taichi from an ``autograd.Function``) is what lets
``torch.compile``, fake tensors and the meta device see through the layer.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch
from torch import Tensor

from . import _kernels
from ._geometry import Geometry
from ._runtime import ensure_runtime, ti

#: compute (and accumulation) dtype of each input dtype; Taichi has no bfloat16, and half inputs
#: are accumulated in float32 anyway.
_COMPUTE = {torch.float32: torch.float32, torch.float64: torch.float64,
            torch.float16: torch.float32, torch.bfloat16: torch.float32}
_TAICHI = {torch.float32: ti.f32, torch.float64: ti.f64}


def _channels_last(t: Tensor) -> Tensor:
    """``(B, H, W, C)`` contiguous tensor of the compute dtype: free for channels_last float32/64
    inputs, one copy (re-layout and conversion together) otherwise."""
    view = t.permute(0, 2, 3, 1)
    if view.dtype == _COMPUTE[t.dtype]:
        return view.contiguous()
    return torch.empty(view.shape, dtype=_COMPUTE[t.dtype], device=t.device).copy_(view)


def _new_channels_last(like: Tensor, dtype: torch.dtype) -> Tensor:
    """An uninitialised NCHW tensor stored channels-last, i.e. whose ``permute(0, 2, 3, 1)`` is
    contiguous."""
    return torch.empty(like.shape, dtype=dtype, device=like.device, memory_format=torch.channels_last)


def _launch_struct(geometry: Geometry):
    return _kernels.GeometryStruct(**dataclasses.asdict(geometry))


@torch.library.custom_op("corr_taichi::correlation", mutates_args=())
def correlation_op(input1: Tensor, input2: Tensor, geometry: Sequence[int], scale: float) -> Tensor:
    g = Geometry.from_list(geometry)
    compute = _COMPUTE[input1.dtype]
    out = input1.new_empty(g.output_shape(input1.shape[0]), dtype=compute)
    if out.numel() == 0 or input1.shape[1] == 0:
        return out.zero_().to(input1.dtype)
    ensure_runtime(input1.device)
    _kernels.forward(_channels_last(input1), _channels_last(input2), out.view(-1), _launch_struct(g), float(scale),
                     _TAICHI[compute])
    return out.to(input1.dtype)


@correlation_op.register_fake
def _correlation_fake(input1: Tensor, input2: Tensor, geometry: Sequence[int], scale: float) -> Tensor:
    return input1.new_empty(Geometry.from_list(geometry).output_shape(input1.shape[0]))


@torch.library.custom_op("corr_taichi::correlation_backward", mutates_args=())
def correlation_backward_op(
    grad_output: Tensor,
    input1: Tensor,
    input2: Tensor,
    geometry: Sequence[int],
    scale: float,
    need_input1: bool,
    need_input2: bool,
) -> tuple[Tensor, Tensor]:
    g = Geometry.from_list(geometry)
    compute = _COMPUTE[input1.dtype]
    grad1 = _new_channels_last(input1, compute) if need_input1 else input1.new_empty(0, dtype=compute)
    grad2 = _new_channels_last(input2, compute) if need_input2 else input2.new_empty(0, dtype=compute)
    if input1.numel() == 0:
        return grad1.to(input1.dtype), grad2.to(input2.dtype)
    if grad_output.numel() == 0:
        return grad1.zero_().to(input1.dtype), grad2.zero_().to(input2.dtype)
    ensure_runtime(input1.device)
    grad_output = grad_output.to(compute).contiguous().view(-1)
    struct = _launch_struct(g)
    if need_input1:
        _kernels.grad_input1(grad_output, _channels_last(input2), grad1.permute(0, 2, 3, 1), struct, float(scale),
                             _TAICHI[compute])
    if need_input2:
        _kernels.grad_input2(grad_output, _channels_last(input1), grad2.permute(0, 2, 3, 1), struct, float(scale),
                             _TAICHI[compute])
    return grad1.to(input1.dtype), grad2.to(input2.dtype)


@correlation_backward_op.register_fake
def _correlation_backward_fake(grad_output, input1, input2, geometry, scale, need_input1, need_input2):
    grad1 = _new_channels_last(input1, input1.dtype) if need_input1 else input1.new_empty(0)
    grad2 = _new_channels_last(input2, input2.dtype) if need_input2 else input2.new_empty(0)
    return grad1, grad2


def _setup_context(ctx, inputs, output) -> None:
    input1, input2, geometry, scale = inputs
    ctx.save_for_backward(input1, input2)
    ctx.geometry = list(geometry)
    ctx.scale = scale


def _backward(ctx, grad_output: Tensor):
    input1, input2 = ctx.saved_tensors
    need1, need2 = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    grad1, grad2 = correlation_backward_op(grad_output, input1, input2, ctx.geometry, ctx.scale, need1, need2)
    return (grad1 if need1 else None), (grad2 if need2 else None), None, None


correlation_op.register_autograd(_backward, setup_context=_setup_context)


#: Taichi 1.7 indexes ndarrays with 32-bit ints: larger tensors would wrap.
MAX_ELEMENTS = 2**31 - 1


def apply(input1: Tensor, input2: Tensor, geometry: Geometry, scale: float = 1.0) -> Tensor:
    """Run the registered op on validated inputs."""
    out_elements = math.prod(geometry.output_shape(input1.shape[0]))
    if max(input1.numel(), out_elements) > MAX_ELEMENTS:
        raise NotImplementedError(
            f"correlation: tensors of more than 2**31 - 1 elements are not supported yet (input "
            f"{input1.numel()} elements, output {out_elements}); split the batch or the image"
        )
    return correlation_op(input1, input2, geometry.as_list(), float(scale))
