"""Where the CPU time of one call goes: input re-layout, Taichi kernels, the rest of the op.

Run: ``python benchmarks/where_time_goes.py`` (output in benchmarks/where-time-goes.txt).  For the
FlowNetC and PWC level-2 configurations of the benchmark tool, every step is timed in one process,
all steps alternating within each repeat (this machine is shared and noisy); medians of 7 after 2
warm-ups, in ms, with the forward's floor (useful FLOPs / sgemm rate) for scale.

* ``relayout``: one NCHW -> channels-last copy of one input (the op's own ``_cpu_layout``, a Taichi
  kernel for these shapes); the forward makes two of them, the backward two more, unless the inputs
  are channels_last with a multiple of 16 channels.
* ``pixel-major grad``: the backward's one transposed copy of the output gradient, which the gradient
  kernels read pixel by pixel (a Taichi kernel too).

Each step runs right after the one above it, as in the op; a Taichi kernel timed right after a torch
operation shares the cores with torch's still-spinning OpenMP threads (``openmp_spin.py``).
* ``forward kernel`` / ``grad1 kernel`` / ``grad2 kernel``: the channel-vector Taichi kernels alone,
  on inputs already laid out (the op's kernels unless it takes the row path, below).
* ``op NCHW`` / ``op channels_last``: the public forward on contiguous and on channels_last inputs.
* ``backward NCHW`` / ``backward channels_last``: both input gradients through autograd.

The op takes the row path (``_row_path``) for few channels, PWC level 2 among them; for those
configurations its steps are timed too:

* ``rows: forward kernel`` / ``rows: grad1 kernel`` / ``rows: grad2 kernel``: the row path's Taichi
  kernels alone.  Around them the op copies nothing where the inputs' rows fill whole vectors (PWC
  level 2's do): the kernels read the inputs in place and write the gradients themselves.
"""

import statistics
import time

import torch

import corr_taichi
from corr_taichi import _dispatch, _op, _row_path
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
    pixel_major = _op._pixel_major(grad_out.view(B, -1, g.out_h * g.out_w))
    grad = torch.empty_like(a)
    launch = _op._launch_struct(g)
    (forward, _), (grad1_kernel, chunks), (grad2_kernel, _) = _op._cpu_kernels(g, shape)
    n1, n2 = (x.detach().requires_grad_() for x in (x1, x2))
    l1, l2 = (x.detach().requires_grad_() for x in (c1, c2))
    out_n, out_l = corr_taichi.correlation(n1, n2, **params), corr_taichi.correlation(l1, l2, **params)
    return {
        "relayout": lambda: _op._cpu_layout(x1),
        "pixel-major grad": lambda: _op._pixel_major(grad_out.view(B, -1, g.out_h * g.out_w)),
        "forward kernel": lambda: forward(a, b, out.view(-1), launch, 1.0, ti.f32),
        "op NCHW": lambda: corr_taichi.correlation(x1, x2, **params),
        "op channels_last": lambda: corr_taichi.correlation(c1, c2, **params),
        "grad1 kernel": lambda: grad1_kernel(pixel_major, chunks(b), chunks(grad), launch, 1.0, ti.f32),
        "grad2 kernel": lambda: grad2_kernel(pixel_major, chunks(a), chunks(grad), launch, 1.0, ti.f32),
        "backward NCHW": lambda: torch.autograd.grad(out_n, (n1, n2), grad_out, retain_graph=True),
        "backward channels_last": lambda: torch.autograd.grad(out_l, (l1, l2), grad_out, retain_graph=True),
    } | row_steps(g, x1, x2, grad_out), 2.0 * B * g.out_h * g.out_w * g.patch_h * g.patch_w * C


def row_steps(g, x1, x2, grad_out) -> dict:
    """The row path's steps, where the op takes it."""
    if _dispatch.plan(g, x1.shape, "x64").path != "row":
        return {}
    B, C, H, W = x1.shape
    layout = _row_path.RowLayout.of(g)
    channels = _row_path._padded_channels(C, g)
    a, b = layout.padded_input1(x1, g, torch.float32), layout.whole_vector_input2(x2, torch.float32)
    b2 = layout.whole_vector_input2(x2, torch.float32, channels)
    weights = layout.padded_output_grad(grad_out, g)
    out = torch.empty(g.output_shape(B)[:-1] + (layout.out_vectors * 16,))
    grad1 = torch.empty(B, channels, H, layout.out_vectors * 16)
    grad2 = torch.empty(B, C, H, -(-W // 16) * 16)
    kernels = _row_path._kernels_for(torch.float32)
    rows, slots, phase = _row_path._rows, _row_path._window_slots(g), layout.phase
    struct = _row_path._struct(g, layout.lead, layout.step)
    return {
        "rows: forward kernel": lambda: kernels.forward(rows(a), rows(b), rows(out), struct, 1.0, slots,
                                                        phase),
        "rows: grad1 kernel": lambda: kernels.grad_input1(rows(weights), rows(b2), rows(grad1), struct, 1.0,
                                                          slots, phase, _row_path._row_kernels.channel_block(slots)),
        "rows: grad2 kernel": lambda: kernels.grad_input2(rows(weights), rows(a), rows(grad2), struct, 1.0,
                                                          slots, phase),
    }


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
            copy = step in ("relayout", "pixel-major grad")
            rate_txt = "" if copy else f"  {work / med / 1e6:6.1f} GFLOP/s"
            print(f"  {step:<26}{med:8.1f}{rate_txt}")


if __name__ == "__main__":
    main()
