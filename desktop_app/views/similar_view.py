"""Find similar: drop or open any image, see the library's closest photos with their scores.

The search and every thumbnail run in the background (``services.similar`` and
``services.loader``); results that arrive for an older query are ignored.
"""
from __future__ import annotations

from html import escape
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QListView, QListWidget,
                               QListWidgetItem, QPushButton, QVBoxLayout, QWidget)

from desktop_app.views.drops import DropTarget, local_files

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif"}
IMAGE_FILTER = "Images (" + " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES)) + ");;All files (*)"
ICON_SIZE = 128
PREVIEW_SIZE = 256
RESULTS = 24
PATH_ROLE = Qt.ItemDataRole.UserRole
KEY_TAG = "similar-view"      # thumbnail keys are (KEY_TAG, query number, row); row -1 = the query


def image_paths(mime) -> list[str]:
    """Local image files among a drag's URLs."""
    return [p for p in local_files(mime) if Path(p).suffix.lower() in IMAGE_SUFFIXES]


class SimilarView(DropTarget, QWidget):
    """``search(path)`` → a grid of the closest photos; ``resultsShown(count)`` when drawn."""

    previewRequested = Signal(str)
    resultsShown = Signal(int)
    searchFailed = Signal(str)

    def __init__(self, services, parent=None):
        super().__init__(parent)
        self.services = services
        self.query_path: str | None = None
        self.matches: list = []
        self._query_number = 0
        self._job = None
        self.setAcceptDrops(True)
        self._build()
        services.loader.loaded.connect(self._on_loader_loaded)
        services.loader.missing.connect(self._on_loader_missing)

    def _build(self) -> None:
        self.drop_label = QLabel("Drop an image here (from the library or anywhere else)")
        self.drop_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.drop_label.setMinimumHeight(48)
        self.drop_label.setStyleSheet("QLabel { border: 2px dashed palette(mid); border-radius: 6px; }")
        self.open_button = QPushButton("Open image…")
        self.open_button.clicked.connect(self._on_open_button_clicked)
        top = QHBoxLayout()
        top.addWidget(self.drop_label, 1)
        top.addWidget(self.open_button)

        self.query_image = QLabel()
        self.query_image.setFixedSize(ICON_SIZE, ICON_SIZE)
        self.query_image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.query_label = QLabel("No query yet.")
        self.query_label.setWordWrap(True)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("QLabel { color: #b00020; }")
        self.error_label.hide()
        query_text = QVBoxLayout()
        for widget in (self.query_label, self.status_label, self.error_label):
            query_text.addWidget(widget)
        query_text.addStretch(1)
        query_row = QHBoxLayout()
        query_row.addWidget(self.query_image)
        query_row.addLayout(query_text, 1)

        self.results = QListWidget()
        self.results.setViewMode(QListView.ViewMode.IconMode)
        self.results.setIconSize(QSize(ICON_SIZE, ICON_SIZE))
        self.results.setGridSize(QSize(ICON_SIZE + 24, ICON_SIZE + 44))
        self.results.setResizeMode(QListView.ResizeMode.Adjust)
        self.results.setMovement(QListView.Movement.Static)
        self.results.setUniformItemSizes(True)
        self.results.setWordWrap(True)
        placeholder = QPixmap(ICON_SIZE, ICON_SIZE)
        placeholder.fill(Qt.GlobalColor.lightGray)
        self._placeholder = QIcon(placeholder)   # items are laid out at full icon size from the start
        self.results.currentItemChanged.connect(self._on_results_current_item_changed)
        self.results.itemActivated.connect(self._on_results_item_activated)

        self.preview_image = QLabel("Select a result to preview it.")
        self.preview_image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview_image.setMinimumSize(PREVIEW_SIZE, PREVIEW_SIZE)
        self.preview_path = QLabel()
        self.preview_path.setWordWrap(True)
        self.preview_path.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        side = QVBoxLayout()
        side.addWidget(self.preview_image)
        side.addWidget(self.preview_path)
        side.addStretch(1)
        body = QHBoxLayout()
        body.addWidget(self.results, 1)
        body.addLayout(side)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(query_row)
        layout.addLayout(body, 1)

    # ---- searching ----------------------------------------------------------------------
    def search(self, path: str, k: int = RESULTS) -> None:
        """Start a search for photos like ``path`` (any image file, in the library or not)."""
        if self._job is not None:
            self._job.cancel()
        self._query_number += 1
        number = self._query_number
        self.query_path = str(path)
        self.matches = []
        self.results.clear()
        self._show_error("")
        self.query_label.setText(f"Photos like <b>{escape(Path(path).name)}</b><br><small>{escape(str(path))}</small>")
        self.status_label.setText("Searching…")
        self.query_image.setPixmap(QPixmap())
        self.query_image.setText("…")
        self.services.loader.request((KEY_TAG, number, -1), str(path), None)
        job = self._job = self.services.similar(str(path), k=k)
        job.finished.connect(self._on_search_finished)
        job.failed.connect(self._on_search_failed)

    def _current(self) -> bool:
        """Whether the job that sent this signal is the latest search (not a stale one)."""
        return self._job is not None and self.sender() is self._job

    def _on_search_finished(self, matches) -> None:
        if not self._current():
            return
        self._job, number = None, self._query_number
        self.matches = list(matches or [])
        for row, match in enumerate(self.matches):
            item = QListWidgetItem(f"{match.similarity:.3f}\n{Path(match.file.path).name}")
            item.setData(PATH_ROLE, match.file.path)
            ranked = "" if match.score is None else \
                f"\nranked by {match.score:.4f}: its likeness to this photo and the photo's closest look-alikes"
            item.setToolTip(f"{match.file.path}\nsimilarity {match.similarity:.4f}{ranked}")
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
            item.setIcon(self._placeholder)
            item.setSizeHint(QSize(ICON_SIZE + 20, ICON_SIZE + 40))
            self.results.addItem(item)
            self.services.loader.request((KEY_TAG, number, row), match.file.path, match.file.content_hash)
        self.status_label.setText(f"{len(self.matches)} similar photos" if self.matches
                                  else "No similar photos in the library (is it scanned?)")
        self.resultsShown.emit(len(self.matches))

    def _on_search_failed(self, message: str) -> None:
        if not self._current():
            return
        self._job = None
        self.status_label.setText("")
        self._show_error(f"Search failed: {message}")
        self.searchFailed.emit(message)

    def _show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.setVisible(bool(message))

    # ---- thumbnails ---------------------------------------------------------------------
    def _mine(self, key) -> int | None:
        """The row of a thumbnail key of the current query (-1: the query), else None."""
        if isinstance(key, tuple) and len(key) == 3 and key[0] == KEY_TAG and key[1] == self._query_number:
            return key[2]
        return None

    @Slot(object, QImage)
    def _on_loader_loaded(self, key, image: QImage) -> None:
        row = self._mine(key)
        if row is None:
            return
        pixmap = QPixmap.fromImage(image)
        if row == -1:
            self.query_image.setPixmap(pixmap.scaled(ICON_SIZE, ICON_SIZE, Qt.AspectRatioMode.KeepAspectRatio,
                                                     Qt.TransformationMode.SmoothTransformation))
            return
        item = self.results.item(row)
        if item is not None:
            item.setIcon(QIcon(pixmap))
            if item is self.results.currentItem():
                self._show_preview(item)

    @Slot(object, str)
    def _on_loader_missing(self, key, reason: str) -> None:
        row = self._mine(key)
        if row == -1:
            self.query_image.setText("no preview")
        elif row is not None and self.results.item(row) is not None:
            self.results.item(row).setToolTip(f"{self.results.item(row).toolTip()}\n{reason}")

    # ---- selection and preview ----------------------------------------------------------
    def _on_results_current_item_changed(self, current, previous) -> None:
        if current is None:
            return
        self._show_preview(current)
        self.previewRequested.emit(current.data(PATH_ROLE))

    def _on_results_item_activated(self, item) -> None:
        self.previewRequested.emit(item.data(PATH_ROLE))

    def _show_preview(self, item) -> None:
        self.preview_path.setText(item.data(PATH_ROLE))
        icon = item.icon()
        if icon.isNull():
            self.preview_image.setText("Loading…")
            return
        self.preview_image.setPixmap(icon.pixmap(QSize(PREVIEW_SIZE, PREVIEW_SIZE)))

    # ---- opening and dropping -----------------------------------------------------------
    @Slot()
    def _on_open_button_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Find photos like…", "", IMAGE_FILTER)
        if path:
            self.search(path)

    def accepted_drops(self, mime) -> list[str]:  # DropTarget
        return image_paths(mime)

    def take_drop(self, paths: list[str]) -> None:
        self.search(paths[0])
