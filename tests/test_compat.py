"""Each drop-in API against a loop oracle written from that API's own definition."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import corr_taichi
from corr_taichi import CorrTaichi, reference
from corr_taichi.compat import flownet2, mmcv, spatial_correlation_sampler as scs

from . import oracle
from .cases import gradcheck


def pair(shape, seed, requires_grad=False):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(*shape, dtype=torch.float64, generator=gen, requires_grad=requires_grad)
    b = torch.randn(*shape, dtype=torch.float64, generator=gen, requires_grad=requires_grad)
    return a, b


@pytest.mark.parametrize("max_disp,dila", [(0, 1), (1, 1), (2, 1), (3, 2), (4, 2), (2, 3), (5, 3), (3, 4)])
def test_corr_taichi_matches_original_definition(max_disp, dila):
    x0, x1 = pair((2, 3, 6, 7), max_disp * 10 + dila)
    layer = CorrTaichi(max_disp, dila)
    got = layer(x0, x1)
    expected = oracle.corr_taichi_original(x0.numpy(), x1.numpy(), max_disp, dila)
    assert tuple(got.shape) == expected.shape
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_corr_taichi_uncentred_patch_differs_from_sampler():
    # 2*max_disp = 6 is not a multiple of 4: the original starts at -3 (-3, 1) where a centred patch
    # of 2 would give (0, 4).  The drop-in must reproduce the original, not the centred patch.
    x0, x1 = pair((1, 2, 8, 8), 0)
    got = CorrTaichi(3, 4)(x0, x1)
    centred = corr_taichi.correlation(x0, x1, patch_size=2, dilation_patch=4).reshape(1, 4, 8, 8)
    assert not torch.allclose(got, centred)


def test_corr_taichi_backward():
    x0, x1 = pair((1, 3, 5, 6), 4, requires_grad=True)
    assert gradcheck(lambda a, b: CorrTaichi(2, 2)(a, b), (x0, x1))


@pytest.mark.parametrize(
    "params,shape",
    [
        ((20, 1, 20, 1, 2), (1, 2, 6, 7)),  # FlowNetC
        ((0, 1, 2, 1, 1), (2, 3, 7, 8)),
        ((1, 3, 2, 1, 1), (1, 3, 8, 9)),
        ((3, 3, 4, 2, 2), (1, 2, 9, 8)),
        ((2, 5, 3, 3, 2), (2, 2, 10, 11)),
        ((0, 1, 0, 2, 1), (1, 3, 5, 6)),
        ((4, 1, 3, 1, 3), (1, 2, 5, 5)),
    ],
)
def test_flownet2_matches_official_definition(params, shape):
    x1, x2 = pair(shape, sum(params))
    layer = flownet2.Correlation(*params)
    got = layer(x1, x2)
    expected = oracle.flownet2(x1.numpy(), x2.numpy(), *params)
    assert tuple(got.shape) == expected.shape
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        flownet2.CorrelationFunction.apply(x1, x2, *params).numpy(), expected, rtol=1e-12, atol=1e-12
    )


def test_flownet2_flownetc_shape_and_gradcheck():
    layer = flownet2.Correlation(pad_size=20, kernel_size=1, max_displacement=20, stride1=1, stride2=2)
    x1, x2 = pair((1, 2, 12, 16), 1)
    assert layer(x1.float(), x2.float()).shape == (1, 441, 12, 16)
    a, b = pair((1, 2, 6, 7), 2, requires_grad=True)
    assert gradcheck(lambda u, v: flownet2.Correlation(2, 3, 2, 2, 1)(u, v), (a, b))


@pytest.mark.parametrize(
    "cfg",
    [
        dict(),
        dict(kernel_size=3, max_displacement=2, stride=2, padding=1, dilation=2, dilation_patch=2),
        dict(kernel_size=(1, 3), max_displacement=3, stride=(1, 2), padding=(0, 2)),
    ],
)
def test_mmcv_matches_sampler_definition(cfg):
    x1, x2 = pair((2, 3, 8, 9), 5)
    got = mmcv.Correlation(**cfg)(x1, x2)
    md = cfg.get("max_displacement", 1)
    sampler_cfg = {k: v for k, v in cfg.items() if k != "max_displacement"}
    expected = oracle.sampler(x1.numpy(), x2.numpy(), patch_size=2 * md + 1, **sampler_cfg)
    assert tuple(got.shape) == expected.shape
    assert got.shape[1] == got.shape[2] == 2 * md + 1
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_spatial_correlation_sampler_api():
    x1, x2 = pair((2, 3, 7, 9), 8, requires_grad=True)
    cfg = dict(kernel_size=2, patch_size=(3, 4), stride=(1, 2), padding=1, dilation=(2, 1), dilation_patch=(1, 2))
    got = scs.spatial_correlation_sample(x1, x2, **cfg)
    positional = scs.spatial_correlation_sample(x1, x2, 2, (3, 4), (1, 2), 1, (2, 1), (1, 2))
    module = scs.SpatialCorrelationSampler(**cfg)(x1, x2)
    expected = oracle.sampler(x1.detach().numpy(), x2.detach().numpy(), **cfg)
    for out in (got, positional, module):
        np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(got.sum(), (x1, x2))
    expected_grads = torch.autograd.grad(reference.correlation(x1, x2, **cfg).sum(), (x1, x2))
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e)


SEED_SNIPPET = textwrap.dedent(
    """
    import torch
    import taichi as ti
    from corr_taichi import CorrTaichi
    if torch.cuda.is_available():
        device = torch.device("cuda:0")
        ti.init(arch=ti.cuda, device_memory_GB=0.5)
    else:
        device = torch.device("cpu")
        ti.init(arch=ti.cpu)
    # input tensor shape
    B, C, H, W = (4, 256, 48, 64)
    # correlation config (same as FlowNetC)
    max_displacement = 20
    stride2 = 2
    kernel = CorrTaichi(
        max_disp=max_displacement,
        dila_patch=stride2
    )
    x0 = torch.randn((B, C, H, W), device=device, requires_grad=True)
    x1 = torch.randn_like(x0, requires_grad=True)
    corr: torch.Tensor = kernel(x0, x1)
    print("[INFO] Input tensor size: {}".format(x0.size())) # (4, 256, 48, 64)
    print("[INFO] Output tensor size: {}".format(corr.size())) # (4, 441, 48, 64)
    """
)


def test_seed_readme_snippet_runs_unchanged():
    result = subprocess.run([sys.executable, "-c", SEED_SNIPPET], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "[INFO] Output tensor size: torch.Size([4, 441, 48, 64])" in result.stdout
