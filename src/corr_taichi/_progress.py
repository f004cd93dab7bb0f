"""A transient progress bar (rich, installed with taichi) or, without rich, a silent stand-in."""

from __future__ import annotations


class _Silent:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kwargs):
        return 0

    def update(self, *args, **kwargs):
        pass

    def advance(self, *args, **kwargs):
        pass


def progress_bar():
    """Context manager with rich's ``add_task``, ``update`` and ``advance``."""
    try:
        from rich.progress import Progress
    except ImportError:  # pragma: no cover
        return _Silent()
    return Progress(transient=True)
