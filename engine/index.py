"""``VectorIndex``: one hnswlib cosine index per (model id, head), labelled by catalog file ids.

It owns a reader-writer lock (hnswlib's add_items and knn_query must never overlap), grows its
capacity, and saves atomically beside a JSON side file holding what hnswlib does not (dim, ef...).
"""
from __future__ import annotations

import json
import logging
import os
import struct
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import hnswlib
import numpy as np

from engine.errors import VectorIndexError

log = logging.getLogger(__name__)

FORMAT = 1
_SPACE = "cosine"
# hnswlib's file header: offsetLevel0, max_elements, cur_element_count, size_data_per_element,
# label_offset, offsetData, maxlevel, enterpoint, maxM, maxM0, M, mult, ef_construction.
_HEADER = struct.Struct("<QQQQQQiIQQQdQ")
_NOT_CONTIGUOUS = "contiguous 2D array"  # hnswlib: fewer than k results were reachable
_DELETED_BYTE, _DELETE_MARK = 2, 0x01  # hnswlib marks a deleted item in its level-0 record
_BRUTE_CHUNK = 8192
_INT_KEYS = ("dim", "M", "ef_construction", "ef", "capacity", "count")
_TEMP_SUFFIX = ".tmp"
_TEMP_MAX_AGE_S = 24 * 3600  # where a writer's pid cannot be checked


class _RWLock:
    """Many readers or one writer. A waiting writer holds back new readers, so it is not starved."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class VectorIndex:
    """Approximate nearest neighbours by cosine similarity over L2-normalised vectors."""

    def __init__(self, dim: int, *, model_id: str = "", head: str = "", M: int = 16,
                 ef_construction: int = 200, ef: int = 64, initial_capacity: int = 1024):
        if min(dim, ef_construction, ef, initial_capacity) < 1 or M < 2:
            raise VectorIndexError(
                f"invalid index parameters: dim={dim}, M={M}, ef_construction={ef_construction}, "
                f"ef={ef}, initial_capacity={initial_capacity}")
        index = hnswlib.Index(space=_SPACE, dim=dim)
        index.init_index(max_elements=initial_capacity, ef_construction=ef_construction, M=M,
                         allow_replace_deleted=True)
        self._setup(index, model_id, head, ef, set(), set())

    def _setup(self, index: hnswlib.Index, model_id: str, head: str, ef: int,
               live: set[int], deleted: set[int]) -> None:
        index.set_ef(ef)
        self._index = index
        self._model_id = model_id
        self._head = head
        self._ef = ef
        self._live = live
        # Labels marked deleted whose slot may still exist (a later insert can reuse it).
        # Only these need hnswlib's slow unmark attempt when an id comes back; a new id is
        # recognised by two set lookups (7 µs → < 0.1 µs per id at a million photos).
        self._deleted = deleted
        self._lock = _RWLock()

    @classmethod
    def load(cls, path: str | Path) -> "VectorIndex":
        """Load ``path`` and its side file ``path + ".json"``; ``ef`` is re-applied."""
        path = Path(path)
        meta = _read_meta(_side_path(path))
        live = _live_labels(path, _read_header(path, meta))
        if len(live) != meta["count"]:
            raise VectorIndexError(f"{path}: holds {len(live)} live items but the side file "
                                   f"says {meta['count']}")
        index = hnswlib.Index(space=_SPACE, dim=meta["dim"])
        try:
            index.load_index(str(path), max_elements=0, allow_replace_deleted=True)
        except (RuntimeError, MemoryError) as exc:
            raise VectorIndexError(f"{path}: cannot load index: {exc}") from exc
        loaded = cls.__new__(cls)
        deleted = set(map(int, index.get_ids_list())) - live
        loaded._setup(index, meta["model_id"], meta["head"], meta["ef"], live, deleted)
        log.info("loaded %s: %d items, dim %d", path, len(live), meta["dim"])
        return loaded

    def save(self, path: str | Path) -> None:
        """Write the index, then its side file, each through a synced temporary and a rename."""
        path = Path(path)
        side = _side_path(path)
        temps: list[Path] = []
        with self._lock.write():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                temps = [_temp_path(path), _temp_path(side)]
                self._index.save_index(str(temps[0]))
                if temps[0].stat().st_size < _HEADER.size:
                    raise OSError("hnswlib wrote no index data")
                _fsync_file(temps[0])
                temps[1].write_text(json.dumps(self._meta(), indent=2), encoding="utf-8")
                _fsync_file(temps[1])
                os.replace(temps[0], path)
                os.replace(temps[1], side)
                _fsync_dir(path.parent)
            except (OSError, RuntimeError) as exc:
                raise VectorIndexError(f"{path}: cannot save index: {exc}") from exc
            finally:
                for temp in temps:
                    temp.unlink(missing_ok=True)
        log.info("saved %s: %d items", path, len(self._live))

    def _meta(self) -> dict:
        return {"format": FORMAT, "dim": self.dim, "space": _SPACE, "model_id": self._model_id,
                "head": self._head, "M": self.M, "ef_construction": self._index.ef_construction,
                "ef": self._ef, "capacity": self._index.max_elements, "count": len(self._live)}

    dim = property(lambda self: self._index.dim, doc="Length of the vectors.")
    model_id = property(lambda self: self._model_id, doc="Model that made the vectors.")
    head = property(lambda self: self._head, doc="Model head that made the vectors.")
    M = property(lambda self: self._index.M, doc="hnswlib's graph degree.")
    capacity = property(lambda self: self._index.max_elements, doc="Slots before a resize.")

    @property
    def ef(self) -> int:
        return self._ef

    @ef.setter
    def ef(self, value: int) -> None:
        if value < 1:
            raise VectorIndexError(f"ef must be at least 1, got {value}")
        with self._lock.write():
            self._index.set_ef(value)
            self._ef = value

    def __len__(self) -> int:
        return len(self._live)

    def ids(self) -> set[int]:
        with self._lock.read():
            return set(self._live)

    def __contains__(self, file_id: object) -> bool:
        return isinstance(file_id, (int, np.integer)) and int(file_id) in self._live

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Insert or replace one vector per id (the last one wins when an id repeats)."""
        labels, data = self._check_batch(ids, vectors)
        if not len(labels):
            return
        with self._lock.write():
            fresh = np.array([not self._has_slot(label) for label in labels.tolist()], dtype=bool)
            self._grow(int(fresh.sum()))
            if fresh.any():  # new labels may reuse the slots of deleted ones
                self._index.add_items(data[fresh], labels[fresh], replace_deleted=True)
            if not fresh.all():  # live or just-undeleted labels: overwrite in place
                self._index.add_items(data[~fresh], labels[~fresh])
            self._live.update(labels.tolist())

    def remove(self, ids: Iterable[int]) -> None:
        """Hide ids from queries and ``len``; ids not in the index are ignored."""
        with self._lock.write():
            for label in map(int, ids):
                if label in self._live:
                    self._index.mark_deleted(label)
                    self._live.discard(label)
                    self._deleted.add(label)

    def _has_slot(self, label: int) -> bool:
        """Whether ``label`` has a slot; a deleted one is unmarked so it can be overwritten."""
        if label in self._live:
            return True
        if label not in self._deleted:
            return False
        self._deleted.discard(label)
        try:
            self._index.unmark_deleted(label)
        except RuntimeError:  # "Label not found": its slot was reused by another label
            return False
        return True

    def _grow(self, extra: int) -> None:
        needed = self._index.element_count + extra
        capacity = self._index.max_elements
        if needed > capacity:
            new_capacity = max(2 * capacity, needed)
            self._index.resize_index(new_capacity)
            log.debug("index capacity %d -> %d", capacity, new_capacity)

    def _check_batch(self, ids: Sequence[int], vectors: np.ndarray,
                     ) -> tuple[np.ndarray, np.ndarray]:
        raw = np.asarray(ids)
        data = self._check_vectors(vectors, "vectors")
        if raw.ndim != 1 or (raw.size and raw.dtype.kind not in "iu"):
            raise VectorIndexError(f"ids must be a flat sequence of integers, got {raw.dtype} "
                                   f"with shape {raw.shape}")
        if len(raw) != len(data):
            raise VectorIndexError(f"{len(raw)} ids for {len(data)} vectors")
        labels = raw.astype(np.int64)
        if (labels < 0).any():
            raise VectorIndexError("ids must not be negative")
        _, last_reversed = np.unique(labels[::-1], return_index=True)
        keep = np.sort(len(labels) - 1 - last_reversed)
        return labels[keep], np.ascontiguousarray(data[keep])

    def _check_vectors(self, vectors: np.ndarray, what: str) -> np.ndarray:
        data = np.asarray(vectors, dtype=np.float32)
        if data.ndim != 2 or data.shape[1] != self.dim:
            raise VectorIndexError(f"{what} must have shape (n, {self.dim}), got {data.shape}")
        if not np.isfinite(data).all():
            raise VectorIndexError(f"{what} contain NaN or infinity")
        return np.ascontiguousarray(data)

    def query(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Labels (int64) and similarities (float32, 1 - cosine distance), best first, both of
        shape ``(n, min(k, len(self)))``. hnswlib itself searches with ``max(ef, k)``."""
        data = self._check_vectors(vectors, "queries")
        if k < 0:
            raise VectorIndexError(f"k must not be negative, got {k}")
        with self._lock.read():
            kk = min(k, len(self._live))
            if kk == 0 or not len(data):
                return _empty(len(data), kk)
            result = self._knn(data, kk)
        if result is not None:
            return result
        return self._query_exhaustively(data, k)

    def _knn(self, data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """hnswlib's answer, or None when it could not reach k live items."""
        try:
            labels, distances = self._index.knn_query(data, k=k)
        except RuntimeError as exc:
            if _NOT_CONTIGUOUS not in str(exc):
                raise VectorIndexError(f"query failed: {exc}") from exc
            return None
        return labels.astype(np.int64), (1.0 - distances).astype(np.float32)

    def _query_exhaustively(self, data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Retry with ef doubled up to the element count, then exact search. Takes the write
        lock because ef is shared by all searches."""
        with self._lock.write():
            kk = min(k, len(self._live))
            if kk == 0:
                return _empty(len(data), 0)
            ef, total = max(self._ef, kk), self._index.element_count
            try:
                while ef < total:
                    ef = min(2 * ef, total)
                    self._index.set_ef(ef)
                    result = self._knn(data, kk)
                    if result is not None:
                        log.debug("query needed ef=%d for k=%d", ef, kk)
                        return result
            finally:
                self._index.set_ef(self._ef)
            log.debug("exact search over %d live vectors for k=%d", len(self._live), kk)
            return self._brute_force(data, kk)

    def _brute_force(self, data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = data / np.maximum(np.linalg.norm(data, axis=1, keepdims=True), 1e-30)
        live = np.fromiter(self._live, dtype=np.int64, count=len(self._live))
        best_labels = np.empty((len(data), 0), dtype=np.int64)
        best_sims = np.empty((len(data), 0), dtype=np.float32)
        for start in range(0, len(live), _BRUTE_CHUNK):
            chunk = live[start:start + _BRUTE_CHUNK]
            stored = np.asarray(self._index.get_items(chunk), dtype=np.float32)
            sims = np.concatenate([best_sims, queries @ stored.T], axis=1)
            chunk_labels = np.broadcast_to(chunk, (len(data), len(chunk)))
            labels = np.concatenate([best_labels, chunk_labels], axis=1)
            top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
            best_sims = np.take_along_axis(sims, top, axis=1)
            best_labels = np.take_along_axis(labels, top, axis=1)
        return best_labels, best_sims.astype(np.float32)

    def vectors(self, ids: Iterable[int]) -> np.ndarray:
        """The stored (L2-normalised) vectors, one row per id, in the order given."""
        labels = [int(label) for label in ids]
        with self._lock.read():
            missing = [label for label in labels if label not in self._live]
            if missing:
                raise VectorIndexError(f"ids not in the index: {missing[:10]}")
            if not labels:
                return np.empty((0, self.dim), dtype=np.float32)
            return np.asarray(self._index.get_items(labels), dtype=np.float32)


def _empty(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    return np.empty((rows, cols), dtype=np.int64), np.empty((rows, cols), dtype=np.float32)


def _side_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _read_meta(side: Path) -> dict:
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VectorIndexError(f"{side}: side file is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VectorIndexError(f"{side}: cannot read side file: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise VectorIndexError(f"{side}: not a format {FORMAT} index side file")
    if meta.get("space") != _SPACE:
        raise VectorIndexError(f"{side}: space is {meta.get('space')!r}, expected {_SPACE!r}")
    for key in _INT_KEYS:
        value = meta.get(key)
        minimum = 0 if key == "count" else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise VectorIndexError(f"{side}: {key!r} is missing or invalid: {value!r}")
    for key in ("model_id", "head"):
        if not isinstance(meta.get(key), str):
            raise VectorIndexError(f"{side}: {key!r} is missing or not a string")
    return meta


def _read_header(path: Path, meta: dict) -> dict:
    """hnswlib's file header, checked against the side file (hnswlib ignores a dim mismatch)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_HEADER.size)
    except FileNotFoundError:
        raise VectorIndexError(f"{path}: index file is missing") from None
    except OSError as exc:
        raise VectorIndexError(f"{path}: cannot read index file: {exc}") from exc
    if len(raw) < _HEADER.size:
        raise VectorIndexError(f"{path}: index file is truncated")
    fields = _HEADER.unpack(raw)
    header = {"dim": (fields[4] - fields[5]) // 4, "capacity": fields[1], "M": fields[10],
              "ef_construction": fields[12], "elements": fields[2], "record_size": fields[3],
              "label_offset": fields[4]}
    for key in ("dim", "capacity", "M", "ef_construction"):
        if header[key] != meta[key]:
            raise VectorIndexError(f"{path}: {key} is {header[key]} but the side file says "
                                   f"{meta[key]}")
    if fields[0] != 0 or header["label_offset"] + 8 > header["record_size"]:
        raise VectorIndexError(f"{path}: unsupported hnswlib file layout")
    return header


def _live_labels(path: Path, header: dict) -> set[int]:
    """Labels not marked deleted, read from the level-0 records that follow the header.

    hnswlib's Python API lists deleted labels too and has no call that tells them apart.
    """
    count, size, at = header["elements"], header["record_size"], header["label_offset"]
    if count == 0:
        return set()
    try:
        records = np.memmap(path, dtype=np.uint8, mode="r", offset=_HEADER.size,
                            shape=(count, size))
        deleted = (records[:, _DELETED_BYTE] & _DELETE_MARK).astype(bool)
        labels = np.ascontiguousarray(records[:, at:at + 8]).view("<u8").ravel()
        del records
    except (OSError, ValueError) as exc:
        raise VectorIndexError(f"{path}: index file is truncated or unreadable: {exc}") from exc
    return set(labels[~deleted].tolist())


def _temp_path(target: Path) -> Path:
    """``.<name>.<pid>.<random>.tmp``: the pid tells ``remove_stale_temps`` whether its writer
    is still alive."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=_TEMP_SUFFIX,
                                dir=target.parent)
    os.close(fd)
    return Path(name)


def remove_stale_temps(folder: str | Path) -> int:
    """Delete the temporaries of saves whose process died mid-write (killed, power cut).

    A temporary is stale when its writer's process is gone (POSIX), or, where that cannot be
    asked, when it is older than a day. Returns how many were removed.
    """
    removed = 0
    for temp in Path(folder).glob(f".*{_TEMP_SUFFIX}"):
        if _writer_alive(temp):
            continue
        try:
            temp.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove stale temporary %s: %s", temp, exc)
    if removed:
        log.info("removed %d temporaries left by interrupted saves in %s", removed, folder)
    return removed


def _writer_alive(temp: Path) -> bool:
    parts = temp.name.rsplit(".", 3)  # [".<name>", "<pid>", "<random>", "tmp"]
    pid = int(parts[1]) if len(parts) == 4 and parts[1].isdigit() else None
    if pid is None or os.name != "posix":  # os.kill(pid, 0) would terminate it on Windows
        try:
            return time.time() - temp.stat().st_mtime < _TEMP_MAX_AGE_S
        except FileNotFoundError:
            return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":  # Windows cannot open a folder; its rename is already durable enough
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
