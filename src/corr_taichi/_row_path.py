"""The row path: the CPU op for few channels, on the row-vectorised kernels of :mod:`._row_kernels`.

It takes single-tap geometries with column stride 1 and patch dilation 1 or -1 along the row (several
taps arrive here as per-pixel products); :func:`._dispatch.plan` sends it calls of few channels, for
which it is faster than the channel-vector kernels of :mod:`._kernels`.

Columns, in one place: output column ``w`` reads input1 column ``w + origin_w`` and, for displacement
``pw``, input2 column ``w + origin_w + first_w + patch_dilation_w * pw``.  :class:`RowLayout` says how
the kernels turn these reads into vector loads at whole-vector offsets plus compile-time shifts: input2
and its gradient stay in input2's own columns (no copy where its rows are whole vectors), input1 and
its gradient are taken in output columns.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
from torch import Tensor

from . import _kernel_helpers, _row_kernels
from ._geometry import Geometry, ceil_div
from ._layouts import _transposed
from ._runtime import MAX_ELEMENTS, TAICHI_DTYPES, struct

LANES = _kernel_helpers.LANES


def _vectors(columns: int) -> int:
    """Whole vectors holding ``columns`` columns."""
    return ceil_div(max(columns, 0), LANES)


def _padded_channels(channels: int, g: Geometry) -> int:
    """Channels rounded up to whole blocks of ``grad_input1`` (the extra ones are zeros)."""
    block = _row_kernels.channel_block(_window_slots(g))
    return ceil_div(channels, block) * block


def computes(g: Geometry, batch: int, channels: int, height: int, width: int) -> bool:
    """Whether the row path can compute this single-tap geometry on inputs of this shape (whether it is
    worth it is :func:`._dispatch.plan`'s decision)."""
    if (g.kernel_h, g.kernel_w, g.stride_w) != (1, 1, 1) or abs(g.patch_dilation_w) != 1:
        return False
    layout = RowLayout.of(g)
    row = max(layout.out_vectors, _vectors(width)) * LANES
    largest = max(_padded_channels(channels, g) * height * row, g.patch_h * g.patch_w * g.out_h * row)
    return batch * largest <= MAX_ELEMENTS


@dataclasses.dataclass(frozen=True)
class RowLayout:
    """Where the kernels find which column (offsets in columns, widths in vectors).

    * Input2 and its gradient are in input2's own columns: read in place, or computed in the gradient
      itself, where input2's rows are whole vectors (else in copies padded with zeros to whole vectors).
      The partner of output column ``w`` at displacement ``pw`` is input2 column ``w + offset + step *
      pw`` (``step`` is the patch dilation along the row, 1 or -1).  A patch row's starts, ``offset +
      step * pw`` relative to an output vector, are consecutive; the leftmost is ``phase`` columns past
      a whole vector, so the kernels get ``lead = offset - phase``, under which the starts fill as few
      windows as possible, and add the compile-time ``phase`` where they cut a window's vectors.
    * ``x1p[w] = input1[w + origin_w]`` (zero where that column is outside the image or ``w`` outside
      the output), ``out_vectors`` wide, as is input1's gradient before it is cut out of it.
    """

    out_vectors: int
    step: int
    phase: int
    lead: int

    @classmethod
    def of(cls, g: Geometry) -> "RowLayout":
        step = g.patch_dilation_w
        offset = g.origin_w + g.first_w  # input2 column of output column 0 at displacement 0
        low = offset + min(0, step * (g.patch_w - 1))  # ... at the leftmost displacement
        phase = low % LANES
        return cls(_vectors(g.out_w), step, phase, offset - phase)

    def padded_input1(self, x1: Tensor, g: Geometry, dtype: torch.dtype) -> Tensor:
        """``x1p``; ``x1`` itself, not a copy, where it already is ``x1p``."""
        lo, hi = _inside_input1(g, x1.shape[3])
        return _shifted(x1, dtype, g.origin_w, lo, hi, self.out_vectors * LANES, None)

    @staticmethod
    def whole_vector_input2(x2: Tensor, dtype: torch.dtype, channels: int | None = None) -> Tensor:
        """Input2 with rows of whole vectors (zeros beyond its width) and ``channels`` channels (the
        extra ones zero; default: as many as ``x2`` has); ``x2`` itself, not a copy, where it already
        is that."""
        width = x2.shape[3]
        return _shifted(x2, dtype, 0, 0, width, _vectors(width) * LANES, channels)

    def padded_output_grad(self, grad_out: Tensor, g: Geometry) -> Tensor:
        """The output gradient with rows of whole vectors (zeros beyond ``out_w``)."""
        aligned = grad_out.is_contiguous() and _kernel_helpers.vector_aligned(grad_out)
        if self.out_vectors * LANES == g.out_w and aligned:
            return grad_out
        out = grad_out.new_zeros(grad_out.shape[:-1] + (self.out_vectors * LANES,))
        out[..., :g.out_w] = grad_out
        return out


def _inside_input1(g: Geometry, width: int) -> tuple[int, int]:
    """``[lo, hi)``: the output columns whose input1 column lies inside the image."""
    lo = max(0, -g.origin_w)
    return lo, max(lo, min(g.out_w, width - g.origin_w))


def _shifted(x: Tensor, dtype: torch.dtype, shift: int, lo: int, hi: int, columns: int, channels: int | None
             ) -> Tensor:
    """Contiguous ``out`` of ``dtype`` with ``channels`` channels (default: ``x``'s) of ``columns`` columns,
    starting at a whole vector: ``out[:, c, :, X] = x[:, c, :, X + shift]`` for ``lo <= X < hi`` and ``x``'s
    channels, zero elsewhere.  The padded copies of the inputs, and the gradients cut from the kernels'
    padded rows.  ``x`` itself where that is ``out``; else one pass over the memory, a Taichi kernel where
    both ``x``'s and ``out``'s rows are whole vectors."""
    x = _nchw_rows(x, dtype)
    channels = x.shape[1] if channels is None else channels
    width = x.shape[3]
    same_layout = x.dtype == dtype and x.is_contiguous() and _kernel_helpers.vector_aligned(x)
    if same_layout and (shift, lo, hi, columns, channels) == (0, 0, width, width, x.shape[1]):
        return x
    out = x.new_empty((x.shape[0], channels, x.shape[2], columns), dtype=dtype)
    if same_layout and width % LANES == 0 and columns % LANES == 0:
        _kernels_for(dtype).shifted_rows(_rows(x), _rows(out), shift, lo, hi)
        return out
    out.zero_()
    kept = min(channels, x.shape[1])
    if lo < hi:
        out[:, :kept, :, lo:hi] = x[:, :kept, :, lo + shift:hi + shift]
    return out


def _nchw_rows(x: Tensor, dtype: torch.dtype) -> Tensor:
    """A channels_last ``x`` (whose planes are whole vectors) as NCHW rows, transposed by the CPU
    kernels' Taichi transpose rather than by a torch copy (see :func:`_shifted`); ``x`` itself
    otherwise."""
    batch, channels, height, width = x.shape
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last) or (height * width) % LANES:
        return x
    return _transposed(x.permute(0, 2, 3, 1).reshape(batch, height * width, channels), dtype).view(x.shape)


@functools.lru_cache(maxsize=_kernel_helpers.STRUCT_CACHE_SIZE)
def _struct(g: Geometry, lead: int, step: int):
    """The row kernels' struct, built once per geometry (see :func:`._op._launch_struct`)."""
    return struct(
        _row_kernels.RowGeometry, stride_h=g.stride_h, origin_h=g.origin_h, patch_h=g.patch_h,
        patch_dilation_h=g.patch_dilation_h,
        first_h=g.first_h, out_h=g.out_h, patch_w=g.patch_w, lead=lead, step=step,
    )


def _rows(t: Tensor) -> Tensor:
    """``t`` (..., V * LANES) as the kernels' (..., V) ndarray of vectors."""
    return t.view(t.shape[:-1] + (t.shape[-1] // LANES, LANES))


def _kernels_for(dtype: torch.dtype):
    return _row_kernels.row_kernels(TAICHI_DTYPES[dtype])


def _window_slots(g: Geometry) -> int:
    """A window's displacements: the row kernels are compiled per count."""
    return min(LANES, g.patch_w)


def forward(x1: Tensor, x2: Tensor, out: Tensor, g: Geometry, scale: float) -> None:
    """``out`` (contiguous ``(B, PH, PW, oH, oW)`` of the compute dtype) from NCHW inputs."""
    layout = RowLayout.of(g)
    dtype = out.dtype
    a, b = layout.padded_input1(x1, g, dtype), layout.whole_vector_input2(x2, dtype)
    target = out
    if layout.out_vectors * LANES != g.out_w:
        target = out.new_empty(out.shape[:-1] + (layout.out_vectors * LANES,))
    _kernels_for(dtype).forward(_rows(a), _rows(b), _rows(target), _struct(g, layout.lead, layout.step), scale,
                                _window_slots(g), layout.phase)
    if target is not out:
        out.copy_(target[..., :g.out_w])


def backward(grad_out: Tensor, x1: Tensor, x2: Tensor, g: Geometry, scale: float, need1: bool, need2: bool
             ) -> tuple[Tensor | None, Tensor | None]:
    """The input gradients (NCHW, compute dtype; ``None`` where not needed) from the output gradient
    ``(B, PH, PW, oH, oW)`` and the NCHW inputs."""
    batch, channels, height, width = x1.shape
    layout = RowLayout.of(g)
    dtype = grad_out.dtype
    kernels = _kernels_for(dtype)
    padded = _padded_channels(channels, g)
    weights = _rows(layout.padded_output_grad(grad_out, g))
    slots, geometry = _window_slots(g), _struct(g, layout.lead, layout.step)
    grad1 = grad2 = None
    if need1:
        # computed in output columns: target column w is input1 column w + origin_w
        target = grad_out.new_empty((batch, padded, height, layout.out_vectors * LANES))
        partner = layout.whole_vector_input2(x2, dtype, padded)
        kernels.grad_input1(weights, _rows(partner), _rows(target), geometry, scale, slots, layout.phase,
                            _row_kernels.channel_block(slots))
        lo, hi = _inside_input1(g, width)  # input1 column x is output column x - origin_w
        grad1 = _shifted(target, dtype, -g.origin_w, lo + g.origin_w, hi + g.origin_w, width, channels)
    if need2:
        # computed in input2's columns, in the gradient itself where input2's rows are whole vectors
        target = grad_out.new_empty((batch, channels, height, _vectors(width) * LANES))
        x1p = layout.padded_input1(x1, g, dtype)
        kernels.grad_input2(weights, _rows(x1p), _rows(target), geometry, scale, slots, layout.phase)
        grad2 = _shifted(target, dtype, 0, 0, width, width, channels)
    return grad1, grad2
