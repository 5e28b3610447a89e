"""Evaluation on the real near-duplicate sets, for any ``embed(images) -> (n, d) array``.

The synthetic families of ``training.families`` are what training optimises for; these sets
check that it carries over to copies made by other people's tools:

- **faces crop** (``caltech101/neardup_faces_pairs.csv``): ``Faces_easy/image_i`` is a tight
  crop + rescale of ``Faces/image_i``. The crops query a database of all originals plus
  optional distractors; scored by ``training.evaluate.near_duplicate_metrics``.
- **neardup_real** (``groundtruth.csv``): small groups of real copies (flips, rotations,
  resizes, re-encodes, other views) plus singletons. Leave-one-out: every image of a group
  with two or more readable members queries all other readable images.

Scores are cosines: the embedding rows are re-normalised, so any scale of ``embed`` works.
Ties count pessimistically, as in ``training.evaluate``: a negative that ties with a
positive ranks before it.
"""
from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from engine.decode import read_photo
from engine.errors import DecodeError, FileError
from engine.parallel import ordered_map
from training.evaluate import BATCH, ignored_pairs, near_duplicate_metrics

Embed = Callable[[list[Image.Image]], np.ndarray]
FACES_CSV, REAL_CSV = "neardup_faces_pairs.csv", "groundtruth.csv"
FACES_FAMILY = "faces_crop"


def embed_head(embedder, head: str = "copy") -> Embed:
    """An ``Embed`` from any object with ``embed_images(images, heads)`` (CNN or hash baseline)."""
    return lambda images: embedder.embed_images(images, (head,))[head]


def _rows(csv_path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    """The csv's rows; ``FileError`` naming it when it is missing or lacks a column."""
    if not csv_path.is_file():
        raise FileError(csv_path, "ground-truth csv not found")
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or ())]
        if missing:
            raise FileError(csv_path, f"missing column(s) {', '.join(missing)}")
        return list(reader)


def embed_paths(embed: Embed, paths: Sequence[Path], image_size: int) -> np.ndarray:
    """Decode in batches of ``BATCH`` (threads, input order), embed, L2-normalise the rows."""
    parts = []
    for start in range(0, len(paths), BATCH):
        images = []
        for path, photo, error in ordered_map(lambda p: read_photo(p, image_size),
                                              list(paths[start:start + BATCH])):
            if error is not None:
                raise error if isinstance(error, DecodeError) else DecodeError(path, str(error))
            images.append(photo.image)
        out = np.asarray(embed(images), np.float32)
        if out.ndim != 2 or len(out) != len(images):
            raise ValueError(f"embed returned shape {out.shape} for {len(images)} images")
        parts.append(out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12))
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


# ---- faces crop -----------------------------------------------------------------------------

def faces_pairs(dataset: Path) -> list[tuple[Path, Path]]:
    """(original, crop) paths from ``neardup_faces_pairs.csv``, sorted by group id."""
    csv_path = Path(dataset) / FACES_CSV
    groups: dict[str, dict[str, Path]] = defaultdict(dict)
    for row in _rows(csv_path, ("file", "group_id", "relation")):
        groups[row["group_id"]][row["relation"]] = Path(dataset) / row["file"]
    broken = [g for g, members in groups.items() if set(members) != {"original", "crop_rescale"}]
    if broken:
        raise FileError(csv_path, f"group {broken[0]!r} lacks an original or a crop_rescale row")
    if not groups:
        raise FileError(csv_path, "no pairs")
    return [(groups[g]["original"], groups[g]["crop_rescale"]) for g in sorted(groups)]


def evaluate_faces_pairs(embed: Embed, dataset: Path, distractors: Sequence[Path] = (),
                         image_size: int = 320) -> dict:
    """Crops query all originals + distractors (those that are pair images are left out).
    Originals that the dataset lists as copies of a crop's original (``duplicates_found.csv``,
    e.g. two frames of one burst) are left out of that crop's ranking."""
    pairs = faces_pairs(dataset)
    originals, crops = [o for o, _ in pairs], [c for _, c in pairs]
    taken = {p.resolve() for p in originals + crops}
    extra = [Path(p) for p in distractors if Path(p).resolve() not in taken]
    db = embed_paths(embed, originals + extra, image_size)
    query = embed_paths(embed, crops, image_size)
    result = near_duplicate_metrics(query, np.arange(len(pairs)), [FACES_FAMILY] * len(pairs),
                                    db, np.arange(len(db)),
                                    ignore=ignored_pairs(dataset, originals, originals + extra))
    return {**result, "distractors": len(extra)}


# ---- neardup_real ---------------------------------------------------------------------------

def _average_precision(pos: np.ndarray, neg: np.ndarray) -> float:
    """AP of ranking positives among negatives; ties with a negative count against."""
    pos, neg = np.sort(pos)[::-1], np.sort(neg)
    k = np.arange(1, len(pos) + 1)
    neg_ge = len(neg) - np.searchsorted(neg, pos, side="left")
    return float((k / (k + neg_ge)).mean())


def evaluate_neardup_real(embed: Embed, root: Path, image_size: int = 320) -> dict:
    """Leave-one-out recall@1 and mAP, micro-AP over all unordered pairs, hardest positives.

    Rows whose ``readable`` is not ``ok`` are skipped up front and listed with the reason;
    a row marked ``ok`` that fails to decode raises ``DecodeError``.
    """
    root = Path(root)
    rows = _rows(root / REAL_CSV, ("file", "group_id", "readable"))
    skipped = [{"file": r["file"], "reason": f"readable={r['readable']}"
                + (f": {r['note']}" if r.get("note") else "")}
               for r in rows if r["readable"].strip() != "ok"]
    rows = [r for r in rows if r["readable"].strip() == "ok"]
    files = [r["file"] for r in rows]
    groups = np.array([r["group_id"] for r in rows], dtype=str)
    emb = embed_paths(embed, [root / f for f in files], image_size)
    sims = emb @ emb.T
    size = Counter(groups.tolist())
    return {**_leave_one_out(sims, groups), **_all_pairs(sims, groups, files),
            "images": len(files), "groups": sum(1 for n in size.values() if n >= 2),
            "singletons": sum(1 for n in size.values() if n == 1), "skipped": skipped}


def _leave_one_out(sims: np.ndarray, groups: np.ndarray) -> dict:
    """Each image with another of its group queries all others: recall@1 and mAP."""
    hits, aps = [], []
    for i in range(len(groups)):
        same = groups == groups[i]
        same[i] = False
        if not same.any():
            continue
        pos, neg = sims[i, same], sims[i, groups != groups[i]]
        hits.append(len(neg) == 0 or pos.max() > neg.max())
        aps.append(_average_precision(pos, neg))
    return {"recall@1": float(np.mean(hits)) if hits else float("nan"),
            "mAP": float(np.mean(aps)) if aps else float("nan"), "queries": len(hits)}


def _all_pairs(sims: np.ndarray, groups: np.ndarray, files: list[str]) -> dict:
    """Micro-AP over all unordered pairs and the positive pairs, lowest cosine first."""
    a, b = np.triu_indices(len(groups), 1)
    positive = groups[a] == groups[b]
    scores = sims[a, b]
    pairs = sorted(({"a": files[i], "b": files[j], "cosine": float(sims[i, j])}
                    for i, j in zip(a[positive], b[positive])), key=lambda p: p["cosine"])
    micro = _average_precision(scores[positive], scores[~positive]) if positive.any() else float("nan")
    return {"micro-AP": micro, "pairs": int(positive.sum()), "negative_pairs": int((~positive).sum()),
            "positive_pairs": pairs}


# ---- report ---------------------------------------------------------------------------------

def _table(title: str, result: dict) -> list[str]:
    return [title, "| recall@1 | mAP | micro-AP |", "|---|---|---|",
            f"| {result['recall@1']:.4f} | {result['mAP']:.4f} | {result['micro-AP']:.4f} |"]


def format_realsets(faces: dict | None, real: dict | None, hardest: int = 5) -> str:
    """Markdown lines for whichever results are given (None: left out)."""
    blocks: list[list[str]] = []
    if faces is not None:
        blocks.append(_table(f"Faces crop pairs ({faces['queries']} crops, "
                             f"{faces['database']} database images)", faces["overall"]))
    if real is not None:
        blocks.append(_table(f"neardup_real ({real['images']} images, {real['groups']} groups, "
                             f"{real['singletons']} singletons, {real['queries']} queries, "
                             f"{real['pairs']} positive pairs)", real))
        if real["positive_pairs"] and hardest > 0:
            blocks.append(["Hardest positive pairs (lowest cosine):"]
                          + [f"- {p['cosine']:.4f} `{p['a']}` ~ `{p['b']}`"
                             for p in real["positive_pairs"][:hardest]])
        if real["skipped"]:
            blocks.append([f"Skipped {len(real['skipped'])} unreadable: "
                           + ", ".join(f"`{s['file']}`" for s in real["skipped"])])
    return "\n\n".join("\n".join(block) for block in blocks)
