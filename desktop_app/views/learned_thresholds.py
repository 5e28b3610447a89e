"""The Settings group "Learn thresholds from my decisions": target precision, whether the
learned thresholds are used, a "Recalibrate now" button, what was learned (decisions, the
learned thresholds against the card's, with precision and recall) and the precision/recall
curve of each level on the decisions.
"""
from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (QCheckBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QPushButton, QVBoxLayout)

from desktop_app.views.plot_widget import PlotWidget

DEFAULT_PRECISION = 0.95
LEVEL_NAMES = {"near": "Near-duplicates", "similar": "Similar"}


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def describe_level(lt) -> str:
    """One level of a PersonalThresholds result, for people."""
    name = LEVEL_NAMES.get(lt.level, lt.level)
    card = (f"card {lt.card_threshold:.3f} (precision {_fmt(lt.card_precision)}, "
            f"recall {_fmt(lt.card_recall)})")
    if lt.threshold is None:
        outcome = f"{lt.note}; the card's {lt.card_threshold:.3f} stays"
    else:
        outcome = (f"learned {lt.threshold:.3f} (precision {_fmt(lt.precision)}, "
                   f"recall {_fmt(lt.recall)}) vs {card}")
    return f"{name}: {lt.decisions} decisions ({lt.positives} same, {lt.negatives} not) — {outcome}"


class LearnedThresholdsWidget(QGroupBox):
    """Learns thresholds through ``services.recalibrate_thresholds``; ``learned(result)``
    when a recalibration finished, ``failed(message)`` when it did not."""

    learned = Signal(object)
    failed = Signal(str)

    def __init__(self, services, parent=None):
        super().__init__("Learn thresholds from my decisions", parent)
        self.services = services
        self.job = None
        self.precision_spin = QDoubleSpinBox()
        self.precision_spin.setRange(0.80, 0.99)
        self.precision_spin.setDecimals(2)
        self.precision_spin.setSingleStep(0.01)
        self.precision_spin.setValue(DEFAULT_PRECISION)
        self.use_check = QCheckBox("Use learned thresholds")
        self.use_check.setToolTip("Thresholds you set above by hand still win over learned ones")
        self.recalibrate_button = QPushButton("Recalibrate now")
        self.recalibrate_button.clicked.connect(self._on_recalibrate_button_clicked)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.plot = PlotWidget("Precision / recall on your decisions", "recall", "precision")

        row = QHBoxLayout()
        row.addWidget(self.precision_spin)
        row.addWidget(self.recalibrate_button)
        row.addStretch(1)
        form = QFormLayout()
        form.addRow("Target precision", row)
        form.addRow("", self.use_check)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.status_label)
        layout.addWidget(self.plot)
        self.show_result(services.personal_thresholds())

    def show_result(self, result) -> None:
        """Show a PersonalThresholds (or None: nothing learned for the model in use)."""
        self.plot.clear()
        if result is None:
            self.status_label.setText("Nothing learned for the model in use yet: review some groups "
                                      "(keep one copy, or mark “not a duplicate”), then Recalibrate now.")
            return
        lines = [f"Learned at precision {result.target_precision:.2f} on {result.fitted_at[:10]}:"]
        lines += [describe_level(lt) for lt in result.levels.values()]
        self.status_label.setText("\n".join(lines))
        for level, lt in result.levels.items():
            for _, precision, recall in lt.curve:
                self.plot.add_point(LEVEL_NAMES.get(level, level), recall, precision)

    @Slot()
    def _on_recalibrate_button_clicked(self) -> None:
        self.recalibrate_button.setEnabled(False)
        self.status_label.setText("Learning from your decisions…")
        self.job = self.services.recalibrate_thresholds(round(self.precision_spin.value(), 2))
        self.job.finished.connect(self._on_job_finished)
        self.job.failed.connect(self._on_job_failed)

    @Slot(object)
    def _on_job_finished(self, result) -> None:
        self.recalibrate_button.setEnabled(True)
        if result is None:   # cancelled
            self.show_result(self.services.personal_thresholds())
            return
        self.show_result(result)
        self.learned.emit(result)

    @Slot(str)
    def _on_job_failed(self, message: str) -> None:
        self.recalibrate_button.setEnabled(True)
        self.status_label.setText(f"Could not learn the thresholds: {message}")
        self.failed.emit(message)
