"""``Embedder``: photos → L2-normalised float32 vectors, one array per head.

Public API used by the library, the benchmarks and the GUI (keep it stable)::

    embedder = Embedder.load(model=None, device="auto")
    vectors = embedder.embed_files(paths, head="copy")      # (len(paths), dim) float32

Decoding runs in worker threads, overlapped with batched inference. On CUDA, plain JPEGs are
decoded on the GPU in batches (``engine.gpu_decode``; the scan asks for it through
``embed_photos``), inference runs in bf16 autocast with channels_last, and host batches go
through pinned memory with asynchronous copies.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from engine import gpu_decode
from engine.decode import DecodedPhoto, read_photo
from engine.errors import DecodeError, LookalikeError
from engine.fuse import fold_batchnorm
from engine.model_bundle import ModelBundle, load_bundle
from engine.parallel import ordered_map

log = logging.getLogger(__name__)


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` means CUDA when present, else CPU; anything else is taken literally."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LookalikeError(f"device '{device}' asked for, but no CUDA GPU is available")
    return dev


def preprocess_images(images: Sequence[Image.Image], size: int, mean: torch.Tensor,
                      std: torch.Tensor) -> torch.Tensor:
    """RGB PIL images → (n, 3, size, size) float32 on ``mean``'s device: squashed (bilinear),
    then ``(x - mean) / std`` on 0..255 values. Training caches use it too, so what a model is
    trained and evaluated on is exactly what the engine feeds it."""
    arrays = [np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
              for img in images]
    batch = torch.from_numpy(np.stack(arrays))
    if mean.device.type == "cuda":  # pinned host memory: the copy overlaps the GPU's work
        batch = batch.pin_memory().to(mean.device, non_blocking=True)
    batch = batch.to(mean.device).permute(0, 3, 1, 2).float()
    return (batch - mean) / std


class Embedder:
    def __init__(self, bundle: ModelBundle, device: str = "auto", batch_size: int | None = None,
                 workers: int | None = None, gpu_jpeg: bool | None = None):
        """``batch_size``: 32 on the CPU, 256 on CUDA unless given. ``gpu_jpeg``: decode plain
        JPEGs with ``torchvision.io.decode_jpeg`` on the device (default: only on CUDA; tests
        force it on the CPU to run that code path)."""
        self.bundle = bundle
        self.device = pick_device(device)
        self.batch_size = batch_size or (256 if self.device.type == "cuda" else 32)
        self.workers = workers
        self.gpu_jpeg = gpu_decode.usable(self.device) if gpu_jpeg is None else gpu_jpeg
        # Inference only: BatchNorm folded into the convolutions, and channels_last on the CPU
        # too (the depthwise convolutions run ~1.5x faster that way).
        net = bundle.build_network().eval()
        fold_batchnorm(net)
        self.net = net.to(self.device, memory_format=torch.channels_last)
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(bundle.mean, device=self.device).view(shape)
        self._std = torch.tensor(bundle.std, device=self.device).view(shape)
        self._jpeg = gpu_decode.JpegBatchDecoder(self.input_size, self._mean, self._std, self.device)

    @classmethod
    def load(cls, model: str | Path | None = None, device: str = "auto",
             search_dirs: tuple[Path, ...] = (), **kwargs) -> "Embedder":
        return cls(load_bundle(model, search_dirs), device=device, **kwargs)

    @property
    def model_id(self) -> str:
        return self.bundle.model_id

    @property
    def heads(self) -> list[str]:
        return self.bundle.heads

    @property
    def stored_heads(self) -> list[str]:
        """The heads a library stores (identical heads once: ``ModelBundle.storage_head``)."""
        return self.bundle.stored_heads

    @property
    def input_size(self) -> int:
        return self.bundle.input_size

    def dim(self, head: str) -> int:
        return self.net.head_dim(head)

    def threshold(self, head: str, level: str) -> float:
        return self.bundle.threshold(head, level)

    def embed_images(self, images: Sequence[Image.Image],
                     heads: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Embed RGB PIL images; returns ``{head: (n, dim) float32}``."""
        heads = tuple(heads or self.heads)
        out: dict[str, list[np.ndarray]] = {h: [] for h in heads}
        for start in range(0, len(images), self.batch_size):
            batch = self._run(images[start:start + self.batch_size], heads)
            for head in heads:
                out[head].append(batch[head])
        return {h: (np.concatenate(v) if v else np.zeros((0, self.dim(h)), np.float32))
                for h, v in out.items()}

    def embed_photos(self, photos: Sequence[DecodedPhoto], heads: Iterable[str] | None = None
                     ) -> tuple[dict[str, np.ndarray], dict[int, DecodeError]]:
        """Embed decoded photos: those with ``image`` (PIL) and those with ``jpeg`` bytes left
        for the device's decoder (``read_photo(..., keep_jpeg=embedder.gpu_jpeg)``).

        Returns ``({head: (n_ok, dim)}, {index: DecodeError})``: rows follow ``photos`` with
        the ones that failed to decode left out.
        """
        heads = tuple(heads or self.heads)
        out: dict[str, list[np.ndarray]] = {h: [] for h in heads}
        errors: dict[int, DecodeError] = {}
        for start in range(0, len(photos), self.batch_size):
            chunk = photos[start:start + self.batch_size]
            x, failed = self._photo_batch(chunk)
            errors.update({start + i: e for i, e in failed.items()})
            if len(x):
                for head, v in self._forward(x, heads).items():
                    out[head].append(v)
        return ({h: (np.concatenate(v) if v else np.zeros((0, self.dim(h)), np.float32))
                 for h, v in out.items()}, errors)

    def _photo_batch(self, photos: Sequence[DecodedPhoto]) -> tuple[torch.Tensor, dict[int, DecodeError]]:
        """One preprocessed batch in ``photos`` order, without the ones that failed."""
        on_host = [i for i, p in enumerate(photos) if p.jpeg is None]
        on_device = [i for i, p in enumerate(photos) if p.jpeg is not None]
        parts: dict[int, torch.Tensor] = {}
        if on_host:
            x = self.preprocess([photos[i].image for i in on_host])
            parts.update(zip(on_host, x))
        errors: dict[int, DecodeError] = {}
        if on_device:
            items = [gpu_decode.JpegItem(photos[i].path, photos[i].jpeg, photos[i].orientation)
                     for i in on_device]
            decoded = self._jpeg(items)
            parts.update((on_device[r], row) for r, row in zip(decoded.rows, decoded.tensor))
            errors = {on_device[r]: e for r, e in decoded.errors.items()}
        order = sorted(parts)
        if not order:
            return torch.zeros((0, 3, self.input_size, self.input_size), device=self.device), errors
        return torch.stack([parts[i] for i in order]), errors

    def embed_files(self, paths: Sequence[str | Path], head: str = "copy", *,
                    skip_errors: bool = False, errors: list | None = None) -> np.ndarray:
        """Embed files in input order; ``(len(paths), dim)`` float32, L2-normalised rows.

        An unreadable file raises ``DecodeError`` naming it. With ``skip_errors=True`` such
        files are left out of the array (which then has fewer rows, still in input order) and
        their ``DecodeError``\\ s are appended to ``errors`` when a list is given.
        """
        if head not in self.heads:
            raise LookalikeError(f"model {self.model_id} has no head '{head}' (heads: {self.heads})")
        size = self.input_size
        chunks, batch = [], []
        for path, photo, error in ordered_map(lambda p: read_photo(p, size), paths, self.workers):
            if error is not None:
                error = error if isinstance(error, DecodeError) else DecodeError(path, str(error))
                if not skip_errors:
                    raise error
                if errors is not None:
                    errors.append(error)
                continue
            batch.append(photo.image)
            if len(batch) == self.batch_size:
                chunks.append(self._run(batch, (head,))[head])
                batch = []
        if batch:
            chunks.append(self._run(batch, (head,))[head])
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim(head)), np.float32)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Squash each image to size×size (the whole photo, no crop), normalise per the card."""
        return preprocess_images(images, self.input_size, self._mean, self._std)

    def _run(self, images: Sequence[Image.Image], heads: tuple[str, ...]) -> dict[str, np.ndarray]:
        return self._forward(self.preprocess(images), heads)

    @torch.inference_mode()
    def _forward(self, x: torch.Tensor, heads: tuple[str, ...]) -> dict[str, np.ndarray]:
        x = x.contiguous(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = self.net(x, heads)
        else:
            out = self.net(x, heads)
        return {h: v.float().cpu().numpy().astype(np.float32, copy=False) for h, v in out.items()}
