"""What the learned keeper preference looks at: per copy, numbers relative to its group.

``group_matrix`` turns the stored keeper features (``engine.keeper_features``) of one group's
copies into one row per copy. Sizes are log2 ratios to the group's largest, so a 2× larger
copy means the same in a group of phone snaps and in a group of scans; a missing JPEG quality
or sharpness takes the group's mean (a pairwise difference then says nothing about it).

The folder signal is learned counts, not one coefficient per folder: ``FolderRates`` knows,
for every folder prefix seen in the reviews, how often files under it were kept, smoothed
towards its parent's rate (the root towards the overall keep rate).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np

# (name, phrase when the kept copy has more of it, phrase when it has less)
SIGNALS = (
    ("pixels", "the one with more pixels", "the one with fewer pixels"),
    ("bytes", "the larger file", "the smaller file"),
    ("quality", "the higher JPEG quality", "the lower JPEG quality"),
    ("has_quality", "the JPEG", "not the JPEG"),   # a quality is known for JPEGs only
    ("sharpness", "the sharper one", "the softer one"),
    ("jpeg", "the JPEG", "not the JPEG"),
    ("png", "the PNG", "not the PNG"),
    ("heif", "the HEIF", "not the HEIF"),
    ("other_format", "the less common format", "not the less common format"),
    ("capture_time", "the one with a capture time", "the one without a capture time"),
    ("camera", "the one with camera details", "the one without camera details"),
    ("copy_name", "the one named like a copy", "the one not named like a copy"),
    ("folder", "the one in a folder you usually keep", "the one in a folder you usually clear out"),
)
NAMES = tuple(name for name, _, _ in SIGNALS)
FOLDER = NAMES.index("folder")
_CAPTURE, _CAMERA, _COPY = NAMES.index("capture_time"), NAMES.index("camera"), NAMES.index("copy_name")
FOLDER_SMOOTHING = 2.0   # pseudo-counts pulling a folder's keep rate towards its parent's
LOG_FLOOR = -10.0        # log2 ratio for an unknown (0) size
_FORMATS = {"JPEG": "jpeg", "JPG": "jpeg", "MPO": "jpeg", "PNG": "png", "HEIF": "heif", "HEIC": "heif"}
_COPY_NAME = re.compile(r"copy|kopie|copie|\(\d+\)|[-_ ]\d$|edit", re.IGNORECASE)


def looks_like_copy(name: str) -> bool:
    """``"IMG_1 (1).jpg"``, ``"beach copy.png"``, ``"a-1.jpg"``, ``"a_edited.jpg"``: True."""
    return bool(_COPY_NAME.search(PurePath(name).stem))


def short_folder(prefix: str) -> str:
    """The last two parts of a folder, as a person would name it: ``Photos/Originals``."""
    parts = PurePath(prefix).parts
    return "/".join(p for p in parts[-2:] if p not in ("/", "\\")) or prefix


@dataclass
class FolderRates:
    prior: float = 0.5
    counts: dict[str, list[int]] = field(default_factory=dict)   # prefix → [kept, seen]

    @classmethod
    def from_members(cls, members) -> "FolderRates":
        """Counts over ``members`` (``ReviewMember``s with a ``folder`` feature)."""
        rates = cls(counts=member_counts(members))
        kept = sum(bool(m.kept) for m in members)
        rates.prior = kept / len(members) if members else 0.5
        return rates

    def chain(self, folder: str, minus: dict | None = None) -> list[tuple[str, float, float]]:
        """(prefix, its keep rate, its parent's) from the root down to the deepest prefix of
        ``folder`` seen; ``minus``: counts to leave out (one review's own)."""
        out, rate = [], self.prior
        for prefix in _prefixes(folder):
            kept, seen = self.counts.get(prefix, (0, 0))
            if minus and prefix in minus:
                kept, seen = kept - minus[prefix][0], seen - minus[prefix][1]
            if seen <= 0:
                break
            parent, rate = rate, (kept + FOLDER_SMOOTHING * rate) / (seen + FOLDER_SMOOTHING)
            out.append((prefix, rate, parent))
        return out

    def rate(self, folder: str, minus: dict | None = None) -> float:
        chain = self.chain(folder, minus)
        return chain[-1][1] if chain else self.prior

    def notable(self, limit: int = 5, min_seen: int = 2) -> list[tuple[str, float, int, int]]:
        """(prefix, keep rate, kept, seen) of the folders whose rate differs most from their
        parent's, most different first."""
        rows = []
        for prefix, (kept, seen) in self.counts.items():
            if seen >= min_seen:
                _, rate, parent = self.chain(prefix)[-1]
                rows.append((abs(rate - parent), prefix, rate, kept, seen))
        rows.sort(key=lambda r: (-r[0], r[1]))
        return [(prefix, rate, kept, seen) for _, prefix, rate, kept, seen in rows[:limit]]

    def telling(self, folder: str) -> str | None:
        """The prefix of ``folder`` where the keep rate rises most above its parent's."""
        rises = [(rate - parent, prefix) for prefix, rate, parent in self.chain(folder)]
        return max(rises)[1] if rises and max(rises)[0] > 0 else None


def member_counts(members) -> dict[str, list[int]]:
    counts: dict[str, list[int]] = {}
    for m in members:
        for prefix in _prefixes(m.features.get("folder") or ""):
            entry = counts.setdefault(prefix, [0, 0])
            entry[0] += bool(m.kept)
            entry[1] += 1
    return counts


def _prefixes(folder: str) -> list[str]:
    if not folder:
        return []
    path = PurePath(folder)
    return [str(p) for p in reversed((path, *path.parents))]


def group_matrix(features: list[dict], rates: FolderRates, minus: dict | None = None) -> np.ndarray:
    """One row of ``NAMES`` signals per copy of one group."""
    rows = np.zeros((len(features), len(NAMES)))
    rows[:, 0] = _log_ratio([f.get("pixels") or 0 for f in features])
    rows[:, 1] = _log_ratio([f.get("bytes") or 0 for f in features])
    quality = [f.get("jpeg_quality") for f in features]
    rows[:, 2] = _fill([None if q is None else q / 100 for q in quality])
    rows[:, 3] = [q is not None for q in quality]
    sharp = [f.get("sharpness") for f in features]
    rows[:, 4] = _fill([None if s is None else math.log2(s + 1) for s in sharp])
    rows[:, 4] -= rows[:, 4].max()   # log sharpness ratio to the sharpest copy
    for i, f in enumerate(features):
        kind = _FORMATS.get(str(f.get("format") or "").upper(), "other_format")
        rows[i, NAMES.index(kind)] = 1
        rows[i, _CAPTURE] = bool(f.get("has_capture_time"))
        rows[i, _CAMERA] = bool(f.get("has_camera"))
        rows[i, _COPY] = looks_like_copy(f.get("name") or "")
        rows[i, FOLDER] = rates.rate(f.get("folder") or "", minus)
    return rows


def _log_ratio(values: list[float]) -> np.ndarray:
    top = max(values, default=0)
    if top <= 0:
        return np.zeros(len(values))
    return np.array([max(LOG_FLOOR, math.log2(v / top)) if v > 0 else LOG_FLOOR for v in values])


def _fill(values: list[float | None]) -> np.ndarray:
    known = [v for v in values if v is not None]
    mean = sum(known) / len(known) if known else 0.0
    return np.array([mean if v is None else v for v in values], dtype=np.float64)
