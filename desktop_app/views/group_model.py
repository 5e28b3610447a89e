"""Duplicate groups for the duplicates view: the review decisions and the Qt list model.

``ReviewState`` is plain Python (no Qt): which photo of each group is marked for removal, the
rules that set those marks for every group at once, the "would remove every copy" check and
the space a removal would free. ``GroupListModel`` is the Qt face of the group list.

Marks: a photo is kept or marked "remove". Until the person (or a rule) decides, the engine's
suggested keeper is kept and every other copy is marked (in a same-moment stack only exact
copies of the best shot are: its other shots are different photos, kept until marked). Decisions are remembered by path, so
regrouping at another threshold keeps them for the photos that are still in a group.
"""
from __future__ import annotations

import os
from datetime import datetime

from PySide6.QtCore import QAbstractListModel, QModelIndex, Qt

GroupRole = Qt.ItemDataRole.UserRole + 1
RULES = ("suggested", "largest", "oldest", "folder", "clear")


def format_bytes(n: int | None) -> str:
    """1536 → "1.5 KB" (decimal units, as file managers show them)."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000:
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def photo_date(record) -> float:
    """Capture time (EXIF, ISO text) when known, else the file's modification time."""
    if record.capture_time:
        try:
            return datetime.fromisoformat(record.capture_time).timestamp()
        except (ValueError, OverflowError, OSError):
            pass  # unparseable capture time: the file time below is the next best thing
    return record.mtime_ns / 1e9


def in_folder(path: str, folder: str) -> bool:
    """Whether ``path`` lies in ``folder`` or one of its subfolders."""
    folder = os.path.normpath(folder)
    parent = os.path.normpath(os.path.dirname(path))
    return parent == folder or parent.startswith(folder.rstrip(os.sep) + os.sep)


def describe_record(record) -> str:
    """Folder, resolution · size · format, and date of a FileRecord, one per line."""
    size = f"{record.width}×{record.height}" if record.width and record.height else "unknown size"
    when = record.capture_time or datetime.fromtimestamp(record.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M")
    return (f"{os.path.dirname(record.path)}\n{size} · {format_bytes(record.size)} · "
            f"{record.format or '?'}\n{when.replace('T', ' ')}")


def describe(group) -> str:
    """One line for the group list: "3 photos · near · beach.jpg"."""
    return f"{len(group.members)} photos · {group.level} · {os.path.basename(group.keep.path)}"


class ReviewState:
    """Marks for every group and the rules over them (Qt-free, unit-testable)."""

    def __init__(self, groups: list | None = None):
        self.groups: list = []
        self._choice: dict[str, bool] = {}   # path → marked for removal (explicit decisions)
        self.set_groups(groups or [])

    def set_groups(self, groups: list) -> None:
        """New groups (a regroup or refresh); decisions about photos no longer shown are dropped."""
        self.groups = list(groups)
        shown = {m.file.path for g in self.groups for m in g.members}
        self._choice = {p: v for p, v in self._choice.items() if p in shown}

    def remove_group(self, group) -> None:
        self.set_groups([g for g in self.groups if g is not group])

    # ---- marks ----------------------------------------------------------------------------
    def is_marked(self, group, path: str) -> bool:
        if path in self._choice:
            return self._choice[path]
        if group.level == "moment":  # a burst's other shots are photos, not copies: only the
            return any(m.file.path == path and path != group.keep.path  # best shot's copies
                       and m.file.content_hash == group.keep.content_hash for m in group.members)
        return path != group.keep.path

    def set_marked(self, path: str, remove: bool) -> None:
        self._choice[path] = bool(remove)

    def marked_files(self) -> list:
        """Every FileRecord marked for removal, each path once, in group order."""
        seen, out = set(), []
        for g in self.groups:
            for m in g.members:
                if m.file.path not in seen and self.is_marked(g, m.file.path):
                    seen.add(m.file.path)
                    out.append(m.file)
        return out

    def groups_losing_every_copy(self) -> list:
        """Groups in which every photo is marked: removing them would lose the photo."""
        return [g for g in self.groups
                if g.members and all(self.is_marked(g, m.file.path) for m in g.members)]

    def space_to_free(self) -> int:
        return sum(f.size or 0 for f in self.marked_files())

    def summary(self, destination: str = "the trash") -> str:
        """What a removal would do: a headline, a blank line, then every path."""
        files = self.marked_files()
        return (f"Move {len(files)} file(s) to {destination}? {format_bytes(self.space_to_free())} will be "
                "freed. You can undo this from the app.\n\n" + "\n".join(f.path for f in files))

    # ---- rules (every group at once) --------------------------------------------------------
    def apply(self, rule: str, folder: str | None = None) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown rule '{rule}' (choose from {', '.join(RULES)})")
        if rule == "folder" and not folder:
            raise ValueError("the 'folder' rule needs a folder")
        for g in self.groups:
            keep = self._keepers(g, rule, folder)
            if keep is None:
                continue
            for m in g.members:
                self._choice[m.file.path] = m.file.path not in keep

    def _keepers(self, group, rule: str, folder: str | None) -> set[str] | None:
        """Paths to keep in ``group`` under ``rule``; None leaves the group as it is."""
        files = [m.file for m in group.members]
        suggested = group.keep.path
        if rule == "suggested":
            return {suggested}
        if rule == "clear":
            return {f.path for f in files}
        if rule == "largest":
            best = max(files, key=lambda f: ((f.width or 0) * (f.height or 0), f.size or 0,
                                             f.path == suggested))
            return {best.path}
        if rule == "oldest":
            best = min(files, key=lambda f: (photo_date(f), f.path != suggested, f.path))
            return {best.path}
        inside = {f.path for f in files if in_folder(f.path, folder)}
        return inside or None


class GroupListModel(QAbstractListModel):
    """One row per duplicate group: "N photos · level · keeper name"; ``GroupRole`` → group."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._groups: list = []

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._groups)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._groups):
            return None
        group = self._groups[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return describe(group)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"Suggested keeper: {group.keep.path}\n{group.reason}"
        if role == GroupRole:
            return group
        return None

    def roleNames(self) -> dict:
        names = super().roleNames()
        names[GroupRole] = b"group"
        return names

    def set_groups(self, groups: list) -> None:
        self.beginResetModel()
        self._groups = list(groups)
        self.endResetModel()

    def groups(self) -> list:
        return list(self._groups)

    def group(self, row: int):
        return self._groups[row] if 0 <= row < len(self._groups) else None

    def row_of(self, group) -> int:
        return next((i for i, g in enumerate(self._groups) if g is group), -1)

    def remove_group(self, group) -> None:
        row = self.row_of(group)
        if row < 0:
            return
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._groups[row]
        self.endRemoveRows()

