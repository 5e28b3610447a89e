"""The preview pane: one photo at full size (EXIF-rotated by the engine) and its metadata.

The image loads through ``services.preview(path)``; a result that arrives after the user moved
on to another photo is dropped (each load remembers its job; only the latest one is shown).
"""
from __future__ import annotations

import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (QFormLayout, QHBoxLayout, QLabel, QScrollArea, QSizePolicy, QToolButton,
                               QVBoxLayout, QWidget)

from desktop_app.models import format_bytes, resolution

FIELDS = ("Name", "Folder", "Resolution", "Size", "Format", "Taken", "Camera")


class PreviewWidget(QWidget):
    imageShown = Signal(str)      # path of the photo now on screen
    loadFailed = Signal(str)      # message

    def __init__(self, services, parent=None):
        super().__init__(parent)
        self.services = services
        self._record = None
        self._job = None
        self._pixmap: QPixmap | None = None

        self.actual_size_button = QToolButton(text="100 %", checkable=True)
        self.actual_size_button.setToolTip("Show the photo at its actual size (otherwise: fit to the pane)")
        self.actual_size_button.toggled.connect(self._on_actual_size_button_toggled)
        self.title_label = QLabel()
        self.title_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top = QHBoxLayout()
        top.addWidget(self.title_label, 1)
        top.addWidget(self.actual_size_button)

        self.image_label = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.image_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.scroll_area = QScrollArea()
        self.scroll_area.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.scroll_area.setWidget(self.image_label)
        self.scroll_area.setWidgetResizable(True)

        self.field_labels: dict[str, QLabel] = {}
        form = QFormLayout()
        for name in FIELDS:
            label = QLabel()
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setWordWrap(True)
            self.field_labels[name] = label
            form.addRow(f"{name}:", label)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.scroll_area, 1)
        layout.addLayout(form)
        self.clear()

    # ---- public API -----------------------------------------------------------------------
    @property
    def record(self):
        return self._record

    def has_image(self) -> bool:
        return self._pixmap is not None

    def image_size(self) -> tuple[int, int] | None:
        return (self._pixmap.width(), self._pixmap.height()) if self._pixmap else None

    def field_text(self, name: str) -> str:
        return self.field_labels[name].text()

    def show_record(self, record) -> None:
        """Show ``record``'s metadata now and its image when the background load is done."""
        self._record = record
        self._pixmap = None
        self.title_label.setText(record.path)
        self.title_label.setToolTip(record.path)
        self._fill_fields(record)
        self.image_label.setPixmap(QPixmap())
        self.image_label.setText("Loading…")
        job = self.services.preview(record.path)
        self._job = job
        job.finished.connect(self._on_preview_job_finished)
        job.failed.connect(self._on_preview_job_failed)

    def clear(self) -> None:
        self._record = None
        self._job = None
        self._pixmap = None
        self.title_label.setText("No photo selected")
        self.title_label.setToolTip("")
        self.image_label.setPixmap(QPixmap())
        self.image_label.setText("Select a photo to see it here.")
        for label in self.field_labels.values():
            label.setText("")

    # ---- slots ----------------------------------------------------------------------------
    def _on_preview_job_finished(self, image) -> None:
        if self.sender() is not self._job or self._record is None:
            return   # stale: the user has moved on to another photo
        self._job = None
        if not isinstance(image, QImage) or image.isNull():
            self._show_error("The photo could not be shown.")
            return
        self._pixmap = QPixmap.fromImage(image)
        self._update_image()
        self.imageShown.emit(self._record.path)

    def _on_preview_job_failed(self, message: str) -> None:
        if self.sender() is not self._job:
            return
        self._job = None
        self._show_error(message)

    def _on_actual_size_button_toggled(self, actual: bool) -> None:
        self.scroll_area.setWidgetResizable(not actual)
        self._update_image()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._pixmap is not None and not self.actual_size_button.isChecked():
            self._update_image()

    # ---- helpers --------------------------------------------------------------------------
    def _show_error(self, message: str) -> None:
        self._pixmap = None
        self.image_label.setPixmap(QPixmap())
        self.image_label.setText(f"Cannot show this photo:\n{message}")
        self.loadFailed.emit(message)

    def _update_image(self) -> None:
        if self._pixmap is None:
            return
        self.image_label.setText("")
        if self.actual_size_button.isChecked():
            self.image_label.setPixmap(self._pixmap)
            self.image_label.resize(self._pixmap.size())
            return
        room = self.scroll_area.viewport().size()
        pixmap = self._pixmap
        if pixmap.width() > room.width() or pixmap.height() > room.height():
            pixmap = pixmap.scaled(room, Qt.AspectRatioMode.KeepAspectRatio,
                                   Qt.TransformationMode.SmoothTransformation)
        self.image_label.setPixmap(pixmap)

    def _fill_fields(self, record) -> None:
        values = {
            "Name": os.path.basename(record.path),
            "Folder": os.path.dirname(record.path),
            "Resolution": resolution(record),
            "Size": format_bytes(record.size),
            "Format": record.format or "unknown",
            "Taken": (record.capture_time or "unknown").replace("T", " "),
            "Camera": record.camera or "unknown",
        }
        for name, value in values.items():
            self.field_labels[name].setText(value)
