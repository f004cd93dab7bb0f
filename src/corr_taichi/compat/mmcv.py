"""Drop-in for ``mmcv.ops.Correlation``: spatial_correlation_sampler with ``patch_size = 2*max_displacement + 1``."""

from __future__ import annotations

from torch import Tensor, nn

from ..functional import IntPair, correlation
from .._geometry import ANY_SIZE, as_int, sampler_geometry

__all__ = ["Correlation"]


class Correlation(nn.Module):
    """``mmcv.ops.Correlation(kernel_size, max_displacement, stride, padding, dilation, dilation_patch)``.

    Output ``(B, P, P, oH, oW)`` with ``P = 2 * max_displacement + 1`` and
    ``oH = (H + 2*padding - dilation*(kernel_size-1) - 1) // stride + 1``.
    """

    def __init__(
        self,
        kernel_size: IntPair = 1,
        max_displacement: int = 1,
        stride: IntPair = 1,
        padding: IntPair = 0,
        dilation: IntPair = 1,
        dilation_patch: IntPair = 1,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.max_displacement = as_int(max_displacement, "mmcv Correlation: max_displacement", 0)
        sampler_geometry(ANY_SIZE, ANY_SIZE, kernel_size, 2 * self.max_displacement + 1, stride, padding,
                         dilation, dilation_patch, api="mmcv Correlation")
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.dilation_patch = dilation_patch

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        return correlation(
            input1, input2, self.kernel_size, 2 * self.max_displacement + 1, self.stride, self.padding,
            self.dilation, self.dilation_patch,
        )

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(kernel_size={self.kernel_size}, max_displacement={self.max_displacement}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"dilation_patch={self.dilation_patch})"
        )
