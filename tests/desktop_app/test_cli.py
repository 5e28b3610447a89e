"""The ``lookalike`` command line, run in-process against a tiny generated folder.

The folder holds one photo, its exact copy and a resized copy, two unrelated photos and a
text file named ``.jpg``. ``Library`` is swapped for one that reuses the session's model, so
the network is loaded once; the model-name error and the console script run the real thing.
"""
import contextlib
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import desktop_app.cli as cli
from engine.library import Library
from imagegen import photo, resize, save_jpeg

SCRIPT = Path(sys.executable).with_name("lookalike")


def _build(root: Path) -> dict[str, Path]:
    files = {"original": save_jpeg(photo(1), root / "beach.jpg")}
    files["copy"] = Path(shutil.copy(files["original"], root / "beach (copy).jpg"))
    files["small"] = save_jpeg(resize(photo(1), 0.75), root / "beach-small.jpg", quality=85)
    for seed in (6, 7):
        files[f"other{seed}"] = save_jpeg(photo(seed), root / f"other {seed}.jpg")
    files["notes"] = root / "notes.jpg"
    files["notes"].write_text("not a photo at all")
    return files


def _shared_library(embedder):
    return lambda folder, model=None, device="auto": Library(folder, embedder=embedder)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    return root, _build(root)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, embedder, photos):
    """One library, scanned once through the CLI; yields (library folder, files, scan output)."""
    lib = tmp_path_factory.mktemp("lib")
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, "Library", _shared_library(embedder))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(["--library", str(lib), "scan", str(photos[0])])
    return lib, photos[1], rc, out.getvalue(), err.getvalue()


@pytest.fixture
def run(monkeypatch, capsys, embedder):
    """``run(*argv)`` → (exit code, stdout, stderr), with the shared model."""
    monkeypatch.setattr(cli, "Library", _shared_library(embedder))

    def go(*argv):
        rc = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err
    return go


def test_scan_prints_summary_and_problems(scanned):
    _, files, rc, out, err = scanned
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("Scanned: 5 photos found in ")
    assert "4 embedded, 1 reused (renamed or copied), 0 unchanged, 0 removed" in lines[0]
    assert "1 problem(s):" in lines
    assert f"  {files['notes']}: named like an image but its content is not a known image format [not-image]" in lines
    assert "Traceback" not in err


def test_rescan_reports_everything_unchanged(run, photos, tmp_path):
    rc, out, _ = run("--library", tmp_path / "lib", "scan", photos[0])
    assert rc == 0 and "5 photos found" in out
    rc, out, _ = run("--library", tmp_path / "lib", "scan", photos[0])
    assert rc == 0
    assert "0 embedded, 0 reused (renamed or copied), 5 unchanged, 0 removed" in out


def test_duplicates_json_shape(run, scanned):
    lib, files, *_ = scanned
    rc, out, _ = run("--library", lib, "duplicates", "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["level"] == "near"
    assert len(data["groups"]) == 1
    group = data["groups"][0]
    assert set(group) == {"level", "files", "keep", "reason"}
    assert group["level"] == "near" and isinstance(group["reason"], str) and group["reason"]
    paths = {f["path"] for f in group["files"]}
    assert paths == {str(files["original"]), str(files["copy"]), str(files["small"])}
    assert group["keep"] in (str(files["original"]), str(files["copy"]))   # full size, not the small one
    assert [f["path"] for f in group["files"] if f["keep"]] == [group["keep"]]
    assert group["files"][0]["path"] == group["keep"]
    for f in group["files"]:
        assert {"path", "similarity", "keep", "width", "height", "size", "format", "capture_time",
                "camera", "content_hash"} <= set(f)
        assert isinstance(f["keep"], bool) and 0.0 < f["similarity"] <= 1.0
    by_path = {f["path"]: f for f in group["files"]}
    assert by_path[str(files["original"])]["similarity"] == by_path[str(files["copy"])]["similarity"] == 1.0
    assert by_path[str(files["small"])]["similarity"] < 1.0
    assert (by_path[str(files["small"])]["width"], by_path[str(files["small"])]["height"]) == (192, 144)


def test_duplicates_exact_level_gives_only_the_exact_pair(run, scanned):
    lib, files, *_ = scanned
    rc, out, _ = run("--library", lib, "duplicates", "--level", "exact", "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["level"] == "exact"
    assert [sorted(f["path"] for f in g["files"]) for g in data["groups"]] == [
        sorted([str(files["original"]), str(files["copy"])])]
    assert data["groups"][0]["level"] == "exact"
    assert all(f["similarity"] == 1.0 for f in data["groups"][0]["files"])


def test_duplicates_csv(run, scanned):
    lib, files, *_ = scanned
    rc, out, _ = run("--library", lib, "duplicates", "--csv")
    assert rc == 0
    reader = csv.DictReader(io.StringIO(out))
    assert reader.fieldnames == ["group", "level", "path", "similarity", "keep", "width", "height",
                                 "size", "format", "reason"]
    rows = list(reader)
    assert {r["path"] for r in rows} == {str(files["original"]), str(files["copy"]), str(files["small"])}
    assert {r["group"] for r in rows} == {"1"} and {r["level"] for r in rows} == {"near"}
    assert sorted(r["keep"] for r in rows) == ["False", "False", "True"]
    assert all(r["format"] == "JPEG" and r["reason"] for r in rows)


def test_duplicates_text_marks_the_keeper(run, scanned):
    lib, files, *_ = scanned
    rc, out, _ = run("--library", lib, "duplicates")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("Group 1 · near · 3 photos · keep ")
    assert sum("KEEP" in line for line in lines) == 1
    assert lines[1].lstrip().startswith("KEEP")
    assert any(str(files["small"]) in line and "192×144 JPEG" in line for line in lines)
    assert lines[-1] == "1 group(s), 2 photo(s) could go."


def test_duplicates_text_when_there_are_none(run, tmp_path):
    rc, out, _ = run("--library", tmp_path / "empty-lib", "duplicates", "--level", "exact")
    assert rc == 0 and out == "No exact-level duplicate groups.\n"


def _shot(img, path: Path, when: str) -> Path:
    """A JPEG whose EXIF DateTimeOriginal is ``when`` ("YYYY:MM:DD HH:MM:SS")."""
    from PIL import Image

    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = when
    return save_jpeg(img, path, exif=exif)


def test_duplicates_moment_level_stacks_a_burst(run, tmp_path):
    from PIL import ImageFilter

    folder, scene = tmp_path / "burst", photo(1)
    first = _shot(scene, folder / "IMG_1.jpg", "2024:05:01 10:00:01")
    shaky = _shot(scene.filter(ImageFilter.GaussianBlur(1)), folder / "IMG_2.jpg", "2024:05:01 10:00:03")
    later = _shot(resize(scene, 0.9), folder / "IMG_3.jpg", "2024:05:01 11:00:00")
    lib = tmp_path / "lib"
    assert run("--library", lib, "scan", folder)[0] == 0
    rc, out, _ = run("--library", lib, "duplicates", "--level", "moment", "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["level"] == "moment" and len(data["groups"]) == 1
    group = data["groups"][0]
    assert group["level"] == "moment" and group["keep"] == str(first)
    assert group["reason"] == "sharpest of 2, well exposed"
    assert [f["path"] for f in group["files"]] == [str(first), str(shaky)]
    assert group["files"][0]["capture_time"] == "2024-05-01T10:00:01"
    assert str(later) not in out
    rc, out, _ = run("--library", lib, "duplicates", "--level", "moment")
    assert rc == 0
    assert out.splitlines()[0] == "Group 1 · moment · 2 photos · best shot IMG_1.jpg: sharpest of 2, well exposed"
    rc, out, _ = run("--library", lib, "duplicates", "--level", "moment", "--window", "1")
    assert (rc, out) == (0, "No same-moment stacks.\n")
    rc, out, err = run("--library", lib, "duplicates", "--level", "moment", "--window", "-1")
    _one_error_line(rc, out, err)


def test_similar_returns_the_copy_first(run, scanned):
    lib, files, *_ = scanned
    rc, out, _ = run("--library", lib, "similar", files["original"], "-k", "2", "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["query"] == str(files["original"])
    assert [m["path"] for m in data["matches"]] == [str(files["copy"]), str(files["small"])]
    assert data["matches"][0]["similarity"] == 1.0
    # find-similar expands the query with the photo's closest look-alikes: each match also
    # carries the score it is ranked by (1 for the exact copy)
    assert data["matches"][0]["rank_score"] == 1.0 and "rank_score" in data["matches"][1]
    rc, out, _ = run("--library", lib, "similar", files["original"], "-k", "1")
    assert rc == 0
    assert out.splitlines() == [
        f"Most similar to {files['original']} (cosine to it; ranked together with its closest look-alikes):",
        f"   1.000  {files['copy']}"]


def test_info_json_counts(run, scanned):
    lib, files, *_ = scanned
    rc, out, _ = run("--library", lib, "info", "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["library"] == str(lib)
    assert (data["files"], data["distinct_photos"]) == (5, 4)
    assert data["embedded"] == {"copy": 4, "semantic": 4}
    assert isinstance(data["model"], str) and data["model"]
    assert [(p["path"], p["kind"]) for p in data["problems"]] == [(str(files["notes"]), "not-image")]
    rc, out, _ = run("--library", lib, "info")
    assert rc == 0 and "Photos:   5 files, 4 distinct" in out and str(files["notes"]) in out


def _one_error_line(rc, out, err):
    assert rc == 1 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("lookalike: error: ") and err.endswith("\n")
    assert "Traceback" not in err


def test_scanning_a_missing_folder_is_one_error_line(run, tmp_path):
    missing = tmp_path / "no such folder"
    rc, out, err = run("--library", tmp_path / "lib", "scan", missing)
    _one_error_line(rc, out, err)
    assert str(missing) in err


def test_unknown_model_is_one_error_line(capsys, tmp_path):
    rc = cli.main(["--library", str(tmp_path / "lib"), "--model", "nope", "info"])   # the real Library
    out, err = capsys.readouterr()
    _one_error_line(rc, out, err)
    assert "nope" in err


def test_keyboard_interrupt_exits_130(run, monkeypatch, tmp_path):
    def interrupted(lib, args):
        raise KeyboardInterrupt
    monkeypatch.setitem(cli.COMMANDS, "info", interrupted)
    rc, out, err = run("--library", tmp_path / "lib", "info")
    assert (rc, out, err) == (130, "", "lookalike: interrupted\n")


class _StopAfterFirstCall:
    """Stands in for the Ctrl-C flag: says "stop" from the second progress call on."""

    def __init__(self):
        self.reads = 0

    @property
    def requested(self):
        self.reads += 1
        return self.reads > 1


def test_ctrl_c_stops_and_a_second_scan_finishes(run, monkeypatch, photos, tmp_path):
    enter = cli._Interrupt.__enter__
    stops = []

    def fake_enter(self):
        enter(self)   # still installs (and on exit restores) the real handler
        stops.append(_StopAfterFirstCall())
        return stops[-1]
    monkeypatch.setattr(cli._Interrupt, "__enter__", fake_enter)
    handler = signal.getsignal(signal.SIGINT)
    lib = tmp_path / "lib"

    rc, out, _ = run("--library", lib, "scan", photos[0])
    assert rc == 0 and stops[0].reads >= 2
    lines = out.splitlines()
    assert lines[0].startswith("Stopped: 5 photos found")
    assert "1 embedded, 0 reused" in lines[0]
    assert lines[1] == "Work done so far is saved; run the same scan again to finish."
    assert signal.getsignal(signal.SIGINT) is handler

    monkeypatch.setattr(cli._Interrupt, "__enter__", enter)
    rc, out, _ = run("--library", lib, "scan", photos[0])
    assert rc == 0
    assert out.startswith("Scanned: 5 photos found")
    assert "3 embedded, 1 reused (renamed or copied), 1 unchanged, 0 removed" in out
    assert "Work done so far" not in out
    rc, out, _ = run("--library", lib, "info", "--json")
    assert json.loads(out)["embedded"] == {"copy": 4, "semantic": 4}


def test_interrupt_handler_first_asks_then_quits(capsys):
    before = signal.getsignal(signal.SIGINT)
    with cli._Interrupt() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        assert "Stopping after the current batch" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_console_script(tmp_path):
    """``--help`` and one error through the installed script (both at once: each imports torch)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    missing = tmp_path / "missing"
    argvs = ([str(SCRIPT), "--help"], [str(SCRIPT), "--library", str(tmp_path / "lib"), "scan", str(missing)])
    procs = [subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for a in argvs]
    (help_out, _), (err_out, err_err) = [p.communicate(timeout=120) for p in procs]
    assert procs[0].returncode == 0
    assert help_out.startswith("usage: lookalike") and "duplicates" in help_out
    assert procs[1].returncode == 1 and err_out == ""
    assert err_err == f"lookalike: error: {missing}: no such file or folder\n"


def test_thresholds_learned_from_decisions(run, embedder, tmp_path):
    from engine.library import DuplicateGroup, Member
    from engine.personal_thresholds import FILE_NAME, load_personal
    from imagegen import decision_photos

    folder, lib = tmp_path / "decided", tmp_path / "lib"
    decision_photos(folder)
    assert run("--library", lib, "scan", folder)[0] == 0
    rc, out, _ = run("--library", lib, "thresholds")
    lines = out.splitlines()
    assert rc == 0 and lines[1].split() == ["level", "decisions", "card", "threshold", "learned", "threshold"]
    assert "0 (0 same, 0 not)" in lines[2] and "— not enough decisions" in lines[2]

    with Library(lib, embedder=embedder) as library:   # one copy kept of three; three photos dismissed
        files = sorted(library.catalog.files(), key=lambda f: f.path)
        copies = DuplicateGroup("near", [Member(f, 1.0) for f in files[2::-1]], files[2], "test")
        library.record_removal([copies], [files[0].path, files[1].path])
        library.dismiss(DuplicateGroup("near", [Member(f, 1.0) for f in files[3:]], files[3], "test"))
        model_id = library.model_id
    rc, out, _ = run("--library", lib, "thresholds", "--precision", "0.9")
    lines = out.splitlines()
    assert rc == 0 and lines[0].endswith("target precision 0.90")
    assert [line.split()[0] for line in lines[2:4]] == ["near", "similar"]
    assert "6 (3 same, 3 not)" in lines[2] and "(P 1.00 / R 1.00)" in lines[2].split("not)")[1]
    assert lines[-1] == "Not saved (add --save to keep them)." and not (lib / FILE_NAME).exists()
    rc, out, _ = run("--library", lib, "thresholds", "--save")
    saved = load_personal(lib, model_id)
    assert rc == 0 and f"Saved to {lib / FILE_NAME}" in out
    assert saved.target_precision == 0.95 and f"{saved.levels['near'].threshold:.3f} (P 1.00" in out
    _one_error_line(*run("--library", lib, "thresholds", "--precision", "2"))


def test_keeper_learns_and_shows_the_preference(run, tmp_path):
    from engine.catalog import Catalog

    lib = tmp_path / "lib"
    rc, out, _ = run("--library", lib, "keeper")
    assert rc == 0 and out.startswith("No keeper preference learned yet")
    rc, out, _ = run("--library", lib, "keeper", "--learn")
    assert rc == 0 and out.startswith("Not enough decisions yet: 0 usable") and "5 needed" in out
    catalog = Catalog(lib / "catalog.sqlite")   # eight decisions: the copy in Originals kept
    for n in range(8):
        copy = {"bytes": 1000 + n, "pixels": 100, "format": "JPEG", "name": f"p{n}.jpg",
                "jpeg_quality": 90.0, "sharpness": 10.0}
        catalog.add_review("same-photo", "exact", "m", None, [
            (f"h{n}", f"/photos/Originals/p{n}.jpg", True, 1.0, {**copy, "folder": "/photos/Originals"}),
            (f"h{n}", f"/photos/Ex/p{n}.jpg", False, 1.0, {**copy, "folder": "/photos/Ex"})])
    catalog.close()
    rc, out, _ = run("--library", lib, "keeper", "--learn")
    lines = out.splitlines()
    assert rc == 0 and lines[0] == "Keeper preference learned from 8 decisions; held-out accuracy 100% on the last 2."
    assert lines[2].endswith("the one in a folder you usually keep")
    assert "  kept 8 of 8 under photos/Originals (learned rate 90%)" in lines
    assert run("--library", lib, "keeper")[1] == out     # read back from keeper-preference.json
