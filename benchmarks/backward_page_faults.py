"""Page faults in the backward: how many backward calls touch freshly mapped memory, and what it costs.

A CPU tensor freed by torch goes back to glibc, which now and then returns it to the system; the next
buffer of that size is then page-faulted in as it is first written.  The backward's temporaries (the
inputs laid out for the kernels, input2's padded copy and its gradient's padded rows on the row path)
are such buffers, so fewer of them means fewer faulting calls.

Run: ``python benchmarks/backward_page_faults.py`` (output in benchmarks/backward-page-faults.txt).
For PWC level 2 and FlowNetC (the bench's configurations), in a fresh process each: 30 and 15
backward calls (``torch.autograd.grad`` of both inputs, the gradients dropped after each call as in
the bench), after 3 warm-up calls; the median time, its quartiles, and how many calls had minor page
faults (from ``getrusage``), with the largest count; then each call's time and fault count.  To compare with an
earlier version, run it
with that version's ``src`` first on ``PYTHONPATH``.
"""

import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {"pwc2": 30, "flownetc": 15}


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(name: str) -> str:
    import torch

    from corr_taichi.bench import CONFIGS as SHAPES
    from corr_taichi.functional import correlation

    shape, params = SHAPES[name]
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randn(shape, generator=gen).requires_grad_()
    x2 = torch.randn(shape, generator=gen).requires_grad_()
    out = correlation(x1, x2, **params)
    grad = torch.randn(out.shape, generator=gen)
    for _ in range(3):
        torch.autograd.grad(out, (x1, x2), grad, retain_graph=True)
    times, faults = [], []
    for _ in range(CONFIGS[name]):
        before, start = _faults(), time.perf_counter()
        torch.autograd.grad(out, (x1, x2), grad, retain_graph=True)
        times.append((time.perf_counter() - start) * 1e3)
        faults.append(_faults() - before)
    calls = " ".join(f"{t:.1f}/{f}" for t, f in zip(times, faults))
    times = sorted(times)
    n = len(times)
    return (f"{name:<9} backward median {statistics.median(times):5.1f} ms (quartiles {times[n // 4]:5.1f} - "
            f"{times[3 * n // 4]:5.1f}); calls with page faults {sum(f > 0 for f in faults):2d} of {n}, "
            f"at most {max(faults)}\n          each call, ms/faults: {calls}")


def main() -> None:
    if len(sys.argv) > 1:
        print(measure(sys.argv[1]))
        return
    for name in CONFIGS:  # a fresh process per configuration: the allocator's state is part of the result
        subprocess.run([sys.executable, __file__, name], check=True)


if __name__ == "__main__":
    main()
