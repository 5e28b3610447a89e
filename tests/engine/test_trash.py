"""Safe removal: freedesktop trash layout, journal, undo, and the send2trash fallback."""
import errno
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

import pytest

from engine import freedesktop, safe_move
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
    assert record == TrashRecord(str(photo), str(bin_dir / "files" / "a.jpg"), 3, "h1", record.when,
                                 "freedesktop")
    assert Path(record.trashed).read_bytes() == b"abc"
    assert datetime.fromisoformat(record.when).utcoffset().total_seconds() == 0
    info = read_info(bin_dir, "a.jpg")
    assert unquote(info["Path"]) == str(photo)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", info["DeletionDate"])
    assert journal_lines(tmp_path) == [{"op": "remove", "batch": 1, "record": {
        "original": str(photo), "trashed": record.trashed, "size": 3, "content_hash": "h1",
        "when": record.when, "backend": "freedesktop"}}]
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


def test_missing_file_found_before_any_move_moves_nothing(tmp_path, trash):
    a, c = make(tmp_path / "a.jpg"), make(tmp_path / "c.jpg")
    missing = tmp_path / "b.jpg"

    with pytest.raises(TrashError, match="no such file; nothing was moved") as err:
        trash.remove([a, missing, c])

    assert err.value.path == str(missing) and isinstance(err.value, FileError)
    assert a.exists() and c.exists()
    assert trash.history() == [] and trash.last_batch() == []


def test_failure_mid_batch_keeps_earlier_journaled_and_reports_them(tmp_path, trash, monkeypatch):
    a, b, c = (make(tmp_path / f"{n}.jpg") for n in "abc")
    real_rename = os.rename

    def vanish_b(src, dst):  # b disappears after the checks, just before its move
        if src == str(b):
            raise FileNotFoundError(2, "No such file or directory")
        real_rename(src, dst)

    monkeypatch.setattr(trash_mod.os, "rename", vanish_b)
    with pytest.raises(TrashError, match="left in place") as err:
        trash.remove([a, b, c])

    assert err.value.path == str(b)
    assert not a.exists() and b.exists() and c.exists()
    assert [r.original for r in err.value.moved] == [str(a)]
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

    with caplog.at_level(logging.WARNING, logger="engine.trash_journal"):
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
    with pytest.raises(ValueError, match="needs trash_dir"):
        Trash(journal, backend="folder")


def test_content_hash_count_must_match(tmp_path, trash):
    with pytest.raises(ValueError):
        trash.remove([make(tmp_path / "a.jpg")], content_hashes=[])
    with pytest.raises(ValueError):
        trash.remove([tmp_path / "a.jpg"], reviewed=[])
    with pytest.raises(ValueError, match="twice"):
        trash.remove([tmp_path / "a.jpg", tmp_path / "a.jpg"])
    assert (tmp_path / "a.jpg").exists()


def test_topdir_trash_is_created_private_at_mount_point(tmp_path, monkeypatch):
    volume = tmp_path / "volume"
    photo = make(volume / "DCIM" / "a.jpg")
    monkeypatch.setattr(freedesktop, "mount_point", lambda path: volume)

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
    monkeypatch.setattr(freedesktop, "mount_point", lambda path: volume)

    with pytest.raises(TrashError, match="left in place"):
        topdir_trash(str(photo))
    assert photo.exists()


def test_file_on_other_drive_goes_to_topdir_trash_and_restores(tmp_path, trash, monkeypatch):
    volume = tmp_path / "volume"
    photo = make(volume / "DCIM" / "a b.jpg", b"xyz")
    monkeypatch.setattr(freedesktop, "mount_point", lambda path: volume)
    monkeypatch.setattr(trash, "_on_home_device", lambda dev: False)

    [record] = trash.remove([photo])

    bin_dir = volume / f".Trash-{os.getuid()}"
    assert record.trashed == str(bin_dir / "files" / "a b.jpg")
    assert read_info(bin_dir, "a b.jpg")["Path"] == "DCIM/a%20b.jpg"  # relative to topdir
    trash.undo([record])
    assert photo.read_bytes() == b"xyz"
    assert list((bin_dir / "info").iterdir()) == []


# ---- a folder the person chose ------------------------------------------------------------

@pytest.fixture
def chosen(tmp_path):
    folder = tmp_path / "removed photos"
    folder.mkdir()
    return folder


@pytest.fixture
def to_folder(tmp_path, chosen):
    return Trash(tmp_path / "journal.jsonl", trash_dir=chosen, backend="folder")


def below(folder: Path, path: Path) -> Path:
    return folder / str(path).lstrip("/")


def test_folder_backend_mirrors_layout_and_undo_restores_bytes_and_time(tmp_path, chosen, to_folder):
    data = os.urandom(3000)
    photo = make(tmp_path / "photos" / "2019" / "été 1.jpg", data)
    os.utime(photo, ns=(1_500_000_000_000_000_000, 1_500_000_000_123_456_789))

    [record] = to_folder.remove([photo], content_hashes=["h"])

    assert not photo.exists() and record.backend == "folder"
    assert record.trashed == str(below(chosen, photo))
    assert Path(record.trashed).read_bytes() == data
    assert to_folder.undo([record]) == [str(photo)]
    assert photo.read_bytes() == data and os.stat(photo).st_mtime_ns == 1_500_000_000_123_456_789
    assert chosen.is_dir() and list(chosen.iterdir()) == []  # mirrored folders pruned, not the folder
    assert to_folder.history() == []


def test_folder_backend_collision_gets_suffix_and_both_restore_in_turn(tmp_path, chosen, to_folder):
    photo = make(tmp_path / "a.jpg", b"first")
    [first] = to_folder.remove([photo])
    make(photo, b"second")
    [second] = to_folder.remove([photo])

    assert Path(first.trashed).name == "a.jpg" and Path(second.trashed).name == "a 2.jpg"
    to_folder.undo([second])
    assert photo.read_bytes() == b"second"
    with pytest.raises(TrashError, match="not overwriting"):
        to_folder.undo([first])
    photo.unlink()
    to_folder.undo([first])
    assert photo.read_bytes() == b"first"


def test_folder_backend_refuses_a_file_already_inside_it(chosen, to_folder):
    inside = make(chosen / "x.jpg")
    with pytest.raises(TrashError, match="already inside the removal folder"):
        to_folder.remove([inside])
    assert inside.exists()


def test_folder_backend_file_in_the_way_of_a_mirrored_folder(tmp_path, chosen, to_folder):
    photo = make(tmp_path / "p" / "a.jpg")
    make(below(chosen, tmp_path / "p"))  # a file where the mirrored folder would go
    with pytest.raises(TrashError, match="a file is in the way of its folder.*left in place"):
        to_folder.remove([photo])
    assert photo.exists() and to_folder.history() == []


def test_undo_after_restart_for_every_backend(tmp_path, chosen):
    journal = tmp_path / "journal.jsonl"
    for backend, folder in (("folder", chosen), ("freedesktop", tmp_path / "Trash")):
        photos = [make(tmp_path / backend / f"{n}.jpg", n.encode()) for n in "ab"]
        older = make(tmp_path / backend / "older.jpg")
        Trash(journal, trash_dir=folder, backend=backend).remove([older])
        Trash(journal, trash_dir=folder, backend=backend).remove(photos)

        reopened = Trash(journal, trash_dir=folder, backend=backend)  # a new process, same journal
        assert [r.original for r in reopened.last_batch()] == [str(p) for p in photos]
        assert reopened.undo_last() == [str(p) for p in photos]
        assert [p.read_bytes() for p in photos] == [b"a", b"b"] and not older.exists()
        again = Trash(journal, trash_dir=folder)
        assert again.last_batch() == [] and [r.original for r in again.history()] == [str(older)]
        again.undo(again.history())
        assert older.exists()


def test_undo_of_a_folder_removal_works_after_switching_back_to_the_system_trash(tmp_path, chosen,
                                                                                to_folder):
    photo = make(tmp_path / "a.jpg")
    to_folder.remove([photo])
    system = Trash(tmp_path / "journal.jsonl", trash_dir=tmp_path / "Trash", backend="freedesktop")
    assert system.undo_last() == [str(photo)] and photo.exists()


def test_undo_refuses_a_different_file_in_the_trash(tmp_path, to_folder):
    photo = make(tmp_path / "a.jpg", b"12345")
    [record] = to_folder.remove([photo])
    Path(record.trashed).write_bytes(b"123")
    with pytest.raises(TrashError, match="not the file that was removed"):
        to_folder.undo([record])
    assert not photo.exists()


# ---- another drive: a verified copy, never a blind copy-and-delete ------------------------

def fake_exdev(monkeypatch, real_link=os.link):
    """Hard links between the photo's folder and the removal folder fail as across drives."""
    def link(src, dst, **kw):
        if ".lookalike-partial-" not in str(src):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_link(src, dst, **kw)
    monkeypatch.setattr(safe_move.os, "link", link)


def test_cross_drive_move_is_a_verified_copy_and_undo_copies_back(tmp_path, chosen, to_folder,
                                                                 monkeypatch):
    fake_exdev(monkeypatch)
    data = os.urandom(3 * safe_move.CHUNK + 17)
    photo = make(tmp_path / "photos" / "big.jpg", data)
    os.utime(photo, ns=(1, 1_234_567_890_123_456_789))
    digest = safe_move.file_hash(photo)

    [record] = to_folder.remove([photo], content_hashes=[digest])

    assert not photo.exists() and safe_move.file_hash(record.trashed) == digest
    assert os.stat(record.trashed).st_mtime_ns == 1_234_567_890_123_456_789
    assert not [p for p in chosen.rglob("*") if "partial" in p.name]
    to_folder.undo([record])
    assert photo.read_bytes() == data and os.stat(photo).st_mtime_ns == 1_234_567_890_123_456_789
    assert not [p for p in tmp_path.rglob("*") if "partial" in p.name]


def test_cross_drive_copy_that_does_not_verify_leaves_the_photo(tmp_path, chosen, to_folder,
                                                              monkeypatch):
    fake_exdev(monkeypatch)
    real_copy = safe_move._copy_fsync

    def corrupting_copy(src, tmp):
        digest = real_copy(src, tmp)
        with open(tmp, "r+b") as f:  # a bit flipped on the way
            first = f.read(1)
            f.seek(0)
            f.write(bytes([first[0] ^ 1]))
        return digest

    monkeypatch.setattr(safe_move, "_copy_fsync", corrupting_copy)
    photo = make(tmp_path / "a.jpg", b"precious bytes")
    with pytest.raises(TrashError, match="content differs") as err:
        to_folder.remove([photo])
    assert err.value.path == str(photo) and photo.read_bytes() == b"precious bytes"
    assert [p for p in chosen.rglob("*") if p.is_file()] == [] and to_folder.history() == []


def test_source_that_cannot_be_unlinked_keeps_no_second_copy(tmp_path, chosen, to_folder,
                                                             monkeypatch):
    photo = make(tmp_path / "a.jpg")
    real_unlink = os.unlink

    def refuse(path, *a, **kw):
        if str(path) == str(photo):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_unlink(path, *a, **kw)

    monkeypatch.setattr(safe_move.os, "unlink", refuse)
    for cross_drive in (False, True):
        if cross_drive:
            fake_exdev(monkeypatch)
        with pytest.raises(TrashError, match="Permission denied.*left in place"):
            to_folder.remove([photo])
        assert photo.read_bytes() == b"photo"
        assert [p for p in chosen.rglob("*") if p.is_file()] == [] and to_folder.history() == []


def test_real_second_filesystem_when_there_is_one(tmp_path):
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem to move to")
    other = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="lookalike-test-"))
    try:
        trash = Trash(tmp_path / "journal.jsonl", trash_dir=other, backend="folder")
        photo = make(tmp_path / "a.jpg", os.urandom(5000))
        data = photo.read_bytes()
        [record] = trash.remove([photo])
        assert os.stat(record.trashed).st_dev != os.stat(tmp_path).st_dev
        assert Path(record.trashed).read_bytes() == data and not photo.exists()
        trash.undo_last()
        assert photo.read_bytes() == data
    finally:
        shutil.rmtree(other)


# ---- only what was reviewed is removed ------------------------------------------------------

@dataclass(frozen=True)
class Seen:
    size: int
    mtime_ns: int
    content_hash: str | None


def seen(path: Path, with_hash: bool = True) -> Seen:
    st = os.stat(path)
    return Seen(st.st_size, st.st_mtime_ns, safe_move.file_hash(path) if with_hash else None)


def test_content_hash_matches_the_catalogs(tmp_path):
    from engine.decode import content_hash
    data = os.urandom(2 * safe_move.CHUNK + 5)
    assert safe_move.file_hash(make(tmp_path / "a.jpg", data)) == content_hash(data)


def test_unchanged_files_move_and_record_the_reviewed_hash(tmp_path, trash):
    a, b = make(tmp_path / "a.jpg", b"aa"), make(tmp_path / "b.jpg", b"bb")
    records = trash.remove([a, b], reviewed=[seen(a), seen(b)])
    assert [r.content_hash for r in records] == [seen_hash(b"aa"), seen_hash(b"bb")]


def seen_hash(data: bytes) -> str:
    from engine.decode import content_hash
    return content_hash(data)


@pytest.mark.parametrize("change, reason", [
    ("size", r"size 5 → 6 bytes"),
    ("mtime", "modification time differs"),
    ("content", "same size and time, different content"),
    ("gone", "no such file"),
])
def test_file_changed_since_review_is_refused_and_nothing_moves(tmp_path, trash, change, reason):
    a, b, c = (make(tmp_path / f"{n}.jpg", b"12345") for n in "abc")
    states = [seen(p) for p in (a, b, c)]
    st = os.stat(b)
    if change == "size":
        b.write_bytes(b"123456")
    elif change == "mtime":
        os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    elif change == "content":  # e.g. exiftool -P: same size, time put back
        b.write_bytes(b"12346")
        os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        b.unlink()

    with pytest.raises(TrashError, match=reason) as err:
        trash.remove([a, b, c], reviewed=states)

    assert err.value.path == str(b) and "nothing was moved" in str(err.value)
    assert a.exists() and c.exists() and trash.history() == []


def test_stat_only_when_the_reviewed_state_has_no_hash(tmp_path, trash):
    a = make(tmp_path / "a.jpg", b"12345")
    state, st = seen(a, with_hash=False), os.stat(a)
    a.write_bytes(b"54321")
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    [record] = trash.remove([a], reviewed=[state])  # size and time match: cannot tell
    assert record.content_hash is None


def test_change_during_the_batch_stops_there(tmp_path, trash, monkeypatch):
    a, b, c = (make(tmp_path / f"{n}.jpg", b"12345") for n in "abc")
    real_check = trash_mod.change_since_review

    def edited_meanwhile(path, state, hash_content=True):
        if not hash_content and path == str(b):  # the check made just before b moves
            b.write_bytes(b"edited!")
        return real_check(path, state, hash_content=hash_content)

    monkeypatch.setattr(trash_mod, "change_since_review", edited_meanwhile)
    with pytest.raises(TrashError, match="changed since it was reviewed.*left in place") as err:
        trash.remove([a, b, c], reviewed=[seen(p) for p in (a, b, c)])

    assert not a.exists() and b.read_bytes() == b"edited!" and c.exists()
    assert [r.original for r in err.value.moved] == [str(a)]
    assert [r.original for r in trash.last_batch()] == [str(a)]
