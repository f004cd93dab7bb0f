"""CPU kernels tiled over output pixels as well as displacements, for a single kernel tap at column
stride 1: FlowNetC's and PWC-Net's geometry, and the per-pixel products of a kernel window.  Other
geometries take the kernels of :mod:`._kernels`, whose layouts and conventions these share (channel
vectors of ``LANES`` channels, a pixel-major output gradient, geometry as runtime ints).

Along a row, pixels ``|dp|`` apart (``dp`` the patch dilation along the row) meet the same partner
pixels at neighbouring displacements: pixel ``i`` at displacement ``u`` and pixel ``i + 1`` at ``u - 1``
read the same partner column.  So a tile of several pixels loads each partner vector once for all of
them:

* the forward (:func:`forward_kernel`) computes ``FORWARD_TILE`` = 4 pixels x 4 displacements per
  tile from 4 ``input1`` and 7 ``input2`` vectors per channel vector, where the displacement tiles of
  :mod:`._kernels`' forward load 9 for 8 dot products;
* the gradients (:func:`gradient_kernels`) add each partner chunk, loaded once, into 4 or 8 target
  pixels' accumulators; chunks of at most 4 channel vectors keep the accumulators in registers and a
  band of partner rows in the L2 cache.

Near the image's edges, where some of a tile's partner columns lie outside, the forward falls back to
one pixel at a time and the gradients test each pixel's displacements.
"""

import functools
from types import SimpleNamespace

from ._kernel_helpers import (LANES, GeometryStruct, flat_index, inside_range, output_index, partner_dots, row_sums,
                              ti_ceil_div)
from ._runtime import locked, ti

#: the forward's tile: output pixels x displacements (measured on FlowNetC: 4 x 4 beat 2 x 8 and 8 x 2;
#: tiles whose product is not a power of two compile to scalar code).
FORWARD_TILE = (4, 4)


def takes(g) -> bool:
    """Whether these gradient kernels take geometry ``g``: a single kernel tap and column stride 1."""
    return (g.kernel_h, g.kernel_w, g.stride_w) == (1, 1, 1)


def takes_forward(g) -> bool:
    """Whether this forward takes geometry ``g``: as :func:`takes`, with displacements left to right."""
    return takes(g) and g.patch_dilation_w > 0


@ti.func
def _forward_tile(x1: ti.template(), x2: ti.template(), b, y1, y2, x0, c0, step, P: ti.template(), T: ti.template(),
                  acc_t: ti.template()):
    """``sums[i * T + u] = <x1[b, y1, x0 + i * step, :], x2[b, y2, c0 + (i + u) * step, :]>``: ``P`` pixels
    ``step`` apart at ``T`` displacements ``step`` apart, from ``P + T - 1`` partner vectors per channel
    vector."""
    acc = ti.Matrix.zero(acc_t, P * T, LANES)
    for k in range(x1.shape[3]):
        a = [x1[b, y1, x0 + i * step, k] for i in ti.static(range(P))]
        c = [x2[b, y2, c0 + m * step, k] for m in ti.static(range(P + T - 1))]
        for i in ti.static(range(P)):
            for u in ti.static(range(T)):
                acc[i * T + u, :] += a[i] * c[i + u]
    return row_sums(acc)


@functools.cache
def forward_kernel(dtype):
    """The forward (geometries of :func:`takes_forward`) for inputs of Taichi scalar type ``dtype``;
    arguments as :func:`._kernels.correlation_kernels`' ``forward``."""
    vectors = ti.types.ndarray(dtype=ti.types.vector(LANES, dtype), ndim=4)
    acc_t = dtype  # what it computes in
    P, T = FORWARD_TILE

    @ti.func
    def pixels_at(x1: ti.template(), x2: ti.template(), out: ti.template(), g: ti.template(), b, y1, y2, rows_inside,
                  row, w0, pixels, s):
        """Output row ``row`` (flat start), at the ``pixels`` (at most ``P``) columns ``w0 + i * dp`` and
        every displacement: in tiles of ``T`` displacements, each a tile of ``P`` pixels where all of its
        columns are inside the image, else one pixel at a time; then the single displacements left, one
        pixel at a time (a tile of pixels at one displacement would share no load: not compiled)."""
        width = x1.shape[2]
        plane = g.out_h * g.out_w
        dp = g.patch_dilation_w
        x0 = w0 + g.origin_w  # input1 column of the first pixel
        p = 0
        for Tn in ti.static((T, 1)):
            while p + Tn <= g.patch_w:  # the displacements p .. p + Tn - 1
                c0 = x0 + g.first_w + p * dp  # partner column of the first pixel's first one
                # a tile of pixels shares partner loads between displacements; single ones share none
                if ti.static(Tn > 1) and (rows_inside and pixels == P and 0 <= x0 and x0 + (P - 1) * dp < width
                                          and 0 <= c0 and c0 + (P + Tn - 2) * dp < width):
                    sums = _forward_tile(x1, x2, b, y1, y2, x0, c0, dp, P, Tn, dtype)
                    for i in ti.static(range(P)):
                        for q in ti.static(range(Tn)):
                            out[row + (p + q) * plane + w0 + i * dp] = sums[i * Tn + q] * s
                else:
                    for i in range(pixels):
                        xa = x0 + i * dp
                        total = ti.Vector.zero(dtype, Tn)
                        if rows_inside and 0 <= xa < width:
                            total = partner_dots(x1, x2, b, y1, xa, y2, xa + g.first_w + p * dp, dp, Tn, dtype)
                        for q in ti.static(range(Tn)):
                            out[row + (p + q) * plane + w0 + i * dp] = total[q] * s
                p += Tn

    @locked.quick_compile

    @ti.kernel
    def forward(x1: vectors, x2: vectors, out: ti.types.ndarray(ndim=1), g: GeometryStruct, scale: ti.f64):
        """One task per (batch, patch row, output row), as in :mod:`._kernels`' forward; the row's pixels
        in tiles of ``P`` pixels ``dp`` apart (one phase of the row after another), each tile's
        displacements in tiles of ``T`` and then single ones (:func:`pixels_at`)."""
        height = x1.shape[1]
        s = ti.cast(scale, acc_t)
        dp = g.patch_dilation_w
        for b, ph, h in ti.ndrange(x1.shape[0], g.patch_h, g.out_h):
            row = flat_index(g, b, ph, 0, h, 0)
            y1 = h * g.stride_h + g.origin_h
            y2 = y1 + g.first_h + ph * g.patch_dilation_h
            rows_inside = 0 <= y1 < height and 0 <= y2 < height
            for phase in range(ti.min(dp, g.out_w)):
                n = ti_ceil_div(g.out_w - phase, dp)  # the phase's output columns: phase + t * dp
                t = 0
                while t < n:
                    pixels_at(x1, x2, out, g, b, y1, y2, rows_inside, row, phase + t * dp, ti.min(P, n - t), s)
                    t += P

    return forward


@ti.func
def _pixel_tile(grad_out: ti.template(), partner: ti.template(), target: ti.template(), g: ti.template(), b, y,
                chunk, first, V: ti.template(), P: ti.template(), mirror: ti.template(), s, acc_t: ti.template()):
    """One chunk of the input gradient at the ``P`` target pixels ``first + i * |dp|`` of row ``y`` (``dp``
    the patch dilation along the row); input1's gradient, or input2's where ``mirror``.

    Order a patch row's displacements by their column offset, ``lowest + u * |dp|`` for ``u < patch_w``.
    Target pixel ``i`` meets, at ascending displacement ``u``, partner column ``j = u + i`` of the tile's
    columns (input1's gradient: ``start + j * |dp|``, input2's columns), or ``j = u - i + P - 1``
    (input2's gradient: input1's columns, right to left).  So each partner chunk, loaded once, feeds
    every target pixel, and each pixel's weight (the output gradient) is one scalar: for input1's
    gradient in its own pixel's row, for input2's in the partner's row, at consecutive displacements.
    Columns ``P - 1 <= j < patch_w`` feed all ``P`` pixels; those at either end feed some."""
    height, width = partner.shape[1], partner.shape[2]
    dp = g.patch_dilation_w
    step = ti.abs(dp)
    lowest = g.first_w + ti.min(0, (g.patch_w - 1) * dp)
    w_first, w_sign = 0, 1  # output gradient index of ascending displacement u: w_first + w_sign * u
    if dp < 0:
        w_first, w_sign = g.patch_w - 1, -1
    row = ti_ceil_div(g.patch_h * g.patch_w, LANES) * LANES  # of the pixel-major output gradient
    count = g.patch_w + P - 1
    start, col_step = first + lowest, step
    if ti.static(mirror):
        start, col_step = first - lowest + (P - 1) * step, -step
    lo, hi = inside_range(start, col_step, width, count)
    h_own = output_index(y, g.origin_h, 0, 1, g.stride_h, g.out_h)
    w_own = first - g.origin_w  # input1's gradient: the targets' output columns must all exist
    own = True
    if ti.static(not mirror):
        own = h_own >= 0 and w_own >= 0 and w_own + (P - 1) * step < g.out_w
    if ti.static(mirror):  # input2's gradient: so must the partners'
        lo2, hi2 = inside_range(start - g.origin_w, col_step, g.out_w, count)
        lo, hi = ti.max(lo, lo2), ti.min(hi, hi2)
    acc = [ti.Matrix.zero(acc_t, V, LANES) for _ in ti.static(range(P))]
    for ph in range(g.patch_h):
        yp, h = y + g.first_h + ph * g.patch_dilation_h, h_own
        if ti.static(mirror):
            yp = y - g.first_h - ph * g.patch_dilation_h
            h = output_index(yp, g.origin_h, 0, 1, g.stride_h, g.out_h)
        if own and h >= 0 and 0 <= yp < height:
            for j in range(lo, hi):
                col = start + j * col_step
                value = partner[b, yp, col, chunk]
                # target pixel i's weight: grad_out[base + i * per_pixel]
                base, per_pixel = 0, 0
                if ti.static(mirror):  # consecutive displacements of the partner's row
                    base = ((b * g.out_h + h) * g.out_w + col - g.origin_w) * row + ph * g.patch_w + w_first + \
                        w_sign * (j - P + 1)
                    per_pixel = w_sign
                else:  # displacement u = j - i of pixel i's row
                    base = ((b * g.out_h + h) * g.out_w + w_own) * row + ph * g.patch_w + w_first + w_sign * j
                    per_pixel = step * row - w_sign
                _add_weighted(acc, grad_out, base, per_pixel, value, j, g.patch_w, P, mirror, acc_t)
    for i in ti.static(range(P)):
        target[b, y, first + i * step, chunk] = acc[i] * s


@ti.func
def _add_weighted(acc: ti.template(), grad_out: ti.template(), base, per_pixel, value, j, patch_w, P: ti.template(),
                  mirror: ti.template(), acc_t: ti.template()):
    """``acc[i] += grad_out[base + i * per_pixel] * value`` for the target pixels ``i`` that partner column
    ``j`` feeds (see :func:`_pixel_tile`): all ``P`` of them for ``P - 1 <= j < patch_w``, the pixels whose
    displacement lies in the patch row at either end."""
    if P - 1 <= j < patch_w:
        for i in ti.static(range(P)):
            acc[i] += ti.cast(grad_out[base + i * per_pixel], acc_t) * value
    else:
        for i in ti.static(range(P)):
            u = j - i
            if ti.static(mirror):
                u = j - P + 1 + i
            if 0 <= u < patch_w:
                acc[i] += ti.cast(grad_out[base + i * per_pixel], acc_t) * value


@ti.func
def _chunks(grad_out: ti.template(), partner: ti.template(), target: ti.template(), g: ti.template(), b, y, first,
            V: ti.template(), P: ti.template(), mirror: ti.template(), s, acc_t: ti.template()):
    """:func:`_pixel_tile` for each chunk of channel vectors in turn: a tile's weights, read for the
    first chunk, are still in the cache for the others (measured on FlowNetC: ``grad_input2`` 8 %
    faster than sweeping the row once per chunk)."""
    for chunk in range(target.shape[3]):
        _pixel_tile(grad_out, partner, target, g, b, y, chunk, first, V, P, mirror, s, acc_t)


@functools.cache
def gradient_kernels(dtype, vectors: int, pixels: int) -> SimpleNamespace:
    """The gradient kernels (geometries of :func:`takes`) for inputs of Taichi scalar type ``dtype`` read
    in chunks of ``vectors`` channel vectors, ``pixels`` target pixels per tile (:func:`._dispatch.pixel_tile_shape`);
    arguments as :func:`._kernels.gradient_kernels`' kernels.  One task per target row; a
    row's pixels are tiled ``|dp|`` apart (one phase after another), with single pixels where a phase
    ends and where input1's gradient has pixels without an output column (from one call site: each site
    is a copy of the unrolled code); each tile's chunks one after another."""
    chunks = ti.types.ndarray(dtype=ti.types.matrix(vectors, LANES, dtype), ndim=4)
    acc_t = dtype  # what they compute in

    def kernel(mirror: bool):
        def gradient(grad_out: ti.types.ndarray(ndim=1), partner: chunks, target: chunks, g: GeometryStruct,
                     scale: ti.f64):
            s = ti.cast(scale, acc_t)
            step = ti.abs(g.patch_dilation_w)
            width = target.shape[2]
            for b, y in ti.ndrange(target.shape[0], target.shape[1]):
                for phase in range(ti.min(step, width)):
                    n = ti_ceil_div(width - phase, step)  # the phase's pixels: phase + t * step
                    t = 0
                    while t < n:
                        first = phase + t * step
                        w = first - g.origin_w
                        whole = t + pixels <= n
                        if ti.static(not mirror):
                            whole = whole and 0 <= w and w + (pixels - 1) * step < g.out_w
                        if whole:
                            _chunks(grad_out, partner, target, g, b, y, first, vectors, pixels, mirror, s, acc_t)
                            t += pixels
                        else:  # where a phase ends, or some pixel has no output column: one pixel
                            _chunks(grad_out, partner, target, g, b, y, first, vectors, 1, mirror, s, acc_t)
                            t += 1

        gradient.__name__ = gradient.__qualname__ = "grad_input2" if mirror else "grad_input1"
        # grad_input2 compiles faster and runs no slower without Taichi's IR optimiser; grad_input1 ran slower
        return (locked.quick_compile if mirror else locked)(ti.kernel(gradient))

    return SimpleNamespace(grad_input1=kernel(False), grad_input2=kernel(True))
