"""The freedesktop.org Trash spec, the parts Lookalike needs to put a file there and back.

The home trash is ``$XDG_DATA_HOME/Trash``; a file on another drive goes to that drive's
``$topdir/.Trash-$uid`` (created private, refused when it is a symlink or not ours), so a
file is always renamed within its filesystem, never copied. Each file gets an
``info/<name>.trashinfo`` (reserved first with O_EXCL, so two removals never pick one name).
"""
from __future__ import annotations

import os
import stat
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from engine.trash_journal import TrashError

INFO_SUFFIX = ".trashinfo"


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


def trashinfo(original: str, topdir: Path | None) -> bytes:
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


def reserve(trash: Path, name: str, info: bytes) -> tuple[Path, Path]:
    """Create ``info/<name>.trashinfo`` atomically (O_EXCL), adding " 2", " 3"... on collision."""
    stem, ext = os.path.splitext(name)
    n = 0
    while True:
        n += 1
        candidate = name if n == 1 else f"{stem} {n}{ext}"
        dest = trash / "files" / candidate
        info_path = trash / "info" / (candidate + INFO_SUFFIX)
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


def info_file(trashed: str | Path) -> Path:
    """The ``.trashinfo`` that belongs to a file in a trash's ``files`` folder."""
    trashed = Path(trashed)
    return trashed.parent.parent / "info" / (trashed.name + INFO_SUFFIX)
