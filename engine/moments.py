"""Same-moment stacks (bursts) and the best shot of each. Pure functions except the scoring.

A moment is a set of photos taken within a short capture-time window that also look alike:

1. ``time_runs``: photos sorted by capture time, cut wherever two consecutive ones are more
   than ``window_s`` apart. A photo without a capture time never joins a moment.
2. ``group_moments``: inside each run, photos whose vectors are at least ``threshold`` alike
   are joined with ``engine.grouping.group_neighbours``, whose complete-link guard stops a
   long burst panning across a scene from chaining its first frame to its last.
3. ``best_shot``: each photo is scored on a ~256 px grey thumbnail for sharpness (variance of
   the Laplacian) and exposure (share of clipped shadows and highlights); the best one is
   suggested with a reason. An unreadable file scores lowest; it never raises.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from engine.decode import read_photo
from engine.errors import DecodeError
from engine.grouping import group_neighbours

log = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 10.0
NEIGHBOURS = 64            # nearest neighbours looked at inside one time run
THUMB = 256                # longest side of the thumbnail that is scored
DARK, BRIGHT = 5, 250      # grey levels counted as clipped shadows / highlights
WELL_EXPOSED = 0.02        # at most this share of clipped pixels reads "well exposed"
CLIP_LIMIT = 0.4           # this share of clipped pixels (or more) zeroes the exposure factor


def parse_time(value: str | datetime | None) -> datetime | None:
    """An ISO capture time (as the catalog stores it) → datetime; junk or None → None."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def time_runs(ids: Sequence[int], times: Sequence[str | datetime | None],
              window_s: float = DEFAULT_WINDOW_S) -> list[list[int]]:
    """Runs (>= 2 ids each) of photos whose consecutive capture times are <= ``window_s`` apart.

    Ids without a (parseable) capture time are left out. Each run is in time order, ties by
    id; runs are in time order.
    """
    if window_s < 0:
        raise ValueError(f"window_s must be >= 0, got {window_s}")
    if len(ids) != len(times):
        raise ValueError(f"{len(ids)} ids but {len(times)} times")
    timed = sorted((when, int(i)) for i, when in zip(ids, map(parse_time, times)) if when is not None)
    runs: list[list[int]] = []
    current: list[int] = []
    previous: datetime | None = None
    for when, i in timed:
        if previous is not None and (when - previous).total_seconds() > window_s:
            runs.append(current)
            current = []
        current.append(i)
        previous = when
    runs.append(current)
    return [run for run in runs if len(run) >= 2]


def _neighbours(vectors: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and cosine similarities of each row's ``k`` most similar rows (self included)."""
    n = vectors.shape[0]
    rows = np.empty((n, k), np.int64)
    sims = np.empty((n, k), np.float32)
    for start in range(0, n, chunk):
        block = vectors[start:start + chunk] @ vectors.T
        top = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < n else \
            np.broadcast_to(np.arange(n), block.shape)
        rows[start:start + block.shape[0]] = top
        sims[start:start + block.shape[0]] = np.take_along_axis(block, top, axis=1)
    return rows, sims


def group_moments(ids: Sequence[int], times: Sequence[str | datetime | None], vectors: np.ndarray,
                  threshold: float, *, window_s: float = DEFAULT_WINDOW_S,
                  link_floor: float | None = None) -> list[list[int]]:
    """Stacks (>= 2 ids each) of photos in one time run that are all alike.

    ``vectors`` (n, d) are L2-normalised rows aligned with ``ids``; ``threshold`` and
    ``link_floor`` mean what they mean in ``group_neighbours``. Each stack is in time order;
    stacks are in time order of their first photo.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} ids but vectors of shape {vectors.shape}")
    row_of = {int(i): row for row, i in enumerate(ids)}
    stacks: list[list[int]] = []
    for run in time_runs(ids, times, window_s):
        labels = np.asarray(run, np.int64)
        run_vectors = vectors[[row_of[i] for i in run]]
        rows, sims = _neighbours(run_vectors, min(NEIGHBOURS, len(run)))
        order = {i: pos for pos, i in enumerate(run)}
        for group in group_neighbours(labels, run_vectors, labels[rows], sims, threshold,
                                      link_floor=link_floor):
            stacks.append(sorted(group, key=order.__getitem__))
    return stacks


@dataclass(frozen=True)
class ShotScore:
    """How good one photo of a moment looks. ``error`` says why it could not be scored."""

    sharpness: float = 0.0     # variance of the Laplacian of the grey thumbnail (0..255 scale)
    shadows: float = 0.0       # share of pixels clipped to black
    highlights: float = 0.0    # share of pixels clipped to white
    error: str | None = None

    @property
    def clipped(self) -> float:
        return self.shadows + self.highlights

    @property
    def exposure(self) -> float:
        """1 for no clipping, falling to 0 at ``CLIP_LIMIT`` clipped."""
        return max(0.0, 1.0 - self.clipped / CLIP_LIMIT) ** 2

    def rank(self) -> tuple[float, float]:
        """Higher is better; an unreadable photo ranks below every readable one."""
        if self.error is not None:
            return (-1.0, 0.0)
        return (self.sharpness * self.exposure, self.sharpness)


def measure(image: Image.Image) -> ShotScore:
    """Sharpness and clipping of an image, measured on a grey copy ``THUMB`` px on its long side."""
    grey = image.convert("L")
    scale = THUMB / max(grey.size)
    size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
    a = np.asarray(grey.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    sharpness = 0.0
    if a.shape[0] >= 3 and a.shape[1] >= 3:
        lap = a[1:-1, :-2] + a[1:-1, 2:] + a[:-2, 1:-1] + a[2:, 1:-1] - 4 * a[1:-1, 1:-1]
        sharpness = float(lap.var())
    return ShotScore(sharpness, float((a <= DARK).mean()), float((a >= BRIGHT).mean()))


def score_shot(path: str) -> ShotScore:
    """``measure`` of the photo at ``path``; an unreadable file gives a score with ``error``."""
    try:
        photo = read_photo(path, THUMB)
    except DecodeError as exc:
        log.info("cannot score %s: %s", path, exc.reason)
        return ShotScore(error=exc.reason)
    return measure(photo.image)


def _exposure_text(s: ShotScore) -> str:
    if s.clipped <= WELL_EXPOSED:
        return "well exposed"
    parts = [f"{share:.0%} clipped {what}" for share, what in
             ((s.highlights, "highlights"), (s.shadows, "shadows")) if share > WELL_EXPOSED / 2]
    return " and ".join(parts) or f"{s.clipped:.0%} clipped"


def _reason(best: ShotScore, scores: list[ShotScore]) -> str:
    n = len(scores)
    readable = [s for s in scores if s.error is None]
    sharpest = max(readable, key=lambda s: s.sharpness)
    if best.sharpness >= sharpest.sharpness:
        reason = f"sharpest of {n}, {_exposure_text(best)}"
    else:
        share = best.sharpness / sharpest.sharpness
        reason = (f"{_exposure_text(best)}, {share:.0%} as sharp as the sharpest of {n}, "
                  f"which has {_exposure_text(sharpest)}")
    unreadable = n - len(readable)
    return reason + (f"; {unreadable} could not be read" if unreadable else "")


def best_shot(paths: Sequence[str],
              score: Callable[[str], ShotScore] = score_shot) -> tuple[str, str]:
    """``(path of the best photo, why)``: sharpest with the least clipping; ValueError if empty.

    ``score`` reads and scores one path (default ``score_shot``; a caller may pass a cached
    one). Ties go to the first path given.
    """
    if not paths:
        raise ValueError("best_shot needs at least one photo")
    scores = [score(p) for p in paths]
    if len(paths) == 1:
        return paths[0], "the only photo"
    if all(s.error is not None for s in scores):
        return paths[0], f"none of the {len(paths)} could be read ({scores[0].error})"
    best = max(range(len(paths)), key=lambda k: scores[k].rank())  # first of equals wins
    return paths[best], _reason(scores[best], scores)
