"""A Taichi kernel launched right after a parallel torch operation is slower: torch's OpenMP threads
keep spinning for a while after each parallel region (libgomp's default wait policy) and share the
two cores with Taichi's threads.  This is why the op makes its CPU copies with Taichi kernels where it
can (``_op._cpu_layout``, ``_op._pixel_major``, the row path's ``_row_path._shifted``).

Run: ``python benchmarks/openmp_spin.py`` (output in benchmarks/openmp-spin.txt).  For the forward
kernel of FlowNetC (channel vectors) and of PWC level 2 (row path), on inputs already laid out, the
kernel alone is timed in three situations, alternating within each repeat: right after a torch copy
of an input-sized tensor, after the same copy and a 20 ms sleep, and right after another launch of
the kernel.  Medians of 15, ms.  Then the same in a process started with ``OMP_WAIT_POLICY=PASSIVE``
(OpenMP threads that sleep at once): where the penalty after a copy is the spinning, it goes away
there; what remains is the cache (the kernel after itself finds its inputs in cache).
"""

import os
import statistics
import subprocess
import sys
import time

import torch

from corr_taichi import _dispatch, _op, _row_path
from corr_taichi._geometry import sampler_geometry
from corr_taichi._runtime import ensure_runtime, ti
from corr_taichi.bench import CONFIGS


def kernel_launch(name: str):
    shape, params = CONFIGS[name]
    B, C, H, W = shape
    g = sampler_geometry(H, W, **params)
    x1, x2 = torch.randn(shape), torch.randn(shape)
    if _dispatch.plan(g, shape, "x64").path == "row":
        layout = _row_path.RowLayout.of(g)
        a, b = layout.padded_input1(x1, g, torch.float32), layout.whole_vector_input2(x2, torch.float32)
        out = torch.empty(g.output_shape(B)[:-1] + (layout.out_vectors * 16,))
        struct = _row_path._struct(g, layout.lead, layout.step)
        rows, slots = _row_path._rows, _row_path._window_slots(g)
        kernel = _row_path._kernels_for(torch.float32).forward
        return lambda: kernel(rows(a), rows(b), rows(out), struct, 1.0, slots, layout.phase), x2
    a, b = _op._cpu_layout(x1), _op._cpu_layout(x2)
    out = torch.empty(g.output_shape(B))
    struct = _op._launch_struct(g)
    (kernel, _), _, _ = _op._cpu_kernels(g, shape)
    return lambda: kernel(a, b, out.view(-1), struct, 1.0, ti.f32), x2


def main() -> None:
    ensure_runtime(torch.device("cpu"))
    policy = os.environ.get("OMP_WAIT_POLICY", "default")
    print(f"{torch.get_num_threads()} threads, OMP_WAIT_POLICY {policy}; forward kernel alone, medians of 15, ms")
    for name in ("flownetc", "pwc2"):
        launch, x = kernel_launch(name)
        target = torch.empty_like(x)
        launch()
        times = {"after a torch copy": [], "after a torch copy and 20 ms": [], "after the kernel": []}
        for _ in range(15):
            for situation, ts in times.items():
                if situation == "after the kernel":
                    launch()
                else:
                    target.copy_(x)
                    if "20 ms" in situation:
                        time.sleep(0.02)
                start = time.perf_counter()
                launch()
                ts.append((time.perf_counter() - start) * 1e3)
        print(f"{name:<9}" + "".join(f"  {situation}: {statistics.median(ts):5.2f}" for situation, ts in times.items()))
    if "OMP_WAIT_POLICY" not in os.environ:
        sys.stdout.flush()
        subprocess.run([sys.executable, __file__], env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"), check=True)


if __name__ == "__main__":
    main()
