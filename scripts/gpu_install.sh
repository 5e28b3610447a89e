#!/usr/bin/env bash
# Install what .whl/ carries into /tmp/site on the GPU machine (no network there): the wheels
# (platformdirs), then hnswlib built from its source against the image's pybind11 and numpy.
# Skips what is already importable, so scripts/gpu_session.sh (in the background, during
# training) and scripts/gpu_bench.sh (after it, or alone) can both call it.
# Callers put /tmp/site on PYTHONPATH themselves.
set -u
say() { echo "== $(date +%T) $*"; }
[ -d /tmp/site ] && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
if python3 -c "import hnswlib, platformdirs" 2>/dev/null; then
    say "hnswlib and platformdirs already importable"
    exit 0
fi
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || say "installing the carried wheels failed"
fi
if ! python3 -c "import hnswlib" 2>/dev/null && compgen -G ".whl/hnswlib-*.tar.gz" >/dev/null; then
    say "building hnswlib from its source"
    timeout 240 python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
        --target /tmp/site .whl/hnswlib-*.tar.gz || say "hnswlib did not build"
fi
