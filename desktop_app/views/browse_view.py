"""The browse page: a lazy thumbnail grid over the whole library, sort and folder filter, and a
preview pane; the context menu finds similar photos, shows the file's folder or copies its path.
"""
from __future__ import annotations

import os

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QLabel, QListView, QMenu, QSplitter,
                               QVBoxLayout, QWidget)

from desktop_app.models import PhotoListModel
from desktop_app.views.preview import PreviewWidget

SORTS = (("Date", "date"), ("Name", "name"), ("Size", "size"))
ALL_FOLDERS = "All folders"


class BrowseView(QWidget):
    findSimilarRequested = Signal(str)    # path of the photo to search with
    photosLoaded = Signal(int)            # number of photos in the library after a refresh

    def __init__(self, services, parent=None):
        super().__init__(parent)
        self.services = services
        self._files_job = None
        self._select_after_load: str | None = None
        self.model = PhotoListModel(services.loader, self)
        self._build()
        self._build_actions()

    def _build(self) -> None:
        self.sort_combo = QComboBox()
        for label, key in SORTS:
            self.sort_combo.addItem(label, key)
        self.folder_combo = QComboBox()
        self.folder_combo.addItem(ALL_FOLDERS, None)
        self.folder_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.count_label = QLabel()
        self.sort_combo.currentIndexChanged.connect(self._on_sort_combo_changed)
        self.folder_combo.currentIndexChanged.connect(self._on_folder_combo_changed)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Sort by"))
        bar.addWidget(self.sort_combo)
        bar.addWidget(QLabel("Folder"))
        bar.addWidget(self.folder_combo, 1)
        bar.addStretch(1)
        bar.addWidget(self.count_label)

        self.list_view = QListView()
        self.list_view.setViewMode(QListView.ViewMode.IconMode)
        self.list_view.setUniformItemSizes(True)
        self.list_view.setLayoutMode(QListView.LayoutMode.Batched)
        self.list_view.setBatchSize(256)
        self.list_view.setGridSize(QSize(180, 200))
        self.list_view.setIconSize(QSize(160, 160))
        self.list_view.setResizeMode(QListView.ResizeMode.Adjust)
        self.list_view.setMovement(QListView.Movement.Static)
        self.list_view.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.list_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list_view.customContextMenuRequested.connect(self._on_list_view_context_menu_requested)
        self.list_view.setModel(self.model)
        self.list_view.selectionModel().currentChanged.connect(self._on_selection_current_changed)

        self.preview = PreviewWidget(self.services)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.list_view)
        self.splitter.addWidget(self.preview)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.splitter, 1)
        self._update_count()

    def _build_actions(self) -> None:
        def action(text, slot, shortcut=None):
            act = QAction(text, self)
            act.triggered.connect(slot)
            if shortcut:
                act.setShortcut(QKeySequence(shortcut))
                act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
                self.list_view.addAction(act)
            return act

        self.find_similar_action = action("Find similar photos", self._on_find_similar_action_triggered, "Ctrl+F")
        self.show_in_folder_action = action("Show in folder", self._on_show_in_folder_action_triggered)
        self.copy_path_action = action("Copy path", self._on_copy_path_action_triggered, QKeySequence.StandardKey.Copy)
        self._update_actions()

    # ---- public API -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload the photo list and the folder filter from the library."""
        job = self.services.files()
        self._files_job = job
        job.finished.connect(self._on_files_job_finished)
        folders = self.services.folders()
        folders.finished.connect(self._on_folders_job_finished)

    def select_path(self, path: str) -> bool:
        """Select and preview ``path`` (after the running refresh, if there is one)."""
        if self._files_job is not None:
            self._select_after_load = path
            return True
        if self.model.row_of_path(path) < 0 and self.model.contains_path(path):
            self.folder_combo.setCurrentIndex(0)   # hidden by the folder filter: show all
        return self._select_visible(path)

    def current_record(self):
        index = self.list_view.currentIndex()
        return self.model.record(index.row()) if index.isValid() else None

    # ---- slots ----------------------------------------------------------------------------
    def _on_files_job_finished(self, records) -> None:
        if self.sender() is not self._files_job:
            return   # an older refresh
        self._files_job = None
        current = self.current_record()
        self.model.set_photos(records or [])
        self._update_count()
        self.photosLoaded.emit(self.model.total_count())
        wanted, self._select_after_load = self._select_after_load, None
        target = wanted or (current.path if current else None)
        if not (target and self.select_path(target)) and current is not None:
            self.preview.clear()
        self._update_actions()

    def _on_folders_job_finished(self, folders) -> None:
        chosen = self.folder_combo.currentData()
        self.folder_combo.blockSignals(True)
        self.folder_combo.clear()
        self.folder_combo.addItem(ALL_FOLDERS, None)
        for folder in folders:
            self.folder_combo.addItem(folder, folder)
        found = self.folder_combo.findData(chosen) if chosen else 0
        self.folder_combo.setCurrentIndex(max(found, 0))
        self.folder_combo.blockSignals(False)
        if chosen and found < 0:
            self._on_folder_combo_changed(0)

    def _on_sort_combo_changed(self, _index: int) -> None:
        self._keep_selection(lambda: self.model.sort_by(self.sort_combo.currentData()))

    def _on_folder_combo_changed(self, _index: int) -> None:
        self._keep_selection(lambda: self.model.set_folder(self.folder_combo.currentData()))
        self._update_count()

    def _on_selection_current_changed(self, current, _previous) -> None:
        self._update_actions()
        if current.isValid():
            record = self.model.record(current.row())
            if self.preview.record is None or self.preview.record.path != record.path:
                self.preview.show_record(record)

    def _on_list_view_context_menu_requested(self, pos) -> None:
        index = self.list_view.indexAt(pos)
        if not index.isValid():
            return
        self.list_view.setCurrentIndex(index)
        menu = QMenu(self)
        menu.addAction(self.find_similar_action)
        menu.addSeparator()
        menu.addAction(self.show_in_folder_action)
        menu.addAction(self.copy_path_action)
        menu.exec(self.list_view.viewport().mapToGlobal(pos))

    def _on_find_similar_action_triggered(self) -> None:
        record = self.current_record()
        if record is not None:
            self.findSimilarRequested.emit(record.path)

    def _on_show_in_folder_action_triggered(self) -> None:
        record = self.current_record()
        if record is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(os.path.dirname(record.path)))

    def _on_copy_path_action_triggered(self) -> None:
        record = self.current_record()
        if record is not None:
            QGuiApplication.clipboard().setText(record.path)

    # ---- helpers --------------------------------------------------------------------------
    def _keep_selection(self, change) -> None:
        current = self.current_record()
        change()
        if current is not None:
            self._select_visible(current.path)
        self._update_actions()

    def _select_visible(self, path: str) -> bool:
        row = self.model.row_of_path(path)
        if row < 0:
            return False
        index = self.model.index(row, 0)
        self.list_view.setCurrentIndex(index)
        self.list_view.scrollTo(index)
        return True

    def _update_count(self) -> None:
        shown, total = self.model.rowCount(), self.model.total_count()
        noun = "photo" if total == 1 else "photos"
        self.count_label.setText(f"{total} {noun}" if shown == total else f"{shown} of {total} {noun}")

    def _update_actions(self) -> None:
        enabled = self.list_view.currentIndex().isValid()
        for act in (self.find_similar_action, self.show_in_folder_action, self.copy_path_action):
            act.setEnabled(enabled)
