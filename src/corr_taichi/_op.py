"""The core op, registered with ``torch.library`` (forward, backward, fake tensors, autograd).

``corr_taichi::correlation(input1, input2, geometry, scale)`` takes the 16 ints of a
:class:`~corr_taichi._geometry.Geometry` and a scale factor; every public API is a thin mapping onto
it.  Registering it (rather than calling Taichi from an ``autograd.Function``) is what lets
``torch.compile``, fake tensors and the meta device see through the layer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Sequence

import torch
from torch import Tensor

from . import _gpu_kernels, _kernel_helpers, _kernels, _pixel_tile_kernels, _row_path
from ._dispatch import CPU_ARCHS, Piece, Plan, force_paths, gradient_format, pieces_of, plan, record
from ._geometry import Geometry
from ._layouts import _COMPUTE, _cpu_gradient, _cpu_layout, _pixel_major
from ._library import custom_op, reference_vjp
from ._runtime import TAICHI_DTYPES, current_arch_name, ensure_runtime, struct, sync, usable
from .reference import correlation_from_geometry

_TAICHI = TAICHI_DTYPES


def _as_gradients(needed, grads, fmt: torch.memory_format) -> tuple[Tensor, Tensor]:
    """The computed gradients in their inputs' device and dtype and in ``fmt``; empty where not needed."""
    return tuple(grad.to(device=x.device, dtype=x.dtype).contiguous(memory_format=fmt) if need else x.new_empty(0)
                 for (need, x, _), grad in zip(needed, grads))


@functools.lru_cache(maxsize=_kernel_helpers.STRUCT_CACHE_SIZE)
def _launch_struct(geometry: Geometry):
    """The kernels' struct of ``geometry``, built once per geometry: building a Taichi struct costs tens
    of microseconds of Python, a launch's largest fixed cost after the launch itself."""
    return struct(_kernel_helpers.GeometryStruct, **dataclasses.asdict(geometry))


def _windowed_forward(out: Tensor, g: Geometry, tap: Geometry, scale: float, height: int, width: int,
                      single_tap) -> None:
    """``out`` (contiguous ``(B, PH, PW, oH, oW)``) from ``single_tap(target, geometry, scale)``, a
    forward kernel's launch: on ``g`` itself where ``tap`` is ``g``, else on the per-pixel products
    ``tap`` summed over each kernel window (:func:`window_sum`)."""
    if tap is g:
        single_tap(out, g, scale)
        return
    products = torch.empty(tap.output_shape(out.shape[0]), dtype=out.dtype, device=out.device)
    single_tap(products, tap, 1.0)
    _kernels.window_kernels(_TAICHI[out.dtype]).window_sum(products.view(-1), out.view(-1), height, width,
                                                           _launch_struct(g), scale)


def _window_sum_gradient(grad_out: Tensor, g: Geometry, tap: Geometry, scale: float, height: int,
                         width: int) -> Tensor:
    """The gradient of the per-pixel products ``tap`` from the output gradient of ``g`` (the backward of
    :func:`_windowed_forward`'s window sums), in the products' ``(B, PH, PW, H, W)`` shape."""
    grad_products = torch.empty(tap.output_shape(grad_out.shape[0]), dtype=grad_out.dtype, device=grad_out.device)
    _kernels.window_kernels(_TAICHI[grad_out.dtype]).window_sum_grad(grad_out.reshape(-1), grad_products.view(-1),
                                                                     height, width, _launch_struct(g), scale)
    return grad_products


def _nchw(t: Tensor) -> Tensor:
    """Contiguous ``(B, C, H, W)`` tensor of the compute dtype (the GPU kernels' layout)."""
    return t.to(_COMPUTE[t.dtype]).contiguous()


def _reference(input1: Tensor, input2: Tensor, g: Geometry, scale: float) -> Tensor:
    """The pure-PyTorch computation, for processes where Taichi cannot run (forked after it started)."""
    compute = _COMPUTE[input1.dtype]
    return correlation_from_geometry(input1.to(compute), input2.to(compute), g, scale).to(input1.dtype)


def _backend(device: torch.device):
    """The Taichi backend a call on tensors of ``device`` runs on, for :func:`plan` (which asks only
    for calls with work to do): the runtime is started here if need be; ``None`` where Taichi cannot
    run in this process."""
    def arch() -> str | None:
        if not usable():
            return None
        ensure_runtime(device)
        return current_arch_name()
    return arch


@contextlib.contextmanager
def _launch(device: torch.device):
    """Where the kernels' tensors must live for the running Taichi backend, and whether that backend
    is the CPU, with the CUDA stream ordering around the launch.

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
        sync()
    else:
        yield torch.device("cpu"), arch in CPU_ARCHS


def _kernel_for(name: str, p: Plan, dtype: torch.dtype):
    """The Taichi kernel ``name`` (``forward``, ``grad_input1``, ``grad_input2``) of plan ``p`` for the
    compute ``dtype``, and how it reads its :func:`_cpu_layout` tensors (the CPU gradient kernels, in
    chunks of ``p.vectors`` channel vectors) or NCHW tensors (the GPU kernels)."""
    taichi_dtype = _TAICHI[dtype]
    same = lambda t: t  # noqa: E731
    if p.path in ("gpu_tiled", "gpu_simple"):
        return getattr(_gpu_kernels.gpu_kernels(taichi_dtype), f"{name}_{p.path[4:]}"), same
    if name == "forward" and p.path == "pixel_tiles":
        return _pixel_tile_kernels.forward_kernel(taichi_dtype), same
    if name == "forward":
        return _kernels.correlation_kernels(taichi_dtype).forward, same
    if p.path == "pixel_tiles":
        kernels = _pixel_tile_kernels.gradient_kernels(taichi_dtype, p.vectors, p.pixels)
    else:
        kernels = _kernels.gradient_kernels(taichi_dtype, p.vectors)
    vectors = p.vectors
    return getattr(kernels, name), lambda t: t.view(t.shape[:3] + (t.shape[3] // vectors, vectors, t.shape[4]))


def _cpu_kernels(g: Geometry, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> tuple:
    """``(kernel, view)`` of the forward, ``grad_input1`` and ``grad_input2`` that the op launches on the
    CPU layouts for this call where it does not take the row path; for benchmarks that time them alone."""
    with force_paths(row_path=False):
        forward, backward = plan(g, shape, "x64"), plan(g, shape, "x64", backward=True)
    return tuple(_kernel_for(name, backward if name != "forward" else forward, dtype)
                 for name in ("forward", "grad_input1", "grad_input2"))


@custom_op("corr_taichi::correlation")
def correlation_op(input1: Tensor, input2: Tensor, geometry: Sequence[int], scale: float) -> Tensor:
    # Taichi gives a tensor that requires grad a zero .grad of its size at every launch: detached
    # aliases keep it from allocating (and zero-filling) behind the caller's back
    input1, input2 = input1.detach(), input2.detach()
    g = Geometry.from_list(geometry)
    compute = _COMPUTE[input1.dtype]
    shape = g.output_shape(input1.shape[0])
    p = record(plan(g, input1.shape, _backend(input1.device)))
    if p.path == "empty":
        return input1.new_zeros(shape)
    if p.path == "reference":
        return _reference(input1, input2, g, scale)
    height, width = input1.shape[2:]
    with _launch(input1.device) as (device, _):
        a, b = input1.to(device), input2.to(device)
        out = torch.empty(shape, dtype=compute, device=device)
        if p.path == "row":  # few channels
            _windowed_forward(out, g, p.pieces[0].tap, float(scale), height, width,
                              lambda target, geometry, s: _row_path.forward(a, b, target, geometry, s))
            return out.to(device=input1.device, dtype=input1.dtype)
        a, b = (_cpu_layout(a), _cpu_layout(b)) if p.on_cpu else (_nchw(a), _nchw(b))
        kernel, _ = _kernel_for("forward", p, compute)
        for piece in p.pieces:
            x1, x2 = a[piece.images], b[piece.images]
            _windowed_forward(out[piece.images, piece.rows], piece.geometry, piece.tap, float(scale), height, width,
                              lambda target, geometry, s: kernel(x1, x2, target.view(-1), _launch_struct(geometry), s))
    return out.to(device=input1.device, dtype=input1.dtype)


@correlation_op.register_fake
def _correlation_fake(input1: Tensor, input2: Tensor, geometry: Sequence[int], scale: float) -> Tensor:
    return input1.new_empty(Geometry.from_list(geometry).output_shape(input1.shape[0]))


@custom_op("corr_taichi::correlation_backward")
def correlation_backward_op(
    grad_output: Tensor,
    input1: Tensor,
    input2: Tensor,
    geometry: Sequence[int],
    scale: float,
    need_input1: bool,
    need_input2: bool,
) -> tuple[Tensor, Tensor]:
    input1, input2, grad_output = input1.detach(), input2.detach(), grad_output.detach()  # as in the forward
    g = Geometry.from_list(geometry)
    compute = _COMPUTE[input1.dtype]
    needed = ((need_input1, input1, input2), (need_input2, input2, input1))
    p = record(plan(g, input1.shape, _backend(input1.device), backward=True))
    fmt = p.gradient_format
    if p.path == "empty":
        return _as_gradients(needed, (torch.zeros_like(input1), torch.zeros_like(input2)), fmt)
    if p.path == "reference":
        grads = reference_vjp(lambda a, b: _reference(a, b, g, scale), (input1, input2), grad_output)
        return _as_gradients(needed, grads, fmt)
    height, width = input1.shape[2:]
    with _launch(input1.device) as (device, _):
        grad_out = grad_output.to(device=device, dtype=compute).contiguous()
        if p.path == "row":  # few channels
            row_tap = p.pieces[0].tap
            if row_tap is not g:  # back through the window sums first
                grad_out, scale = _window_sum_gradient(grad_out, g, row_tap, float(scale), height, width), 1.0
            grads = _row_path.backward(grad_out, input1.to(device), input2.to(device), row_tap, float(scale),
                                       need_input1, need_input2)
            return _as_gradients(needed, grads, fmt)
        layout = _cpu_layout if p.on_cpu else _nchw
        grads, views, partners = [], [], []
        copy = None  # input2 laid out for input1's gradient, where that is a copy this call made
        for need, x, other in needed:
            if need and p.on_cpu:
                grad, view = _cpu_gradient(x, compute)
            elif need:
                grad = view = torch.empty(x.shape, dtype=compute, device=device)
            else:
                grad = view = x.new_empty(0)
            grads.append(grad)
            views.append(view if need else None)
            if need and copy is not None:
                # input1 laid out for input2's gradient goes into that copy's memory once input1's gradient
                # is done with it: one input-sized temporary fewer, each of which can be page-faulted in afresh
                partners.append(functools.partial(_cpu_layout, other.to(device), copy))
            elif need:
                partners.append(layout(other.to(device)))
                fresh = _kernel_helpers.separate_memory(partners[-1], other)
                copy = partners[-1] if p.on_cpu and fresh and len(p.pieces) == 1 else None
            else:
                partners.append(None)
        for piece in p.pieces:
            _backward_piece(grad_out[piece.images, piece.rows],
                            [q if q is None or callable(q) else q[piece.images] for q in partners],
                            [None if v is None else v[piece.images] for v in views], piece, p,
                            float(scale), height, width, accumulate=piece.rows.start > 0)
    return _as_gradients(needed, grads, fmt)


def _backward_piece(grad_out: Tensor, partners: list, targets: list, piece: Piece, p: Plan, scale: float,
                    height: int, width: int, accumulate: bool) -> None:
    """Input gradients of one piece into ``targets`` (kernel layout; ``None`` where not needed), added to
    what is there when ``accumulate`` (a later piece of patch rows of the same images).  A partner may
    be a function that lays it out when its gradient's turn comes."""
    flat, g = grad_out.reshape(-1), piece.geometry
    if piece.window_sums:  # back through the window sum first, then the single-tap gathers
        flat, g, scale = _window_sum_gradient(grad_out, g, piece.tap, scale, height, width).view(-1), piece.tap, 1.0
    if p.on_cpu:  # the CPU kernels read the output gradient pixel-major: (B, oH, oW, PH, PW)
        flat = _pixel_major(flat.view(grad_out.shape[0], g.patch_h * g.patch_w, g.out_h * g.out_w))
    for name, partner, target in zip(("grad_input1", "grad_input2"), partners, targets):
        if target is None:
            continue
        result = torch.empty_like(target) if accumulate else target
        partner = partner() if callable(partner) else partner
        kernel, layout = _kernel_for(name, p, grad_out.dtype)
        kernel(flat, layout(partner), layout(result), _launch_struct(g), scale)
        if accumulate:
            target += result


@correlation_backward_op.register_fake
def _correlation_backward_fake(grad_output, input1, input2, geometry, scale, need_input1, need_input2):
    fmt = gradient_format(Geometry.from_list(geometry), input1.shape)
    grad1 = torch.empty_like(input1, memory_format=fmt) if need_input1 else input1.new_empty(0)
    grad2 = torch.empty_like(input2, memory_format=fmt) if need_input2 else input2.new_empty(0)
    return grad1, grad2


correlation_backward_op.not_differentiable()


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


def apply(input1: Tensor, input2: Tensor, geometry: Geometry, scale: float = 1.0) -> Tensor:
    """Run the registered op on validated inputs."""
    pieces_of(geometry, *input1.shape)  # refuses what cannot be split below 32-bit indexing
    return correlation_op(input1, input2, geometry.as_list(), float(scale))
