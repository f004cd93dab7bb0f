"""RAFT's correlation block on the flow-guided lookup, without the all-pairs volume.

RAFT correlates every pixel of ``fmap1`` with every pixel of ``fmap2``
(``corr = <fmap1[:, :, h1, w1], fmap2[:, :, h2, w2]> / sqrt(C)``, an ``(H W)**2`` volume), averages the
volume over ``(h2, w2)`` into ``num_levels`` levels (2 x 2 blocks, floor), and at every refinement
iteration samples level ``i`` bilinearly in a ``(2R + 1)**2`` window around ``coords / 2**i``.  By
linearity, level ``i`` of the volume is the correlation with ``fmap2`` average-pooled ``i`` times, so
here only ``fmap2`` is pooled and each lookup computes its ``(2R + 2)**2`` dot products per pixel on
the fly (:func:`corr_taichi.correlation_lookup`): memory of the feature maps and the output, not of the
volume, and the same values.

* :class:`CorrBlock` -- RAFT's ``core/corr.py`` ``CorrBlock``: build from the feature maps, call with
  the coordinates;
* :class:`TorchvisionCorrBlock` -- the ``corr_block`` of ``torchvision.models.optical_flow.raft_large``
  and ``raft_small`` (``build_pyramid``, ``index_pyramid``, ``out_channels``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _lookup2d
from ._geometry import as_int, check_feature_maps2d, check_lookup2d, lookup_radius


def _pyramid(fmap2: Tensor, num_levels: int) -> list[Tensor]:
    """``fmap2`` and its ``num_levels - 1`` average-pooled halvings (2 x 2, stride 2, floor), each
    channels_last so that every lookup reads it in place."""
    levels = [fmap2.contiguous(memory_format=torch.channels_last)]
    for _ in range(num_levels - 1):
        levels.append(F.avg_pool2d(levels[-1], 2, stride=2).contiguous(memory_format=torch.channels_last))
    return levels


def _sqrt_channels(channels: int) -> float:
    """``sqrt(C)`` as RAFT and torchvision divide by it: ``torch.sqrt`` of a float32 tensor, rounded to
    float32 (so that float64 runs reproduce them exactly too)."""
    return float(torch.sqrt(torch.tensor(float(channels), dtype=torch.float32)))


def _lookup_pyramid(fmap1: Tensor, levels: list[Tensor], coords: Tensor, radius: int, api: str) -> Tensor:
    """The level-major concatenation of each level's lookup at ``coords / 2**i``, divided by ``sqrt(C)``, in
    one call (validated once: the levels are ``fmap2``'s pooled copies)."""
    check_lookup2d(fmap1, levels[0], coords, radius, "xy", api)
    return _lookup2d.correlation_lookup_op(fmap1, levels, coords, radius, True, 1.0 / _sqrt_channels(fmap1.shape[1]))


class CorrBlock:
    """RAFT's ``CorrBlock`` (``core/corr.py``): the same output, without the all-pairs volume.

    Shape:
        - fmap1: ``(B, C, H1, W1)``, fmap2: ``(B, C, H2, W2)``
        - coords (call): ``(B, 2, H1, W1)``, absolute positions in ``fmap2`` (x, y)
        - output: ``(B, num_levels * (2 * radius + 1)**2, H1, W1)``, float32 (RAFT's ``.float()``),
          level-major, each level in RAFT's x-offset-major order

    Example:
        >>> import torch
        >>> from corr_taichi.raft import CorrBlock
        >>> f1, f2 = torch.randn(1, 64, 16, 24), torch.randn(1, 64, 16, 24)
        >>> block = CorrBlock(f1, f2, num_levels=4, radius=4)
        >>> ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(24.0), indexing="ij")
        >>> block(torch.stack([xs, ys])[None]).shape
        torch.Size([1, 324, 16, 24])
    """

    def __init__(self, fmap1: Tensor, fmap2: Tensor, num_levels: int = 4, radius: int = 4) -> None:
        api = "raft.CorrBlock"
        self.num_levels = as_int(num_levels, f"{api}: num_levels", 1)
        self.radius = lookup_radius(radius, api)
        check_feature_maps2d(fmap1, fmap2, api)
        self.fmap1 = fmap1.contiguous(memory_format=torch.channels_last)
        self.pyramid = _pyramid(fmap2, self.num_levels)

    def __call__(self, coords: Tensor) -> Tensor:
        return _lookup_pyramid(self.fmap1, self.pyramid, coords, self.radius, "raft.CorrBlock").float()


class TorchvisionCorrBlock(torch.nn.Module):
    """The ``corr_block`` of torchvision's RAFT (``torchvision.models.optical_flow.raft``), without the
    all-pairs volume: ``build_pyramid(fmap1, fmap2)`` keeps ``fmap1`` and the pooled ``fmap2``,
    ``index_pyramid(centroids_coords)`` looks them up.

    Pass it to torchvision's builders: ``raft_large(weights=..., corr_block=TorchvisionCorrBlock())``.

    Shape:
        - fmap1, fmap2 (``build_pyramid``): ``(B, C, H, W)``, of one shape
        - centroids_coords (``index_pyramid``): ``(B, 2, H, W)``
        - output: ``(B, out_channels, H, W)``, ``out_channels = num_levels * (2 * radius + 1)**2``, of the
          feature maps' dtype

    Example:
        >>> import torch
        >>> from corr_taichi.raft import TorchvisionCorrBlock
        >>> block = TorchvisionCorrBlock(num_levels=4, radius=4)
        >>> f1, f2 = torch.randn(1, 32, 16, 16), torch.randn(1, 32, 16, 16)
        >>> block.build_pyramid(f1, f2)
        >>> block.index_pyramid(torch.rand(1, 2, 16, 16) * 15).shape
        torch.Size([1, 324, 16, 16])
    """

    def __init__(self, *, num_levels: int = 4, radius: int = 4) -> None:
        super().__init__()
        self.num_levels = as_int(num_levels, "raft.TorchvisionCorrBlock: num_levels", 1)
        self.radius = lookup_radius(radius, "raft.TorchvisionCorrBlock")
        self.out_channels = self.num_levels * (2 * self.radius + 1) ** 2
        self.fmap1: Tensor | None = None
        self.pyramid: list[Tensor] = []

    def build_pyramid(self, fmap1: Tensor, fmap2: Tensor) -> None:
        check_feature_maps2d(fmap1, fmap2, "raft.TorchvisionCorrBlock")
        if fmap1.shape != fmap2.shape:
            raise ValueError(f"raft.TorchvisionCorrBlock: fmap1 and fmap2 must have one shape, got "
                             f"{tuple(fmap1.shape)} and {tuple(fmap2.shape)}")
        smallest = 2 ** self.num_levels
        if min(fmap1.shape[-2:]) < smallest:
            raise ValueError(f"raft.TorchvisionCorrBlock: the feature maps' H and W must be at least {smallest} "
                             f"for {self.num_levels} levels, got {tuple(fmap1.shape)}")
        self.fmap1 = fmap1.contiguous(memory_format=torch.channels_last)
        self.pyramid = _pyramid(fmap2, self.num_levels)

    def index_pyramid(self, centroids_coords: Tensor) -> Tensor:
        if self.fmap1 is None:
            raise RuntimeError("raft.TorchvisionCorrBlock: call build_pyramid before index_pyramid")
        return _lookup_pyramid(self.fmap1, self.pyramid, centroids_coords, self.radius, "raft.TorchvisionCorrBlock")
