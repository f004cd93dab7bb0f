"""Flow-guided correlation lookup: RAFT's, computed on the fly instead of from the all-pairs volume."""

from __future__ import annotations

from torch import Tensor

from . import _lookup2d
from ._geometry import check_lookup2d


def correlation_lookup(fmap1: Tensor, fmap2: Tensor, coords: Tensor, radius: int, order: str = "xy",
                       scale: float = 1.0) -> Tensor:
    r"""The correlation of each ``fmap1`` pixel with ``fmap2``, sampled bilinearly in a
    ``(2R + 1) x (2R + 1)`` window around a position per pixel (RAFT's lookup; ``alt_cuda_corr``'s
    values), without forming the ``(H1 W1) x (H2 W2)`` all-pairs volume.

    .. code-block:: text

        out[b, k, h, w] = scale * sum_c fmap1[b, c, h, w] * bilinear(fmap2[b, c], x + dx, y + dy)

    with ``(x, y) = coords[b, :, h, w]`` in pixels of ``fmap2`` (integers at pixel centres), ``dx, dy``
    in ``-R..R`` and zero padding outside ``fmap2`` (``grid_sample``'s bilinear sampling with
    ``align_corners=True``).  ``order="xy"`` (RAFT's) puts offset ``(dx, dy)`` in channel
    ``k = (dx + R) (2R + 1) + (dy + R)``; ``order="yx"`` (GMFlow's) in ``(dy + R) (2R + 1) + (dx + R)``.

    Differentiable in ``fmap1``, ``fmap2`` and ``coords`` (the exact derivative of the bilinear weights;
    at an integer coordinate the one from the right), deterministically.  Any floating dtype; float16 and
    bfloat16 accumulate in float32.  A coordinate that is not finite gives NaN outputs at its pixel (as
    ``grid_sample`` does) and adds nothing to the feature maps' gradients.

    Shape:
        - fmap1: ``(B, C, H1, W1)``, fmap2: ``(B, C, H2, W2)`` (any sizes; channels_last is read in place)
        - coords: ``(B, 2, H1, W1)``, x in channel 0 and y in channel 1
        - output: ``(B, (2 * radius + 1)**2, H1, W1)``, of ``fmap1``'s dtype

    Example:
        >>> import torch, corr_taichi
        >>> f1, f2 = torch.randn(1, 32, 6, 8), torch.randn(1, 32, 7, 9)
        >>> coords = torch.rand(1, 2, 6, 8) * 6
        >>> corr_taichi.correlation_lookup(f1, f2, coords, radius=4).shape
        torch.Size([1, 81, 6, 8])
    """
    radius, x_major = check_lookup2d(fmap1, fmap2, coords, radius, order, "correlation_lookup")
    return _lookup2d.correlation_lookup_op(fmap1, [fmap2], coords, radius, x_major, float(scale))
