"""Which copy this person keeps: a small logistic model learned from their "same photo" reviews.

Every review where some copies were kept and others removed gives pairwise examples: the
kept copy's signals (``engine.keeper_signals``) minus a removed copy's → 1, the negation → 0,
each review weighing as much as any other. The differences are standardised and an L2
logistic regression without intercept is fitted (Newton steps; the same optimum as
scikit-learn's ``LogisticRegression(C=1, fit_intercept=False, class_weight="balanced")``,
which the symmetric examples make a no-op). A copy's score is its signals times the weights;
the suggestion is the highest score, and its reason names the signals that put it ahead of
the runner-up. The held-out accuracy (share of the last 20 % of reviews, by order, where the
suggestion is a copy the person kept) is measured at fit time, on a model fitted without them.

While fitting, each review's folder signal uses folder counts without that review, so a
folder seen once does not look more telling than it is.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.atomic import atomic_write
from engine.errors import LookalikeError
from engine.keeper_signals import (FOLDER, NAMES, SIGNALS, FolderRates, group_matrix, member_counts,
                                   short_folder)

FILE_NAME = "keeper-preference.json"
MIN_REVIEWS = 5
HELD_OUT = 0.2
MIN_MARGIN = 0.05    # score gap below which the learned preference does not choose
C = 1.0              # inverse L2 strength, as scikit-learn's
_VERSION = 1


@dataclass
class KeeperPreference:
    fitted: bool = False
    decisions: int = 0                 # usable reviews it was fitted on
    accuracy: float | None = None      # on the held-out last reviews, measured at fit time
    held_out: int = 0
    coef: list[float] = field(default_factory=lambda: [0.0] * len(NAMES))   # standardised units
    scale: list[float] = field(default_factory=lambda: [1.0] * len(NAMES))
    folders: FolderRates = field(default_factory=FolderRates)

    # ---- fitting --------------------------------------------------------------------------
    @classmethod
    def fit(cls, reviews) -> "KeeperPreference":
        """From ``Review``s in decision order; ``fitted`` is False below ``MIN_REVIEWS`` usable."""
        usable = [r for r in reviews if _usable(r)]
        if len(usable) < MIN_REVIEWS:
            return cls(decisions=len(usable))
        held = max(1, round(len(usable) * HELD_OUT))
        trial = cls._train(usable[:-held])
        hits = [_kept(r)[int(np.argmax(trial.scores([m.features for m in r.members])))]
                for r in usable[-held:]]
        model = cls._train(usable)
        model.accuracy, model.held_out = round(float(np.mean(hits)), 4), held
        return model

    @classmethod
    def _train(cls, reviews) -> "KeeperPreference":
        rates = FolderRates.from_members([m for r in reviews for m in r.members])
        x, y, w = _examples(reviews, rates)
        scale = np.sqrt((x ** 2).mean(axis=0)) if len(x) else np.ones(len(NAMES))
        scale[scale < 1e-9] = 1.0
        coef = fit_logistic(x / scale, y, w, C) if len(x) else np.zeros(len(NAMES))
        return cls(True, len(reviews), None, 0, coef.round(6).tolist(), scale.round(6).tolist(), rates)

    # ---- using ----------------------------------------------------------------------------
    def scores(self, features: list[dict]) -> np.ndarray:
        """One score per copy (higher: more likely kept)."""
        return group_matrix(features, self.folders) @ self._weights()

    def suggest(self, features: list[dict]) -> tuple[int, str] | None:
        """(index of the copy to keep, why), or None when the learned preference cannot tell
        the best copies apart (then the rules should choose)."""
        if not self.fitted or not features:
            return None
        if len(features) == 1:
            return 0, "the only copy"
        rows = group_matrix(features, self.folders)
        scores = rows @ self._weights()
        order = np.argsort(-scores, kind="stable")
        best, runner = int(order[0]), int(order[1])
        if scores[best] - scores[runner] < MIN_MARGIN:
            return None
        parts = (rows[best] - rows[runner]) * self._weights()
        words = self._words(parts, rows[best] - rows[runner], features[best])
        return best, f"learned from your {self.decisions} decisions: you keep {_and(words)}"

    def uses(self, name: str, at_least: float = 0.05) -> bool:
        """Whether the signal ``name`` has a weight that can matter."""
        return abs(self.coef[NAMES.index(name)]) >= at_least

    def weights_in_words(self, at_least: float = 0.05) -> list[tuple[float, str]]:
        """(standardised weight, what it favours), strongest first, leaving out weaker ones;
        signals that say the same (JPEG, has a JPEG quality) are added up."""
        merged: dict[str, float] = {}
        for c, (_, plus, minus) in zip(self.coef, SIGNALS):
            merged[plus] = merged.get(plus, 0.0) + c
            merged[minus] = merged.get(minus, 0.0) - c
        out = [(c, words) for words, c in merged.items() if c >= at_least]
        return sorted(out, key=lambda cw: -abs(cw[0]))

    def _weights(self) -> np.ndarray:
        return np.asarray(self.coef) / np.asarray(self.scale)

    def _words(self, parts: np.ndarray, diff: np.ndarray, winner: dict) -> list[str]:
        words: list[str] = []
        for j in np.argsort(-parts, kind="stable")[:3]:
            if parts[j] <= 0 or parts[j] < 0.25 * parts.max():
                break
            phrase = SIGNALS[j][1] if diff[j] > 0 else SIGNALS[j][2]
            if j == FOLDER and diff[j] > 0:
                telling = self.folders.telling(winner.get("folder") or "")
                phrase = f"the one in {short_folder(telling)}" if telling else phrase
            if phrase not in words:
                words.append(phrase)
        return words

    # ---- saving ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"version": _VERSION, "fitted": self.fitted, "decisions": self.decisions,
                "accuracy": self.accuracy, "held_out": self.held_out, "features": list(NAMES),
                "coef": self.coef, "scaler": {"scale": self.scale},
                "folders": {"prior": self.folders.prior, "counts": self.folders.counts}}

    @classmethod
    def from_dict(cls, data: dict) -> "KeeperPreference":
        if data.get("version") != _VERSION or data.get("features") != list(NAMES):
            raise LookalikeError("keeper preference from another version; learn it again")
        folders = FolderRates(float(data["folders"]["prior"]),
                              {k: [int(a), int(b)] for k, (a, b) in data["folders"]["counts"].items()})
        return cls(bool(data["fitted"]), int(data["decisions"]), data["accuracy"],
                   int(data["held_out"]), [float(c) for c in data["coef"]],
                   [float(s) for s in data["scaler"]["scale"]], folders)

    def save(self, path: str | Path) -> Path:
        text = json.dumps(self.to_dict(), indent=1, sort_keys=True)
        return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> "KeeperPreference | None":
        """The saved preference, None when there is none; ``LookalikeError`` when unreadable."""
        path = Path(path)
        if not path.exists():
            return None
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LookalikeError(f"{path}: unreadable keeper preference ({exc})") from exc


def fit_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, c: float = C,
                 steps: int = 100) -> np.ndarray:
    """Weights minimising ``½‖β‖² + c·Σ wᵢ·logloss(yᵢ, xᵢ·β)`` (no intercept), by Newton steps."""
    beta = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        grad = beta + c * x.T @ (w * (p - y))
        hess = np.eye(len(beta)) + c * (x.T * (w * p * (1 - p))) @ x
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    return beta


def _examples(reviews, rates: FolderRates) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kept − removed differences (→ 1) and their negations (→ 0); each review weighs 1."""
    xs, ys, ws = [], [], []
    for review in reviews:
        rows = group_matrix([m.features for m in review.members], rates, member_counts(review.members))
        kept = _kept(review)
        diffs = [rows[k] - rows[r] for k in range(len(kept)) if kept[k]
                 for r in range(len(kept)) if not kept[r]]
        diffs = [d for d in diffs if np.any(d)]
        for d in diffs:
            xs += [d, -d]
            ys += [1.0, 0.0]
            ws += [1.0 / len(diffs)] * 2
    if not xs:
        return np.zeros((0, len(NAMES))), np.zeros(0), np.zeros(0)
    return np.array(xs), np.array(ys), np.array(ws)


def _kept(review) -> list[bool]:
    return [bool(m.kept) for m in review.members]


def _usable(review) -> bool:
    """Two or more copies with their features, at least one kept and one removed."""
    kept = _kept(review)
    return (len(kept) >= 2 and any(kept) and not all(kept)
            and all(m.features and "bytes" in m.features for m in review.members))


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
