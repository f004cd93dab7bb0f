"""What a recorded result was measured on, stored with every result file (the benchmark tool's and the
demo's ``--json``)."""

from __future__ import annotations

import platform
import subprocess
import sys

import torch

from ._runtime import ti


def provenance(program: str = "python -m corr_taichi.bench") -> dict:
    """The command (``program`` and this process's arguments), the commit, library versions and the CPU model."""
    root = __file__.rsplit("/src/", 1)[0]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=root).stdout.strip() or None
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                 text=True, timeout=10, cwd=root).stdout.strip()
        if commit and changed:
            commit += " (with uncommitted changes)"
    except (OSError, subprocess.SubprocessError):
        commit = None
    cpu = platform.processor() or None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"commit": commit, "command": " ".join([program, *sys.argv[1:]]),
            "torch": torch.__version__, "taichi": ".".join(map(str, ti.__version__)),
            "python": platform.python_version(),
            "cpu": cpu, "cpus": torch.get_num_threads()}
