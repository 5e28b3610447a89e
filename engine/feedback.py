"""Review decisions as data: every decision a person makes on a group becomes a labelled review
the model, the thresholds and the keeper suggestion can learn from.

Kinds:
  * ``same-photo``: the person kept some copies and removed the others (all members are one
    photo: positive pairs; which copy was kept teaches the keeper preference);
  * ``not-duplicate``: the group was dismissed (every pair is a negative, at every level);
  * ``similar-not-near``: dismissed from the near-duplicate level but left as similar (every
    pair is a negative for the copy head only; the similar level still shows them).

Each review stores the model and threshold that proposed the group, and per member its content
hash, path, whether it was kept, its similarity to the suggested keeper and its keeper
features (``engine.keeper_features``). A 320-px JPEG snapshot of each member's pixels is kept
in the library folder (``feedback/<hash>.jpg``): removed copies go to the trash, and training
from feedback must still see them. Embeddings of reviewed contents stay in the catalog.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from engine.atomic import atomic_write
from engine.decode import read_photo
from engine.errors import DecodeError, LookalikeError

log = logging.getLogger(__name__)
KINDS = ("same-photo", "not-duplicate", "similar-not-near")
SNAPSHOT_SIZE = 320


@dataclass(frozen=True)
class ReviewMember:
    content_hash: str
    path: str
    kept: bool
    similarity: float | None
    features: dict


@dataclass(frozen=True)
class Review:
    id: int
    decided_at: str
    kind: str
    level: str | None
    model_id: str | None
    threshold: float | None
    members: tuple[ReviewMember, ...]

    def pairs(self) -> list[tuple[str, str, int]]:
        """(hash_a, hash_b, label) for every pair of distinct contents: 1 same photo, 0 not."""
        label = 1 if self.kind == "same-photo" else 0
        hashes = sorted({m.content_hash for m in self.members})
        return [(a, b, label) for a, b in combinations(hashes, 2)]


@dataclass(frozen=True)
class LabelledPair:
    hash_a: str
    hash_b: str
    label: int          # 1: the same photo; 0: not a duplicate
    review_id: int
    kind: str


class FeedbackStore:
    """Reviews in the catalog plus their pixel snapshots under ``folder``."""

    def __init__(self, catalog, folder: str | Path):
        self.catalog = catalog
        self.folder = Path(folder)

    def snapshot_path(self, content_hash: str) -> Path:
        return self.folder / f"{content_hash}.jpg"

    def record(self, kind: str, members: list[tuple], *, level: str | None = None,
               model_id: str | None = None, threshold: float | None = None) -> int:
        """Store one review; ``members``: (FileRecord, kept, similarity, features[, image]) —
        the optional image, already decoded, becomes the snapshot without reading the file."""
        if kind not in KINDS:
            raise LookalikeError(f"unknown review kind '{kind}' (choose from {', '.join(KINDS)})")
        if not members:
            raise LookalikeError("a review needs at least one photo")
        for record, *_, image in (m if len(m) == 5 else (*m, None) for m in members):
            self._snapshot(record.path, record.content_hash, image)
        rows = [(r.content_hash, r.path, bool(kept), sim, features) for r, kept, sim, features, *_ in members]
        return self.catalog.add_review(kind, level, model_id, threshold, rows)

    def _snapshot(self, path: str, content_hash: str, image=None) -> None:
        target = self.snapshot_path(content_hash)
        if target.exists():
            return
        try:
            image = (image or read_photo(path, SNAPSHOT_SIZE).image).copy()
        except DecodeError as exc:  # the decision still counts; it just cannot be trained on
            log.warning("no snapshot for the review: %s", exc)
            return
        image.thumbnail((SNAPSHOT_SIZE, SNAPSHOT_SIZE))
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda tmp: image.save(tmp, "JPEG", quality=92))

    def reviews(self, kinds: tuple[str, ...] = KINDS) -> list[Review]:
        out = []
        for (rid, when, kind, level, model_id, threshold), members in self.catalog.reviews():
            if kind in kinds:
                out.append(Review(rid, when, kind, level, model_id, threshold,
                                  tuple(ReviewMember(*m) for m in members)))
        return out

    def pairs(self, head: str = "copy") -> list[LabelledPair]:
        """Labelled pairs for ``head``: ``similar-not-near`` counts as a negative for the copy
        head only. A later review of the same pair overrides an earlier one."""
        kinds = KINDS if head == "copy" else ("same-photo", "not-duplicate")
        latest: dict[tuple[str, str], LabelledPair] = {}
        for review in self.reviews(kinds):
            for a, b, label in review.pairs():
                latest[(a, b)] = LabelledPair(a, b, label, review.id, review.kind)
        return list(latest.values())

    def counts(self) -> dict[str, int]:
        return {k: 0 for k in KINDS} | self.catalog.review_counts()
