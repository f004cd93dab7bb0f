"""Where the CPU time of one call goes: input re-layout, Taichi kernels, the rest of the op.

Run: ``python benchmarks/where_time_goes.py`` (output in benchmarks/where-time-goes.txt).  For the
FlowNetC and PWC level-2 configurations of the benchmark tool, every step is timed in one process,
all steps alternating within each repeat (this machine is shared and noisy); medians of 7 after 2
warm-ups, in ms, with the forward's floor (useful FLOPs / sgemm rate) for scale.

* ``relayout``: one NCHW -> channels-last copy of one input (the op's own ``_cpu_layout``); the
  forward makes two of them, the backward two more, unless the inputs are channels_last with a
  multiple of 16 channels.
* ``pixel-major grad``: the backward's one transposed copy of the output gradient, which the gradient
  kernels read pixel by pixel.
* ``forward kernel`` / ``grad1 kernel`` / ``grad2 kernel``: the Taichi kernels alone, on inputs
  already laid out.
* ``op NCHW`` / ``op channels_last``: the public forward on contiguous and on channels_last inputs.
* ``backward NCHW`` / ``backward channels_last``: both input gradients through autograd.
"""

import statistics
import time

import torch

import corr_taichi
from corr_taichi import _kernels, _op
from corr_taichi._geometry import sampler_geometry
from corr_taichi._runtime import ensure_runtime, ti
from corr_taichi.bench import CONFIGS


def clock(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def steps(name: str) -> dict:
    shape, params = CONFIGS[name]
    B, C, H, W = shape
    g = sampler_geometry(H, W, **params)
    x1, x2 = torch.randn(shape), torch.randn(shape)
    c1, c2 = (x.contiguous(memory_format=torch.channels_last) for x in (x1, x2))
    a, b = _op._cpu_layout(x1), _op._cpu_layout(x2)
    out = torch.empty(g.output_shape(B))
    grad_out = torch.randn(g.output_shape(B))
    pixel_major = grad_out.view(B, -1, g.out_h * g.out_w).transpose(1, 2).reshape(-1)
    grad = torch.empty_like(a)
    launch = _op._launch_struct(g)
    kernels = _kernels.correlation_kernels(ti.f32)
    n1, n2 = (x.detach().requires_grad_() for x in (x1, x2))
    l1, l2 = (x.detach().requires_grad_() for x in (c1, c2))
    out_n, out_l = corr_taichi.correlation(n1, n2, **params), corr_taichi.correlation(l1, l2, **params)
    return {
        "relayout": lambda: _op._cpu_layout(x1),
        "pixel-major grad": lambda: grad_out.view(B, -1, g.out_h * g.out_w).transpose(1, 2).reshape(-1),
        "forward kernel": lambda: kernels.forward(a, b, out.view(-1), launch, 1.0, ti.f32),
        "op NCHW": lambda: corr_taichi.correlation(x1, x2, **params),
        "op channels_last": lambda: corr_taichi.correlation(c1, c2, **params),
        "grad1 kernel": lambda: kernels.grad_input1(pixel_major, b, grad, launch, 1.0, ti.f32),
        "grad2 kernel": lambda: kernels.grad_input2(pixel_major, a, grad, launch, 1.0, ti.f32),
        "backward NCHW": lambda: torch.autograd.grad(out_n, (n1, n2), grad_out, retain_graph=True),
        "backward channels_last": lambda: torch.autograd.grad(out_l, (l1, l2), grad_out, retain_graph=True),
    }, 2.0 * B * g.out_h * g.out_w * g.patch_h * g.patch_w * C


def main() -> None:
    torch.manual_seed(0)
    ensure_runtime(torch.device("cpu"))
    a = torch.randn(2048, 2048)
    gemm_ms = statistics.median(clock(lambda: a @ a) for _ in range(5))
    rate = 2 * 2048**3 / gemm_ms / 1e6
    print(f"{torch.get_num_threads()} threads, sgemm {rate:.0f} GFLOP/s; medians of 7 after 2 warm-ups, ms")
    for name in ("flownetc", "pwc2"):
        fns, flops = steps(name)
        times = {step: [] for step in fns}
        for k in range(9):
            for step, fn in fns.items():
                t = clock(fn)
                if k >= 2:
                    times[step].append(t)
        print(f"\n{name}: forward floor {flops / rate / 1e6:.1f} ms ({flops / 1e9:.2f} GFLOP)")
        for step, ts in times.items():
            med = statistics.median(ts)
            work = flops if "kernel" in step or step.startswith("op") else 2 * flops
            rate_txt = "" if step in ("relayout", "pixel-major grad") else f"  {work / med / 1e6:6.1f} GFLOP/s"
            print(f"  {step:<24}{med:8.1f}{rate_txt}")


if __name__ == "__main__":
    main()
