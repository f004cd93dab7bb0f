"""The Taichi helpers that every kernel module shares: the lane width, the geometry struct, index
arithmetic (ceiling division, output coordinates, flat output indices), the dot products of a pixel
against a run of partner pixels, and the 1-D lookups' per-pixel helpers.  Kernel modules import these
and the runtime, nothing else of the package.  (No ``from __future__ import annotations`` here: Taichi
reads the functions' annotations as objects.)
"""

import functools

from ._geometry import ceil_div
from ._runtime import lane, ti

#: channels per vector: the unit of the kernels' loads and multiply-adds (512 bits of float32).
LANES = 16
#: bytes of the widest SIMD register (AVX-512): the alignment that aligned vector loads need.
VECTOR_ALIGNMENT = 64


def vector_aligned(t) -> bool:
    """Whether tensor ``t`` may be read as an ndarray of ``LANES``-vectors in place: Taichi emits aligned
    vector loads and stores, and a tensor that starts off a register-width boundary (a view at an odd
    offset) crashes them.  torch's CPU allocator aligns every buffer this way."""
    return t.data_ptr() % VECTOR_ALIGNMENT == 0


def separate_memory(t, source) -> bool:
    """Whether ``t`` is a buffer of its own rather than ``source`` (or a view of it): a layout copy the
    op made, which it may overwrite once done with it."""
    return t.untyped_storage().data_ptr() != source.untyped_storage().data_ptr()


def lanes_from(vectors, start: int) -> list:
    """The ``LANES`` values from lane ``start`` on of the Taichi vector expressions ``vectors`` (of ``LANES``
    lanes) laid end to end, as a list: a vector cut from neighbours, one lane shuffle in the compiled code.
    Plain Python: a kernel calls it inside ``ti.static``, at compile time, and wraps the list in
    ``ti.Vector``.  Written as a Taichi function, its unrolled lanes went through Taichi's front end one by
    one (a fifth of the row kernels' front-end time, which is most of a first call with the offline cache
    warm); it builds the same expressions."""
    return [lane(vectors[(start + i) // LANES], (start + i) % LANES) for i in range(LANES)]


def column(rows, j: int) -> list:
    """Lane ``j`` of each of the Taichi vector expressions ``rows``, as a list (plain Python, as
    :func:`lanes_from`)."""
    return [lane(row, j) for row in rows]


#: geometries whose launch structs the op keeps, per struct type (a Taichi struct instance holds about
#: 21 KB of Python objects; a network uses a few geometries, a handful per correlation layer)
STRUCT_CACHE_SIZE = 32

GeometryStruct = ti.types.struct(
    kernel_h=ti.i32, kernel_w=ti.i32, dilation_h=ti.i32, dilation_w=ti.i32,
    stride_h=ti.i32, stride_w=ti.i32, origin_h=ti.i32, origin_w=ti.i32,
    patch_h=ti.i32, patch_w=ti.i32, patch_dilation_h=ti.i32, patch_dilation_w=ti.i32,
    first_h=ti.i32, first_w=ti.i32, out_h=ti.i32, out_w=ti.i32,
)


@ti.func
def ti_ceil_div(a: ti.i32, b: ti.i32) -> ti.i32:
    """ceil(a / b) for b > 0 and any sign of a."""
    return -((-a) // b)


@ti.func
def output_index(pos: ti.i32, origin: ti.i32, tap: ti.i32, dilation: ti.i32, stride: ti.i32, size: ti.i32):
    """Output coordinate whose kernel tap ``tap`` lands on input coordinate ``pos``, or -1."""
    offset = pos - origin - tap * dilation
    index = -1
    if stride == 1:  # the common case, without the divisions
        if 0 <= offset < size:
            index = offset
    elif offset >= 0 and offset % stride == 0 and offset // stride < size:
        index = offset // stride
    return index


@ti.func
def flat_index(g: ti.template(), b, ph, pw, h, w):
    """Index of ``[b, ph, pw, h, w]`` in the flattened ``(B, PH, PW, oH, oW)`` output."""
    return (((b * g.patch_h + ph) * g.patch_w + pw) * g.out_h + h) * g.out_w + w


@ti.func
def pixel_major_index(g: ti.template(), b, ph, pw, h, w):
    """Index of ``[b, h, w, ph, pw]`` in a flattened ``(B, oH, oW, PH * PW)`` output gradient whose rows
    are padded to whole vectors (:func:`pixel_major_row`): the backward reads its displacements pixel by
    pixel, which in the output's own layout would be one cache line per displacement, all a multiple
    of 4 KiB apart (so they evict each other)."""
    row = ti_ceil_div(g.patch_h * g.patch_w, LANES) * LANES
    return ((b * g.out_h + h) * g.out_w + w) * row + ph * g.patch_w + pw


def pixel_major_row(patches: int) -> int:
    """Length of a pixel-major row of ``patches`` displacements (:func:`pixel_major_index`): whole vectors."""
    return ceil_div(patches, LANES) * LANES


@ti.func
def inside_range(start: ti.i32, step: ti.i32, size: ti.i32, count: ti.i32):
    """``[lo, hi)``: the ``p < count`` with ``0 <= start + p * step < size`` (``step != 0``)."""
    first, stride = start, step
    if step < 0:  # mirror the axis: x -> size - 1 - x turns the step positive
        first, stride = size - 1 - start, -step
    lo = ti.max(0, ti_ceil_div(-first, stride))
    hi = ti.min(count, ti_ceil_div(size - first, stride))
    return lo, ti.max(lo, hi)


@ti.func
def row_sums(acc: ti.template()):
    """The row sums of a ``(T, LANES)`` matrix, by adding column halves: a few vector adds over all
    rows at once instead of one horizontal reduction per row (which dominates with few channels)."""
    half = acc[:, 0:LANES // 2] + acc[:, LANES // 2:LANES]
    quarter = half[:, 0:LANES // 4] + half[:, LANES // 4:LANES // 2]
    eighth = quarter[:, 0:LANES // 8] + quarter[:, LANES // 8:LANES // 4]
    return eighth[:, 0] + eighth[:, 1]  # LANES == 16


@ti.func
def dot_tile(x1: ti.template(), x2: ti.template(), b, y1, xa, y2, xb, step, T: ti.template(), acc_t: ti.template()):
    """``acc[q] = <x1[b, y1, xa, :], x2[b, y2, xb + q*step, :]>`` for ``q < T`` (sums over vectors)."""
    acc = ti.Matrix.zero(acc_t, T, LANES)
    for k in range(x1.shape[3]):
        a = x1[b, y1, xa, k]
        for q in ti.static(range(T)):
            acc[q, :] += a * x2[b, y2, xb + q * step, k]
    return row_sums(acc)


@ti.func
def partner_dots(x1: ti.template(), x2: ti.template(), b, y1, xa, y2, start, step, T: ti.template(),
                  acc_t: ti.template()):
    """``dots[q] = <x1[b, y1, xa, :], x2[b, y2, start + q*step, :]>`` for ``q < T``, zero where that partner
    column is outside the image: one tile where all are inside, else one partner at a time."""
    width = x2.shape[2]
    dots = ti.Vector.zero(acc_t, T)
    last = start + (T - 1) * step
    if 0 <= ti.min(start, last) and ti.max(start, last) < width:
        dots = dot_tile(x1, x2, b, y1, xa, y2, start, step, T, acc_t)
    else:  # near the image's edge: the partners that are inside, in a loop (one copy of the dot product's code)
        for q in range(T):
            if 0 <= start + q * step < width:
                dot = dot_tile(x1, x2, b, y1, xa, y2, start + q * step, step, 1, acc_t)[0]
                for u in ti.static(range(T)):
                    if q == u:
                        dots[u] = dot
    return dots


@functools.cache
def lookup_helpers(dtype, radius: int):
    """The 1-D lookups' per-pixel helpers (:mod:`._lookup1d_kernels`; the 2-D lookup blends the same
    way along each axis): ``window``, ``blend_weights`` and ``slope``."""
    taps = 2 * radius + 2  # whole columns read per pixel

    @ti.func
    def window(x, width):
        """The first of the ``2R + 2`` columns around ``x`` and the blend weight ``t``.  A coordinate so far
        outside that no column is inside the row (or an infinite one) reads nothing: it is clamped, with
        ``t = 0``, before it becomes an int."""
        p0 = ti.floor(x)
        t = x - p0
        low, high = ti.cast(-2 * radius - 2, dtype), ti.cast(width + radius + 1, dtype)
        if p0 < low or p0 > high:
            p0 = low
            t = ti.cast(0, dtype)
        return ti.cast(p0, ti.i32) - radius, t

    @ti.func
    def blend_weights(grad_out: ti.template(), b, h, w, t):
        """Weight of column ``j`` in the output gradient's sum: ``(1 - t) g[j] + t g[j - 1]``."""
        weights = ti.Vector.zero(dtype, taps)
        for j in ti.static(range(taps)):
            if ti.static(j < taps - 1):
                weights[j] += (1 - t) * ti.cast(grad_out[b, j, h, w], dtype)
            if ti.static(j > 0):
                weights[j] += t * ti.cast(grad_out[b, j - 1, h, w], dtype)
        return weights

    @ti.func
    def slope(grad_out: ti.template(), b, h, w, values: ti.template()):
        """The coordinate's gradient: ``sum_k g[k] (v[k + 1] - v[k])``."""
        acc = ti.cast(0, dtype)
        for k in ti.static(range(taps - 1)):
            acc += ti.cast(grad_out[b, k, h, w], dtype) * (values[k + 1] - values[k])
        return acc

    return window, blend_weights, slope
