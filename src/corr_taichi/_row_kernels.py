"""CPU kernels vectorised along image rows, for few channels (the row path of :mod:`._row_path`).

The kernels of :mod:`._kernels` put vectors across channels: each displacement's dot product ends in
a sum across a vector's lanes, a fixed cost that few channels (PWC-Net's 32, say) leave exposed.
These kernels put vectors along the row instead: a vector holds ``LANES`` neighbouring output pixels,
so a displacement's dot product is one multiply-add per channel, with no reduction at all.

Displacement ``pw`` shifts the partner row by ``pw`` pixels, which is rarely a whole vector.  Taichi
loads vectors only at whole-vector offsets (an ndarray of vectors is assumed aligned), so a shifted
vector is cut from two aligned neighbours, ``lo`` and ``hi``, by :func:`_window` with a compile-time
shift: one lane shuffle.  The ``LANES`` shifts of one pair of aligned loads are the slots of a tile
(unrolled, each slot its own accumulator), which covers up to ``LANES`` displacements of a patch row.

Layouts (made by :mod:`._row_path`): NCHW rows padded with zeros to whole vectors, as ``(B, C, H,
V)`` ndarrays of ``LANES``-vectors; the output ``(B, PH, PW, oH, V)``.  Only a single kernel tap,
column stride 1 and patch dilation 1 or -1 along the row are handled (several taps go through per-pixel
products and :func:`._kernels.window_sum`).  The row geometry is a struct of runtime ints, so each
kernel is compiled once per dtype.
"""

import functools
from types import SimpleNamespace

from ._kernels import LANES, _output_index
from ._runtime import ti

#: the gradient kernel steps over channels in pairs (the padded copies round the count up).
CHANNEL_TILE = 2

RowGeometry = ti.types.struct(
    stride_h=ti.i32, origin_h=ti.i32, patch_h=ti.i32, patch_dilation_h=ti.i32, first_h=ti.i32,
    out_h=ti.i32, patch_w=ti.i32,
    # the partner vector of target vector v and displacement pw starts at column
    # LANES * v + lead + step * pw of the partner's padded row
    lead=ti.i32, step=ti.i32,
)


@ti.func
def _window(lo: ti.template(), hi: ti.template(), s: ti.template()):
    """The ``LANES`` values that start ``s`` lanes into ``lo`` and run on into ``hi``."""
    return ti.Vector([lo[s + lane] for lane in ti.static(range(LANES - s))] +
                     [hi[lane] for lane in ti.static(range(s))])


@ti.func
def _first_start(g: ti.template()):
    """The smallest of the displacements' starts ``lead + step * pw`` (they are consecutive)."""
    first = g.lead
    if g.step < 0:
        first = g.lead - (g.patch_w - 1)
    return first


@ti.func
def _slots(g: ti.template(), k):
    """``[lo, hi)``: the slots of window ``k`` (partner starts ``LANES*k + slot``) that are some
    displacement's start."""
    first = _first_start(g)
    return ti.max(0, first - k * LANES), ti.min(LANES, first + g.patch_w - k * LANES)


@ti.func
def _windows(g: ti.template()):
    """``[lo, hi)``: the windows (whole-vector offsets) holding the displacements' starts."""
    first = _first_start(g)
    return first // LANES, (first + g.patch_w - 1) // LANES + 1


@ti.func
def _store_windows(out: ti.template(), acc: ti.template(), b, ph, h, v, k, s_lo, s_hi, g: ti.template(), s):
    """``out[b, ph, pw, h, v] = s * acc[slot]`` for the displacement ``pw`` of each slot of window ``k``."""
    for slot in ti.static(range(LANES)):
        if s_lo <= slot < s_hi:
            out[b, ph, (k * LANES + slot - g.lead) * g.step, h, v] = acc[slot, :] * s


@functools.cache
def row_kernels(dtype) -> SimpleNamespace:
    """The row path's forward and gradient kernels for inputs of Taichi scalar type ``dtype``."""
    rows = ti.types.ndarray(dtype=ti.types.vector(LANES, dtype), ndim=4)
    planes = ti.types.ndarray(dtype=ti.types.vector(LANES, dtype), ndim=5)
    flat = ti.types.ndarray(dtype=ti.types.vector(LANES, dtype), ndim=1)

    @ti.kernel
    def forward(x1: rows, x2: rows, out: planes, g: RowGeometry, scale: ti.f64, acc_t: ti.template()):
        """``out[b, ph, pw, h, v] = scale * sum_c x1[b, c, y1, v] * x2[b, c, y2, starting at
        LANES * v + lead + step * pw]``, zero where a row is outside the image.

        One task per (batch, pair of patch rows, output row), one tile of displacements and one output
        vector at a time.  Output rows ``h`` of patch row ``p`` and ``h - patch_dilation_h / stride_h``
        of patch row ``p + 1`` read the same input2 row: a pair shares its shifted input2 vectors (one
        lane shuffle feeds two multiply-adds).
        Where the patch dilation is not a multiple of the stride, each "pair" is one patch row."""
        height, channels = x1.shape[2], x1.shape[1]
        s = ti.cast(scale, acc_t)
        share = g.patch_dilation_h % g.stride_h == 0
        shift, pairs, per_pair = 0, g.patch_h, 1  # without sharing, each "pair" is one patch row
        if share:  # patch row p + 1's output row is `shift` rows above patch row p's
            shift, pairs, per_pair = g.patch_dilation_h // g.stride_h, (g.patch_h + 1) // 2, 2
        for b, pair, h in ti.ndrange(x1.shape[0], pairs, g.out_h + shift):
            p = per_pair * pair
            ha, hb = h, h - shift
            ya, yb = ha * g.stride_h + g.origin_h, hb * g.stride_h + g.origin_h  # input1 rows
            y2 = ya + g.first_h + p * g.patch_dilation_h  # the input2 row of both
            valid_a = ha < g.out_h
            valid_b = share and p + 1 < g.patch_h and hb >= 0
            inside_a = valid_a and 0 <= ya < height and 0 <= y2 < height
            inside_b = valid_b and 0 <= yb < height and 0 <= y2 < height
            k_lo, k_hi = _windows(g)
            for k in range(k_lo, k_hi):
                s_lo, s_hi = _slots(g, k)
                for v in range(out.shape[4]):
                    acc_a = ti.Matrix.zero(acc_t, LANES, LANES)
                    acc_b = ti.Matrix.zero(acc_t, LANES, LANES)
                    if inside_a and inside_b:
                        for c in range(channels):
                            a, a2 = x1[b, c, ya, v], x1[b, c, yb, v]
                            lo, hi = x2[b, c, y2, v + k], x2[b, c, y2, v + k + 1]
                            for slot in ti.static(range(LANES)):
                                if s_lo <= slot < s_hi:
                                    window = _window(lo, hi, slot)
                                    acc_a[slot, :] += a * window
                                    acc_b[slot, :] += a2 * window
                    elif inside_a or inside_b:  # one of the pair
                        y1 = ya if inside_a else yb
                        for c in range(channels):
                            a = x1[b, c, y1, v]
                            lo, hi = x2[b, c, y2, v + k], x2[b, c, y2, v + k + 1]
                            for slot in ti.static(range(LANES)):
                                if s_lo <= slot < s_hi:
                                    acc_a[slot, :] += a * _window(lo, hi, slot)
                        if not inside_a:
                            acc_b = acc_a
                            acc_a = ti.Matrix.zero(acc_t, LANES, LANES)
                    if valid_a:
                        _store_windows(out, acc_a, b, p, ha, v, k, s_lo, s_hi, g, s)
                    if valid_b:
                        _store_windows(out, acc_b, b, p + 1, hb, v, k, s_lo, s_hi, g, s)

    @ti.kernel
    def gradient(weights: planes, partner: flat, target: flat, batch: ti.i32, channels: ti.i32, height: ti.i32,
                 partner_vectors: ti.i32, target_vectors: ti.i32, g: RowGeometry, target_is_input2: ti.template(),
                 scale: ti.f64, acc_t: ti.template()):
        """``target[b, c, Y, v] = scale * sum_{ph, pw} weights[b, ph, pw, h, v] * partner[b, c, Y', starting
        at LANES * v + lead + step * pw]`` over the patch rows whose output row ``h`` and partner row ``Y'``
        exist for target row ``Y``: input1's gradient (partner input2, the output gradient as weights)
        or, with ``target_is_input2``, input2's (partner input1, weights the output gradient skewed so
        that displacement ``pw``'s rows start ``step * pw`` columns later).

        ``partner`` and ``target`` are flattened ``(B, C, H, V)`` rows (``channels`` even): flat indices
        stepped by a channel plane keep the loop cheap, since every ndarray store makes LLVM reload
        every ndarray's shape.  One task per target row, one patch row at a time (its rows stay in L1
        cache), adding into the target; two channels per step, each summed in two halves, so that
        four independent chains of multiply-adds overlap."""
        s = ti.cast(scale, acc_t)
        partner_plane, target_plane = height * partner_vectors, height * target_vectors
        for b, y in ti.ndrange(batch, height):
            for c, v in ti.ndrange(channels, target_vectors):
                target[(b * channels + c) * target_plane + y * target_vectors + v] = ti.Vector.zero(acc_t, LANES)
            k_lo, k_hi = _windows(g)
            for ph in range(g.patch_h):
                y1 = y  # the input1 row, and the partner's row
                y_partner = y + g.first_h + ph * g.patch_dilation_h
                if ti.static(target_is_input2):
                    y1 = y - g.first_h - ph * g.patch_dilation_h
                    y_partner = y1
                h = _output_index(y1, g.origin_h, 0, 1, g.stride_h, g.out_h)
                if 0 <= y1 < height and 0 <= y_partner < height and h >= 0:
                    for v, k in ti.ndrange(target_vectors, (k_lo, k_hi)):
                        s_lo, s_hi = _slots(g, k)
                        weight = ti.Matrix.zero(acc_t, LANES, LANES)  # one row per displacement of the window
                        for slot in ti.static(range(LANES)):
                            if s_lo <= slot < s_hi:
                                weight[slot, :] = weights[b, ph, (k * LANES + slot - g.lead) * g.step, h, v] * s
                        p = b * channels * partner_plane + y_partner * partner_vectors + v + k  # [b, 0, y', v + k]
                        t = b * channels * target_plane + y * target_vectors + v  # [b, 0, y, v]
                        for _ in range(channels // 2):
                            lo, hi = partner[p], partner[p + 1]
                            lo2, hi2 = partner[p + partner_plane], partner[p + partner_plane + 1]
                            total = ti.Matrix.zero(acc_t, 2, LANES)
                            total2 = ti.Matrix.zero(acc_t, 2, LANES)
                            for slot in ti.static(range(LANES)):
                                if s_lo <= slot < s_hi:  # one displacement: a multiply-add per channel
                                    total[slot % 2, :] += weight[slot, :] * _window(lo, hi, slot)
                                    total2[slot % 2, :] += weight[slot, :] * _window(lo2, hi2, slot)
                            target[t] = target[t] + (total[0, :] + total[1, :])
                            target[t + target_plane] = target[t + target_plane] + (total2[0, :] + total2[1, :])
                            p += 2 * partner_plane
                            t += 2 * target_plane

    return SimpleNamespace(forward=forward, gradient=gradient)
