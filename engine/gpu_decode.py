"""Batched JPEG decode on the GPU (nvJPEG through ``torchvision.io.decode_jpeg``) straight into
the model's input tensor: decode, undo the EXIF orientation, resize (bilinear, antialiased)
and normalise, all on the device.

Used by the scan only when the embedder runs on CUDA (``usable``): on the CPU, Pillow's
draft mode (a DCT-domain downscale) beats a full decode. torchvision prints a C++ traceback
when nvJPEG is asked for without a CUDA driver, so ``usable`` checks the driver first and
nothing here is called otherwise. The same code runs with ``device="cpu"`` (libjpeg-turbo)
in the tests, so every step but the nvJPEG call itself is covered on CPU-only machines.

A JPEG that nvJPEG refuses (CMYK, arithmetic coding, lossless, damaged) is decoded once more
on its own by Pillow (``engine.decode.read_photo``), so it gets the CPU path's handling and
its clear error naming the file when that fails too.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from engine.decode import read_photo
from engine.errors import DecodeError

log = logging.getLogger(__name__)

# torchvision 0.29 deprecates its image codecs (in favour of TorchCodec) and warns on each
# call; the decoder is still the one that reaches nvJPEG, so the warning is silenced here.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)


def usable(device: torch.device) -> bool:
    """True when ``device`` is a CUDA device with a driver and torchvision can decode JPEG."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    try:
        from torchvision.io import decode_jpeg  # noqa: F401
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return False
    return True


@dataclass
class JpegItem:
    """One JPEG to decode: its path (for errors), bytes and EXIF orientation (1..8)."""

    path: str
    data: bytes
    orientation: int = 1


@dataclass
class DecodedBatch:
    """``tensor`` rows follow ``rows`` (indices into the items); ``errors`` holds the rest."""

    tensor: torch.Tensor
    rows: list[int]
    errors: dict[int, DecodeError] = field(default_factory=dict)


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Undo EXIF ``orientation`` on a (C, H, W) tensor, as Pillow's transposes do."""
    h, w = 1, 2
    if orientation == 2:
        return image.flip(w)
    if orientation == 3:
        return image.flip(h).flip(w)
    if orientation == 4:
        return image.flip(h)
    if orientation == 5:
        return image.transpose(h, w)
    if orientation == 6:  # stored turned 90° counter-clockwise: turn it clockwise
        return image.rot90(-1, (h, w))
    if orientation == 7:
        return image.rot90(2, (h, w)).transpose(h, w)
    if orientation == 8:
        return image.rot90(1, (h, w))
    return image


class JpegBatchDecoder:
    """Decodes lists of JPEG bytes on ``device`` into normalised (n, 3, size, size) batches."""

    def __init__(self, size: int, mean: torch.Tensor, std: torch.Tensor, device: torch.device):
        self.size, self.device = size, torch.device(device)
        self.mean = mean.to(self.device).view(1, 3, 1, 1)
        self.std = std.to(self.device).view(1, 3, 1, 1)

    def __call__(self, items: Sequence[JpegItem]) -> DecodedBatch:
        images, errors = self._decode(items)
        rows = [i for i in range(len(items)) if i not in errors]
        if not rows:
            return DecodedBatch(torch.zeros((0, 3, self.size, self.size), device=self.device), [], errors)
        resized = [self._resize(orient(images[i], items[i].orientation)) for i in rows]
        batch = torch.cat(resized)
        return DecodedBatch((batch - self.mean) / self.std, rows, errors)

    def _decode(self, items: Sequence[JpegItem]) -> tuple[dict[int, torch.Tensor], dict[int, DecodeError]]:
        from torchvision.io import ImageReadMode, decode_jpeg

        raw = [torch.frombuffer(bytearray(item.data), dtype=torch.uint8) for item in items]
        try:  # one call for the batch; it returns nothing when any image fails
            out = decode_jpeg(raw, mode=ImageReadMode.RGB, device=self.device)
            return dict(enumerate(out)), {}
        except RuntimeError as exc:
            log.info("batched JPEG decode failed (%s); decoding %d images one by one", exc, len(items))
        images, errors = {}, {}
        for i, (item, data) in enumerate(zip(items, raw)):
            try:
                images[i] = decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
            except RuntimeError:
                try:
                    images[i] = self._pillow(item)
                except DecodeError as exc:
                    errors[i] = exc
        return images, errors

    def _pillow(self, item: JpegItem) -> torch.Tensor:
        """The CPU path's decode for a JPEG the GPU decoder refused; already oriented, so the
        item's orientation is reset."""
        photo = read_photo(item.path, self.size, data=item.data)
        item.orientation = 1
        pixels = torch.frombuffer(bytearray(photo.image.tobytes()), dtype=torch.uint8)
        return pixels.view(photo.image.height, photo.image.width, 3).permute(2, 0, 1).to(self.device)

    def _resize(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) uint8 → (1, 3, size, size) float, squashed like the CPU path (no crop)."""
        x = image.unsqueeze(0).float()
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                             antialias=True)
