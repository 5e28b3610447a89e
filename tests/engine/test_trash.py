"""Safe removal: freedesktop trash layout, journal, undo, and the send2trash fallback."""
import json
import logging
import os
import re
import stat
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

import pytest

from engine import trash as trash_mod
from engine.errors import FileError
from engine.trash import UNDO_UNSUPPORTED, Trash, TrashError, TrashRecord, topdir_trash


@pytest.fixture
def bin_dir(tmp_path):
    return tmp_path / "Trash"


@pytest.fixture
def trash(tmp_path, bin_dir):
    return Trash(tmp_path / "journal.jsonl", trash_dir=bin_dir, backend="freedesktop")


def make(path: Path, data: bytes = b"photo") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def read_info(bin_dir: Path, name: str) -> dict[str, str]:
    lines = (bin_dir / "info" / (name + ".trashinfo")).read_text("ascii").splitlines()
    assert lines[0] == "[Trash Info]"
    return dict(line.split("=", 1) for line in lines[1:])


def journal_lines(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]


def test_remove_moves_file_with_trashinfo_and_journal(tmp_path, bin_dir, trash):
    photo = make(tmp_path / "photos" / "a.jpg", b"abc")

    [record] = trash.remove([photo], content_hashes=["h1"])

    assert not photo.exists()
    assert record == TrashRecord(str(photo), str(bin_dir / "files" / "a.jpg"), 3, "h1", record.when)
    assert Path(record.trashed).read_bytes() == b"abc"
    assert datetime.fromisoformat(record.when).utcoffset().total_seconds() == 0
    info = read_info(bin_dir, "a.jpg")
    assert unquote(info["Path"]) == str(photo)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", info["DeletionDate"])
    assert journal_lines(tmp_path) == [{"op": "remove", "batch": 1, "record": {
        "original": str(photo), "trashed": record.trashed, "size": 3, "content_hash": "h1",
        "when": record.when}}]
    assert trash.history() == [record]


def test_undo_restores_identical_bytes_and_removes_trashinfo(tmp_path, bin_dir, trash):
    data = os.urandom(5000)
    photo = make(tmp_path / "photos" / "deep" / "b.png", data)
    records = trash.remove([photo])
    (tmp_path / "photos" / "deep").rmdir()  # a missing parent folder is created again

    assert trash.undo(records) == [str(photo)]

    assert photo.read_bytes() == data
    assert list((bin_dir / "files").iterdir()) == []
    assert list((bin_dir / "info").iterdir()) == []
    assert trash.history() == []
    assert [e["op"] for e in journal_lines(tmp_path)] == ["remove", "restore"]


def test_name_collision_gets_suffix_and_both_restore(tmp_path, bin_dir, trash):
    first = make(tmp_path / "one" / "IMG 1.jpg", b"first")
    second = make(tmp_path / "two" / "IMG 1.jpg", b"second")

    r1, r2 = trash.remove([first, second])

    assert Path(r1.trashed).name == "IMG 1.jpg"
    assert Path(r2.trashed).name == "IMG 1 2.jpg"
    assert unquote(read_info(bin_dir, "IMG 1 2.jpg")["Path"]) == str(second)
    trash.undo([r2, r1])
    assert first.read_bytes() == b"first" and second.read_bytes() == b"second"


def test_collision_with_orphan_trashinfo_skips_that_name(tmp_path, bin_dir, trash):
    make(bin_dir / "info" / "c.jpg.trashinfo", b"[Trash Info]\n")  # reserved by someone else
    [record] = trash.remove([make(tmp_path / "c.jpg")])
    assert Path(record.trashed).name == "c 2.jpg"


def test_undo_refuses_occupied_original_and_leaves_trash_alone(tmp_path, trash):
    photo = make(tmp_path / "a.jpg", b"old")
    records = trash.remove([photo])
    make(photo, b"new")

    with pytest.raises(TrashError, match="not overwriting") as err:
        trash.undo(records)

    assert err.value.path == str(photo)
    assert photo.read_bytes() == b"new"
    assert Path(records[0].trashed).read_bytes() == b"old"
    assert trash.history() == records


def test_undo_checks_every_record_before_moving_any(tmp_path, trash):
    a, b = make(tmp_path / "a.jpg"), make(tmp_path / "b.jpg")
    records = trash.remove([a, b])
    make(b, b"new")

    with pytest.raises(TrashError):
        trash.undo(records)

    assert not a.exists()
    assert trash.history() == records


def test_undo_refuses_record_already_restored(tmp_path, trash):
    records = trash.remove([make(tmp_path / "a.jpg")])
    trash.undo(records)
    with pytest.raises(TrashError, match="already restored"):
        trash.undo(records)


def test_missing_file_stops_batch_and_keeps_earlier_journaled(tmp_path, trash):
    a, c = make(tmp_path / "a.jpg"), make(tmp_path / "c.jpg")
    missing = tmp_path / "b.jpg"

    with pytest.raises(TrashError, match="no such file") as err:
        trash.remove([a, missing, c])

    assert err.value.path == str(missing) and isinstance(err.value, FileError)
    assert not a.exists() and c.exists()
    assert [r.original for r in trash.history()] == [str(a)]
    assert [r.original for r in trash.last_batch()] == [str(a)]


def test_directory_refused(tmp_path, trash):
    folder = tmp_path / "album"
    folder.mkdir()
    with pytest.raises(TrashError, match="folder"):
        trash.remove([folder])
    assert folder.is_dir()
    assert trash.history() == []


def test_history_and_last_batch_across_batches_and_undo(tmp_path, trash):
    a, b, c = (make(tmp_path / f"{n}.jpg") for n in "abc")
    batch1 = trash.remove([a, b])
    batch2 = trash.remove([c])

    assert trash.history() == batch1 + batch2
    assert trash.last_batch() == batch2

    trash.undo(trash.last_batch())
    assert trash.history() == batch1
    assert trash.last_batch() == []  # the last remove() was undone; no older batch offered

    trash.undo(batch1[:1])
    assert trash.history() == batch1[1:]
    reopened = Trash(tmp_path / "journal.jsonl", trash_dir=tmp_path / "Trash")
    assert reopened.history() == batch1[1:]


def test_truncated_journal_line_is_skipped_and_next_append_survives(tmp_path, trash, caplog):
    first = trash.remove([make(tmp_path / "a.jpg")])
    with open(tmp_path / "journal.jsonl", "a") as f:
        f.write('{"op": "remove", "batch": 2, "rec')  # crash mid-write

    with caplog.at_level(logging.WARNING, logger="engine.trash"):
        assert trash.history() == first
    assert "damaged journal line 2" in caplog.text

    second = trash.remove([make(tmp_path / "b.jpg")])
    assert trash.history() == first + second
    assert trash.last_batch() == second


def test_send2trash_backend_delegates_and_cannot_undo(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(trash_mod.send2trash, "send2trash", calls.append)
    photo = make(tmp_path / "a.jpg", b"1234")
    trash = Trash(tmp_path / "journal.jsonl", backend="send2trash")

    [record] = trash.remove([photo], content_hashes=[None])

    assert calls == [str(photo)]
    assert record.trashed is None and record.size == 4
    assert trash.last_batch() == [record]
    with pytest.raises(TrashError, match=UNDO_UNSUPPORTED):
        trash.undo([record])


def test_send2trash_failure_becomes_trash_error(tmp_path, monkeypatch):
    def refuse(path):
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(trash_mod.send2trash, "send2trash", refuse)
    trash = Trash(tmp_path / "journal.jsonl", backend="send2trash")
    with pytest.raises(TrashError, match="system trash refused"):
        trash.remove([make(tmp_path / "a.jpg")])
    assert trash.history() == []


@pytest.mark.parametrize("name", ["with space.jpg", "été 東京.jpg", "100% #1?&=.jpg"])
def test_awkward_names_round_trip_through_url_encoding(tmp_path, bin_dir, trash, name):
    photo = make(tmp_path / "my photos" / name)
    [record] = trash.remove([photo])

    encoded = read_info(bin_dir, name)["Path"]
    assert re.fullmatch(r"[A-Za-z0-9/%._~-]+", encoded)
    assert unquote(encoded) == str(photo)
    trash.undo([record])
    assert photo.read_bytes() == b"photo"


def test_xdg_data_home_is_the_default_trash(tmp_path, monkeypatch):
    monkeypatch.setattr(trash_mod.sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    trash = Trash(tmp_path / "journal.jsonl")
    [record] = trash.remove([make(tmp_path / "a.jpg")])
    assert trash.backend == "freedesktop"
    assert record.trashed == str(tmp_path / "data" / "Trash" / "files" / "a.jpg")
    assert stat.S_IMODE(os.stat(tmp_path / "data" / "Trash" / "files").st_mode) == 0o700


def test_auto_backend_choice(tmp_path, monkeypatch):
    journal = tmp_path / "j.jsonl"
    monkeypatch.setattr(trash_mod.sys, "platform", "darwin")
    assert Trash(journal).backend == "send2trash"
    assert Trash(journal, trash_dir=tmp_path / "fake").backend == "freedesktop"
    monkeypatch.setattr(trash_mod.sys, "platform", "freebsd14")
    assert Trash(journal).backend == "freedesktop"
    with pytest.raises(ValueError):
        Trash(journal, backend="rm")
    with pytest.raises(ValueError):
        Trash(journal, trash_dir=tmp_path / "fake", backend="send2trash")


def test_content_hash_count_must_match(tmp_path, trash):
    with pytest.raises(ValueError):
        trash.remove([make(tmp_path / "a.jpg")], content_hashes=[])


def test_topdir_trash_is_created_private_at_mount_point(tmp_path, monkeypatch):
    volume = tmp_path / "volume"
    photo = make(volume / "DCIM" / "a.jpg")
    monkeypatch.setattr(trash_mod, "mount_point", lambda path: volume)

    top, bin_dir = topdir_trash(str(photo))

    assert top == volume and bin_dir == volume / f".Trash-{os.getuid()}"
    for folder in (bin_dir, bin_dir / "files", bin_dir / "info"):
        assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o700


@pytest.mark.parametrize("impostor", ["file", "symlink"])
def test_topdir_trash_refuses_unusable_folder(tmp_path, monkeypatch, impostor):
    volume = tmp_path / "volume"
    photo = make(volume / "a.jpg")
    bogus = volume / f".Trash-{os.getuid()}"
    if impostor == "file":
        make(bogus)
    else:
        (tmp_path / "elsewhere").mkdir()
        bogus.symlink_to(tmp_path / "elsewhere")
    monkeypatch.setattr(trash_mod, "mount_point", lambda path: volume)

    with pytest.raises(TrashError, match="left in place"):
        topdir_trash(str(photo))
    assert photo.exists()


def test_file_on_other_drive_goes_to_topdir_trash_and_restores(tmp_path, trash, monkeypatch):
    volume = tmp_path / "volume"
    photo = make(volume / "DCIM" / "a b.jpg", b"xyz")
    monkeypatch.setattr(trash_mod, "mount_point", lambda path: volume)
    monkeypatch.setattr(trash, "_on_home_device", lambda dev: False)

    [record] = trash.remove([photo])

    bin_dir = volume / f".Trash-{os.getuid()}"
    assert record.trashed == str(bin_dir / "files" / "a b.jpg")
    assert read_info(bin_dir, "a b.jpg")["Path"] == "DCIM/a%20b.jpg"  # relative to topdir
    trash.undo([record])
    assert photo.read_bytes() == b"xyz"
    assert list((bin_dir / "info").iterdir()) == []
