"""Explained matches: known edits of a textured synthetic photo are recovered from the pixels."""
import io
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from engine.explain import EditEstimate, describe, explain_pair

W, H = 640, 480


def textured(seed: int, size: tuple[int, int] = (W, H)) -> Image.Image:
    """Gradients, blotchy noise and 120 random shapes: plenty of corners to match."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([a * x / w + b * y / h for a, b in rng.uniform(-80, 80, (3, 2))], -1) + 128
    blotches = rng.normal(0, 25, (h // 16 + 1, w // 16 + 1)).astype(np.float32)
    base += np.asarray(Image.fromarray(blotches).resize((w, h), Image.Resampling.BICUBIC))[..., None]
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(120):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0, s = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(6, 60))
        kind = rng.random()
        if kind < 0.4:
            draw.rectangle((x0, y0, x0 + s, y0 + int(rng.integers(6, 60))), fill=colour)
        elif kind < 0.7:
            draw.polygon([(x0 + int(rng.integers(-s, s)), y0 + int(rng.integers(-s, s)))
                          for _ in range(4)], fill=colour)
        else:
            draw.ellipse((x0, y0, x0 + s, y0 + s), fill=colour)
    grain = rng.normal(0, 6, (h, w, 3))
    pixels = np.clip(np.asarray(img, np.float32) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(0.6))


def jpeg(img: Image.Image, quality: int = 85) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


@pytest.fixture(scope="module")
def a() -> Image.Image:
    return textured(1)


@pytest.fixture(scope="module")
def clean(a) -> EditEstimate:
    return explain_pair(a, jpeg(a))


def assert_box(est: EditEstimate, box_px: tuple[int, int, int, int]) -> None:
    truth = np.divide(box_px, (W, H, W, H))
    assert est.aligned, est.reason
    assert np.abs(np.subtract(est.crop_box, truth)).max() < 0.03, (est.crop_box, truth)


def test_a_clean_copy_is_the_same_picture(clean):
    assert clean.aligned and clean.inliers >= 100 and clean.matches >= clean.inliers
    assert not (clean.mirrored or clean.perspective or clean.colour_changed or clean.grayscale)
    assert clean.rotation == 0 and clean.scale == pytest.approx(1, abs=0.01)
    assert clean.crop_area > 0.99 and clean.overlay < 0.01
    assert describe(clean) == "B is the same picture as A"


def test_crop_box(a):
    est = explain_pair(a, jpeg(a.crop((100, 60, 500, 380))))
    assert_box(est, (100, 60, 500, 380))
    assert est.crop_area == pytest.approx(400 * 320 / (W * H), abs=0.03)
    assert est.scale == pytest.approx(1, abs=0.05) and est.rotation == 0 and not est.mirrored
    assert describe(est).startswith("B is a 42% crop of A")


@pytest.mark.parametrize("degrees, expected", [(90, 90), (180, 180), (270, -90)])
def test_rotations(a, degrees, expected):
    est = explain_pair(a, a.rotate(degrees, expand=True))
    assert est.aligned and est.rotation == expected and not est.mirrored
    assert est.crop_area > 0.97 and est.scale == pytest.approx(1, abs=0.05)
    assert f"rotated {abs(expected)}°" in describe(est)


def test_left_right_mirror(a):
    est = explain_pair(a, ImageOps.mirror(a))
    assert est.aligned and est.mirrored and est.rotation == 0
    assert describe(est) == "B is a copy of A, mirrored"


@pytest.mark.parametrize("max_side", [1024, 320])   # 320: both are resized to the working size
def test_downscale(a, max_side):
    est = explain_pair(a, jpeg(a.resize((W // 2, H // 2), Image.Resampling.LANCZOS)), max_side=max_side)
    assert est.aligned and est.scale == pytest.approx(0.5, rel=0.05)
    assert est.crop_area > 0.97 and not est.colour_changed
    assert "scaled to 50%" in describe(est)


def test_crop_and_rotate(a):
    est = explain_pair(a, a.crop((64, 48, 448, 336)).rotate(90, expand=True))
    assert_box(est, (64, 48, 448, 336))
    assert est.rotation == 90 and not est.mirrored
    assert describe(est).startswith("B is a 36% crop of A, rotated 90° anticlockwise")


def test_colour_change(a):
    warmer = ImageEnhance.Color(ImageEnhance.Brightness(a).enhance(1.2)).enhance(1.6)
    est = explain_pair(a, warmer)
    assert est.aligned and est.colour_changed and not est.grayscale
    assert max(est.mean_shift) > 8
    assert "colours changed" in describe(est)


def test_grayscale_copy(a):
    est = explain_pair(a, a.convert("L").convert("RGB"))
    assert est.aligned and est.grayscale and est.colour_changed
    assert "converted to grayscale" in describe(est)


def test_overlay_is_found_where_it_was_pasted(a, clean):
    b = jpeg(a)
    draw = ImageDraw.Draw(b)
    draw.rectangle((200, 150, 420, 300), fill=(255, 255, 255))
    draw.text((220, 200), "SALE 50% OFF", fill=(0, 0, 0))
    est = explain_pair(a, b)
    assert est.aligned and not est.colour_changed
    assert est.overlay > 0.08 and est.overlay > 5 * clean.overlay
    heat = est.difference
    assert heat.shape == (H, W) and heat.dtype == np.uint8
    inside = heat[160:290, 210:410].mean()
    assert inside > 4 * heat[:140].mean() and inside > 4 * clean.difference[160:290, 210:410].mean()
    assert "painted over" in describe(est)


def test_unrelated_photo_is_not_aligned(a):
    est = explain_pair(a, textured(2))
    assert not est.aligned and "too few matching features" in est.reason
    assert describe(est).startswith("Could not align the photos")


@pytest.mark.parametrize("b, reason", [
    (Image.new("RGB", (W, H), (120, 130, 140)), "too few distinctive features"),
    (Image.new("RGB", (20, 15), (0, 0, 0)), "too small"),
])
def test_flat_or_tiny_photo_is_not_aligned(a, b, reason):
    est = explain_pair(a, b)
    assert not est.aligned and reason in est.reason and est.difference is None


@dataclass
class Info:
    size: int
    format: str


def test_describe_wording():
    est = EditEstimate(True, crop_area=0.62, rotation=90, mirrored=True, scale=0.5,
                       colour_changed=True)
    jpeg_big, jpeg_small = {"bytes": 1_200_000, "format": "JPEG"}, {"bytes": 310_000, "format": "jpeg"}
    assert describe(est, jpeg_big, jpeg_small) == (
        "B is a 62% crop of A, rotated 90° anticlockwise, mirrored, scaled to 50%, colours changed, "
        "re-encoded smaller (JPEG 1.2 MB → 310 KB)")
    tilted = EditEstimate(True, rotation=-4.5, b_inside=0.8, grayscale=True, colour_changed=True)
    assert describe(tilted, Info(2_000_000, "JPEG"), Info(950, "PNG")) == (
        "B shows more than A (A is a 80% crop of B), rotated 4.5° clockwise, "
        "converted to grayscale, re-encoded as PNG (JPEG 2.0 MB → PNG 950 bytes)")
    assert describe(EditEstimate(True), jpeg_big, jpeg_big) == "B is the same picture as A"
    assert describe(EditEstimate(True, overlay=0.12)) == \
        "B is a copy of A, 12% of it painted over (text, marks or retouching)"
    assert describe(EditEstimate(False, "too small to align")) == \
        "Could not align the photos: too small to align"
