"""Parameter normalisation and shape arithmetic: the one place every public API maps through.

Every API (``correlation``, ``CorrTaichi``, the spatial_correlation_sampler, flownet2 and mmcv
drop-ins) is reduced to one :class:`Geometry` and one scale factor.  The kernels, the pure-PyTorch
reference and the shape functions for fake tensors all read the same record, so the APIs cannot
drift apart.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from typing import Tuple, Union

import torch

IntPair = Union[int, Tuple[int, int]]

#: an input size large enough for any parameter set, to validate parameters before inputs exist.
ANY_SIZE = 1 << 20

def ceil_div(a: int, b: int) -> int:
    """``a / b`` rounded up (``b > 0``)."""
    return -(-a // b)


#: dtypes the op accepts.  float16 and bfloat16 are computed (and accumulated) in float32.
SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Which pixels of ``input1`` meet which pixels of ``input2``.

    For output pixel ``(h, w)``, kernel tap ``(i, j)`` and displacement ``(ph, pw)``::

        y1 = h * stride_h + origin_h + i * dilation_h
        y2 = y1 + first_h + ph * patch_dilation_h      (likewise x1, x2 along w)

    and ``out[b, ph, pw, h, w] = scale * sum_{c, i, j} input1[b, c, y1, x1] * input2[b, c, y2, x2]``,
    a term counting only where both positions lie inside the image.
    """

    kernel_h: int
    kernel_w: int
    dilation_h: int
    dilation_w: int
    stride_h: int
    stride_w: int
    origin_h: int
    origin_w: int
    patch_h: int
    patch_w: int
    patch_dilation_h: int
    patch_dilation_w: int
    first_h: int
    first_w: int
    out_h: int
    out_w: int

    def as_list(self) -> list[int]:
        return [getattr(self, field.name) for field in dataclasses.fields(self)]

    @classmethod
    def from_list(cls, values) -> "Geometry":
        return cls(*(int(v) for v in values))

    def output_shape(self, batch: int) -> tuple[int, int, int, int, int]:
        return (batch, self.patch_h, self.patch_w, self.out_h, self.out_w)


# --------------------------------------------------------------------------- validation helpers


def as_int(value, name: str, minimum: int | None = None) -> int:
    """``value`` as an int (bools and floats refused), at least ``minimum``."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool {value!r}")
    try:
        result = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}") from None
    if minimum is not None and result < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {result}")
    return result


def as_pair(value: IntPair, name: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each at least ``minimum``, as an ``(h, w)`` pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(
                f"{name} must be an int or a pair (h, w) of ints >= {minimum}, "
                f"got a sequence of length {len(value)}: {value!r}"
            )
        items = tuple(value)
    elif isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be an int or a pair (h, w) of ints, got a Tensor")
    else:
        items = (value, value)
    try:
        h, w = (as_int(v, name) for v in items)
    except TypeError:
        raise TypeError(
            f"{name} must be an int or a pair (h, w) of ints >= {minimum}, got {value!r}"
        ) from None
    if h < minimum or w < minimum:
        raise ValueError(f"{name} must be an int or a pair (h, w) of ints >= {minimum}, got {value!r}")
    return h, w


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device type autocast does not know (meta, ...)
        return False


def prepare_inputs(input1, input2, api: str = "correlation") -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the inputs (refusing anything the kernels cannot take, naming the argument and what is
    allowed) and apply ``torch.autocast``: inside an autocast region both are cast to its dtype."""
    for t in (input1, input2):
        if isinstance(t, torch.Tensor) and t.is_floating_point() and _autocast_enabled(t.device.type):
            autocast_dtype = torch.get_autocast_dtype(t.device.type)
            input1, input2 = (x.to(autocast_dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x
                              for x in (input1, input2))
            break
    check_inputs(input1, input2, api)
    return input1, input2


def check_inputs(input1, input2, api: str = "correlation") -> None:
    """Refuse anything the kernels cannot take, naming the argument and what is allowed."""
    for name, t in (("input1", input1), ("input2", input2)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{api}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(
                f"{api}: {name} must be a 4-D tensor (B, C, H, W), got {t.dim()}-D of shape {tuple(t.shape)}"
            )
        if t.is_complex() or not t.is_floating_point():
            raise TypeError(
                f"{api}: {name} must have a floating dtype (float16, bfloat16, float32 or float64), got {t.dtype}"
            )
        if t.dtype not in SUPPORTED_DTYPES:
            raise NotImplementedError(
                f"{api}: {name} has dtype {t.dtype}; supported dtypes are float16, bfloat16, float32 and float64"
            )
    if input1.shape != input2.shape:
        raise ValueError(
            f"{api}: input1 and input2 must have the same shape (B, C, H, W), "
            f"got {tuple(input1.shape)} and {tuple(input2.shape)}"
        )
    if input1.dtype != input2.dtype:
        raise TypeError(f"{api}: input1 and input2 must have the same dtype, got {input1.dtype} and {input2.dtype}")
    if input1.device != input2.device:
        raise ValueError(
            f"{api}: input1 and input2 must be on the same device, got {input1.device} and {input2.device}"
        )


def _check_tensor(t, name: str, shape: str, api: str) -> None:
    """``t`` is a tensor of a supported floating dtype with as many dimensions as ``shape`` names."""
    dims = shape.count(",") + 1
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{api}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != dims:
        raise ValueError(f"{api}: {name} must be a {dims}-D tensor {shape}, got {t.dim()}-D of shape {tuple(t.shape)}")
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{api}: {name} must have dtype float16, bfloat16, float32 or float64, got {t.dtype}")


def _check_same_device(api: str, **tensors: torch.Tensor) -> None:
    devices = {t.device for t in tensors.values()}
    if len(devices) > 1:
        raise ValueError(f"{api}: {', '.join(tensors)} must be on one device, got "
                         f"{', '.join(str(t.device) for t in tensors.values())}")


def _check_maps(fmap1, fmap2, api: str, shapes: tuple[str, str], leading: int, agree: str) -> None:
    """Two 4-D feature maps of ``shapes`` and one dtype that agree in their first ``leading`` sizes
    (named ``agree``)."""
    _check_tensor(fmap1, "fmap1", shapes[0], api)
    _check_tensor(fmap2, "fmap2", shapes[1], api)
    if fmap1.shape[:leading] != fmap2.shape[:leading]:
        raise ValueError(f"{api}: fmap1 and fmap2 must agree in {agree}, got {tuple(fmap1.shape)} and "
                         f"{tuple(fmap2.shape)}")
    if fmap1.dtype != fmap2.dtype:
        raise TypeError(f"{api}: fmap1 and fmap2 must have the same dtype, got {fmap1.dtype} and {fmap2.dtype}")


def check_feature_pair(fmap1, fmap2, api: str) -> None:
    """``fmap1`` ``(B, C, H, W1)`` and ``fmap2`` ``(B, C, H, W2)`` of one dtype, as a 1-D lookup takes them."""
    _check_maps(fmap1, fmap2, api, ("(B, C, H, W1)", "(B, C, H, W2)"), 3, "B, C and H")


def x_coordinates(coords, api: str):
    """The x coordinates ``(B, H, W1)`` of RAFT-Stereo's coordinate maps ``(B, >=1, H, W1)`` (channel 0)."""
    if not isinstance(coords, torch.Tensor) or coords.dim() != 4 or coords.shape[1] < 1:
        raise ValueError(f"{api}: coords must be a 4-D tensor (B, >=1, H, W1) with x in channel 0, got "
                         f"{getattr(coords, 'shape', coords)!r}")
    return coords[:, 0]


def check_lookup1d(fmap1, fmap2, coords, radius, api: str) -> int:
    """Validate a 1-D lookup on feature maps; returns the radius.  ``fmap1`` ``(B, C, H, W1)``, ``fmap2``
    ``(B, C, H, W2)`` of the same dtype, ``coords`` ``(B, H, W1)``."""
    check_feature_pair(fmap1, fmap2, api)
    _check_tensor(coords, "coords", "(B, H, W1)", api)
    want = (fmap1.shape[0], fmap1.shape[2], fmap1.shape[3])
    if tuple(coords.shape) != want:
        raise ValueError(f"{api}: coords must have shape (B, H, W1) = {want}, got {tuple(coords.shape)}")
    _check_same_device(api, fmap1=fmap1, fmap2=fmap2, coords=coords)
    return as_int(radius, f"{api}: radius", 0)


#: the output orders of the 2-D lookup: which offset varies slowest along the channels.
LOOKUP_ORDERS = ("xy", "yx")
#: the largest radius of the 2-D lookup: its kernels unroll the window's 2R + 2 columns at compile time
#: (RAFT and its successors use 3 or 4).
MAX_LOOKUP_RADIUS = 12


def check_feature_maps2d(fmap1, fmap2, api: str) -> None:
    """``fmap1`` ``(B, C, H1, W1)`` and ``fmap2`` ``(B, C, H2, W2)`` of one dtype and device, as the 2-D lookup
    takes them."""
    _check_maps(fmap1, fmap2, api, ("(B, C, H1, W1)", "(B, C, H2, W2)"), 2, "B and C")
    _check_same_device(api, fmap1=fmap1, fmap2=fmap2)


def check_lookup2d(fmap1, fmap2, coords, radius, order, api: str) -> tuple[int, bool]:
    """Validate a 2-D lookup: the feature maps (:func:`check_feature_maps2d`) and ``coords``
    ``(B, 2, H1, W1)`` of a floating dtype on their device.  Returns the radius and whether the order is
    x-major."""
    check_feature_maps2d(fmap1, fmap2, api)
    _check_tensor(coords, "coords", "(B, 2, H1, W1)", api)
    want = (fmap1.shape[0], 2, fmap1.shape[2], fmap1.shape[3])
    if tuple(coords.shape) != want:
        raise ValueError(f"{api}: coords must have shape (B, 2, H1, W1) = {want} (x in channel 0, y in 1), got "
                         f"{tuple(coords.shape)}")
    _check_same_device(api, fmap1=fmap1, coords=coords)
    if order not in LOOKUP_ORDERS:
        raise ValueError(f"{api}: order must be one of {', '.join(map(repr, LOOKUP_ORDERS))}, got {order!r}")
    return lookup_radius(radius, api), order == "xy"


def lookup_radius(radius, api: str) -> int:
    """The 2-D lookup's radius: an int in ``0..MAX_LOOKUP_RADIUS``."""
    radius = as_int(radius, f"{api}: radius", 0)
    if radius > MAX_LOOKUP_RADIUS:
        raise ValueError(f"{api}: radius must be an int in 0..{MAX_LOOKUP_RADIUS}, got {radius}")
    return radius


def check_volume_lookup1d(volume, coords, radius, api: str) -> int:
    """Validate a 1-D lookup in a volume ``(B, H, W1, W2)`` at ``coords`` ``(B, H, W1)``; returns the radius."""
    _check_tensor(volume, "volume", "(B, H, W1, W2)", api)
    _check_tensor(coords, "coords", "(B, H, W1)", api)
    if tuple(coords.shape) != tuple(volume.shape[:3]):
        raise ValueError(f"{api}: coords must have shape (B, H, W1) = {tuple(volume.shape[:3])}, got "
                         f"{tuple(coords.shape)}")
    _check_same_device(api, volume=volume, coords=coords)
    return as_int(radius, f"{api}: radius", 0)


def _check_output(out_h: int, out_w: int, height: int, width: int, api: str, what: str) -> None:
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"{api}: the output would be empty ({out_h} x {out_w}) for an input of {height} x {width}; "
            f"{what}"
        )


# --------------------------------------------------------------------------- the APIs' geometries


def sampler_geometry(
    height: int,
    width: int,
    kernel_size: IntPair = 1,
    patch_size: IntPair = 1,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    dilation_patch: IntPair = 1,
    api: str = "correlation",
) -> Geometry:
    """spatial_correlation_sampler semantics: kernel anchored at its top-left, patch centred at
    ``(patch - 1) // 2``."""
    kh, kw = as_pair(kernel_size, f"{api}: kernel_size", 1)
    ph, pw = as_pair(patch_size, f"{api}: patch_size", 1)
    sh, sw = as_pair(stride, f"{api}: stride", 1)
    pad_h, pad_w = as_pair(padding, f"{api}: padding", 0)
    dh, dw = as_pair(dilation, f"{api}: dilation", 1)
    dph, dpw = as_pair(dilation_patch, f"{api}: dilation_patch", 1)
    out_h = (height + 2 * pad_h - ((kh - 1) * dh + 1)) // sh + 1
    out_w = (width + 2 * pad_w - ((kw - 1) * dw + 1)) // sw + 1
    _check_output(
        out_h, out_w, height, width, api,
        "the dilated kernel_size, (kernel_size - 1) * dilation + 1, must not exceed the input size "
        "plus 2 * padding",
    )
    return Geometry(
        kh, kw, dh, dw, sh, sw, -pad_h, -pad_w, ph, pw, dph, dpw,
        -((ph - 1) // 2) * dph, -((pw - 1) // 2) * dpw, out_h, out_w,
    )


def legacy_geometry(height: int, width: int, max_disp: int, dila_patch: int) -> Geometry:
    """The original ``CorrTaichi``: input2 zero-padded by ``max_disp``, displacement ``u * dila_patch
    - max_disp`` for ``u < P = 2 * max_disp // dila_patch + 1``, output the input's size."""
    patch = 2 * max_disp // dila_patch + 1
    return Geometry(1, 1, 1, 1, 1, 1, 0, 0, patch, patch, dila_patch, dila_patch,
                    -max_disp, -max_disp, height, width)


def flownet2_geometry(
    height: int, width: int, pad_size: int, kernel_size: int, max_displacement: int, stride1: int, stride2: int
) -> Geometry:
    """NVIDIA flownet2-pytorch: kernel centred at padded ``(y * stride1 + max_displacement)``,
    displacements ``t * stride2`` for ``|t| <= max_displacement // stride2``."""
    api = "flownet2 Correlation"
    kernel_rad = (kernel_size - 1) // 2
    border = kernel_rad + max_displacement
    disp_rad = max_displacement // stride2
    out_h = math.ceil((height + 2 * pad_size - 2 * border) / stride1)
    out_w = math.ceil((width + 2 * pad_size - 2 * border) / stride1)
    _check_output(
        out_h, out_w, height, width, api,
        "the input size plus 2 * pad_size must exceed 2 * (max_displacement + (kernel_size - 1) // 2)",
    )
    origin = max_displacement - kernel_rad - pad_size
    size = 2 * disp_rad + 1
    return Geometry(
        kernel_size, kernel_size, 1, 1, stride1, stride1, origin, origin, size, size, stride2, stride2,
        -disp_rad * stride2, -disp_rad * stride2, out_h, out_w,
    )


def correlation1d_geometry(
    height: int, width: int, max_disp: int, kernel_size: IntPair = 1, stride: IntPair = 1, padding: IntPair = 0,
    dilation: IntPair = 1, both_directions: bool = False, api: str = "correlation1d",
) -> Geometry:
    """Displacement ``d`` (channel ``d``, or ``d + max_disp`` with ``both_directions``) pairs left ``x``
    with right ``x - d``: a one-row patch whose displacements run right to left."""
    max_disp = as_int(max_disp, f"{api}: max_disp", 0)
    if not isinstance(both_directions, bool):
        raise TypeError(f"{api}: both_directions must be a bool, got {both_directions!r}")
    as_pair(kernel_size, f"{api}: kernel_size", 1)
    base = sampler_geometry(height, width, kernel_size, 1, stride, padding, dilation, 1, api=api)
    count = 2 * max_disp + 1 if both_directions else max_disp + 1
    first = max_disp if both_directions else 0
    return dataclasses.replace(base, patch_w=count, patch_dilation_w=-1, first_w=first)
