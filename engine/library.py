"""The library facade: scan → diff → embed → index → group. The only module that knows all.

A library is a folder (by default under the per-user data dir) holding ``catalog.sqlite``
(the source of truth) and ``index/`` (one HNSW index per model head, rebuilt from the catalog
whenever it is missing or stale).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import platformdirs

from engine.atomic import atomic_write
from engine.catalog import Catalog, FileRecord, Problem
from engine.embedding import Embedder
from engine.errors import LookalikeError
from engine.grouping import group_neighbours, rescore_neighbours
from engine.feedback import FeedbackStore
from engine.index import VectorIndex, expanded_queries, remove_stale_temps, rescored_query
from engine.ingest import Ingester
from engine.keeper import Candidate
from engine.keeper_advisor import KeeperAdvisor
from engine.keeper_model import FILE_NAME as KEEPER_FILE, KeeperPreference
from engine.model_bundle import ModelBundle, load_bundle
from engine.moments import DEFAULT_WINDOW_S, ShotScore, best_shot, group_moments, score_shot
from engine.progress import ProgressCallback, null_progress
from engine.scan import normalise, scan

log = logging.getLogger(__name__)
LEVELS = ("exact", "near", "similar", "moment")
# "moment" (bursts) is not a duplicate level: alike photos taken within seconds of each other,
# with the best shot suggested instead of the keeper of copies
_LEVEL_HEAD = {"near": ("copy", "near"), "similar": ("semantic", "similar"),
               "moment": ("semantic", "similar")}
NEIGHBOURS = 32
# Find-similar on the semantic head searches twice: the second time with the photo's vector
# plus its 2 closest other photos' vectors, each weighted by its cosine to the photo
# (``expanded_queries``). 2 is the largest number that keeps Recall@1 on the held-out training
# classes with plain averaging (1.0 at 1 and 2, 0.996 at 3); the cosine weights keep an
# unrelated nearest photo (a small library) from pulling the search towards it, for 0.3–0.4
# points of MAP@R. On the Caltech-101 test classes MAP@R rises from 0.7685 to 0.805 at the same
# Recall@1 (0.959). The copy head does not expand: a copy's neighbours are other copies or
# look-alikes, and adding them in would rank look-alikes of look-alikes among the copies.
QUERY_EXPANSION = {"semantic": 2}
_SHOWN_AS_ONE = 0.99995  # a cosine shown as 1.0000: the same picture (vectors are stored in fp16)
ACTIVE_MODEL = "active-model"   # file in the library folder: the model learned from feedback


@dataclass
class ScanReport:
    roots: list[str]
    found: int = 0
    unchanged: int = 0
    embedded: int = 0
    reused: int = 0
    removed: int = 0
    problems: list[Problem] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0


@dataclass(frozen=True)
class Member:
    file: FileRecord
    similarity: float          # cosine similarity to the copy suggested for keeping


@dataclass(frozen=True)
class DuplicateGroup:
    level: str                 # "exact", "near", "similar" or "moment"
    members: list[Member]
    keep: FileRecord
    reason: str


@dataclass(frozen=True)
class Match:
    file: FileRecord
    similarity: float            # cosine to the photo searched with
    score: float | None = None   # what the list is ranked by, when not the similarity: with query
                                 # expansion, the cosine to the expanded vector


@dataclass(frozen=True)
class LibraryInfo:
    folder: Path
    files: int
    distinct_photos: int
    model_id: str
    embedded: dict[str, int]
    problems: list[Problem]


def default_folder() -> Path:
    return Path(platformdirs.user_data_dir("lookalike", appauthor=False)) / "library"


class Library:
    """Construct once and pass around. ``embedder`` is loaded lazily unless given.

    Safe to share between threads: queries may run while a scan adds photos. One scan or
    ``forget`` runs at a time; indexes are created, synced and queried under one lock, so a
    query never sees an index half updated or swapped.
    """

    def __init__(self, folder: str | Path | None = None, *, model: str | None = None,
                 device: str = "auto", embedder: Embedder | None = None):
        self.folder = Path(folder) if folder else default_folder()
        self.catalog = Catalog(self.folder / "catalog.sqlite")
        model = model or (None if embedder else self.active_model_name())
        self.bundle: ModelBundle = embedder.bundle if embedder else load_bundle(model, (self.folder / "models",))
        self._embedder = embedder
        self._device = device
        self._indexes: dict[str, VectorIndex] = {}
        self._knn_cache: dict = {}
        self._wanted_cache: dict[str, tuple] = {}  # head → (stamp, ids, hashes, vectors)
        self._shot_scores: dict[str, ShotScore] = {}  # content hash → best-shot score
        self._keeper = KeeperAdvisor(self.folder / KEEPER_FILE)  # learned keeper + features cache
        self.feedback = FeedbackStore(self.catalog, self.folder / "feedback")
        self._lock = threading.RLock()        # _indexes, _knn_cache, index files and stamps
        self._writing = threading.Lock()      # one scan or forget at a time
        self._noted_stamp: int | None = None  # content stamp before the running change
        remove_stale_temps(self.folder / "index")
        self._forget_duplicate_heads()

    def _forget_duplicate_heads(self) -> None:
        """Vectors and index files an earlier version kept for a head identical to another
        (``ModelBundle.storage_head``): the same vector twice, now stored once. Once per model
        and head (a meta key remembers it): the DELETE scans the whole embeddings table."""
        for head in set(self.bundle.heads) - set(self.bundle.stored_heads):
            done = f"stored_once:{self.model_id}:{head}"
            if self.catalog.get_meta(done):
                continue
            dropped = self.catalog.drop_embeddings(self.model_id, head)
            self._remove_index_files(head, current=True)
            self.catalog.set_meta(done, "1")
            if dropped:
                log.info("dropped %d %s vectors of %s: the same as its %s vectors", dropped, head,
                         self.model_id, self.bundle.storage_head(head))

    def _remove_index_files(self, head: str, current: bool) -> None:
        """An earlier version's hnswlib files of ``head`` and, with ``current``, its index."""
        path = self._index_path(head)
        for old in ([path] if current else []) + [path.with_suffix(".hnsw"), path.with_suffix(".hnsw.json")]:
            old.unlink(missing_ok=True)

    def active_model_name(self) -> str | None:
        """The model this library uses when none is named: one activated by learning from
        feedback (``set_active_model``), else None (the built-in default)."""
        marker = self.folder / ACTIVE_MODEL
        name = marker.read_text(encoding="utf-8").strip() if marker.is_file() else ""
        if name and not (self.folder / "models" / name).is_dir():
            log.warning("active model %s is missing from %s/models; using the default", name, self.folder)
            return None
        return name or None

    def set_active_model(self, name: str | None) -> None:
        """Use the bundle ``name`` (in the library's models folder; None: the built-in default)
        from now on, here and in later sessions. Photos get the new model's embeddings on the
        next scan; the old ones stay in the catalog, so switching back is instant."""
        bundle = load_bundle(name, (self.folder / "models",))
        with self._writing, self._lock:
            self.bundle, self._embedder = bundle, None
            self._drop_indexes()
            self._wanted_cache.clear()
            self._forget_duplicate_heads()
            atomic_write(self.folder / ACTIVE_MODEL,
                         lambda tmp: Path(tmp).write_text((name or "") + "\n", encoding="utf-8"))

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def model_id(self) -> str:
        return self.bundle.model_id

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(self.bundle, device=self._device)
        return self._embedder

    # ---- folders --------------------------------------------------------------------------
    def folders(self) -> list[str]:
        """The photo folders this library watches (every folder ever scanned or added)."""
        return json.loads(self.catalog.get_meta("folders") or "[]")

    def add_folder(self, path: str | Path) -> list[str]:
        folder = normalise(path)
        if not Path(folder).is_dir():
            raise LookalikeError(f"{folder}: not a folder")
        folders = sorted(set(self.folders()) | {folder})
        self.catalog.set_meta("folders", json.dumps(folders))
        return folders

    def remove_folder(self, path: str | Path) -> list[str]:
        """Stop watching a folder and forget its photos (the files themselves are untouched)."""
        folder = normalise(path)
        folders = [f for f in self.folders() if f != folder]
        self.catalog.set_meta("folders", json.dumps(folders))
        self.forget([folder])
        return folders

    def forget(self, paths) -> int:
        """Drop files (or everything under folders) from the catalog and the indexes."""
        with self._writing, self._lock:
            self._note_stamp()
            removed = self.catalog.sweep([normalise(p) for p in paths], scan_id=-1)
            self._sync_indexes(set())
        return len(removed)

    # ---- scanning -------------------------------------------------------------------------
    def scan(self, roots, progress: ProgressCallback = null_progress) -> ScanReport:
        """Bring the catalog and indexes up to date with ``roots``; cancel via ``progress``."""
        started = time.perf_counter()
        roots = [normalise(r) for r in roots]
        for root in roots:
            if not Path(root).exists():
                raise LookalikeError(f"{root}: no such file or folder")
            try:
                root.encode("utf-8")
            except UnicodeEncodeError:
                raise LookalikeError(f"{root.encode('utf-8', 'backslashreplace').decode()}: the folder "
                                     "name is not valid UTF-8; rename it to scan it") from None
        with self._writing:
            report = self._update(roots, progress)
        report.seconds = time.perf_counter() - started
        return report

    def _update(self, roots: list[str], progress: ProgressCallback) -> ScanReport:
        for root in roots:
            if Path(root).is_dir():
                self.add_folder(root)
        report = ScanReport(roots)
        scan_id = self.catalog.start_scan(roots)
        records = {f.path: f for f in self.catalog.files()}
        found = scan(roots, lambda d, t, w: progress(d, 0, f"looking in {w}"),
                     known={path: (f.size, f.mtime_ns) for path, f in records.items()})
        report.found, report.cancelled = len(found.files), found.cancelled
        with self.catalog.transaction():
            self.catalog.clear_problems(roots)
            for p in found.problems:
                self.catalog.add_problem(p.path, p.kind, p.message, scan_id)
        todo = self._skip_unchanged(found.files, records, scan_id, report)
        self._note_stamp()
        try:
            stats = Ingester(self.catalog, self.embedder, scan_id).run(todo, progress) if todo else None
        except BaseException:
            self._drop_indexes()  # they may miss changes the next sync would not know of
            raise
        changed = stats.changed_ids if stats else set()
        if stats:
            report.embedded, report.reused = stats.embedded, stats.reused
            report.cancelled |= stats.cancelled
        with self._lock:  # queries see the removals and the index update together
            if not report.cancelled:
                report.removed = len(self.catalog.sweep(roots, scan_id))
            self._sync_indexes(changed)
        self.catalog.finish_scan(scan_id, report.cancelled)
        report.problems = [p for p in self.catalog.problems() if _under(p.path, roots)]
        return report

    def _skip_unchanged(self, entries, known: dict, scan_id: int, report: ScanReport):
        have = self.catalog.hashes_with_embedding(self.model_id, self.bundle.stored_heads)
        unchanged, todo = [], []
        for entry in entries:
            rec = known.get(entry.path)
            same = rec is not None and rec.size == entry.size and rec.mtime_ns == entry.mtime_ns
            if same and rec.content_hash in have:
                unchanged.append(rec.id)
            else:
                todo.append(entry)
        self.catalog.mark_seen(unchanged, scan_id)
        report.unchanged = len(unchanged)
        return todo

    # ---- indexes --------------------------------------------------------------------------
    def _index_path(self, head: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.model_id)
        return self.folder / "index" / f"{safe}-{head}.idx"

    def _stamp_key(self, head: str) -> str:
        return f"index_stamp:{self.model_id}:{head}"

    def _saved_is_current(self, head: str, stamp: int | None = None) -> bool:
        """Whether the saved index was written when the catalog's content stamp was ``stamp``
        (default: its current one)."""
        stamp = self.catalog.content_stamp() if stamp is None else stamp
        saved = self.catalog.get_meta(self._stamp_key(head))
        return saved == str(stamp) and self._index_path(head).exists()

    def _index(self, head: str) -> VectorIndex:
        """The head's index: in memory, else loaded when current, else rebuilt and saved."""
        head = self.bundle.storage_head(head)  # identical heads share one index
        with self._lock:
            index = self._indexes.get(head)
            if index is None:
                index = self._load(head) if self._saved_is_current(head) else None
                if index is None:
                    index, stamp = self._rebuild(head)
                    self._save(head, index, stamp)
                self._indexes[head] = index
            return index

    def _load(self, head: str) -> VectorIndex | None:
        try:
            return VectorIndex.load(self._index_path(head))
        except LookalikeError as exc:
            log.warning("rebuilding index: %s", exc)
            return None

    def _drop_indexes(self) -> None:
        with self._lock:
            self._indexes.clear()
            self._knn_cache = {}
            self._noted_stamp = None

    def _wanted(self, head: str) -> tuple[list[int], list[str], np.ndarray]:
        """Representative file id, content hash and vector of every distinct embedded photo.

        Kept in memory per head until the catalog's content stamp moves, so regrouping at
        another threshold (the GUI's slider) does not read every vector from SQLite again.
        """
        head = self.bundle.storage_head(head)
        with self.catalog.snapshot():
            stamp = self.catalog.content_stamp()
            cached = self._wanted_cache.get(head)
            if cached is not None and cached[0] == stamp:
                return cached[1], cached[2], cached[3]
            reps = self.catalog.representatives()
            hashes, matrix = self.catalog.embeddings(self.model_id, head)
        rows = [i for i, h in enumerate(hashes) if h in reps]
        kept = [hashes[i] for i in rows]
        vectors = matrix[rows] if rows else np.zeros((0, self.bundle.head_dim(head)), np.float32)
        if len(vectors):  # 8-bit storage leaves norms 1 ± ~2e-3: exact unit cosines again
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        vectors.setflags(write=False)  # shared by callers: nobody may change it in place
        result = ([reps[h] for h in kept], kept, vectors)
        self._wanted_cache[head] = (stamp, *result)
        return result

    def _rebuild(self, head: str) -> tuple[VectorIndex, int]:
        """A fresh index from the catalog, and the content stamp it reflects."""
        with self.catalog.snapshot():
            stamp = self.catalog.content_stamp()
            ids, _, vectors = self._wanted(head)
        index = VectorIndex(self.bundle.head_dim(head), model_id=self.model_id, head=head)
        if ids:
            index.add(ids, vectors)
        return index, stamp

    def _save(self, head: str, index: VectorIndex, stamp: int) -> None:
        """Index file first, then the stamp saying which catalog content it holds: a crash in
        between leaves the old stamp, so the next open rebuilds instead of trusting it."""
        index.save(self._index_path(head))
        self.catalog.set_meta(self._stamp_key(head), str(stamp))
        self._remove_index_files(head, current=False)

    def _note_stamp(self) -> None:
        """Before the catalog changes: a saved index still stamped with this value at sync
        time can be updated with the run's changes instead of being rebuilt."""
        with self._lock:
            self._noted_stamp = self.catalog.content_stamp()

    def _sync_indexes(self, changed: set[int]) -> None:
        """Make every head's index hold exactly one vector per distinct content, and save it.

        ``changed``: file ids whose content changed since the indexes were last synced (new
        ids are found by themselves)."""
        with self._lock:
            noted, self._noted_stamp = self._noted_stamp, None
            unchanged = noted is not None and not changed and self.catalog.content_stamp() == noted
            if not unchanged:
                self._knn_cache = {}
            for head in self.bundle.stored_heads:
                if unchanged and self._saved_is_current(head, noted):
                    continue  # an unchanged rescan: the saved index (and a loaded one) holds it all
                index = self._indexes.get(head)
                if index is None and noted is not None and self._saved_is_current(head, noted):
                    index = self._load(head)
                if index is None:
                    index, stamp = self._rebuild(head)
                else:
                    stamp = self._update_index(head, index, changed)
                self._save(head, index, stamp)
                self._indexes[head] = index

    def _update_index(self, head: str, index: VectorIndex, changed: set[int]) -> int:
        with self.catalog.snapshot():
            stamp = self.catalog.content_stamp()
            ids, _, vectors = self._wanted(head)
        want = dict(zip(ids, range(len(ids))))
        index.remove(index.ids() - want.keys())
        add = [i for i in ids if i not in index or i in changed]
        if add:
            index.add(add, vectors[[want[i] for i in add]])
        return stamp

    # ---- queries --------------------------------------------------------------------------
    def duplicates(self, level: str = "near", threshold: float | None = None, *,
                   window_s: float = DEFAULT_WINDOW_S) -> list[DuplicateGroup]:
        """Groups at ``level``; near and similar groups include exact copies of members.

        ``threshold`` overrides the model card's calibrated one (the GUI's slider). A group
        whose members all share one content is reported as ``exact``. Pairs a person marked
        "not a duplicate" never link, and a fully dismissed group is not shown again.
        ``moment`` groups (see ``moments``) use ``window_s`` and are never dismissed.
        """
        if level not in LEVELS:
            raise LookalikeError(f"unknown level '{level}' (choose from {', '.join(LEVELS)})")
        head, threshold_name = _LEVEL_HEAD.get(level, (None, None))
        if head and threshold is None:
            threshold = self.bundle.threshold(head, threshold_name)
        if level == "moment":
            return self.moments(threshold, window_s)
        with self._lock:  # the index does not change until the neighbours are read
            if head:
                self._index(head)  # loaded or rebuilt before the snapshot: that may take a while
            with self.catalog.snapshot():  # one consistent view, even while a scan writes
                dismissed = self.catalog.decisions("not-duplicate")
                if level == "near":  # "similar, not a near-duplicate" hides pairs here only
                    dismissed |= self.catalog.decisions("similar-not-near")
                exact = [g for g in self.catalog.hash_groups() if not _all_dismissed(g, dismissed)]
                if not head:
                    return [self._group(files, None) for files in exact]
                stamp = self.catalog.content_stamp()
                ids, hashes, vectors = self._wanted(head)
                files = self.catalog.files()
            groups: list[list[int]] = []
            if len(ids) >= 2:
                nids, nsims = self._neighbours(head, stamp, ids, vectors)
                nsims = _drop_dismissed(ids, hashes, nids, nsims, dismissed)
                groups = group_neighbours(np.asarray(ids, np.int64), vectors, nids, nsims, threshold)
        hash_of = dict(zip(ids, hashes))
        vec_of = dict(zip(hashes, vectors))
        files_of = _files_by_hash(files)
        out, covered = [], set()
        for group in groups:
            group_hashes = [hash_of[i] for i in group]
            covered.update(group_hashes)
            out.append(self._group([f for h in group_hashes for f in files_of[h]], vec_of, level))
        out += [self._group(files, None) for files in exact if files[0].content_hash not in covered]
        return sorted(out, key=lambda g: g.keep.path)

    def _neighbours(self, head: str, stamp: int, ids: list[int],
                    vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """k-NN of every distinct photo (``ids`` and ``vectors``, read at content ``stamp``),
        scored exactly with the catalog's vectors (the index's 8-bit codes only pick them),
        cached until the catalog or the index changes (so regrouping at another threshold is
        instant)."""
        with self._lock:
            key = (head, stamp, len(vectors))
            if self._knn_cache.get("key") != key:
                nids, nsims = self._index(head).query(vectors, min(NEIGHBOURS, len(vectors)))
                nsims = rescore_neighbours(np.asarray(ids, np.int64), vectors, nids, nsims)
                self._knn_cache = {"key": key, "value": (nids, nsims)}
            nids, nsims = self._knn_cache["value"]
            return nids, nsims.copy()

    def dismiss(self, group: DuplicateGroup, kind: str = "not-duplicate",
                threshold: float | None = None) -> None:
        """Remember that the photos of ``group`` are not duplicates of each other
        (``not-duplicate``), or not near-duplicates but still alike (``similar-not-near``:
        hidden at the near level only); recorded as a review to learn from."""
        if kind not in ("not-duplicate", "similar-not-near"):
            raise LookalikeError(f"cannot dismiss as '{kind}'")
        self.catalog.record_decision({m.file.content_hash for m in group.members}, kind)
        self._review(group, kind, [], threshold)

    def undismiss(self, group: DuplicateGroup) -> None:
        self.catalog.forget_decisions({m.file.content_hash for m in group.members})

    def record_removal(self, groups: list[DuplicateGroup], removed: list[str],
                       thresholds: dict[str, float] | None = None) -> int:
        """Record a "same photo" review for every group that loses photos in ``removed``
        (paths): the rest of it was kept. Call before the files move (snapshots are read
        from them). Returns the number of reviews."""
        gone, count = set(removed), 0
        for group in groups:
            if group.level == "moment" or not gone & {m.file.path for m in group.members}:
                continue
            self._review(group, "same-photo", sorted(gone), (thresholds or {}).get(group.level))
            count += 1
        return count

    def _review(self, group: DuplicateGroup, kind: str, removed: list[str],
                threshold: float | None) -> None:
        from engine.keeper_features import read_features

        gone = set(removed)
        members = [(m.file, m.file.path not in gone, m.similarity, *read_features(m.file))
                   for m in group.members]  # one read per photo: its features and snapshot
        self.feedback.record(kind, members, level=group.level, model_id=self.model_id,
                             threshold=threshold)

    def _group(self, files: list[FileRecord], vec_of: dict | None, level: str = "exact") -> DuplicateGroup:
        """One group with its keeper (learned when a preference is, else by the rules);
        similarities are to the keeper (1.0 for exact copies)."""
        keep_id, reason = self._keeper.choose(files, [_candidate(f) for f in files])
        keep = next(f for f in files if f.id == keep_id)
        if len({f.content_hash for f in files}) == 1:
            level = "exact"
        members = []
        for f in sorted(files, key=lambda f: (f.id != keep_id, f.path)):
            same = f.content_hash == keep.content_hash
            sim = 1.0 if same else float(np.dot(vec_of[f.content_hash], vec_of[keep.content_hash]))
            members.append(Member(f, round(min(1.0, sim), 4)))
        return DuplicateGroup(level, members, keep, reason)

    def moments(self, threshold: float | None = None,
                window_s: float = DEFAULT_WINDOW_S) -> list[DuplicateGroup]:
        """Stacks of alike photos taken at most ``window_s`` apart (bursts), in time order.

        Not duplicates: ``keep`` is the best shot (sharpest, least clipped) and ``reason`` says
        why; the keeper rules for copies only pick which exact copy of that shot to keep.
        ``threshold`` defaults to the semantic head's calibrated "similar" one.
        """
        if threshold is None:
            threshold = self.bundle.threshold("semantic", "similar")
        with self._lock, self.catalog.snapshot():
            ids, hashes, vectors = self._wanted("semantic")
            files_of = _files_by_hash(self.catalog.files())
        times = [files_of[h][0].capture_time for h in hashes]  # copies share their EXIF
        stacks = group_moments(ids, times, vectors, threshold, window_s=window_s)
        hash_of, vec_of = dict(zip(ids, hashes)), dict(zip(hashes, vectors))
        return [self._moment_group([files_of[hash_of[i]] for i in stack], vec_of) for stack in stacks]

    def _moment_group(self, shots: list[list[FileRecord]], vec_of: dict) -> DuplicateGroup:
        """One stack; ``shots`` holds each distinct photo's files (its exact copies), in time order."""
        first = {copies[0].path: copies for copies in shots}
        best, reason = best_shot(list(first), lambda path: self._shot_score(first[path][0]))
        keep_id, _ = self._keeper.choose(first[best], [_candidate(f) for f in first[best]])  # which copy
        keep = next(f for f in first[best] if f.id == keep_id)
        members = []
        for f in sorted((f for copies in shots for f in copies), key=lambda f: f.id != keep_id):
            sim = float(np.dot(vec_of[f.content_hash], vec_of[keep.content_hash]))
            members.append(Member(f, 1.0 if f.content_hash == keep.content_hash else round(min(1.0, sim), 4)))
        return DuplicateGroup("moment", members, keep, reason)

    def _shot_score(self, f: FileRecord) -> ShotScore:
        """The best-shot score of ``f``'s content, kept so a regroup does not decode it again."""
        score = self._shot_scores.get(f.content_hash)
        if score is None:
            score = score_shot(f.path)
            if score.error is None:
                self._shot_scores[f.content_hash] = score
        return score

    def similar(self, image: str | Path, k: int = 10, head: str = "semantic",
                expand: int | None = None) -> list[Match]:
        """The ``k`` photos most like ``image`` (in the library or any file), best first.

        ``expand`` (default ``QUERY_EXPANSION[head]``, 0 for none): the ranking comes from a
        second search with the photo's vector plus its ``expand`` closest other photos', each
        weighted by its cosine to the photo (exact copies of it left out). Each match's
        ``score`` is its cosine to that expanded vector, which orders the list (exact copies of
        the photo first, at 1), and its ``similarity`` stays its cosine to the photo itself: the
        expansion's own neighbours would otherwise show inflated numbers, since they are part
        of what is searched with. So with expansion the similarities need not descend.
        """
        expand = QUERY_EXPANSION.get(head, 0) if expand is None else int(expand)
        if expand < 0:
            raise ValueError(f"expand must be 0 or more, not {expand}")
        path = normalise(image)
        record = self.catalog.file_by_path(path)
        stored_as = self.bundle.storage_head(head)
        vector = self.catalog.get_embedding(record.content_hash, self.model_id, stored_as) if record else None
        if vector is None:
            vector = self.embedder.embed_files([path], head=head)[0]
        with self._lock:  # labels and the catalog rows they name are read together
            index = self._index(head)

            by_id: dict[int, FileRecord] = {}  # every candidate's file and vector, read once
            stored: dict[int, np.ndarray | None] = {}  # (the searches and the expansion share them)

            def exact(labels: list[int]) -> list[np.ndarray | None]:
                """The catalog's vectors of ``labels`` (the index ranks by 8-bit codes)."""
                new = [label for label in labels if label not in stored]
                if new:
                    with self.catalog.snapshot():
                        by_id.update(self.catalog.files_by_ids(new))
                        stored.update({label: self.catalog.get_embedding(
                            by_id[label].content_hash, self.model_id, stored_as) if label in by_id else None
                            for label in new})
                return [stored[label] for label in labels]

            labels, sims = rescored_query(index, vector, min(k + 1, len(index)), exact)
            scores = None
            if expand and len(index):
                labels, sims, scores = self._expanded(index, vector, record, labels, sims, k, expand, by_id, exact)
            with self.catalog.snapshot():
                copies = {h: self.catalog.files_with_hash(h)
                          for h in {by_id[label].content_hash for label in labels if label in by_id}}
        clip = lambda x: round(max(-1.0, min(1.0, x)), 4)  # noqa: E731
        matches: dict[str, Match] = {}
        for i, (label, sim) in enumerate(zip(labels, sims)):
            found = by_id.get(label)  # None: the file left the catalog since the last sync
            for f in copies[found.content_hash] if found else ():
                if f.path != path and f.path not in matches:
                    matches[f.path] = Match(f, clip(sim), None if scores is None else clip(scores[i]))
        return sorted(matches.values(), key=lambda m: (-(m.similarity if m.score is None else m.score),
                                                       m.file.path))[:k]

    def _expanded(self, index: VectorIndex, vector: np.ndarray, record: FileRecord | None,
                  labels: list[int], sims: list[float], k: int, expand: int, by_id: dict,
                  exact) -> tuple[list[int], list[float], list[float] | None]:
        """``similar``'s second search, with the vector expanded by its ``expand`` closest others:
        its labels, their cosines to ``vector`` and their scores against the expanded vector
        (None when there was nothing to expand with)."""
        own = record.content_hash if record else None

        def own_content(label: int, sim: float) -> bool:
            # the photo itself, its exact copies, or an outside photo's copy in the library (at a
            # cosine shown as 1): expanding with them would only weigh the photo twice
            return (label in by_id and by_id[label].content_hash == own) or sim >= _SHOWN_AS_ONE

        def others(found: list[tuple[int, float]]) -> list[tuple[int, float]]:
            return [(label, sim) for label, sim in found if label in by_id and not own_content(label, sim)]

        first = list(zip(labels, sims))
        found = first
        if len(others(first)) < expand and len(labels) < len(index):  # the first search held too few
            found = list(zip(*rescored_query(index, vector, min(k + 2 + 2 * expand, len(index)), exact)))
        same = {label for label, sim in first + found if own_content(label, sim)}
        picked = others(found)[:expand]
        neighbours = [(v, sim) for v, (_, sim) in zip(exact([label for label, _ in picked]), picked) if v is not None]
        if not neighbours:
            return labels, sims, None
        query = expanded_queries(np.asarray(vector)[None, :], np.stack([v for v, _ in neighbours])[None],
                                 np.array([[sim for _, sim in neighbours]]))[0]
        labels, scores = rescored_query(index, query, min(k + 1, len(index)), exact)
        unit = np.asarray(vector, np.float64) / max(float(np.linalg.norm(vector)), 1e-12)
        plain = [1.0 if label in same else -1.0 if v is None else float(unit @ v) / max(float(np.linalg.norm(v)), 1e-12)
                 for label, v in zip(labels, exact(labels))]
        return labels, plain, [1.0 if label in same else score for label, score in zip(labels, scores)]

    def learn_keeper(self) -> KeeperPreference:
        """Learn which copy this person keeps from their same-photo reviews, save it
        (``keeper-preference.json``) and choose keepers with it from now on when ``fitted``."""
        return self._keeper.learn(self.feedback.reviews(("same-photo",)))

    def info(self) -> LibraryInfo:
        with self.catalog.snapshot():
            return LibraryInfo(
                folder=self.folder, files=self.catalog.count_files(),
                distinct_photos=len(self.catalog.representatives()), model_id=self.model_id,
                embedded={h: len(self._index(h)) for h in self.bundle.heads},  # one entry per distinct photo
                problems=self.catalog.problems())


def _all_dismissed(files: list[FileRecord], dismissed: set[tuple[str, str]]) -> bool:
    hashes = sorted({f.content_hash for f in files})
    pairs = [(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1:]] or [(h, h) for h in hashes]
    return all(p in dismissed for p in pairs)


def _drop_dismissed(ids, hashes, nids, nsims, dismissed: set[tuple[str, str]]) -> np.ndarray:
    """Neighbour similarities with every dismissed pair pushed below any threshold."""
    if not dismissed:
        return nsims
    hash_of = dict(zip(ids, hashes))
    for row, own in enumerate(hashes):
        for col, other_id in enumerate(nids[row]):
            other = hash_of.get(int(other_id))
            if other is not None and (min(own, other), max(own, other)) in dismissed:
                nsims[row, col] = -1.0
    return nsims


def _files_by_hash(files: list[FileRecord]) -> dict[str, list[FileRecord]]:
    files_of: dict[str, list[FileRecord]] = {}
    for f in files:
        files_of.setdefault(f.content_hash, []).append(f)
    return files_of


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _candidate(f: FileRecord) -> Candidate:
    return Candidate(id=f.id, path=f.path, width=f.width, height=f.height, size=f.size,
                     format=f.format, mtime_ns=f.mtime_ns, capture_time=f.capture_time, camera=f.camera)
