"""Stress checks too slow for the test suite; output recorded in benchmarks/stress-output.txt.

Run: ``python benchmarks/stress.py``

1. Peak memory of one FlowNetC-configuration call (forward, then backward) over what the inputs
   occupy, against the budget output + one channels-last copy of each input (+ gradients).
2. Resident memory over 300 calls with varying shapes, dtypes and parameters (no growth expected).
3. The refusal of an output beyond 32-bit indexing (B=1, C=1, 1024 x 1024, patch 47: 2.3e9 elements).
"""

import gc
import resource
import subprocess
import sys


def peak_mib_of(code: str) -> float:
    """ru_maxrss (MiB) of a fresh interpreter running ``code``."""
    out = subprocess.run([sys.executable, "-c", code + "\nimport resource\n"
                          "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def peak_memory() -> int:
    setup = (
        "import torch, corr_taichi\n"
        "x1 = torch.randn(4, 256, 48, 64, requires_grad=True); x2 = torch.randn(4, 256, 48, 64, requires_grad=True)\n"
        "corr_taichi.correlation(torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4))  # runtime started\n"
    )
    base = peak_mib_of(setup)
    fwd = peak_mib_of(setup + "out = corr_taichi.correlation(x1, x2, patch_size=21, dilation_patch=2)\n")
    bwd = peak_mib_of(setup + "out = corr_taichi.correlation(x1, x2, patch_size=21, dilation_patch=2)\n"
                              "out.backward(torch.ones_like(out))\n")
    mib = lambda n: n * 4 / 2**20  # noqa: E731
    inp, outp = mib(4 * 256 * 48 * 64), mib(4 * 21 * 21 * 48 * 64)
    print("1. peak memory, FlowNetC configuration (float32)")
    print(f"   each input {inp:.1f} MiB, output {outp:.1f} MiB")
    print(f"   forward: peak +{fwd - base:.1f} MiB over the set-up (budget: output + 2 copies = {outp + 2 * inp:.1f} MiB)")
    print(f"   forward+backward: peak +{bwd - base:.1f} MiB (budget: output + its gradient + 2 copies + "
          f"2 input gradients = {2 * outp + 4 * inp:.1f} MiB)")
    return 0


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def growth() -> None:
    import torch

    import corr_taichi

    def round_of_calls(offset):
        for k in range(offset, offset + 150):
            shape = (1 + k % 3, 1 + k % 17, 3 + k % 23, 4 + k % 19)
            for dtype in (torch.float32, torch.float64, torch.float16):
                a = torch.randn(shape, dtype=dtype, requires_grad=True)
                b = torch.randn(shape, dtype=dtype, requires_grad=True)
                out = corr_taichi.correlation(a, b, patch_size=1 + k % 5, kernel_size=1 + k % 3, stride=1 + k % 2,
                                              padding=k % 2)
                out.float().sum().backward()
        gc.collect()

    round_of_calls(0)
    before = rss_mib()
    round_of_calls(1000)
    after = rss_mib()
    print("2. resident memory over 2 x 450 calls with varying shapes, dtypes and parameters")
    print(f"   after the first 450: {before:.1f} MiB, after 450 more: {after:.1f} MiB (growth {after - before:+.1f} MiB)")


def too_large() -> None:
    import torch

    import corr_taichi

    x = torch.empty(1, 1, 1024, 1024)
    try:
        corr_taichi.correlation(x, x, patch_size=47)
        print("3. UNEXPECTED: a 2.3e9-element output was accepted")
    except NotImplementedError as e:
        print(f"3. 1x1x1024x1024 with patch 47 (2.3e9 output elements) refused: {e}")


if __name__ == "__main__":
    peak_memory()
    growth()
    too_large()
