"""Peak memory of RAFT's lookup at 1080p: what the layer needs, what the bench holds, what the allocator keeps.

Run: ``python benchmarks/flow_memory.py`` (output in benchmarks/flow-memory.json).

The benchmark tool's ``raft-1080p`` configuration (1 x 256 x 135 x 240 feature maps, 4 levels, radius 4,
the pyramid built and looked up at 12 coordinate maps, forward and backward to both feature maps), for
this layer's ``raft.CorrBlock`` and RAFT's all-pairs ``CorrBlock``, each in a fresh process
(``python -m corr_taichi._bench_stereo``: the growth of the resident set's high-water mark), in four
settings:

* ``held``: the 12 outputs and 12 output gradients are all held at once (1 GiB at this size, for every
  implementation; a network whose next layer saves its input, as RAFT's motion encoder does, holds the
  outputs);
* ``reduced``: each output is reduced against one fixed gradient as it comes (the layer's own memory,
  what the benchmark tool reports);
* each with glibc's default allocator settings, and with ``MALLOC_MMAP_THRESHOLD_=65536``, which gives
  every large buffer its own mapping, returned to the system when freed: the resident set then follows
  the live tensors (what ``torch.cuda.max_memory_allocated`` counts on a GPU).  With the defaults,
  glibc raises its mapping threshold as buffers are freed (up to 32 MiB) and serves the buffers below
  it from its heap, which keeps freed memory.

RAFT's block takes minutes per run at this size; it is run in the two ``reduced`` settings and in
``held`` with the defaults.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from corr_taichi._bench_stereo import peak_mib  # noqa: E402
from corr_taichi._provenance import provenance  # noqa: E402

CONFIG = "raft-1080p"
RUNS = [  # (implementation, mode, allocator)
    ("corr_taichi", "held", "default"), ("corr_taichi", "held", "mmap"),
    ("corr_taichi", "reduced", "default"), ("corr_taichi", "reduced", "mmap"),
    ("raft_corrblock", "reduced", "default"), ("raft_corrblock", "reduced", "mmap"),
    ("raft_corrblock", "held", "default"),
]


def main() -> None:
    runs = []
    for impl, mode, allocator in RUNS:
        start = time.perf_counter()
        env = {"MALLOC_MMAP_THRESHOLD_": "65536"} if allocator == "mmap" else {}
        mib = peak_mib(CONFIG, impl, torch.device("cpu"), torch.float32, mode == "held", env)
        runs.append({"impl": impl, "mode": mode, "allocator": allocator, "peak_mib": round(mib, 1)})
        print(f"{impl:<16} {mode:<8} {allocator:<8} {mib:>9.1f} MiB  ({time.perf_counter() - start:.0f} s)", flush=True)
    table = {(r["impl"], r["mode"], r["allocator"]): r["peak_mib"] for r in runs}
    ratios = {f"{mode}, {allocator}": round(table[("corr_taichi", mode, allocator)]
                                            / table[("raft_corrblock", mode, allocator)], 4)
              for _, mode, allocator in RUNS if ("raft_corrblock", mode, allocator) in table}
    out = os.path.join(os.path.dirname(__file__), "flow-memory.json")
    with open(out, "w") as f:
        json.dump({"provenance": provenance("python benchmarks/flow_memory.py"), "config": CONFIG, "runs": runs,
                   "corr_taichi / raft_corrblock": ratios}, f, indent=2)
    print(json.dumps(ratios))


if __name__ == "__main__":
    main()
