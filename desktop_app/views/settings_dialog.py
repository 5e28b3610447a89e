"""Settings: library location, device, thresholds, model in use, thumbnail cache size, and
thresholds learned from the user's decisions.

Values live in ``QSettings`` (``desktop_app.app.settings()`` unless one is passed in) under
the keys of ``KEYS``; ``values()`` returns them as a dict, OK saves them. A threshold equal to
the automatic one (learned when "Use learned thresholds" is on and a level learned one, else
the model card's) is not saved: only thresholds set by hand override the automatic ones.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Slot
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox,
                               QVBoxLayout)

from desktop_app.views.learned_thresholds import DEFAULT_PRECISION, LearnedThresholdsWidget

KEYS = ("library/folder", "model/device", "thresholds/near", "thresholds/similar", "model/name",
        "thumbnails/max_mb", "removal/folder", "thresholds/use_learned", "thresholds/learn_precision")
DEVICES = (("auto", "Auto (CUDA when available)"), ("cpu", "CPU"), ("cuda", "CUDA"))
DEFAULT_MODEL_LABEL = "Built-in default"
DEFAULT_CACHE_MB = 512


def _threshold_spin() -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(0.0, 1.0)
    spin.setDecimals(3)
    spin.setSingleStep(0.01)
    return spin


def _folder_row(edit: QLineEdit, placeholder: str, on_choose) -> QHBoxLayout:
    """A folder field with its "Choose…" button."""
    edit.setPlaceholderText(placeholder)
    choose = QPushButton("Choose…")
    choose.clicked.connect(on_choose)
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    row.addWidget(choose)
    return row


class SettingsDialog(QDialog):
    """Edit the persisted settings; ``values()`` → dict keyed like ``KEYS``."""

    def __init__(self, services, settings: QSettings | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Lookalike settings")
        self.services = services
        if settings is None:
            from desktop_app.app import settings as app_settings
            settings = app_settings()
        self.settings = settings
        self._build()
        self._load()

    def _build(self) -> None:
        self.folder_edit = QLineEdit()
        folder_row = _folder_row(self.folder_edit, "default location", self._on_browse_button_clicked)
        restart = QLabel("<small>A new library location takes effect when Lookalike restarts.</small>")

        self.device_combo = QComboBox()
        for value, label in DEVICES:
            self.device_combo.addItem(label, value)
        self.near_spin = _threshold_spin()
        self.similar_spin = _threshold_spin()
        self.reset_button = QPushButton("Reset to the calibrated values (the model's, or learned)")
        self.reset_button.clicked.connect(self._on_reset_button_clicked)
        self.model_combo = QComboBox()
        self.model_combo.addItem(DEFAULT_MODEL_LABEL, "")
        for name in self.services.available_models():
            self.model_combo.addItem(name, name)
            if text := self.services.model_description(name):  # what each model is, e.g. v2 vs v3
                self.model_combo.setItemData(self.model_combo.count() - 1, text, Qt.ItemDataRole.ToolTipRole)
        self.cache_spin = QSpinBox()
        self.cache_spin.setRange(16, 1_000_000)
        self.cache_spin.setSingleStep(64)
        self.cache_spin.setSuffix(" MB")
        self.removal_edit = QLineEdit()
        removal_row = _folder_row(self.removal_edit, "the system trash", self._on_removal_browse_clicked)
        self.learn_group = LearnedThresholdsWidget(self.services)
        self.learn_group.use_check.toggled.connect(self._on_use_check_toggled)
        self.learn_group.learned.connect(self._on_learn_group_learned)

        form = QFormLayout()
        form.addRow("Library location", folder_row)
        form.addRow("", restart)
        form.addRow("Device", self.device_combo)
        form.addRow("Near-duplicate threshold", self.near_spin)
        form.addRow("Similar threshold", self.similar_spin)
        form.addRow("", self.reset_button)
        form.addRow("Model", self.model_combo)
        form.addRow("Thumbnail cache", self.cache_spin)
        form.addRow("Move removed photos to", removal_row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.learn_group)
        layout.addWidget(buttons)

    # ---- values -------------------------------------------------------------------------
    def _current_model(self) -> str:
        """The model the library uses now (its bundle folder's name), or '' when unknown."""
        bundle = getattr(getattr(self.services, "library", None), "bundle", None)
        return Path(bundle.path).name if bundle is not None and hasattr(bundle, "path") else ""

    def _load(self) -> None:
        s = self.settings
        self.folder_edit.setText(str(s.value("library/folder", "") or ""))
        device = str(s.value("model/device", "auto") or "auto")
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(device)))
        self.learn_group.use_check.blockSignals(True)
        self.learn_group.use_check.setChecked(s.value("thresholds/use_learned", False, type=bool))
        self.learn_group.use_check.blockSignals(False)
        self.learn_group.precision_spin.setValue(s.value("thresholds/learn_precision", DEFAULT_PRECISION, type=float))
        self._automatic_shown = self.automatic_thresholds()
        for level, spin in self._threshold_spins().items():
            spin.setValue(s.value(f"thresholds/{level}", self._automatic_shown[level], type=float))
        # nothing saved yet: show what the library runs; "" saved: the built-in default
        model = str(s.value("model/name", "") or "") if s.contains("model/name") else self._current_model()
        if model and self.model_combo.findData(model) < 0:
            self.model_combo.addItem(f"{model} (missing)", model)
        self.model_combo.setCurrentIndex(max(0, self.model_combo.findData(model)))
        self.cache_spin.setValue(s.value("thumbnails/max_mb", DEFAULT_CACHE_MB, type=int))
        self.removal_edit.setText(str(s.value("removal/folder", "") or ""))

    def values(self) -> dict:
        return {"library/folder": self.folder_edit.text().strip(),
                "model/device": self.device_combo.currentData(),
                "thresholds/near": round(self.near_spin.value(), 3),
                "thresholds/similar": round(self.similar_spin.value(), 3),
                "model/name": self.model_combo.currentData(),
                "thumbnails/max_mb": self.cache_spin.value(),
                "removal/folder": self.removal_edit.text().strip(),
                "thresholds/use_learned": self.learn_group.use_check.isChecked(),
                "thresholds/learn_precision": round(self.learn_group.precision_spin.value(), 2)}

    def save(self) -> None:
        automatic = self.automatic_thresholds()
        for key, value in self.values().items():
            level = key.removeprefix("thresholds/")
            if level in automatic and _same(value, automatic[level]):
                self.settings.remove(key)      # not set by hand: follow the model or the learning
            else:
                self.settings.setValue(key, value)
        self.settings.sync()

    def _threshold_spins(self) -> dict[str, QDoubleSpinBox]:
        return {"near": self.near_spin, "similar": self.similar_spin}

    def automatic_thresholds(self) -> dict[str, float]:
        """The thresholds in use when none is set by hand, as the dialog stands now."""
        learned = self.services.learned_thresholds() if self.learn_group.use_check.isChecked() else {}
        return {**self.services.calibrated_thresholds(), **learned}

    def _follow_automatic(self) -> None:
        """Thresholds that showed the automatic value move with it; ones set by hand stay."""
        automatic = self.automatic_thresholds()
        for level, spin in self._threshold_spins().items():
            if _same(spin.value(), self._automatic_shown[level]):
                spin.setValue(automatic[level])
        self._automatic_shown = automatic

    def accept(self) -> None:
        self.save()
        super().accept()

    # ---- slots --------------------------------------------------------------------------
    @Slot()
    def _on_removal_browse_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Move removed photos to")
        if folder:
            self.removal_edit.setText(folder)

    @Slot()
    def _on_browse_button_clicked(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Library location", self.folder_edit.text())
        if path:
            self.folder_edit.setText(path)

    @Slot()
    def _on_reset_button_clicked(self) -> None:
        automatic = self.automatic_thresholds()
        for level, spin in self._threshold_spins().items():
            spin.setValue(automatic[level])

    @Slot(bool)
    def _on_use_check_toggled(self, checked: bool) -> None:
        self._follow_automatic()

    @Slot(object)
    def _on_learn_group_learned(self, result) -> None:
        self._follow_automatic()


def _same(a: float, b: float) -> bool:
    """Equal as the 3-decimal threshold boxes show them."""
    return abs(round(a, 3) - round(b, 3)) < 5e-4
