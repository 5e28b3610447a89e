"""VectorIndex against brute force, plus growth, deletion, persistence and concurrency.

The index stores 8-bit codes: scores are within ``QUANT`` of the exact cosine and exactly the
query's inner product with ``vectors()`` (the decoded codes)."""
from __future__ import annotations

import json
import re
import struct
import threading

import numpy as np
import pytest

from engine.errors import VectorIndexError
from engine.index import VectorIndex, expanded_queries

DIM = 64
QUANT = 0.01  # |score - exact cosine| with 8-bit codes over [-1, 1] (typically ~0.002)
CODE = 1 / 255  # |decoded - original| per component


def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    data = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


def exact_top_k(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ data.T), axis=1)[:, :k]


def build(n: int, seed: int = 0, **kwargs) -> tuple[VectorIndex, np.ndarray]:
    data = unit_vectors(n, seed=seed)
    index = VectorIndex(DIM, **kwargs)
    index.add(np.arange(n), data)
    return index, data


@pytest.fixture(scope="module")
def big() -> tuple[VectorIndex, np.ndarray]:
    return build(2000, model_id="test-model", head="copy")


def test_recall_and_similarities_match_brute_force(big):
    index, data = big
    queries = unit_vectors(200, seed=1)
    labels, sims = index.query(queries, k=10)
    truth = exact_top_k(data, queries, 10)
    recall = np.mean([len(set(row) & set(true)) / 10 for row, true in zip(labels, truth)])
    assert recall >= 0.95, recall
    assert labels.dtype == np.int64 and sims.dtype == np.float32
    exact = np.einsum("nd,nkd->nk", queries, data[labels])
    np.testing.assert_allclose(sims, exact, atol=QUANT)
    decoded = np.einsum("nd,nkd->nk", queries, index.vectors(labels.ravel()).reshape(*labels.shape, DIM))
    np.testing.assert_allclose(sims, decoded, atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-6).all()
    labels, sims = index.query(data[:50], k=1)
    assert (labels[:, 0] == np.arange(50)).all()
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=QUANT)
    np.testing.assert_allclose(index.vectors([3, 7]), data[[3, 7]], atol=CODE)


def test_capacity_grows_past_initial_capacity():
    index = VectorIndex(DIM, initial_capacity=16)
    data = unit_vectors(100)
    for start in range(0, 100, 30):
        index.add(range(start, min(start + 30, 100)), data[start:start + 30])
    assert len(index) == 100 and index.capacity >= 100
    assert index.ids() == set(range(100))
    labels, _ = index.query(data[99:], k=1)
    assert labels[0, 0] == 99


def test_k_larger_than_count_returns_count_columns_and_empty_index_none():
    index, data = build(5)
    labels, sims = index.query(data[:2], k=10)
    assert labels.shape == sims.shape == (2, 5)
    assert set(labels[0]) == set(range(5))
    labels, sims = VectorIndex(DIM).query(unit_vectors(3), k=4)
    assert labels.shape == sims.shape == (3, 0)


def test_remove_readd_and_replace():
    index, data = build(50)
    index.remove([0, 1, 2, 999])  # 999 was never added
    assert len(index) == 47 and 0 not in index and 3 in index
    labels, _ = index.query(data[:3], k=47)
    assert not {0, 1, 2} & set(labels.ravel())
    index.add([1], data[1:2])
    assert len(index) == 48 and 1 in index
    labels, sims = index.query(data[1:2], k=1)
    assert labels[0, 0] == 1 and sims[0, 0] == pytest.approx(1.0, abs=QUANT)
    new = unit_vectors(1, seed=9)
    index.add([7], new)  # replace a live id
    assert len(index) == 48
    np.testing.assert_allclose(index.vectors([7]), new, atol=CODE)
    labels, sims = index.query(new, k=1)
    assert labels[0, 0] == 7 and sims[0, 0] == pytest.approx(1.0, abs=QUANT)
    labels, sims = index.query(data[7:8], k=48)  # the old vector is gone
    assert (labels[0] == 7).sum() == 1 and sims[0][labels[0] == 7][0] < 0.9


def test_new_ids_after_removals_keep_every_item():
    index, data = build(20, initial_capacity=20)
    index.remove(range(10))
    extra = unit_vectors(15, seed=5)
    index.add(range(100, 115), extra)
    assert index.ids() == set(range(10, 20)) | set(range(100, 115))
    np.testing.assert_allclose(index.vectors([100, 114, 10]),
                               np.vstack([extra[[0, 14]], data[10:11]]), atol=CODE)


@pytest.mark.parametrize("reload", [False, True])
def test_removed_ids_come_back_as_new_items(tmp_path, reload):
    index, data = build(20, initial_capacity=20)
    index.remove(range(10))
    index.add(range(100, 105), unit_vectors(5, seed=5))
    if reload:
        index.save(tmp_path / "i.idx")
        index = VectorIndex.load(tmp_path / "i.idx")
    index.add(range(10), data[:10])
    assert index.ids() == set(range(20)) | set(range(100, 105))
    np.testing.assert_allclose(index.vectors(range(10)), data[:10], atol=CODE)
    labels, _ = index.query(data[:10], k=1)
    assert labels[:, 0].tolist() == list(range(10))


def test_heavy_deletion_still_answers_with_live_ids_only():
    index, data = build(500)
    index.remove(range(25, 500))  # 95 % deleted
    live = set(range(25))
    labels, sims = index.query(unit_vectors(10, seed=3), k=20)
    assert labels.shape == (10, 20)
    assert set(labels.ravel()) <= live
    assert (np.diff(sims, axis=1) <= 1e-6).all()
    labels, _ = index.query(data[:1], k=100)
    assert labels.shape == (1, 25) and set(labels[0]) == live


def test_compaction_drops_dead_entries_and_keeps_the_codes(tmp_path):
    index, data = build(600)
    before = index.vectors(range(300))
    index.remove(range(300, 550))  # 250 dead: not yet worth a rebuild
    assert index.stored == 600
    index.add(range(300), data[:300])  # replacing 300 more: 550 dead > 350 live
    assert index.stored == len(index) == 350 and index.ids() == set(range(300)) | set(range(550, 600))
    np.testing.assert_array_equal(index.vectors(range(300)), before)  # re-encoded losslessly
    labels, _ = index.query(data[550:560], k=1)
    assert labels[:, 0].tolist() == list(range(550, 560))
    index.save(tmp_path / "c.idx")
    assert VectorIndex.load(tmp_path / "c.idx").ids() == index.ids()


def test_unreachable_items_fall_back_to_exact_search():
    # Churn on a sparse graph leaves items the search cannot reach: the query must still answer.
    rng = np.random.default_rng(7)
    index = VectorIndex(16, M=4, ef_construction=10, ef=10, initial_capacity=300)
    index.add(range(300), unit_vectors(300, 16, seed=8))
    for round_ in range(1, 11):
        index.remove(rng.choice(sorted(index.ids()), 250, replace=False).tolist())
        index.add(range(1000 * round_, 1000 * round_ + 250), unit_vectors(250, 16, seed=round_))
    live = sorted(index.ids())
    queries = unit_vectors(5, 16, seed=99)
    for k in (20, len(live)):
        labels, sims = index.query(queries, k=k)
        assert labels.shape == (5, k) and set(labels.ravel()) <= set(live)
        exact = np.einsum("nd,nkd->nk", queries, index.vectors(labels.ravel()).reshape(5, k, 16))
        np.testing.assert_allclose(sims, exact, atol=1e-4)
    assert all(set(row) == set(live) for row in labels)
    assert (np.diff(sims, axis=1) <= 1e-6).all() and index.ef == 10


class _NeedsLargeEf:
    """Wraps the faiss index: a search pads with -1, as faiss does when it cannot reach k
    items, until efSearch reaches 256."""

    def __init__(self, real):
        self.real = real
        self.efs: list[int] = []

    def __getattr__(self, name):
        return getattr(self.real, name)

    def search(self, data, k, params):
        self.efs.append(params.efSearch)
        sims, positions = self.real.search(data, k, params=params)
        if params.efSearch < 256:
            positions[:, -1] = -1
        return sims, positions


def test_query_retries_with_larger_ef_without_changing_it():
    index, data = build(500, ef=64)
    real = index._index
    index._index = wrapped = _NeedsLargeEf(real)
    labels, sims = index.query(data[:5], k=10)
    assert index.ef == 64 and wrapped.efs == [64, 128, 256]
    index._index = real
    index.ef = 256  # what the same graph answers at ef 256
    expected = index.query(data[:5], k=10)
    np.testing.assert_array_equal(labels, expected[0])
    np.testing.assert_allclose(sims, expected[1], atol=1e-6)


@pytest.mark.parametrize("bad", [np.zeros((2, DIM + 1)), np.zeros(DIM), np.full((1, DIM), np.nan)])
def test_bad_shapes_values_and_ids_are_refused(bad):
    index = VectorIndex(DIM)
    with pytest.raises(VectorIndexError):
        index.add(range(len(np.atleast_2d(bad))), bad)
    with pytest.raises(VectorIndexError):
        index.query(bad, k=1)
    with pytest.raises(VectorIndexError, match="3 ids for 2 vectors"):
        index.add([1, 2, 3], unit_vectors(2))


def test_save_load_round_trip(tmp_path):
    index, _ = build(300, model_id="test-model", head="copy", ef=80)
    index.remove([4])
    path = tmp_path / "index" / "test-model-copy.idx"
    index.save(path)
    index.save(path)  # over an existing file
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    loaded = VectorIndex.load(path)
    assert (loaded.dim, loaded.model_id, loaded.head, loaded.M, loaded.ef, loaded.ef_construction,
            len(loaded)) == (DIM, "test-model", "copy", 16, 80, 200, 299)
    queries = unit_vectors(20, seed=2)
    for got, expected in zip(loaded.query(queries, k=10), index.query(queries, k=10)):
        np.testing.assert_array_equal(got, expected)


def test_failed_save_raises_and_leaves_no_temporaries(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(VectorIndexError, match="cannot save"):
        build(5)[0].save(tmp_path / "file" / "x.idx")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_load_keeps_deletions(tmp_path):
    index, data = build(40)
    index.remove([0, 5, 39])
    index.save(tmp_path / "a.idx")
    loaded = VectorIndex.load(tmp_path / "a.idx")
    assert loaded.ids() == set(range(40)) - {0, 5, 39}
    loaded.add([5], data[5:6])
    assert 5 in loaded and len(loaded) == 38


def test_load_missing_file_raises_with_path(tmp_path):
    path = tmp_path / "none.idx"
    with pytest.raises(VectorIndexError, match=re.escape(str(path))):
        VectorIndex.load(path)


def _parts(raw: bytes) -> tuple[bytes, dict, bytes]:
    magic = b"LOOKALIKE-INDEX\n"
    (length,) = struct.unpack("<Q", raw[len(magic):len(magic) + 8])
    start = len(magic) + 8
    return magic, json.loads(raw[start:start + length]), raw[start + length:]


def _with_header(**changes):
    def edit(raw: bytes) -> bytes:
        magic, meta, rest = _parts(raw)
        text = json.dumps({**meta, **changes}).encode()
        return magic + struct.pack("<Q", len(text)) + text + rest
    return edit


@pytest.mark.parametrize("edit", [
    lambda raw: raw[:30],
    lambda raw: b"\x00" * 8 + raw[8:],  # e.g. an hnswlib file of an earlier version
    _with_header(dim=DIM * 2),
    _with_header(space="l2"),
    _with_header(count=10),  # the removed item counted as live
    _with_header(stored=11),
    _with_header(model_id=3),
    lambda raw: raw[:-100],
], ids=["truncated-header", "foreign-file", "dim-mismatch", "wrong-space", "count-mismatch",
        "stored-mismatch", "bad-model-id", "truncated-graph"])
def test_load_inconsistent_files_raise_with_path(tmp_path, edit):
    path = tmp_path / "m-h.idx"
    index, _ = build(10)
    index.remove([3])
    index.save(path)
    path.write_bytes(edit(path.read_bytes()))
    with pytest.raises(VectorIndexError, match=re.escape(str(path))):
        VectorIndex.load(path)


def test_bytes_per_entry_are_those_of_8_bit_codes(tmp_path):
    # 256 bytes of codes + about 2·M·4 bytes of level-0 links + label and bookkeeping; hnswlib
    # needed 4·256 bytes of float32 on top of the links
    index = VectorIndex(256)
    index.add(range(2000), unit_vectors(2000, 256))
    index.save(tmp_path / "b.idx")
    per_entry = (tmp_path / "b.idx").stat().st_size / 2000
    assert 256 + 2 * 16 * 4 <= per_entry < 450, per_entry


def test_concurrent_readers_and_writer():
    index, _ = build(300, seed=4, initial_capacity=300)  # the writer must resize
    extra = unit_vectors(400, seed=6)
    errors: list[BaseException] = []
    writer_done = threading.Event()

    def reader(seed: int) -> None:
        queries = unit_vectors(8, seed=seed)
        while not writer_done.is_set():
            labels, sims = index.query(queries, k=10)
            assert labels.shape == sims.shape == (8, 10)

    def writer() -> None:
        for start in range(0, 400, 20):
            index.add(range(1000 + start, 1020 + start), extra[start:start + 20])
            index.remove([start // 20])
        writer_done.wait(0.3)  # let the readers run a little longer
        writer_done.set()

    def recording(target, *args):
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
            writer_done.set()

    threads = [threading.Thread(target=recording, args=(reader, seed)) for seed in range(4)]
    threads.append(threading.Thread(target=recording, args=(writer,)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(index) == 300 + 400 - 20
    assert index.ids() == set(range(20, 300)) | set(range(1000, 1400))


def test_rescored_query_widens_until_a_burst_of_near_copies_is_ranked_exactly():
    from engine.index import rescored_query

    rng = np.random.default_rng(11)
    base = unit_vectors(1, seed=12)[0]
    burst = base + 0.004 * rng.standard_normal((60, DIM)).astype(np.float32)  # cosines ~0.999
    burst /= np.linalg.norm(burst, axis=1, keepdims=True)
    others = unit_vectors(500, seed=13)
    data = np.vstack([burst, others])
    index = VectorIndex(DIM)
    index.add(np.arange(len(data)), data)
    asked: list[int] = []

    def exact(labels):
        asked.extend(labels)
        return [data[label] if label != 7 else None for label in labels]  # 7: left the catalog

    labels, sims = rescored_query(index, base, 10, exact)
    truth = [i for i in np.argsort(-(data @ base), kind="stable") if i != 7]
    assert set(labels) - {7} <= set(truth[:11]) and len(set(labels) & set(truth[:10])) >= 9
    scored = [s for label, s in zip(labels, sims) if label != 7]
    assert scored == sorted(scored, reverse=True)
    np.testing.assert_allclose(scored, [float(data[label] @ base) for label in labels if label != 7], atol=1e-6)
    assert len(asked) > 30 and len(asked) == len(set(asked))  # widened, each vector read once
    few, _ = rescored_query(index, others[0], 3, lambda labels: [data[label] for label in labels])
    assert few[0] == 60 and len(few) == 3


def test_expanded_query_is_the_unit_weighted_sum_of_unit_vectors():
    q, nb = np.array([[2.0, 0.0]]), np.array([[[0.0, 3.0], [0.0, 1.0]]])
    # unweighted: each to unit length, summed (1, 2), then unit
    got = expanded_queries(q, nb)
    np.testing.assert_allclose(got, [[1 / np.sqrt(5), 2 / np.sqrt(5)]], rtol=1e-6)
    assert got.dtype == np.float32
    # weights 0.5 and 0.25: (1, 0.75) → (0.8, 0.6); a negative weight counts as 0
    np.testing.assert_allclose(expanded_queries(q, nb, np.array([[0.5, 0.25]])), [[0.8, 0.6]], rtol=1e-6)
    np.testing.assert_allclose(expanded_queries(q, nb, np.array([[-1.0, 0.0]])), [[1.0, 0.0]], atol=1e-7)
    with pytest.raises(ValueError, match="neighbours"):
        expanded_queries(np.zeros((1, 2)), np.zeros((2, 1, 2)))
    with pytest.raises(ValueError, match="weights"):
        expanded_queries(q, nb, np.ones((1, 3)))
