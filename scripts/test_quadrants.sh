#!/usr/bin/env bash
# The core, drop-in (compat) and runtime tests again with quadrants, the optional second Taichi
# implementation, as the kernels' implementation (CORR_TAICHI_BACKEND=quadrants): on its CPU backend, and
# the core tests on its Vulkan backend where a Vulkan device exists (Mesa's lavapipe in CI).
set -euo pipefail
PY=${1:-.venv/bin/python}
SEED=${2:-$RANDOM}  # the test order (pytest-randomly)
if ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('quadrants') is None)"; then
    echo "quadrants pass SKIPPED: quadrants is not installed (pip install 'corr-taichi[quadrants]')"
    exit 0
fi
export CORR_TAICHI_BACKEND=quadrants
# torch.compile and the ONNX exports test no kernel, and gradcheck's thousands of launches test what the
# comparisons of every gradient with the reference's already do: the taichi pass runs them
echo "quadrants pass: tests/test_core.py tests/test_compat.py tests/test_runtime.py (but torch.compile, ONNX and gradcheck), seed $SEED"
"$PY" -m pytest -q -n auto -p randomly --randomly-seed="$SEED" -k "not onnx and not torch_compile and not gradcheck" \
    tests/test_core.py tests/test_compat.py tests/test_runtime.py
if ENABLE_QUADRANTS_HEADER_PRINT=0 "$PY" -c \
    "import sys, quadrants as ti; sys.exit(0 if ti.lang.misc.is_arch_supported(ti.vulkan) else 1)" 2>/dev/null
then
    echo "quadrants Vulkan pass: tests/test_core.py, seed $SEED"
    CORR_TAICHI_ARCH=vulkan "$PY" -m pytest -q -n auto -p randomly --randomly-seed="$SEED" \
        -k "not onnx and not torch_compile and not gradcheck" \
        tests/test_core.py
else
    echo "quadrants Vulkan pass SKIPPED: no Vulkan device (install mesa-vulkan-drivers libvulkan1 for lavapipe)"
fi
