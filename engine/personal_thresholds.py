"""Personal thresholds: the near-duplicate and similar thresholds re-calibrated on the user's
own review decisions (``engine.feedback``), at a precision the user chooses.

Every labelled pair is scored with the active model (cosine similarity of its two contents'
embeddings: from the catalog, or from the review's pixel snapshot when the model has none),
"near" on the copy head and "similar" on the semantic head. At the near level only
"same photo" pairs are positives ("similar, not near" is a negative, as for the copy head);
at the similar level "similar, not near" pairs are positives too (the person said they are
alike and left them shown there), and "not a duplicate" pairs are negatives at both levels;
the latest decision on a pair wins. Pairs scoring at or above a
threshold count as duplicates; the precision/recall curve has one point per distinct score.
The learned threshold is the lowest one whose precision on the decisions reaches the target.
Cuts sit at same-photo pairs' scores: cutting at a not-duplicate pair's score only adds a
false match. A level with fewer than ``MIN_EACH`` same-photo or not-duplicate pairs, or whose
target cannot be reached, learns nothing and keeps the model card's threshold.

Results are saved per model id in ``<library>/personal-thresholds.json``: thresholds learned
for one model mean nothing for another, so ``load_personal`` answers None for a model that
was never calibrated (switching back finds the old ones again).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from engine.atomic import atomic_write
from engine.errors import Cancelled, DecodeError, LookalikeError
from engine.progress import ProgressCallback, null_progress, wants_stop

log = logging.getLogger(__name__)
FILE_NAME = "personal-thresholds.json"
FORMAT_VERSION = 1
LEVELS = {"near": ("copy", "near"), "similar": ("semantic", "similar")}   # level → (head, card name)
MIN_EACH = 3          # same-photo pairs and not-duplicate pairs a level needs to learn from
DEFAULT_PRECISION = 0.95

CurvePoint = tuple[float, float, float]   # (threshold, precision, recall)


@dataclass(frozen=True)
class LevelThreshold:
    """What one level learned, with the card's threshold measured on the same pairs."""

    level: str
    positives: int                  # same-photo pairs scored
    negatives: int                  # not-duplicate pairs scored
    skipped: int                    # pairs without an embedding or a snapshot to embed
    card_threshold: float
    card_precision: float | None    # None: no pair scores at or above the card's threshold
    card_recall: float | None       # None: no same-photo pair
    threshold: float | None = None  # None: nothing learned (see ``note``)
    precision: float | None = None
    recall: float | None = None
    curve: tuple[CurvePoint, ...] = ()
    note: str = ""

    @property
    def fitted(self) -> bool:
        return self.threshold is not None

    @property
    def decisions(self) -> int:
        return self.positives + self.negatives

    def in_use(self) -> float:
        """The learned threshold, or the card's when nothing was learned."""
        return self.threshold if self.threshold is not None else self.card_threshold


@dataclass(frozen=True)
class PersonalThresholds:
    model_id: str
    target_precision: float
    levels: dict[str, LevelThreshold]
    fitted_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def learned(self) -> dict[str, float]:
        """{level: threshold} for the levels that learned one."""
        return {name: lt.threshold for name, lt in self.levels.items() if lt.threshold is not None}


# ---- precision and recall (pure) -----------------------------------------------------------
def pr_curve(scores, labels) -> list[CurvePoint]:
    """(threshold, precision, recall) at every distinct score, highest threshold first."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, np.int64)
    if len(scores) == 0:
        return []
    order = np.argsort(-scores, kind="stable")
    s, tp = scores[order], np.cumsum(labels[order])
    positives = int(labels.sum())
    last_of_ties = np.nonzero(np.r_[s[1:] != s[:-1], True])[0]
    return [(float(s[i]), float(tp[i] / (i + 1)), float(tp[i] / positives) if positives else 0.0)
            for i in last_of_ties]


def precision_recall_at(scores, labels, threshold: float) -> tuple[float | None, float | None]:
    """Precision and recall of "score ≥ threshold"; None where undefined (nothing predicted,
    no positive)."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, np.int64)
    predicted = scores >= threshold
    tp = int(labels[predicted].sum())
    positives = int(labels.sum())
    return (tp / int(predicted.sum()) if predicted.any() else None,
            tp / positives if positives else None)


def lowest_threshold_at_precision(curve: list[CurvePoint], scores, labels,
                                  target: float) -> CurvePoint | None:
    """The curve point with the lowest threshold, at a same-photo pair's score, whose
    precision reaches ``target``; None when none does."""
    positive_scores = {float(s) for s, y in zip(np.asarray(scores, np.float64), labels) if y == 1}
    ok = [p for p in curve if p[0] in positive_scores and p[1] >= target]
    return min(ok, key=lambda p: p[0]) if ok else None


def fit_level(level: str, scores, labels, card_threshold: float, target: float,
              skipped: int = 0) -> LevelThreshold:
    """Learn one level's threshold from scored pairs (labels 1 same photo, 0 not)."""
    labels = np.asarray(labels, np.int64)
    positives, negatives = int(labels.sum()), int(len(labels) - labels.sum())
    card_p, card_r = precision_recall_at(scores, labels, card_threshold)
    base = dict(level=level, positives=positives, negatives=negatives, skipped=skipped,
                card_threshold=float(card_threshold), card_precision=card_p, card_recall=card_r)
    curve = tuple(pr_curve(scores, labels))
    if positives < MIN_EACH or negatives < MIN_EACH:
        return LevelThreshold(**base, curve=curve, note=(
            f"not enough decisions ({positives} same-photo and {negatives} not-duplicate pairs; "
            f"{MIN_EACH} of each needed)"))
    best = lowest_threshold_at_precision(list(curve), scores, labels, target)
    if best is None:
        return LevelThreshold(**base, curve=curve, note=f"precision {target:.2f} is not reached on these decisions")
    return LevelThreshold(**base, threshold=best[0], precision=best[1], recall=best[2], curve=curve)


# ---- scoring the decisions with the active model ----------------------------------------------
def _vectors(library, head: str, hashes: list[str]) -> dict[str, np.ndarray]:
    """Embeddings of ``hashes`` for the active model: stored ones, else from the snapshots."""
    found, missing = {}, []
    for h in hashes:
        vector = library.catalog.get_embedding(h, library.model_id, library.bundle.storage_head(head))
        if vector is None:
            missing.append(h)
        else:
            found[h] = vector
    snapshots = {str(library.feedback.snapshot_path(h)): h for h in missing
                 if library.feedback.snapshot_path(h).is_file()}
    if snapshots:
        errors: list[DecodeError] = []
        rows = library.embedder.embed_files(list(snapshots), head, skip_errors=True, errors=errors)
        for error in errors:
            log.warning("review snapshot left out of the thresholds: %s", error)
        failed = {e.path for e in errors}
        found.update(zip([h for p, h in snapshots.items() if p not in failed], rows))
    return found


def level_pairs(library, level: str) -> list[tuple[str, str, int]]:
    """(hash_a, hash_b, label) of every decided pair, labelled for ``level`` (1: belongs in
    one group at that level, 0: does not)."""
    if level == "near":
        return [(p.hash_a, p.hash_b, p.label) for p in library.feedback.pairs("copy")]
    return [(p.hash_a, p.hash_b, int(p.kind != "not-duplicate")) for p in library.feedback.pairs("copy")]


def score_pairs(library, level: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Cosine similarity (on the level's head) and label of every decided pair; and how many
    pairs had no embedding (and no snapshot) to score them with."""
    head = LEVELS[level][0]
    pairs = level_pairs(library, level)
    vectors = _vectors(library, head, sorted({h for a, b, _ in pairs for h in (a, b)}))
    scored = [(float(np.dot(vectors[a], vectors[b])), label) for a, b, label in pairs
              if a in vectors and b in vectors]
    scores = np.array([s for s, _ in scored], np.float64)
    labels = np.array([y for _, y in scored], np.int64)
    return scores, labels, len(pairs) - len(scored)


def calibrate_personal(library, target_precision: float = DEFAULT_PRECISION,
                       progress: ProgressCallback = null_progress) -> PersonalThresholds:
    """Learn the "near" and "similar" thresholds of the library's active model from its
    review decisions (not saved: see ``save_personal``)."""
    if not 0.5 <= target_precision <= 1.0:
        raise LookalikeError(f"target precision must be between 0.5 and 1, got {target_precision:g}")
    levels = {}
    for done, (level, (head, card_name)) in enumerate(LEVELS.items()):
        if wants_stop(progress, done, len(LEVELS), f"scoring {level} decisions"):
            raise Cancelled("threshold calibration cancelled")
        scores, labels, skipped = score_pairs(library, level)
        levels[level] = fit_level(level, scores, labels, library.bundle.threshold(head, card_name),
                                  target_precision, skipped)
    progress(len(LEVELS), len(LEVELS), "done")
    return PersonalThresholds(library.model_id, float(target_precision), levels)


# ---- persistence ------------------------------------------------------------------------------
def _read(path: Path) -> dict:
    """The saved file's models ({model id: data}); an unreadable file counts as empty."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s: cannot read the learned thresholds (%s); ignoring them", path, exc)
        return {}
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        log.warning("%s: unknown format; ignoring the learned thresholds", path)
        return {}
    return data.get("models", {})


def save_personal(folder: str | Path, result: PersonalThresholds) -> Path:
    """Store ``result`` under its model id in ``folder/personal-thresholds.json`` (other
    models' thresholds stay), atomically."""
    path = Path(folder) / FILE_NAME
    models = _read(path)
    models[result.model_id] = asdict(result)
    text = json.dumps({"version": FORMAT_VERSION, "models": models}, indent=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def load_personal(folder: str | Path, model_id: str) -> PersonalThresholds | None:
    """The thresholds learned for ``model_id``; None when it was never calibrated."""
    path = Path(folder) / FILE_NAME
    data = _read(path).get(model_id)
    if data is None:
        return None
    try:
        levels = {name: LevelThreshold(**{**lt, "curve": tuple(tuple(p) for p in lt["curve"])})
                  for name, lt in data["levels"].items()}
        return PersonalThresholds(data["model_id"], float(data["target_precision"]), levels,
                                  data["fitted_at"])
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("%s: learned thresholds of %s are unreadable (%s); ignoring them", path, model_id, exc)
        return None

