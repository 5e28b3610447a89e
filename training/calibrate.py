"""Calibrate a bundle's similarity thresholds on Caltech-101 *train* classes.

- ``copy`` head, level ``near``: originals against transformed copies of themselves
  (every family in ``training.families``) as positives; as negatives, every pair of distinct
  originals and every copy against every other original (so about 300 negatives per
  positive, as in a library where most pairs are unrelated). The threshold is the lowest
  cosine that keeps pair precision ≥ 95 %.
- ``semantic`` head, level ``similar``: pairs of originals of the same class as positives,
  of different classes as negatives; the lowest cosine with pair precision ≥ 80 %.

Only train classes are used (``split.csv``), so the test classes stay unseen for reporting.
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np

from engine.decode import read_photo
from engine.embedding import Embedder
from engine.model_bundle import ModelBundle
from training.families import FAMILIES, make_copy

NEAR_PRECISION = 0.95
SIMILAR_PRECISION = 0.80


def split_classes(dataset: Path, split: str) -> list[str]:
    with open(dataset / "split.csv", newline="") as handle:
        return [row["class"] for row in csv.DictReader(handle) if row["split"] == split]


def sample_images(dataset: Path, split: str, count: int, seed: int = 0) -> list[tuple[Path, str]]:
    """``count`` (path, class) pairs drawn evenly across the classes of ``split``."""
    rng = random.Random(seed)
    per_class = {c: sorted((dataset / c).glob("*.jpg")) for c in split_classes(dataset, split)}
    for files in per_class.values():
        rng.shuffle(files)
    picked: list[tuple[Path, str]] = []
    while len(picked) < count and any(per_class.values()):
        for cls in sorted(per_class):
            if per_class[cls] and len(picked) < count:
                picked.append((per_class[cls].pop(), cls))
    return picked


def threshold_at_precision(pos: np.ndarray, neg: np.ndarray, precision: float) -> tuple[float, float]:
    """Lowest threshold whose pair precision is ≥ ``precision``; returns (threshold, recall)."""
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(labels[order])
    prec = tp / np.arange(1, len(order) + 1)
    ok = np.nonzero(prec >= precision)[0]
    if len(ok) == 0:
        return float(scores.max()), 0.0
    cut = ok[-1]
    return float(scores[order][cut]), float(tp[cut] / max(1, len(pos)))


def calibrate_bundle(bundle: ModelBundle, dataset: Path, images: int = 300, seed: int = 0,
                     device: str = "auto") -> dict:
    """Thresholds for ``bundle`` from ``images`` originals of the Caltech-101 train classes."""
    picked = sample_images(dataset, "train", images, seed)
    originals = [read_photo(p, 2 * bundle.input_size).image for p, _ in picked]
    report = calibrate_images(Embedder(bundle, device=device), originals, [c for _, c in picked], seed)
    report["dataset"] = "caltech101 train classes"
    return report


def calibrate_images(embedder: Embedder, originals: list, classes: list, seed: int = 0,
                     distractors: list = (), near_precision: float = NEAR_PRECISION) -> dict:
    """Thresholds for every head of ``embedder`` from photos and their class names.

    ``distractors`` (photos of other classes than all of ``originals``) only add negatives:
    every pair of an original or a copy with a distractor. With a handful of held-out
    classes, same-class pairs are far more common than in a real library, so a precision
    target met there would not hold in use; distractors bring the ratio of negatives per
    positive up to that of a library with many subjects.
    """
    classes = np.array(classes)
    extra = embedder.embed_images(list(distractors)) if len(distractors) else {}
    families = sorted(FAMILIES)
    copies = [make_copy(img, fam, seed * 100_003 + i * 31 + j)
              for i, img in enumerate(originals) for j, fam in enumerate(families)]
    report: dict = {"originals": len(originals), "distractors": len(distractors), "families": families,
                    "thresholds": {}}
    for head in embedder.heads:
        orig = embedder.embed_images(originals, (head,))[head]
        sims = orig @ orig.T
        upper = np.triu_indices(len(orig), k=1)
        if head == "copy":
            cop = embedder.embed_images(copies, (head,))[head].reshape(len(orig), len(families), -1)
            pos = np.einsum("nd,nfd->nf", orig, cop)
            cross = np.einsum("md,nfd->mnf", orig, cop)
            cross_neg = cross[~np.eye(len(orig), dtype=bool)].ravel()
            negatives = [sims[upper], cross_neg]
            if head in extra:
                negatives += [(orig @ extra[head].T).ravel(), (cop @ extra[head].T).ravel()]
            thr, recall = threshold_at_precision(pos.ravel(), np.concatenate(negatives), near_precision)
            report["thresholds"][head] = {"near": round(thr, 4)}
            report[f"{head}_near"] = {"precision_target": near_precision, "pair_recall": round(recall, 4),
                                      "recall_per_family": {f: round(float((pos[:, j] >= thr).mean()), 4)
                                                            for j, f in enumerate(families)}}
        else:
            same = (classes[:, None] == classes[None, :])[upper]
            negatives = [sims[upper][~same]] + ([(orig @ extra[head].T).ravel()] if head in extra else [])
            thr, recall = threshold_at_precision(sims[upper][same], np.concatenate(negatives), SIMILAR_PRECISION)
            report["thresholds"][head] = {"similar": round(thr, 4)}
            report[f"{head}_similar"] = {"precision_target": SIMILAR_PRECISION, "pair_recall": round(recall, 4)}
    return report
