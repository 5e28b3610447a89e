"""Incremental scanning: unchanged files are skipped, renames reuse vectors, deletions leave."""
import os
import shutil

import numpy as np
import pytest
from PIL import ImageOps

from engine.errors import LookalikeError
from engine.index import expanded_queries
from engine.library import QUERY_EXPANSION, Library
from imagegen import photo, save_jpeg


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    for seed in range(4):
        save_jpeg(photo(seed), folder / f"p{seed}.jpg")
    return folder


@pytest.fixture
def lib(tmp_path, embedder):
    with Library(tmp_path / "lib", embedder=embedder) as library:
        yield library


def test_first_scan_embeds_everything_and_rescan_nothing(lib, photos):
    first = lib.scan([photos])
    assert (first.found, first.embedded, first.unchanged) == (4, 4, 0)
    again = lib.scan([photos])
    assert (again.found, again.embedded, again.reused, again.unchanged, again.removed) == (4, 0, 0, 4, 0)
    assert lib.info().embedded == {"copy": 4, "semantic": 4}


def test_unchanged_rescan_reads_no_vectors_and_rewrites_no_index(tmp_path, embedder, photos, monkeypatch):
    with Library(tmp_path / "lib", embedder=embedder) as first:
        first.scan([photos])
        groups = first.duplicates("near")
    index_files = sorted((tmp_path / "lib" / "index").glob("*.idx"))
    stamps = [f.stat().st_mtime_ns for f in index_files]
    with Library(tmp_path / "lib", embedder=embedder) as again:  # as after an app restart
        reads = []
        real = again.catalog.embeddings
        monkeypatch.setattr(again.catalog, "embeddings", lambda *a: reads.append(a) or real(*a))
        report = again.scan([photos])
        assert report.unchanged == 4 and reads == []
        assert [f.stat().st_mtime_ns for f in index_files] == stamps
        assert again.duplicates("near") == groups  # the saved index is loaded when asked


def test_an_earlier_versions_hnswlib_index_is_replaced(tmp_path, embedder, photos):
    with Library(tmp_path / "lib", embedder=embedder) as first:
        first.scan([photos])
        current = first._index_path("copy")
    legacy = [current.with_suffix(".hnsw"), current.with_suffix(".hnsw.json")]
    current.unlink()  # as left by a version that kept hnswlib files
    for path in legacy:
        path.write_bytes(b"an old index")
    with Library(tmp_path / "lib", embedder=embedder) as again:
        assert again.duplicates("near") is not None  # rebuilt from the catalog
    assert current.exists() and not any(p.exists() for p in legacy)


def test_modified_file_is_re_embedded_and_keeps_its_id(lib, photos):
    lib.scan([photos])
    before = lib.catalog.file_by_path(str(photos / "p1.jpg"))
    save_jpeg(photo(99), photos / "p1.jpg")
    os.utime(photos / "p1.jpg", ns=(before.mtime_ns + 10**9, before.mtime_ns + 10**9))
    report = lib.scan([photos])
    after = lib.catalog.file_by_path(str(photos / "p1.jpg"))
    assert (report.embedded, report.unchanged) == (1, 3)
    assert after.id == before.id and after.content_hash != before.content_hash
    # the index now holds the new content: the file finds itself at similarity 1 (within
    # the index's 8-bit codes)
    vec = lib.catalog.get_embedding(after.content_hash, lib.model_id, lib.bundle.storage_head("semantic"))
    labels, sims = lib._index("semantic").query(vec[None], 1)
    assert labels[0, 0] == after.id and sims[0, 0] > 0.99


def test_renamed_file_reuses_its_embedding(lib, photos):
    lib.scan([photos])
    old = lib.catalog.file_by_path(str(photos / "p2.jpg"))
    (photos / "moved").mkdir()
    shutil.move(photos / "p2.jpg", photos / "moved" / "renamed.jpg")
    report = lib.scan([photos])
    assert (report.embedded, report.reused, report.removed) == (0, 1, 1)
    new = lib.catalog.file_by_path(str(photos / "moved" / "renamed.jpg"))
    assert new.content_hash == old.content_hash
    assert lib.catalog.file_by_path(str(photos / "p2.jpg")) is None
    assert len(lib._index("copy")) == 4


def test_deleted_file_leaves_catalog_and_index(lib, photos):
    lib.scan([photos])
    gone = lib.catalog.file_by_path(str(photos / "p3.jpg"))
    (photos / "p3.jpg").unlink()
    report = lib.scan([photos])
    assert report.removed == 1
    assert lib.catalog.file_by_path(str(photos / "p3.jpg")) is None
    for head in ("copy", "semantic"):
        assert gone.id not in lib._index(head) and len(lib._index(head)) == 3
    assert all(m.file.path != gone.path for m in lib.similar(photos / "p0.jpg", k=10))


def test_exact_copies_share_one_index_entry(lib, photos):
    shutil.copy(photos / "p0.jpg", photos / "copy of p0.jpg")
    report = lib.scan([photos])
    assert (report.embedded, report.reused) == (4, 1)
    assert len(lib._index("copy")) == 4
    [group] = lib.duplicates("exact")
    assert sorted(m.file.path for m in group.members) == sorted(
        [str(photos / "p0.jpg"), str(photos / "copy of p0.jpg")])


def test_missing_or_stale_index_is_rebuilt_from_catalog(tmp_path, photos, embedder):
    with Library(tmp_path / "lib", embedder=embedder) as lib:
        lib.scan([photos])
        path = lib._index_path("copy")
    path.unlink()
    with Library(tmp_path / "lib", embedder=embedder) as lib:
        assert len(lib._index("copy")) == 4 and path.exists()
        lib.catalog.set_meta("content_stamp", "12345")   # as if another process changed it
    with Library(tmp_path / "lib", embedder=embedder) as lib:
        assert len(lib._index("semantic")) == 4


def test_cancelled_scan_keeps_work_and_removes_nothing(lib, photos):
    lib.scan([photos])
    for seed in range(10, 14):
        save_jpeg(photo(seed), photos / "new" / f"n{seed}.jpg")
    (photos / "p0.jpg").unlink()
    calls = []

    def stop_after_first(done, total, what):
        calls.append(done)
        return not (total and done >= 1)

    report = lib.scan([photos], stop_after_first)
    assert report.cancelled and report.removed == 0
    assert lib.catalog.file_by_path(str(photos / "p0.jpg")) is not None  # not swept when cancelled
    assert 1 <= report.embedded < 4
    finish = lib.scan([photos])
    assert not finish.cancelled and finish.embedded == 4 - report.embedded and finish.removed == 1


def test_find_similar_for_outside_image(lib, photos, tmp_path):
    lib.scan([photos])
    outside = save_jpeg(ImageOps.mirror(photo(2)), tmp_path / "outside.jpg")
    matches = lib.similar(outside, k=3, expand=0)
    assert len(matches) == 3
    assert matches[0].file.path == str(photos / "p2.jpg")
    assert matches[0].similarity > matches[1].similarity
    assert np.all(np.diff([m.similarity for m in matches]) <= 0)
    assert lib.similar(outside, k=3)[0].file.path == str(photos / "p2.jpg")  # expanded as well


def test_find_similar_ranks_by_the_expanded_query_and_shows_the_plain_cosine(lib, tmp_path):
    folder = tmp_path / "many"
    for seed in range(10):
        save_jpeg(photo(seed), folder / f"q{seed}.jpg")
    shutil.copy(folder / "q0.jpg", folder / "q0 copy.jpg")  # an exact copy: first, never an expansion
    lib.scan([folder])
    head = lib.bundle.storage_head("semantic")
    vec = {f.path: lib.catalog.get_embedding(f.content_hash, lib.model_id, head) for f in lib.catalog.files()}
    unit = {p: v / np.linalg.norm(v) for p, v in vec.items()}
    query, copy = str(folder / "q0.jpg"), str(folder / "q0 copy.jpg")
    others = sorted((p for p in unit if p not in (query, copy)), key=lambda p: -float(unit[query] @ unit[p]))
    plain = lib.similar(query, k=10, expand=0)
    assert [m.file.path for m in plain] == [copy] + others[:9]
    cosines = np.array([[float(unit[query] @ unit[p]) for p in others[:2]]])  # each neighbour's weight
    expanded = expanded_queries(unit[query][None], np.stack([unit[p] for p in others[:2]])[None], cosines)[0]
    want = sorted(others, key=lambda p: -float(expanded @ unit[p]))
    got = lib.similar(query, k=10)  # the semantic head expands by QUERY_EXPANSION["semantic"]
    assert QUERY_EXPANSION["semantic"] == 2
    assert [m.file.path for m in got] == [copy] + want[:9]
    assert got[0].similarity == got[0].score == 1.0  # the exact copy
    for m in got[1:]:  # ranked by the cosine to the expanded vector; shown: the cosine to the photo
        assert m.score == pytest.approx(float(expanded @ unit[m.file.path]), abs=1e-4)
        assert m.similarity == pytest.approx(float(unit[query] @ unit[m.file.path]), abs=1e-4)
    assert all(m.score is None for m in plain)
    with pytest.raises(ValueError, match="expand"):
        lib.similar(query, k=3, expand=-1)


def test_scan_of_missing_folder_is_a_clear_error(lib, tmp_path):
    with pytest.raises(LookalikeError, match="no such file or folder"):
        lib.scan([tmp_path / "nope"])


def test_threshold_override_and_dismissed_groups(lib, photos):
    shutil.copy(photos / "p0.jpg", photos / "p0 copy.jpg")
    from imagegen import resize
    save_jpeg(resize(photo(1), 0.7), photos / "p1 small.jpg")
    lib.scan([photos])
    near = lib.duplicates("near")
    assert sorted(len(g.members) for g in near) == [2, 2]
    assert lib.duplicates("near", threshold=1.01) == lib.duplicates("exact")  # nothing but exact copies
    assert len(lib.duplicates("near", threshold=-1.0)) == 1                   # everything links
    small = next(g for g in near if g.level == "near")
    lib.dismiss(small)
    assert [g.level for g in lib.duplicates("near")] == ["exact"]
    exact = lib.duplicates("exact")[0]
    lib.dismiss(exact)
    assert lib.duplicates("near") == [] and lib.duplicates("exact") == []
    lib.undismiss(small)
    assert [g.level for g in lib.duplicates("near")] == ["near"]


def test_folders_are_remembered_and_removing_one_forgets_its_photos(lib, photos, tmp_path):
    other = tmp_path / "other"
    save_jpeg(photo(50), other / "x.jpg")
    lib.scan([photos])
    lib.add_folder(other)
    assert lib.folders() == sorted([str(photos), str(other)])
    lib.scan(lib.folders())
    assert lib.catalog.count_files() == 5
    lib.remove_folder(photos)
    assert lib.folders() == [str(other)]
    assert lib.catalog.count_files() == 1 and len(lib._index("copy")) == 1
    assert (photos / "p0.jpg").exists()  # the photos themselves are untouched
    with pytest.raises(LookalikeError, match="not a folder"):
        lib.add_folder(photos / "p0.jpg")


def test_each_head_of_the_default_model_is_stored_at_its_own_size(lib, photos):
    lib.scan([photos])
    dims = {head: lib.bundle.head_dim(head) for head in lib.bundle.heads}
    assert lib.bundle.stored_heads == lib.bundle.heads
    for head, dim in dims.items():
        hashes, matrix = lib.catalog.embeddings(lib.model_id, head)
        assert len(hashes) == 4 and matrix.shape == (4, dim) and lib._index(head).dim == dim


def test_identical_heads_are_stored_and_indexed_once(tmp_path, pretrained_embedder, photos):
    # the pretrained bundle's two heads are the same pooled feature: one vector, one index
    with Library(tmp_path / "lib", embedder=pretrained_embedder) as lib:
        _identical_heads_once(lib, photos)


def _identical_heads_once(lib, photos):
    assert lib.bundle.stored_heads == ["copy"] and lib.bundle.storage_head("semantic") == "copy"
    lib.scan([photos])
    rows = lib.catalog._conn.execute("SELECT head, COUNT(*) FROM embeddings GROUP BY head").fetchall()
    assert rows == [("copy", 4)]
    assert lib.info().embedded == {"copy": 4, "semantic": 4}
    assert sorted(p.name for p in (lib.folder / "index").glob("*.idx")) == [lib._index_path("copy").name]
    found = lib.similar(photos / "p0.jpg", k=3, head="semantic")
    assert [m.similarity for m in found] == [m.similarity for m in lib.similar(photos / "p0.jpg", k=3)]


def test_vectors_an_earlier_version_kept_for_an_identical_head_are_dropped(tmp_path, pretrained_embedder, photos):
    embedder = pretrained_embedder
    with Library(tmp_path / "lib", embedder=embedder) as first:
        first.scan([photos])
        hashes, matrix = first.catalog.embeddings(first.model_id, "copy")
        for h, row in zip(hashes, matrix):  # as versions that stored both heads left them
            first.catalog.put_embedding(h, first.model_id, "semantic", row)
        old_index = first._index_path("semantic")
        old_index.write_bytes(b"an index of the same vectors")
        with first.catalog.transaction():  # an earlier version never dropped them
            first.catalog._conn.execute("DELETE FROM meta WHERE key LIKE 'stored_once:%'")
        stamp = first.catalog.content_stamp()
    with Library(tmp_path / "lib", embedder=embedder) as again:
        assert again.catalog.embeddings(again.model_id, "semantic")[0] == []
        assert not old_index.exists()
        assert len(again.catalog.embeddings(again.model_id, "copy")[0]) == 4
        assert again.catalog.content_stamp() == stamp  # the copy index stays current
        report = again.scan([photos])
        assert (report.unchanged, report.embedded) == (4, 0)


def test_duplicate_heads_are_dropped_once_per_model(tmp_path, pretrained_embedder, photos, monkeypatch):
    from engine.catalog import Catalog

    embedder = pretrained_embedder
    with Library(tmp_path / "lib", embedder=embedder) as first:
        first.scan([photos])
    drops = []
    monkeypatch.setattr(Catalog, "drop_embeddings", lambda self, *a: drops.append(a) or 0)
    with Library(tmp_path / "lib", embedder=embedder) as again:
        assert again.info().embedded == {"copy": 4, "semantic": 4}
    assert drops == []  # the first open did it and said so in meta: no scan of the table again
