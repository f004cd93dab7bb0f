"""Drop-in for NVIDIA flownet2-pytorch's ``correlation_package.correlation``.

Semantics of the official CUDA kernels: both inputs zero-padded by ``pad_size``; with
``kernel_rad = (kernel_size - 1) // 2``, ``border = kernel_rad + max_displacement``,
``disp_rad = max_displacement // stride2`` and ``D = 2*disp_rad + 1`` the output is
``(B, D*D, oH, oW)``, ``oH = ceil((H + 2*pad_size - 2*border) / stride1)``; the kernel window is
centred at padded position ``(oy*stride1 + max_displacement, ox*stride1 + max_displacement)``, the
displaced window adds ``(tj*stride2, ti*stride2)``, channel ``(tj + disp_rad)*D + (ti + disp_rad)``,
and the sum is divided by ``kernel_size**2 * C``.
"""

from __future__ import annotations

from torch import Tensor, nn

from .. import _op
from .._geometry import ANY_SIZE, as_int, prepare_inputs, flownet2_geometry

__all__ = ["Correlation", "CorrelationFunction"]

_API = "flownet2 Correlation"


def _checked_params(pad_size, kernel_size, max_displacement, stride1, stride2, corr_multiply) -> tuple[int, ...]:
    params = (
        as_int(pad_size, f"{_API}: pad_size", 0),
        as_int(kernel_size, f"{_API}: kernel_size"),
        as_int(max_displacement, f"{_API}: max_displacement", 0),
        as_int(stride1, f"{_API}: stride1", 1),
        as_int(stride2, f"{_API}: stride2", 1),
    )
    if params[1] < 1 or params[1] % 2 == 0:
        raise ValueError(f"{_API}: kernel_size must be odd and >= 1 (the window is centred), got {params[1]}")
    if as_int(corr_multiply, f"{_API}: corr_multiply") != 1:
        raise NotImplementedError(
            f"{_API}: corr_multiply must be 1 (the official kernels only multiply), got {corr_multiply}"
        )
    flownet2_geometry(ANY_SIZE, ANY_SIZE, *params)
    return params


def _correlate(input1: Tensor, input2: Tensor, params: tuple[int, ...]) -> Tensor:
    input1, input2 = prepare_inputs(input1, input2, _API)
    batch, channels, height, width = input1.shape
    geometry = flownet2_geometry(height, width, *params)
    kernel_size = params[1]
    scale = 1.0 / (kernel_size * kernel_size * channels) if channels else 1.0
    out = _op.apply(input1, input2, geometry, scale)
    return out.view(batch, geometry.patch_h * geometry.patch_w, geometry.out_h, geometry.out_w)


class CorrelationFunction:
    """``CorrelationFunction.apply(input1, input2, pad_size, kernel_size, max_displacement, stride1,
    stride2, corr_multiply)``, as in flownet2-pytorch (differentiable)."""

    @staticmethod
    def apply(
        input1: Tensor,
        input2: Tensor,
        pad_size: int = 3,
        kernel_size: int = 3,
        max_displacement: int = 20,
        stride1: int = 1,
        stride2: int = 2,
        corr_multiply: int = 1,
    ) -> Tensor:
        params = _checked_params(pad_size, kernel_size, max_displacement, stride1, stride2, corr_multiply)
        return _correlate(input1, input2, params)


class Correlation(nn.Module):
    """``Correlation(pad_size, kernel_size, max_displacement, stride1, stride2, corr_multiply)``.

    FlowNetC: ``Correlation(pad_size=20, kernel_size=1, max_displacement=20, stride1=1, stride2=2)``
    gives ``(B, 441, H, W)``.  The official defaults (``kernel_size=0``) are kept for signature
    compatibility but are refused: the kernel size must be odd and at least 1.
    """

    def __init__(
        self,
        pad_size: int = 0,
        kernel_size: int = 0,
        max_displacement: int = 0,
        stride1: int = 1,
        stride2: int = 2,
        corr_multiply: int = 1,
    ) -> None:
        super().__init__()
        self._params = _checked_params(pad_size, kernel_size, max_displacement, stride1, stride2, corr_multiply)
        self.pad_size, self.kernel_size, self.max_displacement, self.stride1, self.stride2 = self._params
        self.corr_multiply = corr_multiply

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        return _correlate(input1, input2, self._params)
