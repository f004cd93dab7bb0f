"""Drop-in for RAFT-Stereo's ``corr_sampler`` CUDA extension (``sampler/sampler_kernel.cu``).

``forward(volume, coords, radius)`` returns ``[corr]`` and ``backward(volume, coords, corr_grad, radius)``
returns ``[volume_grad]``, as RAFT-Stereo's ``CorrSampler`` autograd function calls them:

* ``volume``: ``(B, H, W1, W2)``, any floating dtype (half computes in float32);
* ``coords``: ``(B, >=1, H, W1)``, the position along ``W2`` in channel 0;
* ``corr``: ``(B, 2 * radius + 1, H, W1)`` of ``volume``'s dtype, ``corr[:, k + r] = (1 - t) *
  volume[..., x0 + k] + t * volume[..., x0 + k + 1]`` with ``x0 = floor(x)``, ``t = x - x0``, zero outside.

:func:`corr_taichi.compat.install_aliases` makes ``import corr_sampler`` resolve here.
"""

from __future__ import annotations

from torch import Tensor

from .._geometry import check_volume_lookup1d, x_coordinates
from .._lookup1d import volume_lookup1d_backward_op, volume_lookup1d_op


def _x(volume: Tensor, coords: Tensor, radius: int, api: str) -> tuple[Tensor, int]:
    x = x_coordinates(coords, api)
    return x, check_volume_lookup1d(volume, x, radius, api)


def forward(volume: Tensor, coords: Tensor, radius: int) -> list[Tensor]:
    x, radius = _x(volume, coords, radius, "corr_sampler.forward")
    return [volume_lookup1d_op(volume, x, radius)]


def backward(volume: Tensor, coords: Tensor, corr_grad: Tensor, radius: int) -> list[Tensor]:
    x, radius = _x(volume, coords, radius, "corr_sampler.backward")
    want = (volume.shape[0], 2 * radius + 1, volume.shape[1], volume.shape[2])
    if not isinstance(corr_grad, Tensor) or tuple(corr_grad.shape) != want:
        raise ValueError(f"corr_sampler.backward: corr_grad must have shape {want}, got "
                         f"{tuple(getattr(corr_grad, 'shape', ()))}")
    return [volume_lookup1d_backward_op(corr_grad, volume, x, radius, True, False)[0]]
