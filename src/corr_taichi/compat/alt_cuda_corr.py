"""Drop-in for RAFT's ``alt_cuda_corr`` CUDA extension, on :func:`corr_taichi.correlation_lookup`.

``forward(fmap1, fmap2, coords, radius)`` and ``backward(fmap1, fmap2, coords, corr_grad, radius)``
with the extension's layouts: channels-last feature maps ``(B, H, W, C)``, ``N`` coordinate maps
``(B, N, H1, W1, 2)`` (x, y), and the correlation ``(B, N, (2R + 1)**2, H1, W1)`` in RAFT's
x-offset-major order, not divided by ``sqrt(C)``.  Model code calls both through its own
``autograd.Function`` or, like RAFT's ``AlternateCorrBlock``, the forward alone.

Differences from the extension, all widenings: every device Taichi runs on, not only CUDA; any channel
count (not only multiples of 32); float16, bfloat16 (computed in float32) and float64 besides float32;
and ``backward`` returns the exact coordinate gradient where the extension returns zeros.

Example:
    >>> import torch
    >>> from corr_taichi.compat import alt_cuda_corr
    >>> f1, f2 = torch.randn(1, 8, 10, 32), torch.randn(1, 8, 10, 32)
    >>> coords = torch.rand(1, 1, 8, 10, 2) * 8
    >>> corr, = alt_cuda_corr.forward(f1, f2, coords, 4)
    >>> corr.shape
    torch.Size([1, 1, 81, 8, 10])
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._geometry import check_feature_maps2d, check_lookup2d, lookup_radius
from .._lookup2d import correlation_lookup_backward_op, correlation_lookup_op

_API = "alt_cuda_corr"


def _planar(fmap1: Tensor, fmap2: Tensor, coords: Tensor, radius) -> tuple[Tensor, Tensor, Tensor, int]:
    """The extension's layouts as this package's (views, no copies), validated: ``(B, C, H, W)``
    channels_last feature maps, ``(N, B, 2, H1, W1)`` coordinates, and the radius."""
    for name, t, dims in (("fmap1", fmap1, 4), ("fmap2", fmap2, 4), ("coords", coords, 5)):
        if not isinstance(t, Tensor) or t.dim() != dims:
            shape = "(B, N, H1, W1, 2)" if name == "coords" else "(B, H, W, C)"
            raise ValueError(f"{_API}: {name} must be a {dims}-D tensor {shape}, got {getattr(t, 'shape', t)!r}")
    if coords.shape[-1] != 2:
        raise ValueError(f"{_API}: coords must be (B, N, H1, W1, 2), got {tuple(coords.shape)}")
    a, b, xy = fmap1.permute(0, 3, 1, 2), fmap2.permute(0, 3, 1, 2), coords.permute(1, 0, 4, 2, 3)
    if len(xy) == 0:
        check_feature_maps2d(a, b, _API)
        return a, b, xy, lookup_radius(radius, _API)
    return a, b, xy, check_lookup2d(a, b, xy[0], radius, "xy", _API)[0]


def forward(fmap1: Tensor, fmap2: Tensor, coords: Tensor, radius: int) -> list[Tensor]:
    """``[corr]``, ``corr`` of shape ``(B, N, (2R + 1)**2, H1, W1)`` and ``fmap1``'s dtype."""
    a, b, xy, radius = _planar(fmap1, fmap2, coords, radius)
    if len(xy) == 0:
        return [a.new_zeros(a.shape[0], 0, (2 * radius + 1) ** 2, *a.shape[2:])]
    return [torch.stack([correlation_lookup_op(a, [b], at, radius, True, 1.0) for at in xy], dim=1)]


def backward(fmap1: Tensor, fmap2: Tensor, coords: Tensor, corr_grad: Tensor, radius: int) -> list[Tensor]:
    """``[fmap1_grad, fmap2_grad, coords_grad]`` in the inputs' layouts (``(B, H, W, C)`` and
    ``(B, N, H1, W1, 2)``) and dtypes, for the output gradient ``corr_grad``."""
    a, b, xy, radius = _planar(fmap1, fmap2, coords, radius)
    want = (coords.shape[0], coords.shape[1], (2 * radius + 1) ** 2, *coords.shape[2:4])
    if not isinstance(corr_grad, Tensor) or tuple(corr_grad.shape) != want:
        raise ValueError(f"{_API}: corr_grad must have shape (B, N, (2R+1)**2, H1, W1) = {want}, got "
                         f"{getattr(corr_grad, 'shape', corr_grad)!r}")
    grad_a = grad_b = None
    grad_xy = []
    for n, at in enumerate(xy):
        ga, (gb,), gxy = correlation_lookup_backward_op(corr_grad[:, n], a, [b], at, radius, True, 1.0, True, True,
                                                        True)
        grad_a = ga if grad_a is None else grad_a + ga
        grad_b = gb if grad_b is None else grad_b + gb
        grad_xy.append(gxy)
    if grad_a is None:  # N == 0
        grad_a, grad_b = torch.zeros_like(a), torch.zeros_like(b)
    coords_grad = torch.stack(grad_xy, dim=0).permute(1, 0, 3, 4, 2) if grad_xy else torch.zeros_like(coords)
    return [grad_a.permute(0, 2, 3, 1).contiguous(), grad_b.permute(0, 2, 3, 1).contiguous(),
            coords_grad.contiguous()]
