#!/usr/bin/env bash
# Build spatial_correlation_sampler 0.5.0 (PyPI sdist) against a CPU-only torch, for cross-checks.
# As shipped its setup always builds the CUDA extension and one source file includes a CUDA header
# unconditionally; this script switches the setup to CPU-only and guards that include.
# Usage: scripts/install_spatial_correlation_sampler_cpu.sh [python]   (default: .venv/bin/python)
set -euo pipefail
PY=${1:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The sdist, with pip download: from the index (and mirrors) that pip is configured with.  pip prepares
# an sdist's metadata by running its setup.py, which describes a CUDA extension that a CPU-only torch
# refuses to describe; for that step alone a stand-in torch.utils.cpp_extension (plain setuptools
# extensions, nothing is built) comes first on the path.
mkdir -p "$work/stand-in/torch/utils"
touch "$work/stand-in/torch/__init__.py" "$work/stand-in/torch/utils/__init__.py"
cat > "$work/stand-in/torch/utils/cpp_extension.py" <<'PYEOF'
from setuptools import Extension as CppExtension, Extension as CUDAExtension
from setuptools.command.build_ext import build_ext as BuildExtension
PYEOF
PYTHONPATH="$work/stand-in" "$PY" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
    --dest "$work" spatial-correlation-sampler==0.5.0
tar -xzf "$work"/spatial_correlation_sampler-0.5.0.tar.gz -C "$work"
src="$work/spatial_correlation_sampler-0.5.0"
sed -i 's/^CPU_ONLY = False/CPU_ONLY = True/' "$src/setup.py"
sed -i 's|^#include <c10/cuda/CUDAGuard.h>|#ifdef USE_CUDA\n#include <c10/cuda/CUDAGuard.h>\n#endif|' \
    "$src/Correlation_Module/correlation_sampler.cpp"
"$PY" -m pip install --quiet --no-build-isolation --no-deps "$src"
"$PY" -c "import spatial_correlation_sampler; print('spatial_correlation_sampler', 'installed (CPU build)')"
