"""Run code in a fresh Python process: how the suite tests process-level properties (threads, fork and
spawn, first calls, runtime start, silence, environment variables), so that no earlier test in the
pytest process can have warmed them up.

Code that starts Taichi itself (``import taichi as ti``, as a user would) starts the implementation under
test: under ``CORR_TAICHI_BACKEND=quadrants`` that import becomes ``import quadrants as ti``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(code: str, env: dict[str, str] | None = None, timeout: float = 300, file: Path | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``code`` (dedented) in a fresh interpreter, as ``python -c`` or, where ``file`` is given, written to
    that file and run as a script (which ``multiprocessing``'s spawn needs).  ``env`` adds to the
    environment.  A hang fails the calling test through ``subprocess.TimeoutExpired``."""
    code = textwrap.dedent(code)
    if os.environ.get("CORR_TAICHI_BACKEND", "").strip().lower() == "quadrants":
        code = code.replace("taichi as ti", "quadrants as ti")
    if file is not None:
        file.write_text(code)
        argv = [sys.executable, str(file)]
    else:
        argv = [sys.executable, "-c", code]
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "PYTHONPATH": path, **(env or {})}
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=environment, cwd=cwd)
