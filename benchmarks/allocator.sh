#!/usr/bin/env bash
# PWC level 2 and FlowNetC in the benchmark tool with glibc's default allocator settings and with freed memory kept
# by the allocator (MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ at 10^9), alternating, three times.
# Run: bash benchmarks/allocator.sh [python]   (output in benchmarks/allocator.txt)
set -euo pipefail
PY=${1:-python}
for round in 1 2 3; do
    "$PY" -m corr_taichi.bench --configs pwc2 flownetc --impl corr_taichi --repeats 9 | grep -E "pwc2|flownetc" \
        | sed 's/^/default: /'
    MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000 \
        "$PY" -m corr_taichi.bench --configs pwc2 flownetc --impl corr_taichi --repeats 9 | grep -E "pwc2|flownetc" \
        | sed 's/^/kept:    /'
done
