"""Taichi kernels of the 1-D lookup (RAFT-Stereo's correlation lookup), for every backend.

A lookup samples, for each pixel ``(b, h, w)`` of the left image, a row of correlations linearly at the
``2R + 1`` positions ``x + k`` (``k = -R..R``) around that pixel's coordinate ``x``, with zeros outside
the row.  All ``2R + 1`` positions share one fractional part ``t = x - floor(x)``, so the lookup reads
the ``2R + 2`` whole columns ``floor(x) - R + j`` (``j = 0..2R+1``) once and blends neighbours:

    out[k] = (1 - t) * v[k] + t * v[k + 1]

where ``v[j]`` is a column of a precomputed volume (``(B, H, W1, W2)``, :func:`volume_kernels`) or the
dot product of the two feature maps there, computed on the fly (channels-last vectors,
:func:`feature_kernels`).  Every gradient is written by the one thread that owns its elements (no
atomics), so results are deterministic:

* the volume's gradient: each pixel owns its row of the volume;
* ``fmap1``'s gradient and the coordinate's: each pixel owns its own;
* ``fmap2``'s gradient: a thread per image row and vector of channels walks that row's pixels in order.

Kernels come from factories cached per compute dtype and radius, which they close over.  (No
``from __future__ import annotations`` here: Taichi reads the kernels' annotations as objects.)
"""


import functools

from ._kernel_helpers import LANES, lookup_helpers  # feature maps: the core op's CPU layout of LANES vectors
from ._runtime import locked, ti



@functools.cache
def volume_kernels(dtype, radius: int):
    """Lookup in a precomputed volume ``(B, H, W1, W2)`` at coordinates ``(B, H, W1)``: ``forward`` into
    ``(B, 2R + 1, H, W1)``, ``grad_volume`` and ``grad_coords``."""
    taps = 2 * radius + 2
    window, blend_weights, slope = lookup_helpers(dtype, radius)
    nd3, nd4 = ti.types.ndarray(ndim=3), ti.types.ndarray(ndim=4)

    @ti.func
    def columns(volume: ti.template(), b, h, w, start):
        values = ti.Vector.zero(dtype, taps)
        for j in ti.static(range(taps)):
            q = start + j
            if 0 <= q and q < volume.shape[3]:
                values[j] = ti.cast(volume[b, h, w, q], dtype)
        return values

    @locked
    @ti.kernel
    def forward(volume: nd4, coords: nd3, out: nd4):
        for b, h, w in ti.ndrange(volume.shape[0], volume.shape[1], volume.shape[2]):
            start, t = window(ti.cast(coords[b, h, w], dtype), volume.shape[3])
            values = columns(volume, b, h, w, start)
            for k in ti.static(range(taps - 1)):
                out[b, k, h, w] = (1 - t) * values[k] + t * values[k + 1]

    @locked
    @ti.kernel
    def grad_volume(grad_out: nd4, coords: nd3, grad: nd4):
        for b, h, w in ti.ndrange(grad.shape[0], grad.shape[1], grad.shape[2]):
            for q in range(grad.shape[3]):
                grad[b, h, w, q] = 0
            start, t = window(ti.cast(coords[b, h, w], dtype), grad.shape[3])
            weights = blend_weights(grad_out, b, h, w, t)
            for j in ti.static(range(taps)):
                q = start + j
                if 0 <= q and q < grad.shape[3]:
                    grad[b, h, w, q] = weights[j]

    @locked
    @ti.kernel
    def grad_coords(grad_out: nd4, volume: nd4, coords: nd3, grad: nd3):
        for b, h, w in ti.ndrange(volume.shape[0], volume.shape[1], volume.shape[2]):
            start, _ = window(ti.cast(coords[b, h, w], dtype), volume.shape[3])
            grad[b, h, w] = slope(grad_out, b, h, w, columns(volume, b, h, w, start))

    return forward, grad_volume, grad_coords


@functools.cache
def feature_kernels(dtype, radius: int):
    """Lookup of ``scale * <fmap1[b, h, w], fmap2[b, h, q]>`` at coordinates ``(B, H, W1)``, without the
    ``W1 x W2`` volume: ``forward`` into ``(B, 2R + 1, H, W1)``, ``grad_fmap1``, ``grad_fmap2`` and
    ``grad_coords``.  The feature maps are channels-last vectors, ``(B, H, W, C / LANES)`` of ``LANES``
    channels (zero-padded), so that every channel loop runs on whole vectors accumulated in registers."""
    taps = 2 * radius + 2
    window, blend_weights, slope = lookup_helpers(dtype, radius)
    nd3, nd4 = ti.types.ndarray(ndim=3), ti.types.ndarray(ndim=4)
    vectors = ti.types.ndarray(dtype=ti.types.vector(LANES, dtype), ndim=4)

    @ti.func
    def dots(fmap1: ti.template(), fmap2: ti.template(), b, h, w, start):
        """``<fmap1[b, h, w], fmap2[b, h, start + j]>`` for the ``2R + 2`` columns (zero outside the row)."""
        values = ti.Vector.zero(dtype, taps)
        for j in ti.static(range(taps)):
            q = start + j
            if 0 <= q and q < fmap2.shape[2]:
                acc = ti.Vector.zero(dtype, LANES)
                for v in range(fmap1.shape[3]):
                    acc += fmap1[b, h, w, v] * fmap2[b, h, q, v]
                values[j] = acc.sum()
        return values

    @ti.func
    def pixel_dots(fmap1: ti.template(), fmap2: ti.template(), coords: ti.template(), b, h, w):
        """:func:`dots` of pixel ``(b, h, w)`` around its coordinate, and the blend weight ``t``."""
        start, t = window(coords[b, h, w], fmap2.shape[2])
        return dots(fmap1, fmap2, b, h, w, start), t

    @locked
    @ti.kernel
    def forward(fmap1: vectors, fmap2: vectors, coords: nd3, out: nd4, scale: ti.f64):
        s = ti.cast(scale, dtype)
        for b, h, w in ti.ndrange(fmap1.shape[0], fmap1.shape[1], fmap1.shape[2]):
            values, t = pixel_dots(fmap1, fmap2, coords, b, h, w)
            for k in ti.static(range(taps - 1)):
                out[b, k, h, w] = s * ((1 - t) * values[k] + t * values[k + 1])

    @locked
    @ti.kernel
    def grad_fmap1(grad_out: nd4, fmap2: vectors, coords: nd3, grad: vectors, scale: ti.f64):
        s = ti.cast(scale, dtype)
        for b, h, w in ti.ndrange(grad.shape[0], grad.shape[1], grad.shape[2]):
            start, t = window(coords[b, h, w], fmap2.shape[2])
            weights = s * blend_weights(grad_out, b, h, w, t)
            for v in range(grad.shape[3]):
                acc = ti.Vector.zero(dtype, LANES)
                for j in ti.static(range(taps)):
                    q = start + j
                    if 0 <= q and q < fmap2.shape[2]:
                        acc += weights[j] * fmap2[b, h, q, v]
                grad[b, h, w, v] = acc

    @locked
    @ti.kernel
    def grad_fmap2(grad_out: nd4, fmap1: vectors, coords: nd3, grad: vectors, scale: ti.f64):
        s = ti.cast(scale, dtype)
        for b, h, v in ti.ndrange(grad.shape[0], grad.shape[1], grad.shape[3]):
            for q in range(grad.shape[2]):
                grad[b, h, q, v] = ti.Vector.zero(dtype, LANES)
            for w in range(fmap1.shape[2]):  # this row's pixels, in order: the thread owns the row's vector v
                start, t = window(coords[b, h, w], grad.shape[2])
                weights = s * blend_weights(grad_out, b, h, w, t)
                f = fmap1[b, h, w, v]
                for j in ti.static(range(taps)):
                    q = start + j
                    if 0 <= q and q < grad.shape[2]:  # not +=, which Taichi makes atomic: one thread owns it
                        grad[b, h, q, v] = grad[b, h, q, v] + weights[j] * f

    @locked
    @ti.kernel
    def grad_coords(grad_out: nd4, fmap1: vectors, fmap2: vectors, coords: nd3, grad: nd3, scale: ti.f64):
        s = ti.cast(scale, dtype)
        for b, h, w in ti.ndrange(fmap1.shape[0], fmap1.shape[1], fmap1.shape[2]):
            values, _ = pixel_dots(fmap1, fmap2, coords, b, h, w)
            grad[b, h, w] = s * slope(grad_out, b, h, w, values)

    return forward, grad_fmap1, grad_fmap2, grad_coords
