#!/usr/bin/env bash
# Fetch into .whl/ what scripts/gpu_bench.sh carries to the GPU machine (Python 3.12, x86-64,
# no network there): the platformdirs wheel and hnswlib's source (PyPI has no hnswlib wheel;
# gpu_install.sh builds it there). Both are small (~100 KB and ~40 KB). .whl/ is in
# .gitignore; never commit wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl

python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl platformdirs==4.14.9
# A source distribution: pip prepares its metadata here (fetching its build requirements).
python3 -m pip download --no-deps --no-binary=hnswlib -d .whl hnswlib==0.8.0
ls -l .whl
