"""Taichi kernels for the GPU backends (CUDA, Vulkan, Metal, OpenGL), on NCHW tensors.

Two families, the same arithmetic:

* **Tiled** (single-tap geometries, which is every common network and, through the per-pixel
  products, every kernel window at stride 1): a block of threads owns a tile of :data:`TILE_W`
  neighbouring columns.  It copies one channel chunk of the ``input1`` row and of the displaced
  ``input2`` row (a band of :data:`BAND` columns covering the whole tile and a chunk of displacements
  along the patch row) into block shared memory with coalesced loads, then every thread multiplies
  out of shared memory: each loaded row feeds a whole chunk of displacements.  The gradients are
  gathers of the same shape (one block owns a tile of gradient columns x a chunk of channels and
  walks every displacement that reads them): no atomics, deterministic.
* **Simple** (any geometry): one thread per output or gradient element, reading global memory.  Used
  where a tile does not fit (several kernel taps at a stride, very wide patch dilations) and for calls
  too small to fill one (:func:`._dispatch.plan` chooses).

Taichi exposes block shared memory and barriers on CUDA and on its SPIR-V backends, so the same code
serves CUDA and Vulkan (tested on lavapipe in CI; Metal and OpenGL are untested).  The loops launch whole blocks
only: a barrier is reached by
every thread of a block or by none, and every branch around one depends on the block, not the thread.
"""

import functools
from types import SimpleNamespace

from ._geometry import Geometry, ceil_div
from ._kernel_helpers import GeometryStruct, flat_index, output_index, ti_ceil_div
from ._runtime import MAX_ELEMENTS, locked, ti

#: columns of one tile (one warp wide, so that a warp's loads are coalesced).
TILE_W = 32
#: displacements along a patch row handled per pass over a shared band.
PATCH_CHUNK = 16
#: shared columns of one displaced row: the tile plus the reach of a patch chunk.
BAND = 96
#: forward: threads along the patch chunk per column, and displacements per thread.
FWD_THREADS_P, FWD_PER_THREAD = 4, 4
#: forward: channels copied to shared memory per pass.
FWD_CHANNELS = 16
#: gradients: threads along the channels per column, and channels per thread.
GRAD_THREADS_C, GRAD_PER_THREAD = 8, 4
GRAD_CHANNELS = GRAD_THREADS_C * GRAD_PER_THREAD
#: threads of one block.
FWD_BLOCK, GRAD_BLOCK = TILE_W * FWD_THREADS_P, TILE_W * GRAD_THREADS_C


# Each thread copies a whole number of elements into shared memory, and a patch chunk is covered.
assert (FWD_CHANNELS * TILE_W) % FWD_BLOCK == 0 and (FWD_CHANNELS * BAND) % FWD_BLOCK == 0
assert (PATCH_CHUNK * TILE_W) % GRAD_BLOCK == 0 and (GRAD_CHANNELS * BAND) % GRAD_BLOCK == 0
assert FWD_THREADS_P * FWD_PER_THREAD == PATCH_CHUNK


def computes(g: Geometry, batch: int, channels: int, height: int, width: int) -> bool:
    """Whether the tiled kernels can compute this call: a single kernel tap, a tile's displaced band
    (forward: output columns at ``stride_w``; gradients: input columns) within :data:`BAND` columns, and
    launches that Taichi's 32-bit loop index can count (whether they are worth it is
    :func:`._dispatch.plan`'s decision)."""
    reach = (PATCH_CHUNK - 1) * g.patch_dilation_w
    fits = g.patch_dilation_w >= 1 and (TILE_W - 1) * g.stride_w + reach < BAND and TILE_W - 1 + reach < BAND
    forward_threads = (batch * g.patch_h * g.out_h * ceil_div(g.out_w, TILE_W) * ceil_div(g.patch_w, PATCH_CHUNK)
                       * FWD_BLOCK)
    grad_threads = batch * height * ceil_div(width, TILE_W) * ceil_div(channels, GRAD_CHANNELS) * GRAD_BLOCK
    return g.kernel_h == 1 and g.kernel_w == 1 and fits and max(forward_threads, grad_threads) <= MAX_ELEMENTS


@ti.func
def _split(index: ti.i32, size: ti.i32):
    """``(index // size, index % size)``: peels one coordinate off a flat block index."""
    return index // size, index % size


# ------------------------------------------------------------------------------------------ tiled


@functools.cache
def gpu_kernels(acc_t) -> SimpleNamespace:
    """The GPU kernels, tiled and simple, for NCHW arrays of Taichi scalar type ``acc_t``, which they
    compute in (closed over: a type as a template argument costs a launch-cache look-up in quadrants)."""

    @locked
    @ti.kernel
    def forward_tiled(
        x1: ti.types.ndarray(ndim=4),
        x2: ti.types.ndarray(ndim=4),
        out: ti.types.ndarray(ndim=1),
        g: GeometryStruct,
        scale: ti.f64,
    ):
        """``out`` flattened ``(B, PH, PW, oH, oW)``.  One block per (image, patch row, output row, tile of
        output columns, chunk of patch columns); thread ``(tx, tp)`` computes column ``tx`` for the
        displacements ``tp, tp + FWD_THREADS_P, ...`` of the chunk."""
        channels, height, width = x1.shape[1], x1.shape[2], x1.shape[3]
        threads = ti.static(FWD_BLOCK)
        blocks = x1.shape[0] * g.patch_h * g.out_h * ti_ceil_div(g.out_w, TILE_W) * ti_ceil_div(g.patch_w, PATCH_CHUNK)
        ti.loop_config(block_dim=threads)
        for index in range(blocks * threads):
            b, ph, h, w0, pw0, tx, tp, t = _forward_block(index, g)
            y1 = h * g.stride_h + g.origin_h
            y2 = y1 + g.first_h + ph * g.patch_dilation_h
            xa0 = w0 * g.stride_w + g.origin_w  # input1 column of the tile's first output column
            xb0 = xa0 + g.first_w + pw0 * g.patch_dilation_w  # first input2 column of the band

            rows1 = ti.simt.block.SharedArray((FWD_CHANNELS, TILE_W), acc_t)
            rows2 = ti.simt.block.SharedArray((FWD_CHANNELS, BAND), acc_t)
            acc = ti.Vector.zero(acc_t, FWD_PER_THREAD)
            if 0 <= y1 < height and 0 <= y2 < height:  # the same for the whole block
                for chunk_c in range(ti_ceil_div(channels, FWD_CHANNELS)):
                    c0 = chunk_c * FWD_CHANNELS
                    for k in ti.static(range(FWD_CHANNELS * TILE_W // threads)):
                        cc, col = _split(t + k * threads, TILE_W)
                        xa = xa0 + col * g.stride_w
                        value = ti.cast(0, acc_t)
                        if c0 + cc < channels and 0 <= xa < width:
                            value = ti.cast(x1[b, c0 + cc, y1, xa], acc_t)
                        rows1[cc, col] = value
                    for k in ti.static(range(FWD_CHANNELS * BAND // threads)):
                        cc, u = _split(t + k * threads, BAND)
                        value = ti.cast(0, acc_t)
                        if c0 + cc < channels and 0 <= xb0 + u < width:
                            value = ti.cast(x2[b, c0 + cc, y2, xb0 + u], acc_t)
                        rows2[cc, u] = value
                    ti.simt.block.sync()
                    for cc in range(FWD_CHANNELS):
                        a = rows1[cc, tx]
                        for k in ti.static(range(FWD_PER_THREAD)):
                            u = tx * g.stride_w + (tp + k * FWD_THREADS_P) * g.patch_dilation_w
                            acc[k] += a * rows2[cc, u]
                    ti.simt.block.sync()
            w = w0 + tx
            for k in ti.static(range(FWD_PER_THREAD)):
                pw = pw0 + tp + k * FWD_THREADS_P
                if w < g.out_w and pw < g.patch_w:
                    out[flat_index(g, b, ph, pw, h, w)] = acc[k] * ti.cast(scale, acc_t)

    @locked
    @ti.kernel
    def grad_input1_tiled(
        grad_out: ti.types.ndarray(ndim=1),
        x2: ti.types.ndarray(ndim=4),
        grad1: ti.types.ndarray(ndim=4),
        g: GeometryStruct,
        scale: ti.f64,
    ):
        """``grad1[b, c, y, x] = scale * sum grad_out[b, ph, pw, h, w] * x2[b, c, y2, x + su]`` for the output
        pixel ``(h, w)`` at ``(y, x)``.  One block per (image, row, tile of columns, chunk of channels);
        thread ``(tx, tc)`` owns column ``tx`` and channels ``tc, tc + GRAD_THREADS_C, ...``."""
        height, width = x2.shape[2], x2.shape[3]
        threads = ti.static(GRAD_BLOCK)
        chunks_p = ti_ceil_div(g.patch_w, PATCH_CHUNK)
        ti.loop_config(block_dim=threads)
        for index in range(_grad_blocks(x2) * threads):
            b, y, x0, c0, tx, tc, t = _grad_block(index, x2)
            h = output_index(y, g.origin_h, 0, 1, g.stride_h, g.out_h)

            weights = ti.simt.block.SharedArray((PATCH_CHUNK, TILE_W), acc_t)
            rows = ti.simt.block.SharedArray((GRAD_CHANNELS, BAND), acc_t)
            acc = ti.Vector.zero(acc_t, GRAD_PER_THREAD)
            for ph, chunk in ti.ndrange(g.patch_h, chunks_p):
                y2 = y + g.first_h + ph * g.patch_dilation_h
                if h >= 0 and 0 <= y2 < height:  # the same for the whole block
                    pw0 = chunk * PATCH_CHUNK
                    for k in ti.static(range(PATCH_CHUNK * TILE_W // threads)):
                        j, col = _split(t + k * threads, TILE_W)
                        w = output_index(x0 + col, g.origin_w, 0, 1, g.stride_w, g.out_w)
                        value = ti.cast(0, acc_t)
                        if w >= 0 and pw0 + j < g.patch_w and x0 + col < width:
                            value = ti.cast(grad_out[flat_index(g, b, ph, pw0 + j, h, w)], acc_t)
                        weights[j, col] = value
                    xb0 = x0 + g.first_w + pw0 * g.patch_dilation_w
                    _load_partner_band(rows, x2, b, c0, y2, xb0, t, threads, acc_t)
                    _accumulate_band(acc, weights, rows, tx, tc, tx, g.patch_dilation_w)
            _store_block(grad1, acc, b, y, x0 + tx, c0 + tc, scale, acc_t)

    @locked
    @ti.kernel
    def grad_input2_tiled(
        grad_out: ti.types.ndarray(ndim=1),
        x1: ti.types.ndarray(ndim=4),
        grad2: ti.types.ndarray(ndim=4),
        g: GeometryStruct,
        scale: ti.f64,
    ):
        """``grad2[b, c, y, x] = scale * sum grad_out[b, ph, pw, h, w] * x1[b, c, y - sv, x - su]`` for the
        output pixel ``(h, w)`` at the partner ``(y - sv, x - su)``.  Blocks and threads as in
        :func:`grad_input1_tiled`; displacement ``pw0 + j`` reads band column ``tx + (PATCH_CHUNK - 1 - j) * dp``
        (grad_input1: ``tx + j * dp``)."""
        height, width = x1.shape[2], x1.shape[3]
        threads = ti.static(GRAD_BLOCK)
        chunks_p = ti_ceil_div(g.patch_w, PATCH_CHUNK)
        dp = g.patch_dilation_w
        ti.loop_config(block_dim=threads)
        for index in range(_grad_blocks(x1) * threads):
            b, y, x0, c0, tx, tc, t = _grad_block(index, x1)

            weights = ti.simt.block.SharedArray((PATCH_CHUNK, TILE_W), acc_t)
            rows = ti.simt.block.SharedArray((GRAD_CHANNELS, BAND), acc_t)
            acc = ti.Vector.zero(acc_t, GRAD_PER_THREAD)
            for ph, chunk in ti.ndrange(g.patch_h, chunks_p):
                y1 = y - g.first_h - ph * g.patch_dilation_h
                h = output_index(y1, g.origin_h, 0, 1, g.stride_h, g.out_h)
                if 0 <= y1 < height and h >= 0:  # the same for the whole block
                    pw0 = chunk * PATCH_CHUNK
                    for k in ti.static(range(PATCH_CHUNK * TILE_W // threads)):
                        j, col = _split(t + k * threads, TILE_W)
                        xa = x0 + col - g.first_w - (pw0 + j) * dp
                        w = output_index(xa, g.origin_w, 0, 1, g.stride_w, g.out_w)
                        value = ti.cast(0, acc_t)
                        if w >= 0 and pw0 + j < g.patch_w and 0 <= xa < width:
                            value = ti.cast(grad_out[flat_index(g, b, ph, pw0 + j, h, w)], acc_t)
                        weights[j, col] = value
                    xa0 = x0 - g.first_w - (pw0 + PATCH_CHUNK - 1) * dp
                    _load_partner_band(rows, x1, b, c0, y1, xa0, t, threads, acc_t)
                    _accumulate_band(acc, weights, rows, tx, tc, tx + (PATCH_CHUNK - 1) * dp, -dp)
            _store_block(grad2, acc, b, y, x0 + tx, c0 + tc, scale, acc_t)

    @locked
    @ti.kernel
    def forward_simple(
        x1: ti.types.ndarray(ndim=4),
        x2: ti.types.ndarray(ndim=4),
        out: ti.types.ndarray(ndim=1),
        g: GeometryStruct,
        scale: ti.f64,
    ):
        """``out`` flattened ``(B, PH, PW, oH, oW)``; ``x1``, ``x2`` are ``(B, C, H, W)``."""
        channels, height, width = x1.shape[1], x1.shape[2], x1.shape[3]
        for b, ph, pw, h, w in ti.ndrange(x1.shape[0], g.patch_h, g.patch_w, g.out_h, g.out_w):
            shift_h = g.first_h + ph * g.patch_dilation_h
            shift_w = g.first_w + pw * g.patch_dilation_w
            total = ti.cast(0, acc_t)
            for i, j in ti.ndrange(g.kernel_h, g.kernel_w):
                y1 = h * g.stride_h + g.origin_h + i * g.dilation_h
                xa = w * g.stride_w + g.origin_w + j * g.dilation_w
                y2, xb = y1 + shift_h, xa + shift_w
                if 0 <= y1 < height and 0 <= y2 < height and 0 <= xa < width and 0 <= xb < width:
                    for c in range(channels):
                        total += ti.cast(x1[b, c, y1, xa], acc_t) * ti.cast(x2[b, c, y2, xb], acc_t)
            out[flat_index(g, b, ph, pw, h, w)] = total * ti.cast(scale, acc_t)

    @locked
    @ti.kernel
    def grad_input1_simple(
        grad_out: ti.types.ndarray(ndim=1),
        x2: ti.types.ndarray(ndim=4),
        grad1: ti.types.ndarray(ndim=4),
        g: GeometryStruct,
        scale: ti.f64,
    ):
        """``grad1[b, c, y, x]``, all ``(B, C, H, W)``."""
        height, width = x2.shape[2], x2.shape[3]
        for b, c, y, x in ti.ndrange(x2.shape[0], x2.shape[1], height, width):
            total = ti.cast(0, acc_t)
            for ph, i in ti.ndrange(g.patch_h, g.kernel_h):
                y2 = y + g.first_h + ph * g.patch_dilation_h
                h = output_index(y, g.origin_h, i, g.dilation_h, g.stride_h, g.out_h)
                if 0 <= y2 < height and h >= 0:
                    for pw, j in ti.ndrange(g.patch_w, g.kernel_w):
                        xb = x + g.first_w + pw * g.patch_dilation_w
                        w = output_index(x, g.origin_w, j, g.dilation_w, g.stride_w, g.out_w)
                        if 0 <= xb < width and w >= 0:
                            weight = ti.cast(grad_out[flat_index(g, b, ph, pw, h, w)], acc_t)
                            total += weight * ti.cast(x2[b, c, y2, xb], acc_t)
            grad1[b, c, y, x] = total * ti.cast(scale, acc_t)

    @locked
    @ti.kernel
    def grad_input2_simple(
        grad_out: ti.types.ndarray(ndim=1),
        x1: ti.types.ndarray(ndim=4),
        grad2: ti.types.ndarray(ndim=4),
        g: GeometryStruct,
        scale: ti.f64,
    ):
        """``grad2[b, c, y, x]``, all ``(B, C, H, W)``."""
        height, width = x1.shape[2], x1.shape[3]
        for b, c, y, x in ti.ndrange(x1.shape[0], x1.shape[1], height, width):
            total = ti.cast(0, acc_t)
            for ph, i in ti.ndrange(g.patch_h, g.kernel_h):
                y1 = y - g.first_h - ph * g.patch_dilation_h
                h = output_index(y1, g.origin_h, i, g.dilation_h, g.stride_h, g.out_h)
                if 0 <= y1 < height and h >= 0:
                    for pw, j in ti.ndrange(g.patch_w, g.kernel_w):
                        xa = x - g.first_w - pw * g.patch_dilation_w
                        w = output_index(xa, g.origin_w, j, g.dilation_w, g.stride_w, g.out_w)
                        if 0 <= xa < width and w >= 0:
                            weight = ti.cast(grad_out[flat_index(g, b, ph, pw, h, w)], acc_t)
                            total += weight * ti.cast(x1[b, c, y1, xa], acc_t)
            grad2[b, c, y, x] = total * ti.cast(scale, acc_t)

    return SimpleNamespace(forward_tiled=forward_tiled, grad_input1_tiled=grad_input1_tiled,
                           grad_input2_tiled=grad_input2_tiled, forward_simple=forward_simple,
                           grad_input1_simple=grad_input1_simple, grad_input2_simple=grad_input2_simple)


@ti.func
def _forward_block(index, g: ti.template()):
    """``(b, ph, h, w0, pw0, tx, tp, t)`` of flat thread ``index`` of a forward launch: the block's image,
    patch row, output row, first output column and first patch column; the thread's column and patch
    offsets and its index in the block."""
    block, t = _split(index, FWD_BLOCK)
    block, chunk = _split(block, ti_ceil_div(g.patch_w, PATCH_CHUNK))
    block, tile = _split(block, ti_ceil_div(g.out_w, TILE_W))
    block, h = _split(block, g.out_h)
    b, ph = _split(block, g.patch_h)
    tp, tx = _split(t, TILE_W)
    return b, ph, h, tile * TILE_W, chunk * PATCH_CHUNK, tx, tp, t


@ti.func
def _grad_blocks(x: ti.template()):
    """Blocks of a gradient launch on ``(B, C, H, W)`` tensors: (image, row, tile of columns, chunk of
    channels)."""
    return x.shape[0] * x.shape[2] * ti_ceil_div(x.shape[3], TILE_W) * ti_ceil_div(x.shape[1], GRAD_CHANNELS)


@ti.func
def _grad_block(index, x: ti.template()):
    """``(b, y, x0, c0, tx, tc, t)`` of flat thread ``index`` of a gradient launch: the block's image,
    row, first column and first channel; the thread's column and channel offsets and its index in the
    block."""
    block, t = _split(index, GRAD_BLOCK)
    block, chunk_c = _split(block, ti_ceil_div(x.shape[1], GRAD_CHANNELS))
    block, tile = _split(block, ti_ceil_div(x.shape[3], TILE_W))
    b, y = _split(block, x.shape[2])
    tc, tx = _split(t, TILE_W)
    return b, y, tile * TILE_W, chunk_c * GRAD_CHANNELS, tx, tc, t


@ti.func
def _store_block(grad: ti.template(), acc: ti.template(), b, y, x, c, scale, acc_t: ti.template()):
    """``grad[b, c + k * GRAD_THREADS_C, y, x] = scale * acc[k]`` inside the tensor."""
    for k in ti.static(range(GRAD_PER_THREAD)):
        if x < grad.shape[3] and c + k * GRAD_THREADS_C < grad.shape[1]:
            grad[b, c + k * GRAD_THREADS_C, y, x] = acc[k] * ti.cast(scale, acc_t)


@ti.func
def _load_partner_band(rows: ti.template(), src: ti.template(), b, c0, y, x0, t, threads: ti.template(),
                       acc_t: ti.template()):
    """``rows[cc, u] = src[b, c0 + cc, y, x0 + u]`` (zero outside the image or past the channels)."""
    channels, width = src.shape[1], src.shape[3]
    for k in ti.static(range(GRAD_CHANNELS * BAND // threads)):
        cc, u = _split(t + k * threads, BAND)
        value = ti.cast(0, acc_t)
        if c0 + cc < channels and 0 <= x0 + u < width:
            value = ti.cast(src[b, c0 + cc, y, x0 + u], acc_t)
        rows[cc, u] = value


@ti.func
def _accumulate_band(acc: ti.template(), weights: ti.template(), rows: ti.template(), tx, tc, first, step):
    """Once the block has filled ``weights`` and ``rows``: ``acc[k] += sum_j weights[j, tx] *
    rows[tc + k * GRAD_THREADS_C, first + j * step]``, between two barriers (the second keeps the shared
    arrays until every thread has read them)."""
    ti.simt.block.sync()
    for j in range(PATCH_CHUNK):
        weight = weights[j, tx]
        for k in ti.static(range(GRAD_PER_THREAD)):
            acc[k] += weight * rows[tc + k * GRAD_THREADS_C, first + j * step]
    ti.simt.block.sync()


# ----------------------------------------------------------------------------------------- simple
# One thread per output / gradient element, so that neighbouring threads (neighbouring columns) read
# neighbouring addresses.

