"""Moving a file without ever replacing anything or losing a byte.

``move_no_replace(src, dst)`` on one filesystem is a hard link plus an unlink (the link fails
atomically when ``dst`` exists), or a checked rename where hard links are not supported.
Across filesystems it never trusts a plain copy-and-delete: it copies into a temporary file
next to ``dst``, fsyncs it (and the folder), keeps the modification time, reads the copy back
and compares its size and BLAKE2b hash with what was read from ``src``, and only then gives
the copy its name and unlinks ``src``. Any mismatch or error removes the temporary copy and
leaves ``src`` alone.

``file_hash`` is the catalog's content hash (``engine.decode.content_hash``), streamed.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat

CHUNK = 1 << 20
OCCUPIED = "something now exists at this path; not overwriting it"
_NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS)


class MoveError(OSError):
    """A move was refused or failed; ``src`` is untouched. ``strerror`` says why."""


def file_hash(path: str | os.PathLike) -> str:
    """BLAKE2b-160 of the file's bytes, read in chunks (equals ``decode.content_hash``)."""
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def move_no_replace(src: str, dst: str) -> None:
    """Move ``src`` to ``dst`` (creating its folder); never replaces an existing ``dst``.

    Raises ``FileExistsError`` when ``dst`` exists, ``MoveError``/``OSError`` otherwise.
    """
    folder = os.path.dirname(dst)
    try:
        os.makedirs(folder, exist_ok=True)
    except FileExistsError:  # a file where the folder should be
        raise NotADirectoryError(errno.ENOTDIR, "a file is in the way of its folder", folder) from None
    try:
        _rename_no_replace(src, dst)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        _copy_verify_unlink(src, dst)


def _rename_no_replace(src: str, dst: str) -> None:
    """Same-filesystem rename that fails (``FileExistsError``) when ``dst`` exists."""
    try:
        os.link(src, dst, follow_symlinks=False)  # fails atomically if dst exists
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, OCCUPIED, dst) from None
    except OSError as e:
        if e.errno not in _NO_HARD_LINKS:
            raise
        if os.path.lexists(dst):  # a filesystem without hard links: check, then rename
            raise FileExistsError(errno.EEXIST, OCCUPIED, dst) from None
        os.rename(src, dst)
        return
    _unlink_or_undo(src, dst)


def _copy_verify_unlink(src: str, dst: str) -> None:
    """Cross-device move: copy to a temporary name, fsync, verify size and hash, name, unlink."""
    st = os.lstat(src)
    if not stat.S_ISREG(st.st_mode):
        raise MoveError(errno.EXDEV, "only regular files are moved to another drive", src)
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, OCCUPIED, dst)
    tmp = _temporary_name(dst)
    try:
        written = _copy_fsync(src, tmp)
        shutil.copystat(src, tmp)  # modification time and mode, so a restore looks the same
        _fsync_folder(os.path.dirname(tmp))
        if os.path.getsize(tmp) != st.st_size or os.path.getsize(src) != st.st_size:
            raise MoveError(errno.EIO, "the copy's size differs from the original's", src)
        if file_hash(tmp) != written or file_hash(src) != written:
            raise MoveError(errno.EIO, "the copy's content differs from the original's", src)
        _rename_no_replace(tmp, dst)
        _fsync_folder(os.path.dirname(dst))
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    _unlink_or_undo(src, dst)
    _fsync_folder(os.path.dirname(src))


def _unlink_or_undo(src: str, dst: str) -> None:
    """Drop ``src`` now that ``dst`` holds its bytes; if that fails, drop ``dst`` instead."""
    try:
        os.unlink(src)
    except OSError:
        os.unlink(dst)  # e.g. a read-only source folder: leave things as they were
        raise


def _temporary_name(dst: str) -> str:
    folder, name = os.path.split(dst)
    for n in range(1000):
        tmp = os.path.join(folder, f".{name}.lookalike-partial-{os.getpid()}-{n}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return tmp
        except FileExistsError:
            continue
    raise MoveError(errno.EEXIST, "no free temporary name next to the destination", dst)


def _copy_fsync(src: str, tmp: str) -> str:
    """Copy ``src`` into the existing empty ``tmp``, fsync; the hash of the bytes read."""
    digest = hashlib.blake2b(digest_size=20)
    with open(src, "rb") as reader, open(tmp, "r+b") as writer:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            writer.write(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    return digest.hexdigest()


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # platforms (Windows) that cannot open a folder: nothing to sync
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the file itself was synced
    finally:
        os.close(fd)
