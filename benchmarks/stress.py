"""Stress checks too slow for the test suite; output recorded in benchmarks/stress-output.txt.

Run: ``python benchmarks/stress.py``

1. Peak memory of one FlowNetC-configuration call (forward, then backward) over what the inputs
   occupy, against the budget output + one channels-last copy of each input (the backward: output,
   its gradient, its pixel-major copy, one input-sized copy at a time and the two input gradients).
2. Resident memory over 3 x 450 calls with varying shapes, dtypes and parameters: no growth by the third
   450 (the bounded caches of launch structs, 21 KB per entry, may still settle in the second).
3. An output beyond 32-bit indexing (B=1, C=1, 1024 x 1024, patch 47: 2.3e9 elements, 9.3 GB), computed
   in pieces, checked element by element at the far end against a float64 product.
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
        "a, b = torch.randn(1, 256, 2, 16, requires_grad=True), torch.randn(1, 256, 2, 16, requires_grad=True)\n"
        "# runtime started and the FlowNetC call's kernels loaded (the channel-vector ones: dilated patch,\n"
        "# 256 channels; rows of whole vectors, so the layout copies are Taichi kernels too)\n"
        "corr_taichi.correlation(a, b, patch_size=3, dilation_patch=2).sum().backward()\n"
    )
    base = peak_mib_of(setup)
    fwd = peak_mib_of(setup + "out = corr_taichi.correlation(x1, x2, patch_size=21, dilation_patch=2)\n")
    bwd = peak_mib_of(setup + "out = corr_taichi.correlation(x1, x2, patch_size=21, dilation_patch=2)\n"
                              "out.backward(torch.ones_like(out))\n")
    mib = lambda n: n * 4 / 2**20  # noqa: E731
    inp, outp = mib(4 * 256 * 48 * 64), mib(4 * 21 * 21 * 48 * 64)
    pixel_major = mib(4 * 48 * 64 * 448)  # the output gradient's rows of 441 padded to 448 (whole vectors)
    print("1. peak memory, FlowNetC configuration (float32)")
    print(f"   each input {inp:.1f} MiB, output {outp:.1f} MiB")
    print(f"   forward: peak +{fwd - base:.1f} MiB over the set-up "
          f"(budget: output + 2 copies = {outp + 2 * inp:.1f} MiB)")
    # the backward's two input copies are made one after the other in one buffer
    print(f"   forward+backward: peak +{bwd - base:.1f} MiB (budget: output + its gradient + its pixel-major copy + "
          f"1 copy + 2 input gradients = {2 * outp + pixel_major + 3 * inp:.1f} MiB)")
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

    rss = []
    for offset in (0, 1000, 2000):
        round_of_calls(offset)
        rss.append(rss_mib())
    print("2. resident memory over 3 x 450 calls with varying shapes, dtypes and parameters")
    print(f"   after the first 450: {rss[0]:.1f} MiB, after 450 more: {rss[1]:.1f} MiB "
          f"(growth {rss[1] - rss[0]:+.1f} MiB), "
          f"after 450 more: {rss[2]:.1f} MiB (growth {rss[2] - rss[1]:+.1f} MiB)")


def too_large() -> None:
    import time

    import torch

    import corr_taichi

    # A first call imports parts of torch lazily, leaving a reference cycle that keeps that call's
    # frames (and, for a moment, its output) alive until Python's next garbage collection.
    corr_taichi.correlation(torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4))
    gen = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(2, 1, 1, 1024, 1024, generator=gen)
    start = time.perf_counter()
    out = corr_taichi.correlation(x1, x2, patch_size=47)  # (1, 47, 47, 1024, 1024)
    seconds = time.perf_counter() - start
    flat = out.view(-1)
    # the last 100k elements, and 100k random ones beyond 2**31 (where a 32-bit index would wrap)
    index = torch.cat([torch.arange(flat.numel() - 100_000, flat.numel()),
                       torch.randint(2**31, flat.numel(), (100_000,), generator=gen)])
    ph, pw, h, w = (index // (47 * 1024 * 1024)), (index // (1024 * 1024)) % 47, (index // 1024) % 1024, index % 1024
    y2, x2_ = h + ph - 23, w + pw - 23
    inside = (y2 >= 0) & (y2 < 1024) & (x2_ >= 0) & (x2_ < 1024)
    partner = x2[0, 0, y2.clamp(0, 1023), x2_.clamp(0, 1023)].double() * inside
    expected = x1[0, 0, h, w].double() * partner
    error = (flat[index].double() - expected).abs().max().item()
    nonzero = int((flat[index] != 0).sum())
    print(f"3. 1x1x1024x1024 with patch 47: {flat.numel()} output elements ({flat.numel() * 4 / 1e9:.1f} GB) "
          f"in {seconds:.1f} s; 200000 elements beyond index 2**31 (the last 100000 and 100000 random), "
          f"{nonzero} non-zero: max error vs float64 {error:.1e}")
    assert error < 1e-5, "wrong values beyond 2**31"
    # This call compiled the channel-vector kernels (the warm-up above runs the row path), and Taichi's
    # compiler keeps the arguments of a compiling launch in reference cycles until Python's next full
    # garbage collection: here the 9.3 GB output, which the backward below has no room for.
    del out, flat
    gc.collect()

    # Backward through the same 2.3e9-element output with an all-ones output gradient: each input
    # gradient is then a 47 x 47 box sum of the other input, checked everywhere against float64.
    from corr_taichi._geometry import sampler_geometry

    grad_out = torch.ones(1, 47, 47, 1024, 1024)
    start = time.perf_counter()
    grad1, grad2 = torch.ops.corr_taichi.correlation_backward(
        grad_out, x1, x2, sampler_geometry(1024, 1024, patch_size=47).as_list(), 1.0, True, True)
    seconds = time.perf_counter() - start
    def box_sum(x):  # 47 x 47 window sums, zero outside, from a float64 integral image
        padded = torch.nn.functional.pad(x[0, 0].double(), (24, 23, 24, 23))
        s = padded.cumsum(0).cumsum(1)
        return s[47:, 47:] - s[:-47, 47:] - s[47:, :-47] + s[:-47, :-47]

    error1 = (grad1[0, 0].double() - box_sum(x2)).abs().max().item()
    error2 = (grad2[0, 0].double() - box_sum(x1)).abs().max().item()
    print(f"   backward with an all-ones output gradient in {seconds:.1f} s: both input gradients (47 x 47 box "
          f"sums, every element) match float64 to {max(error1, error2):.1e}")
    assert max(error1, error2) < 1e-3, "wrong input gradients beyond 2**31"


if __name__ == "__main__":
    peak_memory()
    growth()
    too_large()
