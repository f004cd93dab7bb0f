"""The CPU kernels' data layouts and the copies into them, shared by every op.

The channel-vector kernels read feature maps as channels-last vectors ``(B, H, W, C / LANES, LANES)``
(:func:`_cpu_layout`), write gradients so (:func:`_cpu_gradient`), and read an output gradient
pixel-major (:func:`_pixel_major`).  The copies are Taichi transposes where the planes are whole blocks
of ``TRANSPOSE_BLOCK`` values (:func:`_transposed`): torch's OpenMP threads spin for a while after each
parallel copy and would share the cores with the next Taichi kernel (``benchmarks/openmp_spin.py``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _kernel_helpers, _kernels
from ._geometry import ceil_div
from ._runtime import TAICHI_DTYPES

#: compute (and accumulation) dtype of each input dtype; Taichi has no bfloat16, and half inputs
#: are accumulated in float32 anyway.
_COMPUTE = {torch.float32: torch.float32, torch.float64: torch.float64,
            torch.float16: torch.float32, torch.bfloat16: torch.float32}


def _channel_vectors(channels: int) -> int:
    """How many vectors of ``LANES`` channels hold ``channels`` (the last one zero-padded)."""
    return ceil_div(channels, _kernel_helpers.LANES)


def _cpu_layout(t: Tensor, out: Tensor | None = None) -> Tensor:
    """The CPU kernels' layout of ``t``: ``(B, H, W, C / LANES, LANES)``, i.e. channels-last with the
    channels zero-padded to a multiple of ``LANES`` and read as vectors, in the compute dtype.  Free
    for a channels_last float32/64 input whose channel count is a multiple of ``LANES``; one copy
    (re-layout, padding and conversion together) otherwise, into ``out`` where given."""
    view = t.permute(0, 2, 3, 1)
    batch, height, width, channels = view.shape
    groups = _channel_vectors(channels)
    if (groups * _kernel_helpers.LANES == channels and view.dtype == _COMPUTE[t.dtype] and view.is_contiguous()
            and _kernel_helpers.vector_aligned(view)):
        return view.view(batch, height, width, groups, _kernel_helpers.LANES)
    return _transposed(t, _COMPUTE[t.dtype], out).view(batch, height, width, groups, _kernel_helpers.LANES)


def _transposed(t: Tensor, dtype: torch.dtype, out: Tensor | None = None) -> Tensor:
    """``(B, M, *S)`` -> contiguous ``(B, *S, M')`` of ``dtype``, ``M'`` = ``M`` rounded up to whole vectors
    (zeros past ``M``): a Taichi kernel (:func:`._kernels.correlation_kernels`' ``transpose``) for a
    contiguous ``t`` of ``dtype`` whose planes (``prod(S)`` elements) are whole blocks of
    :data:`._kernels.TRANSPOSE_BLOCK`, a torch copy otherwise.  Written into ``out`` (a contiguous buffer
    of that size) where given."""
    batch, rows, *plane = t.shape
    block, columns = _kernels.TRANSPOSE_BLOCK, math.prod(plane)
    padded = _channel_vectors(rows) * _kernel_helpers.LANES
    if out is None:
        out = torch.empty((batch, *plane, padded), dtype=dtype, device=t.device)
    else:
        out = out.view(batch, *plane, padded)
    if t.dtype == dtype and columns % block == 0 and t.is_contiguous() and _kernel_helpers.vector_aligned(t):
        _kernels.correlation_kernels(TAICHI_DTYPES[dtype]).transpose(
            t.view(batch, rows, columns // block, block),
            out.view(batch, columns // block, block, padded // block, block))
    else:
        out[..., :rows].copy_(t.movedim(1, -1))
        out[..., rows:].zero_()
    return out


def _cpu_gradient(like: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """An uninitialised gradient for ``like`` (NCHW shape) and the CPU kernels' view of it
    (:func:`_cpu_layout`).  The gradient is a channels_last tensor when the channel count is a multiple
    of ``LANES``, else a view of the padded buffer the kernels write (copied out at the end)."""
    batch, channels, height, width = like.shape
    groups = _channel_vectors(channels)
    buffer = torch.empty((batch, height, width, groups * _kernel_helpers.LANES), dtype=dtype, device=like.device)
    return buffer[..., :channels].permute(0, 3, 1, 2), buffer.view(batch, height, width, groups, _kernel_helpers.LANES)


def _pixel_major(grad: Tensor) -> Tensor:
    """The output gradient ``(B, P, N)`` (``P`` displacements, ``N`` output pixels) as the CPU gradient
    kernels read it: flattened ``(B, N, P)`` with rows padded to :func:`._kernel_helpers.pixel_major_row`."""
    return _transposed(grad, grad.dtype).view(-1)
