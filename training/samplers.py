"""Batch samplers for metric learning: N-pair batches and m-per-class batches.

Both are ``torch.utils.data.Sampler[list[int]]`` that yield whole batches of dataset indices;
hand them to ``DataLoader(dataset, batch_sampler=sampler)``.

* :class:`NPairSampler` builds the batches of Sohn's N-pair loss and of the N-pair form of
  Wang et al.'s angular loss (ICCV 2017): N distinct classes × 2 distinct images, ordered
  ``[a0, p0, a1, p1, ...]`` so each anchor sits right before its positive.
* :class:`MPerClassSampler` builds batches of ``batch_size // m`` distinct classes × m images.

Classes and images are drawn from shuffled passes: every eligible class (and every image of a
class) is used once before any is used again, reshuffled pass after pass, and one batch never
holds a class twice. The shuffle depends only on ``(seed, epoch)``; call ``set_epoch(epoch)``
before each epoch, as with ``DistributedSampler``.

Distributed training: ``batches_per_epoch`` counts the batches of the whole epoch, over all
ranks. It is rounded up to a multiple of ``world_size``; rank r gets batches i with
``i % world_size == r``, so ranks see disjoint batches and all have the same ``len()``.
"""
from __future__ import annotations

import logging
import math
import random
from collections import defaultdict
from typing import Iterator, Sequence

from torch.utils.data import Sampler

log = logging.getLogger(__name__)


class _Pass:
    """Endless shuffled passes over distinct items; ``take(k)`` gives k distinct items."""

    def __init__(self, items: Sequence[int], rng: random.Random):
        self._items = list(items)
        self._rng = rng
        self._queue: list[int] = []
        self._pos = 0

    def take(self, k: int) -> list[int]:
        if len(self._queue) - self._pos < k:  # new pass after the leftovers, none repeated
            left = self._queue[self._pos:]
            taken = set(left)
            fresh = [x for x in self._items if x not in taken]
            self._rng.shuffle(fresh)
            self._queue, self._pos = left + fresh, 0
        out = self._queue[self._pos:self._pos + k]
        self._pos += k
        return out


class _EpochBatchSampler(Sampler[list[int]]):
    """Shared part: per-class index lists, epoch seeding and the split over ranks."""

    def __init__(self, members: dict[int, list[int]], batches_per_epoch: int | None,
                 default: int, seed: int, rank: int, world_size: int):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size); got rank={rank}, "
                             f"world_size={world_size}")
        total = default if batches_per_epoch is None else int(batches_per_epoch)
        if total < 1:
            raise ValueError(f"batches_per_epoch must be at least 1, got {batches_per_epoch}")
        self._members = members
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self.per_rank = math.ceil(total / world_size)
        self.batches_per_epoch = self.per_rank * world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(f"{type(self).__name__}/{self.seed}/{self.epoch}")
        classes = _Pass(sorted(self._members), rng)
        images = {c: _Pass(idx, rng) for c, idx in self._members.items()}
        for i in range(self.batches_per_epoch):
            batch = self._batch(classes, images, rng)  # every rank draws every batch: same stream
            if i % self.world_size == self.rank:
                yield batch

    def _batch(self, classes: _Pass, images: dict[int, _Pass], rng: random.Random) -> list[int]:
        raise NotImplementedError


def _group(labels: Sequence[int]) -> dict[int, list[int]]:
    members: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        members[int(label)].append(index)
    return dict(members)


class NPairSampler(_EpochBatchSampler):
    """Batches of ``n_classes`` distinct classes × 2 distinct images, pairs adjacent.

    Only classes with at least two images are eligible; when fewer than ``n_classes`` are
    eligible every batch uses all of them. The default epoch length is the number of images in
    eligible classes // (2 × classes per batch), at least 1.
    """

    def __init__(self, labels: Sequence[int], n_classes: int, batches_per_epoch: int | None = None,
                 seed: int = 0, rank: int = 0, world_size: int = 1):
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2 (N-pair batches need negatives), "
                             f"got {n_classes}")
        members = {c: idx for c, idx in _group(labels).items() if len(idx) >= 2}
        if len(members) < 2:
            raise ValueError(f"N-pair batches need at least 2 classes with 2 or more images; "
                             f"found {len(members)}")
        if n_classes > len(members):
            log.info("n_classes=%d but only %d classes have 2+ images; using %d per batch",
                     n_classes, len(members), len(members))
        self.n_classes = min(n_classes, len(members))
        images = sum(len(idx) for idx in members.values())
        super().__init__(members, batches_per_epoch, max(1, images // (2 * self.n_classes)),
                         seed, rank, world_size)

    def _batch(self, classes: _Pass, images: dict[int, _Pass], rng: random.Random) -> list[int]:
        return [i for c in classes.take(self.n_classes) for i in images[c].take(2)]


class MPerClassSampler(_EpochBatchSampler):
    """Batches of ``batch_size // m`` distinct classes × m images each.

    A class with fewer than m images is drawn with replacement (its images repeat in the
    batch); otherwise its m images are distinct. Default epoch length: len(labels) //
    batch_size, at least 1.
    """

    def __init__(self, labels: Sequence[int], m: int, batch_size: int,
                 batches_per_epoch: int | None = None, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        if m < 1 or batch_size < m or batch_size % m:
            raise ValueError(f"batch_size must be a positive multiple of m; got "
                             f"batch_size={batch_size}, m={m}")
        self.m, self.batch_size = m, batch_size
        self.classes_per_batch = batch_size // m
        members = _group(labels)
        if len(members) < self.classes_per_batch:
            raise ValueError(f"batch_size // m = {self.classes_per_batch} classes per batch, "
                             f"but the labels hold only {len(members)} classes")
        super().__init__(members, batches_per_epoch, max(1, len(labels) // batch_size),
                         seed, rank, world_size)

    def _batch(self, classes: _Pass, images: dict[int, _Pass], rng: random.Random) -> list[int]:
        batch: list[int] = []
        for c in classes.take(self.classes_per_batch):
            members = self._members[c]
            if len(members) < self.m:
                batch.extend(rng.choices(members, k=self.m))
            else:
                batch.extend(images[c].take(self.m))
        return batch
