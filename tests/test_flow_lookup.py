"""RAFT's flow-guided 2-D lookup against a float64 oracle written from its definition (tests/oracle.py)
and against the networks' own code, reproduced here from RAFT's ``core/corr.py`` (``CorrBlock``,
``bilinear_sampler``), torchvision's ``models/optical_flow/raft.py`` (``CorrBlock``) and ptlflow's
``models/raft/corr.py`` (``AlternateCorrBlock``, which calls ``alt_cuda_corr``)."""

import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import corr_taichi
from corr_taichi import raft
from corr_taichi.compat import alt_cuda_corr

from . import oracle
from .fresh import run
from .cases import seeded


def _coords(batch, height, width, seed, spread, integers=False, far=False):
    """Coordinates around the identity grid of an ``height x width`` map, displaced by up to ``spread``
    pixels; some exactly at integers, some far outside the image where asked."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    xy = torch.stack([xs, ys]).expand(batch, 2, height, width).clone()
    xy += (torch.rand(xy.shape, dtype=torch.float64, generator=g) * 2 - 1) * spread
    flat = xy.view(-1)
    if integers:
        flat[::3] = flat[::3].floor()
    if far:
        flat[1::7] = 1e6
        flat[2::11] = -1e6
    return xy


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


# The tests marked ``vulkan`` also run in the Vulkan pass; they share three kernel configurations
# (float64 at radius 2 in RAFT's order and at radius 1 in the other, float32 at radius 2), since each
# compiles there for tens of seconds (more at larger radii: the window is unrolled).
VULKAN = pytest.mark.vulkan

CASES = [  # B, C, H1, W1, H2, W2, radius, order
    (2, 7, 5, 9, 6, 8, 0, "xy"),
    pytest.param(1, 21, 7, 6, 7, 6, 1, "yx", marks=VULKAN),
    (2, 33, 6, 11, 9, 7, 3, "xy"),
    pytest.param(2, 19, 6, 7, 8, 9, 2, "xy", marks=VULKAN),
    (1, 16, 9, 10, 5, 13, 4, "xy"),
    (1, 48, 4, 5, 11, 10, 4, "yx"),
]


# --------------------------------------------------------------------------- the op against its definition


@pytest.mark.parametrize("B, C, H1, W1, H2, W2, radius, order", CASES)
@pytest.mark.parametrize("where", ["inside", "integers", "far"])
def test_lookup_and_its_gradients_match_the_definition(B, C, H1, W1, H2, W2, radius, order, where):
    seed = B * 1000 + C * 10 + radius
    fmap1 = seeded((B, C, H1, W1), seed, requires_grad=True)
    fmap2 = seeded((B, C, H2, W2), seed + 1, requires_grad=True)
    xy = _coords(B, H1, W1, seed + 2, spread=radius + 3, integers=where == "integers", far=where == "far")
    xy.requires_grad_()
    out = corr_taichi.correlation_lookup(fmap1, fmap2, xy, radius, order, scale=0.3)
    want = oracle.flow_lookup(fmap1, fmap2, xy, radius, order == "xy", 0.3)
    assert out.shape == (B, (2 * radius + 1) ** 2, H1, W1) and out.dtype == torch.float64
    assert _relative_error(out, want) < 1e-10
    grad_out = seeded(out.shape, seed + 3)
    got = torch.autograd.grad(out, (fmap1, fmap2, xy), grad_out)
    expected = torch.autograd.grad(want, (fmap1, fmap2, xy), grad_out)
    for name, a, b in zip(("fmap1", "fmap2", "coords"), got, expected):
        assert _relative_error(a, b) < 1e-10, name


def test_coordinate_gradient_at_integers_is_the_one_from_the_right():
    fmap1, fmap2 = seeded((1, 5, 4, 6), 10), seeded((1, 5, 5, 7), 11)
    xy = _coords(1, 4, 6, 12, spread=2).round().requires_grad_()
    out = corr_taichi.correlation_lookup(fmap1, fmap2, xy, 2)
    grad_out = seeded(out.shape, 13)
    (got,) = torch.autograd.grad(out, xy, grad_out)
    # finite difference from the right, exact for the piecewise-linear lookup with a small step
    step = 1e-7
    for axis in (0, 1):
        moved = xy.detach().clone()
        moved[:, axis] += step
        right = (corr_taichi.correlation_lookup(fmap1, fmap2, moved, 2) - out.detach()) / step
        np.testing.assert_allclose(got[:, axis].numpy(), (grad_out * right).sum(1).numpy(), rtol=1e-6, atol=1e-6)


def test_far_outside_reads_nothing_and_non_finite_coordinates_give_nan():
    fmap1, fmap2 = seeded((1, 4, 3, 5), 20, requires_grad=True), seeded((1, 4, 3, 5), 21, requires_grad=True)
    xy = _coords(1, 3, 5, 22, spread=1)
    xy[0, 0, 0, 0], xy[0, 1, 0, 1] = 1e30, -1e30
    xy[0, 0, 1, 1], xy[0, 1, 2, 2] = float("nan"), float("inf")
    out = corr_taichi.correlation_lookup(fmap1, fmap2, xy, 2)
    assert torch.all(out[0, :, 0, :2] == 0)
    bad = torch.zeros(3, 5, dtype=torch.bool)
    bad[1, 1] = bad[2, 2] = True
    assert torch.isnan(out[0, :, bad]).all() and not torch.isnan(out[0, :, ~bad]).any()
    finite = xy.clone()
    finite[0, :, bad] = 1e6  # a non-finite coordinate adds nothing to the feature maps' gradients
    grads = torch.autograd.grad(out.nan_to_num(0.0), (fmap1, fmap2), torch.ones_like(out))
    want = torch.autograd.grad(oracle.flow_lookup(fmap1, fmap2, finite, 2), (fmap1, fmap2), torch.ones_like(out))
    for a, b in zip(grads, want):
        assert _relative_error(a, b) < 1e-10


@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.float16, marks=VULKAN), torch.bfloat16])
def test_low_precision_accumulates_in_float32(dtype):
    fmap1, fmap2 = seeded((1, 70, 5, 6), 30, dtype), seeded((1, 70, 6, 7), 31, dtype)
    xy = _coords(1, 5, 6, 32, spread=3).to(dtype)
    out = corr_taichi.correlation_lookup(fmap1, fmap2, xy, 2)
    assert out.dtype == dtype
    # the oracle on the rounded inputs, in float64; the output is rounded once, to the input dtype
    want = oracle.flow_lookup(fmap1.double(), fmap2.double(), xy.double(), 2)
    tolerance = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    assert _relative_error(out.double(), want) < tolerance
    a, b, c = (t.clone().requires_grad_() for t in (fmap1, fmap2, xy))
    grads = torch.autograd.grad(corr_taichi.correlation_lookup(a, b, c, 2), (a, b, c), torch.ones_like(out))
    assert [g.dtype for g in grads] == [dtype] * 3


def test_channels_last_and_strided_inputs_give_the_same_values():
    fmap1, fmap2 = seeded((2, 40, 6, 7), 40, torch.float32), seeded((2, 40, 8, 5), 41, torch.float32)
    xy = _coords(2, 6, 7, 42, spread=4).float()
    want = corr_taichi.correlation_lookup(fmap1, fmap2, xy, 2)
    last = [t.contiguous(memory_format=torch.channels_last) for t in (fmap1, fmap2)]
    torch.testing.assert_close(corr_taichi.correlation_lookup(*last, xy, 2), want, rtol=0, atol=0)
    wide = torch.cat([fmap1, fmap1], 3)[..., ::2]  # a strided view
    torch.testing.assert_close(corr_taichi.correlation_lookup(wide, fmap2, xy, 2),
                               corr_taichi.correlation_lookup(wide.contiguous(), fmap2, xy, 2), rtol=0, atol=0)


def test_gradients_are_bitwise_deterministic():
    fmap1, fmap2 = seeded((1, 37, 7, 9), 50, torch.float32), seeded((1, 37, 7, 9), 51, torch.float32)
    xy = _coords(1, 7, 9, 52, spread=3).float()
    grad_out = seeded((1, 81, 7, 9), 53, torch.float32)

    def grads():
        a, b, c = (t.clone().requires_grad_() for t in (fmap1, fmap2, xy))
        return torch.autograd.grad(corr_taichi.correlation_lookup(a, b, c, 4), (a, b, c), grad_out)

    first = grads()
    for _ in range(3):
        for a, b in zip(first, grads()):
            assert torch.equal(a, b)


def test_inputs_are_validated_and_not_modified():
    fmap1, fmap2, xy = seeded((1, 4, 3, 5), 60), seeded((1, 4, 3, 5), 61), _coords(1, 3, 5, 62, spread=1)
    copies = [t.clone() for t in (fmap1, fmap2, xy)]
    lookup = corr_taichi.correlation_lookup
    with pytest.raises(ValueError, match="coords must have shape"):
        lookup(fmap1, fmap2, xy[:, :1], 1)
    with pytest.raises(ValueError, match="agree in B and C"):
        lookup(fmap1, fmap2[:, :3], xy, 1)
    with pytest.raises(TypeError, match="same dtype"):
        lookup(fmap1, fmap2.float(), xy, 1)
    with pytest.raises(ValueError, match="order must be one of 'xy', 'yx'"):
        lookup(fmap1, fmap2, xy, 1, order="ij")
    with pytest.raises(ValueError, match=r"radius must be an int in 0\.\.12"):
        lookup(fmap1, fmap2, xy, 13)
    with pytest.raises(TypeError, match="radius must be an int"):
        lookup(fmap1, fmap2, xy, 1.5)
    with pytest.raises(TypeError, match="coords must have dtype"):
        lookup(fmap1, fmap2, xy.long(), 1)
    with pytest.raises(ValueError, match="fmap1 must be a 4-D tensor"):
        lookup(fmap1[0], fmap2, xy, 1)
    fmap1.requires_grad_()
    out = lookup(fmap1, fmap2, xy, 1)
    torch.autograd.grad(out, (fmap1,), torch.ones_like(out))
    for t, copy in zip((fmap1, fmap2, xy), copies):
        assert torch.equal(t, copy)


def test_calls_beyond_32_bit_indexing_are_refused(monkeypatch):
    """Taichi indexes with 32-bit ints; the lookup refuses (naming the remedy) rather than wrapping.  The
    limit is lowered here: tensors past 2**31 elements do not fit a test machine."""
    import corr_taichi._lookup2d as lookup2d

    fmap1, fmap2, xy = seeded((2, 16, 6, 7), 64), seeded((2, 16, 6, 7), 65), _coords(2, 6, 7, 66, spread=1)
    monkeypatch.setattr(lookup2d, "MAX_ELEMENTS", 2 * 6 * 7 * 100 - 1)  # the window weights of radius 4
    corr_taichi.correlation_lookup(fmap1, fmap2, xy, 3)
    with pytest.raises(ValueError, match="32-bit indexing.*split the batch"):
        corr_taichi.correlation_lookup(fmap1, fmap2, xy, 4)


# --------------------------------------------------------------------------- RAFT, as in its repository


def raft_bilinear_sampler(img, coords):
    H, W = img.shape[-2:]
    xgrid, ygrid = coords.split([1, 1], dim=-1)
    xgrid = 2 * xgrid / (W - 1) - 1
    ygrid = 2 * ygrid / (H - 1) - 1
    grid = torch.cat([xgrid, ygrid], dim=-1)
    return F.grid_sample(img, grid, align_corners=True)


class RaftCorrBlock:
    def __init__(self, fmap1, fmap2, num_levels=4, radius=4):
        self.num_levels = num_levels
        self.radius = radius
        self.corr_pyramid = []
        corr = RaftCorrBlock.corr(fmap1, fmap2)
        batch, h1, w1, dim, h2, w2 = corr.shape
        corr = corr.reshape(batch * h1 * w1, dim, h2, w2)
        self.corr_pyramid.append(corr)
        for i in range(self.num_levels - 1):
            corr = F.avg_pool2d(corr, 2, stride=2)
            self.corr_pyramid.append(corr)

    def __call__(self, coords):
        r = self.radius
        coords = coords.permute(0, 2, 3, 1)
        batch, h1, w1, _ = coords.shape
        out_pyramid = []
        for i in range(self.num_levels):
            corr = self.corr_pyramid[i]
            dx = torch.linspace(-r, r, 2 * r + 1, dtype=coords.dtype)
            dy = torch.linspace(-r, r, 2 * r + 1, dtype=coords.dtype)
            delta = torch.stack(torch.meshgrid(dy, dx, indexing="ij"), axis=-1)
            centroid_lvl = coords.reshape(batch * h1 * w1, 1, 1, 2) / 2**i
            delta_lvl = delta.view(1, 2 * r + 1, 2 * r + 1, 2)
            coords_lvl = centroid_lvl + delta_lvl
            corr = raft_bilinear_sampler(corr, coords_lvl)
            corr = corr.view(batch, h1, w1, -1)
            out_pyramid.append(corr)
        out = torch.cat(out_pyramid, dim=-1)
        return out.permute(0, 3, 1, 2).contiguous().float()

    @staticmethod
    def corr(fmap1, fmap2):
        batch, dim, ht, wd = fmap1.shape
        fmap1 = fmap1.view(batch, dim, ht * wd)
        fmap2 = fmap2.view(batch, dim, ht * wd)
        corr = torch.matmul(fmap1.transpose(1, 2), fmap2)
        corr = corr.view(batch, ht, wd, 1, ht, wd)
        return corr / torch.sqrt(torch.tensor(dim).float())


def _raft_output_double(block, coords):
    """RAFT's block ends in ``.float()``; the float64 comparison takes the values before it."""
    float_ = torch.Tensor.float
    try:
        torch.Tensor.float = lambda self: self
        return block(coords)
    finally:
        torch.Tensor.float = float_


@pytest.mark.parametrize("levels, radius, H, W",
                         [(1, 0, 5, 7), (2, 3, 9, 11), (4, 4, 17, 19), (3, 1, 12, 8),
                          pytest.param(2, 2, 10, 13, marks=VULKAN)])
def test_corr_block_equals_raft_all_pairs_corr_block(levels, radius, H, W):
    fmap1, fmap2 = seeded((2, 24, H, W), H, requires_grad=True), seeded((2, 24, H, W), W, requires_grad=True)
    xy = _coords(2, H, W, H + W, spread=6)  # RAFT's coordinates: not at integers, where grid_sample rounds
    xy.requires_grad_()
    want = _raft_output_double(RaftCorrBlock(fmap1, fmap2, levels, radius), xy)
    block = raft.CorrBlock(fmap1, fmap2, num_levels=levels, radius=radius)
    got = block(xy)
    assert got.dtype == torch.float32 and got.shape == want.shape and got.is_contiguous()
    # the float32 output is RAFT's too; in float64, before the cast, the values agree to rounding
    got64 = raft._lookup_pyramid(block.fmap1, block.pyramid, xy, radius, "test")
    assert _relative_error(got64, want) < 1e-10
    torch.testing.assert_close(got, want.float())
    grad_out = seeded(want.shape, 7)
    for a, b in zip(torch.autograd.grad(got64, (fmap1, fmap2, xy), grad_out),
                    torch.autograd.grad(want, (fmap1, fmap2, xy), grad_out)):
        assert _relative_error(a, b) < 1e-9


def _pyramid_and_levels(dtype):
    """A three-level pyramid (odd sizes, the last of one row) and coordinates with some outside and one NaN."""
    fmap1 = seeded((2, 21, 7, 9), 60, dtype, requires_grad=True)
    levels = [seeded((2, 21, 11, 13), 61, dtype), seeded((2, 21, 5, 6), 62, dtype), seeded((2, 21, 1, 3), 63, dtype)]
    levels = [t.requires_grad_() for t in levels]
    xy = _coords(2, 7, 9, 64, spread=5, far=True).to(dtype)
    xy[1, 0, 3, 4] = float("nan")
    return fmap1, levels, xy.requires_grad_()


@VULKAN
def test_pyramid_in_one_call_equals_the_levels_one_by_one():
    """The op looks a pyramid up in one call, each level written in place of the output; the values are the
    per-level lookups' at ``coords / 2**i``, bitwise, and so are the level gradients (the gradients that
    sum over levels agree to rounding)."""
    ops = torch.ops.corr_taichi
    fmap1, levels, xy = _pyramid_and_levels(torch.float32)
    out = ops.correlation_lookup(fmap1, levels, xy, 2, True, 0.7)
    parts = [ops.correlation_lookup(fmap1, [level], xy / 2**i, 2, True, 0.7) for i, level in enumerate(levels)]
    assert out.shape == (2, 75, 7, 9) and out.is_contiguous()
    torch.testing.assert_close(out, torch.cat(parts, 1), rtol=0, atol=0, equal_nan=True)
    grad_out = seeded(out.shape, 65, torch.float32)
    got = torch.autograd.grad(out, (fmap1, *levels, xy), grad_out)
    want = torch.autograd.grad(torch.cat(parts, 1), (fmap1, *levels, xy), grad_out)
    for a, b in zip(got[1:4], want[1:4]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip((got[0], got[4]), (want[0], want[4])):
        torch.testing.assert_close(a, b, equal_nan=True)


def test_pyramid_without_taichi_gives_the_same_values_and_gradients(monkeypatch):
    """Where Taichi cannot run, the op computes the pyramid in plain PyTorch: same values and gradients."""
    import corr_taichi._lookup2d as lookup2d

    fmap1, levels, xy = _pyramid_and_levels(torch.float64)
    ops = torch.ops.corr_taichi
    grad_out = seeded((2, 75, 7, 9), 66)
    results = []
    for usable in (True, False):
        monkeypatch.setattr(lookup2d, "usable", lambda: usable)
        out = ops.correlation_lookup(fmap1, levels, xy, 2, False, 0.7)
        results.append((out, *torch.autograd.grad(out, (fmap1, *levels, xy), grad_out)))
    for a, b in zip(*results):
        assert torch.equal(a.isnan(), b.isnan())
        assert _relative_error(a.nan_to_num(), b.nan_to_num()) < 1e-10


# --------------------------------------------------------------------------- torchvision's RAFT corr_block


class TorchvisionCorrBlockCode(torch.nn.Module):
    """torchvision's ``CorrBlock``, as in ``models/optical_flow/raft.py`` (its ``grid_sample`` helper
    from ``models/optical_flow/_utils.py``)."""

    def __init__(self, *, num_levels=4, radius=4):
        super().__init__()
        self.num_levels = num_levels
        self.radius = radius
        self.out_channels = num_levels * (2 * radius + 1) ** 2

    def build_pyramid(self, fmap1, fmap2):
        batch_size, num_channels, h, w = fmap1.shape
        corr = torch.matmul(fmap1.view(batch_size, num_channels, h * w).transpose(1, 2),
                            fmap2.view(batch_size, num_channels, h * w))
        corr_volume = (corr.view(batch_size, h, w, 1, h, w) / torch.sqrt(torch.tensor(num_channels)))
        corr_volume = corr_volume.reshape(batch_size * h * w, 1, h, w)
        self.corr_pyramid = [corr_volume]
        for _ in range(self.num_levels - 1):
            corr_volume = F.avg_pool2d(corr_volume, kernel_size=2, stride=2)
            self.corr_pyramid.append(corr_volume)

    def index_pyramid(self, centroids_coords):
        side = 2 * self.radius + 1
        di = torch.linspace(-self.radius, self.radius, side, dtype=centroids_coords.dtype)
        dj = torch.linspace(-self.radius, self.radius, side, dtype=centroids_coords.dtype)
        delta = torch.stack(torch.meshgrid(di, dj, indexing="ij"), dim=-1).view(1, side, side, 2)
        batch_size, _, h, w = centroids_coords.shape
        centroids_coords = centroids_coords.permute(0, 2, 3, 1).reshape(batch_size * h * w, 1, 1, 2)
        indexed = []
        for corr_volume in self.corr_pyramid:
            sampling = centroids_coords + delta
            hh, ww = corr_volume.shape[-2:]
            x, y = sampling.split([1, 1], dim=-1)
            grid = torch.cat([2 * x / (ww - 1) - 1, 2 * y / (hh - 1) - 1], dim=-1)
            sampled = F.grid_sample(corr_volume, grid, align_corners=True, mode="bilinear")
            indexed.append(sampled.view(batch_size, h, w, -1))
            centroids_coords = centroids_coords / 2
        return torch.cat(indexed, dim=-1).permute(0, 3, 1, 2).contiguous()


def test_torchvision_corr_block_adapter_equals_torchvision_code():
    fmap1, fmap2 = seeded((1, 32, 16, 24), 70), seeded((1, 32, 16, 24), 71)
    xy = _coords(1, 16, 24, 72, spread=5)
    ours, theirs = raft.TorchvisionCorrBlock(num_levels=4, radius=3), TorchvisionCorrBlockCode(num_levels=4, radius=3)
    assert ours.out_channels == theirs.out_channels == 196
    for block in (ours, theirs):
        block.build_pyramid(fmap1, fmap2)
    got, want = ours.index_pyramid(xy), theirs.index_pyramid(xy)
    assert got.shape == want.shape and got.is_contiguous()
    assert _relative_error(got, want) < 1e-10
    with pytest.raises(ValueError, match="at least 16 for 4 levels"):
        ours.build_pyramid(fmap1[..., :8, :], fmap2[..., :8, :])
    with pytest.raises(ValueError, match="one shape"):
        ours.build_pyramid(fmap1, fmap2[..., :20])


# --------------------------------------------------------------------------- alt_cuda_corr, as model code calls it


class AlternateCorrBlock:
    """ptlflow's ``AlternateCorrBlock`` (``models/raft/corr.py``), fp16 path included."""

    def __init__(self, fmap1, fmap2, num_levels=4, radius=4):
        self.num_levels = num_levels
        self.radius = radius
        self.pyramid = [(fmap1, fmap2)]
        for i in range(self.num_levels):
            fmap1 = F.avg_pool2d(fmap1, 2, stride=2)
            fmap2 = F.avg_pool2d(fmap2, 2, stride=2)
            self.pyramid.append((fmap1, fmap2))

    def __call__(self, coords):
        coords = coords.permute(0, 2, 3, 1)
        B, H, W, _ = coords.shape
        dim = self.pyramid[0][0].shape[1]
        corr_list = []
        for i in range(self.num_levels):
            r = self.radius
            fmap1_i = self.pyramid[0][0].permute(0, 2, 3, 1).contiguous()
            fmap2_i = self.pyramid[i][1].permute(0, 2, 3, 1).contiguous()
            coords_i = (coords / 2**i).reshape(B, 1, H, W, 2).contiguous()
            if coords.dtype == torch.float16:
                fmap1_i = fmap1_i.float()
                fmap2_i = fmap2_i.float()
                coords_i = coords_i.float()
            (corr,) = alt_cuda_corr.forward(fmap1_i, fmap2_i, coords_i, r)
            if coords.dtype == torch.float16:
                corr = corr.half()
            corr_list.append(corr.squeeze(1))
        corr = torch.stack(corr_list, dim=1)
        corr = corr.reshape(B, -1, H, W)
        return corr / torch.sqrt(torch.tensor(dim))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_alt_cuda_corr_drop_in_gives_raft_corr_block(dtype):
    fmap1, fmap2 = seeded((1, 40, 16, 20), 80), seeded((1, 40, 16, 20), 81)
    xy = _coords(1, 16, 20, 82, spread=5)
    fmap1, fmap2, xy = (t.to(dtype) for t in (fmap1, fmap2, xy))  # RAFT's reference on the rounded inputs
    want = _raft_output_double(RaftCorrBlock(fmap1.double(), fmap2.double(), 4, 4), xy.double())
    got = AlternateCorrBlock(fmap1, fmap2, 4, 4)(xy)
    assert got.dtype == dtype and got.shape == want.shape
    tolerance = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 4e-3}[dtype]
    assert _relative_error(got.double(), want) < tolerance


@VULKAN
def test_alt_cuda_corr_backward_gives_the_exact_gradients():
    fmap1, fmap2 = seeded((2, 19, 6, 7), 90, requires_grad=True), seeded((2, 19, 8, 5), 91, requires_grad=True)
    coords = torch.stack([_coords(2, 6, 7, 92 + n, spread=4, integers=True) for n in range(3)], 1)  # N = 3
    coords = coords.permute(0, 1, 3, 4, 2).contiguous().requires_grad_()  # (B, N, H1, W1, 2)
    f1, f2 = fmap1.permute(0, 2, 3, 1), fmap2.permute(0, 2, 3, 1)
    (corr,) = alt_cuda_corr.forward(f1, f2, coords, 2)
    want = torch.stack([oracle.flow_lookup(fmap1, fmap2, coords[:, n].permute(0, 3, 1, 2), 2) for n in range(3)], 1)
    assert corr.shape == (2, 3, 25, 6, 7) and _relative_error(corr, want) < 1e-10
    corr_grad = seeded(corr.shape, 95)
    got = alt_cuda_corr.backward(f1.detach(), f2.detach(), coords.detach(), corr_grad, 2)
    expected = torch.autograd.grad(want, (fmap1, fmap2, coords), corr_grad)
    expected = (expected[0].permute(0, 2, 3, 1), expected[1].permute(0, 2, 3, 1), expected[2])
    for a, b in zip(got, expected):
        assert a.shape == b.shape and _relative_error(a, b) < 1e-10
    with pytest.raises(ValueError, match="corr_grad must have shape"):
        alt_cuda_corr.backward(f1.detach(), f2.detach(), coords.detach(), corr_grad[:, :2], 2)


def test_install_aliases_runs_alternate_corr_block_code(tmp_path):
    """Model code that does ``try: import alt_cuda_corr`` (as ptlflow's RAFT with ``alternate_corr=True``)
    runs on this package after ``install_aliases()``, forward and through its own autograd.Function."""
    (tmp_path / "alt_model.py").write_text(textwrap.dedent(
        """
        import torch
        try:
            import alt_cuda_corr
        except ImportError:
            alt_cuda_corr = None

        class AltCorr(torch.autograd.Function):
            @staticmethod
            def forward(ctx, fmap1, fmap2, coords, r):
                ctx.save_for_backward(fmap1, fmap2, coords)
                ctx.r = r
                corr, = alt_cuda_corr.forward(fmap1, fmap2, coords, r)
                return corr
            @staticmethod
            def backward(ctx, grad_corr):
                fmap1, fmap2, coords = ctx.saved_tensors
                fmap1_grad, fmap2_grad, coords_grad = alt_cuda_corr.backward(fmap1, fmap2, coords,
                                                                             grad_corr.contiguous(), ctx.r)
                return fmap1_grad, fmap2_grad, coords_grad, None
        """))
    result = run(
        """
        import torch, corr_taichi.compat
        corr_taichi.compat.install_aliases()
        import alt_model, corr_taichi
        assert alt_model.alt_cuda_corr is not None
        g = torch.Generator().manual_seed(0)
        f1 = torch.randn(1, 6, 5, 12, generator=g, dtype=torch.float64, requires_grad=True)
        f2 = torch.randn(1, 6, 5, 12, generator=g, dtype=torch.float64, requires_grad=True)
        xy = (torch.rand(1, 1, 6, 5, 2, generator=g, dtype=torch.float64) * 8).requires_grad_()
        a = alt_model.AltCorr.apply(f1, f2, xy, 3)
        b = corr_taichi.correlation_lookup(f1.permute(0, 3, 1, 2), f2.permute(0, 3, 1, 2),
                                           xy[:, 0].permute(0, 3, 1, 2), 3)[:, None]
        print(torch.allclose(a, b, atol=1e-12), torch.autograd.gradcheck(alt_model.AltCorr.apply, (f1, f2, xy, 3)))
        """, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True True"


# --------------------------------------------------------------------------- PyTorch integration


def test_gradcheck():
    fmap1, fmap2 = seeded((1, 3, 3, 4), 100, requires_grad=True), seeded((1, 3, 4, 3), 101, requires_grad=True)
    xy = _coords(1, 3, 4, 102, spread=2).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, c: corr_taichi.correlation_lookup(a, b, c, 1, "yx"),
                                    (fmap1, fmap2, xy))


def test_opcheck_lookup():
    fmap1, fmap2 = seeded((1, 5, 3, 4), 110, requires_grad=True), seeded((1, 5, 4, 5), 111, requires_grad=True)
    xy = _coords(1, 3, 4, 112, spread=2).requires_grad_()
    ops = torch.ops.corr_taichi
    pooled = F.avg_pool2d(fmap2.detach(), 2).requires_grad_()
    for levels in ([fmap2], [fmap2, pooled]):
        torch.library.opcheck(ops.correlation_lookup.default, (fmap1, levels, xy, 2, True, 0.5))
        grad = seeded((1, 25 * len(levels), 3, 4), 113)
        for need in ((True, True, True), (True, False, False), (False, True, False), (False, False, True)):
            args = (grad, fmap1.detach(), [t.detach() for t in levels], xy.detach(), 2, False, 0.5, *need)
            torch.library.opcheck(ops.correlation_lookup_backward.default, args)


def test_torch_compile_fullgraph():
    fmap1, fmap2 = seeded((1, 16, 8, 8), 120, torch.float32), seeded((1, 16, 8, 8), 121, torch.float32)
    xy = _coords(1, 8, 8, 122, spread=3).float()

    def head(a, b, coords):
        block = raft.CorrBlock(a, b, num_levels=2, radius=2)
        return block(coords).relu().sum(1)

    compiled = torch.compile(head, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(fmap1, fmap2, xy), head(fmap1, fmap2, xy))


def test_onnx_export_runs_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnx

    import corr_taichi.onnx

    class Model(torch.nn.Module):
        def forward(self, fmap1, fmap2, coords):
            return raft.CorrBlock(fmap1, fmap2, num_levels=2, radius=3)(coords)

    fmap1, fmap2 = seeded((1, 8, 8, 10), 130, torch.float32), seeded((1, 8, 8, 10), 131, torch.float32)
    xy = _coords(1, 8, 10, 132, spread=4, integers=True, far=True).float()
    model = Model()
    path = tmp_path / "raft_corr.onnx"
    corr_taichi.onnx.export(model, (fmap1, fmap2, xy), str(path), verbose=False)
    session = ort.InferenceSession(str(path))
    names = [i.name for i in session.get_inputs()]
    (got,) = session.run(None, dict(zip(names, (fmap1.numpy(), fmap2.numpy(), xy.numpy()))))
    np.testing.assert_allclose(got, model(fmap1, fmap2, xy).numpy(), rtol=1e-5, atol=1e-5)
    assert not any("corr" in node.op_type.lower() for node in onnx.load(str(path)).graph.node)
