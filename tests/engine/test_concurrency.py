"""Queries while a scan adds vectors: no crash, no torn result, and the index ends up exact.

A library holding a first album is reopened (so its indexes are created lazily, by whichever
thread comes first), then one thread scans a second album, with exact and recompressed copies
of the first and a few photos of the first deleted, while four threads query it: find-similar,
duplicate grouping and raw k-NN on the index. The scan's progress callback paces it against
the query count, so the 1,000+ queries are spread over the whole ingest instead of racing
ahead of it; after the last file they run freely through the sweep and the index update.
"""
from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest

import engine.ingest
from engine.library import LEVELS, DuplicateGroup, Library, Match
from imagegen import photo, recompress, save_jpeg

QUERIES = 1000
THREADS = 4
FIRST, SECOND, DELETED = 40, 150, 4


@pytest.fixture
def albums(tmp_path):
    first, second = tmp_path / "photos" / "first", tmp_path / "photos" / "second"
    for seed in range(FIRST):
        save_jpeg(photo(seed, (96, 72)), first / f"a{seed:03d}.jpg")
    second.mkdir()
    for n in range(SECOND):
        path = second / f"b{n:03d}.jpg"
        if n % 10 == 0:    # exact copy of a photo of the first album
            path.write_bytes((first / f"a{n % FIRST:03d}.jpg").read_bytes())
        elif n % 10 == 1:  # near copy
            save_jpeg(recompress(photo(n % FIRST, (96, 72)), 70), path)
        else:
            save_jpeg(photo(1000 + n, (96, 72)), path)
    return first, second


class Stress:
    """Four query threads; each records what it saw, for checking once the scan is done."""

    def __init__(self, lib: Library, queryable: list[str], seed: int):
        self.lib, self.queryable, self.seed = lib, queryable, seed
        self.count, self.allowed, self.errors = 0, QUERIES // 20, []
        self.seen_labels: set[int] = set()
        self.kinds = {"similar": 0, "duplicates": 0, "knn": 0}
        self._lock = threading.Lock()
        self.done = threading.Event()

    def run(self, number: int) -> None:
        rng = random.Random(self.seed + number)
        while not self.done.is_set():
            if self.count >= self.allowed:  # wait for the scan to catch up
                time.sleep(0.002)
                continue
            kind = rng.choices(("similar", "duplicates", "knn"), (6, 1, 3))[0]
            try:
                getattr(self, kind)(rng)
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                with self._lock:
                    self.errors.append(f"{kind}: {exc!r}")
                self.done.set()
            with self._lock:
                self.count += 1
                self.kinds[kind] += 1

    def similar(self, rng: random.Random) -> None:
        path = rng.choice(self.queryable)
        matches = self.lib.similar(path, k=5, head=rng.choice(("copy", "semantic")))
        check_matches(matches, path)

    def duplicates(self, rng: random.Random) -> None:
        level = rng.choice(LEVELS)
        for group in self.lib.duplicates(level, threshold=rng.choice((None, 0.5, 0.9))):
            check_group(group, level)

    def knn(self, rng: random.Random) -> None:
        index = self.lib._index(rng.choice(("copy", "semantic")))
        query = np.random.default_rng(rng.randrange(1 << 30)).normal(size=(3, index.dim))
        labels, sims = index.query(query.astype(np.float32), 5)
        assert labels.shape == sims.shape and labels.shape[0] == 3 and labels.shape[1] <= 5
        assert (labels >= 0).all() and (np.diff(sims, axis=1) <= 1e-6).all()
        assert (np.abs(sims) <= 1 + 1e-5).all()
        with self._lock:
            self.seen_labels.update(labels.ravel().tolist())


def check_matches(matches: list[Match], query: str) -> None:
    assert len(matches) <= 5
    ranked_by = [m.similarity if m.score is None else m.score for m in matches]
    assert ranked_by == sorted(ranked_by, reverse=True)
    assert all(-1 <= m.similarity <= 1 and (m.score is None or -1 <= m.score <= 1) for m in matches)
    paths = [m.file.path for m in matches]
    assert query not in paths and len(set(paths)) == len(paths)


def check_group(group: DuplicateGroup, level: str) -> None:
    paths = [m.file.path for m in group.members]
    assert len(paths) >= 2 and len(set(paths)) == len(paths)
    assert group.level in (level, "exact") and group.keep.path == paths[0]
    assert all(-1 <= m.similarity <= 1 for m in group.members)


def paced(stress: Stress):
    """Progress callback: each ingested file lets the next share of queries go, and waits
    for its own share to be done."""
    def progress(done: int, total: int, what: str) -> bool:
        if not total:
            return True
        # after the last file, queries run freely through the sweep and the index update
        stress.allowed = QUERIES * (done + 1) // total + QUERIES // 20 if done < total else 1 << 30
        deadline = time.monotonic() + 30
        while stress.count < QUERIES * done // total and not stress.done.is_set():
            if time.monotonic() > deadline:
                raise AssertionError("query threads stalled")
            time.sleep(0.001)
        return True
    return progress


def test_queries_during_a_scan_are_whole_and_the_index_ends_exact(tmp_path, albums, embedder,
                                                                    monkeypatch):
    first, second = albums
    with Library(tmp_path / "lib", embedder=embedder) as lib:
        lib.scan([first])
        before = {f.id for f in lib.catalog.files()}
    for seed in range(DELETED):  # swept at the end of the next scan, while queries run
        (first / f"a{seed:03d}.jpg").unlink()
    monkeypatch.setattr(engine.ingest, "BATCH", 8)  # more commits to interleave with
    with Library(tmp_path / "lib", embedder=embedder) as lib:
        queryable = [str(p) for p in sorted(first.glob("*.jpg"))]
        stress = Stress(lib, queryable, seed=11)
        threads = [threading.Thread(target=stress.run, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        try:
            report = lib.scan([first, second], paced(stress))
        finally:
            during = stress.count
            stress.done.set()
            for thread in threads:
                thread.join(timeout=60)
        print(f"{during} queries during the scan {stress.kinds}, errors: {stress.errors}")
        assert not stress.errors, stress.errors[:5]
        assert during >= QUERIES
        assert (report.embedded + report.reused, report.removed) == (SECOND, DELETED)
        files = lib.catalog.files()
        assert stress.seen_labels <= before | {f.id for f in files}
        reps = lib.catalog.representatives()
        for head in ("copy", "semantic"):
            assert lib._index(head).ids() == set(reps.values())
        near = lib.duplicates("near")
        assert any(g.level == "exact" for g in near) and any(g.level == "near" for g in near)


def test_first_use_from_many_threads_builds_one_index(tmp_path, embedder):
    for seed in range(8):
        save_jpeg(photo(seed, (96, 72)), tmp_path / "photos" / f"p{seed}.jpg")
    with Library(tmp_path / "lib", embedder=embedder) as lib:
        lib.scan([tmp_path / "photos"])
        lib.catalog.set_meta(lib._stamp_key("copy"), "stale")  # force a rebuild on next use
    with Library(tmp_path / "lib", embedder=embedder) as lib:
        barrier, got = threading.Barrier(THREADS), []

        def use() -> None:
            barrier.wait()
            got.append(lib._index("copy"))

        threads = [threading.Thread(target=use) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len({id(index) for index in got}) == 1 and len(got[0]) == 8
