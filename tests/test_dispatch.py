"""Every path decision of the correlation op, from :func:`corr_taichi._dispatch.plan`, in one table.

Each row is a call (parameters, input shape, backend, phase, override) and the plan it must get: the
path, whether a kernel window is summed over per-pixel products, the CPU gradient kernels' chunk and
tile, how many pieces below the index limit, and the gradients' memory format.  Other files run these
paths against the float64 oracle; this one pins which call takes which.
"""

import pytest
import torch

from corr_taichi import _dispatch
from corr_taichi._geometry import sampler_geometry

NCHW, NHWC = torch.contiguous_format, torch.channels_last
FLOWNETC = dict(patch_size=21, dilation_patch=2)
PWC = dict(patch_size=9)
WINDOW = dict(kernel_size=3, patch_size=9, padding=1)

# (id, cfg, shape, arch, backward, forced, expected (path, window_sums, vectors, pixels, pieces, format))
TABLE = [
    # CPU, forward
    ("flownetc-fwd", FLOWNETC, (4, 256, 48, 64), "x64", False, {}, ("pixel_tiles", False, 0, 0, 1, NHWC)),
    ("pwc-fwd", PWC, (4, 32, 96, 128), "x64", False, {}, ("row", False, 0, 0, 1, NCHW)),
    ("row-up-to-256-channels", PWC, (1, 256, 9, 40), "x64", False, {}, ("row", False, 0, 0, 1, NHWC)),
    ("257-channels-fwd", PWC, (1, 257, 9, 40), "x64", False, {}, ("pixel_tiles", False, 0, 0, 1, NHWC)),
    ("right-to-left-fwd", dict(patch_size=5), (1, 300, 9, 40), "x64", False, {},
     ("pixel_tiles", False, 0, 0, 1, NHWC)),
    ("column-stride-fwd", dict(patch_size=5, stride=2), (1, 8, 9, 40), "x64", False, {},
     ("channel_vectors", False, 0, 0, 1, NHWC)),
    ("window-sums-on-rows", WINDOW, (4, 64, 48, 64), "x64", False, {}, ("row", True, 0, 0, 1, NCHW)),
    ("window-sums-on-tiles", WINDOW, (1, 300, 9, 40), "x64", False, {}, ("pixel_tiles", True, 0, 0, 1, NHWC)),
    ("window-at-stride-3-direct", dict(kernel_size=3, patch_size=5, stride=3), (1, 300, 9, 40), "x64", False, {},
     ("channel_vectors", False, 0, 0, 1, NHWC)),
    # CPU, backward: chunks and tiles follow the channel vectors (C / 16 rounded up)
    ("flownetc-bwd", FLOWNETC, (4, 256, 48, 64), "x64", True, {}, ("pixel_tiles", False, 4, 4, 1, NHWC)),
    ("129-channels-bwd", PWC, (1, 129, 9, 40), "x64", True, {}, ("pixel_tiles", False, 1, 8, 1, NHWC)),
    ("160-channels-bwd", PWC, (1, 160, 9, 40), "x64", True, {}, ("pixel_tiles", False, 2, 8, 1, NHWC)),
    ("128-channels-bwd", PWC, (1, 128, 9, 40), "x64", True, {}, ("row", False, 0, 0, 1, NCHW)),
    ("one-column-patch-bwd", dict(patch_size=(41, 1)), (4, 128, 48, 64), "x64", True, {},
     ("pixel_tiles", False, 4, 4, 1, NHWC)),
    ("one-column-patch-fwd", dict(patch_size=(41, 1)), (4, 128, 48, 64), "x64", False, {},
     ("row", False, 0, 0, 1, NHWC)),
    ("one-row-patch-bwd", dict(patch_size=(1, 41)), (4, 32, 48, 64), "x64", True, {}, ("row", False, 0, 0, 1, NCHW)),
    ("column-stride-bwd-48", dict(patch_size=5, stride=2), (1, 48, 9, 40), "x64", True, {},
     ("channel_vectors", False, 1, 0, 1, NHWC)),
    ("column-stride-bwd-512", dict(patch_size=5, stride=2), (1, 512, 9, 40), "x64", True, {},
     ("channel_vectors", False, 16, 0, 1, NHWC)),
    ("arm64-is-a-cpu", PWC, (4, 32, 96, 128), "arm64", True, {}, ("row", False, 0, 0, 1, NCHW)),
    # the override
    ("forced-channel-vectors", PWC, (4, 32, 96, 128), "x64", False, dict(row_path=False),
     ("pixel_tiles", False, 0, 0, 1, NHWC)),
    ("forced-rows", FLOWNETC, (1, 512, 9, 40), "x64", True, dict(row_path=False),
     ("pixel_tiles", False, 4, 4, 1, NHWC)),
    ("forced-rows-beyond-thresholds", dict(patch_size=(41, 1)), (1, 512, 9, 40), "x64", True,
     dict(row_path=True), ("row", False, 0, 0, 1, NCHW)),
    ("forced-rows-cannot-stride", dict(patch_size=5, stride=2), (1, 8, 9, 40), "x64", False,
     dict(row_path=True), ("channel_vectors", False, 0, 0, 1, NHWC)),
    ("gpu-forced-simple", PWC, (1, 16, 8, 40), "cuda", False, dict(gpu_simple=True),
     ("gpu_simple", False, 0, 0, 1, NCHW)),
    # GPU backends (the gradient format is the CPU's, so that fake tensors agree everywhere)
    ("gpu-pwc", PWC, (1, 16, 8, 40), "cuda", True, {}, ("gpu_tiled", False, 0, 0, 1, NCHW)),
    ("vulkan-flownetc", FLOWNETC, (4, 256, 48, 64), "vulkan", False, {}, ("gpu_tiled", False, 0, 0, 1, NHWC)),
    ("gpu-window-sums", WINDOW, (1, 300, 9, 40), "metal", False, {}, ("gpu_tiled", True, 0, 0, 1, NHWC)),
    ("gpu-too-few-channels", PWC, (1, 7, 8, 40), "vulkan", False, {}, ("gpu_simple", False, 0, 0, 1, NCHW)),
    ("gpu-too-few-columns", PWC, (1, 8, 8, 15), "vulkan", False, {}, ("gpu_simple", False, 0, 0, 1, NCHW)),
    ("gpu-band-too-narrow", dict(patch_size=3, dilation_patch=7), (1, 64, 8, 40), "vulkan", False, {},
     ("gpu_simple", False, 0, 0, 1, NHWC)),
    ("gpu-window-at-stride", dict(kernel_size=3, patch_size=5, stride=3), (1, 64, 9, 40), "vulkan", True, {},
     ("gpu_simple", False, 0, 0, 1, NHWC)),
    # nothing to compute, or Taichi cannot run in this process
    ("empty-batch", PWC, (0, 32, 8, 40), "x64", False, {}, ("empty", False, 0, 0, 1, NCHW)),
    ("no-channels", PWC, (2, 0, 8, 40), "vulkan", True, {}, ("empty", False, 0, 0, 1, NCHW)),
    ("forked-after-start", PWC, (1, 32, 8, 40), None, False, {}, ("reference", False, 0, 0, 1, NCHW)),
    # beyond 32-bit indexing: pieces of images, then of patch rows
    ("split-by-images", dict(patch_size=21), (128, 256, 256, 256), "x64", False, {},
     ("pixel_tiles", False, 0, 0, 2, NHWC)),
    ("split-by-patch-rows", dict(patch_size=81), (1, 8, 512, 1024), "vulkan", False, {},
     ("gpu_tiled", False, 0, 0, 2, NHWC)),
]


@pytest.mark.parametrize("cfg,shape,arch,backward,forced,expected", [row[1:] for row in TABLE],
                         ids=[row[0] for row in TABLE])
def test_plan(cfg, shape, arch, backward, forced, expected):
    g = sampler_geometry(shape[2], shape[3], **cfg)
    with _dispatch.force_paths(**forced):
        p = _dispatch.plan(g, shape, arch, backward)
    got = (p.path, p.window_sums, p.vectors, p.pixels, len(p.pieces), p.gradient_format)
    assert got == expected
    assert p.backward is backward and p.forced == _dispatch.Forced(**forced)


def test_every_path_is_in_the_table():
    assert {row[-1][0] for row in TABLE} == set(_dispatch.PATHS)


@pytest.mark.parametrize("cfg,shape,limit", [(dict(patch_size=21), (128, 256, 256, 256), 2**31 - 1),
                                             (dict(patch_size=81), (1, 8, 512, 1024), 2**31 - 1),
                                             (dict(kernel_size=3, patch_size=(9, 5), padding=1), (5, 64, 300, 400),
                                              10**7)])
def test_pieces_tile_the_call_below_the_limit(cfg, shape, limit, force_paths):
    """The pieces cover every image x patch row once, each below the limit, their geometry that of
    their patch rows; a window's products are counted where they are taken.  The plan's pieces are these,
    under the override's limit."""
    batch, channels, height, width = shape
    g = sampler_geometry(height, width, **cfg)
    pieces = _dispatch.pieces_of(g, *shape, limit=limit)
    force_paths(max_elements=limit)
    assert _dispatch.plan(g, shape, "vulkan").pieces == tuple(pieces)
    assert len(pieces) > 1
    covered = torch.zeros(batch, g.patch_h, dtype=torch.int64)
    for piece in pieces:
        covered[piece.images, piece.rows] += 1
        images = piece.images.stop - piece.images.start
        sizes = [images * channels * height * width, images * piece.geometry.patch_h * piece.geometry.patch_w
                 * max(g.out_h * g.out_w, height * width if piece.window_sums else 0)]
        assert max(sizes) <= limit
        assert piece.geometry.patch_h == piece.rows.stop - piece.rows.start
        assert piece.geometry.first_h == g.first_h + piece.rows.start * g.patch_dilation_h
    assert covered.eq(1).all()


def test_what_cannot_be_split_is_refused(force_paths):
    force_paths(max_elements=100)
    g = sampler_geometry(8, 8, patch_size=3)
    with pytest.raises(NotImplementedError, match="2\\*\\*31"):
        _dispatch.plan(g, (1, 2, 8, 8), "vulkan")


@pytest.mark.parametrize("bad", [0, -1, 2**31, 1.5, "100"])
def test_the_override_refuses_a_bad_limit(bad):
    with pytest.raises(TypeError, match="max_elements"):
        with _dispatch.force_paths(max_elements=bad):
            pass


def test_the_backend_is_asked_only_for_calls_with_work():
    asked = []

    def arch():
        asked.append(True)
        return "x64"

    g = sampler_geometry(8, 40, patch_size=9)
    assert _dispatch.plan(g, (0, 32, 8, 40), arch).path == "empty" and not asked
    assert _dispatch.plan(g, (1, 32, 8, 40), arch).path == "row" and asked == [True]


def test_plans_are_recorded_only_inside_the_block():
    g = sampler_geometry(8, 40, patch_size=9)
    p = _dispatch.plan(g, (1, 32, 8, 40), "x64")
    with _dispatch.recorded_plans() as plans:
        assert _dispatch.record(p) is p
    _dispatch.record(p)
    assert plans == [p]
