"""Benchmark: this layer vs pure PyTorch vs spatial_correlation_sampler, side by side, in one run.

Run ``python -m corr_taichi.bench --help``.  Every figure is a median over repeats after warm-up;
speed is also given as a ratio to the *floor* measured in the same run:

    floor = max(useful FLOPs / sgemm rate, time to copy the output once)

with useful FLOPs = 2 * B * oH * oW * pH * pW * kH * kW * C and the sgemm rate of a 2048 x 2048
matrix product on the same device, timed after every repeat of the configuration's implementations (the
median of those), so that the floor sees the machine's speed of that moment (it drifts on a shared
machine).  The backward computes both input gradients; its floor is twice the forward's.

The stereo configurations (``gwcnet-crop``, ``gwcnet-kitti``, ``igev-kitti``, ``raft-stereo-kitti``) compare
the group-wise volume and RAFT-Stereo's 1-D lookup with the networks' own PyTorch code, in time and in
peak memory (see ``corr_taichi._bench_stereo``); ``--impl`` does not apply to them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import statistics
import sys
import time
from typing import Callable

import torch

from . import _bench_cold, _bench_stereo, reference
from ._geometry import correlation1d_geometry, sampler_geometry
from ._dispatch import force_paths
from ._progress import progress_bar
from ._provenance import provenance
from ._runtime import BACKENDS, init
from .functional import correlation
from .stereo import correlation1d

#: named configurations: input shape (B, C, H, W) and correlation parameters.
CONFIGS: dict[str, tuple[tuple[int, int, int, int], dict]] = {
    "flownetc": ((4, 256, 48, 64), dict(patch_size=21, dilation_patch=2)),
    "pwc2": ((4, 32, 96, 128), dict(patch_size=9)),
    "kernel3": ((4, 64, 48, 64), dict(kernel_size=3, patch_size=9, stride=2, padding=1)),
    "row": ((4, 128, 48, 64), dict(patch_size=(1, 41))),
    "column": ((4, 128, 48, 64), dict(patch_size=(41, 1))),
    # one-sided 1-D correlation (correlation1d), DispNetC-like: 41 disparities
    "stereo1d": ((4, 128, 48, 64), dict(max_disp=40)),
}

#: configurations computed by correlation1d rather than correlation.
ONE_D = {"stereo1d"}


def _sampler() -> Callable | None:
    try:
        from spatial_correlation_sampler import spatial_correlation_sample
    except ImportError:
        return None
    return spatial_correlation_sample


def implementations(one_d: bool = False) -> dict[str, Callable | None]:
    """The implementations of the 2-D op, or of the 1-D op (which spatial_correlation_sampler lacks)."""
    if one_d:
        return {"corr_taichi": correlation1d, "corr_taichi_simple": correlation1d,
                "pytorch": reference.correlation1d, "sampler": None}
    return {"corr_taichi": correlation, "corr_taichi_simple": correlation, "pytorch": reference.correlation,
            "sampler": _sampler()}


def _kernel_family(impl: str):
    """``corr_taichi_simple`` is this layer restricted to its simple GPU kernels (the same as
    ``corr_taichi`` on the CPU backend), to compare them with the tiled ones on a GPU."""
    return force_paths(gpu_simple=True) if impl == "corr_taichi_simple" else contextlib.nullcontext()


@dataclasses.dataclass
class Timing:
    config: str
    impl: str
    pass_: str
    median_ms: float
    min_ms: float
    max_ms: float
    gflops: float
    floor_ms: float
    peak_mib: float | None = None  #: stereo configurations: resident-set growth, fresh process

    @property
    def ratio(self) -> float:
        return self.median_ms / self.floor_ms


def _timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """Milliseconds one call of ``fn`` takes (CUDA events on a GPU)."""
    if device.type == "cuda":
        def run(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end)
    else:
        def run(fn):
            start = time.perf_counter()
            fn()
            return (time.perf_counter() - start) * 1e3
    return run


def _measure(fn, device, warmup: int, repeats: int, between: Callable[[], object] | None = None) -> list[float]:
    """The milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` calls; ``between()`` (untimed) after
    each timed call."""
    timer = _timer(device)
    for _ in range(warmup):
        timer(fn)
    times = []
    for _ in range(repeats):
        times.append(timer(fn))
        if between is not None:
            between()
    return times


#: the sgemm whose rate sets the floor: a 2048 x 2048 product
_SGEMM_SIZE = 2048


def _sgemm(device: torch.device) -> Callable[[], torch.Tensor]:
    """One call of the floor's sgemm, on operands made once."""
    a = torch.randn(_SGEMM_SIZE, _SGEMM_SIZE, device=device)
    b = torch.randn(_SGEMM_SIZE, _SGEMM_SIZE, device=device)
    return lambda: a @ b


def _sgemm_gflops(ms: float) -> float:
    return 2 * _SGEMM_SIZE**3 / ms / 1e6


class SgemmAlongside:
    """Sgemm rates timed between the repeats of a configuration (``measure(..., between=probe.record)``),
    for the floor of that configuration: the rate of the same minutes as its timings."""

    def __init__(self, device: torch.device) -> None:
        self._sgemm, self._timer = _sgemm(device), _timer(device)
        self.rates: list[float] = []

    def record(self) -> None:
        self.rates.append(_sgemm_gflops(self._timer(self._sgemm)))

    def gflops(self, fallback: float) -> float:
        return statistics.median(self.rates) if self.rates else fallback


def machine_rates(device: torch.device, warmup: int, repeats: int) -> tuple[float, float]:
    """(sgemm GFLOP/s on a 2048^2 product, copy GB/s counting bytes read plus written)."""
    gemm_ms = statistics.median(_measure(_sgemm(device), device, warmup, repeats))
    big = torch.randn(32 * 1024 * 1024, device=device)
    dst = torch.empty_like(big)
    copy_ms = statistics.median(_measure(lambda: dst.copy_(big), device, warmup, repeats))
    return _sgemm_gflops(gemm_ms), 2 * big.numel() * 4 / copy_ms / 1e6


def run_config(name, shape, params, impls, device, dtype, warmup, repeats, rates, progress=None,
               channels_last: bool = False):
    B, C, H, W = shape
    g = correlation1d_geometry(H, W, **params) if name in ONE_D else sampler_geometry(H, W, **params)
    flops = 2.0 * B * g.out_h * g.out_w * g.patch_h * g.patch_w * g.kernel_h * g.kernel_w * C
    out_bytes = B * g.out_h * g.out_w * g.patch_h * g.patch_w * torch.finfo(dtype).bits // 8
    sgemm = SgemmAlongside(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x1 = torch.randn(shape, generator=gen, dtype=dtype).to(device, memory_format=layout).requires_grad_()
    x2 = torch.randn(shape, generator=gen, dtype=dtype).to(device, memory_format=layout).requires_grad_()
    timings = []
    for impl_name in impls:
        fn = implementations(name in ONE_D)[impl_name]
        if fn is None:
            continue
        with _kernel_family(impl_name):
            with torch.no_grad():
                fwd = _measure(lambda: fn(x1, x2, **params), device, warmup, repeats, sgemm.record)
            out = fn(x1, x2, **params)
            grad = torch.randn_like(out)
            bwd = _measure(lambda: torch.autograd.grad(out, (x1, x2), grad, retain_graph=True), device, warmup,
                           repeats, sgemm.record)
        timings.append((impl_name, fwd, bwd))
        if progress is not None:
            progress()
    floor_ms = max(flops / sgemm.gflops(rates[0]) / 1e6, 2 * out_bytes / rates[1] / 1e6)
    results = []
    for impl_name, fwd, bwd in timings:
        for pass_, times, floor in (("forward", fwd, floor_ms), ("backward", bwd, 2 * floor_ms)):
            med = statistics.median(times)
            work = flops if pass_ == "forward" else 2 * flops
            results.append(Timing(name, impl_name, pass_, med, min(times), max(times), work / med / 1e6, floor))
    return results


def _print_table(results: list[Timing], title: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print(f"{'config':<10} {'impl':<18} {'pass':<9} {'median ms':>10} {'min-max ms':>17} {'GFLOP/s':>8} "
              f"{'x floor':>8}")
        for r in results:
            print(f"{r.config:<10} {r.impl:<18} {r.pass_:<9} {r.median_ms:>10.1f} "
                  f"{r.min_ms:>8.1f}-{r.max_ms:<8.1f} {r.gflops:>8.1f} {r.ratio:>8.2f}")
        return
    table = Table(title=title)
    for col in ("config", "impl", "pass", "median ms", "min-max ms", "GFLOP/s", "x floor"):
        table.add_column(col, justify="right" if col not in ("config", "impl", "pass") else "left")
    for r in results:
        table.add_row(r.config, r.impl, r.pass_, f"{r.median_ms:.1f}", f"{r.min_ms:.1f}-{r.max_ms:.1f}",
                      f"{r.gflops:.1f}", f"{r.ratio:.2f}")
    Console(width=110).print(table)


def _print_stereo_table(results: list, title: str) -> None:
    print(title)
    print(f"{'config':<20} {'impl':<24} {'pass':<9} {'median ms':>10} {'min-max ms':>19} {'GFLOP/s':>8} "
          f"{'x floor':>8} {'peak MiB':>9}")
    for r in results:
        peak = "" if r.peak_mib is None else f"{r.peak_mib:.0f}"
        print(f"{r.config:<20} {r.impl:<24} {r.pass_:<9} {r.median_ms:>10.1f} {r.min_ms:>9.1f}-{r.max_ms:<9.1f} "
              f"{r.gflops:>8.1f} {r.ratio:>8.2f} {peak:>9}")


def _plot(sweep: list[tuple[int, Timing]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, pass_ in zip(axes, ("forward", "backward")):
        for impl in sorted({t.impl for _, t in sweep}):
            pts = [(px, t.median_ms) for px, t in sweep if t.impl == impl and t.pass_ == pass_]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=impl)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("pixels per image (H x W)")
        ax.set_ylabel("median ms")
        ax.set_title(pass_)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corr_taichi.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="*", default=["flownetc", "pwc2"],
                        help=f"named configurations ({', '.join(CONFIGS)}; stereo volumes: "
                             f"{', '.join(_bench_stereo.CONFIGS)}), 'all' (the correlation ones), or none "
                             "(with --shape)")
    parser.add_argument("--no-peak", action="store_true", help="stereo configurations: skip the peak-memory runs")
    parser.add_argument("--shape", help="custom input shape B,C,H,W (adds a configuration 'custom')")
    parser.add_argument("--params", default="{}", help='custom parameters as JSON, e.g. \'{"patch_size": 9}\'')
    parser.add_argument("--impl", nargs="+", default=["corr_taichi", "pytorch", "sampler"],
                        help="implementations: corr_taichi, pytorch, sampler, and corr_taichi_simple (this layer "
                             "with its simple GPU kernels only, to compare with the tiled ones on a GPU)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--channels-last", action="store_true",
                        help="inputs in channels_last memory format (as channels_last conv features are)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sweep", action="store_true",
                        help="also time the first configuration at 1/4, 1/2, 1 and 2 times its H and W")
    parser.add_argument("--plot", help="PNG of median time vs size per implementation (needs --sweep and matplotlib)")
    parser.add_argument("--json", help="write all timings as JSON to this path ('-' for stdout)")
    parser.add_argument("--cold", action="store_true",
                        help="cold start instead: fresh processes' first calls, with an empty and a warm offline "
                             "cache (see corr_taichi._bench_cold); --json applies")
    parser.add_argument("--cases", nargs="+", default=list(_bench_cold.CASES),
                        help=f"--cold: the cases ({', '.join(_bench_cold.CASES)})")
    parser.add_argument("--backends", nargs="+",
                        help="--cold: the Taichi implementations to run under, side by side (taichi, quadrants; "
                             "default: those installed)")
    parser.add_argument("--runs", type=int, default=3, help="--cold: fresh processes per case and cache state")
    parser.add_argument("--sources", nargs="+", default=[_bench_cold.INSTALLED],
                        help="--cold: the corr_taichi source trees to measure, alternating ('src' folders, e.g. an "
                             f"earlier commit's checkout; '{_bench_cold.INSTALLED}': the installed package)")
    parser.add_argument("--pin-threads", action="store_true",
                        help="start Taichi's CPU runtime with its worker threads pinned one per CPU "
                             "(corr_taichi.init(pin_threads=True); Linux)")
    args = parser.parse_args(argv)
    if args.cold:
        return _cold(parser, args)

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if args.pin_threads:
        if device.type != "cpu":
            parser.error("--pin-threads applies to the CPU backend (--device cpu)")
        init("cpu", pin_threads=True)
    available = implementations()
    impls = {}
    for name in args.impl:
        if name not in available:
            parser.error(f"--impl must be among {', '.join(available)}, got {name!r}")
        if available[name] is None:
            print(f"note: {name} is not importable here and is left out "
                  "(scripts/install_spatial_correlation_sampler_cpu.sh builds it on CPU)", file=sys.stderr)
            continue
        impls[name] = available[name]
    configs = dict(CONFIGS) if args.configs == ["all"] else {n: CONFIGS[n] for n in args.configs if n in CONFIGS}
    stereo = [n for n in args.configs if n in _bench_stereo.CONFIGS]
    unknown = [n for n in args.configs if n not in CONFIGS and n not in stereo and n != "all"]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}; choose from {', '.join([*CONFIGS, *_bench_stereo.CONFIGS])}")
    if not configs and not stereo and not args.shape:
        parser.error("nothing to run: name --configs or give a --shape")
    if args.shape:
        configs["custom"] = (tuple(int(v) for v in args.shape.split(",")), json.loads(args.params))

    jobs = [(name, shape, params) for name, (shape, params) in configs.items()]
    sweep_jobs = []
    if args.sweep:
        name, (shape, params) = next(iter(configs.items()))
        for factor in (0.25, 0.5, 1, 2):
            s = (shape[0], shape[1], max(1, int(shape[2] * factor)), max(1, int(shape[3] * factor)))
            sweep_jobs.append((f"{name}x{factor:g}", s, params))

    rates = machine_rates(device, args.warmup, args.repeats)
    results, sweep, stereo_results = [], [], []
    total = (len(jobs) + len(sweep_jobs)) * len(impls) + sum(
        len(_bench_stereo.implementations(_bench_stereo.CONFIGS[n][0])) for n in stereo)  # an upper bound
    with progress_bar() as progress:
        task = progress.add_task("benchmarking", total=total)
        advance = lambda: progress.advance(task)  # noqa: E731
        for name, shape, params in jobs:
            results += run_config(name, shape, params, impls, device, dtype, args.warmup, args.repeats, rates, advance,
                                  args.channels_last)
        for name, shape, params in sweep_jobs:
            for t in run_config(name, shape, params, impls, device, dtype, args.warmup, args.repeats, rates, advance,
                                args.channels_last):
                sweep.append((shape[2] * shape[3], t))
        for name in stereo:
            sgemm = SgemmAlongside(device)
            for impl, pass_, times, work, floor, peak in _bench_stereo.run_config(
                    name, device, dtype, args.warmup, args.repeats, lambda: sgemm.gflops(rates[0]),
                    lambda *a: _measure(*a, between=sgemm.record), advance, peak=not args.no_peak):
                med = statistics.median(times)
                stereo_results.append(Timing(name, impl, pass_, med, min(times), max(times), work / med / 1e6, floor,
                                             peak))

    layout = "channels_last" if args.channels_last else "contiguous (NCHW)"
    threads = f"{torch.get_num_threads()} threads" + (" (Taichi's pinned)" if args.pin_threads else "")
    title = (f"{device.type}, {args.dtype} {layout} inputs, {threads}, torch {torch.__version__}; "
             f"sgemm {rates[0]:.0f} GFLOP/s at the start (each configuration's floor: the sgemm timed between its "
             f"repeats), copy {rates[1]:.0f} GB/s; "
             f"median of {args.repeats} after {args.warmup} warm-up")
    if results or sweep:
        _print_table(results + [t for _, t in sweep], title)
    if stereo_results:
        _print_stereo_table(stereo_results, title + f"; lookups: {_bench_stereo.LOOKUPS} per block; "
                            "peak: growth of the resident set over one forward + backward, fresh process (the 2-D "
                            "lookups' outputs reduced as they come, not held)")
    if args.json:
        payload = {"title": title, "provenance": provenance(), "gemm_gflops": rates[0], "copy_gbs": rates[1],
                   "channels_last": args.channels_last, "pinned_threads": args.pin_threads,
                   "timings": [dict(dataclasses.asdict(t), ratio=t.ratio)
                               for t in results + [t for _, t in sweep] + stereo_results]}
        _write_json(args.json, payload)
    if args.plot:
        if not sweep:
            parser.error("--plot needs --sweep")
        _plot(sweep, args.plot)
    return 0


def _cold(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``--cold``: the cold-start table (and JSON)."""
    installed = [name for name in BACKENDS if importlib.util.find_spec(name) is not None]
    backends = args.backends or installed
    for name in backends:
        if name not in installed:
            parser.error(f"--backends must be among the installed {', '.join(installed)}, got {name!r}")
    for case in args.cases:
        if case not in _bench_cold.CASES:
            parser.error(f"--cases must be among {', '.join(_bench_cold.CASES)}, got {case!r}")
    with progress_bar() as progress:
        total = len(args.sources) * len(backends) * len(args.cases) * args.runs
        task = progress.add_task("cold starts", total=total)
        rows = _bench_cold.run(backends, args.cases, args.runs, CONFIGS, lambda: progress.advance(task),
                               tuple(args.sources))
    title = (f"cold start, seconds: median of {args.runs} fresh processes per row, alternating (cpu, "
             f"{torch.get_num_threads()} threads, torch {torch.__version__}); 1st - again: what the first call costs "
             "over a later one")
    _bench_cold.print_table(rows, title)
    if args.json:
        _write_json(args.json, {"title": title, "provenance": provenance(), "rows": rows})
    return 0


def _write_json(path: str, payload: dict) -> None:
    """``--json``: ``payload`` to the file ``path``, or to stdout for ``-``."""
    text = json.dumps(payload, indent=2)
    if path == "-":
        print(text)
    else:
        with open(path, "w") as f:
            f.write(text)


if __name__ == "__main__":
    sys.exit(main())
