"""Two photos side by side with synchronised zoom and pan, a flicker and a difference toggle.

Both photos load as ``services.preview`` jobs (QImage off the GUI thread, QPixmap here). They
are shown at the same scale relative to the content: the second is fitted into the first's
size, so a resized copy lines up with its original. Scrolling either pane scrolls the other
(by proportion); Ctrl+wheel or the +/− buttons zoom both.
A ``services.explain`` job aligns them: a sentence under the photos, a heat map for "Aligned difference".
"""
from __future__ import annotations

import os

from PySide6.QtCore import QEvent, QSize, Qt, QTimer
from PySide6.QtGui import QImage, QKeySequence, QPainter, QPixmap
from PySide6.QtWidgets import (QDialog, QHBoxLayout, QLabel, QPushButton, QScrollArea,
                               QVBoxLayout, QWidget)

from desktop_app.views.group_model import describe_record

ZOOM_STEP = 1.25
ZOOM_RANGE = (0.05, 16.0)
DIFF_MAX_SIDE = 1600
FLICKER_MS = 500


def difference_image(a: QImage, b: QImage, max_side: int = DIFF_MAX_SIDE, gain: int = 4) -> QImage:
    """Per-pixel |a − b| at a's size (at most ``max_side``), brightened ``gain``× (power of 2)."""
    size = a.size()
    if max(size.width(), size.height()) > max_side:
        size = size.scaled(max_side, max_side, Qt.AspectRatioMode.KeepAspectRatio)
    smooth, rgb32 = Qt.TransformationMode.SmoothTransformation, QImage.Format.Format_RGB32
    out = a.scaled(size, Qt.AspectRatioMode.IgnoreAspectRatio, smooth).convertToFormat(rgb32)
    other = b.scaled(size, Qt.AspectRatioMode.IgnoreAspectRatio, smooth).convertToFormat(rgb32)
    painter = QPainter(out)
    painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Difference)
    painter.drawImage(0, 0, other)
    painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Plus)
    while gain > 1:                       # each pass doubles the (small) differences
        painter.drawImage(0, 0, out.copy())
        gain //= 2
    painter.end()
    return out


def heat_image(difference, gain: int = 4) -> QImage:
    """The engine's aligned difference (H×W uint8 numpy array) as a QImage, brightened ``gain``×."""
    grey = (difference.astype("uint16") * gain).clip(0, 255).astype("uint8")
    height, width = grey.shape
    return QImage(grey.tobytes(), width, height, width, QImage.Format.Format_Grayscale8).copy()


class ImagePane(QScrollArea):
    """A scrollable photo at a zoom factor relative to a shared base size."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.label = QLabel("Loading…", alignment=Qt.AlignmentFlag.AlignCenter)
        self.label.setScaledContents(True)
        self.setWidget(self.label)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.zoom = 1.0
        self.base = QSize()
        self.pixmap: QPixmap | None = None

    def show_pixmap(self, pixmap: QPixmap | None, base: QSize) -> None:
        self.pixmap, self.base = pixmap, base
        if pixmap is not None:
            self.label.setScaledContents(True)
            self.label.setPixmap(pixmap)
        self._resize()

    def show_text(self, text: str) -> None:
        self.pixmap = None
        self.label.setScaledContents(False)
        self.label.setText(text)
        self.label.adjustSize()

    def set_zoom(self, zoom: float) -> None:
        self.zoom = zoom
        self._resize()

    def shown_size(self) -> QSize:
        if self.pixmap is None:
            return QSize()
        size = self.pixmap.size()
        if self.base.isValid():
            size = size.scaled(self.base, Qt.AspectRatioMode.KeepAspectRatio)
        return QSize(max(1, round(size.width() * self.zoom)), max(1, round(size.height() * self.zoom)))

    def _resize(self) -> None:
        if self.pixmap is not None:
            self.label.resize(self.shown_size())


class CompareDialog(QDialog):
    """Compare two photos; ``first``/``second`` are FileRecords or plain paths."""

    def __init__(self, services, first, second, parent=None):
        super().__init__(parent)
        self.services = services
        self.records = [first, second]
        self.paths = [r if isinstance(r, str) else r.path for r in self.records]
        self.setWindowTitle("Compare: " + " · ".join(os.path.basename(p) for p in self.paths))
        self.resize(1100, 700)
        self.images: list[QImage | None] = [None, None]
        self.pixmaps: list[QPixmap | None] = [None, None]
        self.zoom = 1.0
        self.diff_pixmap: QPixmap | None = None
        self.heat_pixmap: QPixmap | None = None     # aligned difference, from the explain job
        self._syncing = False
        self._showing = 0            # which photo the left pane shows while flickering
        self.flicker_timer = QTimer(self, interval=FLICKER_MS)
        self.flicker_timer.timeout.connect(self._on_flicker_timer_timeout)
        self._build()
        self.jobs = [self._load(i) for i in range(2)]
        self.explain_job = self._explain()

    def _build(self) -> None:
        self.panes = [ImagePane(), ImagePane()]
        self.captions = [QLabel(self._caption(r), wordWrap=True) for r in self.records]
        columns = QHBoxLayout()
        self.columns = []
        for pane, caption in zip(self.panes, self.captions):
            column = QWidget()
            box = QVBoxLayout(column)
            box.addWidget(pane, 1)
            box.addWidget(caption)
            columns.addWidget(column, 1)
            self.columns.append(column)
            pane.viewport().installEventFilter(self)
        for a, b in ((0, 1), (1, 0)):
            for bar in ("horizontalScrollBar", "verticalScrollBar"):
                getattr(self.panes[a], bar)().valueChanged.connect(
                    lambda _, a=a, b=b, bar=bar: self._on_scroll_valueChanged(a, b, bar))
        buttons = QHBoxLayout()
        for text, key, slot in (("−", "-", self.zoom_out), ("+", "+", self.zoom_in),
                                ("100%", "1", lambda: self.set_zoom(1.0)), ("Fit", "0", self.fit)):
            button = QPushButton(text, shortcut=QKeySequence(key))
            button.clicked.connect(slot)
            buttons.addWidget(button)
        self.flicker_button = QPushButton("&Flicker", checkable=True)
        self.flicker_button.toggled.connect(self._on_flicker_button_toggled)
        self.diff_button = QPushButton("&Difference", checkable=True)
        self.diff_button.toggled.connect(self._on_diff_button_toggled)
        self.aligned_button = QPushButton("&Aligned difference", checkable=True, enabled=False)
        self.aligned_button.toggled.connect(self._on_aligned_button_toggled)
        self.zoom_label = QLabel("100%")
        for widget in (self.zoom_label, self.flicker_button, self.diff_button, self.aligned_button):
            buttons.addWidget(widget)
        buttons.addStretch(1)
        self.explain_label = QLabel("Working out how the photos differ…", wordWrap=True)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addLayout(columns, 1)
        layout.addWidget(self.explain_label)

    @staticmethod
    def _caption(record) -> str:
        if isinstance(record, str):
            return f"{os.path.basename(record)}\n{os.path.dirname(record)}"
        return f"{os.path.basename(record.path)}\n{describe_record(record)}"

    # ---- loading ------------------------------------------------------------------------------
    def _load(self, i: int):
        job = self.services.preview(self.paths[i])
        job.finished.connect(self._on_preview_finished)    # bound slots: dropped if we close first
        job.failed.connect(self._on_preview_failed)
        return job

    def _on_preview_finished(self, image: QImage) -> None:
        i = self._job_index()
        if i is None:
            return
        self.images[i] = image
        self.pixmaps[i] = QPixmap.fromImage(image)
        if self.diff_button.isChecked():
            self._make_difference()
        self._show()
        if self.loaded():
            self.fit()

    def _on_preview_failed(self, message: str) -> None:
        i = self._job_index()
        if i is not None:
            self.panes[i].show_text(f"Cannot show this photo:\n{message}")

    def _explain(self):
        job = self.services.explain(*self.paths)
        job.finished.connect(self._on_explain_finished)
        job.failed.connect(self._on_explain_failed)
        return job

    def _on_explain_finished(self, result) -> None:
        sentence, difference = result
        self.explain_label.setText(f"A (left) → B (right): {sentence}")
        if difference is not None:
            self.heat_pixmap = QPixmap.fromImage(heat_image(difference))
            self.aligned_button.setEnabled(True)

    def _on_explain_failed(self, message: str) -> None:
        self.explain_label.setText(f"Cannot explain this pair: {message}")

    def _job_index(self) -> int | None:
        sender = self.sender()
        return next((i for i, job in enumerate(getattr(self, "jobs", [])) if job is sender), None)

    def loaded(self) -> bool:
        return all(p is not None for p in self.pixmaps)

    def _base(self) -> QSize:
        return self.pixmaps[0].size() if self.pixmaps[0] is not None else QSize()

    def _show(self) -> None:
        """Put the right pixmaps in the panes for the current mode (side by side/flicker/diff)."""
        single = any(b.isChecked() for b in (self.flicker_button, self.diff_button, self.aligned_button))
        self.columns[1].setVisible(not single)
        base = self._base()
        if self.diff_button.isChecked() and self.diff_pixmap is not None:
            self.panes[0].show_pixmap(self.diff_pixmap, base)
        elif self.aligned_button.isChecked() and self.heat_pixmap is not None:
            self.panes[0].show_pixmap(self.heat_pixmap, base)
        else:
            self.panes[0].show_pixmap(self.pixmaps[self._showing if single else 0], base)
            self.captions[0].setText(self._caption(self.records[self._showing if single else 0]))
        self.panes[1].show_pixmap(self.pixmaps[1], base)

    # ---- zoom and pan -------------------------------------------------------------------------
    def set_zoom(self, zoom: float) -> None:
        self.zoom = min(max(zoom, ZOOM_RANGE[0]), ZOOM_RANGE[1])
        for pane in self.panes:
            pane.set_zoom(self.zoom)
        self.zoom_label.setText(f"{self.zoom:.0%}")

    def zoom_in(self) -> None:
        self.set_zoom(self.zoom * ZOOM_STEP)

    def zoom_out(self) -> None:
        self.set_zoom(self.zoom / ZOOM_STEP)

    def fit(self) -> None:
        base, view = self._base(), self.panes[0].viewport().size()
        if base.isValid() and view.width() > 1 and view.height() > 1:
            self.set_zoom(min(1.0, view.width() / base.width(), view.height() / base.height()))

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.Wheel and event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom_in() if event.angleDelta().y() > 0 else self.zoom_out()
            return True
        return super().eventFilter(watched, event)

    def _on_scroll_valueChanged(self, a: int, b: int, bar: str) -> None:
        if self._syncing:
            return
        source, target = getattr(self.panes[a], bar)(), getattr(self.panes[b], bar)()
        self._syncing = True
        fraction = source.value() / source.maximum() if source.maximum() else 0.0
        target.setValue(round(fraction * target.maximum()))
        self._syncing = False

    # ---- flicker and difference ------------------------------------------------------------------
    def showing(self) -> int:
        """Which photo (0 or 1) the left pane shows."""
        return self._showing if self.flicker_button.isChecked() else 0

    def _on_flicker_button_toggled(self, on: bool) -> None:
        if on:
            self.diff_button.setChecked(False)
            self.aligned_button.setChecked(False)
            self.flicker_timer.start()
        else:
            self.flicker_timer.stop()
            self._showing = 0
        self._show()

    def _on_flicker_timer_timeout(self) -> None:
        self._showing = 1 - self._showing
        self._show()

    def _on_diff_button_toggled(self, on: bool) -> None:
        if on:
            self.flicker_button.setChecked(False)
            self.aligned_button.setChecked(False)
            self._make_difference()
            self.captions[0].setText("Difference |first − second| (brightened ×4)")
        self._show()

    def _on_aligned_button_toggled(self, on: bool) -> None:
        if on:
            self.flicker_button.setChecked(False)
            self.diff_button.setChecked(False)
            self.captions[0].setText("Aligned difference: second photo warped onto the first, "
                                     "colours matched (brightened ×4)")
        self._show()

    def _make_difference(self) -> None:
        if self.diff_pixmap is None and self.loaded():
            self.diff_pixmap = QPixmap.fromImage(difference_image(self.images[0], self.images[1]))

    def done(self, result: int) -> None:
        self.flicker_timer.stop()
        super().done(result)
