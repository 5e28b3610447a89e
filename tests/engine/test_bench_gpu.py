"""benchmarks/bench_gpu.py at smoke size on the CPU: every piece runs (nothing is timed here).
The nvJPEG row runs only where CUDA is (scripts/gpu_bench.sh runs this file on the GPU)."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the repo root: benchmarks/

from benchmarks import bench_gpu  # noqa: E402
from benchmarks.bench_peers import generate_set  # noqa: E402

CPU = torch.device("cpu")
N = 3


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench-gpu") / "set"
    generate_set(folder, N, (96, 72), seed=1, dup_fraction=0.0)
    return folder / "photos"


def test_imports_only_what_a_scan_needs():
    """The GPU machine has no faiss, platformdirs or PySide6: the script must not need them."""
    code = ("import sys, benchmarks.bench_gpu; print([m for m in ('faiss', 'platformdirs', 'PySide6',"
            " 'engine.library', 'engine.index') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_nvjpeg_row_is_skipped_without_cuda_and_never_decodes(photos, monkeypatch):
    import torchvision.io

    def refuse(*args, **kwargs):
        raise AssertionError("decode_jpeg must not be called off CUDA")

    monkeypatch.setattr(torchvision.io, "decode_jpeg", refuse)
    row = bench_gpu.measure_nvjpeg(bench_gpu.photo_paths(photos), CPU, batch=2)
    assert "skipped" in row and "CUDA" in row["skipped"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (nvJPEG)")
def test_nvjpeg_row_decodes_every_photo_on_cuda(photos):
    row = bench_gpu.measure_nvjpeg(bench_gpu.photo_paths(photos), torch.device("cuda"), batch=2)
    assert row["images"] == N and row["per_s"] > 0
    assert row["megapixels_per_s"] * row["seconds"] == pytest.approx(N * 96 * 72 / 1e6)


def test_forward_row(embedder):
    row = bench_gpu.measure_forward(embedder, batch=1, iters=1)
    assert row["images"] == 1 and row["seconds"] > 0 and "fp32" in row["note"]


@pytest.mark.parametrize("gpu_jpeg", [True, False])
def test_ingest_row_catalogues_every_photo(photos, embedder, gpu_jpeg):
    embedder = copy.copy(embedder)  # the session's CPU model; the device decoder runs on the CPU too
    embedder.gpu_jpeg, embedder.batch_size = gpu_jpeg, 2
    row = bench_gpu.measure_ingest(photos, embedder)
    assert row["row"] == ("e2e-gpu" if gpu_jpeg else "e2e-cpu")
    assert row["images"] == row["embedded"] == row["catalog_rows"] == N and row["failed"] == 0


def test_training_row_runs_the_copy_detection_recipe(tmp_path):
    folder = bench_gpu.make_training_folder(tmp_path / "train", 8, (48, 36), classes=2)
    row = bench_gpu.measure_training(folder, CPU, steps=1, warmup=0, batch=2, workers=0, image_size=32)
    assert "skipped" not in row, row.get("skipped")
    assert row["images"] == 1 * 2 * 2 and row["augment"] == "GPUAugment"


def test_summary_compares_end_to_end_with_the_nvjpeg_ceiling():
    rows = [{"set": "12mp", "row": "nvjpeg", "label": "n", "images": 100, "seconds": 1.0, "per_s": 100.0},
            {"set": "12mp", "row": "e2e-gpu", "label": "g", "images": 100, "seconds": 1.25, "per_s": 80.0},
            {"set": "1080p", **bench_gpu.skipped("nvjpeg", "no CUDA")},
            {"set": "1080p", "row": "e2e-cpu", "label": "c", "images": 10, "seconds": 1.0, "per_s": 10.0}]
    summary = bench_gpu.summarise(rows)
    assert summary["12mp"]["e2e-gpu_vs_nvjpeg"] == pytest.approx(0.8) and summary["12mp"]["meets_target"]
    assert summary["1080p"]["e2e-cpu_vs_nvjpeg"] is None and "meets_target" not in summary["1080p"]
    table = "\n".join(bench_gpu.table_lines({"rows": rows, "summary": summary}))
    assert "| 80 % |" in table and "skipped: no CUDA" in table


def test_a_spent_budget_skips_every_step_and_still_writes_the_json(tmp_path):
    out = tmp_path / "gpu.json"
    bench_gpu.main(["--device", "cpu", "--smoke", "--budget", "1e-9", "--work", str(tmp_path / "w"),
                    "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["device"] == "cpu" and data["smoke"]
    assert [r["row"] for r in data["rows"]] == ["forward", "nvjpeg", "e2e-gpu", "e2e-cpu", "train",
                                               "nvjpeg", "e2e-gpu", "e2e-cpu"]
    assert all("time budget" in r["skipped"] for r in data["rows"])
