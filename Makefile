# Lookalike — the two commands a user types: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   := build/sample-library
SAMPLE := resources/samples

.PHONY: run test bench bench-full bench-training bench-model bench-feedback demo venv model model-default gpu-pack clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

venv: $(STAMP)

# Open the window on the bundled sample library (scanned on start). Without a display
# (no DISPLAY/WAYLAND_DISPLAY/QT_QPA_PLATFORM), show the same library in the terminal.
run: $(STAMP)
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY$$QT_QPA_PLATFORM" ]; then \
		$(VENV)/bin/lookalike-gui --library $(DEMO) --add $(SAMPLE); \
	else \
		echo "No display found: showing the sample library in the terminal (make demo)."; \
		$(MAKE) --no-print-directory demo; \
	fi

# The command-line tour: scan the sample library, print its groups and a find-similar example.
demo: $(STAMP)
	$(VENV)/bin/lookalike --library $(DEMO) scan $(SAMPLE)
	$(VENV)/bin/lookalike --library $(DEMO) duplicates --level exact
	$(VENV)/bin/lookalike --library $(DEMO) duplicates --level near
	$(VENV)/bin/lookalike --library $(DEMO) duplicates --level similar
	$(VENV)/bin/lookalike --library $(DEMO) similar $(SAMPLE)/trips/2021-alps/DSC_2519.jpg -k 5

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

# Quick profile (~11 min on 2 cores): scan stages, GUI responsiveness, scan speed beside
# imagehash/imagededup, the unchanged rescan of 10k files (100k, the issue's size, is the
# script's default: ~25 min the first time on 2 busy cores, to fill its catalog), the index
# at 100k (synthetic, and 3,000 real Caltech-101 embeddings repeated with noise); then
# docs/benchmarks.md with its plots. GPU numbers: scripts/gpu_bench.sh.
bench: $(STAMP)
	$(PY) benchmarks/bench_scan.py
	QT_QPA_PLATFORM=offscreen $(PY) benchmarks/bench_gui.py
	$(PY) benchmarks/bench_peers.py --profile quick
	$(PY) benchmarks/bench_rescan.py --files 10000
	$(PY) benchmarks/real_embeddings.py
	$(PY) benchmarks/bench_index.py --profile quick --real build/real-embeddings.npy
	$(PY) benchmarks/bench_keeper.py
	$(PY) benchmarks/report.py

# Full profile: 2,000 12-MP and 5,000 1080p JPEGs (~6 GB in build/), the index at 1M (hours).
bench-full: $(STAMP)
	$(PY) benchmarks/bench_scan.py
	$(PY) benchmarks/bench_peers.py --profile full
	$(PY) benchmarks/bench_rescan.py
	$(PY) benchmarks/real_embeddings.py
	$(PY) benchmarks/bench_index.py --profile full --real build/real-embeddings.npy
	$(PY) benchmarks/report.py

# A simulated person's review decisions replayed on Caltech-101 test-class photos, then
# learning from them, measured on the half never reviewed (~6 min on 2 cores; needs ../shared).
bench-feedback: $(STAMP)
	$(PY) benchmarks/bench_feedback.py
	$(PY) benchmarks/bench_feedback.py --model lookalike-angular-v1 --out bench-results/feedback-angular.json
	$(PY) benchmarks/report.py

# Fine-tune on Caltech-101 train classes with several losses at one budget (~15 min on 2 cores).
bench-training: $(STAMP)
	$(PY) benchmarks/bench_training.py

# Train the default model (resources/recipes/default-model.json: the angular-loss copy and
# semantic heads, then the copy head fused with the pretrained feature and averaged over quarter
# turns) on the Caltech-101 train classes into resources/models/lookalike-angular-v3 and make it
# the default: about 23 min on 2 quiet CPU cores (needs ../shared/datasets).
model: $(STAMP)
	$(PY) scripts/build_model.py --default

# The default model against pHash/dHash, the pretrained backbone, lookalike-angular-v2 (the same
# weights read from one view) and lookalike-angular-v1 (its copy head unfused) on the test
# classes, plus the loss ablation (~30 min on 2 cores after `make model`, which leaves its
# caches in build/model).
bench-model: $(STAMP)
	$(PY) benchmarks/bench_model.py --compare lookalike-angular-v2 lookalike-angular-v1

# What a lent GPU session carries (docs/training.md): the recipe's photos as a 38 MB pack in
# .pack/ and the wheels the GPU image lacks in .whl/ (both kept out of git). Then one device
# call: bash scripts/gpu_session.sh, carrying .pack and .whl.
gpu-pack: $(STAMP)
	$(PY) scripts/make_gpu_pack.py
	bash scripts/gpu_wheels.sh

# Rebuild the pretrained baseline bundle and recalibrate its thresholds (needs ../shared/datasets).
model-default: $(STAMP)
	$(PY) scripts/build_default_bundle.py

clean:
	rm -rf build .pytest_cache
