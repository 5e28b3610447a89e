"""Near-duplicate transform families: the edits a photo goes through between copies.

Used to evaluate and calibrate copy detection: each family turns an original into a
transformed copy, seeded so a benchmark can be repeated exactly. Families follow the issue's
list: mild resize+JPEG, crop, rotation/flip, colour, overlay, border, perspective, and chained
combinations of two or three.
"""
from __future__ import annotations

import io
import random
from typing import Callable

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

Transform = Callable[[Image.Image, random.Random], Image.Image]


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def mild(img: Image.Image, rng: random.Random) -> Image.Image:
    scale = rng.uniform(0.4, 0.8)
    small = img.resize((max(8, int(img.width * scale)), max(8, int(img.height * scale))),
                       Image.Resampling.BICUBIC)
    return jpeg(small, rng.randint(30, 75))


def crop(img: Image.Image, rng: random.Random) -> Image.Image:
    frac = rng.uniform(0.55, 0.85)  # side fraction kept: 30–72 % of the area
    w, h = max(8, int(img.width * frac)), max(8, int(img.height * frac))
    x, y = rng.randint(0, img.width - w), rng.randint(0, img.height - h)
    return img.crop((x, y, x + w, y + h))


def rotate_flip(img: Image.Image, rng: random.Random) -> Image.Image:
    op = rng.choice([Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
                     Image.Transpose.ROTATE_270, Image.Transpose.FLIP_LEFT_RIGHT,
                     Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.TRANSPOSE])
    return img.transpose(op)


def colour(img: Image.Image, rng: random.Random) -> Image.Image:
    if rng.random() < 0.25:
        return ImageOps.grayscale(img).convert("RGB")
    out = ImageEnhance.Brightness(img).enhance(rng.uniform(0.6, 1.4))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.6, 1.5))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.3, 1.8))
    hsv = out.convert("HSV")
    h, s, v = hsv.split()
    shift = rng.randint(-20, 20)
    h = h.point(lambda px: (px + shift) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def overlay(img: Image.Image, rng: random.Random) -> Image.Image:
    out = img.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    for _ in range(rng.randint(1, 3)):
        colour_ = tuple(rng.randint(0, 255) for _ in range(3))
        if rng.random() < 0.5:
            x, y = rng.randint(0, w - 1), rng.randint(0, h - 1)
            size = max(6, h // rng.randint(8, 14))
            draw.text((x * 0.7, y * 0.85), rng.choice(["© 2024", "SALE", "holiday!", "IMG_0412"]),
                      fill=colour_, font_size=size)
        else:
            x0, y0 = rng.randint(0, w * 3 // 4), rng.randint(0, h * 3 // 4)
            x1, y1 = x0 + rng.randint(w // 10, w // 4), y0 + rng.randint(h // 10, h // 4)
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour_)
    return out


def border(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    fill = rng.choice([(0, 0, 0), (255, 255, 255), tuple(rng.randint(0, 255) for _ in range(3))])
    if rng.random() < 0.5:   # letterbox to another aspect ratio
        side = max(w, h)
        return ImageOps.pad(img, (side, int(side * rng.uniform(0.6, 1.0))), color=fill)
    pad = [int(d * rng.uniform(0.03, 0.15)) for d in (w, h, w, h)]
    return ImageOps.expand(img, tuple(pad), fill=fill)


def perspective(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    d = 0.12
    quad = [rng.uniform(0, d) * w, rng.uniform(0, d) * h,
            rng.uniform(0, d) * w, h - rng.uniform(0, d) * h,
            w - rng.uniform(0, d) * w, h - rng.uniform(0, d) * h,
            w - rng.uniform(0, d) * w, rng.uniform(0, d) * h]
    return img.transform((w, h), Image.Transform.QUAD, quad, Image.Resampling.BILINEAR)


SINGLE: dict[str, Transform] = {
    "mild": mild, "crop": crop, "rotate_flip": rotate_flip, "colour": colour,
    "overlay": overlay, "border": border, "perspective": perspective,
}


def combination(img: Image.Image, rng: random.Random) -> Image.Image:
    names = rng.sample(sorted(SINGLE), rng.randint(2, 3))
    for name in names:
        img = SINGLE[name](img, rng)
    return img


FAMILIES: dict[str, Transform] = {**SINGLE, "combination": combination}


def make_copy(img: Image.Image, family: str, seed: int) -> Image.Image:
    """The transformed copy of ``img`` for ``family``, reproducible from ``seed``."""
    return FAMILIES[family](img.convert("RGB"), random.Random(seed)).convert("RGB")
