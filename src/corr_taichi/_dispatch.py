"""Which kernels compute a call of the correlation op: every path decision, in :func:`plan`.

:func:`plan` takes the geometry, the input shape, the running Taichi backend and the phase, and returns a
:class:`Plan`, a plain record of what runs:

* ``empty``: nothing to compute (zeros);
* ``reference``: the pure-PyTorch computation, in a process forked after Taichi started;
* ``row``: the CPU row path (:mod:`._row_path`), for few channels;
* ``pixel_tiles``: the CPU kernels of :mod:`._pixel_tile_kernels` (single taps, column stride 1);
* ``channel_vectors``: the CPU kernels of :mod:`._kernels` (any geometry);
* ``gpu_tiled``, ``gpu_simple``: the GPU kernels of :mod:`._gpu_kernels`, with or without tiles.

and, beside the path, whether a window of several taps is computed as per-pixel products summed over
each window, the CPU gradient kernels' chunk and tile sizes, and the pieces below Taichi's 32-bit index
limit.  The kernel modules say what each kernel *can* compute; the thresholds here say what is *worth*
it, each beside the benchmark that chose it.

:func:`force_paths` is the one override (tests run a geometry on each CPU path, and the benchmark
tool times the GPU's simple kernels beside its tiled ones); :func:`recorded_plans` lets a test see
the plans the op made.  Both are context variables: they hold for the thread (or asyncio task) that
entered the ``with`` block and end with it.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from typing import Callable, Iterator, Sequence

import torch

from . import _gpu_kernels, _pixel_tile_kernels, _row_path
from ._geometry import Geometry, ceil_div
from ._kernel_helpers import LANES
from ._kernels import GROUPS
from ._runtime import MAX_ELEMENTS

# ------------------------------------------------------------------------------------------ thresholds

#: a window of several taps is computed as per-pixel products summed over each window when taps x output
#: pixels reach this many times the input pixels (``benchmarks/window_sums_vs_direct.py``: at a ratio
#: of 2.25, kernel 3 at stride 2, the window sums are faster forward and backward).
WINDOW_SUMS_FROM = 1.0
#: the CPU row path takes inputs of up to this many channels, its backward up to the second figure and
#: patches of several columns; beyond, the channel-vector kernels are as fast or faster
#: (``benchmarks/row_vs_channel_vectors.py``; one-column patches: ``benchmarks/one_row_patch_backward.py``).
ROW_MAX_CHANNELS = 256
ROW_MAX_CHANNELS_BACKWARD = 128
#: the GPU's tiled kernels take calls of at least this many columns and channels: below, too little of
#: a tile (``TILE_W`` columns by 16-32 channels) holds data for its shared-memory round trips to pay.
#: Set from the tile's shape, not measured on a GPU.
GPU_MIN_COLUMNS, GPU_MIN_CHANNELS = _gpu_kernels.TILE_W // 2, 8

PATHS = ("empty", "reference", "row", "pixel_tiles", "channel_vectors", "gpu_tiled", "gpu_simple")
CPU_ARCHS = ("x64", "arm64")


# ------------------------------------------------------------------------------------------ the override

@dataclasses.dataclass(frozen=True)
class Forced:
    #: CPU, single-tap geometries: ``True`` takes the row path wherever it can compute the call,
    #: ``False`` never; ``None`` follows the thresholds above
    row_path: bool | None = None
    #: GPU: every call takes the simple kernels instead of the tiled ones
    gpu_simple: bool = False
    #: the element count that calls are split below, in place of Taichi's index limit (tests of the
    #: splitting, on small inputs); ``None``: :data:`MAX_ELEMENTS`
    max_elements: int | None = None


_FORCED: contextvars.ContextVar[Forced] = contextvars.ContextVar("corr_taichi_forced_paths", default=Forced())
_RECORD: contextvars.ContextVar[list | None] = contextvars.ContextVar("corr_taichi_recorded_plans", default=None)


def forced() -> Forced:
    """The override in force here (the default: none)."""
    return _FORCED.get()


@contextlib.contextmanager
def force_paths(*, row_path: bool | None = None, gpu_simple: bool = False, max_elements: int | None = None
                ) -> Iterator[Forced]:
    """Within this block, the op takes the paths named (see :class:`Forced`); for tests and benchmarks."""
    if row_path not in (None, True, False) or not isinstance(gpu_simple, bool):
        raise TypeError(f"force_paths: row_path must be None, True or False and gpu_simple a bool, got "
                        f"{row_path!r} and {gpu_simple!r}")
    if max_elements is not None and (not isinstance(max_elements, int) or not 0 < max_elements <= MAX_ELEMENTS):
        raise TypeError(f"force_paths: max_elements must be None or an int in 1..{MAX_ELEMENTS}, got {max_elements!r}")
    token = _FORCED.set(Forced(row_path, gpu_simple, max_elements))
    try:
        yield _FORCED.get()
    finally:
        _FORCED.reset(token)


@contextlib.contextmanager
def recorded_plans() -> Iterator[list]:
    """Within this block, every plan the op runs is appended to the list this yields; for tests."""
    plans: list = []
    token = _RECORD.set(plans)
    try:
        yield plans
    finally:
        _RECORD.reset(token)


# ------------------------------------------------------------------------------------------ the plan

@dataclasses.dataclass(frozen=True)
class Piece:
    images: slice  #: of the batch
    rows: slice  #: of the patch (displacement rows)
    geometry: Geometry  #: of those patch rows
    #: what the kernels compute for them: ``geometry`` itself, or its per-pixel products (one tap, stride
    #: 1, every pixel) that are then summed over each kernel window
    tap: Geometry

    @property
    def window_sums(self) -> bool:
        return self.tap is not self.geometry


@dataclasses.dataclass(frozen=True)
class Plan:
    path: str  #: one of :data:`PATHS`
    backward: bool
    pieces: tuple[Piece, ...]  #: the call, below the index limit (one piece for any ordinary call)
    #: the input gradients' memory format (the same on every backend, so that fake tensors agree)
    gradient_format: torch.memory_format
    vectors: int = 0  #: CPU gradient kernels: channel vectors per chunk
    pixels: int = 0  #: pixel-tile gradient kernels: target pixels per tile
    forced: Forced = Forced()  #: the override in force when the plan was made

    @property
    def window_sums(self) -> bool:
        return any(piece.window_sums for piece in self.pieces)

    @property
    def on_cpu(self) -> bool:
        """Whether the CPU kernels run (on the CPU layouts) rather than the GPU's (on NCHW tensors)."""
        return self.path in ("row", "pixel_tiles", "channel_vectors")


def plan(g: Geometry, shape: Sequence[int], arch: str | None | Callable[[], str | None],
         backward: bool = False) -> Plan:
    """The kernels that compute the forward (or the backward) of geometry ``g`` on inputs of NCHW
    ``shape`` on Taichi backend ``arch`` (``"x64"``, ``"cuda"``, ``"vulkan"``...; ``None`` where Taichi
    cannot run in this process).  ``arch`` may be a function that returns it, called only for a call
    with work to do (the op's starts the runtime)."""
    force = forced()
    batch, channels, height, width = shape
    tap = _tap(g, height, width)
    row_backward = _row_tap(tap, shape, True, force)  # sets the gradients' format, forward and backward
    fmt = _gradient_format(row_backward)
    record = dict(backward=backward, gradient_format=fmt, forced=force)
    whole = Piece(slice(0, batch), slice(0, g.patch_h), g, tap)
    empty = math.prod(g.output_shape(batch)) == 0 or batch * channels * height * width == 0
    if not empty and callable(arch):
        arch = arch()
    if empty:
        return Plan("empty", pieces=(whole,), **record)
    if arch is None:
        return Plan("reference", pieces=(whole,), **record)
    pieces = tuple(pieces_of(g, batch, channels, height, width, force.max_elements or MAX_ELEMENTS))
    row = row_backward if backward else _row_tap(tap, shape, False, force) if arch in CPU_ARCHS else None
    if arch in CPU_ARCHS and len(pieces) == 1 and row is not None:
        result = Plan("row", pieces=(whole,), **record)
    else:
        first = pieces[0]  # the largest
        if arch not in CPU_ARCHS:
            tiled = _gpu_tiled(first.tap, (first.images.stop, channels, height, width), force)
            result = Plan("gpu_tiled" if tiled else "gpu_simple", pieces=pieces, **record)
        elif not backward:
            tiles = _pixel_tile_kernels.takes_forward(first.tap)
            result = Plan("pixel_tiles" if tiles else "channel_vectors", pieces=pieces, **record)
        elif _pixel_tile_kernels.takes(first.tap):
            vectors, pixels = pixel_tile_shape(ceil_div(channels, LANES))
            result = Plan("pixel_tiles", pieces=pieces, vectors=vectors, pixels=pixels, **record)
        else:
            result = Plan("channel_vectors", pieces=pieces, vectors=chunk_vectors(ceil_div(channels, LANES)),
                          **record)
    return result


def record(p: Plan) -> Plan:
    """``p``, appended to the list of the enclosing :func:`recorded_plans` block if any: the op hands
    each plan it runs through here."""
    plans = _RECORD.get()
    if plans is not None:
        plans.append(p)
    return p


def gradient_format(g: Geometry, shape: Sequence[int]) -> torch.memory_format:
    """The input gradients' memory format: NCHW where the CPU row path computes the backward (it writes
    NCHW rows), channels-last elsewhere (the channel-vector kernels write channels-last).  Decided from
    the shapes alone, so that fake tensors agree on every backend."""
    return _gradient_format(_row_tap(_tap(g, *shape[2:]), shape, True, forced()))


def _gradient_format(row_backward: Geometry | None) -> torch.memory_format:
    """:func:`gradient_format` from the row path's decision for the backward (:func:`_row_tap`)."""
    return torch.contiguous_format if row_backward is not None else torch.channels_last


def _tap(g: Geometry, height: int, width: int) -> Geometry:
    """``g`` itself, or its per-pixel products where computing those once and summing them over each
    window is cheaper than correlating every tap of every output pixel (typically at stride 1, where
    neighbouring windows share all but one row or column of taps)."""
    taps = g.kernel_h * g.kernel_w
    if taps == 1 or taps * g.out_h * g.out_w < WINDOW_SUMS_FROM * height * width:
        return g
    return dataclasses.replace(g, kernel_h=1, kernel_w=1, dilation_h=1, dilation_w=1, stride_h=1, stride_w=1,
                               origin_h=0, origin_w=0, out_h=height, out_w=width)


def _piece(g: Geometry, images: slice, rows: slice, height: int, width: int) -> Piece:
    return Piece(images, rows, g, _tap(g, height, width))


def _row_tap(tap: Geometry, shape: Sequence[int], backward: bool, force: Forced) -> Geometry | None:
    """``tap`` (the single-tap geometry of :func:`_tap`), where the CPU row path computes this call with
    it; ``None`` where the row path does not take the call."""
    if force.row_path is False or not _row_path.computes(tap, *shape):
        return None
    channels = shape[1]
    if force.row_path is None and channels > ROW_MAX_CHANNELS:
        return None
    if force.row_path is None and backward and (channels > ROW_MAX_CHANNELS_BACKWARD or tap.patch_w == 1):
        return None
    return tap


def _gpu_tiled(tap: Geometry, shape: Sequence[int], force: Forced) -> bool:
    _, channels, _, width = shape
    big_enough = min(width, tap.out_w) >= GPU_MIN_COLUMNS and channels >= GPU_MIN_CHANNELS
    return not force.gpu_simple and big_enough and _gpu_kernels.computes(tap, *shape)


def pixel_tile_shape(groups: int) -> tuple[int, int]:
    """``(vectors, pixels)`` of the pixel-tile gradient kernels for pixels of ``groups`` channel vectors:
    chunks of 4, 2 or 1 vectors (the largest that divides ``groups``), and tiles of 4 pixels with
    4-vector chunks, 8 with smaller ones (measured on FlowNetC, PWC-Net level 2 and 48- and 160-channel
    shapes: ``docs/design.md``, "Pixel tiles")."""
    vectors = 4 if groups % 4 == 0 else 2 if groups % 2 == 0 else 1
    return vectors, 4 if vectors == 4 else 8


def chunk_vectors(groups: int) -> int:
    """Channel vectors per chunk of the channel-vector gradient kernels for pixels of ``groups`` channel
    vectors: the largest power of two up to ``GROUPS`` that divides ``groups``."""
    vectors = GROUPS
    while groups % vectors:
        vectors //= 2
    return vectors


def pieces_of(g: Geometry, batch: int, channels: int, height: int, width: int, limit: int = MAX_ELEMENTS
              ) -> list[Piece]:
    """The call as pieces of whole images x consecutive patch rows whose tensors (input images, output,
    per-pixel products) each hold at most ``limit`` elements (:func:`plan` passes the override's
    ``max_elements`` where set), so that no index wraps.  A pure function of its arguments: the public
    APIs call it while ``torch.compile`` traces them, to refuse what cannot be split.  One
    piece for any ordinary call.  The output slice of a piece is contiguous: a piece has all patch rows
    or a single image.  Raises ``NotImplementedError`` where one image or one patch row is too large."""
    tap = _tap(g, height, width)
    products = tap is not g
    # one patch row of one image: of the output, and of the per-pixel products where the op takes them
    per_row = g.patch_w * max(g.out_h * g.out_w, height * width if products else 0)
    image = channels * height * width
    if max(image, per_row) > limit:
        raise NotImplementedError(
            f"correlation: one image of the input ({image} elements) or one row of displacements of the "
            f"output ({per_row} elements) exceeds 2**31 - 1 elements, which Taichi cannot index; use a "
            f"smaller image or fewer channels"
        )
    rows = min(g.patch_h, limit // max(per_row, 1))
    images = 1
    if rows == g.patch_h:
        images = max(1, min(batch, limit // max(image, per_row * g.patch_h, 1)))
    if (images, rows) == (batch, g.patch_h):
        return [Piece(slice(0, batch), slice(0, g.patch_h), g, tap)]
    return [
        _piece(dataclasses.replace(g, patch_h=min(rows, g.patch_h - p0), first_h=g.first_h + p0 * g.patch_dilation_h),
               slice(b0, min(b0 + images, batch)), slice(p0, p0 + min(rows, g.patch_h - p0)), height, width)
        for b0 in range(0, batch, images)
        for p0 in range(0, g.patch_h, rows)
    ]
