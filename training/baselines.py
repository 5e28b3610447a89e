"""Perceptual-hash baselines (pHash, dHash) that plug into the evaluation like an embedder.

Classic duplicate finders compare 64-bit perceptual hashes by Hamming distance. To measure
them on exactly the same queries, distractors and metric code as the CNN (``training.evaluate``,
``training.realsets``), a hash is turned into an embedding: each bit becomes ±1/√bits, so the
dot product of two rows is 1 − 2·hamming/bits, a cosine-like similarity (identical hashes → 1,
complementary hashes → −1) that ranks pairs exactly as the Hamming distance does.

Needs the ``imagehash`` package (the ``bench`` extra of the project).
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

HEADS = ("copy", "semantic")
KINDS = ("phash", "dhash")


def _hash_function(kind: str) -> Callable:
    import imagehash  # optional dependency (bench extra): imported only when a baseline is made

    return {"phash": imagehash.phash, "dhash": imagehash.dhash}[kind]


class HashEmbedder:
    """pHash or dHash as an "embedder": ``embed_images`` gives ±1/√bits rows for every head.

    Both heads get the same rows: a hash has no notion of class, so the semantic numbers
    of a baseline only say how far plain appearance goes.
    """

    def __init__(self, kind: str = "phash", hash_size: int = 8):
        if kind not in KINDS:
            raise ValueError(f"unknown hash kind {kind!r}; choose one of {', '.join(KINDS)}")
        if hash_size < 2:
            raise ValueError(f"hash_size must be at least 2, got {hash_size}")
        self.kind, self.hash_size = kind, hash_size
        self.bits = hash_size * hash_size
        self.model_id = f"imagehash-{kind}-{self.bits}"
        self.heads = HEADS
        self._hash = _hash_function(kind)

    def hash_bits(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, bits) bool array: the flattened hash of each image, in input order."""
        rows = [np.asarray(self._hash(img, hash_size=self.hash_size).hash, bool).ravel()
                for img in images]
        return np.stack(rows) if rows else np.zeros((0, self.bits), bool)

    def embed_images(self, images: Sequence[Image.Image],
                     heads: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """``{head: (n, bits) float32}``; row·row' = 1 − 2·hamming/bits, rows have unit norm."""
        heads = tuple(heads or HEADS)
        unknown = [h for h in heads if h not in HEADS]
        if unknown:
            raise ValueError(f"{self.model_id} has no head {unknown[0]!r} (heads: {HEADS})")
        signs = np.where(self.hash_bits(images), 1.0, -1.0).astype(np.float32)
        rows = signs / np.float32(math.sqrt(self.bits))
        return {head: rows.copy() for head in heads}
