"""The stereo and flow-lookup configurations of ``python -m corr_taichi.bench``: group-wise correlation
volumes (GwcNet, IGEV-Stereo), RAFT-Stereo's 1-D lookup and RAFT's 2-D lookup, each against the
networks' own pure-PyTorch code.

* Group-wise (``gwcnet-crop``, ``gwcnet-kitti``, ``igev-kitti``): the volume of ``max_disp`` disparities,
  forward, and backward to both feature maps.  Baseline: GwcNet's ``build_gwc_volume``, a Python loop
  over disparities of elementwise products averaged per group.
* 1-D lookup (``raft-stereo-kitti``): RAFT-Stereo's block built from the two feature maps, then looked up
  at ``LOOKUPS`` coordinate maps (its refinement iterations); forward, and backward from all lookups to
  both feature maps.  Baselines: RAFT-Stereo's ``CorrBlock1D`` (all-pairs volume by einsum, pooled,
  ``grid_sample``) and ``PytorchAlternateCorrBlock1D`` (``grid_sample`` of the features per offset),
  the latter forward only (:data:`FORWARD_ONLY`): its autograd graph keeps a sampled feature map and a
  product per offset, level and lookup, about 26 GB for 12 lookups at the KITTI size.
* 2-D lookup (``raft-1024x440``, ``raft-1080p``, ``raft-small-1024x440``): RAFT's ``CorrBlock`` built
  from the two feature maps (1/8 of the frame), then looked up at ``LOOKUPS`` coordinate maps (the
  identity plus a smooth flow); forward, and backward from all lookups to both feature maps.
  Baselines: RAFT's ``CorrBlock`` (all-pairs volume by matmul, ``avg_pool2d``, ``grid_sample``) and
  the pure-PyTorch on-the-fly loop of ptlflow's ``IterativeCorrBlock`` and RAFT-Stereo's
  ``PytorchAlternateCorrBlock1D`` (``grid_sample`` of the pooled features per offset), forward only
  for the same reason as above.

Peak memory is measured in a fresh process per implementation: the growth of the resident set's high
-water mark over one forward and backward (Linux: ``/proc/self/clear_refs`` resets it, after a small
call has compiled the kernels).  The group-wise volumes and the 1-D lookups hold all their outputs and
output gradients while they are measured.  The 2-D lookups measure the layer's own memory instead: each
lookup's output is reduced against one fixed random gradient as it comes (``(out * g).sum()``), so the
bench holds neither the outputs nor their gradients (1 GiB at 1080p, the same for every implementation;
a network whose next layer saves its input holds them, ``docs/flow-lookup.md``).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from typing import Callable

import torch
import torch.nn.functional as F

from .compat import gwcnet
from .raft import CorrBlock
from .raft_stereo import CorrBlock1D

#: refinement iterations timed per 1-D lookup configuration (one lookup each)
LOOKUPS = 12

#: name -> (kind, input shape (B, C, H, W), parameters)
CONFIGS: dict[str, tuple[str, tuple[int, int, int, int], dict]] = {
    # GwcNet: 320-channel features at 1/4 of a 512x256 crop and of a full KITTI frame (1242x375), 40 groups
    "gwcnet-crop": ("groupwise", (1, 320, 64, 128), dict(max_disp=48, groups=40)),
    "gwcnet-kitti": ("groupwise", (1, 320, 94, 311), dict(max_disp=48, groups=40)),
    # IGEV-Stereo: 96 channels, 8 groups
    "igev-kitti": ("groupwise", (1, 96, 94, 311), dict(max_disp=48, groups=8)),
    # RAFT-Stereo: 256-channel features at 1/4 of a KITTI frame, 4 levels, radius 4
    "raft-stereo-kitti": ("lookup", (1, 256, 94, 311), dict(num_levels=4, radius=4)),
    # RAFT: 256-channel features at 1/8 of a 1024x440 frame and of a 1080p one, 4 levels, radius 4;
    # raft-small: 128 channels, radius 3
    "raft-1024x440": ("flow", (1, 256, 55, 128), dict(num_levels=4, radius=4)),
    "raft-1080p": ("flow", (1, 256, 135, 240), dict(num_levels=4, radius=4)),
    "raft-small-1024x440": ("flow", (1, 128, 55, 128), dict(num_levels=4, radius=3)),
}


# --------------------------------------------------------------------------- the networks' own code


def _gwc_groupwise(fea1, fea2, num_groups):
    batch, channels, height, width = fea1.shape
    return (fea1 * fea2).view(batch, num_groups, channels // num_groups, height, width).mean(dim=2)


def gwcnet_volume(ref, target, max_disp, groups):
    """GwcNet's build_gwc_volume: a loop over disparities ``0..max_disp - 1``."""
    batch, _, height, width = ref.shape
    volume = ref.new_zeros(batch, groups, max_disp, height, width)
    for d in range(max_disp):
        if d > 0:
            volume[:, :, d, :, d:] = _gwc_groupwise(ref[:, :, :, d:], target[:, :, :, :-d], groups)
        else:
            volume[:, :, d] = _gwc_groupwise(ref, target, groups)
    return volume


def _grid_sample_x(img, x, y, height, width):
    grid = torch.stack([2 * x / (width - 1) - 1, 2 * y / max(height - 1, 1) - 1], -1)
    return F.grid_sample(img, grid, align_corners=True)


class RaftStereoVolumeBlock:
    """RAFT-Stereo's CorrBlock1D: the all-pairs row volume, pooled, sampled by grid_sample."""

    def __init__(self, fmap1, fmap2, num_levels, radius):
        batch, channels, height, width1 = fmap1.shape
        corr = torch.einsum("aijk,aijh->ajkh", fmap1, fmap2) / math.sqrt(channels)
        corr = corr.reshape(batch * height * width1, 1, 1, fmap2.shape[3])
        self.pyramid = [corr]
        for _ in range(num_levels - 1):
            self.pyramid.append(F.avg_pool2d(self.pyramid[-1], [1, 2], stride=[1, 2]))
        self.radius, self.shape = radius, (batch, height, width1)

    def __call__(self, coords):
        batch, height, width1 = self.shape
        r = self.radius
        dx = torch.linspace(-r, r, 2 * r + 1, dtype=coords.dtype).view(1, 1, -1)
        out = []
        for level, corr in enumerate(self.pyramid):
            x = dx + coords[:, 0].reshape(-1, 1, 1) / 2**level
            sampled = _grid_sample_x(corr, x, torch.zeros_like(x), 1, corr.shape[-1])
            out.append(sampled.view(batch, height, width1, -1))
        return torch.cat(out, -1).permute(0, 3, 1, 2).contiguous().float()


class RaftStereoAlternateBlock:
    """RAFT-Stereo's PytorchAlternateCorrBlock1D: grid_sample of the pooled right features per offset."""

    def __init__(self, fmap1, fmap2, num_levels, radius):
        self.fmap1, self.fmap2, self.num_levels, self.radius = fmap1, fmap2, num_levels, radius

    def __call__(self, coords):
        r = self.radius
        channels, height, width = self.fmap2.shape[1:]
        fmap2 = self.fmap2
        out = []
        for level in range(self.num_levels):
            x0 = coords[:, 0] / 2**level
            for k in range(-r, r + 1):
                sampled = _grid_sample_x(fmap2, x0 + k, coords[:, 1], fmap2.shape[2], fmap2.shape[3])
                out.append((sampled * self.fmap1).sum(1) / math.sqrt(channels))
            fmap2 = F.avg_pool2d(fmap2, [1, 2], stride=[1, 2])
        return torch.stack(out, 1).float()


class RaftVolumeBlock:
    """RAFT's CorrBlock: the all-pairs volume by matmul, pooled with avg_pool2d, sampled by grid_sample."""

    def __init__(self, fmap1, fmap2, num_levels, radius):
        batch, channels, height, width = fmap1.shape
        corr = torch.matmul(fmap1.view(batch, channels, -1).transpose(1, 2), fmap2.view(batch, channels, -1))
        corr = corr.reshape(batch * height * width, 1, *fmap2.shape[2:]) / math.sqrt(channels)
        self.pyramid = [corr]
        for _ in range(num_levels - 1):
            self.pyramid.append(F.avg_pool2d(self.pyramid[-1], 2, stride=2))
        self.radius, self.shape = radius, (batch, height, width)

    def __call__(self, coords):
        batch, height, width = self.shape
        r = self.radius
        d = torch.linspace(-r, r, 2 * r + 1, dtype=coords.dtype)
        dx, dy = d.view(-1, 1).expand(-1, 2 * r + 1), d.view(1, -1).expand(2 * r + 1, -1)  # x-offset-major
        centre = coords.permute(0, 2, 3, 1).reshape(-1, 1, 1, 2)
        out = []
        for level, corr in enumerate(self.pyramid):
            at = centre / 2**level
            sampled = _grid_sample_x(corr, at[..., 0] + dx, at[..., 1] + dy, *corr.shape[-2:])
            out.append(sampled.view(batch, height, width, -1))
        return torch.cat(out, -1).permute(0, 3, 1, 2).contiguous().float()


class RaftAlternateBlock:
    """The pure-PyTorch on-the-fly lookup: grid_sample of the pooled fmap2 at each offset, times fmap1."""

    def __init__(self, fmap1, fmap2, num_levels, radius):
        self.fmap1, self.radius = fmap1, radius
        self.pyramid = [fmap2]
        for _ in range(num_levels - 1):
            self.pyramid.append(F.avg_pool2d(self.pyramid[-1], 2, stride=2))

    def __call__(self, coords):
        r, channels = self.radius, self.fmap1.shape[1]
        out = []
        for level, fmap2 in enumerate(self.pyramid):
            x, y = coords[:, 0] / 2**level, coords[:, 1] / 2**level
            for dx in range(-r, r + 1):
                for dy in range(-r, r + 1):
                    sampled = _grid_sample_x(fmap2, x + dx, y + dy, *fmap2.shape[-2:])
                    out.append((sampled * self.fmap1).sum(1) / math.sqrt(channels))
        return torch.stack(out, 1).float()


# --------------------------------------------------------------------------- implementations

#: implementations timed forward only (the networks' inference paths; see the module's docstring)
FORWARD_ONLY = {"raft_stereo_alternate", "raft_alternate"}
#: the per-offset grid_sample loop of the 2-D lookup is timed up to this many pixels per map (it takes
#: about 30 s per 12 lookups at 55 x 128 on a 2-core CPU, and grows with the pixels)
SLOW_LOOP_MAX_PIXELS = 10_000


def implementations(kind: str) -> dict[str, Callable]:
    """name -> fn(fmap1, fmap2, params, coords_list) returning the outputs to differentiate."""
    if kind == "groupwise":
        return {
            "corr_taichi": lambda a, b, p, _: [gwcnet.build_gwc_volume(a, b, p["max_disp"], p["groups"])],
            "gwcnet_loop": lambda a, b, p, _: [gwcnet_volume(a, b, p["max_disp"], p["groups"])],
        }

    def lookups(block_type, **kw):
        def run(a, b, p, coords_list, reduce=None):
            block = block_type(a, b, p["num_levels"], p["radius"], **kw)
            if reduce is None:
                return [block(coords) for coords in coords_list]
            return [sum(reduce(block(coords)) for coords in coords_list)]  # each output freed once reduced
        return run

    if kind == "flow":
        return {
            "corr_taichi": lookups(CorrBlock),
            "raft_corrblock": lookups(RaftVolumeBlock),
            "raft_alternate": lookups(RaftAlternateBlock),
        }
    return {
        "corr_taichi_volume": lookups(CorrBlock1D, mode="volume"),
        "corr_taichi_on_the_fly": lookups(CorrBlock1D, mode="on_the_fly"),
        "raft_stereo_corrblock1d": lookups(RaftStereoVolumeBlock),
        "raft_stereo_alternate": lookups(RaftStereoAlternateBlock),
    }


def inputs(kind: str, shape, device, dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(shape, generator=gen, dtype=dtype).to(device).requires_grad_()
    b = torch.randn(shape, generator=gen, dtype=dtype).to(device).requires_grad_()
    coords_list = []
    if kind == "lookup":
        batch, _, height, width = shape
        for _ in range(LOOKUPS):  # x = w - disparity (disparities 0..width/4), y the row, as RAFT-Stereo's grid
            disparity = torch.rand(batch, height, width, generator=gen, dtype=dtype) * width / 4
            x = torch.arange(width, dtype=dtype) - disparity
            y = torch.arange(height, dtype=dtype).view(1, height, 1).expand(batch, height, width)
            coords_list.append(torch.stack([x, y], 1).to(device))
    if kind == "flow":
        batch, _, height, width = shape
        ys, xs = torch.meshgrid(torch.arange(height, dtype=dtype), torch.arange(width, dtype=dtype), indexing="ij")
        grid = torch.stack([xs, ys]).expand(batch, 2, height, width)
        for _ in range(LOOKUPS):  # a smooth flow of up to ~6 pixels (1/8 resolution), as refinement sees
            coarse = torch.randn(batch, 2, 4, 4, generator=gen, dtype=dtype) * 3
            flow = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=True)
            coords_list.append((grid + flow).to(device))
    return a, b, coords_list


def useful_flops(kind: str, shape, params) -> float:
    """Multiply-adds (x2) the result needs: every (pixel, disparity, channel) product of the volume; for
    the 1-D lookups, a dot product per pixel, level and offset of each lookup; for the 2-D lookups, one
    per pixel, level and whole pixel of the ``(2R + 2)**2`` window that the bilinear samples blend."""
    batch, channels, height, width = shape
    if kind == "groupwise":
        d = params["max_disp"]
        return 2.0 * batch * channels * height * sum(max(width - k, 0) for k in range(d))
    if kind == "flow":
        window = (2 * params["radius"] + 2) ** 2
        return 2.0 * LOOKUPS * batch * channels * height * width * params["num_levels"] * window
    return 2.0 * LOOKUPS * batch * channels * height * width * params["num_levels"] * (2 * params["radius"] + 1)


def run_config(name: str, device, dtype, warmup: int, repeats: int, sgemm_gflops, measure, progress=None,
               peak: bool = True) -> list[tuple]:
    """``(impl, pass, times in ms, useful FLOPs, floor in ms, peak MiB or None)`` per implementation and
    pass; ``measure(fn, device, warmup, repeats)`` returns one call's times, and ``sgemm_gflops()`` the
    sgemm rate for the floor, asked once all are measured."""
    kind, shape, params = CONFIGS[name]
    flops = useful_flops(kind, shape, params)
    a, b, coords_list = inputs(kind, shape, device, dtype)
    results = []
    for impl, fn in implementations(kind).items():
        if impl == "raft_alternate" and shape[2] * shape[3] > SLOW_LOOP_MAX_PIXELS:
            continue
        with torch.no_grad():
            fwd = measure(lambda: fn(a, b, params, coords_list), device, warmup, repeats)
        passes = [("forward", fwd, 1)]
        if impl not in FORWARD_ONLY:
            outs = fn(a, b, params, coords_list)
            grads = [torch.randn_like(o) for o in outs]
            bwd = measure(lambda: torch.autograd.grad(outs, (a, b), grads, retain_graph=True), device, warmup,
                          repeats)
            del outs, grads
            passes.append(("backward", bwd, 2))
        mib = peak_mib(name, impl, device, dtype) if peak and impl not in FORWARD_ONLY else None
        for pass_, times, floors in passes:
            results.append((impl, pass_, times, floors * flops, floors, mib if pass_ == "backward" else None))
        if progress is not None:
            progress()
    floor_ms = flops / sgemm_gflops() / 1e6  # a forward's floor; a backward has two
    return [(impl, pass_, times, work, floors * floor_ms, mib) for impl, pass_, times, work, floors, mib in results]


# --------------------------------------------------------------------------- peak memory, in a fresh process


def _resident(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peak_in_this_process(name: str, impl: str, device, dtype, hold: bool | None = None) -> float:
    """MiB the resident set's high-water mark grows by over one forward and backward of ``impl``.  ``hold``:
    whether all the outputs and their gradients are held at once (the default except for the 2-D lookups)
    or each output is reduced against one fixed gradient as it comes (the layer's own memory)."""
    import gc

    kind, shape, params = CONFIGS[name]
    hold = kind != "flow" if hold is None else hold
    fn = implementations(kind)[impl]
    small = (shape[0], shape[1], min(shape[2], 16 if kind == "flow" else 4), min(shape[3], 24))
    a, b, coords_list = inputs(kind, small, device, dtype, seed=1)  # compiles the kernels outside the measurement
    outs = fn(a, b, params, coords_list[:1])
    torch.autograd.grad(outs, (a, b), [torch.ones_like(o) for o in outs])
    a, b, coords_list = inputs(kind, shape, device, dtype)
    if not hold:
        gen = torch.Generator().manual_seed(2)
        weight = torch.randn(outs[0].shape[:2] + shape[2:], generator=gen, dtype=dtype)
    del outs
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the high-water mark to the current resident set
    base = _resident("VmRSS")
    if hold:
        outs = fn(a, b, params, coords_list)
        torch.autograd.grad(outs, (a, b), [torch.ones_like(o) for o in outs])
    else:
        outs = fn(a, b, params, coords_list, lambda out: (out * weight).sum())
        torch.autograd.grad(outs, (a, b))
    return _resident("VmHWM") - base


def peak_mib(name: str, impl: str, device, dtype, hold: bool | None = None, env: dict | None = None) -> float | None:
    """:func:`_peak_in_this_process` in a fresh interpreter (CPU, Linux) with ``env`` added to its
    environment; None elsewhere."""
    if device.type != "cpu" or not os.path.exists("/proc/self/clear_refs"):
        return None
    mode = [] if hold is None else ["held" if hold else "reduced"]
    result = subprocess.run([sys.executable, "-m", "corr_taichi._bench_stereo", name, impl, str(dtype).split(".")[-1],
                             *mode], capture_output=True, text=True, timeout=1800, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise RuntimeError(f"peak memory of {name}/{impl} failed:\n{result.stderr[-2000:]}")
    return float(result.stdout.split()[-1])


if __name__ == "__main__":  # python -m corr_taichi._bench_stereo CONFIG IMPL DTYPE [held|reduced]: the peak in MiB
    config, impl_name, dtype_name = sys.argv[1:4]
    held = {"held": True, "reduced": False}[sys.argv[4]] if len(sys.argv) > 4 else None
    print(f"{_peak_in_this_process(config, impl_name, torch.device('cpu'), getattr(torch, dtype_name), held):.1f}")
