"""Cached fork activations: train what sits above a frozen lower trunk at a tenth of the cost.

In the shipped model the lower trunk (stem and the first stages) is frozen and shared by both
heads (``engine.network``: ``branches``). Its output for a given augmented view therefore
never changes during training, so it is computed once per view, kept as float16, and every
step runs only the part being trained: the ``copy`` head's own branch (last trunk stages,
GeM, projection) or the ``semantic`` projection over the frozen ImageNet top. On the 2-core
development machine a step then costs about a tenth of a full forward and backward pass,
which is what makes the default model reproducible on a CPU in about an hour; and every
ablation of the semantic head runs on the very same features at the same budget.

The views are made with the engine's own preprocessing (``preprocess_images``: squash-resize,
(x − 127) / 128), so cached and end-to-end embeddings agree (tested).
"""
from __future__ import annotations

import random
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from engine.embedding import preprocess_images
from engine.network import EmbeddingNet
from engine.parallel import ordered_map
from engine.progress import ProgressCallback, null_progress, wants_stop
from engine.errors import Cancelled
from training.datasets import derive_seed

BATCH = 64
MEAN, STD = torch.full((1, 3, 1, 1), 127.0), torch.full((1, 3, 1, 1), 128.0)

ViewFn = Callable[[Image.Image, random.Random], Image.Image]


def _batches(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(start + size, n))


@torch.inference_mode()
def lower_activations(net: EmbeddingNet, images: Sequence[Image.Image], size: int,
                      turn: int = 0) -> torch.Tensor:
    """(n, C, h, w) float16 output of the shared lower trunk for PIL images (engine preprocessing),
    turned by ``turn`` quarter turns after preprocessing as ``EmbeddingNet.forward`` turns them."""
    x = preprocess_images(images, size, MEAN, STD)
    if turn % 4:
        x = torch.rot90(x, turn % 4, dims=(2, 3))
    x = x.contiguous(memory_format=torch.channels_last)
    return net.lower(x).to(torch.float16).contiguous()


def view_activations(net: EmbeddingNet, get_image: Callable[[int], Image.Image], count: int,
                     views: int, make_view: ViewFn | None, size: int, seed: int = 0,
                     progress: ProgressCallback = null_progress, what: str = "views",
                     turn: int = 0) -> torch.Tensor:
    """(count, views, C, h, w) float16: ``views`` augmented views of each image through the
    lower trunk. View ``v`` of image ``i`` is seeded by (seed, i, v); with ``make_view=None``
    the single view is the image itself. Augmentation runs in threads beside the model.
    ``turn``: every view turned by that many quarter turns (``lower_activations``)."""
    if make_view is None and views != 1:
        raise ValueError("without make_view there is exactly one view per image")
    net = net.eval()

    def make(job: tuple[int, int]) -> Image.Image:
        i, v = job
        image = get_image(i)
        return image if make_view is None else make_view(image, random.Random(derive_seed(seed, i, v)))

    jobs = [(i, v) for i in range(count) for v in range(views)]
    out: torch.Tensor | None = None
    made = ordered_map(make, jobs)
    try:
        for rows in _batches(len(jobs), BATCH):
            images = []
            for _, image, error in (next(made) for _ in rows):
                if error is not None:
                    raise error
                images.append(image)
            acts = lower_activations(net, images, size, turn)
            if out is None:
                out = torch.empty((len(jobs), *acts.shape[1:]), dtype=torch.float16)
            out[rows.start:rows.stop] = acts
            if wants_stop(progress, rows.stop, len(jobs), what):
                raise Cancelled(f"stopped while computing {what}")
    finally:
        made.close()
    return out.view(count, views, *out.shape[1:])


@torch.inference_mode()
def embed_activations(net: EmbeddingNet, acts: torch.Tensor, head: str, batch: int = 256) -> np.ndarray:
    """L2-normalised (n, dim) float32 ``head`` embeddings from (n, C, h, w) lower activations."""
    net = net.eval()
    parts = [net.embed_from(acts[r.start:r.stop].float().contiguous(memory_format=torch.channels_last),
                            (head,))[head]
             for r in _batches(len(acts), batch)]
    return torch.cat(parts).numpy().astype(np.float32, copy=False)


def average_turns(vectors: Callable[[int], np.ndarray], turns: int) -> np.ndarray:
    """The normalised mean of ``vectors(k)`` over the ``turns`` quarter turns ``k`` that
    ``EmbeddingNet.forward`` averages a head over (1: ``vectors(0)`` as it is)."""
    if turns == 1:
        return vectors(0)
    total = sum(vectors(k) for k in range(0, 4, 4 // turns))
    return total / np.linalg.norm(total, axis=1, keepdims=True)


def embed_turned(net: EmbeddingNet, turned: Callable[[int], torch.Tensor], head: str) -> np.ndarray:
    """``head``'s vectors as the engine reads photos: averaged over the quarter turns the head
    is averaged over (``net.turns(head)``); ``turned(k)`` gives the lower activations of the
    photos turned by ``k`` quarter turns (``view_activations(..., turn=k)``)."""
    return average_turns(lambda k: embed_activations(net, turned(k), head), net.turns(head))


@torch.no_grad()  # not inference_mode: a projection head trains on these tensors
def pooled_features(net: EmbeddingNet, acts: torch.Tensor, head: str | None = None,
                    batch: int = 256) -> torch.Tensor:
    """(n, 1280) float32 pooled features of ``head``'s top (None: the shared top) before its
    projection: what a projection head is trained on when everything below it is frozen."""
    net = net.eval()
    parts = []
    for r in _batches(len(acts), batch):
        h = acts[r.start:r.stop].float().contiguous(memory_format=torch.channels_last)
        parts.append(net.upper(h) if head is None else net.branch_features(head, h))
    return torch.cat(parts).float()
