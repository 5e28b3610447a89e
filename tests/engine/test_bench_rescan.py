"""benchmarks/bench_rescan.py at smoke size: its files, the stand-in populate, and a rescan that
never touches the model (nothing is timed here)."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: benchmarks/

import engine.library  # noqa: E402
import engine.scan  # noqa: E402
from benchmarks import bench_rescan  # noqa: E402


def _jpegs(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.jpg"))


def test_files_are_distinct_small_jpegs_made_once(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_rescan, "PER_FOLDER", 4)
    photos = tmp_path / "photos"
    assert bench_rescan.make_files(photos, 10) == 10
    paths = _jpegs(photos)
    assert len(paths) == 10 and len({p.parent for p in paths}) == 3
    assert len({hashlib.sha256(p.read_bytes()).digest() for p in paths}) == 10
    for p in paths:
        assert p.stat().st_size < 1000
        with Image.open(p) as img:
            img.load()
            assert img.format == "JPEG" and img.size == (16, 16)
    mtimes = {p: p.stat().st_mtime_ns for p in paths}
    assert bench_rescan.make_files(photos, 10) == 0
    assert {p: p.stat().st_mtime_ns for p in _jpegs(photos)} == mtimes
    assert bench_rescan.make_files(photos, 5) == 0
    assert [p.name for p in _jpegs(photos)] == [f"img_{i:07d}.jpg" for i in range(5)]
    assert sorted(d.name for d in photos.iterdir()) == ["0000", "0001"]


def test_stand_in_vectors_are_fixed_unit_vectors():
    a, b = bench_rescan.unit_vector("abc", "copy", 64), bench_rescan.unit_vector("abc", "copy", 64)
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert not np.array_equal(a, bench_rescan.unit_vector("abd", "copy", 64))


def test_rescan_finds_everything_unchanged_without_the_model(tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the rescan must not load the model")

    monkeypatch.setattr(engine.library, "Embedder", no_model)  # the library's lazy embedder
    results = bench_rescan.run(12, tmp_path, repeats=2)
    assert results["populate"]["embedded"] == 12 and results["written"] == 12
    assert [r["found"] for r in results["runs"]] == [12, 12]
    summary = results["summary"]
    stages = {row["stage"]: row for row in summary["stages"]}
    expected = {"walk + stat (engine.scan.scan)", "catalog: read file rows", "index sync", "other"}
    assert expected <= stages.keys()
    assert "rebuild index" not in stages  # the saved indexes are current
    top = sum(row["seconds"] for row in summary["stages"] if row["within"] is None)
    assert top == pytest.approx(summary["rescan_s"])
    assert all(stages[row["within"]] for row in summary["stages"] if row["within"])
    assert engine.library.scan is engine.scan.scan  # the timers are gone again
    table = "\n".join(bench_rescan.table_lines(summary))
    assert "| index sync |" in table and "**rescan, total**" in table
    json.dumps(results)  # what main() saves

    again = bench_rescan.run(12, tmp_path, repeats=1)  # files and library are reused
    assert again["written"] == 0 and again["populate"]["embedded"] == 0


def test_a_library_that_changed_is_not_reported_as_a_rescan(tmp_path):
    bench_rescan.run(6, tmp_path, repeats=1)
    photos, library = tmp_path / "6" / "photos", tmp_path / "6" / "library"
    _jpegs(photos)[0].unlink()
    with pytest.raises(SystemExit, match="not an unchanged rescan"):
        bench_rescan.rescan_once(library, photos, None)
