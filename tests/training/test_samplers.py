"""Tests for training.samplers: batch shape, pairing, determinism, DDP split, bad input."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from training.samplers import MPerClassSampler, NPairSampler

# 6 classes of varied size plus a singleton class 6 (not eligible for N-pair batches)
LABELS = [c for c, n in enumerate([2, 3, 5, 8, 4, 2, 1]) for _ in range(n)]


def epoch(sampler, e: int = 0) -> list[list[int]]:
    sampler.set_epoch(e)
    return list(sampler)


def check_npair_batch(batch: list[int], labels: list[int], n_classes: int) -> None:
    assert len(batch) == 2 * n_classes
    assert all(0 <= i < len(labels) for i in batch)
    anchors, positives = batch[0::2], batch[1::2]
    for a, p in zip(anchors, positives):
        assert a != p and labels[a] == labels[p]
    assert len({labels[a] for a in anchors}) == n_classes


def test_npair_batches_are_n_distinct_classes_times_two_adjacent():
    sampler = NPairSampler(LABELS, n_classes=3, batches_per_epoch=40, seed=1)
    batches = epoch(sampler)
    assert len(batches) == len(sampler) == 40
    for batch in batches:
        check_npair_batch(batch, LABELS, 3)
        assert 6 not in {LABELS[i] for i in batch}  # the singleton class is never drawn


def test_npair_covers_every_eligible_image_in_a_pass():
    sampler = NPairSampler(LABELS, n_classes=2, batches_per_epoch=200)
    used = {i for batch in epoch(sampler) for i in batch}
    assert used == {i for i, c in enumerate(LABELS) if c != 6}


def test_npair_default_epoch_length():
    eligible = sum(1 for c in LABELS if c != 6)  # 24 images in classes with 2+ images
    assert len(NPairSampler(LABELS, n_classes=3)) == eligible // 6
    assert len(NPairSampler([0, 0, 1, 1], n_classes=2)) == 1
    assert len(NPairSampler([0, 0, 1, 1, 1], n_classes=50)) == 1  # 2 classes used: 5 // 4


def test_npair_uses_all_eligible_classes_when_asked_for_more():
    sampler = NPairSampler(LABELS, n_classes=10, batches_per_epoch=5)
    assert sampler.n_classes == 6
    for batch in epoch(sampler):
        check_npair_batch(batch, LABELS, 6)


def test_npair_is_deterministic_per_seed_and_epoch():
    a = NPairSampler(LABELS, n_classes=3, batches_per_epoch=10, seed=7)
    b = NPairSampler(LABELS, n_classes=3, batches_per_epoch=10, seed=7)
    assert epoch(a, 0) == epoch(b, 0)
    assert epoch(a, 3) == epoch(b, 3)
    assert epoch(a, 0) != epoch(a, 1)
    other_seed = NPairSampler(LABELS, n_classes=3, batches_per_epoch=10, seed=8)
    assert epoch(a, 0) != epoch(other_seed, 0)
    assert epoch(a, 2) == epoch(a, 2)  # iterating twice gives the same epoch again


@pytest.mark.parametrize("world_size, total", [(2, 10), (3, 10), (4, 3)])
def test_npair_ranks_get_disjoint_equal_slices(world_size, total):
    ranks = [NPairSampler(LABELS, 3, batches_per_epoch=total, seed=5, rank=r,
                          world_size=world_size) for r in range(world_size)]
    per_rank = [epoch(s, 2) for s in ranks]
    lengths = {len(s) for s in ranks} | {len(b) for b in per_rank}
    assert lengths == {-(-total // world_size)}  # ceil: padded to equal length
    single = NPairSampler(LABELS, 3, batches_per_epoch=len(ranks[0]) * world_size, seed=5)
    full = epoch(single, 2)
    for r, batches in enumerate(per_rank):
        assert batches == full[r::world_size]  # batch i goes to rank i % world_size
    for batches in per_rank:
        for batch in batches:
            check_npair_batch(batch, LABELS, 3)


def test_npair_works_as_a_dataloader_batch_sampler():
    class Indices(Dataset):
        def __len__(self):
            return len(LABELS)

        def __getitem__(self, i):
            return i, LABELS[i]

    loader = DataLoader(Indices(), batch_sampler=NPairSampler(LABELS, 2, batches_per_epoch=4))
    batches = list(loader)
    assert len(batches) == 4
    for indices, labels in batches:
        assert indices.shape == (4,) and torch.equal(labels[0::2], labels[1::2])


@pytest.mark.parametrize("labels, n_classes, match", [
    ([0, 0, 1, 2, 3], 2, "found 1"),        # one class with 2+ images
    ([0, 1, 2, 3], 2, "found 0"),
    ([], 2, "found 0"),
    (LABELS, 1, "n_classes"),
])
def test_npair_rejects_too_few_classes(labels, n_classes, match):
    with pytest.raises(ValueError, match=match):
        NPairSampler(labels, n_classes)


@pytest.mark.parametrize("kwargs", [dict(rank=2, world_size=2), dict(rank=-1),
                                    dict(world_size=0), dict(batches_per_epoch=0)])
def test_samplers_reject_bad_rank_or_length(kwargs):
    with pytest.raises(ValueError):
        NPairSampler(LABELS, 2, **kwargs)
    with pytest.raises(ValueError):
        MPerClassSampler(LABELS, 2, 4, **kwargs)


def test_m_per_class_batches_with_small_classes():
    sampler = MPerClassSampler(LABELS, m=4, batch_size=12, batches_per_epoch=30, seed=3)
    batches = epoch(sampler)
    assert len(batches) == 30
    sizes = Counter(LABELS)
    drawn_small = False
    for batch in batches:
        assert len(batch) == 12 and all(0 <= i < len(LABELS) for i in batch)
        groups = [batch[k:k + 4] for k in range(0, 12, 4)]
        classes = [LABELS[g[0]] for g in groups]
        assert len(set(classes)) == 3
        for c, group in zip(classes, groups):
            assert {LABELS[i] for i in group} == {c}
            if sizes[c] >= 4:
                assert len(set(group)) == 4  # no repeats unless the class is too small
            else:
                drawn_small = True
                assert set(group) <= {i for i, label in enumerate(LABELS) if label == c}
    assert drawn_small


def test_m_per_class_determinism_and_ddp():
    kwargs = dict(m=2, batch_size=6, batches_per_epoch=8, seed=4)
    a, b = MPerClassSampler(LABELS, **kwargs), MPerClassSampler(LABELS, **kwargs)
    assert epoch(a, 1) == epoch(b, 1) and epoch(a, 1) != epoch(a, 2)
    assert len(MPerClassSampler(LABELS, m=2, batch_size=6)) == len(LABELS) // 6
    ranks = [MPerClassSampler(LABELS, **kwargs, rank=r, world_size=2) for r in range(2)]
    full = epoch(a, 1)
    assert [epoch(s, 1) for s in ranks] == [full[0::2], full[1::2]]
    assert len(ranks[0]) == len(ranks[1]) == 4


@pytest.mark.parametrize("m, batch_size, labels", [(3, 8, LABELS), (0, 4, LABELS),
                                                   (4, 2, LABELS), (2, 20, LABELS)])
def test_m_per_class_rejects_bad_sizes(m, batch_size, labels):
    with pytest.raises(ValueError):
        MPerClassSampler(labels, m=m, batch_size=batch_size)
