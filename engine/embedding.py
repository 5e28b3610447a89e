"""``Embedder``: photos → L2-normalised float32 vectors, one array per head.

Public API used by the library, the benchmarks and the GUI (keep it stable)::

    embedder = Embedder.load(model=None, device="auto")
    vectors = embedder.embed_files(paths, head="copy")      # (len(paths), dim) float32

Decoding runs in worker threads, overlapped with batched inference.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from engine.decode import read_photo
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
    batch = torch.from_numpy(np.stack(arrays)).to(mean.device).permute(0, 3, 1, 2).float()
    return (batch - mean) / std


class Embedder:
    def __init__(self, bundle: ModelBundle, device: str = "auto", batch_size: int = 32,
                 workers: int | None = None):
        self.bundle = bundle
        self.device = pick_device(device)
        self.batch_size = batch_size
        self.workers = workers
        # Inference only: BatchNorm folded into the convolutions, and channels_last on the CPU
        # too (the depthwise convolutions run ~1.5x faster that way).
        net = bundle.build_network().eval()
        fold_batchnorm(net)
        self.net = net.to(self.device, memory_format=torch.channels_last)
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(bundle.mean, device=self.device).view(shape)
        self._std = torch.tensor(bundle.std, device=self.device).view(shape)

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

    @torch.inference_mode()
    def _run(self, images: Sequence[Image.Image], heads: tuple[str, ...]) -> dict[str, np.ndarray]:
        x = self.preprocess(images).contiguous(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = self.net(x, heads)
        else:
            out = self.net(x, heads)
        return {h: v.float().cpu().numpy().astype(np.float32, copy=False) for h, v in out.items()}
