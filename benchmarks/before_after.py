"""The benchmark tool's default command at two commits, side by side on one machine.

Run: ``python benchmarks/before_after.py BEFORE [AFTER] [--runs N] [--json PATH] [-- BENCH ARGS...]``
(``AFTER`` defaults to the working tree).  Each commit is exported with ``git archive`` into a temporary
directory and imported from there (``PYTHONPATH``); the two run alternately, ``N`` times each (default
3), each run a fresh ``python -m corr_taichi.bench --json`` process, so that both see the same load on a
shared machine.  Reported per configuration, implementation and pass: each side's median over its runs
of the tool's own medians, and after / before.  Answers: did a change slow anything down?
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def _export(rev: str, into: Path) -> tuple[Path, str]:
    """``rev`` exported into ``into``; its src directory and its full commit hash."""
    commit = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src", commit.strip()


def _run(src: Path, bench_args: list[str], out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src))
    subprocess.run([sys.executable, "-m", "corr_taichi.bench", *bench_args, "--json", str(out)], env=env,
                   check=True, cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after", nargs="?", help="a commit (default: the working tree)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="write the result here")
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)  # after --: arguments for the benchmark tool
    args, bench_args = parser.parse_args(argv[:split]), argv[split + 1:]
    with tempfile.TemporaryDirectory() as tmp:
        sides = {}
        for name, rev in (("before", args.before), ("after", args.after)):
            if rev is None:
                sides[name] = (ROOT / "src", None)
            else:
                (Path(tmp) / name).mkdir()
                sides[name] = _export(rev, Path(tmp) / name)
        runs: dict[str, list[dict]] = {name: [] for name in sides}
        for k in range(args.runs):
            for name, (src, _) in sides.items():
                runs[name].append(_run(src, bench_args, Path(tmp) / f"{name}-{k}.json"))
                print(f"run {k + 1}/{args.runs} {name}: done", file=sys.stderr)
    rows = {}
    for name, payloads in runs.items():
        for payload in payloads:
            for t in payload["timings"]:
                rows.setdefault((t["config"], t["impl"], t["pass_"]), {}).setdefault(name, []).append(t["median_ms"])
    table = []
    for (config, impl, pass_), sides_ms in rows.items():
        before, after = (statistics.median(sides_ms[s]) for s in ("before", "after"))
        table.append({"config": config, "impl": impl, "pass_": pass_, "before_ms": before, "after_ms": after,
                      "after_over_before": after / before, "before_runs_ms": sides_ms["before"],
                      "after_runs_ms": sides_ms["after"]})
    after_provenance = runs["after"][0]["provenance"]
    result = {
        "question": "does the benchmark tool's default command run slower after the change than before?",
        "command": " ".join(["python benchmarks/before_after.py", *argv]),
        "bench_command": " ".join(["python -m corr_taichi.bench", *bench_args]),
        "before": {"commit": sides["before"][1] or after_provenance["commit"]},
        "after": {"commit": sides["after"][1] or after_provenance["commit"]},
        "runs_per_side": args.runs,
        "provenance": {k: after_provenance[k] for k in ("torch", "taichi", "python", "cpu", "cpus")},
        "gemm_gflops": {name: [p["gemm_gflops"] for p in payloads] for name, payloads in runs.items()},
        "copy_gbs": {name: [p["copy_gbs"] for p in payloads] for name, payloads in runs.items()},
        "timings": table,
        "tables": {name: [p["timings"] for p in payloads] for name, payloads in runs.items()},
    }
    print(f"{'config':10s} {'impl':12s} {'pass':9s} {'before ms':>10s} {'after ms':>10s} {'after/before':>13s}")
    for row in table:
        print(f"{row['config']:10s} {row['impl']:12s} {row['pass_']:9s} {row['before_ms']:10.1f} "
              f"{row['after_ms']:10.1f} {row['after_over_before']:13.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
