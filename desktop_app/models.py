"""Qt item models over the plain records the workers return (no engine imports here).

``PhotoListModel`` keeps the full list of FileRecords and exposes a filtered, sorted view of it
(filtering and sorting live in the model, not in a QSortFilterProxyModel: one list of tens of
thousands of rows is cheaper to sort once than to proxy). Thumbnails are lazy, digiKam-style:
``data()`` returns a cached pixmap or a placeholder and asks the loader once; the loader's
``loaded`` signal fills an LRU cache and the model emits ``dataChanged`` for that row and role.
Pixmaps are scaled to fit ``icon_size`` (the disk cache keeps larger ones for high-DPI screens),
so the view's grid shows whole photos with their names below.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from datetime import datetime

from PySide6.QtCore import QAbstractListModel, QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPainter, QPen, QPixmap

RecordRole = Qt.ItemDataRole.UserRole + 1
PathRole = Qt.ItemDataRole.UserRole + 2
SORT_KEYS = ("date", "name", "size")
_Display, _Decoration, _ToolTip = (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.DecorationRole,
                                   Qt.ItemDataRole.ToolTipRole)


def format_bytes(n: int | None) -> str:
    """1536 → "1.5 KB" (decimal units, as file managers show them)."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} bytes"


def resolution(record) -> str:
    return f"{record.width}×{record.height}" if record.width and record.height else "unknown size"


def date_key(record) -> float:
    """Capture time (EXIF, ISO text) when known, else the file's modification time."""
    if record.capture_time:
        try:
            return datetime.fromisoformat(record.capture_time).timestamp()
        except (ValueError, OverflowError, OSError):
            pass  # unparseable capture time: fall back to the file time below
    return record.mtime_ns / 1e9


_SORTERS = {
    "date": lambda r: (date_key(r), r.path),
    "name": lambda r: (os.path.basename(r.path).casefold(), r.path),
    "size": lambda r: (r.size, r.path),
}


def _placeholder(size: int, broken: bool) -> QPixmap:
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(0, 0, 0, 0))
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(200, 200, 200) if not broken else QColor(225, 190, 190))
    painter.drawRoundedRect(4, 4, size - 8, size - 8, 8, 8)
    if broken:
        painter.setPen(QPen(QColor(170, 60, 60), max(2, size // 40)))
        m = size // 3
        painter.drawLine(m, m, size - m, size - m)
        painter.drawLine(size - m, m, m, size - m)
    painter.end()
    return pixmap


class PhotoListModel(QAbstractListModel):
    """Rows are FileRecords; the loader is ``services.loader`` (``request``/``loaded``/``missing``)."""

    def __init__(self, loader, parent=None, *, cache_size: int = 2000, icon_size: int = 160):
        super().__init__(parent)
        self.loader = loader
        self.cache_size = cache_size
        self.icon_size = icon_size     # thumbnails are scaled to fit this square (logical px)
        self._all: list = []
        self._rows: list = []
        self._names: list[str] = []
        self._row_of: dict = {}            # record id -> row in the visible list
        self._sort_key = "date"
        self._descending = False
        self._folder: str | None = None
        self._pixmaps: OrderedDict = OrderedDict()   # record id -> QPixmap, LRU
        self._broken: set = set()
        self._requested: set = set()
        self._placeholders: dict[bool, QPixmap] = {}
        loader.loaded.connect(self._on_loader_loaded)
        loader.missing.connect(self._on_loader_missing)

    # ---- public API -----------------------------------------------------------------------
    def set_photos(self, records) -> None:
        self._all = list(records)
        known = {r.id for r in self._all}
        for key in [k for k in self._pixmaps if k not in known]:
            del self._pixmaps[key]
        self._broken &= known
        self._rebuild()

    def sort_by(self, key: str, descending: bool = False) -> None:
        if key not in SORT_KEYS:
            raise ValueError(f"unknown sort key {key!r}; use one of {', '.join(SORT_KEYS)}")
        self._sort_key, self._descending = key, descending
        self._rebuild()

    def set_folder(self, prefix: str | None) -> None:
        """Show only photos under ``prefix`` (None: every photo)."""
        self._folder = prefix.rstrip("/\\") if prefix else None
        self._rebuild()

    @property
    def sort_key(self) -> str:
        return self._sort_key

    @property
    def folder(self) -> str | None:
        return self._folder

    def total_count(self) -> int:
        return len(self._all)

    def record(self, row: int):
        return self._rows[row]

    def row_of_path(self, path: str) -> int:
        for row, record in enumerate(self._rows):
            if record.path == path:
                return row
        return -1

    def contains_path(self, path: str) -> bool:
        return any(r.path == path for r in self._all)

    # ---- Qt model interface ---------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index, role=_Display):
        if not index.isValid() or not 0 <= index.row() < len(self._rows) or index.column() != 0:
            return None
        record = self._rows[index.row()]
        if role == _Display:
            return self._names[index.row()]
        if role == _Decoration:
            return self._thumbnail(record)
        if role == _ToolTip:
            return f"{record.path}\n{format_bytes(record.size)} · {resolution(record)}"
        if role == RecordRole:
            return record
        if role == PathRole:
            return record.path
        return None

    def flags(self, index):
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    # ---- thumbnails -----------------------------------------------------------------------
    def _thumbnail(self, record) -> QPixmap:
        key = record.id
        pixmap = self._pixmaps.get(key)
        if pixmap is not None:
            self._pixmaps.move_to_end(key)
            return pixmap
        if key in self._broken:
            return self._placeholder(broken=True)
        if key not in self._requested:
            self._requested.add(key)
            self.loader.request(key, record.path, record.content_hash, self._icon_side())
        return self._placeholder(broken=False)

    def _placeholder(self, broken: bool) -> QPixmap:
        if broken not in self._placeholders:
            self._placeholders[broken] = _placeholder(self.icon_size, broken)
        return self._placeholders[broken]

    def _icon_side(self) -> int:
        """Icon size in device pixels (sharp on high-DPI screens)."""
        app = QGuiApplication.instance()
        return round(self.icon_size * (app.devicePixelRatio() if app is not None else 1.0))

    def _fit(self, image: QImage) -> QPixmap:
        """Wrap a loaded thumbnail (already scaled by the loader's thread) in a QPixmap."""
        app = QGuiApplication.instance()
        ratio = app.devicePixelRatio() if app is not None else 1.0
        side = self._icon_side()
        if image.width() > side or image.height() > side:  # a loader that did not scale it
            image = image.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation)
        pixmap = QPixmap.fromImage(image)
        pixmap.setDevicePixelRatio(ratio)
        return pixmap

    def _on_loader_loaded(self, key, image: QImage) -> None:
        self._requested.discard(key)
        row = self._row_of.get(key)
        if row is None:
            return   # not shown here (another model's request, or filtered out since)
        self._pixmaps[key] = self._fit(image)
        self._pixmaps.move_to_end(key)
        while len(self._pixmaps) > self.cache_size:
            self._pixmaps.popitem(last=False)
        self._changed(row)

    def _on_loader_missing(self, key, reason: str) -> None:
        self._requested.discard(key)
        row = self._row_of.get(key)
        if row is not None:
            self._broken.add(key)
            self._changed(row)

    def _changed(self, row: int) -> None:
        index = self.index(row, 0)
        self.dataChanged.emit(index, index, [_Decoration])

    # ---- filtering and sorting ------------------------------------------------------------
    def _rebuild(self) -> None:
        self.beginResetModel()
        self.loader.cancel_pending()
        self._requested.clear()
        rows = self._all
        if self._folder:
            inside = self._folder + os.sep
            rows = [r for r in rows if r.path == self._folder or r.path.startswith(inside)]
        self._rows = sorted(rows, key=_SORTERS[self._sort_key], reverse=self._descending)
        self._names = [os.path.basename(r.path) for r in self._rows]
        self._row_of = {r.id: i for i, r in enumerate(self._rows)}
        self.endResetModel()


class ProblemsModel(QAbstractTableModel):
    """Unreadable files and why: objects with ``path``, ``kind`` and ``message``."""

    HEADERS = ("Path", "Problem", "Reason")

    def __init__(self, problems=(), parent=None):
        super().__init__(parent)
        self._problems = list(problems)

    def set_problems(self, problems) -> None:
        self.beginResetModel()
        self._problems = list(problems)
        self.endResetModel()

    def problem(self, row: int):
        return self._problems[row]

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._problems)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.HEADERS)

    def data(self, index, role=_Display):
        if not index.isValid() or not 0 <= index.row() < len(self._problems):
            return None
        problem = self._problems[index.row()]
        if role in (_Display, _ToolTip):
            return (problem.path, problem.kind, problem.message)[index.column()]
        return None

    def headerData(self, section, orientation, role=_Display):
        if role == _Display and orientation == Qt.Orientation.Horizontal and 0 <= section < len(self.HEADERS):
            return self.HEADERS[section]
        return None
