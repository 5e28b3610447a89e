"""Tests for engine.catalog: schema and migrations, files, embeddings, problems, transactions."""
from __future__ import annotations

import os
import sqlite3
import threading

import numpy as np
import pytest

import engine.catalog as catalog_module
from engine.catalog import (SCHEMA_VERSION, Catalog, FileRecord, Problem, decode_vector,
                            encode_vector)
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
        assert cat.schema_version == SCHEMA_VERSION == 5
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
        assert cat.schema_version == SCHEMA_VERSION
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


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def int8(vec: np.ndarray) -> np.ndarray:
    """What the catalog gives back for ``vec``."""
    return decode_vector(encode_vector(vec), len(vec))


def test_int8_encoding_layout_and_cosine_error():
    vec = np.array([0.5, -1.0, 0.25, 0.0, 1e-4], np.float32)
    blob = encode_vector(vec)
    assert len(blob) == 4 + 5
    assert np.frombuffer(blob[:4], "<f4")[0] == np.float32(1.0) / np.float32(127)
    assert list(np.frombuffer(blob[4:], np.int8)) == [64, -127, 32, 0, 0]
    got = decode_vector(blob, 5)
    assert got.dtype == np.float32 and got[1] == -1.0
    assert np.abs(got - vec).max() <= 1.0 / 127 / 2 + 1e-7  # half a step at most

    vectors = unit_rows(1000, 256, seed=0)
    decoded = np.stack([int8(v) for v in vectors])
    unit = decoded / np.linalg.norm(decoded, axis=1, keepdims=True)
    own_loss = float((1 - (vectors * unit).sum(1)).max())  # measured ≈ 5e-5
    assert own_loss < 2e-4
    near = vectors + 0.3 * unit_rows(1000, 256, seed=1)  # cos ≈ 0.96 to ``vectors``
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    near_decoded = np.stack([int8(v) for v in near])
    near_decoded /= np.linalg.norm(near_decoded, axis=1, keepdims=True)
    near_error = np.abs((unit * near_decoded).sum(1) - (vectors * near).sum(1)).max()
    assert near_error < 2e-3  # measured ≈ 7e-4
    pair_error = np.abs(unit @ unit.T - vectors @ vectors.T)  # unrelated pairs, cos ≈ 0
    assert pair_error.std() < 1e-3 and pair_error.max() < 5e-3  # measured ≈ 4e-4, 3e-3


def test_int8_encoding_of_zero_and_bad_input():
    blob = encode_vector(np.zeros(6, np.float32))
    assert blob == bytes(4 + 6)  # scale 0.0, codes 0
    assert np.array_equal(decode_vector(blob, 6), np.zeros(6, np.float32))
    assert decode_vector(encode_vector(np.zeros(0, np.float32)), 0).shape == (0,)
    tiny = np.full(3, 1e-45, np.float32)  # a scale that underflows to 0 stores zeros too
    assert np.array_equal(int8(tiny), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        encode_vector(np.array([1.0, np.nan], np.float32))
    with pytest.raises(ValueError, match="one-dimensional"):
        encode_vector(np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match="expected 10"):
        decode_vector(bytes(12), 6)


def test_embedding_round_trip_is_int8_exact(cat):
    add(cat, p("a.jpg"), "h1")
    vec = np.random.default_rng(0).standard_normal(17).astype(np.float32)
    assert cat.get_embedding("h1", "m", "copy") is None
    cat.put_embedding("h1", "m", "copy", vec)
    got = cat.get_embedding("h1", "m", "copy")
    assert got.dtype == np.float32 and np.array_equal(got, int8(vec))
    stored = cat._conn.execute("SELECT dim, vector FROM embeddings").fetchall()
    assert stored == [(17, encode_vector(vec))]  # 4 + 17 bytes
    cat.put_embedding("h1", "m", "copy", vec * 2)  # upsert replaces
    assert np.array_equal(cat.get_embedding("h1", "m", "copy"), int8(vec * 2))
    assert cat.get_embedding("h1", "other-model", "copy") is None
    unit = vec / np.linalg.norm(vec)
    cat.put_embedding("h1", "m", "copy", unit)
    assert abs(float(cat.get_embedding("h1", "m", "copy") @ unit) - 1) < 1e-3
    with pytest.raises(ValueError):
        cat.put_embedding("h1", "m", "copy", np.ones((2, 2), np.float32))


def test_unreadable_blob_is_a_catalog_error(cat):
    add(cat, p("a.jpg"), "h1")
    with cat.transaction():  # float32 bytes in a schema-5 catalog: not migrated, not read
        cat._conn.execute("INSERT INTO embeddings VALUES ('h1', 'm', 'copy', 8, ?)",
                          (np.ones(8, np.float32).tobytes(),))
    with pytest.raises(CatalogError, match="h1") as info:
        cat.get_embedding("h1", "m", "copy")
    assert str(cat.path) in str(info.value)
    with pytest.raises(CatalogError, match="h1"):
        cat.embeddings("m", "copy")


def v4_catalog(db, monkeypatch, rows: list[tuple]) -> None:
    """A catalog as schema 4 left it (built by the real migrations 1-4), holding ``rows`` of
    (content_hash, head, dim, blob) for model "m", each with a file."""
    with monkeypatch.context() as patch:
        patch.setattr(catalog_module, "SCHEMA_VERSION", 4)
        patch.setattr(catalog_module, "_MIGRATIONS", catalog_module._MIGRATIONS[:4])
        with Catalog(db) as old:
            assert old.schema_version == 4
            for i, content_hash in enumerate(sorted({r[0] for r in rows})):
                add(old, p(f"{i}.jpg"), content_hash)
            with old.transaction():
                old._conn.executemany("INSERT INTO embeddings VALUES (?, 'm', ?, ?, ?)", rows)
                old.record_decision([rows[0][0], "other"], "duplicate")


def test_v4_float16_and_float32_rows_migrate_to_int8(tmp_path, monkeypatch):
    db = tmp_path / "v4.db"
    vectors = unit_rows(6, 256, seed=5)
    rows = [(f"h{i}", head, 256, vectors[i].astype(np.float16 if i % 2 else np.float32).tobytes())
            for i in range(3) for head in ("copy", "similar")]
    rows.append(("h9", "copy", 256, bytes(512)))  # a float16 zero vector
    v4_catalog(db, monkeypatch, rows)
    with Catalog(db) as cat:
        assert cat.schema_version == 5
        for content_hash, head, dim, blob in rows:
            old = np.frombuffer(blob, np.float16 if len(blob) == 2 * dim else np.float32)
            got = cat.get_embedding(content_hash, "m", head)
            assert np.array_equal(got, int8(old.astype(np.float32)))
            if old.any():
                assert float(got @ old) / float(np.linalg.norm(got)) > 1 - 2e-4
        hashes, matrix = cat.embeddings("m", "copy")
        assert hashes == ["h0", "h1", "h2", "h9"] and not matrix[3].any()
        assert cat.hashes_with_embedding("m", ["copy", "similar"]) == {"h0", "h1", "h2"}
        assert cat.decisions() == {("h0", "other")}  # the rest of the catalog is untouched
        cat.put_embedding("h0", "m", "copy", vectors[5])  # the new table takes upserts
        assert np.array_equal(cat.get_embedding("h0", "m", "copy"), int8(vectors[5]))
        assert len(cat._conn.execute("SELECT * FROM embeddings").fetchall()) == len(rows)
    conn = sqlite3.connect(db)
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'embeddings'").fetchone()[0]
    assert "PRIMARY KEY (content_hash, model_id, head)" in sql
    assert "WITHOUT ROWID" not in sql.upper()  # see _to_v5: large rows would overflow
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'embeddings_new'"
                        ).fetchall() == []
    conn.close()


def test_v4_blob_of_wrong_length_stops_the_migration(tmp_path, monkeypatch):
    db = tmp_path / "v4.db"
    good = np.ones(8, np.float16).tobytes()
    v4_catalog(db, monkeypatch, [("good", "copy", 8, good), ("bad123", "copy", 8, bytes(20))])
    with pytest.raises(CatalogError, match="bad123") as info:
        Catalog(db)
    message = str(info.value)
    assert str(db) in message and "20 bytes" in message and "16" in message and "32" in message
    conn = sqlite3.connect(db)  # rolled back: still schema 4, every row as it was
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("4",)
    assert sorted(conn.execute("SELECT content_hash, vector FROM embeddings")) == [
        ("bad123", bytes(20)), ("good", good)]
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'embeddings_new'"
                        ).fetchall() == []
    conn.close()


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
    for h, row in zip(hashes, matrix):  # the one-read path gives what get_embedding gives
        assert np.array_equal(row, int8(vectors[h]))
        assert np.array_equal(row, cat.get_embedding(h, "m", "copy"))
    assert not cat.embeddings("m", "similar")[1].any()


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


def test_a_1280_d_vector_costs_about_its_own_bytes(tmp_path):
    # the pretrained default's vectors are 1,284 bytes encoded: they must fit in the table's
    # pages (an index b-tree, as WITHOUT ROWID would make, spilled each to a 4 KB overflow page)
    rows = unit_rows(500, 1280, seed=2)
    with Catalog(tmp_path / "c.db") as cat:
        cat._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        empty = (tmp_path / "c.db").stat().st_size
        with cat.transaction():
            for i, row in enumerate(rows):
                cat.put_embedding(f"{i:040x}", "lite0-imagenet-gem@1", "copy", row)
        cat._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    per_row = ((tmp_path / "c.db").stat().st_size - empty) / 500
    assert 1284 < per_row < 2 * 1284, per_row  # key, its index entry, page slack; no overflow page
