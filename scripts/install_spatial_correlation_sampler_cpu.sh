#!/usr/bin/env bash
# Build spatial_correlation_sampler 0.5.0 (PyPI sdist) against a CPU-only torch, for cross-checks.
# As shipped its setup always builds the CUDA extension and one source file includes a CUDA header
# unconditionally; this script switches the setup to CPU-only and guards that include.
# Usage: scripts/install_spatial_correlation_sampler_cpu.sh [python]   (default: .venv/bin/python)
set -euo pipefail
PY=${1:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" - "$work" <<'PYEOF'
import re, sys, tarfile, urllib.request, io
work = sys.argv[1]
index = urllib.request.urlopen("https://pypi.org/simple/spatial-correlation-sampler/").read().decode()
url = next(u for u in re.findall(r'href="([^"]+)"', index) if "spatial_correlation_sampler-0.5.0.tar.gz" in u)
tarfile.open(fileobj=io.BytesIO(urllib.request.urlopen(url).read())).extractall(work)
PYEOF
src="$work/spatial_correlation_sampler-0.5.0"
sed -i 's/^CPU_ONLY = False/CPU_ONLY = True/' "$src/setup.py"
sed -i 's|^#include <c10/cuda/CUDAGuard.h>|#ifdef USE_CUDA\n#include <c10/cuda/CUDAGuard.h>\n#endif|' \
    "$src/Correlation_Module/correlation_sampler.cpp"
"$PY" -m pip install --quiet --no-build-isolation --no-deps "$src"
"$PY" -c "import spatial_correlation_sampler; print('spatial_correlation_sampler', 'installed (CPU build)')"
