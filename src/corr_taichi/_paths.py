"""The one override of the op's path choices.

The op picks its kernels from the geometry, the tensors and the backend.  Tests run a geometry on each
CPU path, and the benchmark tool times the GPU's simple kernels beside its tiled ones; both say so with
:func:`force_paths` instead of flipping module globals.  The setting is a context variable: it holds for
the thread (or asyncio task) that entered the ``with`` block and ends with it.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Iterator


@dataclasses.dataclass(frozen=True)
class Forced:
    #: CPU, single-tap geometries: ``True`` takes the row path wherever it can compute the call,
    #: ``False`` never; ``None`` follows the thresholds in ``_row_path``
    row_path: bool | None = None
    #: GPU: every call takes the simple kernels instead of the tiled ones
    gpu_simple: bool = False


_FORCED: contextvars.ContextVar[Forced] = contextvars.ContextVar("corr_taichi_forced_paths", default=Forced())


def forced() -> Forced:
    """The override in force here (the default: none)."""
    return _FORCED.get()


@contextlib.contextmanager
def force_paths(*, row_path: bool | None = None, gpu_simple: bool = False) -> Iterator[Forced]:
    """Within this block, the op takes the paths named (see :class:`Forced`); for tests and benchmarks."""
    if row_path not in (None, True, False) or not isinstance(gpu_simple, bool):
        raise TypeError(f"force_paths: row_path must be None, True or False and gpu_simple a bool, got "
                        f"{row_path!r} and {gpu_simple!r}")
    token = _FORCED.set(Forced(row_path, gpu_simple))
    try:
        yield _FORCED.get()
    finally:
        _FORCED.reset(token)
