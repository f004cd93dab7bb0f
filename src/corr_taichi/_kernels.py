"""Taichi kernels for the CPU backend: the forward correlation, the two input gradients and the
kernel-window sums (the GPU kernels are in :mod:`._gpu_kernels`; the window sums serve both).

Layouts: inputs and input gradients are channels-last ``(B, H, W, C)`` with the channels padded with
zeros to a multiple of ``LANES`` and read as vectors of ``LANES`` channels: ``(B, H, W, C / LANES)``
ndarrays of ``LANES``-vectors.  The output is ``(B, PH, PW, oH, oW)``.  The geometry arrives as a
struct of runtime ints, so a kernel is compiled once per dtype (the gradient kernels once per dtype
and chunk size), never per shape or parameter set.  The gradient kernels read the same tensors in
chunks of up to ``GROUPS`` channel vectors, one ``vectors x LANES`` matrix each
(:func:`gradient_kernels`).  NCHW inputs and the output gradient reach these layouts through one Taichi
transpose (:func:`correlation_kernels`) where their planes are whole blocks of ``TRANSPOSE_BLOCK``.

Speed comes from three ideas:

* Vectors of ``LANES`` channels are the unit of every load and multiply-add, and accumulators are
  matrices held in registers.  With the runtime started with ``real_matrix_scalarize=False`` (as
  :mod:`._runtime` does on the CPU) Taichi hands them to LLVM as vector types, which become full-width
  SIMD whatever CPU model LLVM believes it compiles for (Taichi 1.7's LLVM treats CPUs newer than
  itself as a generic x86-64 and vectorises scalar loops only 4 floats wide).
* Tiles of up to ``TILES[0]`` displacements along a patch row share each loaded ``input1`` vector
  (forward) or each gradient accumulator (backward), so one memory access feeds several
  multiply-adds; a gradient chunk is one address, so its vectors load at constant offsets.  For a
  single kernel tap at column stride 1 (FlowNetC's and PWC-Net's geometry, and the per-pixel
  products of a kernel window) the kernels of :mod:`._pixel_tile_kernels` tile pixels as well.
* Along a patch row the displacements whose partner pixel lies inside the image form an interval
  (an arithmetic progression in the strided ``grad_input2`` case): the gradients compute it up front,
  the forward tests the two ends of each tile and only near the image's edges each displacement; no
  work is spent on pixels outside the image.

With a kernel window of several taps the op usually computes per-pixel products once (a single-tap
correlation at every pixel) and sums them over each window with :func:`window_sum`: neighbouring
windows share most taps, so this costs one dot product per pixel and displacement instead of one per
tap and output pixel.

The backward is written as gathers: each gradient element is owned by one thread, which sums over
every (displacement, kernel tap) that reads it.  No atomics, so results are deterministic.
"""

import functools
from types import SimpleNamespace

from ._kernel_helpers import (LANES, GeometryStruct, column, flat_index, inside_range, output_index, partner_dots,
                              pixel_major_index, ti_ceil_div)
from ._runtime import locked, ti

#: the layout copies' block (:func:`correlation_kernels`' ``transpose``): 8 x 8 values, one AVX2 register a
#: row (16 x 16 blocks spilled, and their unrolled lanes were most of its first call's time)
TRANSPOSE_BLOCK = 8
#: displacement tile sizes, largest first; an interval is covered by the largest tiles that fit.
TILES = (8, 4, 1)
#: the most channel vectors of one gradient pixel that the backward kernels accumulate in registers at
#: a time (a chunk; :func:`._dispatch.chunk_vectors`).
GROUPS = 16
#: ``grad_input2`` sweeps a row in passes of this many patch rows when a pass still has at least
#: ``MIN_PASS_WORK`` vector multiply-adds per pixel (measured when FlowNetC ran on these kernels: it
#: gained from passes; PWC level 2, kernel 3 and 1-column patches would lose, and keep one pass).
ROWS_PER_PASS = 8
MIN_PASS_WORK = 1024

@functools.cache
def window_kernels(acc_t) -> SimpleNamespace:
    """The window-sum kernels (summing a kernel window over per-pixel products, and its gradient) for
    flat arrays of Taichi scalar type ``acc_t``, which they compute in."""

    @locked
    @ti.kernel
    def window_sum(
        products: ti.types.ndarray(ndim=1),
        out: ti.types.ndarray(ndim=1),
        height: ti.i32,
        width: ti.i32,
        g: GeometryStruct,
        scale: ti.f64,
    ):
        """``out[n, h, w] = scale * sum_{i, j} products[n, h*stride_h + origin_h + i*dilation_h, ...]`` (zero
        outside), on flattened ``(N, height, width)`` products and ``(N, oH, oW)`` outputs: the kernel
        window of several taps, summed over per-pixel products.  Costs kH*kW adds per output element
        instead of kH*kW*C multiply-adds.  One task per output row, flat indices: the cheap form of index
        arithmetic in Taichi (see :func:`forward`)."""
        s = ti.cast(scale, acc_t)
        for n, h in ti.ndrange(products.shape[0] // (height * width), g.out_h):
            row = (n * g.out_h + h) * g.out_w
            for w in range(g.out_w):
                total = ti.cast(0, acc_t)
                for i in range(g.kernel_h):
                    y = h * g.stride_h + g.origin_h + i * g.dilation_h
                    if 0 <= y < height:
                        base = (n * height + y) * width
                        for j in range(g.kernel_w):
                            x = w * g.stride_w + g.origin_w + j * g.dilation_w
                            if 0 <= x < width:
                                total += products[base + x]
                out[row + w] = total * s

    @locked
    @ti.kernel
    def window_sum_grad(
        grad_out: ti.types.ndarray(ndim=1),
        grad_products: ti.types.ndarray(ndim=1),
        height: ti.i32,
        width: ti.i32,
        g: GeometryStruct,
        scale: ti.f64,
    ):
        """Gradient of :func:`window_sum` (same flat layouts): one task per product row, which sums every
        output of the rows whose window covers it into its own row (no other task writes there, so no
        atomics).  Each product gathers its windows' outputs and is stored once: for small windows with
        each tap's output row and column found once per row (:func:`_gather_small_window`), for larger ones
        at column stride 1 tap by tap.  Larger windows at other strides, where finding a product's windows
        would divide per tap, add each output of a window row into the products it covers instead (a store
        per tap, which costs about three times as much per tap as a gathered load)."""
        s = ti.cast(scale, acc_t)
        for n, y in ti.ndrange(grad_products.shape[0] // (height * width), height):
            base = (n * height + y) * width
            if g.kernel_h <= GATHER_TAPS and g.kernel_w <= GATHER_TAPS:
                _gather_small_window(grad_out, grad_products, n, y, base, width, g, s, acc_t)
            elif g.stride_w == 1:
                _gather_window(grad_out, grad_products, n, y, base, width, g, s, acc_t)
            else:
                _scatter_window(grad_out, grad_products, n, y, base, width, g, s, acc_t)

    return SimpleNamespace(window_sum=window_sum, window_sum_grad=window_sum_grad)


#: kernel windows up to this many taps along each axis have :func:`window_sum_grad` find their taps
#: at compile time (unrolled, tested at run time).
GATHER_TAPS = 4


@ti.func
def _gather_small_window(grad_out: ti.template(), grad_products: ti.template(), n, y, base, width, g: ti.template(),
                         s, acc_t: ti.template()):
    """Row ``y`` of product plane ``n`` (flat row start ``base``) for a window of at most
    ``GATHER_TAPS`` x ``GATHER_TAPS`` taps, any stride: the output row of each tap row, and in each phase
    of the row (columns ``r + t * stride_w``) the output column ``t + shift`` of each tap column, are
    found once, so that each product is a sum of loads and one store."""
    rows = [-1 for _ in ti.static(range(GATHER_TAPS))]
    for i in ti.static(range(GATHER_TAPS)):
        if i < g.kernel_h:
            h = output_index(y, g.origin_h, i, g.dilation_h, g.stride_h, g.out_h)
            if h >= 0:
                rows[i] = (n * g.out_h + h) * g.out_w
    for r in range(ti.min(g.stride_w, width)):
        hits = [False for _ in ti.static(range(GATHER_TAPS))]
        shift = [0 for _ in ti.static(range(GATHER_TAPS))]
        for j in ti.static(range(GATHER_TAPS)):
            offset = r - g.origin_w - j * g.dilation_w
            if j < g.kernel_w and offset % g.stride_w == 0:
                hits[j] = True
                shift[j] = offset // g.stride_w
        for t in range(ti_ceil_div(width - r, g.stride_w)):
            total = ti.cast(0, acc_t)
            for i in ti.static(range(GATHER_TAPS)):
                if rows[i] >= 0:
                    for j in ti.static(range(GATHER_TAPS)):
                        w = t + shift[j]
                        if hits[j] and 0 <= w < g.out_w:
                            total += grad_out[rows[i] + w]
            grad_products[base + r + t * g.stride_w] = total * s


@ti.func
def _gather_window(grad_out: ti.template(), grad_products: ti.template(), n, y, base, width, g: ti.template(), s,
                   acc_t: ti.template()):
    """Row ``y`` of product plane ``n`` for any window at column stride 1: each product gathers its
    windows' outputs tap by tap."""
    for x in range(width):
        total = ti.cast(0, acc_t)
        for i in range(g.kernel_h):
            h = output_index(y, g.origin_h, i, g.dilation_h, g.stride_h, g.out_h)
            if h >= 0:
                row = (n * g.out_h + h) * g.out_w
                for j in range(g.kernel_w):
                    w = x - g.origin_w - j * g.dilation_w
                    if 0 <= w < g.out_w:
                        total += grad_out[row + w]
        grad_products[base + x] = total * s


@ti.func
def _scatter_window(grad_out: ti.template(), grad_products: ti.template(), n, y, base, width, g: ti.template(), s,
                    acc_t: ti.template()):
    """Row ``y`` of product plane ``n`` for large windows at other column strides: each output of a
    window row adds into the products it covers."""
    for x in range(width):
        grad_products[base + x] = ti.cast(0, acc_t)
    for i in range(g.kernel_h):
        h = output_index(y, g.origin_h, i, g.dilation_h, g.stride_h, g.out_h)
        if h >= 0:
            row = (n * g.out_h + h) * g.out_w
            for w in range(g.out_w):
                value = grad_out[row + w] * s
                for j in range(g.kernel_w):
                    x = w * g.stride_w + g.origin_w + j * g.dilation_w
                    if 0 <= x < width:
                        grad_products[base + x] += value


@functools.cache
def correlation_kernels(dtype) -> SimpleNamespace:
    """The forward kernel and the layout copies for inputs of Taichi scalar type ``dtype`` (``ti.f32``
    or ``ti.f64``), which they compute in: an ndarray's vector type is part of its annotation,
    so each dtype gets its own kernels, built once."""
    acc_t = dtype
    vectors = ti.types.ndarray(dtype=ti.types.vector(LANES, dtype), ndim=4)

    @ti.func
    def tap_sums(x1: ti.template(), x2: ti.template(), g: ti.template(), b, h, w, shift_h, p, T: ti.template()):
        """The dot products of output pixel ``(h, w)`` at displacements ``p .. p + T - 1`` of the patch
        row whose input2 rows are ``shift_h`` below input1's, summed over the kernel taps."""
        height, width = x1.shape[1], x1.shape[2]
        total = ti.Vector.zero(dtype, T)
        for i in range(g.kernel_h):
            y1 = h * g.stride_h + g.origin_h + i * g.dilation_h
            y2 = y1 + shift_h
            if 0 <= y1 < height and 0 <= y2 < height:
                for j in range(g.kernel_w):
                    xa = w * g.stride_w + g.origin_w + j * g.dilation_w
                    start = xa + g.first_w + p * g.patch_dilation_w  # partner column of displacement p
                    if 0 <= xa < width:
                        total += partner_dots(x1, x2, b, y1, xa, y2, start, g.patch_dilation_w, T, dtype)
        return total

    @locked

    @ti.kernel
    def forward(
        x1: vectors,
        x2: vectors,
        out: ti.types.ndarray(ndim=1),
        g: GeometryStruct,
        scale: ti.f64,
    ):
        """``out`` is the flattened ``(B, PH, PW, oH, oW)`` output in the accumulator dtype; one task per
        (batch, patch row, output row), which walks the row once per tile of displacements: the tile's
        sums over kernel taps stay in registers and its stores fill consecutive addresses of each
        output plane (the planes are often a multiple of 4 KiB apart, so stores that jumped between
        them would keep evicting each other).  Flat indices keep the stores cheap: each ndarray store
        makes LLVM reload every ndarray's shape."""
        s = ti.cast(scale, acc_t)
        plane = g.out_h * g.out_w
        for b, ph, h in ti.ndrange(x1.shape[0], g.patch_h, g.out_h):
            row = flat_index(g, b, ph, 0, h, 0)
            shift_h = g.first_h + ph * g.patch_dilation_h
            p = 0
            for T in ti.static(TILES):
                while p + T <= g.patch_w:  # the tile of displacements p .. p + T - 1
                    for w in range(g.out_w):
                        total = tap_sums(x1, x2, g, b, h, w, shift_h, p, T)
                        for q in ti.static(range(T)):
                            out[row + (p + q) * plane + w] = total[q] * s
                    p += T

    blocks = ti.types.ndarray(dtype=ti.types.vector(TRANSPOSE_BLOCK, dtype), ndim=3)
    block_rows = ti.types.ndarray(dtype=ti.types.vector(TRANSPOSE_BLOCK, dtype), ndim=4)

    @locked

    @ti.kernel
    def transpose(x: blocks, out: block_rows):
        """``out[b, n // T, n % T, k][l] = t[b, k * T + l, n]`` (zero past ``t``'s ``M`` rows; ``T`` =
        ``TRANSPOSE_BLOCK``): the ``(B, M, N)`` -> ``(B, N, M')`` transpose of ``t`` (read as ``x`` of shape
        ``(B, M, N / T)``, ``M'`` = ``M`` rounded up to whole vectors of ``LANES``) in ``T`` x ``T`` blocks
        transposed in registers.  Both CPU layouts are such a transpose: an NCHW input's ``(B, C, H * W)``
        to channel vectors, the output gradient's ``(B, P, oH * oW)`` to pixel-major rows.  A Taichi kernel
        rather than a torch copy: torch's OpenMP threads keep spinning for milliseconds after each
        parallel copy, and a Taichi kernel launched in that time shares the cores with them."""
        for b, u in ti.ndrange(x.shape[0], x.shape[2]):
            for k in range(out.shape[3]):
                rows = [ti.Vector.zero(dtype, TRANSPOSE_BLOCK) for _ in ti.static(range(TRANSPOSE_BLOCK))]
                for r in ti.static(range(TRANSPOSE_BLOCK)):
                    if k * TRANSPOSE_BLOCK + r < x.shape[1]:
                        rows[r] = x[b, k * TRANSPOSE_BLOCK + r, u]
                for j in ti.static(range(TRANSPOSE_BLOCK)):
                    out[b, u, j, k] = ti.Vector(ti.static(column(rows, j)))

    return SimpleNamespace(forward=forward, transpose=transpose)


@functools.cache
def gradient_kernels(dtype, vectors: int) -> SimpleNamespace:
    """The two gradient kernels for inputs of Taichi scalar type ``dtype`` read in chunks of ``vectors``
    channel vectors: ``(B, H, W, C / (LANES * vectors))`` ndarrays of ``vectors x LANES`` matrices.  A
    chunk is one load or store in the kernels, which LLVM splits into vector moves at constant offsets
    from one address (per-vector indexing spent three integer instructions on each vector's address)."""
    chunks = ti.types.ndarray(dtype=ti.types.matrix(vectors, LANES, dtype), ndim=4)
    acc_t = dtype  # what they compute in

    @ti.func
    def weighted_run(grad_out: ti.template(), x: ti.template(), g: ti.template(), acc, b, h, ph, y, chunk, p0, count,
                     p_step, w0, w_step, col0, col_step, s):
        """``acc`` plus ``sum_k grad_out[b, h, w0 + k * w_step, ph, p0 + k * p_step] * x[b, y, col0 + k *
        col_step, chunk]`` over ``k < count`` (the output gradient pixel-major, times ``s``), in tiles of
        ``TILES`` displacements."""
        total = acc
        k = 0
        for T in ti.static(TILES):
            while k + T <= count:
                weight = ti.Vector([
                    ti.cast(grad_out[pixel_major_index(g, b, ph, p0 + (k + q) * p_step, h, w0 + (k + q) * w_step)],
                            dtype) * s
                    for q in ti.static(range(T))
                ])
                for q in ti.static(range(T)):
                    total += weight[q] * x[b, y, col0 + (k + q) * col_step, chunk]
                k += T
        return total

    @ti.func
    def input1_tap(grad_out: ti.template(), x2: ti.template(), g: ti.template(), acc, b, y, h, w, chunk, start, lo,
                   hi, s):
        """``acc`` plus what input1 pixel ``(y, start - first_w)`` gets through the kernel tap that puts it
        at output pixel ``(h, w)``: its displacements ``lo .. hi - 1`` of every patch row inside."""
        total = acc
        for ph in range(g.patch_h):
            y2 = y + g.first_h + ph * g.patch_dilation_h
            if 0 <= y2 < x2.shape[1]:
                total = weighted_run(grad_out, x2, g, total, b, h, ph, y2, chunk, lo, hi - lo, 1, w, 0,
                                     start + lo * g.patch_dilation_w, g.patch_dilation_w, s)
        return total

    @ti.func
    def input2_tap(grad_out: ti.template(), x1: ti.template(), g: ti.template(), acc, b, y, top, j, first_row,
                   last_row, chunk, period, w_step, s):
        """``acc`` plus what input2 pixel ``(y, top + first_w)`` gets through kernel column ``j`` from patch
        rows ``first_row .. last_row - 1``.  Its partner at displacement ``pw`` is input1 column ``x1 = top
        - pw * dp``, whose output column ``w = (x1 - base) / stride_w`` must be a whole number in ``[0,
        out_w)``: every ``period``-th displacement from the first such one."""
        height, width = x1.shape[1], x1.shape[2]
        dp = g.patch_dilation_w
        total = acc
        base = g.origin_w + j * g.dilation_w
        lo, hi = inside_range(width - 1 - top, dp, width, g.patch_w)  # 0 <= x1 < width
        lo2, hi2 = inside_range((g.out_w - 1) * g.stride_w + base - top, dp, g.out_w * g.stride_w, g.patch_w)
        pw, end = ti.max(lo, lo2), ti.min(hi, hi2)  # base <= x1 < base + out_w * stride_w
        limit = ti.min(end, pw + period)
        while pw < limit and (top - pw * dp - base) % g.stride_w != 0:
            pw += 1
        if pw < limit:
            count = ti_ceil_div(end - pw, period)
            w_first = (top - pw * dp - base) // g.stride_w
            for ph in range(first_row, last_row):
                for i in range(g.kernel_h):  # nested loops: ndrange would divide
                    y1 = y - g.first_h - ph * g.patch_dilation_h
                    h = output_index(y1, g.origin_h, i, g.dilation_h, g.stride_h, g.out_h)
                    if 0 <= y1 < height and h >= 0:
                        total = weighted_run(grad_out, x1, g, total, b, h, ph, y1, chunk, pw, count, period, w_first,
                                             -w_step, top - pw * dp, -period * dp, s)
        return total

    @locked

    @ti.kernel
    def grad_input1(
        grad_out: ti.types.ndarray(ndim=1),
        x2: chunks,
        grad1: chunks,
        g: GeometryStruct,
        scale: ti.f64,
    ):
        """``grad1[b, y, x, :] = scale * sum grad_out[b, h, w, ph, pw] * x2[b, y + su, x + sv, :]`` over the
        (displacement, tap) pairs whose tap lands on ``(y, x)``, with ``grad_out`` flattened pixel-major
        (:func:`pixel_major_index`); one task per input row, one chunk of channel vectors of one pixel at a
        time."""
        height, width = x2.shape[1], x2.shape[2]
        s = ti.cast(scale, acc_t)
        for b, y in ti.ndrange(x2.shape[0], height):
            for x, chunk in ti.ndrange(width, x2.shape[3]):
                acc = ti.Matrix.zero(acc_t, vectors, LANES)
                start = x + g.first_w  # partner column of displacement 0
                lo, hi = inside_range(start, g.patch_dilation_w, width, g.patch_w)
                for j in range(g.kernel_w):  # column arithmetic first: it does not depend on the row
                    w = output_index(x, g.origin_w, j, g.dilation_w, g.stride_w, g.out_w)
                    if w >= 0:
                        for i in range(g.kernel_h):
                            h = output_index(y, g.origin_h, i, g.dilation_h, g.stride_h, g.out_h)
                            if h >= 0:
                                acc = input1_tap(grad_out, x2, g, acc, b, y, h, w, chunk, start, lo, hi, s)
                grad1[b, y, x, chunk] = acc

    @locked

    @ti.kernel
    def grad_input2(
        grad_out: ti.types.ndarray(ndim=1),
        x1: chunks,
        grad2: chunks,
        g: GeometryStruct,
        scale: ti.f64,
    ):
        """``grad2[b, y, x, :] = scale * sum grad_out[b, h, w, ph, pw] * x1[b, y - su, x - sv, :]``
        (pixel-major ``grad_out``, as in ``grad_input1``); one task per input row.  With a column
        stride, the displacements whose partner is an output pixel form an arithmetic progression of
        step ``period``.

        A pixel's weights here are spread over many output pixels' blocks, so with much work per
        displacement row the row is swept in passes of ``ROWS_PER_PASS`` patch rows, whose weights
        stay in L1 cache, adding into the gradient between passes; with little work per row a single
        pass is cheaper (the column arithmetic is per pass)."""
        s = ti.cast(scale, acc_t)
        period = 1  # smallest period with period * dp divisible by stride_w
        while (period * g.patch_dilation_w) % g.stride_w != 0:
            period += 1
        w_step = period * g.patch_dilation_w // g.stride_w
        rows = g.patch_h
        if ROWS_PER_PASS * g.patch_w * vectors >= MIN_PASS_WORK:
            rows = ROWS_PER_PASS
        for b, y in ti.ndrange(x1.shape[0], x1.shape[1]):
            for row_pass in range(ti_ceil_div(g.patch_h, rows)):
                first_row = row_pass * rows
                for x, chunk in ti.ndrange(x1.shape[2], x1.shape[3]):
                    acc = ti.Matrix.zero(acc_t, vectors, LANES)
                    if first_row > 0:  # a later pass: add to the earlier passes' sums
                        acc = grad2[b, y, x, chunk]
                    top = x - g.first_w  # partner column of displacement 0
                    for j in range(g.kernel_w):  # column arithmetic first: it does not depend on the row
                        acc = input2_tap(grad_out, x1, g, acc, b, y, top, j, first_row,
                                         ti.min(g.patch_h, first_row + rows), chunk, period, w_step, s)
                    grad2[b, y, x, chunk] = acc

    return SimpleNamespace(grad_input1=grad_input1, grad_input2=grad_input2)

