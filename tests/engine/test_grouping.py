"""Grouping over k-NN edges: clusters, the chain guard, odd neighbour lists, determinism."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.grouping import group_neighbours, pairwise_min, rescore_neighbours


def _normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _knn(ids: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force neighbours as an index returns them: self included, best first."""
    sims = vectors.astype(np.float64) @ vectors.astype(np.float64).T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return ids[order], np.take_along_axis(sims, order, axis=1).astype(np.float32)


def _clusters(rng: np.random.Generator, sizes: list[int], dim: int, noise: float) -> np.ndarray:
    centres = np.eye(dim)[: len(sizes)]
    rows = [c + noise * rng.standard_normal((n, dim)) for c, n in zip(centres, sizes)]
    return _normalise(np.concatenate(rows))


def _check_groups(groups: list[list[int]], vectors_by_id: dict[int, np.ndarray], floor: float,
                  max_size: int = 200) -> None:
    seen: set[int] = set()
    for g in groups:
        assert 2 <= len(g) <= max_size and g == sorted(g)
        assert not seen & set(g), "groups overlap"
        seen |= set(g)
        assert pairwise_min(np.stack([vectors_by_id[i] for i in g])) >= floor - 1e-6
    assert [g[0] for g in groups] == sorted(g[0] for g in groups)


def test_pairwise_min():
    assert pairwise_min(np.zeros((1, 3))) == 1.0
    assert pairwise_min(np.zeros((0, 3))) == 1.0
    v = _normalise([[1, 0], [0, 1], [1, 1]])
    assert pairwise_min(v) == pytest.approx(0.0, abs=1e-7)


def test_two_tight_clusters_and_a_singleton():
    rng = np.random.default_rng(0)
    vectors = _clusters(rng, [3, 4, 1], dim=8, noise=0.02)
    ids = np.array([10, 11, 12, 20, 21, 22, 23, 30], dtype=np.int64)
    nb_ids, nb_sims = _knn(ids, vectors, k=5)
    groups = group_neighbours(ids, vectors, nb_ids, nb_sims, threshold=0.9)
    assert groups == [[10, 11, 12], [20, 21, 22, 23]]


def _chain(n: int = 6, step_deg: float = 10.0):
    angles = np.radians(step_deg * np.arange(n))
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    return np.arange(n, dtype=np.int64), vectors


def test_chain_does_not_glue_into_one_group():
    ids, vectors = _chain()
    nb_ids, nb_sims = _knn(ids, vectors, k=3)
    threshold = math.cos(math.radians(12))
    groups = group_neighbours(ids, vectors, nb_ids, nb_sims, threshold)
    assert [0, 1, 2, 3, 4, 5] not in groups
    assert len(groups) >= 2
    _check_groups(groups, dict(zip(ids.tolist(), vectors)), floor=threshold - 0.05)
    # Without the guard the same edges do make one chain: the guard is what splits it.
    unguarded = group_neighbours(ids, vectors, nb_ids, nb_sims, threshold, link_floor=-1.0)
    assert unguarded == [[0, 1, 2, 3, 4, 5]]


def test_explicit_link_floor_is_used():
    ids, vectors = _chain(n=3)
    nb_ids, nb_sims = _knn(ids, vectors, k=3)
    threshold = math.cos(math.radians(12))
    loose = group_neighbours(ids, vectors, nb_ids, nb_sims, threshold,
                             link_floor=math.cos(math.radians(25)))
    strict = group_neighbours(ids, vectors, nb_ids, nb_sims, threshold,
                              link_floor=math.cos(math.radians(15)))
    assert loose == [[0, 1, 2]]
    assert len(strict) == 1 and len(strict[0]) == 2


def test_unknown_labels_padding_and_self_are_ignored():
    ids = np.array([5, 7, 9], dtype=np.int64)
    vectors = _normalise([[1, 0, 0], [0.999, 0.04, 0], [0, 0, 1]])
    nb_ids = np.array([[5, 7, -1], [7, 5, 999], [9, 9, 12345]], dtype=np.int64)
    nb_sims = np.array([[1.0, 0.999, 1.0], [1.0, 0.999, 0.99], [1.0, 1.0, 0.99]],
                       dtype=np.float32)
    assert group_neighbours(ids, vectors, nb_ids, nb_sims, threshold=0.95) == [[5, 7]]


def test_only_self_neighbours_give_no_groups():
    ids = np.array([1, 2], dtype=np.int64)
    vectors = _normalise([[1, 0], [1, 0.01]])
    nb_ids = np.array([[1, -1], [2, -1]], dtype=np.int64)
    nb_sims = np.array([[1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    assert group_neighbours(ids, vectors, nb_ids, nb_sims, threshold=0.5) == []


def test_below_threshold_edges_are_not_candidates():
    ids = np.array([1, 2], dtype=np.int64)
    vectors = _normalise([[1, 0], [1, 0.5]])
    nb_ids, nb_sims = _knn(ids, vectors, k=2)
    assert group_neighbours(ids, vectors, nb_ids, nb_sims, threshold=0.95) == []
    assert group_neighbours(ids, vectors, nb_ids, nb_sims, threshold=0.85) == [[1, 2]]


def test_max_group_size_is_respected():
    rng = np.random.default_rng(1)
    vectors = _clusters(rng, [7], dim=4, noise=0.01)
    ids = np.arange(100, 107, dtype=np.int64)
    nb_ids, nb_sims = _knn(ids, vectors, k=7)
    groups = group_neighbours(ids, vectors, nb_ids, nb_sims, 0.9, max_group_size=3)
    assert groups and all(len(g) <= 3 for g in groups)
    assert group_neighbours(ids, vectors, nb_ids, nb_sims, 0.9) == [ids.tolist()]


def test_mismatched_shapes_raise():
    ids = np.array([1, 2], dtype=np.int64)
    vectors = _normalise([[1, 0], [0, 1]])
    nb_ids, nb_sims = _knn(ids, vectors, k=2)
    with pytest.raises(ValueError):
        group_neighbours(ids[:1], vectors, nb_ids, nb_sims, 0.9)
    with pytest.raises(ValueError):
        group_neighbours(ids, vectors, nb_ids[:, :1], nb_sims, 0.9)
    with pytest.raises(ValueError):
        group_neighbours(np.array([1, 1]), vectors, nb_ids, nb_sims, 0.9)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4),
       noise=st.floats(0.0, 0.4), threshold=st.floats(0.7, 0.99),
       max_size=st.integers(2, 8), k=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_groups_are_tight_disjoint_and_order_free(sizes, noise, threshold, max_size, k, seed):
    rng = np.random.default_rng(seed)
    vectors = _clusters(rng, sizes, dim=6, noise=noise)
    n = vectors.shape[0]
    ids = rng.choice(10_000, size=n, replace=False).astype(np.int64)
    nb_ids, nb_sims = _knn(ids, vectors, k=min(k, n))
    groups = group_neighbours(ids, vectors, nb_ids, nb_sims, threshold, max_group_size=max_size)
    _check_groups(groups, dict(zip(ids.tolist(), vectors)), threshold - 0.05, max_size)

    perm = rng.permutation(n)
    shuffled = group_neighbours(ids[perm], vectors[perm], nb_ids[perm], nb_sims[perm],
                                threshold, max_group_size=max_size)
    assert shuffled == groups


def test_rescore_neighbours_gives_exact_cosines_and_keeps_unknown_labels():
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((50, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(100, 150)[::-1].copy()  # labels in no particular order
    nids = np.stack([ids[(np.arange(50) + s) % 50] for s in (1, 2, 3)], axis=1)
    nids[0, 2] = 999  # gone from the library: keeps the index's score
    approx = np.full(nids.shape, 0.5, np.float32)
    out = rescore_neighbours(ids, vectors, nids, approx, chunk=7)
    row_of = {int(label): row for row, label in enumerate(ids)}
    for r in range(50):
        for c in range(3):
            want = 0.5 if nids[r, c] == 999 else float(vectors[r] @ vectors[row_of[int(nids[r, c])]])
            assert out[r, c] == pytest.approx(want, abs=1e-6)
    assert approx[0, 0] == 0.5  # the input is not changed
