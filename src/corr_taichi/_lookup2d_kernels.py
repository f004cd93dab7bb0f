"""Taichi kernels of the 2-D flow-guided lookup (RAFT's correlation lookup), for every backend.

For each pixel ``(b, h, w)`` of ``fmap1`` with coordinate ``(x, y)``, the lookup needs ``(2R + 1)**2``
bilinear samples of the correlation with ``fmap2`` at ``(x + dx, y + dy)``.  They all share the
fractional parts ``fx = x - floor(x)`` and ``fy = y - floor(y)``, so the kernels compute the dot
products ``D[j][i]`` of ``fmap1[b, h, w]`` with the ``(2R + 2)**2`` whole pixels
``(floor(x) - R + i, floor(y) - R + j)`` once, one row ``j`` at a time, and blend neighbours:

    out[i, j] = (1 - fy) * ((1 - fx) D[j][i] + fx D[j][i + 1]) + fy * ((1 - fx) D[j + 1][i] + fx D[j + 1][i + 1])

(zero outside ``fmap2``): ``(2R + 2)**2`` dot products per pixel instead of ``4 (2R + 1)**2`` samples.

A call handles one map of a pyramid: it reads the coordinates scaled by ``shrink`` (``1 / 2**i`` at level
``i``), and the forward writes channels ``first ..`` of the pyramid's ``(B, L (2R + 1)**2, H1, W1)``
output in place; the backward kernels read that channel range of the output gradient and, with ``add``,
add ``fmap1``'s and the coordinates' gradients to the previous levels'.

The backward is three gathers, deterministic (no atomics):

* :func:`lookup_kernels`' ``pixel_backward``, one thread per pixel: the weight ``G[j][i]`` with which
  each whole pixel of the window enters the output gradient's sum (stored for ``grad_fmap2``), then
  ``fmap1``'s gradient ``sum G[j][i] fmap2[...]`` and the coordinate's (the derivative of the blend
  weights, from the dot products), each where wanted;
* ``grad_fmap2``, one thread per ``fmap2`` pixel: the sum of ``G[j][i] fmap1[...]`` over the ``fmap1``
  pixels whose window covers it.  Those are found through the pixels sorted by window origin
  (``window_cells`` gives each pixel's cell; the caller sorts them stably, so the order of the sum is
  fixed): the pixel's ``(2R + 2)**2`` candidate origins each point to a run of the sorted pixels.

The feature maps are the core op's CPU layout: channels-last vectors ``(B, H, W, C / LANES)`` of
``LANES`` channels.  Kernels come from factories cached per compute dtype, radius and output order,
which they close over.  (No ``from __future__ import annotations`` here: Taichi reads the kernels'
annotations as objects.)
"""

import functools

from ._kernel_helpers import LANES, lookup_helpers, partner_dots, ti_ceil_div
from ._runtime import locked, ti

#: a row's dot products are computed in tiles of this many neighbouring pixels, which share each load
#: of ``fmap1``'s vector (``docs/flow-lookup.md``: 2 was the fastest of 1, 2, 5 and 10 at 256 channels).
#: The window is ``2R + 2`` pixels wide, a multiple of it.
PARTNERS = 2
#: on the CPU the gradient gathers accumulate this many channel vectors at a time in registers (one at
#: a time on the GPU backends, where the unrolled chunk made Vulkan's shader compiler take minutes)
CHUNK = 8


@functools.cache
def lookup_kernels(dtype, radius: int, x_major: bool, cpu: bool = True):
    """``forward`` into ``(B, K, H1, W1)`` (one pyramid level's ``(2R + 1)**2`` channels of it),
    ``pixel_backward`` (which reads the output gradient so too), ``window_cells`` and ``grad_fmap2``, for
    coordinates ``(B, 2, H1, W1)`` (x in channel 0).  Output channel ``k`` holds the offset ``(dx, dy)``
    at ``k = (dx + R) (2R + 1) + (dy + R)`` when ``x_major`` (RAFT's order), else
    ``(dy + R) (2R + 1) + (dx + R)``.  ``cpu``: the CPU backend's variant (channel vectors gathered
    ``CHUNK`` at a time), else the GPU backends' (one at a time)."""
    chunk = CHUNK if cpu else 1
    taps = 2 * radius + 2  # whole pixels per window side
    side = taps - 1  # offsets per side
    window = lookup_helpers(dtype, radius)[0]
    nd3, nd4 = ti.types.ndarray(ndim=3), ti.types.ndarray(ndim=4)
    vectors = ti.types.ndarray(dtype=ti.types.vector(LANES, dtype), ndim=4)

    @ti.func
    def channel(i, j):
        """The output channel of offset column ``i`` and row ``j`` (``0..2R``)."""
        return i * side + j if ti.static(x_major) else j * side + i

    @ti.func
    def row_dots(fmap1: ti.template(), fmap2: ti.template(), b, h, w, row, x0):
        """``<fmap1[b, h, w], fmap2[b, row, x0 + i]>`` for ``i < taps``, zero outside ``fmap2``."""
        dots = ti.Vector.zero(dtype, taps)
        if 0 <= row and row < fmap2.shape[1]:
            for t in ti.static(range(taps // PARTNERS)):
                pair = partner_dots(fmap1, fmap2, b, h, w, row, x0 + t * PARTNERS, 1, PARTNERS, dtype)
                for i in ti.static(range(PARTNERS)):
                    dots[t * PARTNERS + i] = pair[i]
        return dots

    @ti.func
    def along_x(values: ti.template(), fx):
        """``(1 - fx) v[i] + fx v[i + 1]`` for ``i < side``: a row of dots blended along x."""
        out = ti.Vector.zero(dtype, side)
        for i in ti.static(range(side)):
            out[i] = (1 - fx) * values[i] + fx * values[i + 1]
        return out

    @ti.func
    def grad_row(grad_out: ti.template(), b, h, w, first, j):
        """``g[i] = grad_out[b, first + channel(i, j), h, w]`` for ``i < side`` (zero for a row ``j`` past the
        end)."""
        g = ti.Vector.zero(dtype, side)
        if j < side:
            for i in ti.static(range(side)):
                g[i] = ti.cast(grad_out[b, first + channel(i, j), h, w], dtype)
        return g

    @ti.func
    def spread_x(g: ti.template(), fx):
        """The weights of a row's whole pixels in ``sum_i g[i] out_x[i]`` (``out_x`` = :func:`along_x`), and
        their derivatives in ``fx``: ``(1 - fx) g[i] + fx g[i - 1]`` and ``g[i - 1] - g[i]``."""
        weights, slopes = ti.Vector.zero(dtype, taps), ti.Vector.zero(dtype, taps)
        for i in ti.static(range(taps)):
            if ti.static(i < side):
                weights[i] += (1 - fx) * g[i]
                slopes[i] -= g[i]
            if ti.static(i > 0):
                weights[i] += fx * g[i - 1]
                slopes[i] += g[i - 1]
        return weights, slopes

    @locked
    @ti.kernel
    def forward(fmap1: vectors, fmap2: vectors, coords: nd4, out: nd4, scale: ti.f64, shrink: ti.f64, first: ti.i32):
        """``out[b, first + k, h, w]``: the lookup of ``fmap2`` at ``shrink * coords[b, :, h, w]``.  A thread's
        consecutive pixels fill each output channel's cache lines in turn, so the result is written in its
        final layout, one level of a pyramid after another, with no copy afterwards."""
        s, level = ti.cast(scale, dtype), ti.cast(shrink, dtype)
        for b, h, w in ti.ndrange(fmap1.shape[0], fmap1.shape[1], fmap1.shape[2]):
            x0, fx = window(level * ti.cast(coords[b, 0, h, w], dtype), fmap2.shape[2])
            y0, fy = window(level * ti.cast(coords[b, 1, h, w], dtype), fmap2.shape[1])
            above = ti.Vector.zero(dtype, side)
            for j in range(taps):
                here = along_x(row_dots(fmap1, fmap2, b, h, w, y0 + j, x0), fx)
                if j > 0:
                    for i in ti.static(range(side)):
                        out[b, first + channel(i, j - 1), h, w] = s * ((1 - fy) * above[i] + fy * here[i])
                above = here

    @ti.func
    def window_weights(grad_out: ti.template(), weights: ti.template(), b, h, w, first, x0, y0, fx, fy, s, height,
                       width):
        """Store ``s * G[j][i]`` (the weight of whole pixel ``(i, j)`` in the output gradient's sum; zero for
        a pixel outside the ``height x width`` map) in ``weights[b, h, w, j * taps + i]``."""
        above = ti.Vector.zero(dtype, taps)
        for j in range(taps):
            here, _ = spread_x(grad_row(grad_out, b, h, w, first, j), fx)
            row_inside = 0 <= y0 + j and y0 + j < height
            for i in ti.static(range(taps)):
                inside = row_inside and 0 <= x0 + i and x0 + i < width
                weights[b, h, w, j * taps + i] = s * ((1 - fy) * here[i] + fy * above[i]) if inside else 0
            above = here

    @ti.func
    def coordinate_grad(grad_out: ti.template(), fmap1: ti.template(), fmap2: ti.template(), b, h, w, first, x0, y0,
                        fx, fy):
        """``(d/dx, d/dy)`` of ``sum_k grad_out[k] out[k]``: the dot products weighted by the derivatives of
        their blend weights (:func:`spread_x`, and its difference between neighbouring rows)."""
        dx, dy = ti.cast(0, dtype), ti.cast(0, dtype)
        weights_above, slopes_above = ti.Vector.zero(dtype, taps), ti.Vector.zero(dtype, taps)
        for j in range(taps):
            dots = row_dots(fmap1, fmap2, b, h, w, y0 + j, x0)
            weights, slopes = spread_x(grad_row(grad_out, b, h, w, first, j), fx)
            dx += dots.dot((1 - fy) * slopes + fy * slopes_above)
            dy += dots.dot(weights_above - weights)
            weights_above, slopes_above = weights, slopes
        return dx, dy

    @ti.func
    def store_chunk(grad: ti.template(), b, y, x, v0, acc: ti.template(), add):
        """``grad[b, y, x, v0 + q] = acc[q, :]`` (``+=`` where ``add``) for the chunk's vectors that exist."""
        for q in ti.static(range(chunk)):
            if v0 + q < grad.shape[3]:
                total = acc[q, :]
                if add:  # a plain load and store: ``+=`` on an ndarray would be an atomic add
                    total += grad[b, y, x, v0 + q]
                grad[b, y, x, v0 + q] = total

    @ti.func
    def window_gather(weights: ti.template(), fmap2: ti.template(), grad: ti.template(), b, h, w, x0, y0, add):
        """``grad[b, h, w] (+)= sum_{j, i} weights[b, h, w, j * taps + i] * fmap2[b, y0 + j, x0 + i]``, ``chunk``
        channel vectors at a time accumulated in registers (outside ``fmap2`` the weights are zero and the
        reads clamped; past the last vector the reads repeat it and are not stored)."""
        last_x, last_v = fmap2.shape[2] - 1, grad.shape[3] - 1
        for c in range(ti_ceil_div(grad.shape[3], chunk)):
            v0 = c * chunk
            acc = ti.Matrix.zero(dtype, chunk, LANES)
            for j in range(taps):
                row = y0 + j
                if 0 <= row and row < fmap2.shape[1]:
                    for i in ti.static(range(taps)):
                        x = ti.min(ti.max(x0 + i, 0), last_x)
                        weight = weights[b, h, w, j * taps + i]
                        for q in ti.static(range(chunk)):
                            acc[q, :] += weight * fmap2[b, row, x, ti.min(v0 + q, last_v)]
            store_chunk(grad, b, h, w, v0, acc, add)

    @locked.quick_compile
    @ti.kernel
    def pixel_backward(grad_out: nd4, fmap1: vectors, fmap2: vectors, coords: nd4, weights: nd4, grad_fmap1: vectors,
                       grad_coords: nd4, scale: ti.f64, shrink: ti.f64, first: ti.i32, with_fmap1: ti.i32,
                       with_coords: ti.i32, add: ti.i32):
        """The weights, ``fmap1``'s and the coordinates' gradients of the lookup that :func:`forward` wrote to
        channels ``first..``, reading those channels of the output gradient (in the output's layout, as the
        forward writes it); ``add``: add the gradients to those already there (the previous levels' of a
        pyramid) rather than overwrite them."""
        s, level = ti.cast(scale, dtype), ti.cast(shrink, dtype)
        for b, h, w in ti.ndrange(fmap1.shape[0], fmap1.shape[1], fmap1.shape[2]):
            x0, fx = window(level * ti.cast(coords[b, 0, h, w], dtype), fmap2.shape[2])
            y0, fy = window(level * ti.cast(coords[b, 1, h, w], dtype), fmap2.shape[1])
            window_weights(grad_out, weights, b, h, w, first, x0, y0, fx, fy, s, fmap2.shape[1], fmap2.shape[2])
            if with_fmap1:
                window_gather(weights, fmap2, grad_fmap1, b, h, w, x0, y0, add)
            if with_coords:
                dx, dy = coordinate_grad(grad_out, fmap1, fmap2, b, h, w, first, x0, y0, fx, fy)
                gx, gy = s * level * dx, s * level * dy
                if add:
                    gx, gy = grad_coords[b, 0, h, w] + gx, grad_coords[b, 1, h, w] + gy
                grad_coords[b, 0, h, w] = gx
                grad_coords[b, 1, h, w] = gy

    @locked
    @ti.kernel
    def window_cells(coords: nd4, cells: nd3, shrink: ti.f64, height: ti.i32, width: ti.i32):
        """The cell of each pixel's window in ``fmap2``'s grid of window origins, ``(b, y0 + taps - 1,
        x0 + taps - 1)`` flattened over a ``(B, height + taps - 1, width + taps - 1)`` grid, or the count
        of cells (one past the end) for a window that reads nothing."""
        rows, columns = height + taps - 1, width + taps - 1
        level = ti.cast(shrink, dtype)
        for b, h, w in ti.ndrange(cells.shape[0], cells.shape[1], cells.shape[2]):
            x0, _ = window(level * ti.cast(coords[b, 0, h, w], dtype), width)
            y0, _ = window(level * ti.cast(coords[b, 1, h, w], dtype), height)
            cell = cells.shape[0] * rows * columns
            if -taps < x0 and x0 < width and -taps < y0 and y0 < height:
                cell = (b * rows + y0 + taps - 1) * columns + x0 + taps - 1
            cells[b, h, w] = cell

    @locked.quick_compile
    @ti.kernel
    def grad_fmap2(weights: nd4, fmap1: vectors, starts: ti.types.ndarray(ndim=1), order: ti.types.ndarray(ndim=1),
                   grad: vectors):
        """``grad[b, y, x] = sum of weight * fmap1[b, h, w]`` over the pixels ``(h, w)`` whose window covers
        ``(y, x)``: those whose window origin is ``(y - j, x - i)``, found in that cell's run of ``order``
        (the pixels sorted by cell, stably; cell ``c``'s run starts at ``starts[c]``)."""
        rows, columns = grad.shape[1] + taps - 1, grad.shape[2] + taps - 1
        last_v = grad.shape[3] - 1
        for b, y, x in ti.ndrange(grad.shape[0], grad.shape[1], grad.shape[2]):
            for c in range(ti_ceil_div(grad.shape[3], chunk)):  # chunk vectors at a time, in registers
                v0 = c * chunk
                acc = ti.Matrix.zero(dtype, chunk, LANES)
                for j in range(taps):
                    for i in ti.static(range(taps)):
                        cell = (b * rows + y - j + taps - 1) * columns + x - i + taps - 1
                        for e in range(starts[cell], starts[cell + 1]):
                            pixel = order[e] - b * fmap1.shape[1] * fmap1.shape[2]
                            h, w = pixel // fmap1.shape[2], pixel % fmap1.shape[2]
                            weight = weights[b, h, w, j * taps + i]
                            for q in ti.static(range(chunk)):
                                acc[q, :] += weight * fmap1[b, h, w, ti.min(v0 + q, last_v)]
                store_chunk(grad, b, y, x, v0, acc, 0)

    return forward, pixel_backward, window_cells, grad_fmap2
