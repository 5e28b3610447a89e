"""Data for one training run: the labeled folder, its class-disjoint validation part, the
N-pair batches for the semantic head and the two-view batches for the copy head."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from engine.errors import LookalikeError
from training.augment import AugmentConfig, CopyAugment, GPUAugment, SupervisedAugment
from training.config import TrainConfig
from training.datasets import (CopyViewsDataset, ImageCache, LabeledFolder, PairViewsDataset,
                               caltech_folder, collate_views, load_labeled_folder, split_classes)
from training.samplers import NPairSampler


class _RawViews(Dataset):
    """For GPU augmentation: item i → (uint8 (2,3,S,S) — the photo twice, i)."""

    def __init__(self, cache: ImageCache, size: int):
        self.cache, self.size = cache, size

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int):
        img = self.cache.get(i).resize((self.size, self.size))
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
        return torch.stack([x, x]), i


@dataclass
class TrainData:
    config: TrainConfig
    train: LabeledFolder
    val: LabeledFolder
    loaders: dict[str, DataLoader] = field(default_factory=dict)
    samplers: list = field(default_factory=list)
    gpu_augment: GPUAugment | None = None
    device: torch.device = torch.device("cpu")
    steps_per_epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        for s in self.samplers:
            s.set_epoch(epoch)
        if self.gpu_augment is not None:  # one stream per epoch: each batch draws new parameters
            self._generator = torch.Generator(device=self.device)
            self._generator.manual_seed(self.config.seed * 1_000_003 + epoch)

    def batches(self, skip: int = 0) -> Iterator[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """This epoch's batches; the first ``skip`` are drawn and dropped (resuming mid-epoch)."""
        iters = {head: iter(loader) for head, loader in self.loaders.items()}
        for _ in range(skip):
            for it in iters.values():
                next(it)
        for _ in range(self.steps_per_epoch - skip):
            out = {}
            for head, it in iters.items():
                images, labels = next(it)
                if head == "copy" and self.gpu_augment is not None:
                    images = self._augment_on_device(images)
                out[head] = (images, labels)
            yield out

    def _augment_on_device(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.gpu_augment(images.to(self.device, non_blocking=True).float(), self._generator)


def load_folder(config: TrainConfig) -> LabeledFolder:
    root = Path(config.data)
    if config.data_split or (root / "split.csv").exists():
        return caltech_folder(root, config.data_split or "train")
    return load_labeled_folder(root)


def build_data(config: TrainConfig, rank: int, world: int, device: torch.device) -> TrainData:
    folder = load_folder(config)
    train, val = split_classes(folder, config.val_fraction, config.seed)
    data = TrainData(config, train, val, device=device)
    cache = ImageCache(train.paths, int(config.image_size * 1.15))
    cache.preload()  # decode once in the main process; loader workers then share the arrays
    heads = config.trained_heads()
    steps = []
    if "semantic" in heads:
        sampler = NPairSampler(train.labels, config.n_classes, config.steps_per_epoch, config.seed, rank, world)
        aug = SupervisedAugment(AugmentConfig(size=config.image_size))
        ds = PairViewsDataset(cache, train.labels, aug, config.seed)
        data.loaders["semantic"] = DataLoader(ds, batch_sampler=sampler, num_workers=config.workers,
                                              persistent_workers=False)
        data.samplers += [sampler, ds]
        steps.append(len(sampler))
    if "copy" in heads:
        use_gpu = config.gpu_augment if config.gpu_augment is not None else device.type == "cuda"
        if use_gpu:
            ds = _RawViews(cache, int(config.image_size * 1.15))
            data.gpu_augment = GPUAugment(AugmentConfig(size=config.image_size)).to(device)
        else:
            ds = CopyViewsDataset(cache, CopyAugment(AugmentConfig(size=config.image_size)), config.seed)
            data.samplers.append(ds)
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=config.seed, drop_last=True)
        data.samplers.append(sampler)
        data.loaders["copy"] = DataLoader(ds, batch_size=config.copy_batch, sampler=sampler, drop_last=True,
                                          num_workers=config.workers, collate_fn=collate_views)
        steps.append(len(sampler) // config.copy_batch)
    if min(steps) == 0:
        raise LookalikeError(f"{config.data}: too few photos for one batch of {config.copy_batch} "
                             "(lower --copy-batch or add photos)")
    data.steps_per_epoch = min(steps + ([config.steps_per_epoch] if config.steps_per_epoch else []))
    return data
