"""Review duplicate groups and move the unwanted copies to the trash, safely.

All work runs as ``services`` jobs; results of a regroup that is no longer the latest are
ignored. The decisions themselves live in ``ReviewState`` (plain Python, see group_model).
Nothing is moved before the person confirms a summary (files, space freed), and a removal
that would leave a group without any copy is refused — here, and again by the engine
(``Services.move_to_trash`` gets the groups and the reviewed FileRecords, so a kept copy that
vanished or a file changed since the review is refused too). Files go to the system trash or
to the folder set with ``Services.set_removal_folder``. The last removal can be undone.
"""
from __future__ import annotations

import html
import os

from PySide6.QtCore import QItemSelectionModel, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFrame, QHBoxLayout, QLabel,
                               QListView, QMenu, QMessageBox, QPushButton, QScrollArea, QSlider,
                               QSplitter, QVBoxLayout, QWidget)

from desktop_app.views.compare_dialog import CompareDialog
from desktop_app.views.group_model import (GroupListModel, GroupRole, ReviewState, describe_record,
                                           format_bytes)

LEVELS = (("exact", "Exact"), ("near", "Near-duplicates"), ("similar", "Similar"),
          ("moment", "Same moment (bursts)"))
# the threshold each level's slider starts from; "moment" stacks need "similar" photos
_THRESHOLD_OF = {"near": "near", "similar": "similar", "moment": "similar"}
THUMB = 200
KEY_TAG = "duplicates"


class PhotoCard(QFrame):
    """One photo of a group: thumbnail, facts, "KEEP — reason" for the keeper, a Remove box."""

    markToggled = Signal(str, bool)
    clicked = Signal(str)
    menuRequested = Signal(str, QPoint)

    def __init__(self, member, group, marked: bool, parent=None):
        super().__init__(parent)
        self.path = member.file.path
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setFixedWidth(THUMB + 24)
        self.thumb = QLabel("…", alignment=Qt.AlignmentFlag.AlignCenter)
        self.thumb.setFixedSize(THUMB, THUMB)
        lines = [os.path.basename(self.path), *describe_record(member.file).split("\n"),
                 f"similarity {member.similarity:.3f}"]
        facts = QLabel("<b>" + "</b><br>".join([html.escape(lines[0]), *map(html.escape, lines[1:])]),
                       wordWrap=True)
        facts.setToolTip(self.path)
        keep = "BEST SHOT" if group.level == "moment" else "KEEP"
        self.keep_label = QLabel(f"{keep} — {group.reason}" if self.path == group.keep.path else "",
                                 wordWrap=True, textFormat=Qt.TextFormat.PlainText)
        self.keep_label.setStyleSheet("color: #2e7d32; font-weight: bold")
        self.remove_box = QCheckBox("Remove")
        self.remove_box.setChecked(marked)
        self.remove_box.toggled.connect(self._on_remove_box_toggled)
        layout = QVBoxLayout(self)
        for widget in (self.thumb, facts, self.keep_label, self.remove_box):
            layout.addWidget(widget)
        layout.addStretch(1)
        self.set_selected(False)

    def set_marked(self, marked: bool) -> None:
        self.remove_box.blockSignals(True)
        self.remove_box.setChecked(marked)
        self.remove_box.blockSignals(False)
        self._restyle()

    def set_selected(self, selected: bool) -> None:
        self.selected = selected
        self._restyle()

    def _restyle(self) -> None:
        border = "2px solid palette(highlight)" if self.selected else "1px solid palette(mid)"
        faded = "background: rgba(200, 40, 40, 40);" if self.remove_box.isChecked() else ""
        self.setStyleSheet(f"PhotoCard {{ border: {border}; {faded} }}")

    def set_image(self, image: QImage) -> None:
        self.thumb.setPixmap(QPixmap.fromImage(image).scaled(
            THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))

    def _on_remove_box_toggled(self, checked: bool) -> None:
        self._restyle()
        self.markToggled.emit(self.path, checked)

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(self.path)
        super().mousePressEvent(event)

    def contextMenuEvent(self, event) -> None:
        self.menuRequested.emit(self.path, event.globalPos())


class DuplicatesView(QWidget):
    """Groups by level and threshold, per-photo marks, rules, compare, trash and undo."""

    libraryChanged = Signal()
    findSimilarRequested = Signal(str)
    groupsChanged = Signal(int)       # after new groups are shown (their count)

    def __init__(self, services, parent=None):
        super().__init__(parent)
        self.services = services
        self.state = ReviewState()
        self.model = GroupListModel(self)
        self.confirm = self._ask           # tests replace these three with plain callables
        self.warn = self._warn
        self.choose_folder = self._pick_folder
        self._regroup_job, self._dismiss_jobs = None, {}
        self._threshold, self._busy, self._note = None, False, ""
        self._cards: dict[str, PhotoCard] = {}
        self._picked: list[str] = []
        self._debounce = QTimer(self, singleShot=True, interval=250)
        self._debounce.timeout.connect(self.refresh)
        self._build()
        services.loader.loaded.connect(self._on_loader_loaded)
        self._sync_slider()
        self._update_summary()

    # ---- layout ---------------------------------------------------------------------------
    def _build(self) -> None:
        self.level_box = QComboBox()
        for level, label in LEVELS:
            self.level_box.addItem(label, level)
        self.level_box.setCurrentIndex(1)
        self.level_box.currentIndexChanged.connect(self._on_level_box_currentIndexChanged)
        self.slider = QSlider(Qt.Orientation.Horizontal, minimum=50, maximum=100, singleStep=1, pageStep=5)
        self.slider.valueChanged.connect(self._on_slider_valueChanged)
        self.threshold_label, self.status, self.summary = QLabel(), QLabel(), QLabel()
        self.dismiss_button = self._button("&Not a duplicate", lambda: self._on_dismiss_clicked())
        self.similar_button = self._button("&Similar, not a copy", self._on_similar_clicked)
        self.similar_button.setToolTip("Alike but different photos: hide them at this level, "
                                       "keep them in the similar level")
        top = self._row([QLabel("Level"), self.level_box, QLabel("Threshold"), self.slider,
                         self.threshold_label, self._button("Reset", self._on_reset_clicked), None,
                         self.status])
        rules = self._row([self._button("Keep suggested", lambda: self.apply_rule("suggested")),
                           self._button("Keep largest", lambda: self.apply_rule("largest")),
                           self._button("Keep oldest", lambda: self.apply_rule("oldest")),
                           self._button("Keep in folder…", self._on_folder_clicked),
                           self._button("Clear marks", lambda: self.apply_rule("clear")), None,
                           self.dismiss_button, self.similar_button,
                           self._button("&Compare…", self._on_compare_clicked)])
        self.trash_button = self._button("Move marked to &trash…", self.move_marked_to_trash)
        self.undo_button = self._button("&Undo", self.undo)
        self.undo_button.setShortcut(QKeySequence.StandardKey.Undo)
        self.list = QListView()
        self.list.setModel(self.model)
        self.list.selectionModel().currentChanged.connect(self._on_selection_currentChanged)
        self.cards = QHBoxLayout()
        self.cards.addStretch(1)
        holder, scroll = QWidget(), QScrollArea(widgetResizable=True)
        holder.setLayout(self.cards)
        scroll.setWidget(holder)
        splitter = QSplitter()
        splitter.addWidget(self.list)
        splitter.addWidget(scroll)
        splitter.setSizes([260, 740])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(rules)
        layout.addWidget(splitter, 1)
        layout.addLayout(self._row([self.summary, None, self.trash_button, self.undo_button]))

    def _button(self, text: str, slot) -> QPushButton:
        button = QPushButton(text)
        button.clicked.connect(slot)
        return button

    @staticmethod
    def _row(widgets: list) -> QHBoxLayout:
        row = QHBoxLayout()
        for w in widgets:
            row.addStretch(1) if w is None else row.addWidget(w)
        return row

    # ---- level and threshold ----------------------------------------------------------------
    @property
    def level(self) -> str:
        return self.level_box.currentData()

    def set_level(self, level: str) -> None:
        index = self.level_box.findData(level)
        if index < 0:
            raise ValueError(f"unknown level '{level}'")
        if index == self.level_box.currentIndex():
            self._on_level_box_currentIndexChanged(index)
        self.level_box.setCurrentIndex(index)

    def calibrated(self) -> float | None:
        key = _THRESHOLD_OF.get(self.level)
        return None if key is None else self.services.thresholds()[key]

    def threshold(self) -> float | None:
        """The threshold of the next regroup (None: the model's calibrated one)."""
        return None if self.level == "exact" else self._threshold

    def _sync_slider(self) -> None:
        calibrated = self.calibrated()
        self.slider.setEnabled(calibrated is not None)
        self.slider.blockSignals(True)
        self.slider.setValue(round(100 * (self._threshold or calibrated or 1.0)))
        self.slider.blockSignals(False)
        shown = self._threshold or calibrated
        self.threshold_label.setText("—" if shown is None else f"{shown:.2f}")

    def _on_level_box_currentIndexChanged(self, index: int) -> None:
        self._threshold = None
        self.dismiss_button.setEnabled(self.level != "moment")  # a burst is not a duplicate
        self.similar_button.setEnabled(self.level == "near")
        self._sync_slider()
        self.refresh()

    def _on_slider_valueChanged(self, value: int) -> None:
        self._threshold = value / 100
        self.threshold_label.setText(f"{self._threshold:.2f}")
        self._debounce.start()

    def _on_reset_clicked(self) -> None:
        self._threshold = None
        self._sync_slider()
        self.refresh()

    # ---- groups -----------------------------------------------------------------------------
    def refresh(self):
        """Regroup in the background; returns the job (only the latest request is shown)."""
        self._debounce.stop()
        self.status.setText("Grouping…")
        threshold = self.threshold()
        if threshold is None and self.level == "moment":
            threshold = self.calibrated()   # the "similar" one in use, the user's setting included
        job = self._regroup_job = self.services.duplicates(self.level, threshold)
        job.finished.connect(self._on_duplicates_finished)
        job.failed.connect(self._on_duplicates_failed)
        return job

    def _on_duplicates_finished(self, groups) -> None:
        if self.sender() is not self._regroup_job:
            return   # a stale request: a newer regroup is on its way
        current = self.current_group()
        before = current.keep.path if current else None
        self.state.set_groups(groups or [])
        self.model.set_groups(self.state.groups)
        row = next((i for i, g in enumerate(self.state.groups)
                    if before in {m.file.path for m in g.members}), 0)
        self._select_row(row)
        self.status.setText(f"{len(self.state.groups)} groups" + (f" · {self._note}" if self._note else ""))
        self._update_summary()
        self.groupsChanged.emit(len(self.state.groups))

    def _on_duplicates_failed(self, message: str) -> None:
        if self.sender() is self._regroup_job:
            self.status.setText(f"Grouping failed: {message}")

    def group_count(self) -> int:
        return self.model.rowCount()

    def current_group(self):
        index = self.list.currentIndex()
        return index.data(GroupRole) if index.isValid() else None

    def _select_row(self, row: int) -> None:
        index = self.model.index(row, 0)
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect
        self.list.selectionModel().setCurrentIndex(index, flags)
        if not index.isValid():
            self._show_group(None)

    def _on_selection_currentChanged(self, current, previous) -> None:
        self._show_group(current.data(GroupRole) if current.isValid() else None)

    def _show_group(self, group) -> None:
        for card in self._cards.values():
            card.deleteLater()
        self._cards, self._picked = {}, []
        for member in (group.members if group else []):
            card = PhotoCard(member, group, self.state.is_marked(group, member.file.path))
            card.markToggled.connect(self._on_card_markToggled)
            card.clicked.connect(self._on_card_clicked)
            card.menuRequested.connect(self._on_card_menuRequested)
            self.cards.insertWidget(self.cards.count() - 1, card)
            self._cards[member.file.path] = card
            self.services.loader.request((KEY_TAG, member.file.path), member.file.path,
                                         member.file.content_hash)

    def _on_loader_loaded(self, key, image: QImage) -> None:
        if isinstance(key, tuple) and len(key) == 2 and key[0] == KEY_TAG and key[1] in self._cards:
            self._cards[key[1]].set_image(image)

    # ---- marks and rules ----------------------------------------------------------------------
    def marked_files(self) -> list:
        return self.state.marked_files()

    def apply_rule(self, rule: str, folder: str | None = None) -> None:
        self.state.apply(rule, folder)
        group = self.current_group()
        for path, card in self._cards.items():
            card.set_marked(self.state.is_marked(group, path))
        self._update_summary()

    def _on_folder_clicked(self) -> None:
        folder = self.choose_folder()
        if folder:
            self.apply_rule("folder", folder)

    def _on_card_markToggled(self, path: str, remove: bool) -> None:
        self.state.set_marked(path, remove)
        self._update_summary()

    def _on_card_clicked(self, path: str) -> None:
        self._picked = [p for p in self._picked if p != path] + ([] if path in self._picked else [path])
        self._picked = self._picked[-2:]
        for p, card in self._cards.items():
            card.set_selected(p in self._picked)

    def _on_card_menuRequested(self, path: str, where: QPoint) -> None:
        menu = QMenu(self)
        menu.addAction("Find similar photos", lambda: self.findSimilarRequested.emit(path))
        menu.addAction("Compare with suggested keeper", lambda: self.compare(path))
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.popup(where)

    def _update_summary(self) -> None:
        files = self.state.marked_files()
        space = format_bytes(self.state.space_to_free())
        self.summary.setText(f"{len(files)} marked for removal · {space} to free")
        self.trash_button.setEnabled(bool(files) and not self._busy)
        self.undo_button.setEnabled(not self._busy and self.services.can_undo())

    # ---- not a duplicate, compare ---------------------------------------------------------------
    def _on_dismiss_clicked(self, kind: str = "not-duplicate") -> None:
        """Dismiss the current group; the decision is kept for learning (engine.feedback)."""
        group = self.current_group()
        if group is not None:
            job = self.services.dismiss(group, kind, self.threshold() or self.calibrated())
            self._dismiss_jobs[job] = group
            job.finished.connect(self._on_dismiss_finished)

    def _on_similar_clicked(self) -> None:
        self._on_dismiss_clicked("similar-not-near")

    def _on_dismiss_finished(self, _result) -> None:
        group = self._dismiss_jobs.pop(self.sender(), None)
        if group is None:
            return
        row = max(0, self.model.row_of(group))
        self.state.remove_group(group)
        self.model.remove_group(group)
        self._select_row(min(row, self.model.rowCount() - 1))
        self._update_summary()
        self.groupsChanged.emit(len(self.state.groups))

    def _on_compare_clicked(self) -> None:
        self.compare()

    def compare(self, path: str | None = None) -> CompareDialog | None:
        """Open the compare dialog: the two picked photos, else keeper and ``path``/first other."""
        group = self.current_group()
        if group is None or len(group.members) < 2:
            return None
        files = {m.file.path: m.file for m in group.members}
        if path is None and len(self._picked) == 2:
            pair = self._picked
        else:
            others = [p for p in files if p != group.keep.path]
            pair = [group.keep.path, path if path in others else others[0]]
        dialog = CompareDialog(self.services, files[pair[0]], files[pair[1]], self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    # ---- trash and undo ------------------------------------------------------------------------
    def move_marked_to_trash(self):
        """Summary → confirmation → move; refused if a group would lose every copy."""
        files = self.state.marked_files()
        losing = self.state.groups_losing_every_copy()
        if losing:
            names = ", ".join(os.path.basename(g.keep.path) for g in losing[:5])
            self.warn(f"Nothing was moved: in {len(losing)} group(s) every copy is marked for removal "
                      f"({names}). Keep at least one photo in each group.")
            return None
        if not files or self._busy or not self.confirm(self.state.summary(self._destination())):
            return None
        self._set_busy(True)
        job = self.services.move_to_trash(files, self.state.groups)   # the engine checks again
        job.finished.connect(self._on_trash_finished)
        job.failed.connect(self._on_change_failed)
        return job

    remove_marked = move_marked_to_trash

    def _destination(self) -> str:
        folder = self.services.removal_folder()
        return "the trash" if folder is None else f"the folder {folder}"

    def _on_trash_finished(self, records) -> None:
        self._after_change(f"Moved {len(records or [])} file(s) to {self._destination()}")

    def undo(self):
        if self._busy or not self.services.can_undo():
            return None
        self._set_busy(True)
        job = self.services.undo_last_removal()
        job.finished.connect(self._on_undo_finished)
        job.failed.connect(self._on_change_failed)
        return job

    def _on_undo_finished(self, paths) -> None:
        self._after_change(f"Put {len(paths or [])} file(s) back")

    def _on_change_failed(self, message: str) -> None:
        self.warn(message)
        self._after_change(f"Failed: {message}")   # some files may have moved before the failure

    def _after_change(self, note: str) -> None:
        self._note = note
        self._set_busy(False)
        self.refresh()
        self.libraryChanged.emit()

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        self._update_summary()

    # ---- default dialogs (replaced in tests) -------------------------------------------------------
    def _ask(self, text: str) -> bool:
        headline, _, details = text.partition("\n\n")
        box = QMessageBox(QMessageBox.Icon.Question, "Move to trash", headline,
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self)
        box.setDetailedText(details)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        return box.exec() == QMessageBox.StandardButton.Yes

    def _warn(self, text: str) -> None:
        QMessageBox.warning(self, "Lookalike", text)

    def _pick_folder(self) -> str:
        return QFileDialog.getExistingDirectory(self, "Keep the copies in folder")

