"""Which copy of a group of duplicates to keep, and a plain-English reason why.

Criteria, in order; each decides only if it leaves one best candidate, otherwise it narrows
the field to the best ones and the next criterion looks at those:

1. resolution: pixel count, unknown counts as 0; a copy is larger only with > 2% more pixels;
2. format quality (``FORMAT_RANK``): raw camera files, then lossless (PNG, TIFF, BMP, ...),
   then the lossy full-colour formats (JPEG, HEIF, AVIF, WebP, JPEG XL: equal, because a
   format alone does not say which was the original), then GIF (256 colours), then unknown;
3. camera metadata: has a capture time or a camera model;
4. file size: a file is larger only if > 5% larger (at the same pixels: less compressed);
5. oldest modification time (most likely the original);
6. shortest path, then lowest id.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Sequence

log = logging.getLogger(__name__)

PIXEL_TOLERANCE = 1.02
SIZE_TOLERANCE = 1.05

_RAW, _LOSSLESS, _LOSSY, _PALETTE, _UNKNOWN = 4, 3, 2, 1, 0
FORMAT_RANK: dict[str, int] = {
    **dict.fromkeys(("DNG", "CR2", "CR3", "NEF", "ARW", "ORF", "RW2", "RAF", "PEF"), _RAW),
    **dict.fromkeys(("PNG", "TIFF", "BMP", "PPM", "QOI"), _LOSSLESS),
    **dict.fromkeys(("JPEG", "MPO", "HEIF", "AVIF", "WEBP", "JXL"), _LOSSY),
    "GIF": _PALETTE,
}
_ALIASES = {"JPG": "JPEG", "HEIC": "HEIF", "TIF": "TIFF"}
_RANK_WORD = {_RAW: "raw", _LOSSLESS: "lossless", _LOSSY: "full-colour", _PALETTE: "256-colour"}


@dataclass(frozen=True)
class Candidate:
    id: int
    path: str
    width: int | None
    height: int | None
    size: int  # bytes
    format: str | None  # "JPEG", "PNG", "HEIF", "WEBP", "TIFF", "BMP", "GIF", "AVIF", ...
    mtime_ns: int
    capture_time: str | None
    camera: str | None


def format_bytes(n: int) -> str:
    """``2_300_000 -> "2.3 MB"`` (decimal units, as file managers show them)."""
    if n < 1000:
        return f"{n} B"
    value, unit = n / 1000, "KB"
    for bigger in ("MB", "GB", "TB"):
        if round(value, 1) < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{value:.1f} {unit}"


def _pixels(c: Candidate) -> int:
    return (c.width or 0) * (c.height or 0)


def _dims(c: Candidate) -> str:
    return f"{c.width}×{c.height}" if _pixels(c) else "unknown size"


def _fmt(c: Candidate) -> str:
    name = (c.format or "").upper()
    return _ALIASES.get(name, name) or "unknown format"


def _rank(c: Candidate) -> int:
    return FORMAT_RANK.get(_fmt(c), _UNKNOWN)


def _has_metadata(c: Candidate) -> bool:
    return bool(c.capture_time or c.camera)


def _top(pool: list[Candidate], score: Callable[[Candidate], float], tolerance: float = 1.0):
    """The candidates no other beats by more than ``tolerance`` (a factor; scores >= 0)."""
    best = max(score(c) for c in pool)
    return [c for c in pool if score(c) * tolerance >= best]


# Each criterion: keep(pool) -> best ones; win(winner, others) -> why it won;
# tie(kept, narrowed) -> (phrase for the tie or None, whether the tied values are identical).
@dataclass(frozen=True)
class _Criterion:
    keep: Callable[[list[Candidate]], list[Candidate]]
    win: Callable[[Candidate, list[Candidate]], str]
    tie: Callable[[list[Candidate], bool], tuple[str | None, bool]] | None = None


def _tie_pixels(kept: list[Candidate], narrowed: bool) -> tuple[str | None, bool]:
    same = len({(c.width, c.height) for c in kept}) == 1
    if not any(_pixels(c) for c in kept):
        return "unknown resolution", False
    if narrowed:
        return f"tied for largest resolution ({_dims(kept[0])})" if same \
            else "tied for largest resolution", False
    if same:
        return "same resolution", True
    if len({_pixels(c) for c in kept}) == 1:
        return "same pixel count", False
    return "similar resolution", False


def _tie_format(kept: list[Candidate], narrowed: bool) -> tuple[str | None, bool]:
    names = sorted({_fmt(c) for c in kept})
    if narrowed:
        return f"tied for best format ({', '.join(names)})", False
    if len(names) == 1:
        return "same format", True
    return f"equally good formats ({', '.join(names)})", False


def _tie_metadata(kept: list[Candidate], narrowed: bool) -> tuple[str | None, bool]:
    if narrowed:
        return "among the copies with camera metadata", False
    if not _has_metadata(kept[0]):
        return None, True
    if len({(c.capture_time, c.camera) for c in kept}) == 1:
        return "same camera metadata", True
    return "all with camera metadata", False


def _tie_by(key: Callable[[Candidate], object], same: str, similar: str, tied: str):
    """Tie phrase for a plain value: ``tied`` if others fell away, else same or similar."""
    def tie(kept: list[Candidate], narrowed: bool) -> tuple[str | None, bool]:
        if narrowed:
            return tied, False
        return (same, True) if len({key(c) for c in kept}) == 1 else (similar, False)
    return tie


def _win_pixels(w: Candidate, others: list[Candidate]) -> str:
    return f"largest resolution ({_dims(w)} vs {_dims(max(others, key=_pixels))})"


def _win_format(w: Candidate, others: list[Candidate]) -> str:
    losers = sorted({_fmt(c) for c in others}, key=lambda f: (-FORMAT_RANK.get(f, 0), f))
    word = _RANK_WORD.get(_rank(w))
    return f"{word + ' ' if word else ''}{_fmt(w)} over {' and '.join(losers)}"


def _win_metadata(w: Candidate, others: list[Candidate]) -> str:
    if w.camera:
        return f"keeps camera metadata ({w.camera})"
    return f"keeps capture-time metadata ({w.capture_time})"


def _win_size(w: Candidate, others: list[Candidate]) -> str:
    runner = max(others, key=lambda c: c.size)
    comparable = all(_fmt(c) == _fmt(w) and _pixels(c) for c in [w, *others])
    detail = ", least compressed" if comparable else ""
    return f"largest file ({format_bytes(w.size)} vs {format_bytes(runner.size)}{detail})"


def _win_mtime(w: Candidate, others: list[Candidate]) -> str:
    when = datetime.fromtimestamp(w.mtime_ns / 1e9, tz=timezone.utc)
    return f"oldest file (modified {when:%Y-%m-%d %H:%M} UTC, likely the original)"


def _win_path(w: Candidate, others: list[Candidate]) -> str:
    if all(len(w.path) < len(c.path) for c in others):
        return f"kept the one with the shortest path ({w.path})"
    if all(len(w.path) == len(c.path) for c in others):
        return f"kept the one with the lowest id ({w.id})"
    return f"kept the one with the shortest path, then the lowest id ({w.path}, id {w.id})"


_CRITERIA = (
    _Criterion(lambda p: _top(p, _pixels, PIXEL_TOLERANCE), _win_pixels, _tie_pixels),
    _Criterion(lambda p: _top(p, _rank), _win_format, _tie_format),
    _Criterion(lambda p: _top(p, _has_metadata), _win_metadata, _tie_metadata),
    _Criterion(lambda p: _top(p, lambda c: c.size, SIZE_TOLERANCE), _win_size,
               _tie_by(lambda c: c.size, "same file size", "similar file size",
                       "tied for largest file")),
    _Criterion(lambda p: [c for c in p if c.mtime_ns == min(d.mtime_ns for d in p)], _win_mtime,
               _tie_by(lambda c: c.mtime_ns, "same modification time", "", "tied for oldest file")),
    _Criterion(lambda p: [min(p, key=lambda c: (len(c.path), c.id))], _win_path),  # always one
)
_FIRST_TIEBREAK = len(_CRITERIA) - 2  # from here on, only the time or the path can differ


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _sentence(ties: list[str], identical: bool, win: str) -> str:
    """Tie phrases in criterion order (runs of "same X" merged), then the deciding phrase."""
    if identical:
        return f"identical otherwise; {win}"
    parts: list[list[str]] = []
    for tie in ties:
        if tie.startswith("same ") and parts and parts[-1][0].startswith("same "):
            parts[-1].append(tie[len("same "):])
        else:
            parts.append([tie])
    return "; ".join(filter(None, [", ".join(_and(p) for p in parts), win]))


def choose_keeper(candidates: Sequence[Candidate]) -> tuple[int, str]:
    """``(id of the copy to keep, why)``; ValueError when empty.

    The reason is one lower-case clause list, e.g. ``"same resolution; lossless PNG over JPEG"``:
    what the finalists share, then the criterion that decided, with its values.
    """
    pool = sorted(candidates, key=lambda c: (len(c.path), c.path, c.id))
    if not pool:
        raise ValueError("choose_keeper needs at least one candidate")
    if len(pool) == 1:
        return pool[0].id, "the only copy"
    ties: list[str] = []
    identical = True
    for step, criterion in enumerate(_CRITERIA):
        kept = criterion.keep(pool)
        if len(kept) == 1:
            others = [c for c in pool if c is not kept[0]]
            # "identical otherwise" only when nothing but the time or the path is left to differ
            identical = identical and step >= _FIRST_TIEBREAK
            reason = _sentence(ties, identical, criterion.win(kept[0], others))
            log.debug("keeping %d of %d: %s", kept[0].id, len(candidates), reason)
            return kept[0].id, reason
        assert criterion.tie is not None, "only the last criterion has no tie phrase"
        phrase, exact = criterion.tie(kept, len(kept) < len(pool))
        identical = identical and exact
        ties += [phrase] if phrase else []
        pool = kept
    raise AssertionError("the last criterion always leaves one candidate")
