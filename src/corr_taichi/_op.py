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
import math
from typing import Sequence

import torch
from torch import Tensor

from . import _gpu_kernels, _kernels, _pixel_tile_kernels, _row_path
from ._geometry import Geometry
from ._layouts import _COMPUTE, _cpu_gradient, _cpu_layout, _pixel_major
from ._runtime import TAICHI_DTYPES, current_arch_name, ensure_runtime, struct, sync, usable
from .reference import correlation_from_geometry

_TAICHI = TAICHI_DTYPES


def _gradient_format(row_tap: Geometry | None) -> torch.memory_format:
    """The input gradients' memory format, given the backward's :func:`_row_geometry`: NCHW where the
    CPU row path computes the backward (it writes NCHW rows), channels-last elsewhere (the
    channel-vector kernels write channels-last).  Decided from shapes alone, so that fake tensors agree
    on every backend."""
    return torch.contiguous_format if row_tap is not None else torch.channels_last


def _as_gradients(needed, grads, fmt: torch.memory_format) -> tuple[Tensor, Tensor]:
    """The computed gradients in their inputs' device and dtype and in ``fmt``; empty where not needed."""
    return tuple(grad.to(device=x.device, dtype=x.dtype).contiguous(memory_format=fmt) if need else x.new_empty(0)
                 for (need, x, _), grad in zip(needed, grads))


@functools.lru_cache(maxsize=_kernels.STRUCT_CACHE_SIZE)
def _launch_struct(geometry: Geometry):
    """The kernels' struct of ``geometry``, built once per geometry: building a Taichi struct costs tens
    of microseconds of Python, a launch's largest fixed cost after the launch itself."""
    return struct(_kernels.GeometryStruct, **dataclasses.asdict(geometry))


#: the per-pixel products replace the direct form when taps x output pixels reach this many times the
#: input pixels (``benchmarks/window_sums_vs_direct.py``: at a ratio of 2.25, kernel 3 at stride 2, the
#: window sums are faster forward and backward).
WINDOW_SUMS_FROM = 1.0


def _product_geometry(g: Geometry, height: int, width: int) -> Geometry | None:
    """With a kernel window of several taps, the geometry of the per-pixel products (one tap, stride 1,
    every pixel) when computing those once and summing them over each window (:func:`window_sum`) is
    cheaper than correlating every tap of every output pixel: typically at stride 1, where neighbouring
    windows share all but one row or column of taps.  ``None`` when the direct form is cheaper."""
    taps = g.kernel_h * g.kernel_w
    if taps == 1 or taps * g.out_h * g.out_w < WINDOW_SUMS_FROM * height * width:
        return None
    return dataclasses.replace(g, kernel_h=1, kernel_w=1, dilation_h=1, dilation_w=1, stride_h=1, stride_w=1,
                               origin_h=0, origin_w=0, out_h=height, out_w=width)


def _row_geometry(g: Geometry, shape: Sequence[int], backward: bool = False) -> Geometry | None:
    """The single-tap geometry the CPU row path (:mod:`._row_path`) computes for a call on inputs of
    ``shape`` (its forward, or its backward): ``g`` itself, or its per-pixel products when a window of
    several taps is summed over them; ``None`` when the row path does not take the call."""
    tap = g if g.kernel_h * g.kernel_w == 1 else _product_geometry(g, *shape[2:])
    return tap if tap is not None and _row_path.takes(tap, *shape, backward=backward) else None


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
    _kernels.window_sum(products.view(-1), out.view(-1), height, width, _launch_struct(g), scale,
                        _TAICHI[out.dtype])


def _window_sum_gradient(grad_out: Tensor, g: Geometry, tap: Geometry, scale: float, height: int,
                         width: int) -> Tensor:
    """The gradient of the per-pixel products ``tap`` from the output gradient of ``g`` (the backward of
    :func:`_windowed_forward`'s window sums), in the products' ``(B, PH, PW, H, W)`` shape."""
    grad_products = torch.empty(tap.output_shape(grad_out.shape[0]), dtype=grad_out.dtype, device=grad_out.device)
    _kernels.window_sum_grad(grad_out.reshape(-1), grad_products.view(-1), height, width, _launch_struct(g), scale,
                             _TAICHI[grad_out.dtype])
    return grad_products


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
        sync()
    else:
        yield torch.device("cpu"), arch in ("x64", "arm64")


def _kernel_for(name: str, g: Geometry, partner: Tensor, cpu_kernels: bool):
    """The Taichi kernel ``name`` (``forward``, ``grad_input1``, ``grad_input2``) for this backend and
    call, and how it reads its :func:`_cpu_layout` tensors (the CPU gradient kernels, in chunks of
    channel vectors) or NCHW tensors (the GPU kernels, tiled where the geometry allows)."""
    if cpu_kernels and name == "forward":
        if _pixel_tile_kernels.takes_forward(g):
            return _pixel_tile_kernels.forward_kernel(_TAICHI[partner.dtype]), lambda t: t
        return _kernels.correlation_kernels(_TAICHI[partner.dtype]).forward, lambda t: t
    if cpu_kernels:
        if _pixel_tile_kernels.takes(g):
            vectors, pixels = _pixel_tile_kernels.tile_shape(partner.shape[3])
            kernels = _pixel_tile_kernels.gradient_kernels(_TAICHI[partner.dtype], vectors, pixels)
        else:
            vectors = _kernels.chunk_vectors(partner.shape[3])
            kernels = _kernels.gradient_kernels(_TAICHI[partner.dtype], vectors)
        return getattr(kernels, name), lambda t: t.view(t.shape[:3] + (t.shape[3] // vectors, vectors, t.shape[4]))
    variant = "tiled" if _gpu_kernels.tiled(g, *partner.shape) else "simple"
    return getattr(_gpu_kernels, f"{name}_{variant}"), lambda t: t


def _forward_piece(a: Tensor, b: Tensor, out: Tensor, g: Geometry, scale: float, height: int, width: int,
                   cpu_kernels: bool) -> None:
    """``out`` (contiguous ``(B, PH, PW, oH, oW)``) from kernel-layout inputs of ``height`` x ``width``
    pixels, directly or as per-pixel products summed over each kernel window."""
    def single_tap(target: Tensor, geometry: Geometry, s: float) -> None:
        kernel, _ = _kernel_for("forward", geometry, a, cpu_kernels)
        kernel(a, b, target.view(-1), _launch_struct(geometry), s, _TAICHI[target.dtype])

    _windowed_forward(out, g, _product_geometry(g, height, width) or g, scale, height, width, single_tap)


@torch.library.custom_op("corr_taichi::correlation", mutates_args=())
def correlation_op(input1: Tensor, input2: Tensor, geometry: Sequence[int], scale: float) -> Tensor:
    # Taichi gives a tensor that requires grad a zero .grad of its size at every launch: detached
    # aliases keep it from allocating (and zero-filling) behind the caller's back
    input1, input2 = input1.detach(), input2.detach()
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
        tap = _row_geometry(g, input1.shape) if cpu_kernels else None
        if tap is not None:  # few channels: the row path
            _windowed_forward(out, g, tap, float(scale), *input1.shape[2:],
                              lambda target, geometry, s: _row_path.forward(a, b, target, geometry, s))
            return out.to(device=input1.device, dtype=input1.dtype)
        a, b = (_cpu_layout(a), _cpu_layout(b)) if cpu_kernels else (_nchw(a), _nchw(b))
        for piece in _pieces(g, *input1.shape):
            _forward_piece(a[piece.images], b[piece.images], out[piece.images, piece.rows], piece.geometry,
                           float(scale), *input1.shape[2:], cpu_kernels)
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
    input1, input2, grad_output = input1.detach(), input2.detach(), grad_output.detach()  # as in the forward
    g = Geometry.from_list(geometry)
    compute = _COMPUTE[input1.dtype]
    needed = ((need_input1, input1, input2), (need_input2, input2, input1))
    row_tap = _row_geometry(g, input1.shape, backward=True)
    fmt = _gradient_format(row_tap)
    if input1.numel() == 0 or grad_output.numel() == 0:
        return _as_gradients(needed, (torch.zeros_like(input1), torch.zeros_like(input2)), fmt)
    if not usable():
        with torch.enable_grad():
            a, b = input1.detach().requires_grad_(), input2.detach().requires_grad_()
            grads = torch.autograd.grad(_reference(a, b, g, scale), (a, b), grad_output)
        return _as_gradients(needed, grads, fmt)
    with _launch(input1.device) as (device, cpu_kernels):
        grad_out = grad_output.to(device=device, dtype=compute).contiguous()
        if cpu_kernels and row_tap is not None:  # few channels: the row path
            if row_tap is not g:  # back through the window sums first
                grad_out, scale = _window_sum_gradient(grad_out, g, row_tap, float(scale), *input1.shape[2:]), 1.0
            grads = _row_path.backward(grad_out, input1.to(device), input2.to(device), row_tap, float(scale),
                                       need_input1, need_input2)
            return _as_gradients(needed, grads, fmt)
        layout = _cpu_layout if cpu_kernels else _nchw
        pieces = _pieces(g, *input1.shape)
        grads, views, partners = [], [], []
        copy = None  # input2 laid out for input1's gradient, where that is a copy this call made
        for need, x, other in needed:
            if need and cpu_kernels:
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
                fresh = _kernels.separate_memory(partners[-1], other)
                copy = partners[-1] if cpu_kernels and fresh and len(pieces) == 1 else None
            else:
                partners.append(None)
        for piece in pieces:
            _backward_piece(grad_out[piece.images, piece.rows],
                            [p if p is None or callable(p) else p[piece.images] for p in partners],
                            [None if v is None else v[piece.images] for v in views], piece.geometry,
                            float(scale), *input1.shape[2:], cpu_kernels, accumulate=piece.rows.start > 0)
    return _as_gradients(needed, grads, fmt)


def _backward_piece(grad_out: Tensor, partners: list, targets: list, g: Geometry, scale: float, height: int,
                    width: int, cpu_kernels: bool, accumulate: bool) -> None:
    """Input gradients of one piece into ``targets`` (kernel layout; ``None`` where not needed), added to
    what is there when ``accumulate`` (a later piece of patch rows of the same images).  A partner may
    be a function that lays it out when its gradient's turn comes."""
    dtype = _TAICHI[grad_out.dtype]
    flat = grad_out.reshape(-1)
    gp = _product_geometry(g, height, width)
    if gp is not None:  # back through the window sum first, then the single-tap gathers
        flat, g, scale = _window_sum_gradient(grad_out, g, gp, scale, height, width).view(-1), gp, 1.0
    if cpu_kernels:  # the CPU kernels read the output gradient pixel-major: (B, oH, oW, PH, PW)
        flat = _pixel_major(flat.view(grad_out.shape[0], g.patch_h * g.patch_w, g.out_h * g.out_w))
    for name, partner, target in zip(("grad_input1", "grad_input2"), partners, targets):
        if target is None:
            continue
        result = torch.empty_like(target) if accumulate else target
        partner = partner() if callable(partner) else partner
        kernel, layout = _kernel_for(name, g, partner, cpu_kernels)
        kernel(flat, layout(partner), layout(result), _launch_struct(g), scale, dtype)
        if accumulate:
            target += result


@correlation_backward_op.register_fake
def _correlation_backward_fake(grad_output, input1, input2, geometry, scale, need_input1, need_input2):
    fmt = _gradient_format(_row_geometry(Geometry.from_list(geometry), input1.shape, backward=True))
    grad1 = torch.empty_like(input1, memory_format=fmt) if need_input1 else input1.new_empty(0)
    grad2 = torch.empty_like(input2, memory_format=fmt) if need_input2 else input2.new_empty(0)
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


#: Taichi 1.7 indexes ndarrays with 32-bit ints: larger calls are split into pieces below this size.
MAX_ELEMENTS = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class _Piece:
    images: slice  #: of the batch
    rows: slice  #: of the patch (displacement rows)
    geometry: Geometry  #: of those patch rows


def _pieces(g: Geometry, batch: int, channels: int, height: int, width: int) -> list[_Piece]:
    """The call as pieces of whole images x consecutive patch rows whose tensors (input images, output,
    per-pixel products) each hold at most :data:`MAX_ELEMENTS` elements, so that no index wraps.  One
    piece for any ordinary call.  The output slice of a piece is contiguous: a piece has all patch rows
    or a single image."""
    # one patch row of one image: of the output, and of the per-pixel products where the op takes them
    products = _product_geometry(g, height, width) is not None
    per_row = g.patch_w * max(g.out_h * g.out_w, height * width if products else 0)
    image = channels * height * width
    if max(image, per_row) > MAX_ELEMENTS:
        raise NotImplementedError(
            f"correlation: one image of the input ({image} elements) or one row of displacements of the "
            f"output ({per_row} elements) exceeds 2**31 - 1 elements, which Taichi cannot index; use a "
            f"smaller image or fewer channels"
        )
    rows = min(g.patch_h, MAX_ELEMENTS // max(per_row, 1))
    images = 1
    if rows == g.patch_h:
        images = max(1, min(batch, MAX_ELEMENTS // max(image, per_row * g.patch_h, 1)))
    return [
        _Piece(slice(b0, min(b0 + images, batch)), slice(p0, p0 + min(rows, g.patch_h - p0)),
               dataclasses.replace(g, patch_h=min(rows, g.patch_h - p0),
                                   first_h=g.first_h + p0 * g.patch_dilation_h))
        for b0 in range(0, batch, images)
        for p0 in range(0, g.patch_h, rows)
    ]


def apply(input1: Tensor, input2: Tensor, geometry: Geometry, scale: float = 1.0) -> Tensor:
    """Run the registered op on validated inputs."""
    _pieces(geometry, *input1.shape)  # refuses what cannot be split below 32-bit indexing
    return correlation_op(input1, input2, geometry.as_list(), float(scale))
