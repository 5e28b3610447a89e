"""The library catalog in SQLite: files, embeddings (keyed by content hash, so copies and
renamed files share one vector), problems and scans. Deletions are found by mark-and-sweep."""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import sqlite3
import struct
import threading
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from engine.errors import CatalogError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 5
_SCALE = struct.Struct("<f")  # the float32 scale that starts an embedding blob
_CHUNK = 500  # ids per IN (...) clause, well under SQLite's variable limit
_STAMP = "content_stamp"  # meta key: bumped in the same transaction as every photo change
_FILE_COLS = "id, path, size, mtime_ns, content_hash, width, height, format, capture_time, camera"
_UPSERT_COLS = _FILE_COLS.split(", ")[1:] + ["last_seen_scan"]
_UPSERT = (f"INSERT INTO files ({', '.join(_UPSERT_COLS)})"
           f" VALUES ({', '.join('?' * len(_UPSERT_COLS))}) ON CONFLICT(path) DO UPDATE SET "
           + ", ".join(f"{c} = excluded.{c}" for c in _UPSERT_COLS[1:]))


@dataclass(frozen=True)
class FileRecord:
    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str
    width: int | None
    height: int | None
    format: str | None
    capture_time: str | None
    camera: str | None


@dataclass(frozen=True)
class Problem:
    path: str
    kind: str
    message: str


def _run_all(conn: sqlite3.Connection, script: str) -> None:
    # Not executescript(): it would COMMIT the migration's transaction first.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _to_v1(conn: sqlite3.Connection) -> None:
    _run_all(conn, """
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE IF NOT EXISTS files (
            id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL, content_hash TEXT NOT NULL, width INTEGER,
            height INTEGER, format TEXT, last_seen_scan INTEGER);
        CREATE TABLE IF NOT EXISTS problems (
            id INTEGER PRIMARY KEY, path TEXT NOT NULL, kind TEXT NOT NULL,
            message TEXT NOT NULL, scan_id INTEGER);
        CREATE TABLE IF NOT EXISTS scans (
            id INTEGER PRIMARY KEY, started_at TEXT, finished_at TEXT, roots_json TEXT,
            cancelled INTEGER);
    """)


def _to_v2(conn: sqlite3.Connection) -> None:
    _run_all(conn, """
        ALTER TABLE files ADD COLUMN capture_time TEXT;
        ALTER TABLE files ADD COLUMN camera TEXT;
        CREATE TABLE embeddings (
            content_hash TEXT NOT NULL, model_id TEXT NOT NULL, head TEXT NOT NULL,
            dim INTEGER NOT NULL, vector BLOB NOT NULL,
            PRIMARY KEY (content_hash, model_id, head));
        CREATE INDEX IF NOT EXISTS files_content_hash ON files(content_hash);
        CREATE INDEX IF NOT EXISTS problems_path ON problems(path);
    """)


def _to_v3(conn: sqlite3.Connection) -> None:
    """Review decisions: pairs of contents a person said are (not) duplicates."""
    _run_all(conn, """
        CREATE TABLE decisions (
            hash_a TEXT NOT NULL, hash_b TEXT NOT NULL, decision TEXT NOT NULL,
            decided_at TEXT NOT NULL, PRIMARY KEY (hash_a, hash_b));
    """)


def _to_v4(conn: sqlite3.Connection) -> None:
    """Review decisions as labelled groups (engine.feedback): what kind, which model proposed
    the group at which threshold, and per member whether it was kept and its keeper features."""
    _run_all(conn, """
        CREATE TABLE reviews (
            id INTEGER PRIMARY KEY, decided_at TEXT NOT NULL, kind TEXT NOT NULL,
            level TEXT, model_id TEXT, threshold REAL);
        CREATE TABLE review_members (
            review_id INTEGER NOT NULL REFERENCES reviews(id) ON DELETE CASCADE,
            content_hash TEXT NOT NULL, path TEXT NOT NULL, kept INTEGER NOT NULL,
            similarity REAL, features_json TEXT NOT NULL);
        CREATE INDEX review_members_hash ON review_members(content_hash);
    """)


def encode_vector(vec: np.ndarray) -> bytes:
    """An embedding's on-disk form: int8 with a per-vector scale.

    The blob is a little-endian float32 scale ``s = max|x| / 127`` followed by one int8 code
    per component, ``round(x / s)`` clipped to [-127, 127] (an all-zero vector stores
    ``s = 0.0`` and zero codes). That is ``4 + dim`` bytes, a quarter of float32 and about half
    of float16. Why it is enough: each component moves by at most ``s / 2``, under 1e-3 for a
    256-d unit vector (max|x| ≈ 0.2), and the rounding errors are spread over all components,
    so a unit vector loses well under 1e-3 of cosine to its decoded self (about 5e-5 at
    worst), and a cosine between two decoded vectors moves by about 1e-4 for near duplicates
    (cos ≥ 0.9, at worst ≈ 1e-3) and 6e-4 (one standard deviation) for unrelated ones;
    tests/engine/test_catalog.py measures these. The library renormalises the rows it reads.

    Raises ValueError for a vector that is not one-dimensional or holds NaN or infinity.
    """
    x = np.asarray(vec, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"embedding must be one-dimensional, got shape {x.shape}")
    if x.size == 0:
        return _SCALE.pack(0.0)
    high, low = float(x.max()), float(x.min())  # NaN anywhere makes both NaN
    if not (math.isfinite(high) and math.isfinite(low)):
        raise ValueError("embedding holds NaN or infinite values")
    scale = np.float32(max(high, -low)) / np.float32(127)
    if scale == 0:  # all zeros (or too small for a float32 scale): store zeros
        return _SCALE.pack(0.0) + bytes(x.size)
    codes = np.rint(x / scale)
    np.minimum(codes, 127, out=codes)  # |x / s| <= 127 but for rounding (np.clip is slower)
    np.maximum(codes, -127, out=codes)
    return _SCALE.pack(scale) + codes.astype(np.int8).tobytes()


def decode_vector(blob: bytes, dim: int) -> np.ndarray:
    """The float32 vector ``codes * scale`` of a blob written by ``encode_vector``.

    Raises ValueError when the blob is not ``4 + dim`` bytes long."""
    if len(blob) != 4 + dim:
        raise ValueError(f"embedding blob is {len(blob)} bytes, expected {4 + dim} for dim {dim}")
    scale = np.frombuffer(blob, dtype="<f4", count=1)[0]
    return np.frombuffer(blob, dtype=np.int8, offset=4).astype(np.float32) * scale


_V5_BATCH = 10_000  # rows re-encoded per fetch by _to_v5


def _db_path(conn: sqlite3.Connection) -> str:
    """The file behind ``conn``'s main database (for error messages inside migrations)."""
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return file or ":memory:"
    return "?"


def _to_v5(conn: sqlite3.Connection) -> None:
    """Embeddings as int8 with a per-vector scale (``encode_vector``) instead of float16 or
    float32, in a freshly written table. Every existing row is re-encoded; a blob whose length
    fits neither float16 nor float32 for its ``dim`` stops the migration (its transaction rolls
    back, nothing is lost).

    Still an ordinary rowid table: WITHOUT ROWID would drop the primary key's second copy of
    each key (~60 bytes per photo at two 256-d heads), but its rows live in an index b-tree,
    where a 4 KB page keeps at most ~1,000 bytes of a row and spills the rest to a whole
    overflow page: a 1280-d vector (1,284 bytes) then took 4.9 KB instead of 1.7 KB."""
    indexes = [sql for (sql,) in conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'embeddings'"
        " AND sql IS NOT NULL")]  # explicit indexes (none so far); autoindexes have no sql
    conn.execute("""
        CREATE TABLE embeddings_new (
            content_hash TEXT NOT NULL, model_id TEXT NOT NULL, head TEXT NOT NULL,
            dim INTEGER NOT NULL, vector BLOB NOT NULL,
            PRIMARY KEY (content_hash, model_id, head))""")
    rows = conn.execute("SELECT content_hash, model_id, head, dim, vector FROM embeddings"
                        " ORDER BY content_hash, model_id, head")  # PK order: cheap appends
    moved = 0
    try:
        while batch := rows.fetchmany(_V5_BATCH):
            out = []
            for content_hash, model_id, head, dim, blob in batch:
                if len(blob) == 2 * dim:
                    old = np.frombuffer(blob, dtype="<f2")
                elif len(blob) == 4 * dim:
                    old = np.frombuffer(blob, dtype="<f4")
                else:
                    raise CatalogError(
                        f"{_db_path(conn)}: embedding of content {content_hash} (model"
                        f" {model_id!r}, head {head!r}) is {len(blob)} bytes, but dim {dim}"
                        f" needs {2 * dim} (float16) or {4 * dim} (float32); cannot migrate"
                        " it to schema 5")
                try:
                    out.append((content_hash, model_id, head, dim, encode_vector(old)))
                except ValueError as exc:
                    raise CatalogError(
                        f"{_db_path(conn)}: embedding of content {content_hash} (model"
                        f" {model_id!r}, head {head!r}) cannot be migrated to schema 5:"
                        f" {exc}") from exc
            conn.executemany("INSERT INTO embeddings_new (content_hash, model_id, head, dim,"
                             " vector) VALUES (?, ?, ?, ?, ?)", out)
            moved += len(out)
    finally:  # an open read would block DROP TABLE and the rollback
        rows.close()
    conn.execute("DROP TABLE embeddings")
    conn.execute("ALTER TABLE embeddings_new RENAME TO embeddings")
    for sql in indexes:
        conn.execute(sql)
    log.info("re-encoded %d embeddings as int8", moved)


# _MIGRATIONS[i] takes a database from version i to version i + 1.
_MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_to_v1, _to_v2, _to_v3, _to_v4,
                                                           _to_v5]
assert len(_MIGRATIONS) == SCHEMA_VERSION


def _under(roots: list[str]) -> tuple[str, list[str]]:
    """SQL condition (and its parameters) true when ``path`` is a root or lies below one."""
    clauses, params = [], []
    for root in roots:
        root = os.path.normpath(root)
        prefix = root if root.endswith(os.sep) else root + os.sep
        clauses.append("(path = ? OR substr(path, 1, length(?)) = ?)")
        params += [root, prefix, prefix]
    return "(" + (" OR ".join(clauses) or "0") + ")", params


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _guarded(method):
    """Run a public method under the catalog's lock; SQLite errors become CatalogError."""
    @functools.wraps(method)
    def wrapper(self: Catalog, *args, **kwargs):
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise CatalogError(f"{self.path}: {method.__name__} failed: {exc}") from exc
    return wrapper


class Catalog:
    """One SQLite catalog; safe to share between threads (every call holds one lock)."""

    def __init__(self, db_path: str | Path):
        self.path = Path(db_path)
        self._lock = threading.RLock()
        self._depth = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except CatalogError:
            self._conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise CatalogError(f"{self.path}: not a usable SQLite catalog ({exc})") from exc

    def _stored_version(self) -> int:
        if not self._conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
            return 0
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        version = self._stored_version()
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"{self.path}: catalog schema version {version} is newer than this program "
                f"supports (version {SCHEMA_VERSION}); use a newer Lookalike")
        for step in range(version, SCHEMA_VERSION):
            log.info("migrating catalog %s from schema %d to %d", self.path, step, step + 1)
            with self.transaction():
                _MIGRATIONS[step](self._conn)
                self._conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(step + 1),))

    @property
    def schema_version(self) -> int:
        return int(self.get_meta("schema_version") or 0)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Catalog]:
        """BEGIN ... COMMIT, ROLLBACK on exception. Nested levels are savepoints; only the
        outermost level commits. Other threads wait until the transaction ends."""
        with self._lock:
            depth = self._depth
            self._conn.execute("BEGIN" if depth == 0 else f"SAVEPOINT level{depth}")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                self._end(depth, ok=False)
                raise
            self._depth -= 1
            self._end(depth, ok=True)

    def _end(self, depth: int, ok: bool) -> None:
        if depth > 0:
            if not ok:
                self._conn.execute(f"ROLLBACK TO level{depth}")
            self._conn.execute(f"RELEASE level{depth}")
            return
        try:
            self._conn.execute("COMMIT" if ok else "ROLLBACK")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise CatalogError(f"{self.path}: could not end transaction: {exc}") from exc

    def snapshot(self) -> AbstractContextManager[Catalog]:
        """A consistent view for several reads: one transaction, other threads wait."""
        return self.transaction()

    def _write(self, sql: str, params: Iterable = ()) -> sqlite3.Cursor:
        with self.transaction():
            return self._conn.execute(sql, tuple(params))

    def _touch(self) -> None:
        """Bump the content stamp; called inside the transaction that changes photos, so a
        saved index stamped with the old value reads as stale even after a crash."""
        self._conn.execute("INSERT INTO meta (key, value) VALUES (?, '1') ON CONFLICT(key)"
                           " DO UPDATE SET value = CAST(value AS INTEGER) + 1", (_STAMP,))

    @_guarded
    def content_stamp(self) -> int:
        """Changes whenever files or embeddings change (and only then)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (_STAMP,)).fetchone()
        return int(row[0]) if row else 0

    @_guarded
    def start_scan(self, roots: list[str]) -> int:
        return int(self._write("INSERT INTO scans (started_at, roots_json, cancelled)"
                               " VALUES (?, ?, 0)", (_now(), json.dumps([str(r) for r in roots])))
                   .lastrowid)

    @_guarded
    def finish_scan(self, scan_id: int, cancelled: bool) -> None:
        self._write("UPDATE scans SET finished_at = ?, cancelled = ? WHERE id = ?",
                    (_now(), int(cancelled), scan_id))

    @_guarded
    def stat_map(self) -> dict[str, tuple[int, int, int]]:
        rows = self._conn.execute("SELECT path, id, size, mtime_ns FROM files")
        return {path: (fid, size, mtime) for path, fid, size, mtime in rows}

    @_guarded
    def upsert_file(self, path: str, size: int, mtime_ns: int, content_hash: str,
                    width: int | None, height: int | None, format: str | None,
                    capture_time: str | None, camera: str | None, scan_id: int) -> int:
        with self.transaction():
            self._conn.execute(_UPSERT, (path, size, mtime_ns, content_hash, width, height,
                                         format, capture_time, camera, scan_id))
            self._touch()
            row = self._conn.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()
            return int(row[0])

    @_guarded
    def mark_seen(self, file_ids: Iterable[int], scan_id: int) -> None:
        with self.transaction():
            self._conn.executemany("UPDATE files SET last_seen_scan = ? WHERE id = ?",
                                   ((scan_id, fid) for fid in file_ids))

    @_guarded
    def sweep(self, roots: list[str], scan_id: int) -> list[int]:
        where, params = _under(roots)
        with self.transaction():
            ids = [row[0] for row in self._conn.execute(
                f"SELECT id FROM files WHERE {where}"
                " AND (last_seen_scan IS NULL OR last_seen_scan != ?) ORDER BY id",
                params + [scan_id])]
            self._conn.executemany("DELETE FROM files WHERE id = ?", ((i,) for i in ids))
            # embeddings of reviewed photos stay: their decisions are scored and trained on
            orphans = self._conn.execute(
                "DELETE FROM embeddings WHERE content_hash NOT IN (SELECT content_hash FROM files)"
                " AND content_hash NOT IN (SELECT content_hash FROM review_members)").rowcount
            if ids or orphans:
                self._touch()
        log.info("swept %d missing files and %d orphan embeddings", len(ids), orphans)
        return ids

    def _select_files(self, where: str = "", params: Iterable = ()) -> list[FileRecord]:
        rows = self._conn.execute(f"SELECT {_FILE_COLS} FROM files {where} ORDER BY id",
                                  tuple(params))
        return [FileRecord(*row) for row in rows]

    @_guarded
    def files(self) -> list[FileRecord]:
        return self._select_files()

    @_guarded
    def files_by_ids(self, ids: Iterable[int]) -> dict[int, FileRecord]:
        ids, found = list(ids), {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update((r.id, r) for r in self._select_files(f"WHERE id IN ({marks})", chunk))
        return found

    @_guarded
    def file_by_path(self, path: str) -> FileRecord | None:
        records = self._select_files("WHERE path = ?", (path,))
        return records[0] if records else None

    @_guarded
    def files_with_hash(self, content_hash: str) -> list[FileRecord]:
        return self._select_files("WHERE content_hash = ?", (content_hash,))

    @_guarded
    def hash_groups(self) -> list[list[FileRecord]]:
        records = self._select_files(
            "WHERE content_hash IN (SELECT content_hash FROM files"
            " GROUP BY content_hash HAVING COUNT(*) > 1)")
        groups: dict[str, list[FileRecord]] = {}
        for record in records:  # ordered by id, so groups come out ordered by first id
            groups.setdefault(record.content_hash, []).append(record)
        return list(groups.values())

    @_guarded
    def representatives(self) -> dict[str, int]:
        rows = self._conn.execute("SELECT content_hash, MIN(id) FROM files GROUP BY content_hash")
        return {content_hash: fid for content_hash, fid in rows}

    @_guarded
    def count_files(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM files").fetchone()[0])

    @_guarded
    def put_embedding(self, content_hash: str, model_id: str, head: str,
                      vector: np.ndarray) -> None:
        """Store (or replace) one embedding, as int8 codes with a per-vector float32 scale
        (``encode_vector``: 4 + dim bytes; unit vectors' cosines move by well under 1e-3).
        Raises ValueError for a vector that is not 1-d or is not finite."""
        vec = np.ascontiguousarray(vector, dtype=np.float32)
        blob = encode_vector(vec)
        with self.transaction():
            self._write("INSERT OR REPLACE INTO embeddings (content_hash, model_id, head, dim,"
                        " vector) VALUES (?, ?, ?, ?, ?)",
                        (content_hash, model_id, head, vec.size, blob))
            self._touch()

    @_guarded
    def get_embedding(self, content_hash: str, model_id: str, head: str) -> np.ndarray | None:
        row = self._conn.execute(
            "SELECT vector, dim FROM embeddings WHERE content_hash = ? AND model_id = ? AND head = ?",
            (content_hash, model_id, head)).fetchone()
        if row is None:
            return None
        try:
            return decode_vector(*row)
        except ValueError as exc:
            raise CatalogError(f"{self.path}: embedding of content {content_hash} (model"
                               f" {model_id!r}, head {head!r}) is unreadable: {exc}") from exc

    @_guarded
    def embeddings(self, model_id: str, head: str) -> tuple[list[str], np.ndarray]:
        rows = self._conn.execute(
            "SELECT e.content_hash, e.dim, e.vector FROM embeddings e"
            " WHERE e.model_id = ? AND e.head = ?"
            " AND EXISTS (SELECT 1 FROM files f WHERE f.content_hash = e.content_hash)"
            " ORDER BY e.content_hash", (model_id, head)).fetchall()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        dims = {dim for _, dim, _ in rows}
        if len(dims) != 1:
            raise CatalogError(f"{self.path}: embeddings for model {model_id!r} head {head!r}"
                               f" have mixed dimensions {sorted(dims)}")
        dim = dims.pop()
        for content_hash, _, blob in rows:
            if len(blob) != 4 + dim:
                raise CatalogError(f"{self.path}: embedding of content {content_hash} (model"
                                   f" {model_id!r}, head {head!r}) is {len(blob)} bytes,"
                                   f" expected {4 + dim} for dim {dim}")
        # one join and one frombuffer for all rows: (scale, codes) records, multiplied at once
        record = np.dtype([("s", "<f4"), ("c", "i1", (dim,))])
        packed = np.frombuffer(b"".join(blob for _, _, blob in rows), dtype=record)
        matrix = np.multiply(packed["c"], packed["s"][:, None], dtype=np.float32)
        return [h for h, _, _ in rows], matrix

    @_guarded
    def drop_embeddings(self, model_id: str, head: str) -> int:
        """Delete every vector of one model's head; returns how many. The content stamp does
        not move: only a head no index is built from may be dropped (``Library`` drops heads
        that duplicate another)."""
        return self._write("DELETE FROM embeddings WHERE model_id = ? AND head = ?",
                           (model_id, head)).rowcount

    @_guarded
    def hashes_with_embedding(self, model_id: str, heads: Iterable[str]) -> set[str]:
        heads = sorted(set(heads))
        if not heads:
            return set()
        rows = self._conn.execute(
            f"SELECT content_hash FROM embeddings WHERE model_id = ?"
            f" AND head IN ({','.join('?' * len(heads))})"
            " GROUP BY content_hash HAVING COUNT(DISTINCT head) = ?",
            (model_id, *heads, len(heads)))
        return {row[0] for row in rows}

    @_guarded
    def clear_problems(self, roots: list[str]) -> None:
        where, params = _under(roots)
        self._write(f"DELETE FROM problems WHERE {where}", params)

    @_guarded
    def add_problem(self, path: str, kind: str, message: str, scan_id: int | None) -> None:
        self._write("INSERT INTO problems (path, kind, message, scan_id) VALUES (?, ?, ?, ?)",
                    (path, kind, message, scan_id))

    @_guarded
    def problems(self) -> list[Problem]:
        rows = self._conn.execute("SELECT path, kind, message FROM problems ORDER BY path, id")
        return [Problem(*row) for row in rows]

    @_guarded
    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    @_guarded
    def set_meta(self, key: str, value: str) -> None:
        self._write("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # decisions (review outcomes; pairs stored with hash_a < hash_b)
    @_guarded
    def record_decision(self, hashes: Iterable[str], decision: str) -> int:
        """Record ``decision`` ("not-duplicate" or "duplicate") for every pair of ``hashes``."""
        unique = sorted(set(hashes))
        # one content alone (byte-identical copies kept on purpose) is stored as (h, h)
        pairs = [(a, b) for i, a in enumerate(unique) for b in unique[i + 1:]] or [(h, h) for h in unique]
        with self.transaction():
            for a, b in pairs:
                self._write("INSERT OR REPLACE INTO decisions (hash_a, hash_b, decision, decided_at) "
                            "VALUES (?, ?, ?, ?)", (a, b, decision, _now()))
        return len(pairs)

    @_guarded
    def decisions(self, decision: str | None = None) -> set[tuple[str, str]]:
        sql, params = "SELECT hash_a, hash_b FROM decisions", ()
        if decision is not None:
            sql, params = sql + " WHERE decision = ?", (decision,)
        return {(a, b) for a, b in self._conn.execute(sql, params)}

    @_guarded
    def forget_decisions(self, hashes: Iterable[str]) -> None:
        unique = sorted(set(hashes))
        pairs = [(a, b) for i, a in enumerate(unique) for b in unique[i:]]
        with self.transaction():
            for a, b in pairs:
                self._write("DELETE FROM decisions WHERE hash_a = ? AND hash_b = ?", (a, b))

    # reviews (labelled groups for learning from the user; see engine.feedback)
    @_guarded
    def add_review(self, kind: str, level: str | None, model_id: str | None, threshold: float | None,
                   members: Iterable[tuple[str, str, bool, float | None, dict]]) -> int:
        """One review; ``members``: (content_hash, path, kept, similarity, features)."""
        with self.transaction():
            cur = self._write("INSERT INTO reviews (decided_at, kind, level, model_id, threshold)"
                              " VALUES (?, ?, ?, ?, ?)", (_now(), kind, level, model_id, threshold))
            review_id = int(cur.lastrowid)
            for digest, path, kept, sim, features in members:
                self._write("INSERT INTO review_members (review_id, content_hash, path, kept,"
                            " similarity, features_json) VALUES (?, ?, ?, ?, ?, ?)",
                            (review_id, digest, path, int(kept), sim, json.dumps(features)))
        return review_id

    @_guarded
    def reviews(self) -> list[tuple[tuple, list[tuple]]]:
        """Every review as ((id, decided_at, kind, level, model_id, threshold),
        [(content_hash, path, kept, similarity, features), ...]), oldest first."""
        heads = self._conn.execute("SELECT id, decided_at, kind, level, model_id, threshold"
                                   " FROM reviews ORDER BY id").fetchall()
        members: dict[int, list[tuple]] = {h[0]: [] for h in heads}
        for rid, digest, path, kept, sim, features in self._conn.execute(
                "SELECT review_id, content_hash, path, kept, similarity, features_json"
                " FROM review_members ORDER BY rowid"):
            members[rid].append((digest, path, bool(kept), sim, json.loads(features)))
        return [(h, members[h[0]]) for h in heads]

    @_guarded
    def review_counts(self) -> dict[str, int]:
        """{kind: number of reviews} (one query; the Learn tab shows it)."""
        return dict(self._conn.execute("SELECT kind, COUNT(*) FROM reviews GROUP BY kind").fetchall())

    @_guarded
    def delete_review(self, review_id: int) -> None:
        with self.transaction():
            self._write("DELETE FROM review_members WHERE review_id = ?", (review_id,))
            self._write("DELETE FROM reviews WHERE id = ?", (review_id,))
