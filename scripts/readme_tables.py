"""The README's tables of figures, generated from the recorded JSON result files.

Run: python scripts/readme_tables.py            (prints the Markdown blocks the README holds)
     python scripts/readme_tables.py --write    (writes them into README.md, between their markers)
     python scripts/readme_tables.py --check    (exits 1 when README.md does not hold them)

The speed tables come from ``benchmarks/cpu-results.json``, ``benchmarks/stereo-results.json`` and
``benchmarks/flow-results.json`` (the benchmark tool's ``--json``), the demo's table from
``benchmarks/demo-results.json`` (``python -m corr_taichi.demo --json``); ``tests/test_docs.py`` checks
that the README holds exactly what this prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: configuration -> how the table names it
CORRELATION = {
    "flownetc": "FlowNetC (4×256×48×64, patch 21, dil. 2)",
    "pwc2": "PWC level 2 (4×32×96×128, patch 9)",
    "kernel3": "kernel 3, stride 2 (4×64×48×64, patch 9)",
    "row": "1-row patch (4×128×48×64, patch 1×41)",
    "column": "1-column patch (4×128×48×64, patch 41×1)",
    "stereo1d": "`correlation1d`, 41 disparities (4×128×48×64)",
}
#: configuration -> (name, this layer's implementation, the network's implementation)
NETWORKS = {
    "gwcnet-crop": ("GwcNet, 1×320×64×128, 40 groups, 48 disparities", "corr_taichi", "gwcnet_loop"),
    "gwcnet-kitti": ("GwcNet, KITTI, 1×320×94×311", "corr_taichi", "gwcnet_loop"),
    "igev-kitti": ("IGEV-Stereo, KITTI, 1×96×94×311, 8 groups", "corr_taichi", "gwcnet_loop"),
    "raft-stereo-kitti": ("RAFT-Stereo, KITTI, 1×256×94×311, 12 lookups", "corr_taichi_volume",
                          "raft_stereo_corrblock1d"),
    "raft-1024x440": ("RAFT, 1×256×55×128 (1024×440 frame), 12 lookups", "corr_taichi", "raft_corrblock"),
    "raft-small-1024x440": ("raft-small, 1×128×55×128, r 3, 12 lookups", "corr_taichi", "raft_corrblock"),
    "raft-1080p": ("RAFT, 1×256×135×240 (1080p frame), 12 lookups", "corr_taichi", "raft_corrblock"),
}


def _load(name: str) -> tuple[dict, dict]:
    data = json.loads((ROOT / "benchmarks" / name).read_text())
    return data, {(t["config"], t["impl"], t["pass_"]): t for t in data["timings"]}


def _source(name: str, data: dict) -> str:
    prov = data.get("provenance", {})
    command = prov.get("command", "the command is not recorded in this file")
    return f"`benchmarks/{name}`: `{command}` (commit {_commit(prov)}; {data['title']})"


def _commit(prov: dict) -> str:
    return (prov.get("commit") or "not recorded")[:12]


def _ms(t: dict | None) -> str:
    return "–" if t is None else f"{t['median_ms']:.1f}"


def correlation_table() -> list[str]:
    data, t = _load("cpu-results.json")
    lines = ["| configuration | pass | corr_taichi ms | pure PyTorch ms | spatial_correlation_sampler ms | "
             "corr_taichi × floor |", "|---|---|---|---|---|---|"]
    for config, name in CORRELATION.items():
        for pass_ in ("forward", "backward"):
            ours = t[(config, "corr_taichi", pass_)]
            lines.append(f"| {name if pass_ == 'forward' else ''} | {pass_} | {_ms(ours)} | "
                         f"{_ms(t.get((config, 'pytorch', pass_)))} | {_ms(t.get((config, 'sampler', pass_)))} | "
                         f"{ours['ratio']:.2f} |")
    return lines + ["", "Source: " + _source("cpu-results.json", data)]


def network_table(file: str) -> list[str]:
    data, t = _load(file)
    lines = ["| configuration | corr_taichi fwd / bwd ms | the network's code fwd / bwd ms | "
             "peak MiB, corr_taichi vs network |", "|---|---|---|---|"]
    for config, (name, ours, theirs) in NETWORKS.items():
        if (config, ours, "forward") not in t:
            continue
        fwd, bwd = t[(config, ours, "forward")], t[(config, ours, "backward")]
        tfwd, tbwd = t[(config, theirs, "forward")], t[(config, theirs, "backward")]
        lines.append(f"| {name} | {_ms(fwd)} / {_ms(bwd)} | {_ms(tfwd)} / {_ms(tbwd)} | "
                     f"{bwd['peak_mib']:.0f} vs {tbwd['peak_mib']:.0f} |")
    return lines + ["", "Source: " + _source(file, data)]


def demo_table() -> list[str]:
    data = json.loads((ROOT / "benchmarks" / "demo-results.json").read_text())
    lines = ["| stereo (Middlebury Motorcycle) | bad 2 px % | bad 4 px % | MAE px | time s | first call s |",
             "|---|---|---|---|---|---|"]
    for name, r in data["stereo"].items():
        first = "–" if r["first"] is None else f"{r['first']:.2f}"
        lines.append(f"| {name} | {r['bad2']:.1f} | {r['bad4']:.1f} | {r['mae']:.2f} | {r['time']:.2f} | {first} |")
    lines += ["", "| optical flow (warped photograph) | EPE px | time s | first call s |", "|---|---|---|---|"]
    for name, r in data["flow"].items():
        time, first = (f"{r[k]:.2f}" if k in r else "–" for k in ("time", "first"))
        lines.append(f"| {name} | {r['epe']:.2f} | {time} | {first} |")
    prov = data["provenance"]
    return lines + ["", f"Source: `benchmarks/demo-results.json`: `{prov['command']}` (commit "
                        f"{_commit(prov)}; {prov['cpus']} CPUs, torch {prov['torch']})"]


def blocks() -> dict[str, str]:
    """name -> the Markdown block, between its begin and end markers."""
    contents = {
        "speed tables": [*correlation_table(), "", *network_table("stereo-results.json"), "",
                         *network_table("flow-results.json")],
        "demo table": demo_table(),
    }
    return {name: "\n".join([f"<!-- {name}: begin (scripts/readme_tables.py) -->", *lines, f"<!-- {name}: end -->"])
            for name, lines in contents.items()}


def main() -> int:
    found = blocks()
    if "--write" in sys.argv[1:]:
        path = ROOT / "README.md"
        readme = path.read_text()
        for name, text in found.items():
            begin = readme.index(f"<!-- {name}: begin")
            end = readme.index(f"<!-- {name}: end -->") + len(f"<!-- {name}: end -->")
            readme = readme[:begin] + text + readme[end:]
        path.write_text(readme)
        return 0
    if "--check" in sys.argv[1:]:
        readme = (ROOT / "README.md").read_text()
        stale = [name for name, text in found.items() if text not in readme]
        if stale:
            print(f"README.md does not hold the current {', '.join(stale)} of scripts/readme_tables.py",
                  file=sys.stderr)
            return 1
        return 0
    print("\n\n".join(found.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
