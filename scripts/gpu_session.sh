#!/usr/bin/env bash
# Everything a lent GPU session does, in one call of the device tool:
#
#     .venv/bin/python scripts/make_gpu_pack.py     # here: .pack/caltech-train.pt (~38 MB)
#     bash scripts/gpu_wheels.sh                    # here, once: .whl/ (platformdirs, faiss-cpu)
#     device run: command "bash scripts/gpu_session.sh", carry [".pack", ".whl"], timeout_s 570
#
# 1. In the background, on the CPU: the carried wheels are installed (scripts/gpu_install.sh;
#    platformdirs and faiss-cpu) and the scan benchmark's photo sets are generated, while
# 2. the model trains on the GPU (training/gpu_build.py: copy branch, then semantic top; each
#    stage has a time budget) and writes gpu-model.safetensors + gpu-model.json to $OUT;
# 3. then scripts/gpu_bench.sh: the CUDA tests and benchmarks/bench_gpu.py (gpu.json to $OUT).
#
# Back here: scripts/finish_gpu_model.py turns $OUT's weights into a calibrated bundle;
# copy gpu.json to bench-results/ and run benchmarks/report.py.
# Budgets (seconds): COPY_S (default 170), SEMANTIC_S (80), BENCH_S (200).
set -u
export PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/gpu-session-out}"
mkdir -p "$OUT"
say() { echo "== $(date +%T) $*"; }
say "start"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || say "no nvidia-smi"

bash scripts/gpu_install.sh >"$OUT/wheels.log" 2>&1 &
wheels=$!

(
    python3 - <<'EOF'
import sys, time
from pathlib import Path
sys.path.insert(0, ".")
from benchmarks.bench_peers import SET_SIZES, generate_set
from benchmarks.bench_gpu import make_training_folder
t = time.time()
work = Path("build/bench-gpu")
for name, n in (("12mp", 400), ("1080p", 2000)):
    generate_set(work / name, n, SET_SIZES[name], seed=0, dup_fraction=0.0, workers=10)
    print(f"{name}: {n} photos after {time.time() - t:.0f} s", flush=True)
make_training_folder(work / "train", 1200, (320, 240), workers=10)
print(f"training folder after {time.time() - t:.0f} s", flush=True)
EOF
) >"$OUT/photos.log" 2>&1 &
photos=$!

say "training"
timeout $(( ${COPY_S:-170} + ${SEMANTIC_S:-80} + 120 )) python3 -m training.gpu_build --device cuda \
    --out "$OUT" --set copy_seconds=${COPY_S:-170} --set semantic_seconds=${SEMANTIC_S:-80} \
    --set koleo=${KOLEO:-3} 2>&1 | tee "$OUT/train.log"
say "training exit ${PIPESTATUS[0]}"

wait $wheels; say "wheels: $(tail -n 2 "$OUT/wheels.log" | tr '\n' ' ')"
wait $photos; say "photos: $(tail -n 3 "$OUT/photos.log" | tr '\n' ' ')"
GPU_BENCH_TOTAL=${BENCH_S:-200} bash scripts/gpu_bench.sh --train-steps 60
say "done"
