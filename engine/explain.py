"""Explained matches: estimate the edit that turns photo A into photo B by aligning them.

SIFT features (ORB where OpenCV lacks SIFT) on grayscale copies at a working size, ratio-test
matches, a RANSAC homography from B to A (also fitted on B mirrored left-right, since the
descriptors are not mirror-invariant; the fit with more inliers wins). The homography gives
the crop box, rotation, mirroring, scale and perspective; B warped into A's frame, with its
colours matched to A by a least-squares affine colour map, gives the colour change, the share
of the picture painted over and a heat map of what differs. Re-encoding is not read from the
pixels: ``describe`` takes it from the files' sizes and formats.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

MIN_SIDE = 32              # px at the working size; smaller photos are not aligned
MIN_INLIERS = 15
RATIO = 0.75               # Lowe's ratio test
REPROJ_PX = 3.0            # RANSAC inlier distance at the working size
SNAP_DEG = 3.0             # rotations this close to a multiple of 90° are snapped to it
OVERLAY_LEVEL = 40.0       # aligned difference (0–255) above which a pixel counts as painted over
COLOUR_SHIFT = 8.0         # mean channel shift (0–255) that counts as a colour change
STD_CHANGE = 0.12          # relative contrast change that counts as a colour change
PAINTED = 0.03             # share of the overlap painted over that is worth mentioning
SHOWN = 0.95               # a crop box or overlap above this share is "the whole picture"


@dataclass
class EditEstimate:
    """What turns A into B. Box and areas are fractions of A; rotation is anticlockwise, in
    degrees within (−180, 180], applied after the mirroring; scale is B's pixel size relative
    to the region of A it shows. ``difference`` is a uint8 heat map in A's frame at the
    working size (0 outside the overlap); ``homography`` maps B to A at the working sizes."""

    aligned: bool
    reason: str = ""
    inliers: int = 0
    matches: int = 0
    crop_box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    crop_area: float = 1.0
    b_inside: float = 1.0          # share of B that lies inside A (below 1: B shows more)
    rotation: float = 0.0
    mirrored: bool = False
    scale: float = 1.0
    perspective: bool = False
    colour_changed: bool = False
    grayscale: bool = False
    mean_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std_ratio: tuple[float, float, float] = (1.0, 1.0, 1.0)
    overlay: float = 0.0
    difference: np.ndarray | None = None
    homography: np.ndarray | None = None


def explain_pair(a: Image.Image, b: Image.Image, *, max_side: int = 1024) -> EditEstimate:
    """Align B onto A and describe the edit; ``aligned=False`` with a reason when it can't."""
    wa, wb = _working(a, max_side), _working(b, max_side)
    if min(wa.shape[:2]) < MIN_SIDE or min(wb.shape[:2]) < MIN_SIDE:
        return EditEstimate(False, "too small to align")
    try:
        H, inliers, matches, reason = _align(wa, wb)
        est = reason if H is None else \
            _geometry(H, wa.shape, wb.shape, a.width / wa.shape[1], b.width / wb.shape[1])
    except (cv2.error, np.linalg.LinAlgError) as exc:
        return EditEstimate(False, f"alignment failed ({getattr(exc, 'err', exc)})")
    if isinstance(est, str):
        return EditEstimate(False, est, inliers, matches)
    est.inliers, est.matches, est.homography = inliers, matches, H
    _compare(est, wa, wb, H)
    return est


def _working(img: Image.Image, max_side: int) -> np.ndarray:
    rgb = np.asarray(img.convert("RGB"))
    factor = min(1.0, max_side / max(rgb.shape[:2]))
    if factor < 1.0:
        size = (max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb)


def _features(rgb: np.ndarray):
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if hasattr(cv2, "SIFT_create"):
        return cv2.SIFT_create(nfeatures=3000).detectAndCompute(gray, None) + (cv2.NORM_L2,)
    return cv2.ORB_create(nfeatures=3000).detectAndCompute(gray, None) + (cv2.NORM_HAMMING,)


def _align(wa: np.ndarray, wb: np.ndarray):
    """(H from B to A or None, inliers, matches, reason): plain and mirrored fits, best kept."""
    fa, width = _features(wa), wb.shape[1]
    best, fewest = (None, 0, 0), len(fa[0])
    for mirrored in (False, True):
        kb, db, norm = _features(wb[:, ::-1] if mirrored else wb)
        fewest = min(fewest, len(kb))
        src, dst = _match(kb, db, fa[0], fa[1], norm)
        if mirrored:
            src[:, 0] = width - 1 - src[:, 0]    # back to B's own coordinates
        H, inliers = _fit(src, dst)
        if inliers > best[1] or (best[0] is None and len(src) > best[2]):
            best = (H, inliers, len(src))
    H, inliers, matches = best
    if H is None or inliers < MIN_INLIERS:
        what = "distinctive features" if fewest < MIN_INLIERS else "matching features"
        return None, inliers, matches, f"too few {what} ({inliers} consistent matches)"
    return H, inliers, matches, ""


def _match(kb, db, ka, da, norm) -> tuple[np.ndarray, np.ndarray]:
    if db is None or da is None or len(kb) < 2 or len(ka) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    pairs = cv2.BFMatcher(norm).knnMatch(db, da, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    src = np.float32([kb[m.queryIdx].pt for m in good]).reshape(-1, 2)
    dst = np.float32([ka[m.trainIdx].pt for m in good]).reshape(-1, 2)
    return src, dst


def _fit(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray | None, int]:
    if len(src) < MIN_INLIERS:
        return None, 0
    H, mask = cv2.findHomography(src, dst, cv2.RANSAC, REPROJ_PX)
    return (None, 0) if H is None else (H, int(mask.sum()))


def _geometry(H: np.ndarray, shape_a, shape_b, px_a: float, px_b: float) -> EditEstimate | str:
    """Box, rotation, mirror, scale, perspective from H, or a reason why H is unusable.
    ``px_a``/``px_b``: original pixels per working pixel of A and B."""
    (ha, wa), (hb, wb) = shape_a[:2], shape_b[:2]
    corners = np.c_[[[-0.5, -0.5], [wb - 0.5, -0.5], [wb - 0.5, hb - 0.5], [-0.5, hb - 0.5]], np.ones(4)]
    w = corners @ H[2]
    if np.any(w <= 0) or w.max() / w.min() > 4:
        return "degenerate alignment (extreme perspective)"
    quad = ((corners @ H[:2].T) / w[:, None] + 0.5).astype(np.float32)     # B's outline in A
    if not cv2.isContourConvex(quad):
        return "degenerate alignment (folded)"
    area = cv2.contourArea(quad)
    inside, _ = cv2.intersectConvexConvex(quad, np.float32([[0, 0], [wa, 0], [wa, ha], [0, ha]]))
    if inside < 0.002 * wa * ha:
        return "degenerate alignment (B maps onto almost nothing of A)"
    x0, y0 = np.clip(quad.min(axis=0) / (wa, ha), 0, 1)
    x1, y1 = np.clip(quad.max(axis=0) / (wa, ha), 0, 1)
    jac = np.linalg.inv(_jacobian(H, (wb - 1) / 2, (hb - 1) / 2)) * (px_b / px_a)  # A → B
    mirrored = bool(np.linalg.det(jac) < 0)
    scale = math.sqrt(abs(np.linalg.det(jac)))
    if not 1 / 50 < scale * px_a / px_b < 50:
        return "degenerate alignment (implausible scale)"
    affine, *_ = np.linalg.lstsq(corners, quad, rcond=None)    # a parallelogram fits exactly
    bend = np.abs(corners @ affine - quad).max() / math.sqrt(area)
    return EditEstimate(True, crop_box=(float(x0), float(y0), float(x1), float(y1)),
                        crop_area=float((x1 - x0) * (y1 - y0)), b_inside=float(inside / area),
                        rotation=_angle(jac @ np.diag([-1.0, 1.0]) if mirrored else jac),
                        mirrored=mirrored, scale=scale, perspective=bool(bend > 0.02))


def _jacobian(H: np.ndarray, x: float, y: float) -> np.ndarray:
    u = H @ (x, y, 1.0)
    return (H[:2, :2] - np.outer(u[:2] / u[2], H[2, :2])) / u[2]


def _angle(m: np.ndarray) -> float:
    """Anticlockwise rotation (image y points down) of a similarity-like 2×2 map."""
    deg = math.degrees(math.atan2(m[0, 1] - m[1, 0], m[0, 0] + m[1, 1]))
    snapped = 90.0 * round(deg / 90.0)
    deg = snapped if abs(deg - snapped) <= SNAP_DEG else round(deg, 1)
    return 180.0 if deg <= -180 else deg + 0.0


def _compare(est: EditEstimate, wa: np.ndarray, wb: np.ndarray, H: np.ndarray) -> None:
    """Warp B into A's frame, match colours, fill the colour, overlay and heat-map fields."""
    size = (wa.shape[1], wa.shape[0])
    # the same blur in A's frame for both: B upsampled into A's frame is blurrier by `stretch`
    stretch = math.sqrt(abs(np.linalg.det(_jacobian(H, wb.shape[1] / 2, wb.shape[0] / 2))))
    sigma = 1.5 * max(1.0, stretch)
    blur = lambda img, s: cv2.GaussianBlur(img.astype(np.float32), (0, 0), s)
    warped = cv2.warpPerspective(blur(wb, sigma / stretch), H, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones(wb.shape[:2], np.uint8), H, size, flags=cv2.INTER_NEAREST)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=int(2 * sigma) + 2) > 0
    if mask.sum() < 64:
        est.difference = np.zeros(wa.shape[:2], np.uint8)
        return
    sa, sb = blur(wa, sigma)[mask], warped[mask]
    diff = np.abs(_colour_map(sa, sb) - sb).mean(axis=1)
    painted = diff > OVERLAY_LEVEL
    est.overlay = float(painted.mean())
    heat = np.zeros(wa.shape[:2], np.float32)
    heat[mask] = diff
    est.difference = np.clip(heat, 0, 255).astype(np.uint8)
    clean = np.flatnonzero(~painted)[::4]           # every 4th pixel is plenty for statistics
    if len(clean):
        est.mean_shift = tuple(float(v) for v in sb[clean].mean(0) - sa[clean].mean(0))
        est.std_ratio = tuple(float(v) for v in (sb[clean].std(0) + 1) / (sa[clean].std(0) + 1))
    spread = lambda px: float(np.abs(np.diff(px[::2, ::2].astype(np.float32), axis=-1)).mean())
    est.grayscale = spread(wb) < 1.5 and spread(wa) > 6.0
    est.colour_changed = est.grayscale or max(map(abs, est.mean_shift)) > COLOUR_SHIFT or \
        max(abs(math.log(r)) for r in est.std_ratio) > math.log1p(STD_CHANGE)


def _colour_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A's pixels mapped to B's colours by a least-squares affine colour map (fitted on a
    sample, then again without its worst fifth: painted-over areas would bias it)."""
    step = max(1, len(a) // 20_000)
    x, y = np.c_[a[::step], np.ones(len(a[::step]), np.float32)], b[::step]
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        err = np.abs(x @ coef - y).sum(axis=1)
        good = err <= np.percentile(err, 80)
        x, y = x[good], y[good]
    return cv2.transform(a[:, None, :], np.float32(coef.T))[:, 0]


def describe(est: EditEstimate, a_info=None, b_info=None) -> str:
    """One sentence, e.g. "B is a 62% crop of A, rotated 90° anticlockwise, mirrored, scaled
    to 50%, re-encoded smaller (JPEG 1.2 MB → 310 KB)"; the infos give bytes (or size) and
    format of each file, for the re-encoding."""
    if not est.aligned:
        return f"Could not align the photos: {est.reason}"
    if est.crop_area < SHOWN:
        head = f"B is a {est.crop_area:.0%} crop of A"
    elif est.b_inside < SHOWN:
        head = f"B shows more than A (A is a {est.b_inside:.0%} crop of B)"
    else:
        head = "B is a copy of A"
    parts = [p for p in (head, *_edits(est), _reencoding(a_info, b_info)) if p]
    return "B is the same picture as A" if parts == ["B is a copy of A"] else ", ".join(parts)


def _edits(est: EditEstimate) -> list[str]:
    turn = "" if abs(est.rotation) == 180 else " anticlockwise" if est.rotation > 0 else " clockwise"
    colour = "converted to grayscale" if est.grayscale else "colours changed"
    return [text for wanted, text in (
        (est.rotation, f"rotated {abs(est.rotation):g}°{turn}"), (est.mirrored, "mirrored"),
        (abs(est.scale - 1) > 0.03, f"scaled to {est.scale:.0%}"),
        (est.perspective, "with a perspective change"), (est.colour_changed, colour),
        (est.overlay >= PAINTED, f"{est.overlay:.0%} of it painted over (text, marks or retouching)"),
    ) if wanted]


def _reencoding(a_info, b_info) -> str:
    """"re-encoded smaller (JPEG 1.2 MB → 310 KB)" from each file's bytes (or size) and format."""
    (na, fa), (nb, fb) = (_info(i) for i in (a_info, b_info))
    if na is None or nb is None:
        return ""
    if fa != fb:
        return f"re-encoded as {fb} ({fa} {_bytes(na)} → {fb} {_bytes(nb)})"
    if abs(nb - na) <= 0.03 * na:
        return ""
    return f"re-encoded {'smaller' if nb < na else 'larger'} ({fa} {_bytes(na)} → {_bytes(nb)})"


def _info(info) -> tuple[int | None, str]:
    get = (lambda k: info.get(k)) if isinstance(info, dict) else (lambda k: getattr(info, k, None))
    size = get("bytes") if get("bytes") is not None else get("size")
    return size, str(get("format") or "?").upper()


def _bytes(n: int) -> str:
    for unit, step in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= step:
            return f"{n / step:.1f} {unit}" if n < 10 * step else f"{n / step:.0f} {unit}"
    return f"{n} bytes"
