"""scan: photos are found by content, problems are recorded, loops and unreadable folders survive."""
from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pytest
from PIL import Image, features

from engine.decode import read_photo  # noqa: F401  (registers the HEIF opener/encoder)
from engine.scan import FileEntry, ScanProblem, ScanResult, scan, sniff_format
from imagegen import photo


def encode(fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 30, 60)).save(buf, fmt, **params)
    return buf.getvalue()


def jpeg_bytes(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    photo(seed, (32, 24)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def found(result: ScanResult) -> set[str]:
    return {f.path for f in result.files}


def problems(result: ScanResult) -> dict[str, str]:
    return {p.path: p.kind for p in result.problems}


# ------------------------------------------------------------------ sniff_format

@pytest.mark.parametrize("head, expected", [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "JPEG"),
    (b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00", "JPEG"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "PNG"),
    (b"GIF89a\x10\x00\x10\x00", "GIF"),
    (b"GIF87a\x10\x00\x10\x00", "GIF"),
    (b"BM" + b"\x00" * 30, "BMP"),
    (b"II*\x00\x08\x00\x00\x00", "TIFF"),
    (b"MM\x00*\x00\x00\x00\x08", "TIFF"),
    (b"II+\x00\x08\x00\x00\x00", "TIFF"),    # BigTIFF
    (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "WEBP"),
    (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "AVIF"),
    (b"\x00\x00\x00\x1cftypavis\x00\x00\x00\x00avismif1miaf", "AVIF"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIF"),
    (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "HEIF"),
    (b"P6\n32 24\n255\n", "PPM"),
    (b"P5 32 24 255\n", "PPM"),
    (b"P1\n# comment\n", "PPM"),
])
def test_sniff_magic_bytes(head, expected):
    assert sniff_format(head) == expected


@pytest.mark.parametrize("head", [
    b"",
    b"hello, this is a text file\n",
    b"# README\n\nPhotos go here.\n",
    b"BM",                                        # too short to be a bitmap header
    b"RIFF\x24\x00\x00\x00WAVEfmt ",              # a sound file
    b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2mp41",  # an MP4 video
    b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ",          # a QuickTime video
    b"%PDF-1.7\n",
    b"PK\x03\x04",
    b"P7\n",                                      # PAM: not handled
    b"Photos\n",                                  # starts with P, not Netpbm
])
def test_sniff_rejects_non_images(head):
    assert sniff_format(head) is None


@pytest.mark.parametrize("fmt, params, expected", [
    ("JPEG", {}, "JPEG"),
    ("PNG", {}, "PNG"),
    ("GIF", {}, "GIF"),
    ("BMP", {}, "BMP"),
    ("TIFF", {}, "TIFF"),
    ("WEBP", {}, "WEBP"),
    ("PPM", {}, "PPM"),
    pytest.param("AVIF", {}, "AVIF", marks=pytest.mark.skipif(
        not features.check("avif"), reason="this Pillow was built without AVIF support")),
])
def test_sniff_what_pillow_writes(fmt, params, expected):
    assert sniff_format(encode(fmt, **params)[:32]) == expected


def test_sniff_what_pillow_heif_writes():
    try:
        data = encode("HEIF")
    except (KeyError, OSError, ValueError) as exc:
        pytest.skip(f"pillow-heif cannot encode HEIF here ({exc})")
    assert sniff_format(data[:32]) == "HEIF"


# ------------------------------------------------------------------ scan: content, not extension

def test_scan_finds_images_by_content(tmp_path):
    real = write(tmp_path / "real.jpg", jpeg_bytes(1))
    disguised = write(tmp_path / "photo.txt", jpeg_bytes(2))        # JPEG with a text name
    misnamed = write(tmp_path / "actually-jpeg.png", jpeg_bytes(3))
    no_suffix = write(tmp_path / "IMG_0001", jpeg_bytes(4))
    upper = write(tmp_path / "SHOUT.PNG", encode("PNG"))
    fake = write(tmp_path / "fake.jpg", "I am text, not a JPEG\n")
    empty = write(tmp_path / "empty.jpg", b"")
    write(tmp_path / "README.txt", "Holiday photos.\n")
    write(tmp_path / "empty.txt", b"")
    write(tmp_path / "notes.md", "# notes\n")

    result = scan([tmp_path])

    assert found(result) == {str(p) for p in (real, disguised, misnamed, no_suffix, upper)}
    assert problems(result) == {str(fake): "not-image", str(empty): "empty"}
    assert not result.cancelled
    assert result.roots == [str(tmp_path)]
    for problem in result.problems:
        assert isinstance(problem, ScanProblem) and problem.message


def test_fake_image_with_upper_case_suffix_is_a_problem(tmp_path):
    fake = write(tmp_path / "FAKE.JPEG", "nope")
    assert problems(scan([tmp_path])) == {str(fake): "not-image"}


def test_nested_folders(tmp_path):
    paths = [write(tmp_path / rel, jpeg_bytes(i)) for i, rel in enumerate([
        "top.jpg", "a/one.jpg", "a/b/two.jpg", "a/b/c/d/e/deep.jpg", "z/last.jpg"])]
    (tmp_path / "empty folder" / "inner").mkdir(parents=True)

    result = scan([tmp_path])

    assert found(result) == {str(p) for p in paths}
    assert len(result.files) == len(paths)
    assert result.problems == []


def test_names_with_spaces_and_unicode(tmp_path):
    paths = [
        write(tmp_path / "été 2021" / "café ☕.jpg", jpeg_bytes(1)),
        write(tmp_path / "été 2021" / "日本 旅行" / "富士山.png", encode("PNG")),
        write(tmp_path / "  leading and trailing  " / "a  b.jpg", jpeg_bytes(2)),
        write(tmp_path / "emoji 🎉" / "party 🎂.webp", encode("WEBP")),
    ]
    broken = write(tmp_path / "été 2021" / "naïve.jpg", "texte")

    result = scan([tmp_path])

    assert found(result) == {str(p) for p in paths}
    assert problems(result) == {str(broken): "not-image"}
    for path in found(result):
        assert os.path.exists(path)


# ------------------------------------------------------------------ symlinks

def test_symlink_loop_is_recorded_not_followed(tmp_path):
    root = tmp_path / "photos"
    a = write(root / "a.jpg", jpeg_bytes(1))
    b = write(root / "child" / "b.jpg", jpeg_bytes(2))
    loop = root / "child" / "loop"
    os.symlink(root, loop)

    result = scan([root])

    assert sorted(f.path for f in result.files) == sorted([str(a), str(b)])  # no duplicates
    assert problems(result) == {str(loop): "symlink-loop"}


def test_self_loop_link(tmp_path):
    a = write(tmp_path / "a.jpg", jpeg_bytes(1))
    os.symlink(".", tmp_path / "here")
    result = scan([tmp_path])
    assert [f.path for f in result.files] == [str(a)]
    assert problems(result) == {str(tmp_path / "here"): "symlink-loop"}


def test_symlinked_folder_outside_root_is_followed_once(tmp_path):
    outside = write(tmp_path / "elsewhere" / "x.jpg", jpeg_bytes(1))
    root = tmp_path / "photos"
    root.mkdir()
    os.symlink(outside.parent, root / "link1")
    os.symlink(outside.parent, root / "link2")

    result = scan([root])

    assert found(result) == {str(root / "link1" / "x.jpg")}
    assert problems(result) == {str(root / "link2"): "symlink-loop"}


def test_dangling_symlink_is_ignored(tmp_path):
    a = write(tmp_path / "a.jpg", jpeg_bytes(1))
    os.symlink(tmp_path / "missing.jpg", tmp_path / "dangling.jpg")
    result = scan([tmp_path])
    assert found(result) == {str(a)}
    assert result.problems == []


# ------------------------------------------------------------------ unreadable folders

def test_unreadable_folder_is_recorded_and_skipped(tmp_path, monkeypatch):
    ok = write(tmp_path / "ok" / "a.jpg", jpeg_bytes(1))
    write(tmp_path / "locked" / "secret.jpg", jpeg_bytes(2))
    locked = str(tmp_path / "locked")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == locked:   # what chmod 000 does for a non-root user
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), locked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)

    result = scan([tmp_path])

    assert found(result) == {str(ok)}
    assert problems(result) == {locked: "unreadable-folder"}
    assert os.strerror(errno.EACCES) in result.problems[0].message


def test_unreadable_file_is_recorded(tmp_path, monkeypatch):
    ok = write(tmp_path / "ok.jpg", jpeg_bytes(1))
    locked = write(tmp_path / "locked.jpg", jpeg_bytes(2))

    def fake_open(path, *args, **kwargs):
        if os.fspath(path) == str(locked):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(locked))
        return open(path, *args, **kwargs)

    monkeypatch.setattr("engine.scan.open", fake_open, raising=False)

    result = scan([tmp_path])

    assert found(result) == {str(ok)}
    assert problems(result) == {str(locked): "unreadable"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 folder anyway; "
                                               "the monkeypatched test covers this path")
def test_unreadable_folder_with_real_permissions(tmp_path):
    ok = write(tmp_path / "a.jpg", jpeg_bytes(1))
    locked = tmp_path / "locked"
    write(locked / "secret.jpg", jpeg_bytes(2))
    locked.chmod(0)
    try:
        result = scan([tmp_path])
    finally:
        locked.chmod(0o755)
    assert found(result) == {str(ok)}
    assert problems(result) == {str(locked): "unreadable-folder"}


# ------------------------------------------------------------------ roots

def test_single_file_as_root(tmp_path):
    path = write(tmp_path / "only.jpg", jpeg_bytes(1))
    write(tmp_path / "other.jpg", jpeg_bytes(2))

    result = scan([path])

    assert [f.path for f in result.files] == [str(path)]
    assert result.problems == []


@pytest.mark.parametrize("name, content, kind", [
    ("fake.jpg", "text", "not-image"),
    ("empty.png", b"", "empty"),
])
def test_single_bad_file_as_root(tmp_path, name, content, kind):
    path = write(tmp_path / name, content)
    result = scan([path])
    assert result.files == []
    assert problems(result) == {str(path): kind}


def test_missing_root_is_a_problem_not_a_crash(tmp_path):
    missing = tmp_path / "nowhere"
    result = scan([missing])
    assert result.files == []
    assert problems(result) == {str(missing): "unreadable"}


def test_several_roots(tmp_path):
    a = write(tmp_path / "one" / "a.jpg", jpeg_bytes(1))
    b = write(tmp_path / "two" / "b.jpg", jpeg_bytes(2))
    result = scan([tmp_path / "one", str(tmp_path / "two")])
    assert [f.path for f in result.files] == [str(a), str(b)]
    assert result.roots == [str(tmp_path / "one"), str(tmp_path / "two")]


def test_paths_are_absolute_with_size_and_mtime(tmp_path, monkeypatch):
    paths = [write(tmp_path / "lib" / "a.jpg", jpeg_bytes(1)),
             write(tmp_path / "lib" / "sub" / "b.png", encode("PNG"))]
    os.utime(paths[0], ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    monkeypatch.chdir(tmp_path)

    result = scan(["lib", "./lib/../lib/sub/b.png"])

    assert result.roots == [str(tmp_path / "lib"), str(tmp_path / "lib" / "sub" / "b.png")]
    by_path = {f.path: f for f in result.files}
    assert set(by_path) == {str(p) for p in paths}
    for path in paths:
        entry = by_path[str(path)]
        assert isinstance(entry, FileEntry)
        assert os.path.isabs(entry.path)
        info = os.stat(path)
        assert entry.size == info.st_size
        assert entry.mtime_ns == info.st_mtime_ns
    assert by_path[str(paths[0])].mtime_ns == 1_600_000_000_123_456_789


def test_home_folder_is_expanded(tmp_path, monkeypatch):
    path = write(tmp_path / "Pictures" / "a.jpg", jpeg_bytes(1))
    monkeypatch.setenv("HOME", str(tmp_path))
    result = scan(["~/Pictures"])
    assert found(result) == {str(path)}


# ------------------------------------------------------------------ progress and cancel

def make_tree(root: Path, folders: int = 6) -> None:
    data = jpeg_bytes(1)
    for i in range(folders):
        write(root / f"f{i}" / "x.jpg", data)


def test_progress_is_called_per_folder(tmp_path):
    make_tree(tmp_path)
    calls = []

    result = scan([tmp_path], lambda done, total, what: calls.append((done, total, what)))

    assert len(result.files) == 6 and not result.cancelled
    assert len(calls) == 7                                   # the root and six subfolders
    assert {what for _, _, what in calls} == {str(tmp_path)} | {
        str(tmp_path / f"f{i}") for i in range(6)}
    dones = [done for done, _, _ in calls]
    assert dones == sorted(dones) and dones[-1] == 6


def test_cancel_stops_the_walk_early(tmp_path):
    make_tree(tmp_path / "first")
    make_tree(tmp_path / "second")
    calls = []

    def progress(done, total, what):
        calls.append(what)
        return False if len(calls) == 3 else None          # None means "go on"

    result = scan([tmp_path / "first", tmp_path / "second"], progress)

    assert result.cancelled
    assert len(calls) == 3                                   # no call after the stop
    assert 0 < len(result.files) < 6
    assert all(f.path.startswith(str(tmp_path / "first")) for f in result.files)


def test_true_from_progress_does_not_cancel(tmp_path):
    make_tree(tmp_path, 3)
    result = scan([tmp_path], lambda *_: True)
    assert not result.cancelled and len(result.files) == 3


def test_known_unchanged_files_are_not_opened_but_changed_ones_are(tmp_path, monkeypatch):
    import builtins
    from tests import imagegen
    same = imagegen.save_jpeg(imagegen.photo(1, (40, 30)), tmp_path / "same.jpg")
    edited = imagegen.save_jpeg(imagegen.photo(2, (40, 30)), tmp_path / "edited.jpg")
    st_same, st_edited = os.stat(same), os.stat(edited)
    known = {str(same): (st_same.st_size, st_same.st_mtime_ns),
             str(edited): (st_edited.st_size, st_edited.st_mtime_ns - 1)}  # changed since
    edited.write_text("no longer a photo")
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda p, *a, **k: (opened.append(str(p)), real_open(p, *a, **k))[1])
    result = scan([tmp_path], known=known)
    assert [f.path for f in result.files] == [str(same)]
    assert str(same) not in opened and str(edited) in opened
    assert [(p.path, p.kind) for p in result.problems] == [(str(edited), "not-image")]
