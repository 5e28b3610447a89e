"""Fine-tune: pick a labeled folder, train in the background with live plots, compare the
metrics before and after, and switch the library to the new model.

Everything runs through ``services`` (inspect_labeled_folder, train, activate_model); the
training settings travel as a plain dict, so this module never imports the training code.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                               QHeaderView, QLabel, QLineEdit, QListWidget, QProgressBar,
                               QPushButton, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout,
                               QWidget)

from desktop_app.views.plot_widget import PlotWidget

DEVICES = ("auto", "cpu", "cuda")
RECIPES = ("finetune", "copy-detection", "both")
METRICS = (("semantic/recall@1", "Recall@1 (labels)"), ("semantic/map@r", "MAP@R (labels)"),
           ("copy/recall@1", "Recall@1 (copies)"), ("copy/micro_ap", "micro-AP (copies)"),
           ("score", "Score"))
VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    return table


def _fill(table: QTableWidget, rows: list[tuple]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            item = QTableWidgetItem(str(value))
            if c:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            table.setItem(r, c, item)


class FineTuneView(QWidget):
    """Inspect a labeled folder, train on it, activate the result."""

    folderInspected = Signal(object)      # the LabeledFolder
    trainingStopped = Signal(str)         # "finished", "cancelled" or "failed"
    modelActivated = Signal(str)          # the model's name, once the library uses it

    def __init__(self, services, parent=None):
        super().__init__(parent)
        self.services = services
        self.folder = None                # the inspected LabeledFolder
        self.result = None                # the last TrainResult
        self.extra_settings: dict = {}    # more TrainConfig fields (steps_per_epoch, workers, ...)
        self._job = self._inspect_job = None
        self._trained_name = self._activating = ""
        self._build()
        self._set_busy(False)

    # ---- layout -------------------------------------------------------------------------
    def _build(self) -> None:
        self.folder_edit = QLineEdit()
        self.folder_edit.setReadOnly(True)
        self.folder_edit.setPlaceholderText("A folder with one subfolder per label")
        self.choose_button = QPushButton("Choose labeled folder…")
        self.choose_button.clicked.connect(self._on_choose_button_clicked)
        row = QHBoxLayout()
        row.addWidget(self.folder_edit, 1)
        row.addWidget(self.choose_button)
        self.class_table = _table(["Class", "Images"])
        self.left_out = QListWidget()
        self.left_out.setMaximumHeight(110)
        data_box = QGroupBox("Training data")
        data = QVBoxLayout(data_box)
        data.addLayout(row)
        data.addWidget(self.class_table, 1)
        data.addWidget(QLabel("Left out:"))
        data.addWidget(self.left_out)

        self.epochs_spin = QSpinBox(minimum=1, maximum=1000, value=5)
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.recipe_combo = QComboBox()
        self.recipe_combo.addItems(RECIPES)
        self.image_size_spin = QSpinBox(minimum=32, maximum=512, singleStep=32, value=224)
        self.name_edit = QLineEdit("my-model")
        form_box = QGroupBox("Settings")
        form = QFormLayout(form_box)
        form.addRow("Epochs", self.epochs_spin)
        form.addRow("Device", self.device_combo)
        form.addRow("Recipe", self.recipe_combo)
        form.addRow("Image size", self.image_size_spin)
        form.addRow("Model name", self.name_edit)

        self.start_button = QPushButton("Start training")
        self.start_button.clicked.connect(self._on_start_button_clicked)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._on_cancel_button_clicked)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        self.progress_bar = QProgressBar()
        self.status_label = QLabel("Choose a labeled folder to start.")
        self.status_label.setWordWrap(True)
        left = QVBoxLayout()
        for part in (data_box, form_box):
            left.addWidget(part)
        left.addLayout(buttons)
        left.addWidget(self.progress_bar)
        left.addWidget(self.status_label)

        self.loss_plot = PlotWidget("Training loss", "step", "loss")
        self.recall_plot = PlotWidget("Validation", "epoch", "metric")
        self.metrics_table = _table(["Metric", "Before", "After"])
        self.activate_button = QPushButton("Activate this model")
        self.activate_button.clicked.connect(self._on_activate_button_clicked)
        right = QVBoxLayout()
        right.addWidget(self.loss_plot, 2)
        right.addWidget(self.recall_plot, 2)
        right.addWidget(self.metrics_table, 1)
        right.addWidget(self.activate_button)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 2)
        layout.addLayout(right, 3)

    def _set_busy(self, busy: bool) -> None:
        for widget in (self.choose_button, self.epochs_spin, self.device_combo, self.recipe_combo,
                       self.image_size_spin, self.name_edit):
            widget.setEnabled(not busy)
        self.start_button.setEnabled(not busy and self.folder is not None)
        self.cancel_button.setEnabled(busy)
        if busy:
            self.activate_button.setEnabled(False)

    @property
    def busy(self) -> bool:
        return self._job is not None

    # ---- the labeled folder ---------------------------------------------------------------
    @Slot()
    def _on_choose_button_clicked(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Labeled folder (one subfolder per label)")
        if path:
            self.inspect(path)

    def inspect(self, path: str) -> None:
        """Read ``path`` in the background; fill the class table when done."""
        self.folder = None
        self.folder_edit.setText(str(path))
        self.status_label.setText("Reading the folder…")
        self._set_busy(False)
        job = self._inspect_job = self.services.inspect_labeled_folder(str(path))
        job.finished.connect(self._on_inspect_finished)
        job.failed.connect(self._on_inspect_failed)

    def _on_inspect_finished(self, folder) -> None:
        if self.sender() is not self._inspect_job:   # an older pick, overtaken
            return
        self.folder = folder
        counts = [0] * len(folder.classes)
        for label in folder.labels:
            counts[label] += 1
        _fill(self.class_table, list(zip(folder.classes, counts)))
        self.left_out.clear()
        for path, why in folder.ignored:
            self.left_out.addItem(f"{Path(path).name}: {why}")
        for name in folder.singletons:
            self.left_out.addItem(f"{name}/: only one image (a class needs two)")
        self.status_label.setText(f"{len(folder.classes)} classes, {len(folder.paths)} images. Ready.")
        self._set_busy(False)
        self.folderInspected.emit(folder)

    def _on_inspect_failed(self, message: str) -> None:
        if self.sender() is not self._inspect_job:
            return
        self.class_table.setRowCount(0)
        self.left_out.clear()
        self.status_label.setText(f"Cannot use this folder: {message}")
        self._set_busy(False)

    # ---- training -----------------------------------------------------------------------
    def training_settings(self) -> dict:
        """The settings ``services.train`` gets (TrainConfig fields)."""
        device = self.device_combo.currentText()
        return {"data": str(self.folder.root if self.folder else self.folder_edit.text()),
                "recipe": self.recipe_combo.currentText(), "epochs": self.epochs_spin.value(),
                "device": device, "name": self.name_edit.text().strip(),
                "image_size": self.image_size_spin.value(), "workers": 0 if device == "cpu" else 2,
                **self.extra_settings}

    @Slot()
    def _on_start_button_clicked(self) -> None:
        self.start()

    def start(self) -> None:
        name = self.name_edit.text().strip()
        if not VALID_NAME.match(name):
            self.status_label.setText("The model name may hold letters, digits, '.', '_' and '-' only.")
            return
        try:
            job = self.services.train(self.training_settings())
        except (ValueError, TypeError) as exc:   # a setting TrainConfig refuses
            self.status_label.setText(f"Cannot start: {exc}")
            return
        self._job, self._trained_name, self.result = job, name, None
        self.loss_plot.clear()
        self.recall_plot.clear()
        self.metrics_table.setRowCount(0)
        self.progress_bar.setRange(0, 0)         # busy until the first step reports
        self.status_label.setText("Measuring the model before training…")
        self._set_busy(True)
        job.progress.connect(self._on_train_progress)
        job.events.connect(self._on_train_events)
        job.finished.connect(self._on_train_finished)
        job.failed.connect(self._on_train_failed)

    @Slot()
    def _on_cancel_button_clicked(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self.cancel_button.setEnabled(False)
            self.status_label.setText("Cancelling after the current step…")

    def _on_train_progress(self, done: int, total: int, what: str) -> None:
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(done)
        self.status_label.setText(what)

    def _on_train_events(self, events: list) -> None:
        for event in events:
            if event.get("type") == "step" and _number(event.get("loss")) is not None:
                self.loss_plot.add_point("loss", event["step"], event["loss"])
            elif event.get("type") == "validation":
                for key, label in METRICS[:-1]:
                    value = _number(event.get(key))
                    if value is not None:
                        self.recall_plot.add_point(label, event.get("epoch", 0), value)

    def _on_train_finished(self, result) -> None:
        self._job, self.result = None, result
        self._set_busy(False)
        if result is None or getattr(result, "cancelled", False):
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)
            self.status_label.setText("Training cancelled.")
            self.trainingStopped.emit("cancelled")
            return
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        self._show_metrics(result.history[0] if result.history else {}, result.best or {})
        self.activate_button.setEnabled(bool(result.bundle))
        self.status_label.setText(f"Done: model '{self._trained_name}' saved in {result.bundle}.")
        self.trainingStopped.emit("finished")

    def _on_train_failed(self, message: str) -> None:
        self._job = None
        self._set_busy(False)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status_label.setText(f"Training failed: {message}")
        self.trainingStopped.emit("failed")

    def _show_metrics(self, before: dict, after: dict) -> None:
        def cell(row: dict, key: str) -> str:
            value = _number(row.get(key))
            return "—" if value is None else f"{value:.3f}"
        rows = [(label, cell(before, key), cell(after, key)) for key, label in METRICS
                if key in before or key in after]
        _fill(self.metrics_table, rows)

    # ---- activation ---------------------------------------------------------------------
    @Slot()
    def _on_activate_button_clicked(self) -> None:
        self.activate()

    def activate(self) -> None:
        """Switch the library to the trained model (re-embeds it in the background)."""
        if not self.result or not self.result.bundle or self.busy:
            return
        name = Path(self.result.bundle).name
        job = self._job = self.services.activate_model(name, self.device_combo.currentText())
        self._activating = name
        self._set_busy(True)
        self.cancel_button.setEnabled(False)    # a half re-embedded library is not worth it
        self.progress_bar.setRange(0, 0)
        self.status_label.setText(f"Switching the library to '{name}'…")
        job.progress.connect(self._on_train_progress)
        job.finished.connect(self._on_activate_finished)
        job.failed.connect(self._on_activate_failed)

    def _on_activate_finished(self, _report) -> None:
        name = self._activating
        self._job = None
        self._set_busy(False)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        self.status_label.setText(f"The library now uses '{name}'.")
        self.modelActivated.emit(name)

    def _on_activate_failed(self, message: str) -> None:
        self._job = None
        self._set_busy(False)
        self.activate_button.setEnabled(True)
        self.status_label.setText(f"Could not switch models: {message}")
