"""Safe removal: files go to the system trash, every move is journaled, and undo puts them back.

Nothing is ever deleted. On Linux/BSD the ``freedesktop`` backend follows the freedesktop.org
Trash spec itself (home trash, or ``$topdir/.Trash-$uid`` for a file on another drive), so it
knows where each file went; elsewhere ``send2trash`` hands the file to the platform's trash,
which does not say where, so undo is not possible there.

The journal is a JSON-lines file of ``{"op": "remove"|"restore", "batch": n, "record": {...}}``,
appended with one write and an fsync before ``remove``/``undo`` return.
"""
from __future__ import annotations

import json
import logging
import os
import stat
import sys
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

import send2trash

from engine.errors import FileError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "freedesktop", "send2trash")
UNDO_UNSUPPORTED = "cannot undo on this platform; the file is in the system trash"
_OCCUPIED = "something now exists at this path; not overwriting it"
_INFO_SUFFIX = ".trashinfo"


class TrashError(FileError):
    """A file could not be moved to the trash or restored from it; nothing was deleted."""


@dataclass(frozen=True)
class TrashRecord:
    original: str  # absolute path the file had
    trashed: str | None  # where it now lies; None when the platform's trash does not say
    size: int
    content_hash: str | None
    when: str  # ISO-8601 UTC


def home_trash_dir() -> Path:
    """``$XDG_DATA_HOME/Trash``, or ``~/.local/share/Trash`` (the freedesktop home trash)."""
    data_home = os.environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(data_home):  # unset, empty or relative: the basedir spec says ignore
        data_home = os.path.expanduser("~/.local/share")
    return Path(data_home) / "Trash"


def mount_point(path: str | Path) -> Path:
    """The mount point (``$topdir``) of the filesystem holding ``path``."""
    p = os.path.realpath(path)
    while not os.path.ismount(p):
        p = os.path.dirname(p)
    return Path(p)


def topdir_trash(path: str) -> tuple[Path, Path]:
    """``(topdir, $topdir/.Trash-$uid)`` for a file on another drive than the home trash.

    Creates the folder and its ``files``/``info`` with mode 0700; refuses (``TrashError``) a
    folder that is a symlink, not ours, or on another filesystem than the file.
    """
    if not hasattr(os, "getuid"):
        raise TrashError(path, "this platform has no per-drive trash; the file was left in place")
    top = mount_point(os.path.dirname(path))
    trash = top / f".Trash-{os.getuid()}"
    try:
        if not os.path.lexists(trash):
            os.mkdir(trash, 0o700)
        st = os.lstat(trash)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise TrashError(path, f"{trash} is not a private folder of this user; "
                                   "the file was left in place")
        for sub in ("files", "info"):
            os.makedirs(trash / sub, 0o700, exist_ok=True)
        same_drive = os.stat(trash).st_dev == os.lstat(path).st_dev
    except OSError as e:
        raise TrashError(path, f"cannot use the drive's trash folder {trash} ({e.strerror}); "
                               "the file was left in place") from e
    if not same_drive:
        raise TrashError(path, "found no trash folder on the file's drive; "
                               "the file was left in place")
    return top, trash


def _trashinfo(original: str, topdir: Path | None) -> bytes:
    """The ``.trashinfo`` text: absolute Path in the home trash, relative under a topdir."""
    where = original
    if topdir is not None:
        real = os.path.join(os.path.realpath(os.path.dirname(original)), os.path.basename(original))
        rel = os.path.relpath(real, topdir)
        if not rel.startswith(".."):  # the spec forbids ".." in a relative Path
            where = rel
    date = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")  # local time, as the spec says
    text = f"[Trash Info]\nPath={quote(os.fsencode(where), safe='/')}\nDeletionDate={date}\n"
    return text.encode("ascii")


def _reserve(trash: Path, name: str, info: bytes) -> tuple[Path, Path]:
    """Create ``info/<name>.trashinfo`` atomically (O_EXCL), adding " 2", " 3"... on collision."""
    stem, ext = os.path.splitext(name)
    n = 0
    while True:
        n += 1
        candidate = name if n == 1 else f"{stem} {n}{ext}"
        dest = trash / "files" / candidate
        info_path = trash / "info" / (candidate + _INFO_SUFFIX)
        if os.path.lexists(dest):
            continue
        try:
            fd = os.open(info_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        try:
            os.write(fd, info)
            os.fsync(fd)
        finally:
            os.close(fd)
        return dest, info_path


def _move_no_replace(src: str, dst: str) -> None:
    """Move ``src`` to ``dst`` without ever replacing an existing ``dst``."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst, follow_symlinks=False)  # fails atomically if dst exists
    except FileExistsError:
        raise TrashError(dst, _OCCUPIED) from None
    except OSError:  # a filesystem without hard links: check, then rename
        if os.path.lexists(dst):
            raise TrashError(dst, _OCCUPIED) from None
        os.rename(src, dst)
        return
    os.unlink(src)


class _Journal:
    """Append-only JSON-lines log of removals and restores."""

    def __init__(self, path: Path):
        self.path = path

    def entries(self) -> list[tuple[str, int, TrashRecord]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise TrashError(self.path, f"cannot read the trash journal: {e.strerror}") from e
        out = []
        for number, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                op, batch, record = entry["op"], int(entry["batch"]), TrashRecord(**entry["record"])
                if op not in ("remove", "restore"):
                    raise ValueError(f"unknown op {op!r}")
            except (ValueError, KeyError, TypeError) as e:  # e.g. a line cut short by a crash
                log.warning("%s: skipping damaged journal line %d (%s)", self.path, number, e)
                continue
            out.append((op, batch, record))
        return out

    def pending(self) -> dict[TrashRecord, int]:
        """Records removed and not restored, oldest first, each with its batch number."""
        pending: dict[TrashRecord, int] = {}
        for op, batch, record in self.entries():
            if op == "remove":
                pending[record] = batch
            else:
                pending.pop(record, None)
        return pending

    def append(self, op: str, items: Sequence[tuple[int, TrashRecord]]) -> None:
        if not items:
            return
        text = "".join(json.dumps({"op": op, "batch": b, "record": asdict(r)}) + "\n"
                       for b, r in items).encode("ascii")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    text = b"\n" + text  # end a line cut short by a crash
                view = memoryview(text)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise TrashError(self.path, f"cannot write the trash journal ({e.strerror}); "
                                        f"{len(items)} file(s) were {op}d but not recorded") from e


def _resolve_backend(backend: str, trash_dir: Path | None) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown trash backend {backend!r}; expected one of {BACKENDS}")
    if backend == "send2trash" and trash_dir is not None:
        raise ValueError("trash_dir applies only to the freedesktop backend")
    if backend != "auto":
        return backend
    freedesktop_os = sys.platform.startswith("linux") or "bsd" in sys.platform
    return "freedesktop" if freedesktop_os or trash_dir is not None else "send2trash"


class Trash:
    """Moves files to the trash with a journal, and undoes it. Thread-safe."""

    def __init__(self, journal_path: Path, *, trash_dir: Path | None = None,
                 backend: str = "auto"):
        self.backend = _resolve_backend(backend, trash_dir)
        self.home = Path(trash_dir) if trash_dir is not None else home_trash_dir()
        self._journal = _Journal(Path(journal_path))
        self._lock = threading.Lock()

    def remove(self, paths: Sequence[str | Path], *,
               content_hashes: Sequence[str | None] | None = None) -> list[TrashRecord]:
        """Move each file to the trash, in order; stops at the first failure (``TrashError``).

        Files moved before a failure stay moved and are journaled.
        """
        hashes = list(content_hashes) if content_hashes is not None else [None] * len(paths)
        if len(hashes) != len(paths):
            raise ValueError(f"{len(paths)} paths but {len(hashes)} content hashes")
        with self._lock:
            batch = max((b for _, b, _ in self._journal.entries()), default=0) + 1
            done: list[TrashRecord] = []
            try:
                for path, content_hash in zip(paths, hashes):
                    done.append(self._remove_one(os.path.abspath(os.fspath(path)), content_hash))
            finally:
                self._journal.append("remove", [(batch, r) for r in done])
        log.info("moved %d file(s) to the trash (batch %d)", len(done), batch)
        return done

    def undo(self, records: Sequence[TrashRecord]) -> list[str]:
        """Put each record back at its original path; never overwrites anything there.

        Every record is checked before any is moved; returns the restored paths.
        """
        records = list(dict.fromkeys(records))
        with self._lock:
            pending = self._journal.pending()
            for record in records:
                self._check_restorable(record, pending)
            restored: list[TrashRecord] = []
            try:
                for record in records:
                    self._restore_one(record)
                    restored.append(record)
            finally:
                self._journal.append("restore", [(pending[r], r) for r in restored])
        log.info("restored %d file(s) from the trash", len(restored))
        return [r.original for r in restored]

    def history(self) -> list[TrashRecord]:
        """Journal records not yet restored, newest last."""
        with self._lock:
            return list(self._journal.pending())

    def last_batch(self) -> list[TrashRecord]:
        """Records of the most recent ``remove`` call (that moved anything) not yet restored."""
        with self._lock:
            entries = self._journal.entries()
            last = max((b for op, b, _ in entries if op == "remove"), default=None)
            return [r for r, b in self._journal.pending().items() if b == last]

    def _remove_one(self, path: str, content_hash: str | None) -> TrashRecord:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise TrashError(path, "no such file; it and the files after it were left "
                                   "in place") from None
        except OSError as e:
            raise TrashError(path, f"cannot read it: {e.strerror}") from e
        if stat.S_ISDIR(st.st_mode) or os.path.isdir(path):
            raise TrashError(path, "is a folder; only files are moved to the trash")
        when = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        if self.backend == "send2trash":
            try:
                send2trash.send2trash(path)
            except OSError as e:
                raise TrashError(path, f"the system trash refused it: {e}") from e
            trashed = None
        else:
            trashed = self._move_to_trash(path, st.st_dev)
        log.debug("trashed %s -> %s", path, trashed)
        return TrashRecord(path, trashed, st.st_size, content_hash, when)

    def _on_home_device(self, dev: int) -> bool:
        for folder in (self.home, *self.home.parents):  # the trash may not exist yet
            try:
                return os.stat(folder).st_dev == dev
            except OSError:  # not there yet (or unreadable): ask its parent
                continue
        return False

    def _move_to_trash(self, path: str, dev: int) -> str:
        if self._on_home_device(dev):
            topdir, trash = None, self.home
            try:
                for sub in ("files", "info"):
                    os.makedirs(trash / sub, 0o700, exist_ok=True)
            except OSError as e:
                raise TrashError(path, f"cannot create the trash folder {trash} "
                                       f"({e.strerror}); the file was left in place") from e
        else:
            topdir, trash = topdir_trash(path)
        try:
            dest, info_path = _reserve(trash, os.path.basename(path), _trashinfo(path, topdir))
        except OSError as e:
            raise TrashError(path, f"cannot write its trash info in {trash} ({e.strerror}); "
                                   "the file was left in place") from e
        try:
            os.rename(path, dest)  # same filesystem: never a copy-and-delete
        except OSError as e:
            os.unlink(info_path)
            raise TrashError(path, f"cannot move it into {trash} ({e.strerror}); "
                                   "the file was left in place") from e
        return str(dest)

    @staticmethod
    def _check_restorable(record: TrashRecord, pending: dict[TrashRecord, int]) -> None:
        if record not in pending:
            raise TrashError(record.original, "is not in the trash journal (already restored?)")
        if record.trashed is None:
            raise TrashError(record.original, UNDO_UNSUPPORTED)
        if not os.path.lexists(record.trashed):
            raise TrashError(record.original, f"is no longer in the trash ({record.trashed}); "
                                              "the trash may have been emptied")
        if os.path.lexists(record.original):
            raise TrashError(record.original, _OCCUPIED)

    @staticmethod
    def _restore_one(record: TrashRecord) -> None:
        trashed = Path(record.trashed)
        try:
            _move_no_replace(str(trashed), record.original)
        except OSError as e:
            raise TrashError(record.original, f"cannot restore it from {trashed} "
                                              f"({e.strerror})") from e
        info = trashed.parent.parent / "info" / (trashed.name + _INFO_SUFFIX)
        try:
            info.unlink()
        except OSError as e:
            log.warning("%s: restored, but its trash info %s was not removed (%s)",
                        record.original, info, e.strerror)
