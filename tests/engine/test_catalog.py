"""Tests for engine.catalog: schema and migrations, files, embeddings, problems, transactions."""
from __future__ import annotations

import os
import sqlite3
import threading

import numpy as np
import pytest

from engine.catalog import SCHEMA_VERSION, Catalog, FileRecord, Problem
from engine.errors import CatalogError

ROOT = os.path.join(os.sep, "lib", "photos")


@pytest.fixture
def cat(tmp_path):
    with Catalog(tmp_path / "sub" / "catalog.db") as catalog:
        yield catalog


def add(cat: Catalog, path: str, content_hash: str, scan_id: int = 1, **extra) -> int:
    fields = dict(size=10, mtime_ns=5, width=4, height=3, format="JPEG",
                  capture_time=None, camera=None)
    fields.update(extra)
    return cat.upsert_file(path=path, content_hash=content_hash, scan_id=scan_id, **fields)


def p(*parts: str) -> str:
    return os.path.join(ROOT, *parts)


def test_fresh_database_reaches_current_version_in_wal_mode(tmp_path):
    db = tmp_path / "new" / "catalog.db"
    with Catalog(db) as cat:
        assert cat.path == db and db.exists()
        assert cat.schema_version == SCHEMA_VERSION == 4
        assert cat.count_files() == 0
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "files", "embeddings", "problems", "scans"} <= tables
    conn.close()


def test_v1_database_is_migrated_with_rows_kept(tmp_path):
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE files (id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL,
            size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, content_hash TEXT NOT NULL,
            width INTEGER, height INTEGER, format TEXT, last_seen_scan INTEGER);
        CREATE TABLE problems (id INTEGER PRIMARY KEY, path TEXT NOT NULL, kind TEXT NOT NULL,
            message TEXT NOT NULL, scan_id INTEGER);
        CREATE TABLE scans (id INTEGER PRIMARY KEY, started_at TEXT, finished_at TEXT,
            roots_json TEXT, cancelled INTEGER);
        INSERT INTO meta VALUES ('schema_version', '1');
        INSERT INTO files VALUES (7, '/x/a.jpg', 123, 456, 'abc', 640, 480, 'JPEG', 1);
        INSERT INTO problems VALUES (1, '/x/b.txt', 'not-image', 'b.txt is not an image', 1);
    """)
    conn.commit()
    conn.close()
    with Catalog(db) as cat:
        assert cat.schema_version == 4
        assert cat.files() == [FileRecord(7, "/x/a.jpg", 123, 456, "abc", 640, 480, "JPEG",
                                          None, None)]
        assert cat.problems() == [Problem("/x/b.txt", "not-image", "b.txt is not an image")]
        cat.put_embedding("abc", "m", "copy", np.ones(3, np.float32))
        assert cat.hashes_with_embedding("m", ["copy"]) == {"abc"}


def test_newer_schema_is_refused(tmp_path):
    db = tmp_path / "future.db"
    with Catalog(db) as cat:
        cat.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    with pytest.raises(CatalogError, match=str(SCHEMA_VERSION + 1)) as info:
        Catalog(db)
    assert str(db) in str(info.value) and str(SCHEMA_VERSION) in str(info.value)


def test_garbage_file_is_refused(tmp_path):
    db = tmp_path / "notes.db"
    db.write_bytes(b"this is not a database, just some text " * 100)
    with pytest.raises(CatalogError) as info:
        Catalog(db)
    assert str(db) in str(info.value)


def test_upsert_keeps_id_and_updates_fields(cat):
    first = add(cat, p("a.jpg"), "h1")
    other = add(cat, p("b.jpg"), "h2")
    again = add(cat, p("a.jpg"), "h9", scan_id=2, size=99, capture_time="2020-01-02T03:04:05",
                camera="Canon EOS R")
    assert again == first != other
    rec = cat.file_by_path(p("a.jpg"))
    assert (rec.content_hash, rec.size, rec.camera) == ("h9", 99, "Canon EOS R")
    assert rec.capture_time == "2020-01-02T03:04:05"
    assert cat.count_files() == 2
    assert cat.file_by_path(p("missing.jpg")) is None
    assert cat.stat_map() == {p("a.jpg"): (first, 99, 5), p("b.jpg"): (other, 10, 5)}
    assert list(cat.files_by_ids([other, 12345])) == [other]
    assert [r.id for r in cat.files()] == [first, other]


def test_sweep_removes_only_unseen_files_under_root(cat):
    sibling = os.path.join(os.sep, "lib", "photos2", "x.jpg")
    elsewhere = os.path.join(os.sep, "other", "y.jpg")
    first = cat.start_scan([ROOT])
    kept = add(cat, p("kept.jpg"), "hk", first)
    gone = add(cat, p("deep", "gone.jpg"), "hg", first)
    weird = add(cat, p("100%_a.jpg"), "hw", first)
    add(cat, sibling, "hs", first)
    add(cat, elsewhere, "he", first)
    for h in ("hk", "hg", "hw", "hs"):
        cat.put_embedding(h, "m", "copy", np.full(4, 0.5, np.float32))

    scan = cat.start_scan([ROOT])
    assert scan != first
    cat.mark_seen([kept], scan)
    deleted = cat.sweep([ROOT + os.sep], scan)
    cat.finish_scan(scan, cancelled=False)

    assert deleted == [gone, weird]
    assert sorted(cat.stat_map()) == sorted([p("kept.jpg"), sibling, elsewhere])
    assert cat.get_embedding("hg", "m", "copy") is None
    assert cat.get_embedding("hw", "m", "copy") is None
    assert cat.hashes_with_embedding("m", ["copy"]) == {"hk", "hs"}
    # "_" and "%" in a root are not wildcards: nothing lies under /lib/ph_tos
    assert cat.sweep([os.path.join(os.sep, "lib", "ph_tos")], scan + 100) == []
    assert cat.sweep([os.path.join(os.sep, "lib", "%")], scan + 100) == []


def test_embedding_round_trip_is_float16_exact(cat):
    add(cat, p("a.jpg"), "h1")
    vec = np.random.default_rng(0).standard_normal(17).astype(np.float32)
    half = vec.astype(np.float16).astype(np.float32)
    assert cat.get_embedding("h1", "m", "copy") is None
    cat.put_embedding("h1", "m", "copy", vec)
    got = cat.get_embedding("h1", "m", "copy")
    assert got.dtype == np.float32 and np.array_equal(got, half)  # stored as float16
    cat.put_embedding("h1", "m", "copy", vec * 2)  # upsert replaces
    assert np.array_equal(cat.get_embedding("h1", "m", "copy"), (vec * 2).astype(np.float16).astype(np.float32))
    assert cat.get_embedding("h1", "other-model", "copy") is None
    unit = vec / np.linalg.norm(vec)
    cat.put_embedding("h1", "m", "copy", unit)
    assert abs(float(cat.get_embedding("h1", "m", "copy") @ unit) - 1) < 1e-3


def test_float32_rows_of_earlier_versions_are_still_read(cat):
    add(cat, p("a.jpg"), "h1")
    add(cat, p("b.jpg"), "h2")
    old = np.random.default_rng(3).standard_normal(8).astype(np.float32)
    with cat.transaction():  # as version ≤ 4 wrote it: float32 bytes
        cat._conn.execute("INSERT INTO embeddings VALUES ('h1', 'm', 'copy', 8, ?)", (old.tobytes(),))
    cat.put_embedding("h2", "m", "copy", old * 3)
    assert np.array_equal(cat.get_embedding("h1", "m", "copy"), old)
    hashes, matrix = cat.embeddings("m", "copy")
    assert hashes == ["h1", "h2"] and np.array_equal(matrix[0], old)
    assert np.allclose(matrix[1], old * 3, rtol=1e-3)


def test_embeddings_matrix_aligned_with_hashes(cat):
    assert cat.embeddings("m", "copy")[1].shape == (0, 0)
    rng = np.random.default_rng(1)
    vectors = {h: rng.standard_normal(8).astype(np.float32) for h in ("c", "a", "b", "orphan")}
    for i, h in enumerate(("c", "a", "b")):
        add(cat, p(f"{i}.jpg"), h)
    for h, v in vectors.items():
        cat.put_embedding(h, "m", "copy", v)
    cat.put_embedding("a", "m", "similar", np.zeros(8, np.float32))
    hashes, matrix = cat.embeddings("m", "copy")
    assert sorted(hashes) == ["a", "b", "c"]  # the orphan has no file
    assert matrix.shape == (3, 8) and matrix.dtype == np.float32
    for h, row in zip(hashes, matrix):  # stored as float16
        assert np.array_equal(row, vectors[h].astype(np.float16).astype(np.float32))


def test_hashes_with_embedding_needs_every_head(cat):
    v = np.ones(2, np.float32)
    cat.put_embedding("both", "m", "copy", v)
    cat.put_embedding("both", "m", "similar", v)
    cat.put_embedding("one", "m", "copy", v)
    cat.put_embedding("wrong-model", "n", "similar", v)
    cat.put_embedding("wrong-model", "m", "copy", v)
    assert cat.hashes_with_embedding("m", ["copy", "similar"]) == {"both"}
    assert cat.hashes_with_embedding("m", ["copy"]) == {"both", "one", "wrong-model"}
    assert cat.hashes_with_embedding("m", iter(["similar", "similar"])) == {"both"}


def test_hash_groups_and_representatives(cat):
    ids = [add(cat, p(f"{i}.jpg"), h) for i, h in enumerate("xyxzyx")]
    groups = cat.hash_groups()
    assert [[r.id for r in g] for g in groups] == [[ids[0], ids[2], ids[5]], [ids[1], ids[4]]]
    assert cat.representatives() == {"x": ids[0], "y": ids[1], "z": ids[3]}
    assert [r.id for r in cat.files_with_hash("y")] == [ids[1], ids[4]]


def test_transaction_rolls_back_on_exception(cat):
    add(cat, p("before.jpg"), "h0")
    with pytest.raises(RuntimeError):
        with cat.transaction():
            add(cat, p("inside.jpg"), "h1")
            cat.set_meta("k", "v")
            cat.put_embedding("h1", "m", "copy", np.ones(2, np.float32))
            raise RuntimeError("boom")
    assert [r.path for r in cat.files()] == [p("before.jpg")]
    assert cat.get_meta("k") is None
    assert cat.get_embedding("h1", "m", "copy") is None
    add(cat, p("after.jpg"), "h2")  # the catalog is still usable
    assert cat.count_files() == 2


def test_nested_transactions(tmp_path, cat):
    with cat.transaction():
        add(cat, p("outer.jpg"), "h1")
        with cat.transaction():
            add(cat, p("inner.jpg"), "h2")
        with pytest.raises(ValueError):
            with cat.transaction():
                add(cat, p("undone.jpg"), "h3")
                raise ValueError("inner failure")
        assert cat._conn.in_transaction  # the inner levels did not commit
    assert sorted(cat.stat_map()) == [p("inner.jpg"), p("outer.jpg")]
    with Catalog(cat.path) as again:  # committed, so a second connection sees it
        assert again.count_files() == 2
    with pytest.raises(KeyError):
        with cat.transaction():
            with cat.transaction():
                add(cat, p("lost.jpg"), "h4")
            raise KeyError("outer failure")
    assert cat.file_by_path(p("lost.jpg")) is None


def test_problems_clear_and_add_per_root(cat):
    other = os.path.join(os.sep, "lib", "photos2", "b.png")
    cat.add_problem(p("z.jpg"), "decode", "z.jpg: truncated JPEG", 1)
    cat.add_problem(p("sub", "a.txt"), "not-image", "a.txt is not an image", None)
    cat.add_problem(other, "empty", "b.png is empty", 1)
    assert [x.path for x in cat.problems()] == sorted([p("z.jpg"), p("sub", "a.txt"), other])
    cat.clear_problems([ROOT])
    assert cat.problems() == [Problem(other, "empty", "b.png is empty")]
    cat.clear_problems([])
    assert len(cat.problems()) == 1


def test_meta_round_trip(cat):
    assert cat.get_meta("model") is None
    cat.set_meta("model", "a")
    cat.set_meta("model", "b")
    assert cat.get_meta("model") == "b"


def test_two_threads_upserting(cat):
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            for i in range(150):
                add(cat, p(name, f"{i}.jpg"), f"{name}{i % 7}")
                if i % 50 == 0:
                    with cat.transaction():
                        cat.mark_seen([r.id for r in cat.files_with_hash(f"{name}0")], 2)
        except BaseException as exc:  # reported by the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("t1", "t2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert cat.count_files() == 300
    assert len({r.id for r in cat.files()}) == 300


def test_decisions_are_pairs_and_survive_reopening(tmp_path):
    db = tmp_path / "c.db"
    with Catalog(db) as cat:
        assert cat.record_decision(["c", "a", "b", "a"], "not-duplicate") == 3
        cat.record_decision(["x", "y"], "duplicate")
    with Catalog(db) as cat:
        assert cat.decisions("not-duplicate") == {("a", "b"), ("a", "c"), ("b", "c")}
        assert cat.decisions() == {("a", "b"), ("a", "c"), ("b", "c"), ("x", "y")}
        cat.forget_decisions(["a", "b"])
        assert cat.decisions("not-duplicate") == {("a", "c"), ("b", "c")}
