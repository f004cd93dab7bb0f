"""``CorrTaichi``: drop-in for the original Taichi correlation layer."""

from __future__ import annotations

from torch import Tensor, nn

from . import _op
from ._geometry import as_int, prepare_inputs, legacy_geometry


class CorrTaichi(nn.Module):
    """The original Taichi layer's API: ``CorrTaichi(max_disp, dila_patch)``.

    With ``P = 2 * max_disp // dila_patch + 1`` the output of ``(x0, x1)`` of shape ``(B, C, H, W)``
    is ``(B, P*P, H, W)``; channel ``u*P + v`` holds ``sum_c x0[b, c, y, x] * x1pad[b, c, y + u*dila_patch,
    x + v*dila_patch]`` where ``x1pad`` is ``x1`` zero-padded by ``max_disp`` on every side.  When
    ``2 * max_disp`` is not a multiple of ``dila_patch`` the displacements are not centred (they run
    from ``-max_disp`` in steps of ``dila_patch``), exactly as in the original.

    FlowNetC uses ``CorrTaichi(max_disp=20, dila_patch=2)`` (441 channels).

    Example:
        >>> import torch
        >>> from corr_taichi import CorrTaichi
        >>> CorrTaichi(max_disp=4, dila_patch=2)(torch.randn(1, 8, 10, 12), torch.randn(1, 8, 10, 12)).shape
        torch.Size([1, 25, 10, 12])
    """

    def __init__(self, max_disp: int, dila_patch: int = 1) -> None:
        super().__init__()
        self.max_disp = as_int(max_disp, "CorrTaichi: max_disp", 0)
        self.dila_patch = as_int(dila_patch, "CorrTaichi: dila_patch", 1)
        self.patch_size = 2 * self.max_disp // self.dila_patch + 1

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        x0, x1 = prepare_inputs(x0, x1, "CorrTaichi")
        batch, _, height, width = x0.shape
        geometry = legacy_geometry(height, width, self.max_disp, self.dila_patch)
        return _op.apply(x0, x1, geometry).view(batch, self.patch_size * self.patch_size, height, width)

    def extra_repr(self) -> str:
        return f"max_disp={self.max_disp}, dila_patch={self.dila_patch}"
