"""Drop-in for the PyPI package ``spatial_correlation_sampler``: same names, signatures and outputs."""

from __future__ import annotations

from torch import Tensor

from ..functional import Correlation, IntPair, correlation

__all__ = ["spatial_correlation_sample", "SpatialCorrelationSampler"]


def spatial_correlation_sample(
    input1: Tensor,
    input2: Tensor,
    kernel_size: IntPair = 1,
    patch_size: IntPair = 1,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    dilation_patch: IntPair = 1,
) -> Tensor:
    """Same as :func:`corr_taichi.correlation`; output ``(B, pH, pW, oH, oW)``."""
    return correlation(input1, input2, kernel_size, patch_size, stride, padding, dilation, dilation_patch)


class SpatialCorrelationSampler(Correlation):
    """Same as :class:`corr_taichi.Correlation`, under the name model code imports."""
