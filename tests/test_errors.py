"""Every invalid call raises a clear Python exception naming the parameter and what is allowed."""

import numpy as np
import pytest
import torch

import corr_taichi
from corr_taichi import CorrTaichi
from corr_taichi.compat import flownet2, mmcv, spatial_correlation_sampler as scs

X = torch.randn(1, 2, 5, 6)


@pytest.mark.parametrize(
    "a,b,exc,match",
    [
        (X.numpy(), X, TypeError, "input1 must be a torch.Tensor"),
        (X, [1.0], TypeError, "input2 must be a torch.Tensor"),
        (X[0], X[0], ValueError, "4-D"),
        (X, torch.randn(1, 3, 5, 6), ValueError, "same shape"),
        (X, torch.randn(1, 2, 5, 7), ValueError, "same shape"),
        (X, X.double(), TypeError, "same dtype"),
        (X, X.to("meta"), ValueError, "same device"),
        (X.long(), X.long(), TypeError, "floating dtype"),
        (X.to(torch.complex64), X.to(torch.complex64), TypeError, "floating dtype"),
        (X.to(torch.float8_e4m3fn), X.to(torch.float8_e4m3fn), NotImplementedError,
         "float16, bfloat16, float32 and float64"),
    ],
)
def test_bad_tensors(a, b, exc, match):
    for call in (
        lambda: corr_taichi.correlation(a, b),
        lambda: CorrTaichi(1)(a, b),
        lambda: flownet2.Correlation(0, 1, 1, 1, 1)(a, b),
        lambda: mmcv.Correlation()(a, b),
    ):
        with pytest.raises(exc, match=match):
            call()


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(kernel_size=0), ValueError, "kernel_size must be an int or a pair"),
        (dict(patch_size=-1), ValueError, "patch_size"),
        (dict(stride=0), ValueError, "stride.*>= 1"),
        (dict(dilation=(1, 0)), ValueError, "dilation"),
        (dict(dilation_patch=0), ValueError, "dilation_patch"),
        (dict(padding=-1), ValueError, "padding.*>= 0"),
        (dict(kernel_size=1.5), TypeError, "kernel_size"),
        (dict(patch_size="3"), TypeError, "patch_size"),
        (dict(stride=None), TypeError, "stride"),
        (dict(padding=True), TypeError, "padding"),
        (dict(patch_size=(1, 2, 3)), ValueError, "patch_size.*length 3"),
        (dict(kernel_size=torch.tensor(3)), TypeError, "kernel_size"),
        (dict(kernel_size=7), ValueError, "output would be empty"),
        (dict(kernel_size=3, dilation=3), ValueError, "output would be empty"),
    ],
)
def test_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        corr_taichi.correlation(X, X, **kwargs)
    with pytest.raises(exc, match=match):
        scs.spatial_correlation_sample(X, X, **kwargs)
    if "output would be empty" not in match:  # needs the input size, so only at call time
        with pytest.raises(exc, match=match):
            corr_taichi.Correlation(**kwargs)


def test_numpy_integers_accepted():
    out = corr_taichi.correlation(X, X, patch_size=np.int64(3), kernel_size=(np.int32(1), 1))
    assert out.shape == (1, 3, 3, 5, 6)


@pytest.mark.parametrize(
    "args,exc,match",
    [
        ((-1,), ValueError, "max_disp"),
        ((2, 0), ValueError, "dila_patch"),
        ((2.0,), TypeError, "max_disp"),
    ],
)
def test_bad_corr_taichi(args, exc, match):
    with pytest.raises(exc, match=match):
        CorrTaichi(*args)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(), ValueError, "kernel_size must be odd"),  # the official defaults have kernel_size=0
        (dict(kernel_size=2, max_displacement=1), ValueError, "kernel_size must be odd"),
        (dict(kernel_size=1, max_displacement=1, corr_multiply=2), NotImplementedError, "corr_multiply"),
        (dict(kernel_size=1, max_displacement=-1), ValueError, "max_displacement"),
        (dict(kernel_size=1, stride1=0), ValueError, "stride1"),
        (dict(kernel_size=1, stride2=0), ValueError, "stride2"),
        (dict(kernel_size=1, pad_size=-2), ValueError, "pad_size"),
    ],
)
def test_bad_flownet2_at_construction(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        flownet2.Correlation(**kwargs)


def test_flownet2_empty_output():
    with pytest.raises(ValueError, match="output would be empty"):
        flownet2.Correlation(0, 1, 4, 1, 1)(X, X)


def test_bad_mmcv():
    with pytest.raises(ValueError, match="max_displacement"):
        mmcv.Correlation(max_displacement=-1)
    with pytest.raises(ValueError, match="stride"):
        mmcv.Correlation(stride=0)


def test_inputs_untouched_after_errors():
    a = X.clone()
    with pytest.raises(ValueError):
        corr_taichi.correlation(a, a, kernel_size=9)
    assert torch.equal(a, X)


def test_too_large_for_32_bit_indexing_is_refused_not_wrapped():
    # Larger calls are split by image and by patch row (tests/test_reliability.py); one row of 41
    # displacements of one 8192 x 8192 image (2.75e9 output elements) cannot be, and is refused
    # before anything is allocated.
    x = torch.zeros(1, 1, 1, 1).expand(1, 1, 8192, 8192)
    with pytest.raises(NotImplementedError, match="2\\*\\*31"):
        corr_taichi.correlation(x, x, patch_size=(1, 41))
