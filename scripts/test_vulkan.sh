#!/usr/bin/env bash
# The correctness tests (forward and backward against the references, gradcheck, every API) on
# Taichi's Vulkan backend, which exercises the GPU code generator (SPIR-V).  Without a GPU, Mesa's
# lavapipe provides a Vulkan device on the CPU: apt-get install mesa-vulkan-drivers libvulkan1.
set -euo pipefail
PY=${1:-.venv/bin/python}
SEED=${2:-$RANDOM}  # the test order (pytest-randomly)
if ! ENABLE_TAICHI_HEADER_PRINT=0 "$PY" -c \
    "import sys, taichi as ti; sys.exit(0 if ti.lang.misc.is_arch_supported(ti.vulkan) else 1)" 2>/dev/null
then
    echo "Vulkan pass SKIPPED: no Vulkan device (install mesa-vulkan-drivers libvulkan1 for lavapipe)"
    exit 0
fi
echo "Vulkan pass: tests/test_core.py tests/test_gpu_tiles.py tests/test_compat.py tests/test_stereo.py tests/test_stereo_volumes.py (but their ONNX exports and torch.compile runs), the split calls and the tests of tests/test_flow_lookup.py marked vulkan, with CORR_TAICHI_ARCH=vulkan"
echo "Vulkan pass test order seed: $SEED"
# The ONNX exports (the decomposition, in onnxruntime) and torch.compile (which wraps the same op) test
# no GPU code; the CPU pass runs them.
CORR_TAICHI_ARCH=vulkan "$PY" -m pytest -q -n auto -p randomly --randomly-seed="$SEED" -k "not onnx and not torch_compile" \
    tests/test_core.py tests/test_gpu_tiles.py tests/test_compat.py tests/test_stereo.py tests/test_stereo_volumes.py \
    "tests/test_reliability.py::test_calls_split_below_the_index_limit_match_the_reference"
# The flow lookup's kernels compile for tens of seconds each here: the tests marked `vulkan` cover three
# configurations, in one process (two would compile the same ones side by side).
CORR_TAICHI_ARCH=vulkan "$PY" -m pytest -q -n 0 -p randomly --randomly-seed="$SEED" tests/test_flow_lookup.py -m vulkan
