"""Disk cache of grid thumbnails, keyed by content hash so renamed files and exact copies share one.

Layout: ``<folder>/<hash[:2]>/<hash>-<size>.jpg``, an EXIF-oriented RGB JPEG whose longest side is
``size`` (or less, for a smaller photo). A miss decodes the photo with ``read_photo`` (JPEG draft
mode, so a 24 MP photo is never decoded at full size) and writes the file atomically: a temporary
file in the same folder, then ``os.replace``. Several worker threads may call ``get`` at once; two
threads making the same thumbnail each write their own temporary file and the last rename wins,
so a reader never sees a half-written thumbnail.

Thumbnails can always be remade, so writes are not fsynced (one fsync per thumbnail would cost
more than the decode on a slow disk); a thumbnail cut short by a crash is detected on reading (no
JPEG end marker, or Pillow refuses it), discarded and remade. Recency for ``trim`` is the file's
mtime, refreshed on a hit only when older than an hour, so hits stay cheap.
"""
from __future__ import annotations

import io
import logging
import os
import re
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

from engine.decode import content_hash as hash_bytes
from engine.decode import read_bytes, read_photo, to_rgb

log = logging.getLogger(__name__)

_HASH = re.compile(r"[0-9a-f]{8,128}")
_SHARD = re.compile(r"[0-9a-f]{2}")
_THUMB = re.compile(r"[0-9a-f]{8,128}-[0-9]+\.jpg")
_TEMP_SUFFIX = ".tmp"
_JPEG_END = b"\xff\xd9"
_TOUCH_AFTER_S = 3600.0  # refresh a hit's mtime only when older than this
_STALE_TEMP_S = 3600.0  # a temporary file this old was left by a crash; trim removes it


class ThumbnailCache:
    """Disk cache of thumbnails keyed by content hash (so renamed/copied photos share one), JPEG
    files under ``<folder>/<hash[:2]>/<hash>-<size>.jpg``; longest side = size; EXIF-oriented;
    made with draft-mode decode. Safe to share between threads."""

    def __init__(self, folder: Path, size: int = 256, max_bytes: int = 512 * 1024**2,
                 quality: int = 85):
        if size < 1:
            raise ValueError(f"thumbnail size must be at least 1 px, not {size}")
        if max_bytes < 0:
            raise ValueError(f"max_bytes must not be negative, not {max_bytes}")
        if not 1 <= quality <= 95:
            raise ValueError(f"JPEG quality must be 1..95, not {quality}")
        self.folder = Path(folder)
        self.size = size
        self.max_bytes = max_bytes
        self.quality = quality
        self._sweep_lock = threading.Lock()  # one trim/clear at a time

    def path_for(self, content_hash: str) -> Path:
        if not isinstance(content_hash, str) or not _HASH.fullmatch(content_hash):
            raise ValueError(f"not a content hash (lower-case hex): {content_hash!r}")
        return self.folder / content_hash[:2] / f"{content_hash}-{self.size}.jpg"

    def get(self, path: str | Path, content_hash: str | None = None) -> Image.Image:
        """The thumbnail of the photo at ``path``: from disk when cached, else decoded and stored.

        ``content_hash`` (from the catalog) saves reading the photo on a hit; without it the file
        is read once, hashed, and the same bytes are decoded on a miss. Raises ``DecodeError``
        naming the file when the photo cannot be read or decoded.
        """
        data = None
        if content_hash is None:
            data = read_bytes(path)
            content_hash = hash_bytes(data)
        cached = self.get_cached(content_hash)
        if cached is not None:
            return cached
        decoded = read_photo(path, self.size, data=data)
        if decoded.content_hash != content_hash:  # the catalog's hash is stale: file changed
            log.debug("%s: content changed since it was hashed (%s → %s); caching the new content",
                      path, content_hash, decoded.content_hash)
        image = decoded.image
        image.thumbnail((self.size, self.size), Image.Resampling.LANCZOS)
        self._store(decoded.content_hash, image)
        return image

    def get_cached(self, content_hash: str) -> Image.Image | None:
        """The cached thumbnail, or None when there is none (or it was corrupt and got removed).
        Never decodes the photo itself."""
        target = self.path_for(content_hash)
        try:
            with open(target, "rb") as fh:
                mtime = os.fstat(fh.fileno()).st_mtime
                data = fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("%s: cannot read cached thumbnail (%s)", target, exc.strerror or exc)
            return None
        image = self._load(target, data)
        if image is not None and time.time() - mtime > _TOUCH_AFTER_S:
            _touch(target)
        return image

    def put(self, content_hash: str, image: Image.Image) -> None:
        """Store a thumbnail of ``image`` (decoded elsewhere, already EXIF-oriented), shrunk to
        ``size`` when larger. The caller's image is not modified."""
        self.path_for(content_hash)  # validate before any work
        thumb = to_rgb(image)
        if thumb is image:
            thumb = image.copy()
        thumb.thumbnail((self.size, self.size), Image.Resampling.LANCZOS)
        self._store(content_hash, thumb)

    def size_on_disk(self) -> int:
        """Bytes held by thumbnails of every size in the folder (temporary files not counted)."""
        return sum(size for _, size, _ in self._entries())

    def trim(self) -> int:
        """Evict least-recently-used thumbnails until at most ``max_bytes`` remain; also remove
        temporary files left by a crash. Returns the bytes freed."""
        with self._sweep_lock:
            freed = self._remove_stale_temps()
            entries = sorted(self._entries())  # (mtime, size, path): oldest first
            total = sum(size for _, size, _ in entries)
            for _, size, path in entries:
                if total <= self.max_bytes:
                    break
                total -= size
                if _unlink(path):
                    freed += size
        if freed:
            log.info("thumbnail cache %s: freed %d bytes, %d left", self.folder, freed, total)
        return freed

    def clear(self) -> None:
        """Remove every thumbnail (and temporary file) this cache wrote; other files are kept."""
        with self._sweep_lock:
            for shard in self._shards():
                for entry in _scan(shard):
                    if _THUMB.fullmatch(entry.name) or entry.name.endswith(_TEMP_SUFFIX):
                        _unlink(Path(entry.path))
                try:
                    shard.rmdir()
                except OSError:  # not empty (a foreign file or a write in flight): keep it
                    pass

    # -- internals ------------------------------------------------------------------------

    def _load(self, target: Path, data: bytes) -> Image.Image | None:
        reason = None
        if not data.endswith(_JPEG_END):
            reason = "no JPEG end marker (cut short)"
        else:
            try:
                with Image.open(io.BytesIO(data)) as img:
                    image = img.convert("RGB")  # a copy that outlives the closed file
                    if max(image.size) <= self.size:
                        return image
                    reason = f"{image.width}×{image.height} is larger than {self.size} px"
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                reason = str(exc)
        log.warning("%s: discarding corrupt cached thumbnail (%s)", target, reason)
        _unlink(target)
        return None

    def _store(self, content_hash: str, image: Image.Image) -> None:
        """Write atomically; a failed write is logged, not raised (the cache is best effort)."""
        target = self.path_for(content_hash)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=self.quality, optimize=True)
        try:
            _write_atomic(target, buffer.getvalue())
        except OSError as exc:
            log.warning("%s: cannot write thumbnail (%s)", target, exc.strerror or exc)

    def _shards(self) -> list[Path]:
        return [Path(e.path) for e in _scan(self.folder)
                if _SHARD.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]

    def _entries(self) -> list[tuple[float, int, Path]]:
        entries = []
        for shard in self._shards():
            for entry in _scan(shard):
                if not _THUMB.fullmatch(entry.name):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # evicted or cleared meanwhile
                    continue
                entries.append((st.st_mtime, st.st_size, Path(entry.path)))
        return entries

    def _remove_stale_temps(self) -> int:
        freed, cutoff = 0, time.time() - _STALE_TEMP_S
        for shard in self._shards():
            for entry in _scan(shard):
                if not entry.name.endswith(_TEMP_SUFFIX):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # renamed into place meanwhile
                    continue
                if st.st_mtime < cutoff and _unlink(Path(entry.path)):
                    freed += st.st_size
        return freed


def _write_atomic(target: Path, data: bytes) -> None:
    for attempt in (1, 2):  # a concurrent clear() may remove the shard folder in between
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=_TEMP_SUFFIX,
                                        dir=target.parent)
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            os.replace(temp, target)
        except PermissionError:  # Windows: a reader holds the file another thread just wrote
            if not target.exists():
                raise
    finally:
        _unlink(temp)


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError as exc:  # read-only cache, or evicted meanwhile: recency is only a hint
        log.debug("%s: cannot refresh mtime (%s)", path, exc.strerror or exc)


def _unlink(path: Path) -> bool:
    """Remove ``path``; False when it was already gone or cannot be removed (logged)."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("%s: cannot remove (%s)", path, exc.strerror or exc)
        return False
    return True


def _scan(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("%s: cannot list thumbnail folder (%s)", folder, exc.strerror or exc)
        return []
