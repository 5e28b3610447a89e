#!/usr/bin/env bash
# Fetch into .whl/ what scripts/gpu_bench.sh carries to the GPU machine (Python 3.12, x86-64,
# no network there): the platformdirs wheel (~20 KB) and the faiss-cpu wheel (abi3, ~19 MB;
# with scripts/gpu_session.sh's 38.5 MB pack that is ~58 MB of the 64 MiB a call may carry).
# .whl/ is in .gitignore; never commit wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl

python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl platformdirs==4.14.9 faiss-cpu==1.15.1
ls -l .whl
