"""How wide Taichi's CPU code is on this machine, and the fastest any of its kernels can run here.

Run: ``python benchmarks/simd_ceiling.py`` (output in benchmarks/simd-ceiling.txt).

The benchmark tool's floor is torch's sgemm rate, which uses the widest SIMD the CPU has (AVX-512
here).  Taichi's CPU backend compiles kernels through its bundled LLVM, which picks the vector width
from the CPU model it recognises; a CPU newer than that LLVM is treated as a generic x86-64 (SSE2,
4 float lanes, no fused multiply-add in the cost model).  This script shows which case holds:

* the widest ``<N x float>`` vector in the optimised LLVM IR of the forward kernel's inner loop
  (Taichi writes that IR to files when asked to at ``ti.init``);
* the *ceiling*: the forward kernel's own inner loop (:func:`corr_taichi._kernels._dot_tile`, a tile of
  8 displacements over 256 channels) run with all its data in L1 cache, so that nothing but the
  arithmetic limits it; no Taichi CPU kernel of this shape can beat it;
* the same ceiling as a multiple of the benchmark tool's floor, and the real forward kernel on the
  FlowNetC configuration for comparison; all timed alternately in one process (medians of 7 after
  2 warm-ups).
"""

import collections
import os
import re
import statistics
import tempfile
import time

import torch

from corr_taichi._runtime import ti

REPEATS = 4000  #: inner-loop passes per task of the ceiling kernel
TASKS = 64


def cpu_model() -> str:
    """Vendor, family, model and the widest SIMD flag from /proc/cpuinfo (Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read().split("\n\n")[0]
    except OSError:
        return "unknown"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = fields.get("flags", "").split()
    widest = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "sse2")
    return (f"{fields.get('model name', '?')} (vendor {fields.get('vendor_id', '?')}, family "
            f"{fields.get('cpu family', '?')}, model {fields.get('model', '?')}), widest SIMD flag: {widest}")


def vector_widths(directory: str) -> collections.Counter:
    """How often each ``<N x float>`` type occurs in the optimised IR files Taichi wrote."""
    counts = collections.Counter()
    for name in os.listdir(directory):
        if name.endswith(".ll"):
            with open(os.path.join(directory, name)) as f:
                counts.update(int(n) for n in re.findall(r"<(\d+) x float>", f.read()))
    return counts


def clock(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    workdir = tempfile.mkdtemp()
    cwd = os.getcwd()
    os.chdir(workdir)  # Taichi writes its IR files into the working directory
    ti.init(arch=ti.cpu, print_kernel_llvm_ir_optimized=True, offline_cache=False, log_level=ti.WARN)
    os.chdir(cwd)

    from corr_taichi import _kernels, _op
    from corr_taichi._geometry import sampler_geometry
    from corr_taichi.bench import CONFIGS

    @ti.kernel
    def ceiling(x1: ti.types.ndarray(ndim=4), x2: ti.types.ndarray(ndim=4), out: ti.types.ndarray(ndim=1)):
        for task in range(out.shape[0]):
            total = 0.0
            for _ in range(REPEATS):
                total += _kernels._dot_tile(x1, x2, 0, 0, 0, 0, 0, 1, 8, ti.f32).sum()
            out[task] = total

    channels = 256
    x1, x2, sink = torch.randn(1, 1, 1, channels), torch.randn(1, 1, 8, channels), torch.empty(TASKS)
    ceiling_flops = 2.0 * TASKS * REPEATS * 8 * channels

    shape, params = CONFIGS["flownetc"]
    batch, _, height, width = shape
    g = sampler_geometry(height, width, **params)
    a, b = (torch.randn(batch, height, width, shape[1]) for _ in range(2))
    out = torch.empty(g.output_shape(batch))
    launch = _op._launch_struct(g)
    forward_flops = 2.0 * batch * g.out_h * g.out_w * g.patch_h * g.patch_w * shape[1]
    m = torch.randn(2048, 2048)

    os.chdir(workdir)
    ceiling(x1, x2, sink)  # compiles both kernels, writing their IR
    _kernels.forward(a, b, out.view(-1), launch, 1.0, ti.f32)
    os.chdir(cwd)

    steps = {
        "sgemm 2048^2 (torch)": (lambda: m @ m, 2.0 * 2048**3),
        "ceiling: forward inner loop, data in L1": (lambda: ceiling(x1, x2, sink), ceiling_flops),
        "forward kernel, FlowNetC": (lambda: _kernels.forward(a, b, out.view(-1), launch, 1.0, ti.f32), forward_flops),
    }
    times = {name: [] for name in steps}
    for k in range(9):
        for name, (fn, _) in steps.items():
            t = clock(fn)
            if k >= 2:
                times[name].append(t)
    rates = {name: steps[name][1] / statistics.median(ts) / 1e6 for name, ts in times.items()}

    widths = vector_widths(workdir)
    print(f"CPU: {cpu_model()}")
    print(f"taichi {ti.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("float vector types in the optimised IR of the two Taichi kernels: "
          + (", ".join(f"<{n} x float> x{c}" for n, c in sorted(widths.items())) or "none"))
    print("medians of 7 after 2 warm-ups, alternating in one process")
    floor = rates["sgemm 2048^2 (torch)"]
    for name, rate in rates.items():
        print(f"  {name:<42}{rate:7.1f} GFLOP/s   {floor / rate:5.2f} x floor")


if __name__ == "__main__":
    main()
