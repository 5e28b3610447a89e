"""The "Learn" tab: what Lookalike learned from the person's review decisions.

Three actions, each a job through ``services``: improve the model from the decisions
(``improve_from_feedback``: activated only if better on held-out decisions), learn which copy
the person keeps (``learn_keeper``), and, in Settings, thresholds learned from the decisions.
"""
from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (QGroupBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSpinBox,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

ROWS = (("heldout_ap", "Held-out decisions: pair AP"),
        ("heldout_false_positives", "Held-out false pairs at equal recall"),
        ("benchmark_micro_ap", "Built-in benchmark: micro-AP"),
        ("benchmark_recall@1", "Built-in benchmark: recall@1"))


class FeedbackView(QWidget):
    modelActivated = Signal(str)     # the new model's name, once the library uses it
    keeperLearned = Signal(object)   # the KeeperPreference

    def __init__(self, services, parent=None):
        super().__init__(parent)
        self.services = services
        self.result = None
        self._jobs: list = []
        self._build()
        self._set_busy(False)
        self.refresh()

    def _build(self) -> None:
        self.counts_label = QLabel()
        self.counts_label.setWordWrap(True)
        self.steps_spin = QSpinBox(minimum=10, maximum=5000, singleStep=50, value=200)
        self.improve_button = QPushButton("Improve the model from my decisions")
        self.improve_button.clicked.connect(self.improve)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.progress_bar = QProgressBar()
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.table = QTableWidget(len(ROWS), 2)
        self.table.setHorizontalHeaderLabels(["Active model", "New model"])
        self.table.setVerticalHeaderLabels([label for _, label in ROWS])
        model_box = QGroupBox("Model")
        model = QVBoxLayout(model_box)
        row = QHBoxLayout()
        row.addWidget(QLabel("Training steps"))
        row.addWidget(self.steps_spin)
        row.addWidget(self.improve_button, 1)
        row.addWidget(self.cancel_button)
        for part in (self.counts_label, row, self.progress_bar, self.status_label, self.table):
            (model.addLayout if isinstance(part, QHBoxLayout) else model.addWidget)(part)
        self.keeper_button = QPushButton("Learn which copy I keep")
        self.keeper_button.clicked.connect(self.learn_keeper)
        self.keeper_label = QLabel("Keeper suggestions follow the rules until you have reviewed "
                                   "a few groups and asked Lookalike to learn from them.")
        self.keeper_label.setWordWrap(True)
        keeper_box = QGroupBox("Which copy to keep")
        keeper = QVBoxLayout(keeper_box)
        keeper.addWidget(self.keeper_button)
        keeper.addWidget(self.keeper_label)
        layout = QVBoxLayout(self)
        layout.addWidget(model_box)
        layout.addWidget(keeper_box)
        layout.addStretch(1)

    @Slot()
    def refresh(self) -> None:
        c = self.services.feedback_counts()
        self.counts_label.setText(
            f"Your decisions so far: {c['same-photo']} groups where you kept one photo and removed "
            f"copies, {c['not-duplicate']} marked not a duplicate, {c['similar-not-near']} marked "
            f"similar but not a copy. The model learns from them and keeps a new version only if it "
            f"is no worse on decisions it did not train on and better there or on a built-in test.")

    def _start(self, job, finished, what: str) -> None:
        self._jobs.append(job)
        self._set_busy(True)
        self.status_label.setText(what)
        self.progress_bar.setRange(0, 0)
        job.progress.connect(self._on_progress)
        job.finished.connect(finished)
        job.failed.connect(self._on_failed)

    def _set_busy(self, busy: bool) -> None:
        self.improve_button.setEnabled(not busy)
        self.keeper_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    @Slot()
    def cancel(self) -> None:
        """Stop after the current step; a stopped run changes nothing."""
        for job in self._jobs:
            job.cancel()
        self.cancel_button.setEnabled(False)
        self.status_label.setText("Stopping after the current step…")

    @Slot()
    def improve(self) -> None:
        self._start(self.services.improve_from_feedback(self.steps_spin.value()), self._on_improved,
                    "Learning from your decisions…")

    @Slot()
    def learn_keeper(self) -> None:
        self._start(self.services.learn_keeper(), self._on_keeper_learned, "Learning which copy you keep…")

    def _on_progress(self, done: int, total: int, what: str) -> None:
        self.progress_bar.setRange(0, max(total, 0))
        self.progress_bar.setValue(done)
        self.status_label.setText(what)

    def _done(self) -> None:
        self._jobs = [job for job in self._jobs if job is not self.sender()]
        self._set_busy(False)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)

    def _on_improved(self, result) -> None:
        self._done()
        if result is None:  # cancelled
            self.status_label.setText("Stopped; the model in use is unchanged.")
            return
        self.result = result
        for r, (key, _) in enumerate(ROWS):
            for c, side in enumerate((result.before, result.after)):
                value = side[key]
                self.table.setItem(r, c, QTableWidgetItem(f"{value:.3f}" if isinstance(value, float) else str(value)))
        self.status_label.setText(result.reason[0].upper() + result.reason[1:])
        if result.activated:
            self.modelActivated.emit(result.name)

    def _on_keeper_learned(self, preference) -> None:
        self._done()
        if not preference.fitted:
            self.keeper_label.setText(f"Not enough decisions yet ({preference.decisions} usable; "
                                      "review at least 5 groups and remove their copies).")
        else:
            found = [text for _, text in preference.weights_in_words()[:3]]
            words = ("you keep " + ", ".join(found)) if found else "no clear preference"
            accuracy = "" if preference.accuracy is None else f", right on {preference.accuracy:.0%} of held-out decisions"
            self.keeper_label.setText(f"Learned from {preference.decisions} decisions{accuracy}: {words}.")
        self.status_label.setText("")
        self.keeperLearned.emit(preference)

    def _on_failed(self, message: str) -> None:
        self._done()
        self.status_label.setText(message)
