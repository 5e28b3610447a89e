#!/usr/bin/env bash
# Install what .whl/ carries into /tmp/site on the GPU machine (no network there): the wheels
# (platformdirs and faiss-cpu, an abi3 wheel).
# Skips what is already importable, so scripts/gpu_session.sh (in the background, during
# training) and scripts/gpu_bench.sh (after it, or alone) can both call it.
# Callers put /tmp/site on PYTHONPATH themselves.
set -u
say() { echo "== $(date +%T) $*"; }
[ -d /tmp/site ] && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
if python3 -c "import faiss, platformdirs" 2>/dev/null; then
    say "faiss and platformdirs already importable"
    exit 0
fi
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || say "installing the carried wheels failed"
fi
