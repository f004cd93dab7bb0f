"""The core correlation op (spatial_correlation_sampler semantics) and its module."""

from __future__ import annotations

from torch import Tensor, nn

from . import _op
from ._geometry import ANY_SIZE, IntPair, prepare_inputs, sampler_geometry


def correlation(
    input1: Tensor,
    input2: Tensor,
    kernel_size: IntPair = 1,
    patch_size: IntPair = 1,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    dilation_patch: IntPair = 1,
) -> Tensor:
    r"""Correlation (cost volume) of two feature maps.

    Every parameter is an int or a pair ``(h, w)``.  For inputs of shape ``(B, C, H, W)`` the output
    has shape ``(B, pH, pW, oH, oW)`` with ``oH = (H + 2*padH - ((kH-1)*dilH + 1)) // strideH + 1``
    (likewise ``oW``) and

    .. code-block:: text

        out[b, ph, pw, h, w] = sum_c sum_{i<kH, j<kW} input1[b, c, u + i*dilH, v + j*dilW]
                                                     * input2[b, c, u + i*dilH + su, v + j*dilW + sv]

    where ``u = h*strideH - padH``, ``v = w*strideW - padW``, ``su = (ph - (pH-1)//2) * dilation_patchH``,
    ``sv = (pw - (pW-1)//2) * dilation_patchW``; a term counts only where both positions lie inside
    the image (zero padding).  The kernel window is anchored at its top-left; even patch sizes are
    allowed.  These are exactly the semantics of ``spatial_correlation_sampler``.

    Args:
        input1: ``(B, C, H, W)`` float32 or float64.
        input2: same shape, dtype and device as ``input1``.
        kernel_size: size of the window summed over around each pixel.
        patch_size: number of displacements along each axis.
        stride: output stride.
        padding: zero padding of both inputs.
        dilation: spacing of the kernel window's taps.
        dilation_patch: spacing of the displacements.

    Returns:
        ``(B, pH, pW, oH, oW)`` tensor of the inputs' dtype.

    Example:
        >>> import torch, corr_taichi
        >>> x1, x2 = torch.randn(2, 8, 12, 16), torch.randn(2, 8, 12, 16)
        >>> corr_taichi.correlation(x1, x2, patch_size=9, dilation_patch=2).shape
        torch.Size([2, 9, 9, 12, 16])
    """
    input1, input2 = prepare_inputs(input1, input2)
    geometry = sampler_geometry(
        input1.shape[2], input1.shape[3], kernel_size, patch_size, stride, padding, dilation, dilation_patch
    )
    return _op.apply(input1, input2, geometry)


class Correlation(nn.Module):
    """Module form of :func:`correlation`; holds no parameters.

    Example:
        >>> import torch, corr_taichi
        >>> layer = corr_taichi.Correlation(patch_size=(3, 5))
        >>> layer(torch.randn(1, 4, 6, 7), torch.randn(1, 4, 6, 7)).shape
        torch.Size([1, 3, 5, 6, 7])
    """

    def __init__(
        self,
        kernel_size: IntPair = 1,
        patch_size: IntPair = 1,
        stride: IntPair = 1,
        padding: IntPair = 0,
        dilation: IntPair = 1,
        dilation_patch: IntPair = 1,
    ) -> None:
        super().__init__()
        # Validate now (with a dummy size large enough) so a bad parameter fails at construction.
        sampler_geometry(ANY_SIZE, ANY_SIZE, kernel_size, patch_size, stride, padding, dilation, dilation_patch)
        self.kernel_size = kernel_size
        self.patch_size = patch_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.dilation_patch = dilation_patch

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        return correlation(
            input1, input2, self.kernel_size, self.patch_size, self.stride, self.padding,
            self.dilation, self.dilation_patch,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, patch_size={self.patch_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, dilation_patch={self.dilation_patch}"
        )
