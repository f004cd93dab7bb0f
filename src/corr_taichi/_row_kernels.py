"""CPU kernels vectorised along image rows, for few channels (the row path of :mod:`._row_path`).

The kernels of :mod:`._kernels` put vectors across channels: each displacement's dot product ends in
a sum across a vector's lanes, a fixed cost that few channels (PWC-Net's 32, say) leave exposed.
These kernels put vectors along the row instead: a vector holds ``LANES`` neighbouring output pixels,
so a displacement's dot product is one multiply-add per channel, with no reduction at all.

Displacement ``pw`` shifts the partner row by ``pw`` pixels, which is rarely a whole vector.  Taichi
loads vectors only at whole-vector offsets (an ndarray of vectors is assumed aligned), so a shifted
vector is cut from two aligned neighbours at a compile-time shift (:func:`._kernel_helpers.lanes_from`):
one lane shuffle.  The ``LANES`` shifts of one pair of aligned loads are the slots of a tile
(unrolled, each slot its own accumulator), which covers up to ``LANES`` displacements of a patch row.
The kernels read input2, and write its gradient, in input2's own columns: where a patch row's starts
lie ``phase`` columns past whole vectors, a tile's slots are cut from three aligned neighbours, at
compile-time shifts.

The gradient kernels take one target vector per task.  ``grad_input1`` keeps a block of channels'
sums (:func:`channel_block`) in registers over the whole patch, so that each patch row's weights
(the output gradient), loaded once, serve the block; ``grad_input2``, whose weights are cut from pairs
of vectors, cuts them once per patch row for all channels and adds into the target in place.
Accumulators and weights are Python lists of Taichi vectors: a small Taichi matrix (4 x 16, 9 x 16)
reaches LLVM as one wide vector, which it partly scalarises, and 16 x 16 ones compile slowly.

Layouts (made by :mod:`._row_path`): NCHW rows of whole vectors (padded with zeros where needed), as
``(B, C, H, V)`` ndarrays of ``LANES``-vectors; the output ``(B, PH, PW, oH, V)``.  Only a single kernel tap,
column stride 1 and patch dilation 1 or -1 along the row are handled (several taps go through per-pixel
products and :func:`._kernels.window_sum`).  The row geometry is a struct of runtime ints, so each
kernel is compiled once per dtype and displacement count of a window (``min(LANES, patch_w)``: windows
start at whole vectors, so that count is each slot loop's length, and a window holds no slot that is
not some displacement's, except in the last window, whose extra slots are computed and not stored),
and per ``phase`` (0 to ``LANES - 1``; a network's patch sizes and paddings use a few).
"""

import functools
from types import SimpleNamespace

from ._kernel_helpers import LANES, lanes_from, output_index
from ._runtime import locked, ti



def channel_block(slots: int) -> int:
    """How many channels ``grad_input1`` sums at a time for windows of ``slots`` displacements (its padded
    copies round the channel count up to a multiple): eight.  The kernel is unrolled over the block, so
    the block sets its size, and with it its first call's compile (or, with the offline cache warm, its
    front end's) time.  One-process A/B of the gradient on 32 channels of 96 x 128, 9 slots: eight took
    0.92-1.01 of the time of sixteen and four 0.99 (three runs of 15 alternating repeats); on an earlier
    day's machine sixteen took 0.88-0.93 of eight's time at 9 and 11 slots, 1.07-1.09 at 3 and 5 and
    1.03-1.07 at 13 and 16.  Sixteen doubled the kernel's front-end time (PWC-style networks' first
    backward: most of it)."""
    return 8

RowGeometry = ti.types.struct(
    stride_h=ti.i32, origin_h=ti.i32, patch_h=ti.i32, patch_dilation_h=ti.i32, first_h=ti.i32,
    out_h=ti.i32, patch_w=ti.i32,
    # the partner vector of target vector v and displacement pw starts at column
    # LANES * v + lead + step * pw of the partner's padded row
    lead=ti.i32, step=ti.i32,
)


@ti.func
def _partner_vector(x2: ti.template(), b, c, y, j, checked: ti.template(), acc_t: ti.template()):
    """``x2[b, c, y, j]``; with ``checked``, zeros where ``j`` is outside the row (a clamped load and a
    select, not a branch)."""
    value = ti.Vector.zero(acc_t, LANES)
    if ti.static(checked):
        inside = 0 <= j < x2.shape[3]
        value = ti.select(inside, x2[b, c, y, ti.min(ti.max(j, 0), x2.shape[3] - 1)], value)
    else:
        value = x2[b, c, y, j]
    return value


def _partner_lanes(a, b, c, slot: int, phase: int) -> list:
    """The ``LANES`` partner values of a window's ``slot``: they start ``phase + slot`` lanes into ``a``,
    which ``b`` and ``c`` follow in the row.  Plain Python (:func:`._kernel_helpers.lanes_from`): kernels
    build the vector as ``ti.Vector(ti.static(_partner_lanes(...)))``, with no Taichi function inlined per
    window."""
    return lanes_from((a, b, c), phase + slot)


@ti.func
def _partner_vectors(x2: ti.template(), b, c, y, j, checked: ti.template(), slots: ti.template(), phase: ti.template(),
                     acc_t: ti.template()):
    """The aligned vectors ``j``, ``j + 1`` and, where the slots spill into it, ``j + 2`` of ``x2``'s row (the
    third is the second where they do not), for :func:`_partner_lanes`."""
    first = _partner_vector(x2, b, c, y, j, checked, acc_t)
    second = _partner_vector(x2, b, c, y, j + 1, checked, acc_t)
    third = second
    if ti.static(phase + slots > LANES):  # the slots spill into a third vector
        third = _partner_vector(x2, b, c, y, j + 2, checked, acc_t)
    return first, second, third


@ti.func
def _vectors_inside(x2: ti.template(), j, slots: ti.template(), phase: ti.template()):
    """Whether all of :func:`_partner_vectors`' vectors from ``j`` lie inside ``x2``'s rows (no test needed)."""
    return j >= 0 and j + ti.static(2 if phase + slots > LANES else 1) < x2.shape[3]


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
def _store_windows(out: ti.template(), acc: ti.template(), b, ph, h, v, k, s_lo, s_hi, g: ti.template(), s,
                   slots: ti.template()):
    """``out[b, ph, pw, h, v] = s * acc[slot]`` for the displacement ``pw`` of each slot of window ``k``."""
    for slot in ti.static(range(slots)):
        if s_lo <= slot < s_hi:
            out[b, ph, (k * LANES + slot - g.lead) * g.step, h, v] = acc[slot] * s


@ti.func
def _slot_weights(weights: ti.template(), b, ph, h, v, k, g: ti.template(), slots: ti.template(),
                  acc_t: ti.template(), untested: ti.template()):
    """``slots`` vectors: for each slot of window ``k``, ``weights[b, ph, pw, h, v]`` of the displacement
    ``pw`` that starts there; zero where there is no such displacement (in a window after the first) or
    ``v`` is outside the rows (a clamped load and a select, not a branch per slot).  With ``untested``, a
    window whose slots all hold displacements, at a ``v`` inside, loads them without the tests
    (measured: faster in ``grad_input2``, slower in ``grad_input1``)."""
    w = [ti.Vector.zero(acc_t, LANES) for _ in ti.static(range(slots))]
    inside = 0 <= v < weights.shape[4]
    u = ti.min(ti.max(v, 0), weights.shape[4] - 1)
    first, last = (k * LANES - g.lead) * g.step, (k * LANES + slots - 1 - g.lead) * g.step
    if ti.static(untested) and inside and 0 <= ti.min(first, last) and ti.max(first, last) < g.patch_w:
        for slot in ti.static(range(slots)):
            w[slot] = weights[b, ph, first + slot * g.step, h, v]
    else:
        for slot in ti.static(range(slots)):
            pw = (k * LANES + slot - g.lead) * g.step
            if 0 <= pw < g.patch_w:
                w[slot] = ti.select(inside, weights[b, ph, pw, h, u], ti.Vector.zero(acc_t, LANES))
    return w


@ti.func
def _pair_products(x1: ti.template(), x2: ti.template(), acc_a: ti.template(), acc_b: ti.template(), b, ya, yb, y2,
                   v, k, pair: ti.template(), checked: ti.template(), slots: ti.template(), phase: ti.template(),
                   acc_t: ti.template()):
    """The forward's channel loop for output vector ``v`` and window ``k``: ``acc_a`` from input1 row
    ``ya`` and, for a ``pair``, ``acc_b`` from row ``yb``, both against input2 row ``y2``."""
    for c in range(x1.shape[1]):
        first, second, third = _partner_vectors(x2, b, c, y2, v + k, checked, slots, phase, acc_t)
        a = x1[b, c, ya, v]
        if ti.static(pair):
            a2 = x1[b, c, yb, v]
            for slot in ti.static(range(slots)):
                window = ti.Vector(ti.static(_partner_lanes(first, second, third, slot, phase)))
                acc_a[slot] += a * window
                acc_b[slot] += a2 * window
        else:
            for slot in ti.static(range(slots)):
                acc_a[slot] += a * ti.Vector(ti.static(_partner_lanes(first, second, third, slot, phase)))


@ti.func
def _vector_products(x1: ti.template(), x2: ti.template(), acc_a: ti.template(), acc_b: ti.template(), b, ya, yb,
                     y2, v, k, inside_a, inside_b, slots: ti.template(), phase: ti.template(), acc_t: ti.template()):
    """The forward's products of output vector ``v`` and window ``k`` for the rows of the pair that lie
    inside the image: both (:func:`_pair_products`), or the one inside (computed into ``acc_a``, moved to
    ``acc_b`` where it is ``yb``); partner vectors unchecked where all of them are inside the image."""
    interior = _vectors_inside(x2, v + k, slots, phase)
    if inside_a and inside_b:
        if interior:
            _pair_products(x1, x2, acc_a, acc_b, b, ya, yb, y2, v, k, True, False, slots, phase, acc_t)
        else:
            _pair_products(x1, x2, acc_a, acc_b, b, ya, yb, y2, v, k, True, True, slots, phase, acc_t)
    elif inside_a or inside_b:  # one of the pair
        y1 = ya if inside_a else yb
        if interior:
            _pair_products(x1, x2, acc_a, acc_b, b, y1, y1, y2, v, k, False, False, slots, phase, acc_t)
        else:
            _pair_products(x1, x2, acc_a, acc_b, b, y1, y1, y2, v, k, False, True, slots, phase, acc_t)
        if not inside_a:
            for slot in ti.static(range(slots)):
                acc_b[slot] = acc_a[slot]
                acc_a[slot] = ti.Vector.zero(acc_t, LANES)


@ti.func
def _input1_block(weights: ti.template(), x2: ti.template(), target: ti.template(), b, c, y, v, g: ti.template(),
                  s, slots: ti.template(), phase: ti.template(), block: ti.template(), acc_t: ti.template()):
    """``target[b, c + i, y, v]`` for the ``block`` channels from ``c`` (see ``grad_input1``)."""
    height = target.shape[2]
    h = output_index(y, g.origin_h, 0, 1, g.stride_h, g.out_h)
    k_lo, k_hi = _windows(g)
    acc = [ti.Vector.zero(acc_t, LANES) for _ in ti.static(range(block))]
    for ph in range(g.patch_h):
        y2 = y + g.first_h + ph * g.patch_dilation_h
        if h >= 0 and 0 <= y2 < height:
            for k in range(k_lo, k_hi):
                w = _slot_weights(weights, b, ph, h, v, k, g, slots, acc_t, False)
                if _vectors_inside(x2, v + k, slots, phase):
                    _input1_products(x2, acc, w, b, c, y2, v + k, False, slots, phase, block, acc_t)
                else:
                    _input1_products(x2, acc, w, b, c, y2, v + k, True, slots, phase, block, acc_t)
    for i in ti.static(range(block)):
        target[b, c + i, y, v] = acc[i] * s


@ti.func
def _input1_products(x2: ti.template(), acc: ti.template(), w: ti.template(), b, c, y2, j, checked: ti.template(),
                     slots: ti.template(), phase: ti.template(), block: ti.template(), acc_t: ti.template()):
    """``acc[i] += sum_slot w[slot] * window(slot)`` of channel ``c + i``'s partner vectors from ``j`` on."""
    for i in ti.static(range(block)):
        first, second, third = _partner_vectors(x2, b, c + i, y2, j, checked, slots, phase, acc_t)
        for slot in ti.static(range(slots)):
            acc[i] += w[slot] * ti.Vector(ti.static(_partner_lanes(first, second, third, slot, phase)))


def _gather_lanes(a, b, c, slot: int, phase: int) -> list:
    """The ``LANES`` values that a target vector of ``grad_input2`` takes from three consecutive vectors
    ``a``, ``b``, ``c`` (ending at its own position less the window's) for ``slot``: they start
    ``2 * LANES - phase - slot`` lanes into ``a``, ``b``, ``c`` laid end to end (in ``b``, or ``c`` itself,
    where ``phase + slot <= LANES``; else in ``a``).  Plain Python, as :func:`_partner_lanes`."""
    return lanes_from((a, b, c), 2 * LANES - phase - slot)


@ti.func
def _input2_vector(weights: ti.template(), x1p: ti.template(), target: ti.template(), b, y, v, g: ti.template(), s,
                   slots: ti.template(), phase: ti.template(), acc_t: ti.template()):
    """``target[b, c, y, v]`` for every channel (see ``grad_input2``), added up in place patch row by patch row:
    a patch row's weights, cut from consecutive vectors, serve all channels.  Vectors outside ``x1p``'s rows
    are zeros: a clamped load and a select (no branch, and no padded copy)."""
    height, channels = target.shape[2], target.shape[1]
    k_lo, k_hi = _windows(g)
    spill = ti.static(phase + slots > LANES + 1)  # some slot reads the vector before the pair
    for c in range(channels):
        target[b, c, y, v] = ti.Vector.zero(acc_t, LANES)
    for ph in range(g.patch_h):
        y1 = y - g.first_h - ph * g.patch_dilation_h
        h = output_index(y1, g.origin_h, 0, 1, g.stride_h, g.out_h)
        if 0 <= y1 < height and h >= 0:
            for k in range(k_lo, k_hi):
                j = v - k  # the vectors are output vectors j - 2 (where some slot spills), j - 1 and j
                w_lo = _slot_weights(weights, b, ph, h, j - 1, k, g, slots, acc_t, True)
                w_hi = _slot_weights(weights, b, ph, h, j, k, g, slots, acc_t, True)
                w_before = (_slot_weights(weights, b, ph, h, j - 2, k, g, slots, acc_t, True) if ti.static(spill)
                            else w_lo)
                w = [ti.Vector(ti.static(_gather_lanes(w_before[slot], w_lo[slot], w_hi[slot], slot, phase))) * s
                     for slot in ti.static(range(slots))]
                for c in range(channels):
                    lo = _partner_vector(x1p, b, c, y1, j - 1, True, acc_t)
                    hi = _partner_vector(x1p, b, c, y1, j, True, acc_t)
                    before = lo
                    if ti.static(spill):
                        before = _partner_vector(x1p, b, c, y1, j - 2, True, acc_t)
                    total = target[b, c, y, v]
                    for slot in ti.static(range(slots)):
                        total += w[slot] * ti.Vector(ti.static(_gather_lanes(before, lo, hi, slot, phase)))
                    target[b, c, y, v] = total


@functools.cache
def row_kernels(dtype) -> SimpleNamespace:
    """The row path's forward and gradient kernels for inputs of Taichi scalar type ``dtype``, which they
    compute in."""
    acc_t = dtype  # closed over, not a template argument: a type as one costs a launch-cache look-up in quadrants
    rows = ti.types.ndarray(dtype=ti.types.vector(LANES, dtype), ndim=4)
    planes = ti.types.ndarray(dtype=ti.types.vector(LANES, dtype), ndim=5)

    @locked  # with Taichi's IR optimisation: quick-compiled it ran 11-17 % slower at a (1, 41) patch

    @ti.kernel
    def forward(x1: rows, x2: rows, out: planes, g: RowGeometry, scale: ti.f64, slots: ti.template(),
                phase: ti.template()):
        """``out[b, ph, pw, h, v] = scale * sum_c x1[b, c, y1, v] * x2[b, c, y2, starting at
        LANES * v + lead + phase + step * pw]``, zero where a row or column is outside the image.

        One task per (batch, pair of patch rows, output row), one tile of displacements and one output
        vector at a time.  Output rows ``h`` of patch row ``p`` and ``h - patch_dilation_h / stride_h``
        of patch row ``p + 1`` read the same input2 row: a pair shares its shifted input2 vectors (one
        lane shuffle feeds two multiply-adds).
        Where the patch dilation is not a multiple of the stride, each "pair" is one patch row.
        ``slots`` and ``phase``: as in ``grad_input1``; a compile-time slot count keeps every
        accumulator in a register and the channel loop free of per-slot tests (measured on PWC level
        2: 0.85-0.87 of the time of 16 tested slots)."""
        height = x1.shape[2]
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
                    acc_a = [ti.Vector.zero(acc_t, LANES) for _ in ti.static(range(slots))]
                    acc_b = [ti.Vector.zero(acc_t, LANES) for _ in ti.static(range(slots))]
                    _vector_products(x1, x2, acc_a, acc_b, b, ya, yb, y2, v, k, inside_a, inside_b, slots, phase,
                                     acc_t)
                    if valid_a:
                        _store_windows(out, acc_a, b, p, ha, v, k, s_lo, s_hi, g, s, slots)
                    if valid_b:
                        _store_windows(out, acc_b, b, p + 1, hb, v, k, s_lo, s_hi, g, s, slots)

    @locked.quick_compile  # 3.7 s against 1.3 s to compile at PWC level 2, no slower (docs/runtime.md)

    @ti.kernel
    def grad_input1(weights: planes, x2: rows, target: rows, g: RowGeometry, scale: ti.f64, slots: ti.template(),
                    phase: ti.template(), block: ti.template()):
        """Input1's gradient in output columns: ``target[b, c, y, v] = scale * sum_{ph, pw} weights[b, ph, pw, h,
        v] * x2[b, c, y2, starting at LANES * v + lead + phase + step * pw]`` (``weights`` the output
        gradient, ``h`` the output row of input1 row ``y``, ``y2`` its partner row in patch row ``ph``;
        zero outside ``x2``'s rows).  ``slots``: the displacements of a window, ``min(LANES, patch_w)``
        (under ``lead`` windows start at whole vectors, so only the last may be partly empty);
        ``phase``: the columns that the starts lie past whole vectors of ``x2``, a compile-time shift,
        so that ``x2`` is read in place (one-process A/B on PWC level 2's forward: 0.5-0.7 of the time
        of a padded copy and the kernel).

        One task per target vector; ``block`` channels at a time (:func:`channel_block`), each summed in its own
        register
        over the whole patch, so that a patch row's weights, loaded once, serve the block."""
        s = ti.cast(scale, acc_t)
        for b, y, v in ti.ndrange(target.shape[0], target.shape[2], target.shape[3]):
            for first in range(target.shape[1] // block):
                _input1_block(weights, x2, target, b, first * block, y, v, g, s, slots, phase, block, acc_t)

    @locked

    @ti.kernel
    def grad_input2(weights: planes, x1p: rows, target: rows, g: RowGeometry, scale: ti.f64, slots: ti.template(),
                    phase: ti.template()):
        """Input2's gradient in its own columns: ``target[b, c, Y, x] = scale * sum_{ph, pw} weights[b, ph, pw, h,
        w] * x1p[b, c, y1, w]`` with ``w = x - lead - phase - step * pw`` (``x1p`` in output columns, ``y1``
        the input1 row of patch row ``ph``, ``h`` its output row; ``slots`` and ``phase`` as in
        ``grad_input1``), so that the gradient needs no copy cut from padded rows (one-process A/B on PWC
        level 2: 0.66-0.74 of the time of computing it in padded columns and cutting it out).

        Target vector ``V`` of window ``k``'s slot ``slot`` reads output columns ``LANES * (V - k) - phase
        - slot`` on, which straddle vectors ``V - k - 1`` and ``V - k`` (or, past a vector, ``V - k - 2``
        and ``V - k - 1``): both the weights and input1 are cut from such pairs.  Cutting the weights costs
        about as much as a block of channels' multiply-adds, so it is done once per patch row for all
        channels, which add into the target in place (unlike ``grad_input1``, whose weights need no
        cutting: measured, 25-30 % faster here, slower there)."""
        s = ti.cast(scale, acc_t)
        for b, y, v in ti.ndrange(target.shape[0], target.shape[2], target.shape[3]):
            _input2_vector(weights, x1p, target, b, y, v, g, s, slots, phase, acc_t)

    @locked

    @ti.kernel
    def shifted_rows(x: rows, out: rows, shift: ti.i32, lo: ti.i32, hi: ti.i32):
        """``out[b, c, y, X] = x[b, c, y, X + shift]`` for ``lo <= X < hi`` and ``x``'s channels, zero elsewhere:
        the padded copies and the gradient cut from input1's output columns, each output vector cut from
        two of ``x``'s.  A Taichi kernel rather than a torch
        copy, for the reason given at :func:`._kernels.correlation_kernels`' ``transpose``."""
        q = shift // LANES
        r = shift - q * LANES
        # where [lo, hi) is x's own row moved by the shift, the columns outside it come from vectors
        # outside x, which load as zeros: no lane needs masking
        exact = lo + shift <= 0 and hi + shift >= x.shape[3] * LANES
        for b, c, y in ti.ndrange(out.shape[0], out.shape[1], out.shape[2]):
            for j in range(out.shape[3]):
                lo_v, hi_v = ti.Vector.zero(dtype, LANES), ti.Vector.zero(dtype, LANES)
                if c < x.shape[1] and 0 <= j + q < x.shape[3]:
                    lo_v = x[b, c, y, j + q]
                if c < x.shape[1] and 0 <= j + q + 1 < x.shape[3]:
                    hi_v = x[b, c, y, j + q + 1]
                value = lo_v
                for shifted in ti.static(range(1, LANES)):
                    if r == shifted:
                        value = ti.Vector(ti.static(lanes_from((lo_v, hi_v), shifted)))
                start = j * LANES
                if exact or (lo <= start and start + LANES <= hi):
                    out[b, c, y, j] = value
                else:  # a vector at either end: lane by lane (a vector select with a lane mask miscompiles)
                    masked = ti.Vector.zero(dtype, LANES)
                    for lane in ti.static(range(LANES)):
                        if lo <= start + lane < hi:
                            masked[lane] = value[lane]
                    out[b, c, y, j] = masked

    return SimpleNamespace(forward=forward, grad_input1=grad_input1, grad_input2=grad_input2,
                           shifted_rows=shifted_rows)
