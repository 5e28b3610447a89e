"""Tiny synthetic photos for tests: seeded, varied scenes of shapes on gradients, with texture.

Distinct seeds give scenes the pretrained network tells apart; the edit helpers make the
near-duplicate copies a user's library is full of.
"""
from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def photo(seed: int, size: tuple[int, int] = (256, 192)) -> Image.Image:
    rng = random.Random(seed)
    w, h = size
    top = np.array([rng.randint(0, 255) for _ in range(3)], np.float32)
    bottom = np.array([rng.randint(0, 255) for _ in range(3)], np.float32)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    grad = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).copy()
    noise = np.random.default_rng(seed).normal(0, rng.uniform(4, 20), (h // 8, w // 8, 3))
    grad += np.asarray(Image.fromarray(noise.astype(np.float32)[..., 0]).resize((w, h)))[..., None]
    img = Image.fromarray(np.clip(grad, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(6, 14)):
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        x0, y0 = rng.randint(-w // 4, w), rng.randint(-h // 4, h)
        x1, y1 = x0 + rng.randint(w // 10, w // 2), y0 + rng.randint(h // 10, h // 2)
        kind = rng.random()
        if kind < 0.4:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind < 0.7:
            draw.polygon([(rng.randint(0, w), rng.randint(0, h)) for _ in range(rng.randint(3, 6))], fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=rng.randint(2, 12))
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))


def save_jpeg(img: Image.Image, path: Path, quality: int = 90, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=quality, **kwargs)
    return path


def recompress(img: Image.Image, quality: int = 40) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def crop(img: Image.Image, frac: float = 0.85) -> Image.Image:
    w, h = img.size
    dx, dy = int(w * (1 - frac) / 2), int(h * (1 - frac) / 2)
    return img.crop((dx, dy, w - dx, h - dy))


def resize(img: Image.Image, scale: float = 0.6) -> Image.Image:
    return img.resize((int(img.width * scale), int(img.height * scale)), Image.Resampling.LANCZOS)
