"""The core op, registered with ``torch.library`` (forward, backward, fake tensors, autograd).

``corr_taichi::correlation(input1, input2, geometry, scale)`` takes the 16 ints of a
:class:`~corr_taichi._geometry.Geometry` and a scale factor; every public API is a thin mapping onto
it.  Registering it (rather than calling Taichi from an ``autograd.Function``) is what lets
``torch.compile``, fake tensors and the meta device see through the layer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Sequence

import torch
from torch import Tensor

from . import _kernels
from ._geometry import Geometry
from ._runtime import current_arch_name, ensure_runtime, ti, usable
from .reference import correlation_from_geometry

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


def _nchw(t: Tensor) -> Tensor:
    """Contiguous ``(B, C, H, W)`` tensor of the compute dtype (the GPU kernels' layout)."""
    return t.to(_COMPUTE[t.dtype]).contiguous()


def _reference(input1: Tensor, input2: Tensor, g: Geometry, scale: float) -> Tensor:
    """The pure-PyTorch computation, for processes where Taichi cannot run (forked after it started)."""
    compute = _COMPUTE[input1.dtype]
    return correlation_from_geometry(input1.to(compute), input2.to(compute), g, scale).to(input1.dtype)


@contextlib.contextmanager
def _launch(device: torch.device):
    """Where the kernels' tensors must live for the running Taichi backend, with the CUDA stream
    ordering around the launch.

    * Taichi's CPU backend: CPU tensors (CUDA inputs are copied to the host and back).
    * Taichi's CUDA backend: CUDA tensors on the device Taichi runs on; torch's current stream is
      synchronised before the launch and Taichi's work after it, so no stream races.
    * Vulkan, Metal, OpenGL: CPU tensors, which Taichi copies to and from the GPU itself.
    """
    ensure_runtime(device)
    arch = current_arch_name()
    if arch == "cuda":
        if device.type == "cuda" and (device.index or 0) != 0:
            raise ValueError(
                f"correlation: Taichi's CUDA backend runs on cuda:0 (the first visible GPU), got tensors on "
                f"{device}; set CUDA_VISIBLE_DEVICES so that the GPU you use is the first one"
            )
        run_device = torch.device("cuda", 0)
        torch.cuda.current_stream(run_device).synchronize()
        yield run_device, False
        ti.sync()
    else:
        yield torch.device("cpu"), arch in ("x64", "arm64")


@torch.library.custom_op("corr_taichi::correlation", mutates_args=())
def correlation_op(input1: Tensor, input2: Tensor, geometry: Sequence[int], scale: float) -> Tensor:
    g = Geometry.from_list(geometry)
    compute = _COMPUTE[input1.dtype]
    shape = g.output_shape(input1.shape[0])
    if math.prod(shape) == 0 or input1.shape[1] == 0:
        return input1.new_zeros(shape)
    if not usable():
        return _reference(input1, input2, g, scale)
    with _launch(input1.device) as (device, cpu_kernels):
        a, b = input1.to(device), input2.to(device)
        out = torch.empty(shape, dtype=compute, device=device)
        if cpu_kernels:
            _kernels.forward(_channels_last(a), _channels_last(b), out.view(-1), _launch_struct(g), float(scale),
                             _TAICHI[compute])
        else:
            _kernels.forward_gpu(_nchw(a), _nchw(b), out.view(-1), _launch_struct(g), float(scale), _TAICHI[compute])
    return out.to(device=input1.device, dtype=input1.dtype)


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
    needed = ((need_input1, input1, input2), (need_input2, input2, input1))
    if input1.numel() == 0 or grad_output.numel() == 0:
        return tuple(_new_channels_last(x, x.dtype).zero_() if need else x.new_empty(0) for need, x, _ in needed)
    if not usable():
        with torch.enable_grad():
            a, b = input1.detach().requires_grad_(), input2.detach().requires_grad_()
            grad1, grad2 = torch.autograd.grad(_reference(a, b, g, scale), (a, b), grad_output)
        return tuple(grad.contiguous(memory_format=torch.channels_last) if need else x.new_empty(0)
                     for (need, x, _), grad in zip(needed, (grad1, grad2)))
    grads = []
    with _launch(input1.device) as (device, cpu_kernels):
        flat_grad = grad_output.to(device=device, dtype=compute).contiguous().view(-1)
        struct = _launch_struct(g)
        cpu_kernel = (_kernels.grad_input1, _kernels.grad_input2)
        gpu_kernel = (_kernels.grad_input1_gpu, _kernels.grad_input2_gpu)
        for k, (need, x, other) in enumerate(needed):
            if not need:
                grads.append(x.new_empty(0))
                continue
            other = other.to(device)
            if cpu_kernels:
                grad = torch.empty(x.shape, dtype=compute, device=device, memory_format=torch.channels_last)
                cpu_kernel[k](flat_grad, _channels_last(other), grad.permute(0, 2, 3, 1), struct, float(scale),
                              _TAICHI[compute])
            else:
                grad = torch.empty(x.shape, dtype=compute, device=device)
                gpu_kernel[k](flat_grad, _nchw(other), grad, struct, float(scale), _TAICHI[compute])
            grads.append(grad)
    return tuple(
        grad.to(device=x.device, dtype=x.dtype, memory_format=torch.channels_last) if need else grad
        for (need, x, _), grad in zip(needed, grads)
    )


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
