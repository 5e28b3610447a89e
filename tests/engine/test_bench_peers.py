"""benchmarks/bench_peers.py: the photo sets it generates (nothing is timed here)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: benchmarks/

from benchmarks.bench_peers import DUP_KINDS, generate_set, summarise  # noqa: E402

SIZE = (64, 48)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("peers") / "set"
    return folder, generate_set(folder, 12, SIZE, seed=7)


def test_files_are_jpegs_of_the_asked_size(tiny_set):
    folder, manifest = tiny_set
    files = sorted(p.name for p in (folder / "photos").iterdir())
    assert files == sorted(manifest["photos"]) and len(files) == 12
    copies = {d["file"]: d["kind"] for d in manifest["near_duplicates"]}
    for name in files:
        with Image.open(folder / "photos" / name) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            img.load()
            kind = copies.get(name)
            if kind in (None, "reencode"):
                assert img.size == SIZE
            else:  # resized or cropped copies are smaller
                assert img.width < SIZE[0] and img.height < SIZE[1]


def test_near_copies_are_listed_in_the_manifest(tiny_set):
    folder, manifest = tiny_set
    dups = manifest["near_duplicates"]
    assert len(dups) == 1  # ~10 % of 12
    originals = set(manifest["photos"]) - {d["file"] for d in dups}
    for d in dups:
        assert d["original"] in originals and d["kind"] in DUP_KINDS
        assert (folder / "photos" / d["file"]).is_file()
    assert json.loads((folder / "manifest.json").read_text()) == manifest


def test_every_kind_of_near_copy_is_made(tmp_path):
    manifest = generate_set(tmp_path / "many", 10, SIZE, seed=1, dup_fraction=0.3)
    assert sorted(d["kind"] for d in manifest["near_duplicates"]) == sorted(DUP_KINDS)


def test_seeded_generation_is_reproducible(tiny_set, tmp_path):
    folder, manifest = tiny_set
    again = generate_set(tmp_path / "again", 12, SIZE, seed=7)
    generate_set(tmp_path / "other", 12, SIZE, seed=8)
    assert again["photos"] == manifest["photos"]
    assert again["near_duplicates"] == manifest["near_duplicates"]
    read = lambda root, name: (root / "photos" / name).read_bytes()  # noqa: E731
    for name in manifest["photos"]:
        assert read(tmp_path / "again", name) == read(folder, name)
    assert any(read(tmp_path / "other", n) != read(folder, n) for n in manifest["photos"])


def test_a_cached_set_is_not_rewritten(tiny_set):
    folder, manifest = tiny_set
    stamps = {p.name: p.stat().st_mtime_ns for p in (folder / "photos").iterdir()}
    assert generate_set(folder, 12, SIZE, seed=7) == manifest
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "photos").iterdir()} == stamps


def test_a_changed_request_regenerates(tmp_path):
    generate_set(tmp_path / "s", 6, SIZE, seed=0)
    manifest = generate_set(tmp_path / "s", 4, SIZE, seed=0)
    assert sorted(p.name for p in (tmp_path / "s/photos").iterdir()) == sorted(manifest["photos"])


def test_foreign_files_are_never_deleted(tmp_path):
    photos = tmp_path / "s/photos"
    photos.mkdir(parents=True)
    (photos / "mine.jpg").write_bytes(b"not the benchmark's")
    with pytest.raises(SystemExit):
        generate_set(tmp_path / "s", 3, SIZE)
    assert (photos / "mine.jpg").exists()


def test_summary_ceiling_and_ratios():
    rows = [{"tool": "lookalike-cold", "photos": 10, "seconds": 2.0},
            {"tool": "imagededup-phash", "photos": 10, "seconds": 4.0},
            {"tool": "ceiling-decode", "photos": 10, "seconds": 1.0},
            {"tool": "ceiling-forward", "photos": 10, "seconds": 1.0},
            {"tool": "imagededup-cnn", "skipped": "no weights"}]
    summary = summarise(rows)
    assert summary["ceiling_per_s"] == pytest.approx(5.0)
    assert summary["cold_vs_ceiling"] == pytest.approx(1.0)
    assert summary["cold_vs_imagededup_phash"] == pytest.approx(2.0)
    assert rows[-1]["tool"] == "ceiling-combined"
    assert rows[4]["photos_per_s"] is None and rows[4]["vs_imagededup_phash"] is None
