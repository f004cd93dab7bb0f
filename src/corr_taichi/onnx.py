"""ONNX export: the registered op decomposed into standard ONNX operators.

ONNX has no correlation operator, so a model containing the layer is exported through
``torch.export`` with the op replaced by its pure-PyTorch decomposition
(:func:`corr_taichi.reference.correlation_from_geometry`: Pad, Mul, ReduceSum, Concat and a grouped
Conv for the kernel window).  onnxruntime, TensorRT and friends run the result without a plugin.

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

from . import _op  # noqa: F401  (registers torch.ops.corr_taichi.*)
from ._geometry import Geometry
from .reference import correlation_from_geometry


def _decomposed(input1: torch.Tensor, input2: torch.Tensor, geometry, scale: float) -> torch.Tensor:
    dtype = input1.dtype
    compute = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    out = correlation_from_geometry(input1.to(compute), input2.to(compute), Geometry.from_list(geometry), scale)
    return out.to(dtype)


def decompositions() -> dict:
    """Decomposition table replacing the op with standard PyTorch operators."""
    return {torch.ops.corr_taichi.correlation.default: _decomposed}


def export(model: torch.nn.Module, args: tuple, f: Any = None, **onnx_kwargs):
    """``torch.onnx.export`` of ``model(*args)`` with the correlation op decomposed.

    Returns what ``torch.onnx.export`` returns (an ``ONNXProgram``); with ``f`` given it is also
    written there.  Extra keyword arguments go to ``torch.onnx.export``.
    """
    program = torch.export.export(model, tuple(args))
    program = program.run_decompositions(decompositions())
    return torch.onnx.export(program, f=f, **onnx_kwargs)
