"""ONNX export: the registered op decomposed into standard ONNX operators.

ONNX has no correlation operator, so a model containing the layer is exported through
``torch.export`` with each op replaced by its pure-PyTorch decomposition (:mod:`corr_taichi.reference`):
the correlation (and so ``correlation1d`` and ``groupwise_correlation1d``) as Pad, Mul, ReduceSum,
Concat and a grouped Conv for the kernel window; the 1-D lookups and the 2-D flow-guided lookup as
Floor, GatherElements, Mul, ReduceSum and the bilinear blend.  onnxruntime, TensorRT and friends run the result
without a plugin.

Example:
    >>> import torch, corr_taichi, corr_taichi.onnx
    >>> model = corr_taichi.Correlation(patch_size=3)
    >>> x = torch.randn(1, 4, 8, 8)
    >>> program = corr_taichi.onnx.export(model, (x, x))   # doctest: +SKIP
    >>> program.save("corr.onnx")                          # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch

from . import _lookup1d, _lookup2d, _op  # noqa: F401  (register torch.ops.corr_taichi.*)
from ._geometry import Geometry
from .reference import correlation_from_geometry, correlation_lookup1d, correlation_lookup_levels, volume_lookup1d


def _compute(t: torch.Tensor) -> torch.dtype:
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def _decomposed(input1: torch.Tensor, input2: torch.Tensor, geometry, scale: float) -> torch.Tensor:
    compute = _compute(input1)
    out = correlation_from_geometry(input1.to(compute), input2.to(compute), Geometry.from_list(geometry), scale)
    return out.to(input1.dtype)


def _volume_lookup1d(volume: torch.Tensor, coords: torch.Tensor, radius: int) -> torch.Tensor:
    return volume_lookup1d(volume.to(_compute(volume)), coords, radius).to(volume.dtype)


def _correlation_lookup1d(fmap1, fmap2, coords, radius: int, scale: float) -> torch.Tensor:
    compute = _compute(fmap1)
    return correlation_lookup1d(fmap1.to(compute), fmap2.to(compute), coords, radius, scale).to(fmap1.dtype)


def _correlation_lookup(fmap1, fmap2, coords, radius: int, x_major: bool, scale: float) -> torch.Tensor:
    compute = _compute(fmap1)
    levels = [level.to(compute) for level in fmap2]
    return correlation_lookup_levels(fmap1.to(compute), levels, coords, radius, x_major, scale).to(fmap1.dtype)


def decompositions() -> dict:
    """Decomposition table replacing the ops with standard PyTorch operators."""
    ops = torch.ops.corr_taichi
    return {ops.correlation.default: _decomposed, ops.volume_lookup1d.default: _volume_lookup1d,
            ops.correlation_lookup1d.default: _correlation_lookup1d,
            ops.correlation_lookup.default: _correlation_lookup}


def export(model: torch.nn.Module, args: tuple, f: Any = None, **onnx_kwargs):
    """``torch.onnx.export`` of ``model(*args)`` with the correlation op decomposed.

    Returns what ``torch.onnx.export`` returns (an ``ONNXProgram``); with ``f`` given it is also
    written there.  Extra keyword arguments go to ``torch.onnx.export``.
    """
    program = torch.export.export(model, tuple(args))
    program = program.run_decompositions(decompositions())
    return torch.onnx.export(program, f=f, **onnx_kwargs)
