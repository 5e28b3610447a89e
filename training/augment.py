"""Training augmentations for copy detection: two random views of a photo should embed alike.

Two paths give the same kinds of edit. ``CopyAugment`` works on PIL images in DataLoader
workers and is the only one with JPEG re-encoding and text overlays. ``GPUAugment`` works on a
batch already on the training device (CUDA when present; the same code runs on the CPU), so the
GPU is not starved by the workers. The edits are randomised and broader than the evaluation's
``training.families``, never a copy of its parameters. Every output is float32 (3, size, size),
squashed to size×size like the engine (the whole frame, no centre crop) and normalised as
(x − 127) / 128 on 0..255 RGB.
"""
from __future__ import annotations

import math
import random
import string
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from training.families import jpeg  # the same re-encode the evaluation families use

_BILINEAR = Image.Resampling.BILINEAR
_T = Image.Transpose
_LUMA = (0.299, 0.587, 0.114)
_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))
_CHARS = string.ascii_letters + string.digits + "  ©#!:.-_/@&"


@dataclass
class AugmentConfig:
    size: int = 224
    strength: float = 1.0        # scales probabilities and magnitudes; 0 = only resize
    jpeg_p: float = 0.3          # CPU path only
    overlay_p: float = 0.25
    border_p: float = 0.2
    rot90_p: float = 0.25        # a quarter turn either way; half turns come from two flips
    flip_p: float = 0.5          # left-right; upside-down at half this rate
    grayscale_p: float = 0.1
    blur_p: float = 0.2
    perspective_p: float = 0.2
    colour_p: float = 0.8
    min_crop_area: float = 0.3   # 1 disables the random crop


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image → normalised float32 (3, H, W)."""
    x = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32))
    return ((x - 127.0) / 128.0).permute(2, 0, 1).contiguous()


def eval_transform(size: int) -> Callable[[Image.Image], torch.Tensor]:
    """The engine's preprocessing: squash-resize (bilinear) and normalise; no randomness."""
    def transform(img: Image.Image) -> torch.Tensor:
        return to_tensor(img.convert("RGB").resize((size, size), _BILINEAR))
    return transform


def random_crop(img: Image.Image, rng: random.Random, min_area: float, s: float) -> Image.Image:
    """Random resized crop: area fraction in [min_area, 1], aspect in [3/4, 4/3] (at s ≥ 1)."""
    lo = 1.0 - min(s, 1.0) * (1.0 - min_area)
    if lo >= 1.0:
        return img
    w, h = img.size
    area = rng.uniform(lo, 1.0) * w * h
    aspect = math.exp(rng.uniform(-1, 1) * math.log(4 / 3) * min(s, 1.0))
    cw = min(w, max(1, round(math.sqrt(area * aspect))))
    ch = min(h, max(1, round(math.sqrt(area / aspect))))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return img.crop((x, y, x + cw, y + ch))


def _fill(rng: random.Random) -> tuple[int, int, int]:
    return rng.choice([(0, 0, 0), (255, 255, 255), tuple(rng.randint(0, 255) for _ in range(3))])


def add_border(img: Image.Image, rng: random.Random, s: float) -> Image.Image:
    """Uneven padding on each side, or on one axis only (letterbox): the aspect changes."""
    w, h = img.size
    fx, fy = rng.uniform(0.02, 0.35 * s), rng.uniform(0.02, 0.35 * s)
    if rng.random() < 0.5:
        fx, fy = (fx, 0.0) if rng.random() < 0.5 else (0.0, fy)
    px, py = int(w * fx), int(h * fy)
    left, top = rng.randint(0, px), rng.randint(0, py)
    return ImageOps.expand(img, (left, top, px - left, py - top), fill=_fill(rng))


def perspective(img: Image.Image, rng: random.Random, s: float) -> Image.Image:
    """Each corner moves in or out by up to 12 % (at s = 1); uncovered areas get a fill."""
    w, h = img.size
    d = 0.12 * s
    jx = [rng.uniform(-d, d) * w for _ in range(4)]
    jy = [rng.uniform(-d, d) * h for _ in range(4)]
    quad = (jx[0], jy[0], jx[1], h + jy[1], w + jx[2], h + jy[2], w + jx[3], jy[3])
    return img.transform((w, h), Image.Transform.QUAD, quad, _BILINEAR, fillcolor=_fill(rng))


def dihedral(img: Image.Image, rng: random.Random, flip_p: float, rot90_p: float) -> Image.Image:
    if rng.random() < flip_p:
        img = img.transpose(_T.FLIP_LEFT_RIGHT)
    if rng.random() < flip_p / 2:
        img = img.transpose(_T.FLIP_TOP_BOTTOM)
    if rng.random() < rot90_p:
        img = img.transpose(rng.choice([_T.ROTATE_90, _T.ROTATE_270]))
    return img


def jitter_colour(img: Image.Image, rng: random.Random, mag: float, hue: float) -> Image.Image:
    """Brightness, contrast, saturation (± mag) and hue (± hue of the circle), random order."""
    def enhance(kind):
        return lambda im: kind(im).enhance(max(0.05, rng.uniform(1 - mag, 1 + mag)))

    def shift_hue(im):
        h, sat, v = im.convert("HSV").split()
        step = round(rng.uniform(-hue, hue) * 256)
        return Image.merge("HSV", (h.point(lambda p: (p + step) % 256), sat, v)).convert("RGB")

    ops = [enhance(ImageEnhance.Brightness), enhance(ImageEnhance.Contrast),
           enhance(ImageEnhance.Color)] + ([shift_hue] if hue > 0 else [])
    rng.shuffle(ops)
    for op in ops:
        img = op(img)
    return img


def draw_overlays(img: Image.Image, rng: random.Random, s: float) -> Image.Image:
    """One to three random texts or shapes, in random colours and opacity."""
    w, h = img.size
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.randint(1, 3)):
        fill = tuple(rng.randint(0, 255) for _ in range(3)) + (rng.randint(120, 255),)
        x0, y0 = rng.uniform(-0.1, 0.9) * w, rng.uniform(-0.1, 0.9) * h
        x1, y1 = x0 + rng.uniform(0.05, 0.4 * s) * w, y0 + rng.uniform(0.05, 0.4 * s) * h
        kind = rng.choice(["text", "text", "rectangle", "ellipse", "line", "polygon"])
        if kind == "text":
            text = "".join(rng.choice(_CHARS) for _ in range(rng.randint(2, 14)))
            draw.text((x0, y0), text, fill=fill, font_size=max(6, int(h * rng.uniform(0.05, 0.2))))
        elif kind == "line":
            draw.line((x0, y0, x1, y1), fill=fill, width=rng.randint(1, max(1, h // 30)))
        elif kind == "polygon":
            draw.polygon([(x0, y1), (x1, y1), (rng.uniform(x0, x1), y0)], fill=fill)
        else:
            getattr(draw, kind)((x0, y0, x1, y1), fill=fill)
    return Image.alpha_composite(img.convert("RGBA"), layer).convert("RGB")


class CopyAugment:
    """CPU path for DataLoader workers: PIL image + ``random.Random`` → normalised tensor."""
    takes_rng = True

    def __init__(self, config: AugmentConfig):
        self.config = config

    def __call__(self, img: Image.Image, rng: random.Random | None = None) -> torch.Tensor:
        return to_tensor(self.view(img, rng))

    def view(self, img: Image.Image, rng: random.Random | None = None) -> Image.Image:
        """The augmented view as an RGB PIL image of size×size."""
        c, s = self.config, self.config.strength
        rng = rng or random.Random()
        img = img.convert("RGB")
        if s <= 0:
            return img.resize((c.size, c.size), _BILINEAR)
        img = random_crop(img, rng, c.min_crop_area, s)
        img.thumbnail((2 * c.size, 2 * c.size), _BILINEAR)  # later edits run on a small image
        if rng.random() < c.border_p * s:
            img = add_border(img, rng, s)
        if rng.random() < c.perspective_p * s:
            img = perspective(img, rng, s)
        img = dihedral(img, rng, c.flip_p * s, c.rot90_p * s)
        img = img.resize((c.size, c.size), _BILINEAR)
        return self._photometric(img, rng)

    def _photometric(self, img: Image.Image, rng: random.Random) -> Image.Image:
        c, s = self.config, self.config.strength
        if rng.random() < c.colour_p * s:
            img = jitter_colour(img, rng, 0.5 * s, 0.1 * min(s, 1.0))
        if rng.random() < c.grayscale_p * s:
            img = ImageOps.grayscale(img).convert("RGB")
        if rng.random() < c.overlay_p * s:
            img = draw_overlays(img, rng, s)
        if rng.random() < c.blur_p * s:
            img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 1.0 + s) * c.size / 224))
        if rng.random() < c.jpeg_p * s:
            img = jpeg(img, rng.randint(20, 90))
        return img


class SupervisedAugment:
    """Milder views for the semantic head: crop (area ≥ 0.5), flip, light colour jitter."""
    takes_rng = True

    def __init__(self, config: AugmentConfig):
        self.config = config

    def __call__(self, img: Image.Image, rng: random.Random | None = None) -> torch.Tensor:
        return to_tensor(self.view(img, rng))

    def view(self, img: Image.Image, rng: random.Random | None = None) -> Image.Image:
        """The augmented view as an RGB PIL image of size×size."""
        c, s = self.config, self.config.strength
        rng = rng or random.Random()
        img = img.convert("RGB")
        if s > 0:
            img = random_crop(img, rng, 0.5, s)
            img = dihedral(img, rng, 0.5 * s, 0.0)
        img = img.resize((c.size, c.size), _BILINEAR)
        if rng.random() < c.colour_p * s:
            img = jitter_colour(img, rng, 0.2 * s, 0.0)
        return img


class _Draw:
    """Per-sample random numbers on the batch's device, from an optional generator."""

    def __init__(self, n: int, device: torch.device, generator: torch.Generator | None):
        self.n, self.device, self.generator = n, device, generator

    def uniform(self, lo: float, hi: float, *shape: int) -> torch.Tensor:
        u = torch.rand((self.n, *shape), generator=self.generator, device=self.device)
        return lo + (hi - lo) * u

    def coin(self, p: float) -> torch.Tensor:
        return self.uniform(0.0, 1.0) < p


def _mat(n: int, device: torch.device, entries: dict[tuple[int, int], torch.Tensor | float]):
    """(n, 3, 3) homogeneous matrices: identity with the given entries set."""
    m = torch.eye(3, device=device).repeat(n, 1, 1)
    for (i, j), v in entries.items():
        m[:, i, j] = v
    return m


class GPUAugment(torch.nn.Module):
    """Batch augmentation: (B, 3, H, W) uint8 or float 0..255 → normalised (B, 3, size, size).

    Crop, flips, quarter turns, shear and border padding form one affine matrix per sample
    (one ``grid_sample``); then colour jitter (YIQ hue rotation), grayscale, Gaussian blur and
    solid boxes. No JPEG here: re-encoding stays in the CPU path (``CopyAugment``). Pass a
    ``generator`` on the batch's device for repeatable output. No parameters, no gradients.
    Extra leading dimensions, e.g. two views (B, 2, 3, H, W), are kept; each image draws its own.
    """

    def __init__(self, config: AugmentConfig):
        super().__init__()
        self.config = config
        yiq = torch.tensor(_YIQ, dtype=torch.float64)
        self._yiq, self._yiq_inv = yiq.float(), torch.linalg.inv(yiq).float()

    @torch.no_grad()
    def forward(self, batch: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        if batch.dim() < 4 or batch.shape[-3] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got {tuple(batch.shape)}")
        lead, batch = batch.shape[:-3], batch.flatten(0, -4)  # (B, V, 3, H, W): views apart
        draw = _Draw(batch.shape[0], batch.device, generator)
        x = self._geometry(batch.float(), draw)
        x = self._colour(x, draw)
        luma = torch.tensor(_LUMA, device=x.device).view(1, 3, 1, 1)
        gray = (x * luma).sum(1, keepdim=True).expand_as(x)
        on = draw.coin(self.config.grayscale_p * self.config.strength)
        x = torch.where(on.view(-1, 1, 1, 1), gray, x)
        x = self._blur(x, draw)
        for p in (self.config.overlay_p, self.config.overlay_p / 2):
            x = self._box(x, draw, p * self.config.strength)
        return ((x - 127.0) / 128.0).reshape(*lead, *x.shape[1:])

    def _geometry(self, x: torch.Tensor, draw: _Draw) -> torch.Tensor:
        c, s, n, dev = self.config, self.config.strength, x.shape[0], x.device
        area = draw.uniform(1.0 - min(s, 1.0) * (1.0 - c.min_crop_area), 1.0)
        jitter = min(s, 1.0) if c.min_crop_area < 1 else 0.0  # 1 disables the crop
        aspect = torch.exp(draw.uniform(-1, 1) * math.log(4 / 3) * jitter)
        sx, sy = (area * aspect).sqrt().clamp(max=1), (area / aspect).sqrt().clamp(max=1)
        cx, cy = draw.uniform(-1, 1) * (1 - sx), draw.uniform(-1, 1) * (1 - sy)
        crop = _mat(n, dev, {(0, 0): sx, (1, 1): sy, (0, 2): cx, (1, 2): cy})
        hflip = torch.where(draw.coin(c.flip_p * s), -1.0, 1.0)
        vflip = torch.where(draw.coin(c.flip_p * s / 2), -1.0, 1.0)
        turn = torch.where(draw.coin(c.rot90_p * s), torch.where(draw.coin(0.5), 1.0, -1.0), 0.0)
        cos = (turn == 0).float()
        rot = _mat(n, dev, {(0, 0): cos, (0, 1): -turn, (1, 0): turn, (1, 1): cos})
        flip = _mat(n, dev, {(0, 0): hflip, (1, 1): vflip})
        shear_on = draw.coin(c.perspective_p * s).float().unsqueeze(1)
        sh = draw.uniform(-0.15 * s, 0.15 * s, 2) * shear_on
        shear = _mat(n, dev, {(0, 1): sh[:, 0], (1, 0): sh[:, 1]})
        border_on = draw.coin(c.border_p * s).unsqueeze(1)
        b = torch.where(border_on, draw.uniform(1 - 0.3 * s, 1.0, 2).clamp(min=0.3), 1.0)
        o = draw.uniform(-1, 1, 2) * (1 - b)
        unpad = _mat(n, dev, {(0, 0): 1 / b[:, 0], (1, 1): 1 / b[:, 1],
                              (0, 2): -o[:, 0] / b[:, 0], (1, 2): -o[:, 1] / b[:, 1]})
        to_content = rot @ flip @ shear @ unpad             # output coords → uncropped content
        theta = (crop @ to_content)[:, :2]
        grid = F.affine_grid(theta, [n, 3, c.size, c.size], align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        content = (grid - torch.stack([cx, cy], -1).view(n, 1, 1, 2)) / torch.stack(
            [sx, sy], -1).view(n, 1, 1, 2)
        inside = (content.abs() <= 1).all(-1).unsqueeze(1)
        return torch.where(inside, out, self._fill(draw).view(n, 3, 1, 1))

    @staticmethod
    def _fill(draw: _Draw) -> torch.Tensor:
        pick, colour = draw.uniform(0, 1, 1), draw.uniform(0, 255, 3)
        return torch.where(pick < 1 / 3, 0.0, torch.where(pick < 2 / 3, 255.0, colour))

    def _colour(self, x: torch.Tensor, draw: _Draw) -> torch.Tensor:
        s, n, dev = self.config.strength, x.shape[0], x.device
        on = draw.coin(self.config.colour_p * s).view(-1, 1, 1, 1)
        bright = draw.uniform(1 - 0.4 * s, 1 + 0.4 * s).clamp(min=0.05)
        contrast = draw.uniform(1 - 0.4 * s, 1 + 0.4 * s).clamp(min=0.05).view(-1, 1, 1, 1)
        sat = draw.uniform(1 - 0.6 * s, 1 + 0.6 * s).clamp(min=0.0)
        angle = draw.uniform(-1, 1) * 0.1 * 2 * math.pi * min(s, 1.0)
        cos, sin = angle.cos(), angle.sin()
        hue = _mat(n, dev, {(1, 1): cos, (1, 2): -sin, (2, 1): sin, (2, 2): cos})
        hue = self._yiq_inv.to(dev) @ hue @ self._yiq.to(dev)
        luma = torch.tensor(_LUMA, device=dev)
        grey = torch.ones(3, 1, device=dev) @ luma.view(1, 3)
        eye = torch.eye(3, device=dev)
        saturate = sat.view(-1, 1, 1) * eye + (1 - sat).view(-1, 1, 1) * grey
        m = hue @ saturate * bright.view(-1, 1, 1)
        y = torch.einsum("bij,bjhw->bihw", m, x)
        mean = (y * luma.view(1, 3, 1, 1)).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        y = ((y - mean) * contrast + mean).clamp(0, 255)
        return torch.where(on, y, x)

    def _blur(self, x: torch.Tensor, draw: _Draw, radius: int = 3) -> torch.Tensor:
        """Depthwise separable Gaussian, one sigma per sample, reflect padding."""
        (n, ch, h, w), s = x.shape, self.config.strength
        on = draw.coin(self.config.blur_p * s).view(-1, 1, 1, 1)
        sigma = draw.uniform(0.3, 0.3 + 1.2 * min(s, 1.0), 1) * self.config.size / 224
        r = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        kernel = torch.exp(-r ** 2 / (2 * sigma ** 2))
        kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(ch, 0)
        y = F.pad(x.reshape(1, n * ch, h, w), (radius,) * 4, mode="reflect")
        y = F.conv2d(y, kernel.view(n * ch, 1, 1, -1), groups=n * ch)
        y = F.conv2d(y, kernel.view(n * ch, 1, -1, 1), groups=n * ch)
        return torch.where(on, y.view(n, ch, h, w), x)

    def _box(self, x: torch.Tensor, draw: _Draw, p: float) -> torch.Tensor:
        """A solid box of random colour, size (5–35 % of a side) and place."""
        n, size, s = x.shape[0], x.shape[-1], self.config.strength
        on = draw.coin(p)
        wh = draw.uniform(0.05, 0.05 + 0.3 * min(s, 1.0), 2)
        start = draw.uniform(0, 1, 2) * (1 - wh)
        colour = draw.uniform(0, 255, 3).view(n, 3, 1, 1)
        at = (torch.arange(size, device=x.device) + 0.5) / size
        inside = (at >= start.unsqueeze(-1)) & (at < (start + wh).unsqueeze(-1))  # (n, 2, size)
        mask = inside[:, 1, :, None] & inside[:, 0, None, :] & on.view(n, 1, 1)
        return torch.where(mask.unsqueeze(1), colour, x)
