"""Labelled photo folders and the torch datasets that feed the embedding CNN's training.

Photos are found by content (``engine.scan.sniff_format``): a JPEG named ``.txt`` counts, a
text file named ``.jpg`` does not; what is left out is reported with the reason. Validation
holds out whole classes (:func:`split_classes`). :class:`ImageCache` keeps small folders
decoded in memory; with ``DataLoader(num_workers>0)`` call ``preload()`` before the workers
start, so they share the decoded arrays instead of each decoding its own copy.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import os
import random
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from engine.decode import read_photo
from engine.errors import FileError
from engine.parallel import ordered_map
from engine.progress import ProgressCallback, null_progress, wants_stop
from engine.scan import sniff_format

log = logging.getLogger(__name__)

NOT_IN_LABEL_FOLDER = "not inside a label folder"
_SNIFF_BYTES = 32


@dataclass
class LabeledFolder:
    root: Path
    paths: list[Path]
    labels: list[int]                # index into ``classes``
    classes: list[str]               # subfolder path relative to root, "/"-separated
    ignored: list[tuple[Path, str]] = field(default_factory=list)  # (file, why it was left out)
    singletons: list[str] = field(default_factory=list)  # one-image classes, left out


def load_labeled_folder(root: str | Path) -> LabeledFolder:
    """Read ``root``: one subfolder per label, images found by content, sorted throughout.

    Raises ``FileError`` (a ``LookalikeError``) naming ``root`` when it is missing or holds
    fewer than two classes with two or more images.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileError(root, "labelled folder not found (or not a folder)")
    found, ignored = _find_images(root, [root])
    return _assemble(root, found, ignored)


def _find_images(root: Path, tops: Sequence[Path]) -> tuple[list[tuple[Path, str]], list]:
    """Walk ``tops``; return (image path, label) pairs and the (path, reason) left out."""
    found: list[tuple[Path, str]] = []
    ignored: list[tuple[Path, str]] = []

    def unreadable(exc: OSError) -> None:
        ignored.append((Path(exc.filename), f"cannot list folder ({exc.strerror or exc})"))

    for top in tops:
        for folder, dirs, files in os.walk(top, onerror=unreadable):
            dirs.sort()
            here = Path(folder)
            for name in sorted(files):
                path = here / name
                reason = _not_an_image(path)
                if reason is None and here == root:
                    reason = NOT_IN_LABEL_FOLDER
                if reason is None:
                    found.append((path, here.relative_to(root).as_posix()))
                else:
                    ignored.append((path, reason))
    return found, ignored


def _not_an_image(path: Path) -> str | None:
    """Why ``path`` is not a photo, or None when its first bytes carry an image signature."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        if info.st_size == 0:
            return "empty file (0 bytes)"
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    if sniff_format(head) is None:
        return "not an image (its content is not a known image format)"
    return None


def _assemble(root: Path, found: list[tuple[Path, str]], ignored: list) -> LabeledFolder:
    by_class: dict[str, list[Path]] = {}
    for path, label in found:
        by_class.setdefault(label, []).append(path)
    singletons = sorted(c for c, paths in by_class.items() if len(paths) == 1)
    classes = sorted(c for c, paths in by_class.items() if len(paths) >= 2)
    if singletons:
        log.info("%s: %d classes hold a single image and are left out: %s",
                 root, len(singletons), ", ".join(singletons[:10]))
    if len(classes) < 2:
        raise FileError(root, f"needs at least 2 label folders with 2 or more images each; "
                              f"found {len(classes)} (and {len(singletons)} with one image)")
    paths, labels = [], []
    for label, name in enumerate(classes):
        members = sorted(by_class[name])
        paths.extend(members)
        labels.extend([label] * len(members))
    return LabeledFolder(root, paths, labels, classes, sorted(ignored), singletons)


def split_classes(folder: LabeledFolder, val_fraction: float = 0.2, seed: int = 0,
                  min_val_classes: int = 2) -> tuple[LabeledFolder, LabeledFolder]:
    """Hold out a seeded random subset of whole classes: (train, val), labels re-indexed.

    With 4 or more classes, val gets ``round(n * val_fraction)`` classes but at least
    ``min_val_classes``, and train keeps at least 2. With fewer than 4, val is empty. The
    folder's reports (``ignored``, ``singletons``) stay with the train part.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(folder.classes)
    n_val = min(n - 2, max(min_val_classes, round(n * val_fraction))) if n >= 4 else 0
    chosen = set(random.Random(seed).sample(range(n), n_val))
    train = _subset(folder, [c for c in range(n) if c not in chosen], keep_reports=True)
    return train, _subset(folder, sorted(chosen), keep_reports=False)


def _subset(folder: LabeledFolder, keep: list[int], keep_reports: bool) -> LabeledFolder:
    new_label = {old: new for new, old in enumerate(keep)}
    pairs = [(p, new_label[c]) for p, c in zip(folder.paths, folder.labels) if c in new_label]
    return LabeledFolder(folder.root, [p for p, _ in pairs], [c for _, c in pairs],
                         [folder.classes[c] for c in keep],
                         list(folder.ignored) if keep_reports else [],
                         list(folder.singletons) if keep_reports else [])


def caltech_folder(dataset: Path, split: str) -> LabeledFolder:
    """The classes of ``split`` in a Caltech-101 folder (``split.csv``: class,split,images)."""
    dataset = Path(dataset)
    rows = _read_split_table(dataset / "split.csv")
    chosen = [row for row in rows if row["split"] == split]
    if not chosen:
        raise FileError(dataset / "split.csv", f"no class in split {split!r}; the splits are "
                                               f"{sorted({row['split'] for row in rows})}")
    tops = [dataset / row["class"] for row in chosen]
    for top in tops:
        if not top.is_dir():
            raise FileError(top, f"class folder of split {split!r} is missing")
    found, ignored = _find_images(dataset, tops)
    return _assemble(dataset, found, ignored)


def _read_split_table(table: Path) -> list[dict[str, str]]:
    try:
        with open(table, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise FileError(table, f"cannot read the split table ({exc.strerror or exc})") from exc
    if not rows or not {"class", "split"} <= set(rows[0]):
        raise FileError(table, "expected a CSV table with columns class,split,images")
    return rows


class ImageCache:
    """Photos decoded once to RGB with the shorter side == ``size`` (aspect kept).

    Resident caches keep each photo as a read-only uint8 array after its first ``get`` (or
    after ``preload``); others decode on every ``get``. ``resident=None`` decides by the
    estimated size, ``len(paths) * size² * 1.5 * 3`` bytes, against ``max_bytes``. A file
    that cannot be decoded raises ``engine.errors.DecodeError`` naming it.
    """

    def __init__(self, paths: Sequence[Path], size: int, resident: bool | None = None,
                 max_bytes: int = 2 * 1024**3):
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.paths = [Path(p) for p in paths]
        self.size = int(size)
        estimate = len(self.paths) * self.size * self.size * 1.5 * 3
        self.resident = estimate <= max_bytes if resident is None else bool(resident)
        self._arrays: list[np.ndarray | None] = [None] * len(self.paths)
        self._lock = threading.Lock()
        log.debug("image cache: %d photos at %d px, about %.0f MB, resident=%s",
                  len(self.paths), self.size, estimate / 1e6, self.resident)

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, i: int) -> Image.Image:
        if not self.resident:
            return self.decode(i)
        array = self._arrays[i]
        if array is None:
            array = self._store(i, np.asarray(self.decode(i)))
        return Image.fromarray(array)

    def decode(self, i: int) -> Image.Image:
        """Decode photo ``i`` from its file, ignoring the cache."""
        image = read_photo(self.paths[i], self.size).image
        return _shorter_side_to(image, self.size)

    def preload(self, workers: int | None = None,
                progress: ProgressCallback = null_progress) -> bool:
        """Decode every photo not yet cached, in threads; False when ``progress`` stopped it."""
        if not self.resident:
            return True
        todo = [i for i, array in enumerate(self._arrays) if array is None]
        results = ordered_map(lambda i: np.asarray(self.decode(i)), todo, workers)
        try:
            for done, (i, array, error) in enumerate(results, 1):
                if error is not None:
                    raise error
                self._store(i, array)
                if wants_stop(progress, done, len(todo), str(self.paths[i])):
                    return False
        finally:
            results.close()
        return True

    def _store(self, i: int, array: np.ndarray) -> np.ndarray:
        array.setflags(write=False)
        with self._lock:  # two threads may decode the same photo; the first one is kept
            if self._arrays[i] is None:
                self._arrays[i] = array
            return self._arrays[i]


def _shorter_side_to(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    scale = size / min(width, height)
    target = (max(size, round(width * scale)), max(size, round(height * scale)))
    if target == image.size:
        return image
    return image.resize(target, Image.Resampling.BICUBIC)


class PairViewsDataset(Dataset):
    """Supervised: item i is ``(transform(photo i), label i)``; batch it with a sampler.

    Like ``CopyViewsDataset``, item i at epoch e always gets the same augmentation (its
    random stream is seeded from ``(seed, e, i)``), so a resumed run repeats a straight one.
    """

    def __init__(self, cache: ImageCache, labels: Sequence[int],
                 transform: Callable[..., torch.Tensor], seed: int = 0):
        if len(labels) != len(cache):
            raise ValueError(f"{len(labels)} labels for {len(cache)} photos")
        self.cache, self.transform, self.seed, self.epoch = cache, transform, seed, 0
        self.labels = [int(label) for label in labels]
        self.takes_rng = bool(getattr(transform, "takes_rng", False))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        seed = derive_seed("pair-views", self.seed, self.epoch, i)
        image = self.cache.get(i)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            x = self.transform(image, random.Random(seed)) if self.takes_rng else self.transform(image)
        return x, self.labels[i]


class CopyViewsDataset(Dataset):
    """Self-supervised copy detection: item i is ``(stack of 2 views of photo i, i)``.

    The two views are two independent draws of ``transform``. Item i at epoch e always gets
    the same views: its random stream is seeded from ``(seed, e, i)`` through BLAKE2b (no
    ``hash()``), both as a ``random.Random`` and as torch's CPU generator (forked, so the
    caller's torch random state is left as it was; torchvision's random transforms draw
    from it). A transform with a true ``takes_rng`` attribute is called as
    ``transform(image, rng)`` with that ``random.Random``; others as ``transform(image)``.
    """

    def __init__(self, cache: ImageCache, transform: Callable[..., torch.Tensor], seed: int = 0):
        self.cache, self.transform, self.seed = cache, transform, int(seed)
        self.takes_rng = bool(getattr(transform, "takes_rng", False))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.cache.get(i)
        seed = derive_seed("copy-views", self.seed, self.epoch, i)
        rng = random.Random(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            views = [self._view(image, rng) for _ in range(2)]
        return torch.stack(views), i

    def _view(self, image: Image.Image, rng: random.Random) -> torch.Tensor:
        return self.transform(image, rng) if self.takes_rng else self.transform(image)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts``, the same in every process (BLAKE2b, not ``hash()``)."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def collate_views(batch: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """CopyViewsDataset items → images (2B, C, H, W) as [a0, p0, a1, p1, ...], labels (2B,)."""
    if not batch:
        raise ValueError("cannot collate an empty batch")
    images = torch.cat([views for views, _ in batch])
    labels = torch.tensor([index for _, index in batch for _ in range(2)], dtype=torch.long)
    return images, labels
