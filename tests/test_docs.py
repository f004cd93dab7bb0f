"""The README's promises that can go stale: its tables of figures come from the recorded result files, and
its quick start runs and gives the shapes its comments state."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_tables_are_generated_from_the_recorded_results():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_tables.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_is_short():
    assert len(README.splitlines()) <= 250


def test_quick_start_runs_and_gives_the_shapes_it_states():
    code = re.search(r"```python\n(import torch, corr_taichi\n.*?)```", README, re.S).group(1)
    stated = {}
    for line in code.splitlines():
        match = re.match(r"(\w+) = .*# \((\d+(?:, \d+)*)\)", line)
        if match:
            stated[match.group(1)] = tuple(int(n) for n in match.group(2).split(", "))
    assert len(stated) >= 5
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    # a name assigned twice states its last shape; the last assignment is what the namespace holds
    assert {name: tuple(namespace[name].shape) for name in stated} == stated
