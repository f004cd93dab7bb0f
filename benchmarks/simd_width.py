"""Why the CPU kernels compute on Taichi vectors with the runtime started unscalarised.

Run: ``python benchmarks/simd_width.py`` (output in benchmarks/simd-width.txt).

Taichi's CPU backend compiles through its bundled LLVM (15 in Taichi 1.7), which tunes for the CPU
model it recognises; a newer CPU is compiled for as a generic x86-64, and LLVM's loop vectoriser then
makes scalar loops 4 floats wide whatever the hardware has.  Taichi matrices, when the runtime is
started with ``real_matrix_scalarize=False`` (as :mod:`corr_taichi._runtime` does on the CPU), reach
LLVM as vector types and become full-width SIMD.  For each setting, in fresh processes alternating
three times, this prints the float vector types in the optimised LLVM IR of the forward kernel and
the median of 5 timings (after 2 warm-ups) of the three correlation kernels on FlowNetC.
"""

import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time


def cpu_model() -> str:
    """Model name, family and the widest SIMD flag from /proc/cpuinfo (Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read().split("\n\n")[0]
    except OSError:
        return "unknown"
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)}
    flags = fields.get("flags", "").split()
    widest = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "sse2")
    return f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')}), widest SIMD flag: {widest}"


def child(scalarize: bool) -> None:
    """Measure one setting in this process; print a JSON line."""
    import torch

    from corr_taichi._runtime import ti

    workdir = tempfile.mkdtemp()
    cwd = os.getcwd()
    os.chdir(workdir)  # Taichi writes its IR files into the working directory
    ti.init(arch=ti.cpu, real_matrix_scalarize=scalarize, print_kernel_llvm_ir_optimized=True,
            offline_cache=False, log_level=ti.ERROR, cpu_max_num_threads=torch.get_num_threads())

    from corr_taichi import _kernel_helpers, _op
    from corr_taichi._geometry import sampler_geometry
    from corr_taichi.bench import CONFIGS

    shape, params = CONFIGS["flownetc"]
    batch, channels, height, width = shape
    g = sampler_geometry(height, width, **params)
    x1, x2 = (_op._cpu_layout(torch.randn(shape)) for _ in range(2))
    out = torch.empty(g.output_shape(batch))
    # pixel-major with rows of whole vectors, as the op passes it
    grad_out = torch.randn(batch * g.out_h * g.out_w * _kernel_helpers.pixel_major_row(g.patch_h * g.patch_w))
    grad = torch.empty_like(x1)
    launch = _op._launch_struct(g)
    (forward, _), (grad1_kernel, chunks), (grad2_kernel, _) = _op._cpu_kernels(g, shape)
    forward(x1, x2, out.view(-1), launch, 1.0, ti.f32)
    widths = collections.Counter()
    for name in os.listdir(workdir):
        with open(os.path.join(workdir, name)) as f:
            widths.update(int(n) for n in re.findall(r"<(\d+) x float>", f.read()))

    steps = {
        "forward": lambda: forward(x1, x2, out.view(-1), launch, 1.0, ti.f32),
        "grad_input1": lambda: grad1_kernel(grad_out, chunks(x2), chunks(grad), launch, 1.0, ti.f32),
        "grad_input2": lambda: grad2_kernel(grad_out, chunks(x1), chunks(grad), launch, 1.0, ti.f32),
    }
    times = {name: [] for name in steps}
    for k in range(7):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            if k >= 2:
                times[name].append((time.perf_counter() - start) * 1e3)
    os.chdir(cwd)  # only now: the gradient kernels compile (and write their IR) at their first call
    print(json.dumps({"widths": dict(widths), "ms": {n: statistics.median(t) for n, t in times.items()}}))


def main() -> None:
    from corr_taichi._runtime import ti

    results = {True: [], False: []}
    for _ in range(3):
        for scalarize in (True, False):
            line = subprocess.run([sys.executable, __file__, "--child", str(int(scalarize))], check=True,
                                  capture_output=True, text=True).stdout.strip().splitlines()[-1]
            results[scalarize].append(json.loads(line))
    print(f"CPU: {cpu_model()}; taichi {'.'.join(map(str, ti.__version__))}")
    print("FlowNetC (4x256x48x64, patch 21, dil. 2), float32, CPU kernels alone; "
          "medians over 3 alternating processes of medians of 5")
    for scalarize in (True, False):
        runs = results[scalarize]
        widths = ", ".join(f"<{n} x float>" for n in sorted(int(k) for k in runs[0]["widths"]) if n > 1)
        ms = {n: statistics.median(r["ms"][n] for r in runs) for n in runs[0]["ms"]}
        print(f"  real_matrix_scalarize={scalarize}: forward IR vector types {widths or 'none'}")
        print("      " + "   ".join(f"{n} {t:.1f} ms" for n, t in ms.items()))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(bool(int(sys.argv[2])))
    else:
        main()
