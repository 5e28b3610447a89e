"""Safe removal: files go to the system trash or to a folder the person chose, every move is
journaled, and undo puts them back, also after a restart. Nothing is ever deleted.

Backends:

- ``freedesktop`` (Linux/BSD): the freedesktop.org Trash spec (``engine/freedesktop.py``):
  home trash, or the drive's ``$topdir/.Trash-$uid``, so the file is only ever renamed.
- ``folder``: ``trash_dir`` is a folder the person chose; a file goes to the same path below
  it (``/home/me/Photos/a.jpg`` → ``<folder>/home/me/Photos/a.jpg``), with " 2", " 3"... added
  to the name when that is taken. On the same drive it is a rename; on another drive it is a
  verified copy (copy, fsync, compare size and hash, then unlink; ``engine/safe_move.py``).
- ``send2trash`` (elsewhere): the platform's trash, which does not say where the file went,
  so undo is not possible there.

Reviewed state: ``remove(..., reviewed=[FileRecord...])`` refuses a file that changed since
the person looked at it (size, modification time, and content hash when size and time
match; ``engine/review.py``). Every file is checked before the first one moves, so a changed
file means nothing moves; each is stat-checked again just before it moves, and a change found
then stops the batch there (the files already moved stay journaled: ``TrashError.moved``).

The journal (``engine/trash_journal.py``) is fsynced before ``remove``/``undo`` return.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import send2trash

from engine import freedesktop
from engine.freedesktop import home_trash_dir, topdir_trash  # noqa: F401  (re-exported)
from engine.review import Reviewed, change_since_review
from engine.safe_move import OCCUPIED, move_no_replace
from engine.trash_journal import Journal, TrashError, TrashRecord

log = logging.getLogger(__name__)

BACKENDS = ("auto", "freedesktop", "folder", "send2trash")
UNDO_UNSUPPORTED = "cannot undo on this platform; the file is in the system trash"
_LEFT = "it and the files after it were left in place"

__all__ = ["BACKENDS", "UNDO_UNSUPPORTED", "Trash", "TrashError", "TrashRecord", "is_inside",
           "topdir_trash"]


def _resolve_backend(backend: str, trash_dir: Path | None) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown trash backend {backend!r}; expected one of {BACKENDS}")
    if backend == "send2trash" and trash_dir is not None:
        raise ValueError("trash_dir does not apply to the send2trash backend")
    if backend == "folder" and trash_dir is None:
        raise ValueError("the folder backend needs trash_dir, the folder to move files into")
    if backend != "auto":
        return backend
    freedesktop_os = sys.platform.startswith("linux") or "bsd" in sys.platform
    return "freedesktop" if freedesktop_os or trash_dir is not None else "send2trash"


def mirrored(path: str) -> Path:
    """``/a/b.jpg`` → ``a/b.jpg``; ``C:\\a\\b.jpg`` → ``C/a/b.jpg``: a path to put below a folder."""
    p = Path(path)
    drive = p.drive.rstrip(":").replace("\\", "_").strip("_") if p.drive else ""
    return Path(drive, *p.parts[1:]) if p.anchor else p


def is_inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (symlinks resolved)."""
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


class Trash:
    """Moves files to the trash (or a chosen folder) with a journal, and undoes it. Thread-safe.

    ``trash_dir``: for ``freedesktop``, the home trash to use instead of the user's (tests);
    for ``folder``, the folder the person chose.
    """

    def __init__(self, journal_path: Path, *, trash_dir: Path | None = None,
                 backend: str = "auto"):
        self.backend = _resolve_backend(backend, trash_dir)
        self.home = Path(trash_dir) if trash_dir is not None else home_trash_dir()
        self.journal_path = Path(journal_path)
        self._journal = Journal(self.journal_path)
        self._lock = threading.Lock()

    def remove(self, paths: Sequence[str | Path], *,
               content_hashes: Sequence[str | None] | None = None,
               reviewed: Sequence[Reviewed | None] | None = None) -> list[TrashRecord]:
        """Move each file away, in order; ``TrashError`` (naming the file) on the first refusal.

        ``reviewed[i]`` (e.g. the ``FileRecord`` the person saw) is the state file ``i`` must
        still have. A missing, changed or folder path found before the first move means nothing
        moves; a failure later leaves the earlier files moved and journaled (``error.moved``).
        """
        paths = [os.path.abspath(os.fspath(p)) for p in paths]
        states = list(reviewed) if reviewed is not None else [None] * len(paths)
        if content_hashes is None:
            content_hashes = [getattr(s, "content_hash", None) for s in states]
        hashes = list(content_hashes)
        if not len(paths) == len(hashes) == len(states):
            raise ValueError(f"{len(paths)} paths but {len(hashes)} content hashes "
                             f"and {len(states)} reviewed states")
        if len(set(paths)) != len(paths):
            raise ValueError("a path is listed twice")
        with self._lock:
            for path, state in zip(paths, states):
                self._preflight(path, state)
            batch = self._journal.next_batch()
            done: list[TrashRecord] = []
            try:
                for path, content_hash, state in zip(paths, hashes, states):
                    done.append(self._remove_one(path, content_hash, state))
            except TrashError as e:
                e.moved = list(done)
                raise
            finally:
                self._journal.append("remove", [(batch, r) for r in done])
        log.info("moved %d file(s) away (%s, batch %d)", len(done), self.backend, batch)
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
        log.info("restored %d file(s)", len(restored))
        return [r.original for r in restored]

    def undo_last(self) -> list[str]:
        """Undo the most recent removal batch (also one made before a restart)."""
        return self.undo(self.last_batch())

    def history(self) -> list[TrashRecord]:
        """Journal records not yet restored, newest last."""
        with self._lock:
            return list(self._journal.pending())

    def last_batch(self) -> list[TrashRecord]:
        """Records of the most recent ``remove`` call (that moved anything) not yet restored."""
        with self._lock:
            return self._journal.last_batch()

    # ---- removing ---------------------------------------------------------------------------
    def _preflight(self, path: str, state: Reviewed | None) -> None:
        """Checks made for every file before the first one moves."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise TrashError(path, "no such file; nothing was moved") from None
        except OSError as e:
            raise TrashError(path, f"cannot read it ({e.strerror}); nothing was moved") from e
        if stat.S_ISDIR(st.st_mode) or os.path.isdir(path):
            raise TrashError(path, "is a folder; only files are moved to the trash")
        if self.backend == "folder" and is_inside(path, self.home):
            raise TrashError(path, f"is already inside the removal folder {self.home}")
        reason = change_since_review(path, state) if state is not None else None
        if reason:
            raise TrashError(path, f"{reason}; nothing was moved")

    def _remove_one(self, path: str, content_hash: str | None, state: Reviewed | None) -> TrashRecord:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise TrashError(path, f"no such file; {_LEFT}") from None
        except OSError as e:
            raise TrashError(path, f"cannot read it: {e.strerror}") from e
        reason = change_since_review(path, state, hash_content=False) if state is not None else None
        if reason:  # changed in the moments since the checks above
            raise TrashError(path, f"{reason}; {_LEFT}")
        when = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        if self.backend == "send2trash":
            try:
                send2trash.send2trash(path)
            except OSError as e:
                raise TrashError(path, f"the system trash refused it: {e}") from e
            trashed = None
        elif self.backend == "folder":
            trashed = self._move_to_folder(path)
        else:
            trashed = self._move_to_trash(path, st.st_dev)
        log.debug("moved %s -> %s", path, trashed)
        return TrashRecord(path, trashed, st.st_size, content_hash, when, self.backend)

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
        info = freedesktop.trashinfo(path, topdir)
        try:
            dest, info_path = freedesktop.reserve(trash, os.path.basename(path), info)
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

    def _move_to_folder(self, path: str) -> str:
        target = self.home / mirrored(path)
        stem, ext = os.path.splitext(target.name)
        for n in range(1, 10_000):
            dest = target if n == 1 else target.with_name(f"{stem} {n}{ext}")
            try:
                move_no_replace(path, str(dest))
                return str(dest)
            except FileExistsError:
                continue
            except OSError as e:
                raise TrashError(path, f"cannot move it into {self.home} ({e.strerror}); "
                                       "the file was left in place") from e
        raise TrashError(path, f"no free name for it in {target.parent}; the file was left in place")

    # ---- restoring --------------------------------------------------------------------------
    @staticmethod
    def _check_restorable(record: TrashRecord, pending: dict[TrashRecord, int]) -> None:
        if record not in pending:
            raise TrashError(record.original, "is not in the trash journal (already restored?)")
        if record.trashed is None:
            raise TrashError(record.original, UNDO_UNSUPPORTED)
        try:
            st = os.lstat(record.trashed)
        except OSError:
            raise TrashError(record.original, f"is no longer in the trash ({record.trashed}); "
                                              "the trash may have been emptied") from None
        if stat.S_ISREG(st.st_mode) and st.st_size != record.size:
            raise TrashError(record.original, f"{record.trashed} is not the file that was removed "
                                              f"(size {record.size} → {st.st_size} bytes)")
        if os.path.lexists(record.original):
            raise TrashError(record.original, OCCUPIED)

    def _restore_one(self, record: TrashRecord) -> None:
        try:
            move_no_replace(record.trashed, record.original)
        except OSError as e:
            reason = OCCUPIED if isinstance(e, FileExistsError) else e.strerror
            raise TrashError(record.original, f"cannot restore it from {record.trashed} "
                                              f"({reason})") from e
        if record.backend == "folder":
            self._prune_empty_folders(Path(record.trashed).parent)
            return
        info = freedesktop.info_file(record.trashed)
        try:
            info.unlink()
        except OSError as e:
            log.warning("%s: restored, but its trash info %s was not removed (%s)",
                        record.original, info, e.strerror)

    def _prune_empty_folders(self, folder: Path) -> None:
        """Remove the now-empty mirrored folders below the removal folder (never the folder)."""
        if self.backend != "folder" or not is_inside(str(folder), self.home):
            return
        top = os.path.realpath(self.home)
        while os.path.realpath(folder) != top:
            try:
                folder.rmdir()
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    log.debug("%s: left in place (%s)", folder, e.strerror)
                return
            folder = folder.parent
