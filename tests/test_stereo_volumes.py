"""Group-wise correlation and the 1-D lookups against float64 loop oracles (tests/oracle.py) and against
the networks' own code, reproduced here from GwcNet's ``models/submodule.py`` and RAFT-Stereo's
``core/corr.py`` and ``sampler/sampler_kernel.cu``."""

import math
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import corr_taichi
from corr_taichi import raft_stereo
from corr_taichi.compat import corr_sampler, gwcnet

from . import oracle
from .fresh import run
from .cases import seeded


def _coords(shape, seed, low, high):
    """Coordinates in [low, high), with some exactly at integers (where the derivative is the one from the
    right) and some far outside the row."""
    x = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * (high - low) + low
    flat = x.view(-1)
    flat[::5] = flat[::5].floor()  # integer positions
    flat[1::11] = 1e6  # far right
    flat[2::13] = -1e6  # far left
    return x


# --------------------------------------------------------------------------- GwcNet, as in its repository


def gwc_groupwise_correlation(fea1, fea2, num_groups):
    B, C, H, W = fea1.shape
    assert C % num_groups == 0
    channels_per_group = C // num_groups
    cost = (fea1 * fea2).view([B, num_groups, channels_per_group, H, W]).mean(dim=2)
    assert cost.shape == (B, num_groups, H, W)
    return cost


def gwc_build_gwc_volume(refimg_fea, targetimg_fea, maxdisp, num_groups):
    B, C, H, W = refimg_fea.shape
    volume = refimg_fea.new_zeros([B, num_groups, maxdisp, H, W])
    for i in range(maxdisp):
        if i > 0:
            volume[:, :, i, :, i:] = gwc_groupwise_correlation(refimg_fea[:, :, :, i:], targetimg_fea[:, :, :, :-i],
                                                               num_groups)
        else:
            volume[:, :, i, :, :] = gwc_groupwise_correlation(refimg_fea, targetimg_fea, num_groups)
    volume = volume.contiguous()
    return volume


GROUPWISE = [  # (shape, max_disp, groups, extra parameters)
    ((2, 12, 5, 9), 4, 3, {}),
    ((1, 6, 3, 7), 9, 2, {}),  # max_disp >= W
    ((1, 5, 4, 11), 3, 1, {}),  # one group
    ((1, 7, 3, 8), 5, 7, {}),  # a group per channel
    ((1, 8, 5, 10), 3, 4, dict(both_directions=True)),
    ((2, 6, 7, 9), 2, 2, dict(kernel_size=3, padding=1, stride=(1, 2))),
    ((1, 40, 3, 21), 6, 8, {}),  # several 16-channel vectors per group in the CPU kernels
]


@pytest.mark.parametrize("shape,max_disp,groups,extra", GROUPWISE)
def test_groupwise_matches_definition_and_gradients(shape, max_disp, groups, extra):
    left, right = seeded(shape, 1, requires_grad=True), seeded(shape, 2, requires_grad=True)
    got = corr_taichi.groupwise_correlation1d(left, right, max_disp, groups, **extra)
    expected = oracle.groupwise_correlation1d(left.detach().numpy(), right.detach().numpy(), max_disp, groups, **extra)
    assert tuple(got.shape) == expected.shape
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-10, atol=1e-12)
    # gradients: autograd through the per-group correlation1d definition, in float64
    grad = seeded(got.shape, 3)
    per = shape[1] // groups
    want = torch.stack([corr_taichi.reference.correlation1d(left[:, g * per:(g + 1) * per],
                                                            right[:, g * per:(g + 1) * per], max_disp, **extra) / per
                        for g in range(groups)], 1)
    for a, b in zip(torch.autograd.grad(got, (left, right), grad), torch.autograd.grad(want, (left, right), grad)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape,maxdisp,groups", [((2, 12, 5, 9), 4, 3), ((1, 8, 4, 6), 9, 8), ((1, 6, 3, 13), 13, 1)])
def test_gwcnet_drop_in_equals_gwcnet_code(shape, maxdisp, groups):
    ref, target = seeded(shape, 4, requires_grad=True), seeded(shape, 5, requires_grad=True)
    got = gwcnet.build_gwc_volume(ref, target, maxdisp, groups)
    want = gwc_build_gwc_volume(ref, target, maxdisp, groups)
    assert got.shape == want.shape == (shape[0], groups, maxdisp, shape[2], shape[3])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    grad = seeded(got.shape, 6)
    for a, b in zip(torch.autograd.grad(got, (ref, target), grad), torch.autograd.grad(want, (ref, target), grad)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gwcnet.groupwise_correlation(ref, target, groups),
                               gwc_groupwise_correlation(ref, target, groups), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_groupwise_low_precision_accumulates_in_float32(dtype):
    left, right = seeded((1, 64, 3, 17), 7, dtype), seeded((1, 64, 3, 17), 8, dtype)
    got = corr_taichi.groupwise_correlation1d(left, right, 6, 4)
    assert got.dtype == dtype
    want = torch.from_numpy(oracle.groupwise_correlation1d(left.double().numpy(), right.double().numpy(), 6, 4))
    # float32 accumulation: within the output dtype's rounding of the exact result
    tolerance = {torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float32: 1e-6}[dtype]
    torch.testing.assert_close(got.double(), want, rtol=tolerance, atol=tolerance)


def test_groupwise_refuses_groups_that_do_not_divide_the_channels():
    x = torch.randn(1, 6, 3, 5)
    with pytest.raises(ValueError, match="groups must divide the channel count 6, got 4"):
        corr_taichi.groupwise_correlation1d(x, x, 2, 4)
    with pytest.raises(ValueError, match="groups must be an int >= 1"):
        corr_taichi.groupwise_correlation1d(x, x, 2, 0)
    with pytest.raises(ValueError, match="maxdisp must be an int >= 1"):
        gwcnet.build_gwc_volume(x, x, 0, 2)


# --------------------------------------------------------------------------- RAFT-Stereo, as in its repository


def raft_stereo_bilinear_sampler(img, coords):
    H, W = img.shape[-2:]
    xgrid, ygrid = coords.split([1, 1], dim=-1)
    xgrid = 2 * xgrid / (W - 1) - 1
    assert torch.unique(ygrid).numel() == 1 and H == 1  # This is a stereo problem
    grid = torch.cat([xgrid, ygrid], dim=-1)
    return F.grid_sample(img, grid, align_corners=True)


class RaftStereoCorrBlock1D:
    def __init__(self, fmap1, fmap2, num_levels=4, radius=4):
        self.num_levels = num_levels
        self.radius = radius
        self.corr_pyramid = []
        corr = RaftStereoCorrBlock1D.corr(fmap1, fmap2)
        batch, h1, w1, dim, w2 = corr.shape
        corr = corr.reshape(batch * h1 * w1, dim, 1, w2)
        self.corr_pyramid.append(corr)
        for i in range(self.num_levels):
            corr = F.avg_pool2d(corr, [1, 2], stride=[1, 2])
            self.corr_pyramid.append(corr)

    def __call__(self, coords):
        r = self.radius
        coords = coords[:, :1].permute(0, 2, 3, 1)
        batch, h1, w1, _ = coords.shape
        out_pyramid = []
        for i in range(self.num_levels):
            corr = self.corr_pyramid[i]
            dx = torch.linspace(-r, r, 2 * r + 1, dtype=coords.dtype)
            dx = dx.view(1, 1, 2 * r + 1, 1).to(coords.device)
            x0 = dx + coords.reshape(batch * h1 * w1, 1, 1, 1) / 2**i
            y0 = torch.zeros_like(x0)
            coords_lvl = torch.cat([x0, y0], dim=-1)
            corr = raft_stereo_bilinear_sampler(corr, coords_lvl)
            corr = corr.view(batch, h1, w1, -1)
            out_pyramid.append(corr)
        out = torch.cat(out_pyramid, dim=-1)
        return out.permute(0, 3, 1, 2).contiguous().float()

    @staticmethod
    def corr(fmap1, fmap2):
        B, D, H, W1 = fmap1.shape
        _, _, _, W2 = fmap2.shape
        fmap1 = fmap1.view(B, D, H, W1)
        fmap2 = fmap2.view(B, D, H, W2)
        corr = torch.einsum("aijk,aijh->ajkh", fmap1, fmap2)
        corr = corr.reshape(B, H, W1, 1, W2).contiguous()
        return corr / torch.sqrt(torch.tensor(D, dtype=fmap1.dtype))


def raft_stereo_sampler_forward(volume, coords, r):
    """sampler_kernel.cu's forward, element by element (x in coords channel 0)."""
    B, H, W1, W2 = volume.shape
    corr = np.zeros((B, 2 * r + 1, H, W1))
    for n in range(B):
        for y in range(H):
            for x in range(W1):
                x0 = float(coords[n, 0, y, x])
                dx = x0 - math.floor(x0)
                for i in range(2 * r + 2):
                    x1 = math.floor(x0) - r + i
                    if 0 <= x1 < W2:
                        s = float(volume[n, y, x, x1])
                        if i > 0:
                            corr[n, i - 1, y, x] += s * dx
                        if i < 2 * r + 1:
                            corr[n, i, y, x] += s * (1 - dx)
    return corr


def raft_stereo_sampler_backward(coords, corr_grad, r, W2):
    B, _, H, W1 = corr_grad.shape
    grad = np.zeros((B, H, W1, W2))
    for n in range(B):
        for y in range(H):
            for x in range(W1):
                x0 = float(coords[n, 0, y, x])
                dx = x0 - math.floor(x0)
                for i in range(2 * r + 2):
                    x1 = math.floor(x0) - r + i
                    if 0 <= x1 < W2:
                        g = 0.0
                        if i > 0:
                            g += float(corr_grad[n, i - 1, y, x]) * dx
                        if i < 2 * r + 1:
                            g += float(corr_grad[n, i, y, x]) * (1 - dx)
                        grad[n, y, x, x1] += g
    return grad


LOOKUPS = [  # (B, C, H, W1, W2, radius)
    (2, 5, 3, 7, 9, 0),
    (1, 6, 2, 9, 9, 1),
    (1, 3, 3, 8, 5, 3),
    (2, 17, 2, 6, 11, 4),
]


@pytest.mark.parametrize("B,C,H,W1,W2,radius", LOOKUPS)
def test_lookups_match_definition(B, C, H, W1, W2, radius):
    fmap1, fmap2 = seeded((B, C, H, W1), 10), seeded((B, C, H, W2), 11)
    coords = _coords((B, H, W1), 12, -radius - 2, W2 + radius + 2)
    scale = 1 / math.sqrt(C)
    expected = oracle.correlation_lookup1d(fmap1.numpy(), fmap2.numpy(), coords.numpy(), radius, scale)
    got = corr_taichi.correlation_lookup1d(fmap1, fmap2, coords, radius)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)
    volume = seeded((B, H, W1, W2), 13)
    np.testing.assert_allclose(corr_taichi.volume_lookup1d(volume, coords, radius).numpy(),
                               oracle.volume_lookup1d(volume.numpy(), coords.numpy(), radius), rtol=1e-10, atol=1e-12)


def _grid_sample_lookup(volume, coords, radius):
    """The lookup as RAFT-Stereo's CorrBlock1D writes one level: grid_sample of the (N, 1, 1, W2) rows."""
    B, H, W1, W2 = volume.shape
    dx = torch.linspace(-radius, radius, 2 * radius + 1, dtype=volume.dtype).view(1, 1, -1, 1)
    x0 = dx + coords.reshape(B * H * W1, 1, 1, 1)
    out = raft_stereo_bilinear_sampler(volume.reshape(B * H * W1, 1, 1, W2), torch.cat([x0, torch.zeros_like(x0)], -1))
    return out.view(B, H, W1, -1).permute(0, 3, 1, 2)


@pytest.mark.parametrize("B,C,H,W1,W2,radius", LOOKUPS)
def test_lookup_gradients_match_grid_sample(B, C, H, W1, W2, radius):
    """fmap1, fmap2, volume and coordinate gradients against autograd through grid_sample (float64), with
    coordinates far outside the row too.  At an exact integer grid_sample's coordinate derivative depends
    on how its coordinate normalisation rounds (per offset, from the left or the right), so coordinate
    gradients are compared with it off integers, and at integers with the definition's (from the right)
    in :func:`test_coordinate_gradient_at_integers_is_the_one_from_the_right`."""
    fmap1, fmap2 = seeded((B, C, H, W1), 20, requires_grad=True), seeded((B, C, H, W2), 21, requires_grad=True)
    coords = _coords((B, H, W1), 22, -radius - 2, W2 + radius + 2)
    coords[0, 0, :3] = torch.tensor([2.5, 2.0 + 1e-9, 3.0 - 1e-9])[: min(3, W1)]
    coords.requires_grad_()
    off_integers = coords.detach() != coords.detach().floor()
    scale = 1 / math.sqrt(C)
    grad = seeded((B, 2 * radius + 1, H, W1), 23)
    volume = torch.einsum("bchx,bchy->bhxy", fmap1, fmap2) * scale
    want = torch.autograd.grad(_grid_sample_lookup(volume, coords, radius), (fmap1, fmap2, coords), grad)
    got = torch.autograd.grad(corr_taichi.correlation_lookup1d(fmap1, fmap2, coords, radius), (fmap1, fmap2, coords),
                              grad)
    for a, b in zip(got[:2], want[:2]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got[2][off_integers], want[2][off_integers], rtol=1e-10, atol=1e-10)
    leaf = volume.detach().requires_grad_()
    want = torch.autograd.grad(_grid_sample_lookup(leaf, coords, radius), (leaf, coords), grad)
    got = torch.autograd.grad(corr_taichi.volume_lookup1d(leaf, coords, radius), (leaf, coords), grad)
    torch.testing.assert_close(got[0], want[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got[1][off_integers], want[1][off_integers], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("radius", [0, 1, 3, 4])
def test_coordinate_gradient_at_integers_is_the_one_from_the_right(radius):
    B, C, H, W1, W2 = 1, 7, 2, 9, 8
    fmap1, fmap2 = seeded((B, C, H, W1), 24), seeded((B, C, H, W2), 25)
    coords = torch.arange(-radius - 3, W1 - radius - 3, dtype=torch.float64).expand(B, H, W1).clone()
    coords[0, 1] += torch.tensor([1e-12, -1e-12, 0.5, 0, 0, 1e-9, 0, -1e-9, 0], dtype=torch.float64)
    grad = seeded((B, 2 * radius + 1, H, W1), 26)
    scale = 1 / math.sqrt(C)
    volume = torch.einsum("bchx,bchy->bhxy", fmap1, fmap2) * scale
    expected = oracle.volume_lookup1d_coords_grad(volume.numpy(), coords.numpy(), radius, grad.numpy())
    leaf = coords.clone().requires_grad_()
    got = torch.autograd.grad(corr_taichi.correlation_lookup1d(fmap1, fmap2, leaf, radius), leaf, grad)[0]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-10)
    got = torch.autograd.grad(corr_taichi.volume_lookup1d(volume, leaf, radius), leaf, grad)[0]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", raft_stereo.MODES)
@pytest.mark.parametrize("levels,radius,W", [(4, 4, 37), (2, 1, 9), (3, 3, 20)])
def test_corr_block_1d_equals_raft_stereo(mode, levels, radius, W):
    B, C, H = 2, 12, 3
    fmap1, fmap2 = seeded((B, C, H, W), 30, requires_grad=True), seeded((B, C, H, W), 31, requires_grad=True)
    x = _coords((B, 1, H, W), 32, -3, W + 3)
    x.view(-1)[1::11] = 1e3  # grid_sample's normalisation of 1e6 loses the precision compared here
    x.view(-1)[2::13] = -1e3
    coords = torch.cat([x, torch.arange(H, dtype=torch.float64).view(1, 1, H, 1).expand(B, 1, H, W)], 1)
    want = RaftStereoCorrBlock1D(fmap1, fmap2, levels, radius)(coords)
    got = raft_stereo.CorrBlock1D(fmap1, fmap2, levels, radius, mode=mode)(coords)
    assert got.shape == want.shape == (B, levels * (2 * radius + 1), H, W) and got.dtype == want.dtype
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    grad = seeded(got.shape, 33)
    for a, b in zip(torch.autograd.grad(got, (fmap1, fmap2), grad), torch.autograd.grad(want, (fmap1, fmap2), grad)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_corr_sampler_drop_in_matches_its_kernel():
    B, H, W1, W2, r = 2, 3, 7, 10, 4
    volume = seeded((B, H, W1, W2), 40)
    coords = _coords((B, 2, H, W1), 41, -6, W2 + 6)
    coords.view(-1)[1::11] = 30.0
    corr, = corr_sampler.forward(volume, coords, r)
    np.testing.assert_allclose(corr.numpy(), raft_stereo_sampler_forward(volume.numpy(), coords.numpy(), r),
                               rtol=1e-12, atol=1e-12)
    corr_grad = seeded(corr.shape, 42)
    volume_grad, = corr_sampler.backward(volume, coords, corr_grad, r)
    np.testing.assert_allclose(volume_grad.numpy(),
                               raft_stereo_sampler_backward(coords.numpy(), corr_grad.numpy(), r, W2),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_corr_sampler_half_precision(dtype):
    """Half volumes (RAFT-Stereo's mixed precision): computed in float32, returned in the volume's dtype."""
    B, H, W1, W2, r = 1, 4, 9, 12, 3
    volume = seeded((B, H, W1, W2), 43, dtype)
    coords = _coords((B, 1, H, W1), 44, -4, W2 + 4).float()
    corr, = corr_sampler.forward(volume, coords, r)
    assert corr.dtype == dtype
    exact = raft_stereo_sampler_forward(volume.double().numpy(), coords.double().numpy(), r)
    tolerance = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-6}[dtype]
    np.testing.assert_allclose(corr.double().numpy(), exact, rtol=tolerance, atol=tolerance)
    corr_grad = seeded(corr.shape, 45, dtype)
    volume_grad, = corr_sampler.backward(volume, coords, corr_grad, r)
    assert volume_grad.dtype == dtype
    exact = raft_stereo_sampler_backward(coords.double().numpy(), corr_grad.double().numpy(), r, W2)
    np.testing.assert_allclose(volume_grad.double().numpy(), exact, rtol=tolerance, atol=tolerance)


def test_lookup_half_inputs_accumulate_in_float32():
    fmap1, fmap2 = seeded((1, 96, 2, 9), 50, torch.float16), seeded((1, 96, 2, 11), 51, torch.float16)
    coords = _coords((1, 2, 9), 52, -2, 12).float()
    got = corr_taichi.correlation_lookup1d(fmap1, fmap2, coords, 2)
    assert got.dtype == torch.float16
    exact = oracle.correlation_lookup1d(fmap1.double().numpy(), fmap2.double().numpy(), coords.double().numpy(), 2,
                                        1 / math.sqrt(96))
    np.testing.assert_allclose(got.double().numpy(), exact, rtol=2e-3, atol=2e-3)


def test_lookup_gradients_are_bitwise_deterministic():
    fmap1, fmap2 = seeded((1, 33, 4, 30), 60, torch.float32, True), seeded((1, 33, 4, 30), 61, torch.float32, True)
    coords = _coords((1, 4, 30), 62, -2, 32).float().requires_grad_()
    runs = []
    for _ in range(3):
        out = corr_taichi.correlation_lookup1d(fmap1, fmap2, coords, 4)
        runs.append(torch.autograd.grad(out, (fmap1, fmap2, coords), torch.ones_like(out)))
    for repeat in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], repeat))


def test_lookup_inputs_are_validated():
    f = torch.randn(1, 4, 3, 5)
    with pytest.raises(ValueError, match=r"coords must have shape \(B, H, W1\) = \(1, 3, 5\)"):
        corr_taichi.correlation_lookup1d(f, f, torch.zeros(1, 3, 4), 2)
    with pytest.raises(ValueError, match="radius must be an int >= 0"):
        corr_taichi.volume_lookup1d(torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 5), -1)
    with pytest.raises(ValueError, match="fmap1 and fmap2 must agree in B, C and H"):
        corr_taichi.correlation_lookup1d(f, torch.randn(1, 5, 3, 5), torch.zeros(1, 3, 5), 2)
    with pytest.raises(TypeError, match="coords must have dtype float16, bfloat16, float32 or float64"):
        corr_taichi.volume_lookup1d(torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 5, dtype=torch.int64), 1)
    with pytest.raises(ValueError, match="mode must be one of volume, on_the_fly"):
        raft_stereo.CorrBlock1D(f, f, mode="fast")
    with pytest.raises(ValueError, match=r"corr_grad must have shape \(1, 3, 3, 5\)"):
        corr_sampler.backward(torch.zeros(1, 3, 5, 5), torch.zeros(1, 1, 3, 5), torch.zeros(1, 5, 3, 5), 1)


def test_inputs_are_not_modified():
    fmap1, fmap2 = seeded((1, 5, 2, 6), 70, requires_grad=True), seeded((1, 5, 2, 7), 71, requires_grad=True)
    coords = _coords((1, 2, 6), 72, -1, 8).requires_grad_()
    before = [t.detach().clone() for t in (fmap1, fmap2, coords)]
    out = corr_taichi.correlation_lookup1d(fmap1, fmap2, coords, 2)
    out.sum().backward()
    corr_taichi.groupwise_correlation1d(fmap1, fmap1, 3, 5).sum().backward()
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, (fmap1, fmap2, coords)))


# --------------------------------------------------------------------------- PyTorch integration


def test_opcheck_lookups():
    fmap1, fmap2 = seeded((1, 5, 2, 6), 80, requires_grad=True), seeded((1, 5, 2, 7), 81, requires_grad=True)
    coords = _coords((1, 2, 6), 82, -2, 9).requires_grad_()
    volume = seeded((1, 2, 6, 7), 83, requires_grad=True)
    ops = torch.ops.corr_taichi
    torch.library.opcheck(ops.correlation_lookup1d.default, (fmap1, fmap2, coords, 2, 0.5))
    torch.library.opcheck(ops.volume_lookup1d.default, (volume, coords, 1))
    grad = seeded((1, 5, 2, 6), 84)
    for need in ((True, True, True), (True, False, False), (False, True, False), (False, False, True)):
        args = (grad, fmap1.detach(), fmap2.detach(), coords.detach(), 2, 0.5, *need)
        torch.library.opcheck(ops.correlation_lookup1d_backward.default, args)
    grad = seeded((1, 3, 2, 6), 85)
    for need in ((True, True), (True, False), (False, True)):
        torch.library.opcheck(ops.volume_lookup1d_backward.default, (grad, volume.detach(), coords.detach(), 1, *need))


def test_torch_compile_fullgraph_stereo_ops():
    left, right = seeded((1, 8, 4, 9), 90, torch.float32), seeded((1, 8, 4, 9), 91, torch.float32)
    coords = _coords((1, 4, 9), 92, -1, 10).float()

    def head(a, b, x):
        volume = corr_taichi.groupwise_correlation1d(a, b, 4, 2)
        return volume.mean(1).sum(1) + corr_taichi.correlation_lookup1d(a, b, x, 2).sum(1)

    compiled = torch.compile(head, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(left, right, coords), head(left, right, coords))


@pytest.mark.parametrize("mode", raft_stereo.MODES)
def test_onnx_export_of_stereo_ops_runs_in_onnxruntime(tmp_path, mode):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnx

    import corr_taichi.onnx

    class Model(torch.nn.Module):
        def forward(self, left, right, coords):
            volume = corr_taichi.groupwise_correlation1d(left, right, 3, 4)
            block = raft_stereo.CorrBlock1D(left, right, num_levels=2, radius=2, mode=mode)
            return volume.flatten(1, 2), block(coords)

    left, right = seeded((1, 8, 3, 10), 93, torch.float32), seeded((1, 8, 3, 10), 94, torch.float32)
    coords = _coords((1, 1, 3, 10), 95, -2, 12).float()
    coords.view(-1)[1::11] = 40.0
    model = Model()
    path = tmp_path / "stereo.onnx"
    corr_taichi.onnx.export(model, (left, right, coords), str(path), verbose=False)
    session = ort.InferenceSession(str(path))
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, dict(zip(names, (left.numpy(), right.numpy(), coords.numpy()))))
    for a, b in zip(got, model(left, right, coords)):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-5)
    assert not any("corr" in node.op_type.lower() for node in onnx.load(str(path)).graph.node)


def test_install_aliases_runs_raft_stereo_code(tmp_path):
    """RAFT-Stereo's CorrSampler / CorrBlockFast1D, written as in its core/corr.py, on `import corr_sampler`."""
    (tmp_path / "fast_block.py").write_text(textwrap.dedent(
        """
        import torch
        import torch.nn.functional as F
        try:
            import corr_sampler
        except:
            pass

        class CorrSampler(torch.autograd.Function):
            @staticmethod
            def forward(ctx, volume, coords, radius):
                ctx.save_for_backward(volume, coords)
                ctx.radius = radius
                corr, = corr_sampler.forward(volume, coords, radius)
                return corr
            @staticmethod
            def backward(ctx, grad_output):
                volume, coords = ctx.saved_tensors
                grad_output = grad_output.contiguous()
                grad_volume, = corr_sampler.backward(volume, coords, grad_output, ctx.radius)
                return grad_volume, None, None

        class CorrBlockFast1D:
            def __init__(self, fmap1, fmap2, num_levels=4, radius=4):
                self.num_levels = num_levels
                self.radius = radius
                self.corr_pyramid = []
                corr = CorrBlockFast1D.corr(fmap1, fmap2)
                batch, h1, w1, dim, w2 = corr.shape
                corr = corr.reshape(batch*h1*w1, dim, 1, w2)
                for i in range(self.num_levels):
                    self.corr_pyramid.append(corr.view(batch, h1, w1, -1, w2//2**i))
                    corr = F.avg_pool2d(corr, [1,2], stride=[1,2])
            def __call__(self, coords):
                out_pyramid = []
                bz, _, ht, wd = coords.shape
                coords = coords[:, [0]]
                for i in range(self.num_levels):
                    corr = CorrSampler.apply(self.corr_pyramid[i].squeeze(3), coords/2**i, self.radius)
                    out_pyramid.append(corr.view(bz, -1, ht, wd))
                return torch.cat(out_pyramid, dim=1)
            @staticmethod
            def corr(fmap1, fmap2):
                B, D, H, W1 = fmap1.shape
                _, _, _, W2 = fmap2.shape
                fmap1 = fmap1.view(B, D, H, W1)
                fmap2 = fmap2.view(B, D, H, W2)
                corr = torch.einsum('aijk,aijh->ajkh', fmap1, fmap2)
                corr = corr.reshape(B, H, W1, 1, W2).contiguous()
                return corr / torch.sqrt(torch.tensor(D).float())
        """))
    result = run(
        """
        import torch, corr_taichi.compat
        corr_taichi.compat.install_aliases()
        from fast_block import CorrBlockFast1D
        from corr_taichi.raft_stereo import CorrBlock1D
        g = torch.Generator().manual_seed(0)
        f1 = torch.randn(1, 16, 3, 32, generator=g, dtype=torch.float64, requires_grad=True)
        f2 = torch.randn(1, 16, 3, 32, generator=g, dtype=torch.float64, requires_grad=True)
        coords = torch.rand(1, 2, 3, 32, generator=g, dtype=torch.float64) * 40 - 4
        a = CorrBlockFast1D(f1, f2, 4, 4)(coords)
        b = CorrBlock1D(f1, f2, 4, 4)(coords).double()
        grads = [torch.autograd.grad(x.sum(), (f1, f2)) for x in (a, b)]
        print(torch.allclose(a, b, atol=1e-12), all(torch.allclose(u, v, atol=1e-10) for u, v in zip(*grads)))
        """, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True True"
