"""The library page: watched folders (add by dialog or drag-and-drop, remove), scanning with
progress, counts, the current file, an ETA and Cancel, then a summary and the problem table.

Everything goes through ``services`` jobs; the view only keeps the latest numbers.
"""
from __future__ import annotations

import os
import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QListWidget,
                               QMessageBox, QProgressBar, QPushButton, QTableView, QVBoxLayout, QWidget)

from desktop_app.models import ProblemsModel
from desktop_app.views.drops import DropTarget, local_files


def local_folders(mime) -> list[str]:
    """The local directories among a drag's URLs (files and remote URLs are ignored)."""
    return [p for p in local_files(mime) if os.path.isdir(p)]


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def summary(report) -> str:
    if report is None:
        return "Scan cancelled."
    text = (f"Found {report.found} photos: {report.embedded} analysed, {report.reused} reused, "
            f"{report.unchanged} unchanged, {report.removed} removed, {len(report.problems)} problems "
            f"({report.seconds:.1f} s).")
    return ("Scan cancelled. " + text) if report.cancelled else text


class LibraryView(DropTarget, QWidget):
    scanFinished = Signal(object)     # the ScanReport (None when cancelled before it began)
    foldersChanged = Signal()

    def __init__(self, services, parent=None):
        super().__init__(parent)
        self.services = services
        self._scan_job = None
        self._pending_roots: list[str] | None = None   # to scan when the running scan ends ([]: all)
        self._add_jobs: dict = {}     # running add_folder jobs -> their folder
        self._added: list[str] = []
        self._started = 0.0
        self._rate_origin: tuple[float, int] | None = None
        self.setAcceptDrops(True)
        self._build()
        self._set_scanning(False)
        self.refresh()

    def _build(self) -> None:
        self.folder_list = QListWidget()
        self.folder_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.folder_list.setToolTip("Drop folders here to add them")
        self.add_button = QPushButton("Add folder…")
        self.remove_button = QPushButton("Remove folder")
        self.scan_button = QPushButton("Scan now")
        self.cancel_button = QPushButton("Cancel")
        self.add_button.clicked.connect(self._on_add_button_clicked)
        self.remove_button.clicked.connect(self._on_remove_button_clicked)
        self.scan_button.clicked.connect(self.start_scan)
        self.cancel_button.clicked.connect(self._on_cancel_button_clicked)
        buttons = QHBoxLayout()
        for button in (self.add_button, self.remove_button, self.scan_button):
            buttons.addWidget(button)
        buttons.addStretch(1)

        self.progress_bar = QProgressBar()
        self.status_label = QLabel()
        self.status_label.setTextFormat(Qt.TextFormat.PlainText)
        progress = QHBoxLayout()
        progress.addWidget(self.progress_bar, 1)
        progress.addWidget(self.cancel_button)
        self.summary_label = QLabel("Add a folder of photos, or drop one here.")
        self.summary_label.setWordWrap(True)
        self.error_label = QLabel()
        self.error_label.setStyleSheet("color: #b00020")
        self.error_label.setWordWrap(True)

        self.problems_model = ProblemsModel(parent=self)
        self.problems_table = QTableView()
        self.problems_table.setModel(self.problems_model)
        self.problems_table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.problems_table.verticalHeader().setVisible(False)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Photo folders"))
        layout.addWidget(self.folder_list, 1)
        layout.addLayout(buttons)
        layout.addLayout(progress)
        layout.addWidget(self.status_label)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.error_label)
        layout.addWidget(QLabel("Problems"))
        layout.addWidget(self.problems_table, 2)

    # ---- public API -----------------------------------------------------------------------
    def folders(self) -> list[str]:
        return [self.folder_list.item(i).text() for i in range(self.folder_list.count())]

    def is_scanning(self) -> bool:
        return self._scan_job is not None

    def refresh(self) -> None:
        """Reload the folder list and the problem table."""
        folders = self.services.folders()
        folders.finished.connect(self._on_folders_job_finished)
        folders.failed.connect(self._on_job_failed)
        info = self.services.info()
        info.finished.connect(self._on_info_job_finished)
        info.failed.connect(self._on_job_failed)

    def add_folders(self, paths: list[str]) -> None:
        """Watch each folder, then scan them."""
        paths = [str(p) for p in paths]
        if not paths:
            return
        self.error_label.clear()
        for path in paths:
            job = self.services.add_folder(path)
            job.finished.connect(self._on_add_job_finished)
            job.failed.connect(self._on_add_job_failed)
            self._add_jobs[job] = path

    def start_scan(self, roots: list[str] | None = None) -> None:
        """Scan ``roots`` (default: every folder); queued if a scan is running."""
        if self._scan_job is not None:
            everything = roots is None or self._pending_roots == []   # [] means every folder
            self._pending_roots = [] if everything else sorted(set(self._pending_roots or []) | set(roots))
            return
        self.error_label.clear()
        self._started = time.monotonic()
        self._rate_origin = None
        job = self.services.scan(roots)
        self._scan_job = job
        job.progress.connect(self._on_scan_job_progress)
        job.finished.connect(self._on_scan_job_finished)
        job.failed.connect(self._on_scan_job_failed)
        self._set_scanning(True)
        self.status_label.setText("Starting…")

    def cancel_scan(self) -> None:
        if self._scan_job is not None:
            self._scan_job.cancel()
            self._pending_roots = None
            self.cancel_button.setEnabled(False)
            self.status_label.setText("Cancelling…")

    # ---- drag and drop (DropTarget) -------------------------------------------------------
    def accepted_drops(self, mime) -> list[str]:
        return local_folders(mime)

    def take_drop(self, paths: list[str]) -> None:
        self.add_folders(paths)

    # ---- slots ----------------------------------------------------------------------------
    def _on_add_button_clicked(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a folder of photos")
        if path:
            self.add_folders([path])

    def _on_remove_button_clicked(self) -> None:
        item = self.folder_list.currentItem()
        if item is None or not self._confirm_remove(item.text()):
            return
        job = self.services.remove_folder(item.text())
        job.finished.connect(self._on_remove_job_finished)
        job.failed.connect(self._on_job_failed)

    def _confirm_remove(self, path: str) -> bool:
        answer = QMessageBox.question(
            self, "Remove folder",
            f"Stop watching {path}?\n\nIts photos leave the library; the files on disk are not deleted.")
        return answer == QMessageBox.StandardButton.Yes

    def _on_cancel_button_clicked(self) -> None:
        self.cancel_scan()

    def _on_folders_job_finished(self, folders) -> None:
        current = self.folder_list.currentItem().text() if self.folder_list.currentItem() else None
        self.folder_list.clear()
        self.folder_list.addItems(list(folders))
        matches = self.folder_list.findItems(current, Qt.MatchFlag.MatchExactly) if current else []
        if matches:
            self.folder_list.setCurrentItem(matches[0])
        self.remove_button.setEnabled(bool(folders))

    def _on_info_job_finished(self, info) -> None:
        self.problems_model.set_problems(info.problems)

    def _on_add_job_finished(self, folders) -> None:
        self._add_done(ok=True)

    def _on_add_job_failed(self, message: str) -> None:
        self.error_label.setText(message)
        self._add_done(ok=False)

    def _add_done(self, ok: bool) -> None:
        path = self._add_jobs.pop(self.sender(), None)
        if ok and path is not None:
            self._added.append(path)
        if self._add_jobs:
            return
        added, self._added = self._added, []
        self.refresh()
        self.foldersChanged.emit()
        if added:
            self.start_scan(added)

    def _on_remove_job_finished(self, folders) -> None:
        self.refresh()
        self.foldersChanged.emit()

    def _on_job_failed(self, message: str) -> None:
        self.error_label.setText(message)

    def _on_scan_job_progress(self, done: int, total: int, what: str) -> None:
        if self.sender() is not self._scan_job:
            return
        name = os.path.basename(what.rstrip("/\\")) or what
        if total <= 0:
            self.progress_bar.setRange(0, 0)
            self.status_label.setText(what)
            return
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(done)
        now = time.monotonic()
        if self._rate_origin is None:
            self._rate_origin = (now, done)
        text = f"{done} of {total} · {name}"
        t0, d0 = self._rate_origin
        if done >= total:
            text += " · finishing…"
        elif done > d0 and now > t0:
            eta = (total - done) * (now - t0) / (done - d0)
            text += f" · about {format_duration(eta)} left"
        self.status_label.setText(text)

    def _on_scan_job_finished(self, report) -> None:
        if self.sender() is not self._scan_job:
            return
        self._scan_job = None
        self._set_scanning(False)
        self.summary_label.setText(summary(report))
        self.status_label.setText(f"Done in {format_duration(time.monotonic() - self._started)}.")
        if report is not None:
            self.problems_model.set_problems(report.problems)
        self.refresh()
        self.scanFinished.emit(report)
        self._start_pending()

    def _on_scan_job_failed(self, message: str) -> None:
        if self.sender() is not self._scan_job:
            return
        self._scan_job = None
        self._set_scanning(False)
        self.status_label.setText("Scan failed.")
        self.error_label.setText(message)
        self._start_pending()

    def _start_pending(self) -> None:
        if self._pending_roots is not None:
            roots, self._pending_roots = self._pending_roots, None
            self.start_scan(roots or None)

    def _set_scanning(self, scanning: bool) -> None:
        self.scan_button.setEnabled(not scanning)
        self.cancel_button.setEnabled(scanning)
        self.cancel_button.setVisible(scanning)
        self.progress_bar.setVisible(scanning)
        if scanning:
            self.progress_bar.setRange(0, 0)
