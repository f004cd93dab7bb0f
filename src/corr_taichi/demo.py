"""The main job: stereo and optical flow on real images by correlation matching, with pictures.

Run ``python -m corr_taichi.demo --out DIR`` (or ``corr-taichi-demo``).  Needs the ``demo`` extra
(scikit-image, opencv-python-headless, matplotlib).

* Stereo: scikit-image's Middlebury *Motorcycle* pair with its ground-truth disparity.  Normalised
  colour features, :func:`corr_taichi.correlation1d` with a 9 x 9 window, winner-take-all, parabolic
  sub-pixel refinement and a left-right consistency check; scored the Middlebury way (bad-pixel rate
  at 2 and 4 px, mean absolute error, on pixels with valid ground truth) next to OpenCV's StereoBM and
  StereoSGBM on the same pair with the same scoring and the same hole filling.
* Optical flow: a bundled photograph warped by a known smooth flow field, recovered coarse to fine:
  a search with :func:`corr_taichi.correlation` (patch dilation 2, then dilation 1 around it, parabolic
  sub-pixel refinement, median filtering), then refined RAFT-style with
  :func:`corr_taichi.correlation_lookup` (patch correlations sampled bilinearly around the current
  match, the best offset with a parabola, a confidence-weighted smoothing); end-point error of each
  stage against the truth and against a zero-flow baseline.

Each of this layer's steps runs twice: the first call of the process (Taichi's start, kernels compiled
or read from Taichi's cache) and a second, warm one are timed and printed apart.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import correlation, correlation1d, correlation_lookup
from ._progress import progress_bar
from ._provenance import provenance

MAX_DISP = 64


# ----------------------------------------------------------------------------------------- features


def normalised_features(image: torch.Tensor, window: int) -> torch.Tensor:
    """Per channel, subtract the local mean and divide by the local standard deviation (window x
    window), so that a correlation over the same window approximates normalised cross-correlation."""
    pad = window // 2
    mean = F.avg_pool2d(F.pad(image, (pad,) * 4, mode="replicate"), window, stride=1)
    sq = F.avg_pool2d(F.pad(image * image, (pad,) * 4, mode="replicate"), window, stride=1)
    std = (sq - mean * mean).clamp_min(1e-4).sqrt()
    return (image - mean) / std / (window * window * image.shape[1])


def subpixel_argmax(cost: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Winner-take-all index along ``dim`` plus a parabola fitted through it and its neighbours."""
    best = cost.argmax(dim, keepdim=True)
    n = cost.shape[dim]
    c0 = cost.gather(dim, best)
    cm = cost.gather(dim, (best - 1).clamp(0, n - 1))
    cp = cost.gather(dim, (best + 1).clamp(0, n - 1))
    denom = cm - 2 * c0 + cp
    offset = torch.where(denom.abs() > 1e-9, 0.5 * (cm - cp) / denom, torch.zeros_like(denom)).clamp(-0.5, 0.5)
    inner = (best > 0) & (best < n - 1)
    return (best.float() + torch.where(inner, offset, torch.zeros_like(offset))).squeeze(dim), c0.squeeze(dim)


def fill_holes(disp: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill invalid pixels along each row with the smaller of the nearest valid values left and right
    (the background), as stereo pipelines usually do before scoring dense maps."""
    out = disp.copy()
    h, w = disp.shape
    for y in range(h):
        row, ok = out[y], valid[y]
        if not ok.any():
            row[:] = 0
            continue
        idx = np.where(ok, np.arange(w), -1)
        left = np.maximum.accumulate(idx)
        idx_r = np.where(ok, np.arange(w), w)
        right = np.minimum.accumulate(idx_r[::-1])[::-1]
        lv = np.where(left >= 0, row[np.clip(left, 0, w - 1)], np.inf)
        rv = np.where(right < w, row[np.clip(right, 0, w - 1)], np.inf)
        row[~ok] = np.minimum(lv, rv)[~ok]
    return out


def score(disp: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Middlebury metrics on pixels with valid ground truth."""
    mask = np.isfinite(truth)
    err = np.abs(disp[mask] - truth[mask])
    return {"bad2": 100.0 * float((err > 2).mean()), "bad4": 100.0 * float((err > 4).mean()), "mae": float(err.mean())}


# ------------------------------------------------------------------------------------------- stereo


def stereo_correlation(left: np.ndarray, right: np.ndarray, window: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """Disparity of the left view and its left-right consistency mask."""
    to_tensor = lambda im: torch.from_numpy(im).float().permute(2, 0, 1)[None] / 255.0  # noqa: E731
    fl, fr = normalised_features(to_tensor(left), window), normalised_features(to_tensor(right), window)
    cost = correlation1d(fl, fr, MAX_DISP, kernel_size=window, padding=window // 2)[0]  # (D, H, W)
    disp_left, _ = subpixel_argmax(cost, 0)
    # The right view's costs are the left's, re-indexed: cost_R[d, y, x] = cost_L[d, y, x + d].
    d_count, _, width = cost.shape
    xs = torch.arange(width)
    cost_right = torch.full_like(cost, -math.inf)
    for d in range(d_count):
        cost_right[d, :, : width - d] = cost[d, :, d:]
    disp_right = cost_right.argmax(0).float()
    x_match = (xs[None, :] - disp_left.round().long()).clamp(0, width - 1)
    consistent = (disp_left - disp_right.gather(1, x_match)).abs() <= 1.0
    return disp_left.numpy(), consistent.numpy()


def stereo_opencv(left: np.ndarray, right: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """OpenCV's block matcher and semi-global matcher: (disparity, valid mask, seconds) each."""
    import cv2

    gl, gr = cv2.cvtColor(left, cv2.COLOR_RGB2GRAY), cv2.cvtColor(right, cv2.COLOR_RGB2GRAY)
    bm = cv2.StereoBM_create(numDisparities=MAX_DISP, blockSize=15)
    sgbm = cv2.StereoSGBM_create(minDisparity=0, numDisparities=MAX_DISP, blockSize=5, P1=8 * 3 * 25,
                                 P2=32 * 3 * 25, uniquenessRatio=10, speckleWindowSize=100, speckleRange=2,
                                 disp12MaxDiff=1, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    results = {}
    for name, matcher, a, b in (("OpenCV StereoBM", bm, gl, gr), ("OpenCV StereoSGBM", sgbm, left, right)):
        start = time.perf_counter()
        disp = matcher.compute(a, b).astype(np.float32) / 16.0
        results[name] = (disp, disp >= 0, time.perf_counter() - start)
    return results


# --------------------------------------------------------------------------------------------- flow


def smooth_flow(height: int, width: int, seed: int = 0, magnitude: float = 7.0) -> np.ndarray:
    """A smooth random flow field (2, H, W): a few low-frequency sinusoids plus a rotation."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    flow = np.zeros((2, height, width))
    for k in range(2):
        for _ in range(3):
            fy, fx = rng.uniform(0.5, 2.0, 2) * 2 * np.pi / np.array([height, width])
            phase = rng.uniform(0, 2 * np.pi)
            flow[k] += rng.uniform(-1, 1) * np.sin(fy * y + fx * x + phase)
    cy, cx = height / 2, width / 2
    flow[0] += 0.01 * (y - cy)
    flow[1] += -0.01 * (x - cx) + 0.01 * (y - cy)
    return (flow / np.abs(flow).max() * magnitude).astype(np.float32)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: ``out(y, x) = image(y + flow_y, x + flow_x)`` (bilinear, zeros outside)."""
    _, _, h, w = image.shape
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    gx = (x + flow[:, 1]) / (w - 1) * 2 - 1
    gy = (y + flow[:, 0]) / (h - 1) * 2 - 1
    return F.grid_sample(image, torch.stack((gx, gy), -1), align_corners=True, padding_mode="zeros")


def flow_search(f1: torch.Tensor, f2: torch.Tensor, patch: int, dilation: int, window: int) -> torch.Tensor:
    """Best displacement (2, H, W) within ``patch`` x ``patch`` displacements of step ``dilation``."""
    cost = correlation(f1, f2, kernel_size=window, padding=window // 2, patch_size=patch, dilation_patch=dilation)[0]
    p, _, h, w = cost.shape[0], cost.shape[1], cost.shape[2], cost.shape[3]
    peaks = parabola_peak(cost.reshape(p * p, h, w), p, flat_below=1e-9)
    return torch.stack([(index.float() + offset - (p - 1) // 2) * dilation for index, offset in peaks])


def parabola_peak(flat: torch.Tensor, side: int, flat_below: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For costs ``(side * side, H, W)`` of a square of displacements (row-major), the best one's row and
    column index, each with the sub-pixel offset of a parabola along that axis through the best cost and
    its two neighbours: in ``[-0.5, 0.5]``, and 0 at the axis's ends or where the parabola's curvature is
    not below ``-flat_below`` (the best cost is a maximum, so the curvature is never positive)."""
    best = flat.argmax(0)
    rows, columns = best // side, best % side
    peaks = []
    for along, other in ((rows, columns), (columns, rows)):
        def at(k, along=along, other=other):
            k = k.clamp(0, side - 1)
            return flat.gather(0, ((k * side + other) if along is rows else (other * side + k))[None])[0]

        c0, cm, cp = at(along), at(along - 1), at(along + 1)
        denom = cm - 2 * c0 + cp
        step = torch.where(denom < -flat_below, 0.5 * (cm - cp) / denom, torch.zeros_like(denom)).clamp(-0.5, 0.5)
        inner = (along > 0) & (along < side - 1)
        peaks.append((along, torch.where(inner, step, torch.zeros_like(step))))
    return peaks


def estimate_flow(img1: torch.Tensor, img2: torch.Tensor, window: int = 13) -> torch.Tensor:
    f1, f2 = normalised_features(img1, window), normalised_features(img2, window)
    coarse = flow_search(f1, f2, patch=9, dilation=2, window=window)  # +-8 px in steps of 2
    coarse = torch.from_numpy(_median3(coarse.numpy()))
    f2_warped = warp(f2, coarse[None])
    fine = flow_search(f1, f2_warped, patch=5, dilation=1, window=window)  # +-2 px around it
    return torch.from_numpy(_median3(_median3((coarse + fine).numpy())))


def patch_features(image: torch.Tensor, patch: int) -> torch.Tensor:
    """Each pixel's ``patch x patch`` neighbourhood as a zero-mean, unit-norm vector of ``patch**2``
    channels, so that a dot product of two pixels' features is the normalised cross-correlation of
    their patches."""
    pad = patch // 2
    batch, _, height, width = image.shape
    columns = F.unfold(F.pad(image, (pad,) * 4, mode="replicate"), patch)  # (B, patch**2, H W)
    columns = columns - columns.mean(1, keepdim=True)
    columns = columns / columns.norm(dim=1, keepdim=True).clamp_min(1e-6)
    return columns.view(batch, patch * patch, height, width).contiguous(memory_format=torch.channels_last)


def _smooth(flow: torch.Tensor, confidence: torch.Tensor, sigma: float) -> torch.Tensor:
    """Confidence-weighted Gaussian smoothing of a (2, H, W) flow: the smooth-flow prior."""
    radius = int(3 * sigma)
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)

    def blur(x):  # separable, replicate-padded, on (N, 1, H, W)
        x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), taps.view(1, 1, 1, -1))
        return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), taps.view(1, 1, -1, 1))

    weight = confidence[None, None]
    return (blur(flow[:, None] * weight) / blur(weight).clamp_min(1e-6))[:, 0]


def refine_flow(img1: torch.Tensor, img2: torch.Tensor, flow: torch.Tensor, iterations: int = 4, radius: int = 1,
                patch: int = 9, sigma: float = 3.0) -> torch.Tensor:
    """RAFT-style refinement of a (2, H, W) flow (y, x) with :func:`corr_taichi.correlation_lookup`: at
    each iteration, the patch correlations in a ``(2 radius + 1)**2`` window around the current match,
    sampled bilinearly at sub-pixel positions; the best offset, refined by a parabola along each axis,
    moves the match; a confidence-weighted smoothing keeps the field smooth."""
    f1, f2 = patch_features(img1, patch), patch_features(img2, patch)
    _, _, height, width = img1.shape
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    side = 2 * radius + 1
    for _ in range(iterations):
        coords = torch.stack([xs + flow[1], ys + flow[0]])[None]
        cost = correlation_lookup(f1, f2, coords, radius, order="yx")[0]  # ((2r + 1)**2, H, W), dy-major
        peaks = parabola_peak(cost, side, flat_below=1e-6)
        offsets = torch.stack([index.float() - radius + step for index, step in peaks])
        confidence = cost.max(0).values.clamp_min(0) ** 2
        flow = _smooth(flow + offsets, confidence, sigma)
    return flow


#: the demo's refinement: iterations and lookup radius (4 and 2 reach about 0.36 px on the demo's pair)
REFINE_ITERATIONS, REFINE_RADIUS = 4, 2


def timed_twice(fn):
    """``fn()``'s result, the seconds its first call took and the seconds of a second, warm call.  The
    first call of a process starts Taichi and compiles the kernels the call needs (or reads them from
    Taichi's offline cache); the second shows the steady speed."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    start = time.perf_counter()
    result = fn()
    return result, first, time.perf_counter() - start


def _median3(flow: np.ndarray) -> np.ndarray:
    """3 x 3 median filter per component (removes isolated mismatches before refinement)."""
    padded = np.pad(flow, ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = flow.shape[1:]
    stack = np.stack([padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])
    return np.median(stack, axis=0).astype(flow.dtype)


def _color_wheel() -> np.ndarray:
    """The 55 colours of the Middlebury flow colour wheel (red, yellow, green, cyan, blue, magenta)."""
    segments = ((15, 0, 1, True), (6, 1, 0, False), (4, 1, 2, True), (11, 2, 1, False), (13, 2, 0, True),
                (6, 0, 2, False))
    rows = []
    for count, full, ramp_channel, rising in segments:
        block = np.zeros((count, 3))
        block[:, full] = 255
        ramp = np.floor(255 * np.arange(count) / count)
        block[:, ramp_channel] = ramp if rising else 255 - ramp
        rows.append(block)
    return np.concatenate(rows)


def flow_to_color(flow: np.ndarray, max_norm: float | None = None) -> np.ndarray:
    """The standard optical-flow colour wheel (Baker et al., Middlebury): hue = direction,
    saturation = magnitude.  ``flow`` is (2, H, W) as (y, x); returns uint8 (H, W, 3)."""
    wheel = _color_wheel()
    u, v = flow[1], flow[0]
    norm = np.sqrt(u * u + v * v)
    norm_max = max_norm if max_norm else max(float(norm.max()), 1e-6)
    u, v = u / norm_max, v / norm_max
    rad = np.sqrt(u * u + v * v)
    angle = np.arctan2(-v, -u) / np.pi
    fk = (angle + 1) / 2 * (len(wheel) - 1)
    k0 = np.floor(fk).astype(int)
    k1 = (k0 + 1) % len(wheel)
    f = fk - k0
    image = np.zeros(flow.shape[1:] + (3,))
    for i in range(3):
        c = (1 - f) * wheel[k0, i] / 255 + f * wheel[k1, i] / 255
        c = np.where(rad <= 1, 1 - rad * (1 - c), c * 0.75)
        image[..., i] = c
    return (image * 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------- output


def _save_figures(out_dir, left, right, truth, stereo, flow_inputs, flow_est, flow_true):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []

    def save(fig, name):
        path = os.path.join(out_dir, name)
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, im, title in zip(axes, (left, right), ("left", "right")):
        ax.imshow(im)
        ax.set_title(f"Motorcycle — {title}")
        ax.axis("off")
    save(fig, "stereo_input.png")

    names = list(stereo)
    fig, axes = plt.subplots(2, len(names) + 1, figsize=(4.2 * (len(names) + 1), 6.4))
    vmax = float(np.nanmax(np.where(np.isfinite(truth), truth, np.nan)))
    axes[0, 0].imshow(np.where(np.isfinite(truth), truth, np.nan), cmap="magma", vmin=0, vmax=vmax)
    axes[0, 0].set_title("ground truth")
    axes[1, 0].axis("off")
    for k, name in enumerate(names, start=1):
        disp = stereo[name]
        axes[0, k].imshow(disp, cmap="magma", vmin=0, vmax=vmax)
        axes[0, k].set_title(name)
        err = np.where(np.isfinite(truth), np.abs(disp - truth), np.nan)
        axes[1, k].imshow(err, cmap="inferno", vmin=0, vmax=8)
        axes[1, k].set_title(f"|error| (0–8 px), {name}")
    for ax in axes.flat:
        ax.axis("off")
    save(fig, "stereo_disparity.png")

    max_norm = float(np.sqrt((flow_true ** 2).sum(0)).max())
    epe = np.sqrt(((flow_est - flow_true) ** 2).sum(0))
    fig, axes = plt.subplots(1, 5, figsize=(22, 4.6))
    axes[0].imshow(flow_inputs[0], cmap="gray")
    axes[0].set_title("frame 1")
    axes[1].imshow(flow_inputs[1], cmap="gray")
    axes[1].set_title("frame 2 (warped)")
    axes[2].imshow(flow_to_color(flow_true, max_norm))
    axes[2].set_title("true flow")
    axes[3].imshow(flow_to_color(flow_est, max_norm))
    axes[3].set_title("estimated flow (corr_taichi)")
    im = axes[4].imshow(epe, cmap="inferno", vmin=0, vmax=3)
    axes[4].set_title("end-point error (0–3 px)")
    fig.colorbar(im, ax=axes[4], fraction=0.046)
    for ax in axes:
        ax.axis("off")
    save(fig, "flow.png")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corr_taichi.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo-output", help="folder for the PNGs (created)")
    parser.add_argument("--json", metavar="FILE", help="also write the scores and times, with the command, commit, "
                                                      "versions and CPU, to FILE")
    args = parser.parse_args(argv)
    try:
        from skimage import color, data
        import cv2  # noqa: F401
        import matplotlib  # noqa: F401
    except ImportError as e:
        print(f"the demo needs the 'demo' extra: pip install 'corr-taichi[demo]' ({e})", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    timings, rows = {}, {}
    steps = ["stereo: correlation", "stereo: OpenCV", "flow: correlation", "pictures"]
    with progress_bar() as progress:
        task = progress.add_task("demo", total=len(steps))

        def step(name):
            progress.update(task, description=name)

        step(steps[0])
        left, right, truth = data.stereo_motorcycle()
        (disp, consistent), first, warm = timed_twice(lambda: stereo_correlation(left, right))
        stereo = {"corr_taichi": fill_holes(disp, consistent)}
        rows["corr_taichi (correlation1d)"] = score(stereo["corr_taichi"], truth) | {
            "time": warm, "first": first, "lr": 100.0 * float(consistent.mean())}
        progress.advance(task)

        step(steps[1])
        for name, (d, valid, seconds) in stereo_opencv(left, right).items():
            stereo[name.replace("OpenCV ", "")] = fill_holes(d, valid)
            rows[name] = score(stereo[name.replace("OpenCV ", "")], truth) | {
                "time": seconds, "first": None, "lr": 100.0 * float(valid.mean())}
        progress.advance(task)

        step(steps[2])
        photo = color.rgb2gray(data.astronaut()).astype(np.float32)[::2, ::2].copy()
        h, w = photo.shape
        flow_true = smooth_flow(h, w)
        img1 = torch.from_numpy(photo)[None, None]
        img2 = warp(img1, -torch.from_numpy(flow_true)[None])  # frame 2 at x + flow shows frame 1 at x
        flow_search_est, *timings["search"] = timed_twice(lambda: estimate_flow(img1, img2))
        flow_est, *timings["refine"] = timed_twice(
            lambda: refine_flow(img1, img2, flow_search_est, iterations=REFINE_ITERATIONS, radius=REFINE_RADIUS))
        flow_est = flow_est.numpy()
        margin = 12  # pixels whose match leaves the frame are not scored
        inner = (slice(None), slice(margin, h - margin), slice(margin, w - margin))

        def epe_of(flow: np.ndarray) -> float:
            return float(np.sqrt(((flow - flow_true)[inner] ** 2).sum(0)).mean())

        epe, epe_search, epe_zero = epe_of(flow_est), epe_of(flow_search_est.numpy()), epe_of(0 * flow_true)
        progress.advance(task)

        step(steps[3])
        paths = _save_figures(args.out, left, right, truth, stereo, (photo, img2[0, 0].numpy()), flow_est, flow_true)
        progress.advance(task)

    print(f"Stereo: Middlebury Motorcycle ({left.shape[1]}x{left.shape[0]}), disparities 0-{MAX_DISP}, "
          f"scored on {int(np.isfinite(truth).sum())} pixels with ground truth")
    print(f"{'method':<28} {'bad 2px %':>9} {'bad 4px %':>9} {'MAE px':>7} {'valid %':>10} {'time s':>7} "
          f"{'first call s':>12}")
    for name, r in rows.items():
        first = "-" if r["first"] is None else f"{r['first']:.2f}"
        print(f"{name:<28} {r['bad2']:>9.1f} {r['bad4']:>9.1f} {r['mae']:>7.2f} {r['lr']:>10.1f} {r['time']:>7.2f} "
              f"{first:>12}")
    print(f"\nOptical flow: astronaut ({w}x{h}) warped by a smooth known flow (max {np.abs(flow_true).max():.1f} px)")
    (search_first, search_warm), (refine_first, refine_warm) = timings["search"], timings["refine"]
    flow = {"search": {"epe": epe_search, "time": search_warm, "first": search_first},
            "refinement": {"epe": epe, "time": search_warm + refine_warm, "first": search_first + refine_first},
            "zero flow": {"epe": epe_zero}}
    print(f"{'method':<36} {'EPE px':>7} {'time s':>7} {'first call s':>12}")
    for name, r in zip(("corr_taichi search (correlation)", "+ refinement (correlation_lookup)"),
                       (flow["search"], flow["refinement"])):
        print(f"{name:<36} {r['epe']:>7.2f} {r['time']:>7.2f} {r['first']:>12.2f}")
    print(f"{'zero flow (baseline)':<36} {epe_zero:>7.2f} {'-':>7} {'-':>12}")
    print("\n'time s' is a second, warm call; 'first call s' the process's first, which starts Taichi and "
          "compiles the kernels (or reads them from Taichi's offline cache).")
    print("\nPictures: " + ", ".join(paths))
    ours = rows["corr_taichi (correlation1d)"]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"provenance": provenance("python -m corr_taichi.demo"), "stereo": rows, "flow": flow}, f,
                      indent=2)
    print(f"Summary: stereo bad-2px {ours['bad2']:.1f}% (MAE {ours['mae']:.2f} px), flow EPE {epe:.2f} px "
          f"vs {epe_zero:.2f} px for zero flow")
    return 0


if __name__ == "__main__":
    sys.exit(main())
