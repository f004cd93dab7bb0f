"""Drop-in for GwcNet's group-wise correlation (``models/submodule.py``), also used by ACVNet, CFNet,
PCWNet and IGEV-Stereo.

* ``groupwise_correlation(fea1, fea2, num_groups)``: ``(B, G, H, W)``, the mean over each group's
  ``C / G`` channels of ``fea1 * fea2``;
* ``build_gwc_volume(refimg_fea, targetimg_fea, maxdisp, num_groups)``: ``(B, G, maxdisp, H, W)``, at
  disparity ``d`` (``0..maxdisp - 1``) the group-wise correlation of the reference at ``x`` with the
  target at ``x - d``, zero for ``x < d``.

Both run on :func:`corr_taichi.groupwise_correlation1d`: no Python loop over disparities and no
per-disparity product tensor, forward or backward.
"""

from __future__ import annotations

from torch import Tensor

from .._geometry import as_int
from ..stereo import groupwise_correlation1d


def groupwise_correlation(fea1: Tensor, fea2: Tensor, num_groups: int) -> Tensor:
    return groupwise_correlation1d(fea1, fea2, 0, num_groups)[:, :, 0]


def build_gwc_volume(refimg_fea: Tensor, targetimg_fea: Tensor, maxdisp: int, num_groups: int) -> Tensor:
    maxdisp = as_int(maxdisp, "build_gwc_volume: maxdisp", 1)
    return groupwise_correlation1d(refimg_fea, targetimg_fea, maxdisp - 1, num_groups)
