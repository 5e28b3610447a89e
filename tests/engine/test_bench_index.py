"""benchmarks/bench_index.py: its vector generator, exact search and recall (nothing is timed)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: benchmarks/

from benchmarks.bench_index import (  # noqa: E402
    clustered_vectors, cosine_profile, exact_knn, planted_recovery, real_vectors, recall_at_k)

N, DIM = 3000, 64


@pytest.fixture(scope="module")
def synthetic():
    return clustered_vectors(N, DIM, seed=3)


def test_generated_vectors_are_unit_float32_rows(synthetic):
    vectors, cluster, dup_group = synthetic
    assert vectors.shape == (N, DIM) and vectors.dtype == np.float32
    assert cluster.shape == dup_group.shape == (N,)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_near_duplicate_groups_are_small_and_very_close(synthetic):
    vectors, _, dup_group = synthetic
    labels, sizes = np.unique(dup_group[dup_group >= 0], return_counts=True)
    assert len(labels) > 0 and sizes.min() >= 2 and sizes.max() <= 5
    assert 0.05 * N <= sizes.sum() <= 0.1 * N
    for label in labels:
        members = vectors[dup_group == label]
        sims = members @ members.T
        assert sims[~np.eye(len(members), dtype=bool)].min() > 0.9


def test_cosines_look_like_embeddings(synthetic):
    profile = cosine_profile(*synthetic, pairs=5000)
    assert -0.1 < profile["unrelated"]["p50"] < 0.3 and profile["unrelated"]["p95"] < 0.35
    assert 0.45 < profile["same_cluster"]["p50"] < 0.75
    assert profile["near_duplicate"]["p5"] > 0.9


def test_generator_is_seeded(synthetic):
    again, _, _ = clustered_vectors(N, DIM, seed=3)
    other, _, _ = clustered_vectors(N, DIM, seed=4)
    assert np.array_equal(again, synthetic[0]) and not np.array_equal(other, synthetic[0])


def test_exact_search_matches_a_full_sort_across_chunks(synthetic):
    vectors = synthetic[0]
    queries = vectors[:50]
    labels, sims = exact_knn(vectors, queries, 10, chunk=257)  # the top 10 spans chunks
    full = queries @ vectors.T
    assert np.array_equal(labels, np.argsort(-full, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(sims, np.take_along_axis(full, labels, axis=1), rtol=1e-6)
    assert np.array_equal(labels[:, 0], np.arange(50))  # a member is its own nearest
    assert (np.diff(sims, axis=1) <= 0).all()


def test_recall_of_exact_search_against_itself_is_one(synthetic):
    vectors = synthetic[0]
    truth, _ = exact_knn(vectors, vectors[:100], 10)
    assert recall_at_k(truth, truth, 10) == 1.0
    assert recall_at_k(truth[:, ::-1], truth, 10) == 1.0  # order within the top k is free


def test_recall_of_wrong_answers_is_below_one(synthetic):
    vectors = synthetic[0]
    truth, _ = exact_knn(vectors, vectors[:100], 20)
    shifted = truth[:, 5:15]  # half right, half the 11th-15th
    assert recall_at_k(shifted, truth[:, :10], 10) == pytest.approx(0.5)
    padded = truth[:, :10].copy()
    padded[:, 7:] = -1  # padding (-1) never counts
    assert recall_at_k(padded, truth[:, :10], 10) == pytest.approx(0.7)
    assert recall_at_k(np.full((100, 10), -1), truth[:, :10], 10) == 0.0


def test_planted_recovery_counts_pairs_and_pure_groups():
    dup_group = np.array([0, 0, 0, 1, 1, -1, -1])
    result = planted_recovery([[0, 1], [3, 4, 5]], dup_group)
    assert result["planted_pairs"] == 4  # 3 pairs in group 0, 1 in group 1
    assert result["pair_recall"] == pytest.approx(2 / 4)
    assert result["pure_groups"] == pytest.approx(1 / 2)


def test_real_vectors_repeat_with_small_noise(tmp_path):
    base = np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32) * 3
    np.save(tmp_path / "emb.npy", base)
    vectors, cluster, dup_group = real_vectors(tmp_path / "emb.npy", 100, noise=0.1)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    unit = base / np.linalg.norm(base, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors[:40], unit, atol=1e-6)
    assert (np.einsum("ij,ij->i", vectors[40:], unit[np.arange(40, 100) % 40]) > 0.98).all()
    assert (cluster == -1).all() and np.array_equal(dup_group, np.arange(100) % 40)


def test_real_embeddings_are_drawn_from_both_splits_evenly(tmp_path):
    from benchmarks.real_embeddings import pick

    rows = ["class,split,images"]
    for cls, split in [("a", "train"), ("b", "train"), ("c", "test"), ("d", "test")]:
        rows.append(f"{cls},{split},5")
        (tmp_path / cls).mkdir()
        for i in range(5):
            (tmp_path / cls / f"image_{i:04d}.jpg").write_bytes(b"")
    (tmp_path / "split.csv").write_text("\n".join(rows) + "\n")
    picked = pick(tmp_path, 8)
    assert len(picked) == len(set(picked)) == 8
    assert sorted(p.parent.name for p in picked) == ["a", "a", "b", "b", "c", "c", "d", "d"]


def test_the_default_models_storage_is_measured_at_each_stored_heads_size(capsys):
    from benchmarks import bench_index

    from engine.model_bundle import load_bundle

    bundle = load_bundle()
    d = bench_index.measure_default_model(300)
    assert d["dims"] == {h: bundle.head_dim(h) for h in bundle.stored_heads} and d["model"] == bundle.model_id
    assert d["total_bytes_per_photo"] == d["index_bytes_per_photo"] + d["catalog_bytes_per_photo"]
    # each stored vector is at least its 8-bit codes in the index and again in the catalog
    assert d["index_bytes_per_photo"] > sum(d["dims"].values())
    assert d["catalog_bytes_per_photo"] > sum(dim + 4 for dim in d["dims"].values())
    bench_index.print_bytes([], bench_index.measure_catalog(50, 16), d)
    assert f"The default model {bundle.model_id}" in capsys.readouterr().out
