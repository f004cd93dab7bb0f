"""RAFT-Stereo's correlation block, ``CorrBlock1D``, on this package's 1-D lookups.

RAFT-Stereo (and IGEV-Stereo's lookup) correlates every left pixel with every right pixel of its row,
``corr[b, h, x1, x2] = <fmap1[b, :, h, x1], fmap2[b, :, h, x2]> / sqrt(C)``, averages that volume along
``x2`` into ``num_levels`` levels (pairs of columns, floor), and at every refinement iteration samples
level ``i`` linearly at ``x / 2**i + k`` for ``k = -radius..radius`` (zero outside).  Here:

* ``mode="volume"``: the volume by one batched matrix product (the fastest route), pooled, and looked up
  with :func:`corr_taichi.volume_lookup1d` (RAFT-Stereo's ``corr_sampler``, without a CUDA build);
* ``mode="on_the_fly"``: the right features pooled instead (the same values, by linearity) and each
  lookup's ``2 * radius + 2`` dot products computed per pixel by :func:`corr_taichi.correlation_lookup1d`:
  the ``W1 x W2`` volume is never formed.

Both are differentiable in ``fmap1`` and ``fmap2`` (and ``coords``), deterministically.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._geometry import as_int, check_feature_pair, x_coordinates
from .stereo import correlation_lookup1d, volume_lookup1d

MODES = ("volume", "on_the_fly")


def _halve_columns(t: Tensor) -> Tensor:
    """Average pairs of columns of the last dimension (``avg_pool`` with kernel and stride 2, floor)."""
    width = t.shape[-1] // 2
    return t[..., : 2 * width].unflatten(-1, (width, 2)).mean(-1)


class CorrBlock1D:
    """RAFT-Stereo's ``CorrBlock1D``: build from the two feature maps, then call with coordinates.

    Shape:
        - fmap1: ``(B, C, H, W1)``, fmap2: ``(B, C, H, W2)``
        - coords (call): ``(B, >=1, H, W1)``, the x coordinate in channel 0 (RAFT-Stereo passes its
          ``(x, y)`` grid)
        - output: ``(B, num_levels * (2 * radius + 1), H, W1)``, float32, level-major, within a level
          ``k = -radius..radius``

    Example:
        >>> import torch
        >>> from corr_taichi.raft_stereo import CorrBlock1D
        >>> f1, f2 = torch.randn(1, 32, 6, 40), torch.randn(1, 32, 6, 40)
        >>> block = CorrBlock1D(f1, f2, num_levels=4, radius=4, mode="on_the_fly")
        >>> coords = torch.arange(40.0).expand(1, 1, 6, 40)
        >>> block(coords).shape
        torch.Size([1, 36, 6, 40])
    """

    def __init__(self, fmap1: Tensor, fmap2: Tensor, num_levels: int = 4, radius: int = 4,
                 mode: str = "volume") -> None:
        api = "raft_stereo.CorrBlock1D"
        self.num_levels = as_int(num_levels, f"{api}: num_levels", 1)
        self.radius = as_int(radius, f"{api}: radius", 0)
        if mode not in MODES:
            raise ValueError(f"{api}: mode must be one of {', '.join(MODES)}, got {mode!r}")
        check_feature_pair(fmap1, fmap2, api)
        self.mode = mode
        self.scale = 1.0 / math.sqrt(fmap1.shape[1])
        if mode == "volume":
            compute = torch.float32 if fmap1.dtype in (torch.float16, torch.bfloat16) else fmap1.dtype
            rows1 = fmap1.to(compute).permute(0, 2, 3, 1)  # (B, H, W1, C)
            rows2 = fmap2.to(compute).permute(0, 2, 1, 3)  # (B, H, C, W2)
            volume = torch.matmul(rows1, rows2) * self.scale  # (B, H, W1, W2)
            self.pyramid = [volume]
            for _ in range(self.num_levels - 1):
                self.pyramid.append(_halve_columns(self.pyramid[-1]))
        else:
            # channels-last once: each lookup then reads the maps in place instead of copying them
            layout = lambda t: t.contiguous(memory_format=torch.channels_last)  # noqa: E731
            self.fmap1 = layout(fmap1)
            self.pyramid = [layout(fmap2)]
            for _ in range(self.num_levels - 1):
                self.pyramid.append(layout(_halve_columns(self.pyramid[-1])))

    def __call__(self, coords: Tensor) -> Tensor:
        x = x_coordinates(coords, "raft_stereo.CorrBlock1D")
        out = []
        for level, stage in enumerate(self.pyramid):
            at = x / 2**level
            if self.mode == "volume":
                out.append(volume_lookup1d(stage, at, self.radius))
            else:
                out.append(correlation_lookup1d(self.fmap1, stage, at, self.radius, self.scale))
        return torch.cat(out, dim=1).float()
