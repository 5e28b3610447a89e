"""``VectorIndex``: one approximate nearest-neighbour index per (model id, head), labelled by
catalog file ids: a faiss HNSW graph over 8-bit scalar-quantised vectors.

8 bits per component (one uniform range, [-1, 1], which holds every component of an
L2-normalised vector, so nothing is trained on the library and no later photo is clipped):
a 256-d vector takes 256 bytes instead of hnswlib's 1,024, and the whole entry (codes, graph
links, label) about 410 bytes at M = 16. The scores it returns are the inner product of the
float query with the decoded vector, within about ±0.004 of the exact cosine; callers that
need exact scores (the library's grouping and find-similar) rescore the candidates with the
catalog's vectors.

faiss's HNSW cannot delete, so the index keeps a label per stored position (-1 once removed or
replaced), searches through a bitmap of live positions, and rebuilds itself from its own codes
(lossless: a decoded vector re-encodes to the same codes) once the dead outnumber the live.
It owns a reader-writer lock (adds and searches must never overlap) and saves atomically: one
file (a header with the metadata, the labels, then faiss's own serialisation) written to a
synced temporary and renamed.
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
from typing import Callable, Iterable, Iterator, Sequence

import faiss
import numpy as np

from engine.errors import VectorIndexError

log = logging.getLogger(__name__)

FORMAT = 2  # format 1 was hnswlib's file plus a JSON side file (its files end in .hnsw)
_MAGIC = b"LOOKALIKE-INDEX\n"
_LENGTH = struct.Struct("<Q")
_SPACE = "cosine"
_QUANTISER = "8bit-uniform[-1,1]"
_BRUTE_CHUNK = 8192
# M 16, ef_construction 200, ef 128, from benchmarks/bench_index.py on this machine's 2 cores
# (docs/benchmarks.md): recall@10 ≥ 0.98 through the library's exact re-ranking on clustered
# synthetic vectors at 100k (ef 32 suffices) and 1M (ef 64), and on real Caltech-101
# embeddings repeated into bursts of ~33 near-identical copies at 100k, where M 16 needs ef
# 128 (0.981; M 32 reaches 0.995 at ef 32 but takes 536 bytes per entry instead of 408,
# which breaks the 2 KB per photo budget). ef 128 costs 0.45 ms p50 at 100k, 0.57 ms at 1M.
DEFAULT_EF = 128
_COMPACT_MIN_DEAD = 256  # fewer dead entries than this are never worth a rebuild
_INT_KEYS = ("dim", "M", "ef_construction", "ef", "count", "stored")
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


def _new_faiss(dim: int, M: int, ef_construction: int) -> faiss.IndexHNSWSQ:
    index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit_uniform, M, faiss.METRIC_INNER_PRODUCT)
    index.train(np.stack([np.full(dim, -1.0, np.float32), np.ones(dim, np.float32)]))  # the range
    index.hnsw.efConstruction = ef_construction
    return index


def _unit(data: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), so inner product is cosine."""
    norms = np.linalg.norm(data, axis=1, keepdims=True)
    return np.ascontiguousarray(data / np.maximum(norms, 1e-30), dtype=np.float32)


class VectorIndex:
    """Approximate nearest neighbours by cosine similarity (vectors are L2-normalised on the
    way in and stored with 8 bits per component)."""

    def __init__(self, dim: int, *, model_id: str = "", head: str = "", M: int = 16,
                 ef_construction: int = 200, ef: int = DEFAULT_EF, initial_capacity: int = 1024):
        if min(dim, ef_construction, ef, initial_capacity) < 1 or M < 2:
            raise VectorIndexError(
                f"invalid index parameters: dim={dim}, M={M}, ef_construction={ef_construction}, "
                f"ef={ef}, initial_capacity={initial_capacity}")
        self._setup(_new_faiss(dim, M, ef_construction), model_id, head, ef,
                    np.full(initial_capacity, -1, np.int64))

    def _setup(self, index: faiss.IndexHNSWSQ, model_id: str, head: str, ef: int,
               labels: np.ndarray) -> None:
        """``labels``: a buffer whose first ``index.ntotal`` entries are the label stored at each
        position (-1: removed or replaced)."""
        self._index = index
        self._model_id = model_id
        self._head = head
        self._ef = ef
        self._labels = labels
        stored = labels[:index.ntotal]
        live = np.nonzero(stored >= 0)[0]
        self._where: dict[int, int] = dict(zip(stored[live].tolist(), live.tolist()))  # label → position
        self._selector: tuple | None = None  # (bitmap, faiss selector) of the live positions
        self._lock = _RWLock()

    @classmethod
    def load(cls, path: str | Path) -> "VectorIndex":
        """Load an index written by ``save``; every part is checked against the header."""
        path = Path(path)
        try:
            with open(path, "rb") as fh:
                meta = _read_header(path, fh)
                raw = fh.read(8 * meta["stored"])
                if len(raw) != 8 * meta["stored"]:
                    raise VectorIndexError(f"{path}: index file is truncated (labels)")
                labels = np.frombuffer(raw, dtype="<i8").astype(np.int64)
                index = faiss.read_index(faiss.PyCallbackIOReader(fh.read))
        except VectorIndexError:
            raise
        except FileNotFoundError:
            raise VectorIndexError(f"{path}: index file is missing") from None
        except (OSError, RuntimeError, ValueError, MemoryError) as exc:
            raise VectorIndexError(f"{path}: cannot load index: {exc}") from exc
        _check_loaded(path, meta, labels, index)
        buffer = np.full(max(len(labels), 1024), -1, np.int64)
        buffer[:len(labels)] = labels
        loaded = cls.__new__(cls)
        loaded._setup(index, meta["model_id"], meta["head"], meta["ef"], buffer)
        log.info("loaded %s: %d items, dim %d", path, len(loaded), meta["dim"])
        return loaded

    def save(self, path: str | Path) -> None:
        """Write header, labels and faiss's serialisation to a synced temporary, then rename."""
        path = Path(path)
        temp: Path | None = None
        with self._lock.read():  # saving reads only: queries may go on meanwhile
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                temp = _temp_path(path)
                meta = json.dumps(self._meta()).encode("utf-8")
                with open(temp, "wb") as fh:
                    fh.write(_MAGIC + _LENGTH.pack(len(meta)) + meta)
                    fh.write(self._labels[:self._index.ntotal].astype("<i8").tobytes())
                    faiss.write_index(self._index, faiss.PyCallbackIOWriter(fh.write))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(temp, path)
                _fsync_dir(path.parent)
            except (OSError, RuntimeError) as exc:
                raise VectorIndexError(f"{path}: cannot save index: {exc}") from exc
            finally:
                if temp is not None:
                    temp.unlink(missing_ok=True)
        log.info("saved %s: %d items", path, len(self._where))

    def _meta(self) -> dict:
        return {"format": FORMAT, "dim": self.dim, "space": _SPACE, "quantiser": _QUANTISER,
                "model_id": self._model_id, "head": self._head, "M": self.M,
                "ef_construction": self.ef_construction, "ef": self._ef,
                "count": len(self._where), "stored": int(self._index.ntotal)}

    dim = property(lambda self: int(self._index.d), doc="Length of the vectors.")
    model_id = property(lambda self: self._model_id, doc="Model that made the vectors.")
    head = property(lambda self: self._head, doc="Model head that made the vectors.")
    M = property(lambda self: int(self._index.hnsw.nb_neighbors(1)), doc="HNSW graph degree.")
    ef_construction = property(lambda self: int(self._index.hnsw.efConstruction),
                               doc="Candidate list length while inserting.")
    capacity = property(lambda self: len(self._labels),
                        doc="Stored positions before the label buffer grows.")
    stored = property(lambda self: int(self._index.ntotal),
                      doc="Entries in the graph, removed and replaced ones included.")

    @property
    def ef(self) -> int:
        return self._ef

    @ef.setter
    def ef(self, value: int) -> None:
        if value < 1:
            raise VectorIndexError(f"ef must be at least 1, got {value}")
        with self._lock.write():
            self._ef = value

    def __len__(self) -> int:
        return len(self._where)

    def ids(self) -> set[int]:
        with self._lock.read():
            return set(self._where)

    def __contains__(self, file_id: object) -> bool:
        return isinstance(file_id, (int, np.integer)) and int(file_id) in self._where

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Insert or replace one vector per id (the last one wins when an id repeats)."""
        labels, data = self._check_batch(ids, vectors)
        if not len(labels):
            return
        data = _unit(data)
        with self._lock.write():
            start = int(self._index.ntotal)
            self._reserve(start + len(labels))
            self._index.add(data)
            for label in labels.tolist():  # a replaced vector's old entry goes dead
                old = self._where.get(label)
                if old is not None:
                    self._labels[old] = -1
            self._labels[start:start + len(labels)] = labels
            self._where.update(zip(labels.tolist(), range(start, start + len(labels))))
            self._changed()

    def remove(self, ids: Iterable[int]) -> None:
        """Hide ids from queries and ``len``; ids not in the index are ignored."""
        with self._lock.write():
            gone = 0
            for label in map(int, ids):
                position = self._where.pop(label, None)
                if position is not None:
                    self._labels[position] = -1
                    gone += 1
            if gone:
                self._changed()

    def _reserve(self, size: int) -> None:
        if size > len(self._labels):
            grown = np.full(max(2 * len(self._labels), size), -1, np.int64)
            grown[:len(self._labels)] = self._labels
            log.debug("index label buffer %d -> %d", len(self._labels), len(grown))
            self._labels = grown

    def _changed(self) -> None:
        """After a write: the live bitmap is stale; rebuild once the dead outnumber the live."""
        self._selector = None
        dead = int(self._index.ntotal) - len(self._where)
        if dead >= _COMPACT_MIN_DEAD and dead > len(self._where):
            self._compact()

    def _compact(self) -> None:
        """A fresh graph of the live entries only, from their own codes (re-encoding a decoded
        vector gives the same codes back, so nothing is lost)."""
        positions = np.sort(np.fromiter(self._where.values(), np.int64, len(self._where)))
        labels = self._labels[positions]
        fresh = _new_faiss(self.dim, self.M, self.ef_construction)
        for start in range(0, len(positions), _BRUTE_CHUNK):
            fresh.add(self._index.reconstruct_batch(positions[start:start + _BRUTE_CHUNK]))
        log.debug("index compacted: %d entries -> %d", self._index.ntotal, len(positions))
        buffer = np.full(len(self._labels), -1, np.int64)
        buffer[:len(labels)] = labels
        self._index, self._labels = fresh, buffer
        self._where = dict(zip(labels.tolist(), range(len(labels))))
        self._selector = None

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
        """Labels (int64) and similarities (float32: the query's cosine with the stored,
        8-bit vector), best first, both of shape ``(n, min(k, len(self)))``. The graph is
        searched with ``max(ef, k)`` candidates; where fewer than k live items are reachable,
        with more, then exhaustively."""
        data = self._check_vectors(vectors, "queries")
        if k < 0:
            raise VectorIndexError(f"k must not be negative, got {k}")
        data = _unit(data)
        with self._lock.read():
            kk = min(k, len(self._where))
            if kk == 0 or not len(data):
                return _empty(len(data), kk)
            result = self._knn(data, kk, max(self._ef, kk))
            return result if result is not None else self._query_exhaustively(data, kk)

    def _knn(self, data: np.ndarray, k: int, ef: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The graph's answer, or None when it could not reach k live items."""
        params = faiss.SearchParametersHNSW()
        params.efSearch = ef
        live = self._live_selector()  # held here: the selector points into its bitmap
        if live is not None:
            params.sel = live[1]
        sims, positions = self._index.search(data, k, params=params)
        if (positions < 0).any():
            return None
        return self._labels[positions], sims.astype(np.float32, copy=False)

    def _live_selector(self) -> tuple | None:
        stored = int(self._index.ntotal)
        if len(self._where) == stored:
            return None
        cached = self._selector
        if cached is None:  # two readers may both build it: the same bitmap either way
            bits = np.packbits(self._labels[:stored] >= 0, bitorder="little")
            cached = (bits, faiss.IDSelectorBitmap(stored, faiss.swig_ptr(bits)))
            self._selector = cached
        return cached

    def _query_exhaustively(self, data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Retry with ef doubled up to the stored count, then exact search over the codes."""
        ef, total = max(self._ef, k), int(self._index.ntotal)
        while ef < total:
            ef = min(2 * ef, total)
            result = self._knn(data, k, ef)
            if result is not None:
                log.debug("query needed ef=%d for k=%d", ef, k)
                return result
        log.debug("exact search over %d live vectors for k=%d", len(self._where), k)
        return self._brute_force(data, k)

    def _brute_force(self, data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        positions = np.sort(np.fromiter(self._where.values(), np.int64, len(self._where)))
        best_labels = np.empty((len(data), 0), dtype=np.int64)
        best_sims = np.empty((len(data), 0), dtype=np.float32)
        for start in range(0, len(positions), _BRUTE_CHUNK):
            chunk = positions[start:start + _BRUTE_CHUNK]
            stored = self._index.reconstruct_batch(chunk)
            sims = np.concatenate([best_sims, data @ stored.T], axis=1)
            chunk_labels = np.broadcast_to(self._labels[chunk], (len(data), len(chunk)))
            labels = np.concatenate([best_labels, chunk_labels], axis=1)
            top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
            best_sims = np.take_along_axis(sims, top, axis=1)
            best_labels = np.take_along_axis(labels, top, axis=1)
        return best_labels, best_sims.astype(np.float32)

    def vectors(self, ids: Iterable[int]) -> np.ndarray:
        """The stored vectors as decoded from their 8-bit codes (unit length within about
        0.5 %; what ``query`` scores against), one row per id, in the order given."""
        labels = [int(label) for label in ids]
        with self._lock.read():
            missing = [label for label in labels if label not in self._where]
            if missing:
                raise VectorIndexError(f"ids not in the index: {missing[:10]}")
            if not labels:
                return np.empty((0, self.dim), dtype=np.float32)
            positions = np.array([self._where[label] for label in labels], np.int64)
            return self._index.reconstruct_batch(positions)


RESCORE_MARGIN = 0.01  # ~4 standard deviations of a code score's error against the exact cosine


def rescored_query(index: VectorIndex, vector: np.ndarray, k: int,
                   exact: Callable[[list[int]], list[np.ndarray | None]],
                   first: int | None = None) -> tuple[list[int], list[float]]:
    """The ``k`` labels most like ``vector`` by exact cosine, best first, with their cosines.

    The index proposes candidates by its 8-bit codes (``first``, default 2k + 10); ``exact``
    gives each label's full vector (None: unknown, its code score stands) and they are
    re-ranked. While the last candidate's code score is within ``RESCORE_MARGIN`` of the
    k-th exact cosine, a photo left out could still belong in the top k (a burst of nearly
    identical shots scores alike to within the codes' error), so the candidate list doubles.
    """
    norm = max(float(np.linalg.norm(vector)), 1e-12)
    query = np.asarray(vector, dtype=np.float32) / norm
    total = len(index)
    want = min(first or 2 * k + 10, total)
    known: dict[int, float | None] = {}  # label → exact cosine (None: no vector to score with)
    while True:
        labels, approx = index.query(query[None, :], want)
        labels, approx = labels[0].tolist(), approx[0].tolist()
        new = [label for label in labels if label not in known]
        for label, stored in zip(new, exact(new) if new else []):
            known[label] = None if stored is None else \
                float(query @ stored) / max(float(np.linalg.norm(stored)), 1e-12)
        scores = [a if known[label] is None else known[label] for label, a in zip(labels, approx)]
        order = sorted(range(len(labels)), key=lambda i: (-scores[i], labels[i]))[:k]
        if want >= total or len(order) < k or approx[-1] + RESCORE_MARGIN < scores[order[-1]]:
            return [labels[i] for i in order], [scores[i] for i in order]
        want = min(2 * want, total)


def expanded_queries(queries: np.ndarray, neighbours: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Query expansion (Chum et al., "Total Recall", ICCV 2007; weighted as αQE, Radenović et al.
    2018, with α = 1): each query becomes the unit-length sum of itself and its nearest
    neighbours' vectors, all taken at unit length, neighbour j weighted by ``weights[:, j]``
    (its cosine to the query, clipped at 0; default 1: plain averaging).

    ``queries`` (n, d), ``neighbours`` (n, k, d), ``weights`` (n, k). Searching again with the
    result ranks the photos that resemble the query's closest look-alikes too, which puts more
    of the query's kind of photo first (find-similar; ``engine.library.QUERY_EXPANSION``); the
    weights keep a nearest photo that is not alike at all from pulling the query towards it.
    """
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)  # noqa: E731
    q, nb = np.asarray(queries, np.float64), np.asarray(neighbours, np.float64)
    if q.ndim != 2 or nb.ndim != 3 or nb.shape[0] != q.shape[0] or nb.shape[2] != q.shape[1]:
        raise ValueError(f"need queries (n, d) and neighbours (n, k, d), got {q.shape} and {nb.shape}")
    w = np.ones(nb.shape[:2]) if weights is None else np.clip(np.asarray(weights, np.float64), 0.0, None)
    if w.shape != nb.shape[:2]:
        raise ValueError(f"need weights (n, k) = {nb.shape[:2]}, got {w.shape}")
    return unit(unit(q) + (unit(nb) * w[..., None]).sum(1)).astype(np.float32)


def _empty(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    return np.empty((rows, cols), dtype=np.int64), np.empty((rows, cols), dtype=np.float32)


def _read_header(path: Path, fh) -> dict:
    if fh.read(len(_MAGIC)) != _MAGIC:
        raise VectorIndexError(f"{path}: not a format {FORMAT} Lookalike index (an older or "
                               "foreign file; the library rebuilds it from the catalog)")
    raw = fh.read(_LENGTH.size)
    if len(raw) != _LENGTH.size:
        raise VectorIndexError(f"{path}: index file is truncated (header)")
    (length,) = _LENGTH.unpack(raw)
    text = fh.read(min(length, 1 << 20))
    if length > 1 << 20 or len(text) != length:
        raise VectorIndexError(f"{path}: index header is truncated or too long ({length} bytes)")
    try:
        meta = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VectorIndexError(f"{path}: cannot read index header: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise VectorIndexError(f"{path}: not a format {FORMAT} index header")
    for key, want in (("space", _SPACE), ("quantiser", _QUANTISER)):
        if meta.get(key) != want:
            raise VectorIndexError(f"{path}: {key} is {meta.get(key)!r}, expected {want!r}")
    for key in _INT_KEYS:
        value = meta.get(key)
        minimum = 0 if key in ("count", "stored") else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise VectorIndexError(f"{path}: {key!r} is missing or invalid: {value!r}")
    for key in ("model_id", "head"):
        if not isinstance(meta.get(key), str):
            raise VectorIndexError(f"{path}: {key!r} is missing or not a string")
    return meta


def _check_loaded(path: Path, meta: dict, labels: np.ndarray, index) -> None:
    """The graph, the labels and the header must describe the same index."""
    if not isinstance(index, faiss.IndexHNSWSQ) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise VectorIndexError(f"{path}: holds a {type(index).__name__}, not an inner-product "
                               "HNSW index over 8-bit codes")
    found = {"dim": int(index.d), "stored": int(index.ntotal), "M": int(index.hnsw.nb_neighbors(1)),
             "ef_construction": int(index.hnsw.efConstruction)}
    for key, value in found.items():
        if value != meta[key]:
            raise VectorIndexError(f"{path}: {key} is {value} but the header says {meta[key]}")
    live = labels[labels >= 0]
    if len(live) != meta["count"]:
        raise VectorIndexError(f"{path}: holds {len(live)} live items but the header says "
                               f"{meta['count']}")
    if len(np.unique(live)) != len(live) or (labels < -1).any():
        raise VectorIndexError(f"{path}: its labels are corrupt (repeated or invalid)")

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
