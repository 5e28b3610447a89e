"""Bad input: every awkward file gets a problem naming it and the reason, and the scan goes on.

One folder holds every case at once and is scanned once by a real ``Library`` (the CPU model);
each test then checks one case in the result. A property-based test feeds mutated image bytes
to the decoder: ``DecodedPhoto`` or ``DecodeError``, nothing else, in bounded time, and never
an image above the pixel limit. The cases and their outcomes are listed in docs/reliability.md.
"""
from __future__ import annotations

import builtins
import errno
import io
import os
import random
import signal
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from PIL import Image, ImageFile

from engine.decode import DecodedPhoto, DecodeError, content_hash, read_photo
from engine.library import Library
from imagegen import photo

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # corrupt EXIF

RED, GREEN = (255, 0, 0), (0, 255, 0)
NOT_UTF8 = b"bad\xff\xfe.jpg"
NOT_UTF8_FOLDER = b"old disk \xe9t\xe9"


# ------------------------------------------------------------------ byte builders

def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def jpeg(seed: int, size=(64, 48), **params) -> bytes:
    return encode(photo(seed, size), "JPEG", quality=85, **params)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A 60-byte PNG whose (valid, CRC-checked) header declares ``width`` × ``height``."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


def bmp_declaring(width: int, height: int) -> bytes:
    """A 70-byte 24-bit BMP whose header declares ``width`` × ``height``."""
    header = struct.pack("<2sIHHI", b"BM", 70, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 16, 2835, 2835, 0, 0)
    return header + info + b"\x00" * 16


_SHORT, _LONG, _ASCII = 3, 4, 2


def tiff(width: int, height: int, bits: int, samples: int, photometric: int, pixels: bytes,
         offsets_type: int = _LONG) -> bytes:
    """A hand-built uncompressed little-endian TIFF (Pillow cannot write 48-bit RGB)."""
    entries = [(256, _SHORT, [width]), (257, _SHORT, [height]), (258, _SHORT, [bits] * samples),
               (259, _SHORT, [1]), (262, _SHORT, [photometric]), (273, offsets_type, None),
               (277, _SHORT, [samples]), (278, _SHORT, [height]), (279, _LONG, [len(pixels)]),
               (284, _SHORT, [1])]
    ifd_end = 8 + 2 + 12 * len(entries) + 4
    extra = b"".join(struct.pack(f"<{len(v)}H", *v) for _, _, v in entries if v and len(v) > 2)
    pixel_offset = ifd_end + len(extra)
    out, extra_at = [struct.pack("<2sHIH", b"II", 42, 8, len(entries))], ifd_end
    for tag, kind, values in entries:
        if values is None:  # StripOffsets
            raw = str(pixel_offset).encode()[:3] + b"\0" if kind == _ASCII else struct.pack("<I", pixel_offset)
            out.append(struct.pack("<HHI", tag, kind, len(raw) if kind == _ASCII else 1) + raw)
        elif len(values) > 2:
            out.append(struct.pack("<HHII", tag, kind, len(values), extra_at))
            extra_at += 2 * len(values)
        else:
            fmt = "H" if kind == _SHORT else "I"
            raw = struct.pack(f"<{len(values)}{fmt}", *values).ljust(4, b"\0")
            out.append(struct.pack("<HHI", tag, kind, len(values)) + raw)
    return b"".join(out) + struct.pack("<I", 0) + extra + pixels


def rgb48_tiff(width=48, height=32) -> bytes:
    ramp = np.linspace(0, 65535, width * height * 3).astype("<u2")
    return tiff(width, height, 16, 3, 2, ramp.tobytes())


def gray16_tiff() -> bytes:
    values = (np.arange(48 * 32, dtype=np.uint32).reshape(32, 48) * 40).astype(np.uint16)
    return encode(Image.fromarray(values), "TIFF")


def exif_block(entries: list[tuple[int, int, int, bytes]], data: bytes = b"") -> bytes:
    """Big-endian EXIF APP1 payload: IFD0 ``(tag, type, count, 4-byte value or offset)``."""
    ifd = b"".join(struct.pack(">HHI", t, k, n) + v.ljust(4, b"\0") for t, k, n, v in entries)
    return b"Exif\0\0MM\0*" + struct.pack(">IH", 8, len(entries)) + ifd + b"\0\0\0\0" + data


def orientation_exif(value: int) -> bytes:
    return exif_block([(0x0112, _SHORT, 1, struct.pack(">H", value))])


def wrong_type_exif() -> bytes:
    """Orientation 6 next to an ImageWidth tag holding text: Pillow's exif_transpose raised
    struct.error re-serialising it (found by the fuzz test below)."""
    text_at = 8 + 2 + 2 * 12 + 4
    return exif_block([(0x0100, _ASCII, 6, struct.pack(">I", text_at)),
                       (0x0112, _SHORT, 1, struct.pack(">H", 6))], b"Canon\0")


def animated(fmt: str, colours, **params) -> bytes:
    frames = [Image.new("RGB", (32, 24), c) for c in colours]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100,
                  loop=0, **params)


def heic() -> bytes:
    import pillow_heif  # noqa: F401  (engine.decode registered the opener and encoder)

    return encode(photo(30, (64, 48)), "HEIF", quality=60)


# ------------------------------------------------------------------ the awkward folder

@contextmanager
def denied(mp: pytest.MonkeyPatch, owner, name: str, paths: set[str]):
    """``owner.name(path, ...)`` raises PermissionError for ``paths`` (we run as root)."""
    real = getattr(owner, name)

    def fake(target, *args, **kwargs):
        if isinstance(target, (str, os.PathLike)) and os.fspath(target) in paths:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(target))
        return real(target, *args, **kwargs)

    mp.setattr(owner, name, fake)
    yield


def deep_folder(base: Path, depth: int, name_len: int) -> list[str]:
    """Nested folders below ``base``, made via directory fds (works past PATH_MAX), with a
    photo at the bottom; returns the folder paths, outermost first."""
    base.mkdir()
    fd = os.open(base, os.O_RDONLY)
    try:
        for level in range(depth):
            name = f"{level:03d}" + "d" * (name_len - 3)
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
        out = os.open("deep.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, jpeg(40))
        os.close(out)
    finally:
        os.close(fd)
    names = [f"{i:03d}" + "d" * (name_len - 3) for i in range(depth)]
    return [os.path.join(base, *names[:i + 1]) for i in range(depth)]


def file_cases() -> list[tuple[str, str, bytes]]:
    """(case, file name, bytes) of every awkward regular file."""
    full_jpeg, full_png = jpeg(4, (256, 192)), encode(photo(5, (128, 96)), "PNG")
    return [(f"good {seed}", f"good/photo {seed}.jpg", jpeg(seed)) for seed in (1, 2, 3)] + [
        ("zero-byte file", "empty.jpg", b""),
        ("truncated JPEG", "truncated.jpg", full_jpeg[: len(full_jpeg) // 2]),
        ("truncated PNG", "truncated.png", full_png[: len(full_png) // 2]),
        ("random bytes named .jpg", "noise.jpg", b"\0" + random.Random(6).randbytes(4096)),
        ("HTML page named .jpg", "download.jpg",
         b"<!DOCTYPE html><html><head><title>404 Not Found</title></head></html>\n"),
        ("PNG bomb 100000x100000", "bomb.png", png_declaring(100_000, 100_000)),
        ("BMP bomb 100000x100000", "bomb.bmp", bmp_declaring(100_000, 100_000)),
        ("16-bit grey TIFF", "gray16.tif", gray16_tiff()),
        ("48-bit RGB TIFF", "rgb48.tif", rgb48_tiff()),
        ("CMYK TIFF", "cmyk.tif", encode(photo(7, (64, 48)).convert("CMYK"), "TIFF")),
        ("animated GIF", "animated.gif", animated("GIF", (RED, GREEN))),
        ("animated WebP", "animated.webp", animated("WEBP", (RED, GREEN), lossless=True)),
        ("corrupt EXIF (garbage block)", "exif-garbage.jpg",
         jpeg(8, exif=b"Exif\0\0" + random.Random(8).randbytes(200))),
        ("corrupt EXIF (IFD offset past end)", "exif-offset.jpg",
         jpeg(9, exif=b"Exif\0\0II*\0" + struct.pack("<I", 0x7FFFFFF0) + b"\0" * 8)),
        ("corrupt EXIF (wrong tag type) + orientation 6", "exif-type.jpg",
         jpeg(10, exif=wrong_type_exif())),
        ("orientation 0", "orientation-0.jpg", jpeg(11, exif=orientation_exif(0))),
        ("orientation 9", "orientation-9.jpg", jpeg(12, exif=orientation_exif(9))),
        ("HEIC without the plugin", "phone.heic", heic()),
        ("unreadable file (at the walk)", "locked.jpg", jpeg(13)),
        ("unreadable file (at the read)", "locked-later.jpg", jpeg(14)),
        ("unreadable folder", "locked folder/inside.jpg", jpeg(15)),
        ("vanishes after the walk", "vanishing.jpg", jpeg(18)),
        ("changes after the walk", "changing.jpg", jpeg(19)),
    ]


def special_cases(root: Path) -> dict[str, str]:
    """Links, a pipe, names that are not UTF-8 and very long paths; case → catalogued path."""
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    os.mkfifo(root / "pipe.jpg")
    with open(os.path.join(os.fsencode(root), NOT_UTF8), "wb") as handle:
        handle.write(jpeg(16))
    bad_folder = os.path.join(os.fsencode(root), NOT_UTF8_FOLDER)
    os.mkdir(bad_folder)
    with open(os.path.join(bad_folder, b"inside.jpg"), "wb") as handle:
        handle.write(jpeg(17))
    long_photo = os.path.join(deep_folder(root / "long", depth=5, name_len=220)[-1], "deep.jpg")
    assert len(long_photo) > 1000
    too_long = deep_folder(root / "longer", depth=20, name_len=250)
    return {
        "symlink loop": str(root / "loop"),
        "dangling symlink .jpg": str(root / "dangling.jpg"),
        "named pipe .jpg": str(root / "pipe.jpg"),
        "file name not UTF-8": str(root / "bad\\xff\\xfe.jpg"),      # as stored: escaped
        "folder name not UTF-8": str(root / "old disk \\xe9t\\xe9"),
        "path > 1000 chars": long_photo,
        "path > PATH_MAX (4096)": next(p for p in too_long if len(os.fsencode(p)) >= 4096),
    }


def build_folder(root: Path) -> dict[str, str]:
    """Every awkward case in one folder; returns case name → path (as the catalog stores it)."""
    root.mkdir(parents=True)
    paths: dict[str, str] = {}
    for case, name, data in file_cases():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths[case] = str(path)
    paths["unreadable folder"] = str(root / "locked folder")
    return paths | special_cases(root)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, embedder):
    """The awkward folder, scanned once with permissions, plugins and timing sabotaged."""
    tmp = tmp_path_factory.mktemp("bad_input")
    paths = build_folder(tmp / "photos")
    changed = jpeg(20, (160, 120))
    assert len(changed) != Path(paths["changes after the walk"]).stat().st_size

    sabotaged = []

    def progress(done, total, what):
        # The walk reports each folder after listing it: sabotage the files it just found.
        if not sabotaged and str(tmp / "photos") in what:
            sabotaged.append(what)
            os.remove(paths["vanishes after the walk"])
            Path(paths["changes after the walk"]).write_bytes(changed)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Image, "ID", [fmt for fmt in Image.ID if fmt != "HEIF"])
        with denied(mp, builtins, "open", {paths["unreadable file (at the walk)"]}), \
                denied(mp, io, "open", {paths["unreadable file (at the read)"]}), \
                denied(mp, os, "scandir", {paths["unreadable folder"]}):
            lib = Library(tmp / "lib", embedder=embedder)
            report = lib.scan([tmp / "photos"], progress)
    files = {f.path: f for f in lib.catalog.files()}
    problems: dict[str, list] = {}
    for p in report.problems:
        problems.setdefault(p.path, []).append(p)
    yield SimpleNamespace(report=report, files=files, problems=problems, paths=paths,
                          changed=changed, lib=lib)
    lib.close()


PROBLEM_CASES = [
    # case, kind, words the reason must contain
    ("zero-byte file", "empty", "0 bytes"),
    ("truncated JPEG", "decode", "truncated"),
    ("truncated PNG", "decode", "truncated"),
    ("random bytes named .jpg", "not-image", "not a known image format"),
    ("HTML page named .jpg", "not-image", "not a known image format"),
    ("PNG bomb 100000x100000", "decode", "too large"),
    ("BMP bomb 100000x100000", "decode", "too large"),
    ("HEIC without the plugin", "decode", "pillow-heif"),
    ("unreadable file (at the walk)", "unreadable", "Permission denied"),
    ("unreadable file (at the read)", "decode", "Permission denied"),
    ("unreadable folder", "unreadable-folder", "Permission denied"),
    ("symlink loop", "symlink-loop", "symlink loop"),
    ("file name not UTF-8", "bad-name", "not valid UTF-8"),
    ("folder name not UTF-8", "bad-name", "not valid UTF-8"),
    ("path > PATH_MAX (4096)", "unreadable-folder", "too long"),
    ("vanishes after the walk", "vanished", "disappeared during the scan"),
]

EMBEDDED_CASES = [
    # case, (width, height) as catalogued (after EXIF orientation)
    ("good 1", (64, 48)), ("good 2", (64, 48)), ("good 3", (64, 48)),
    ("16-bit grey TIFF", (48, 32)), ("48-bit RGB TIFF", (48, 32)), ("CMYK TIFF", (64, 48)),
    ("animated GIF", (32, 24)), ("animated WebP", (32, 24)),
    ("corrupt EXIF (garbage block)", (64, 48)), ("corrupt EXIF (IFD offset past end)", (64, 48)),
    ("corrupt EXIF (wrong tag type) + orientation 6", (48, 64)),
    ("orientation 0", (64, 48)), ("orientation 9", (64, 48)),
    ("path > 1000 chars", (64, 48)),
]


@pytest.mark.parametrize("case, kind, words", PROBLEM_CASES, ids=[c[0] for c in PROBLEM_CASES])
def test_bad_file_is_a_problem_naming_it_and_why(scanned, case, kind, words):
    path = scanned.paths[case]
    assert path in scanned.problems, f"no problem recorded for {path!r}"
    [problem] = scanned.problems[path]
    assert problem.kind == kind
    assert words.lower() in problem.message.lower(), problem.message
    assert path not in scanned.files


@pytest.mark.parametrize("case, size", EMBEDDED_CASES, ids=[c[0] for c in EMBEDDED_CASES])
def test_odd_but_valid_image_is_embedded(scanned, case, size):
    path = scanned.paths[case]
    assert path in scanned.files and path not in scanned.problems
    record = scanned.files[path]
    assert (record.width, record.height) == size
    have = scanned.lib.catalog.hashes_with_embedding(scanned.lib.model_id, scanned.lib.bundle.stored_heads)
    assert record.content_hash in have


def test_scan_went_on_and_nothing_else_was_reported(scanned):
    report = scanned.report
    assert not report.cancelled
    # found by the walk but failed at the read: 2 truncated, 2 bombs, HEIC, unreadable, vanished
    assert report.found == len(scanned.files) + 7
    assert set(scanned.files) == {scanned.paths[c] for c, _ in EMBEDDED_CASES} | {
        scanned.paths["changes after the walk"]}
    expected = {scanned.paths[c] for c, _, _ in PROBLEM_CASES}
    assert set(scanned.problems) == expected
    assert all(p.path in expected for p in scanned.lib.catalog.problems())


def test_file_changed_after_the_walk_is_catalogued_from_the_bytes_read(scanned):
    record = scanned.files[scanned.paths["changes after the walk"]]
    assert record.content_hash == content_hash(scanned.changed)
    assert record.size == len(scanned.changed)
    assert (record.width, record.height) == (160, 120)


@pytest.mark.parametrize("case", ["dangling symlink .jpg", "named pipe .jpg"])
def test_special_files_are_skipped_quietly_without_hanging(scanned, case):
    assert scanned.paths[case] not in scanned.files
    assert scanned.paths[case] not in scanned.problems


def test_problem_paths_of_non_utf8_names_are_storable_text(scanned):
    for case in ("file name not UTF-8", "folder name not UTF-8"):
        stored = scanned.paths[case]
        stored.encode("utf-8")  # what SQLite needs; no lone surrogates
        assert "\\x" in os.path.basename(stored)


# ------------------------------------------------------------------ decoder details

@pytest.mark.parametrize("fmt, params", [("GIF", {}), ("WEBP", {"lossless": True})])
def test_animation_gives_its_first_frame(fmt, params):
    got = read_photo(f"anim.{fmt.lower()}", 224, data=animated(fmt, (RED, GREEN), **params))
    assert np.abs(np.asarray(got.image, float).reshape(-1, 3).mean(0) - RED).max() <= 2


@pytest.mark.parametrize("value", [0, 9, 65535])
def test_impossible_orientation_is_ignored(value):
    got = read_photo("odd.jpg", 224, data=jpeg(21, exif=orientation_exif(value)))
    assert (got.width, got.height) == got.image.size == (64, 48)


def test_wrong_typed_exif_tag_does_not_stop_rotation():
    got = read_photo("odd.jpg", 224, data=jpeg(22, exif=wrong_type_exif()))
    assert (got.width, got.height) == got.image.size == (48, 64)


def test_tiff_with_text_strip_offsets_is_a_decode_error():
    data = tiff(8, 8, 8, 3, 2, b"\x80" * 192, offsets_type=_ASCII)
    with pytest.raises(DecodeError, match="corrupt"):
        read_photo("odd.tif", 224, data=data)


def test_heic_decodes_when_the_plugin_is_there():
    got = read_photo("phone.heic", 224, data=heic())
    assert got.format == "HEIF" and got.image.size == (64, 48)


# ------------------------------------------------------------------ property: mutated bytes

SEED = photo(3, (40, 30))
FRAMES = [SEED, SEED.rotate(90), SEED.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
FUZZ_EXIF = exif_block([(0x0112, _SHORT, 1, struct.pack(">H", 6)),
                        (0x0132, _ASCII, 20, struct.pack(">I", 8 + 2 + 24 + 4))],
                       b"2020:01:02 03:04:05\0")
BASES = {
    "jpeg": encode(SEED, "JPEG", quality=70, exif=FUZZ_EXIF),
    "png": encode(SEED, "PNG", exif=FUZZ_EXIF[6:]),
    "gif": encode(SEED.convert("P"), "GIF", save_all=True,
                  append_images=[f.convert("P") for f in FRAMES[1:]], duration=100, loop=0),
    "webp": encode(SEED, "WEBP", save_all=True, append_images=FRAMES[1:], duration=100,
                   quality=50, exif=FUZZ_EXIF),
    "tiff": encode(SEED, "TIFF", exif=FUZZ_EXIF[6:]),
    "bmp": encode(SEED, "BMP"),
}
FUZZ_LIMIT = 512 * 512           # a tiny pixel limit, so enlarged headers cross it
PER_FILE_SECONDS = 5             # hard bound per decode (SIGALRM); the deadline is tighter


def set_dimensions(data: bytearray, width: int, height: int) -> bytearray:
    """Overwrite the declared size in the header of whichever format ``data`` is."""
    w16, h16 = width & 0xFFFF, height & 0xFFFF
    if data.startswith(b"\x89PNG") and len(data) >= 33:
        data[16:24] = struct.pack(">II", width, height)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    elif data.startswith(b"GIF") and len(data) >= 10:
        data[6:10] = struct.pack("<HH", w16, h16)
        at = data.find(b"\x2c\0\0\0\0")                       # first image descriptor
        if at > 0 and len(data) >= at + 9:
            data[at + 5:at + 9] = struct.pack("<HH", w16, h16)
    elif data.startswith(b"\xff\xd8"):
        at = data.find(b"\xff\xc0")                           # baseline SOF
        if at > 0 and len(data) >= at + 9:
            data[at + 5:at + 9] = struct.pack(">HH", h16, w16)
    elif data.startswith(b"RIFF") and data[12:16] == b"VP8X" and len(data) >= 30:
        data[24:30] = ((width - 1) & 0xFFFFFF).to_bytes(3, "little") + \
            ((height - 1) & 0xFFFFFF).to_bytes(3, "little")
    elif data.startswith(b"II*\0") and len(data) >= 8:
        ifd = struct.unpack("<I", data[4:8])[0]
        count = struct.unpack("<H", data[ifd:ifd + 2])[0] if ifd + 2 <= len(data) else 0
        for entry in range(ifd + 2, min(ifd + 2 + 12 * count, len(data) - 11), 12):
            tag = struct.unpack("<H", data[entry:entry + 2])[0]
            if tag in (256, 257):
                data[entry + 2:entry + 12] = struct.pack("<HII", _LONG, 1, width if tag == 256 else height)
    elif data.startswith(b"BM") and len(data) >= 26:
        data[18:26] = struct.pack("<ii", width, height)
    return data


def mutate_ifd_entry(data: bytearray, pick: int, field: int, value: bytes) -> bytearray:
    """Overwrite the tag, type, count or value of one entry of the first TIFF/EXIF IFD."""
    start = min((i for i in (data.find(b"II*\0"), data.find(b"MM\0*")) if i >= 0), default=-1)
    if start < 0 or len(data) < start + 8:
        return data
    order = "<" if data[start] == ord("I") else ">"
    ifd = start + struct.unpack(order + "I", data[start + 4:start + 8])[0]
    if ifd + 2 > len(data):
        return data
    count = struct.unpack(order + "H", data[ifd:ifd + 2])[0]
    if count == 0:
        return data
    at = ifd + 2 + 12 * (pick % count) + (0, 2, 4, 8)[field]
    data[at:at + len(value)] = value
    return data


MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.none()),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("overwrite"), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("header"), st.integers(0, 64), st.binary(min_size=1, max_size=4)),
    st.tuples(st.just("dimensions"), st.integers(1, 2**31 - 1),
              st.one_of(st.integers(1, 2**16 - 1), st.sampled_from([2**15, 2**16 - 1]))),
    st.tuples(st.just("ifd entry"), st.tuples(st.integers(0, 63), st.integers(0, 3)),
              st.one_of(st.binary(min_size=1, max_size=4),
                        st.sampled_from([b"\x00\x02", b"\x02\x00", b"\x01\x00", b"\x00\x01"]))),
)


def mutate(data: bytes, mutations) -> bytes:
    out = bytearray(data)
    for kind, pos, arg in mutations:
        if not out:
            break
        at = pos % len(out) if isinstance(pos, int) else 0
        if kind == "flip":
            out[at] ^= 1 << arg
        elif kind == "truncate":
            del out[at:]
        elif kind == "insert":
            out[at:at] = arg
        elif kind in ("overwrite", "header"):
            out[at:at + len(arg)] = arg
        elif kind == "ifd entry":
            out = mutate_ifd_entry(out, *pos, arg)
        else:
            out = set_dimensions(out, pos, arg)
    return bytes(out)


@contextmanager
def time_limit(seconds: float):
    def stop(signum, frame):
        raise TimeoutError(f"decoding took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def largest_load():
    """Record the declared size of every image Pillow decodes pixels for."""
    seen = [0]
    real = ImageFile.ImageFile.load

    def load(self):
        seen[0] = max(seen[0], self.size[0] * self.size[1])
        return real(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ImageFile.ImageFile, "load", load)
        yield seen


@settings(max_examples=150, deadline=2000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(sorted(BASES)), mutations=st.lists(MUTATIONS, min_size=1, max_size=4))
# Found by this test (1,500 random examples), kept as regressions: an EXIF Make tag turned into
# ImageWidth made exif_transpose raise struct.error; TIFF StripOffsets typed ASCII, TypeError.
@example(base="jpeg", mutations=[("ifd entry", (1, 0), b"\x01\x00")])
@example(base="tiff", mutations=[("ifd entry", (5, 1), b"\x02\x00")])
def test_mutated_bytes_give_a_photo_or_a_decode_error(base, mutations):
    data = mutate(BASES[base], mutations)
    path = f"fuzz.{base}"
    with largest_load() as largest, time_limit(PER_FILE_SECONDS):
        try:
            got = read_photo(path, 224, data=data, max_pixels=FUZZ_LIMIT)
        except DecodeError as exc:
            assert exc.path == path and exc.reason
            got = None
    assert largest[0] <= FUZZ_LIMIT, f"decoded a {largest[0]:,}-pixel image"
    if got is not None:
        assert isinstance(got, DecodedPhoto) and got.image.mode == "RGB"
        assert got.width * got.height <= FUZZ_LIMIT
        assert max(got.image.size) <= 2 * 224


def test_a_root_folder_whose_name_is_not_utf8_is_refused_clearly(tmp_path, embedder):
    import os

    from engine.errors import LookalikeError
    from engine.library import Library

    bad = os.path.join(os.fsencode(tmp_path), b"caf\xe9")
    os.mkdir(bad)
    with Library(tmp_path / "lib", embedder=embedder) as lib:
        with pytest.raises(LookalikeError, match="not valid UTF-8"):
            lib.scan([os.fsdecode(bad)])
