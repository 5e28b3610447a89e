"""Walk folders and find the photos in them, by content rather than by extension.

A file is a photo when its first bytes carry a known image signature (JPEG, PNG, GIF, BMP,
TIFF, WebP, HEIC/HEIF, AVIF, Netpbm). A file whose name claims an image but whose bytes do not
(an empty file, a text file called ``.jpg``) is recorded as a problem; other files are ignored
quietly. Symlinked folders are followed once: a link that leads back into a folder already
walked is a loop and is recorded, not followed. Unreadable folders are recorded and skipped.
Names that are not valid UTF-8 (old Latin-1 disks, broken archives) cannot be stored as text in
the catalog; such a file or folder is recorded as a problem under a readable, escaped form of
its path (``bad\\xff.jpg``) and skipped. Special files (FIFOs, sockets, devices) are never
opened, so a named pipe called ``x.jpg`` cannot hang the scan.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from engine.progress import ProgressCallback, null_progress, wants_stop

IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .gif .bmp .dib .tif .tiff .webp .heic .heif .hif .avif "
    ".ppm .pgm .pbm .pnm".split())
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1",
                b"avif", b"avis")
_SNIFF_BYTES = 32


@dataclass(frozen=True)
class FileEntry:
    path: str      # absolute, normalised
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class ScanProblem:
    path: str
    kind: str      # "empty", "not-image", "unreadable", "unreadable-folder", "symlink-loop",
                   # "bad-name"
    message: str


@dataclass
class ScanResult:
    roots: list[str]
    files: list[FileEntry] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    cancelled: bool = False
    known: Mapping[str, tuple[int, int]] = field(default_factory=dict, repr=False)  # see scan()


def sniff_format(head: bytes) -> str | None:
    """Image format named by the first bytes of a file, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM") and len(head) >= 14:
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp" and any(b in head[8:_SNIFF_BYTES] for b in _HEIF_BRANDS):
        return "AVIF" if head[8:12] in (b"avif", b"avis") else "HEIF"
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"123456" and head[2:3] in b" \t\r\n":
        return "PPM"
    return None


def scan(roots: Iterable[str | Path], progress: ProgressCallback = null_progress,
         known: Mapping[str, tuple[int, int]] | None = None) -> ScanResult:
    """Walk ``roots`` recursively; return the photos found and the problems met.

    ``known`` maps paths already in the catalog to their (size, mtime_ns): a file that still
    has both is taken as the photo it was without opening it, so an unchanged rescan costs
    one directory listing and one stat per file, no reads.
    """
    result = ScanResult(roots=[normalise(r) for r in roots])
    result.known = known or {}
    visited: set[tuple[int, int]] = set()
    for root in result.roots:
        if not os.path.isdir(root):
            _add_single(root, result)
            continue
        if not _walk(root, visited, result, progress):
            result.cancelled = True
            break
    return result


def normalise(path: str | Path) -> str:
    return os.path.abspath(os.path.expanduser(str(path)))


def _walk(top: str, visited: set, result: ScanResult, progress: ProgressCallback) -> bool:
    """Depth-first walk of one root; False when the callback asked to stop."""
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            info = os.stat(folder)
        except OSError as exc:
            _problem(result, folder, "unreadable-folder", f"cannot open folder ({exc.strerror})")
            continue
        key = (info.st_dev, info.st_ino)
        if key in visited:
            _problem(result, folder, "symlink-loop",
                     "folder already scanned through another path (symlink loop or duplicate link); skipped")
            continue
        visited.add(key)
        subfolders = _list_folder(folder, result)
        if subfolders is None:
            continue
        stack.extend(sorted(subfolders, reverse=True))
        if wants_stop(progress, len(result.files), 0, folder):
            return False
    return True


def _list_folder(folder: str, result: ScanResult) -> list[str] | None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        _problem(result, folder, "unreadable-folder", f"cannot list folder ({exc.strerror})")
        return None
    subfolders = []
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=True):
                if is_text(entry.path):
                    subfolders.append(entry.path)
                else:
                    _problem(result, entry.path, "bad-name", "folder name is not valid UTF-8;"
                             " skipped with everything in it (rename it to include it)")
            elif entry.is_file(follow_symlinks=True):
                _consider_file(entry.path, entry.stat(follow_symlinks=True), result)
        except OSError as exc:
            _problem(result, entry.path, "unreadable", f"cannot read ({exc.strerror})")
    return subfolders


def _add_single(path: str, result: ScanResult) -> None:
    try:
        _consider_file(path, os.stat(path), result)
    except OSError as exc:
        _problem(result, path, "unreadable", f"cannot read ({exc.strerror})")


def _consider_file(path: str, info: os.stat_result, result: ScanResult) -> None:
    if not stat.S_ISREG(info.st_mode):
        return
    if result.known.get(path) == (info.st_size, info.st_mtime_ns) and info.st_size > 0:
        result.files.append(FileEntry(path, info.st_size, info.st_mtime_ns))
        return
    claims_image = Path(path).suffix.lower() in IMAGE_EXTENSIONS
    if info.st_size == 0:
        if claims_image:
            _problem(result, path, "empty", "empty file (0 bytes)")
        return
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:
        _problem(result, path, "unreadable", f"cannot read ({exc.strerror})")
        return
    is_photo = sniff_format(head) is not None
    if is_photo and not is_text(path):
        _problem(result, path, "bad-name",
                 "file name is not valid UTF-8; skipped (rename it to include it)")
    elif is_photo:
        result.files.append(FileEntry(path, info.st_size, info.st_mtime_ns))
    elif claims_image:
        _problem(result, path, "not-image",
                 "named like an image but its content is not a known image format")


def is_text(path: str) -> bool:
    """True when ``path`` is valid Unicode (os.fsdecode gives lone surrogates otherwise)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(path: str) -> str:
    """``path`` as storable text: undecodable bytes become ``\\xNN`` escapes."""
    return path if is_text(path) else os.fsencode(path).decode("utf-8", "backslashreplace")


def _problem(result: ScanResult, path: str, kind: str, message: str) -> None:
    result.problems.append(ScanProblem(printable(path), kind, message))
