"""The two checks that make a removal safe, enforced below the GUI.

``check_removal(groups, paths)``: no removal may leave a group without a copy. A photo of a
group "survives" only if it is not being removed, is still a file on disk, and is not the same
file as one being removed (a symlink to it). Raises ``LastCopyError`` naming every such
group's files, before anything moves.

``change_since_review(path, reviewed)``: a file is removed only if it is still what the person
looked at. Size and modification time are compared (a stat, cheap); when the reviewed state
has a content hash and both match, the file is read and hashed as well, because tools that
edit metadata in place can keep both the size and the time (``exiftool -P``, ``touch -r``).
"""
from __future__ import annotations

import os
from typing import Iterable, Protocol

from engine.errors import LookalikeError
from engine.safe_move import file_hash


class Reviewed(Protocol):
    """What the person reviewed: a ``FileRecord`` fits."""

    size: int
    mtime_ns: int
    content_hash: str | None


class LastCopyError(LookalikeError):
    """A removal would leave a group with no copy; ``groups`` holds each such group's paths."""

    def __init__(self, groups: list[list[str]], reasons: list[str]):
        self.groups = groups
        lines = [f"  {', '.join(paths)} ({why})" for paths, why in zip(groups, reasons)]
        super().__init__(f"nothing was moved: this would leave no copy of {len(groups)} "
                         "group(s); keep at least one photo of each:\n" + "\n".join(lines))


def group_paths(group) -> list[str]:
    """The paths of a ``DuplicateGroup`` (``members[i].file.path``) or of a list of paths."""
    members = getattr(group, "members", None)
    if members is not None:
        return [m.file.path for m in members]
    return [os.fspath(p) for p in group]


def check_removal(groups: Iterable, paths: Iterable[str | os.PathLike]) -> None:
    """Raise ``LastCopyError`` if removing ``paths`` leaves any of ``groups`` without a copy."""
    removing = {os.path.abspath(os.fspath(p)) for p in paths}
    removing_real = {os.path.realpath(p) for p in removing}
    bad, reasons = [], []
    for group in groups:
        members = group_paths(group)
        absolute = [os.path.abspath(p) for p in members]
        if not removing.intersection(absolute):
            continue
        kept = [p for p in absolute if p not in removing]
        if any(os.path.isfile(p) and os.path.realpath(p) not in removing_real for p in kept):
            continue
        bad.append(members)
        if not kept:
            reasons.append("every copy is marked for removal")
        else:
            reasons.append(f"the copies not marked, {', '.join(kept)}, are no longer on disk "
                           "or are links to a marked file")
    if bad:
        raise LastCopyError(bad, reasons)


def change_since_review(path: str, reviewed: Reviewed, *, hash_content: bool = True) -> str | None:
    """None if ``path`` still has the reviewed size, mtime (and hash); else what changed."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file (moved or deleted since it was reviewed)"
    except OSError as e:
        return f"cannot read it ({e.strerror})"
    if st.st_size != reviewed.size:
        return f"changed since it was reviewed (size {reviewed.size} → {st.st_size} bytes)"
    if st.st_mtime_ns != reviewed.mtime_ns:
        return "changed since it was reviewed (modification time differs)"
    if hash_content and reviewed.content_hash:
        try:
            digest = file_hash(path)
        except OSError as e:
            return f"cannot read it to check its content ({e.strerror})"
        if digest != reviewed.content_hash:
            return "changed since it was reviewed (same size and time, different content)"
    return None

