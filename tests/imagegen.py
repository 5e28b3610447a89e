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


def class_photo(label: int, index: int, size: tuple[int, int] = (128, 96)) -> Image.Image:
    """A photo of class ``label``: a random scene overlaid with the class's stripe pattern.

    The scene differs for every image, so a network must learn to look at the stripes
    (angle, spacing, colour) to tell classes apart.
    """
    rng = random.Random(label * 7919 + 17)
    w, h = size
    scene = photo(10_000 + label * 1000 + index, size)
    stripes = Image.new("RGB", size, tuple(rng.randint(0, 255) for _ in range(3)))
    draw = ImageDraw.Draw(stripes)
    colour = tuple(rng.randint(0, 255) for _ in range(3))
    spacing, width = rng.randint(8, 20), rng.randint(2, 5)
    for x in range(-h, w + h, spacing):
        draw.line((x, 0, x + h * rng.choice((-1, 1)) * 0, h), fill=colour, width=width)
    stripes = stripes.rotate(rng.uniform(0, 180), expand=False)
    return Image.blend(scene, stripes, 0.3)


def labeled_folder(root: Path, classes: int, per_class: int, size: tuple[int, int] = (128, 96)) -> Path:
    for label in range(classes):
        for index in range(per_class):
            save_jpeg(class_photo(label, index, size), root / f"class_{label:02d}" / f"{index}.jpg")
    return root


def decision_photos(folder: Path) -> None:
    """Three copies of one photo (a.jpg, a small.jpg, a grainy.jpg) and three other photos
    (other 6/7/8.jpg): material for recorded review decisions."""
    base = photo(1, (320, 240))
    save_jpeg(base, folder / "a.jpg", quality=95)
    save_jpeg(resize(base, 0.75), folder / "a small.jpg", quality=85)
    save_jpeg(recompress(base, 35), folder / "a grainy.jpg")
    for seed in (6, 7, 8):
        save_jpeg(photo(seed, (320, 240)), folder / f"other {seed}.jpg")
