"""The removal journal: which file went where, so undo works after a restart.

A JSON-lines file of ``{"op": "remove"|"restore", "batch": n, "record": {...}}``, appended
with one write and an fsync. A line cut short by a crash is skipped (and logged), and the next
append starts on a fresh line. Any ``Trash`` object over the same file sees the same history.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

from engine.errors import FileError

log = logging.getLogger(__name__)


class TrashError(FileError):
    """A file could not be moved to the trash or restored from it; nothing was deleted.

    ``moved`` lists the records of files that a failing ``Trash.remove`` had already moved
    (they are journaled and can be undone).
    """

    moved: list = []


@dataclass(frozen=True)
class TrashRecord:
    original: str  # absolute path the file had
    trashed: str | None  # where it now lies; None when the platform's trash does not say
    size: int
    content_hash: str | None
    when: str  # ISO-8601 UTC
    backend: str = "freedesktop"  # how it was moved: "freedesktop", "folder" or "send2trash"


_FIELDS = {f.name for f in fields(TrashRecord)}


class Journal:
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
                op, batch = entry["op"], int(entry["batch"])
                record = TrashRecord(**{k: v for k, v in entry["record"].items() if k in _FIELDS})
                if op not in ("remove", "restore"):
                    raise ValueError(f"unknown op {op!r}")
            except (ValueError, KeyError, TypeError, AttributeError) as e:  # e.g. cut short by a crash
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

    def last_batch(self) -> list[TrashRecord]:
        """Records of the most recent batch that moved anything, not yet restored."""
        entries = self.entries()
        last = max((b for op, b, _ in entries if op == "remove"), default=None)
        return [r for r, b in self.pending().items() if b == last]

    def next_batch(self) -> int:
        return max((b for _, b, _ in self.entries()), default=0) + 1

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
