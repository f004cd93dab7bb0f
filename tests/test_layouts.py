"""The CPU kernels' layout copies (``_layouts._transposed``) against the same copy written with torch."""

import pytest
import torch

from corr_taichi import _kernel_helpers, _layouts
from corr_taichi._runtime import ensure_runtime

from .cases import randn


@pytest.mark.parametrize("rows", [1, 3, 17, 33])
# planes of 1, 3, 5 and 8 whole blocks of TRANSPOSE_BLOCK (8) values, and one of 63 values (a torch copy)
@pytest.mark.parametrize("plane", [(1, 8), (3, 8), (5, 8), (4, 16), (7, 9)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_transpose_matches_torch(rows, plane, dtype):
    """``(B, M, *S)`` -> ``(B, *S, M')`` with ``M'`` whole vectors, zeros past ``M``: the Taichi transpose
    where the plane is whole blocks (an odd number of them included), a torch copy otherwise; the input
    is left as it was."""
    ensure_runtime(torch.device("cpu"))
    t = randn(2, rows, *plane, seed=rows * 100 + plane[0], dtype=dtype)
    before = t.clone()
    out = _layouts._transposed(t, dtype)
    padded = -(-rows // _kernel_helpers.LANES) * _kernel_helpers.LANES
    expected = torch.zeros(2, *plane, padded, dtype=dtype)
    for m in range(rows):
        expected[..., m] = t[:, m]
    assert out.shape == expected.shape
    assert torch.equal(out, expected)
    assert torch.equal(t, before)
