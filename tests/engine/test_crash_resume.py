"""Crash and resume: a scanning process is SIGKILLed at random points, again and again.

After every kill the test reopens the library and checks what a user relies on: SQLite's
``PRAGMA integrity_check`` passes, every catalogued file has its embeddings (rows and vectors
are written in one transaction), each head's index holds exactly the catalog's distinct photos
(loaded, or rebuilt when stale), and the number of catalogued files never falls (no finished
batch is lost). A last, uninterrupted scan completes the rest.

Importing torch takes many seconds on a busy machine, so a small "zygote" process imports the
engine once and forks a fresh child for every scan; the child opens the library, loads the
model bundle and scans, and is killed from outside after a seeded random delay measured from
a phase marker it writes (timed kills), or kills itself at a chosen event (injected kills:
between the two renames of an index save, just after a batch commits, ...). The model is a
tiny bundle (32 px input, 16-dim heads), so a scan takes well under a second.
"""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from engine.index import remove_stale_temps
from engine.library import Library
from engine.model_bundle import save_bundle
from engine.network import EmbeddingNet, NetworkConfig
from imagegen import photo, save_jpeg

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

ROOT = Path(__file__).resolve().parents[2]
HEADS = ("copy", "semantic")
FIRST_PHOTOS, NEW_PER_RUN, FOLDERS = 80, 3, 10  # 207 photos by the final scan
BATCH = 8           # ingest batch size in the children: more commit points per scan
TIMED = [           # (marker to wait for, longest delay after it in seconds)
    ("start", 0.2), ("open", 0.05), ("ingest", 0.1), ("sync-begin", 0.02)]
INJECTED = [        # the child SIGKILLs itself right after this event
    "walk#4", "model#1", "flush-begin#1", "flush-end#1", "flush-end#2", "swept#1",
    "save-begin#1", "renamed#1", "renamed#3", "save-end#1", "meta:index_stamp#1"]
PHASES = {"start": "opening", "open": "opening", "meta:folders": "walking", "walk": "walking",
          "loading": "loading the model", "model": "ingesting", "ingest": "ingesting",
          "flush-begin": "writing a batch", "flush-end": "ingesting", "swept": "sweeping",
          "sync-begin": "indexing",
          "save-begin": "saving an index", "renamed": "saving an index", "save-end": "indexing",
          "meta:index_stamp": "indexing", "sync-end": "finishing", "done": "exiting"}

ZYGOTE = r'''
import json, os, signal, sys, time, traceback
sys.path.insert(0, sys.argv[1])
import torch
import engine.catalog, engine.embedding, engine.index, engine.ingest, engine.library

def run(job):
    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    seen = {}
    def mark(event, detail=""):
        seen[event] = seen.get(event, 0) + 1
        name = f"{event}#{seen[event]}"
        os.write(fd, f"{time.monotonic():.6f} {name} {detail}\n".encode())
        if name == job["suicide"]:
            os.kill(os.getpid(), signal.SIGKILL)
    def wrap(owner, attr, before=None, after=None):
        real = getattr(owner, attr)
        def wrapper(*args, **kwargs):
            if before and before(*args):
                mark(before(*args))
            result = real(*args, **kwargs)
            if after and after(*args):
                mark(after(*args))
            return result
        setattr(owner, attr, wrapper)
    try:
        torch.set_num_threads(1)
        engine.ingest.BATCH = job["batch"]
        real_flush = engine.ingest.Ingester._flush
        def flush(self, batch):
            if batch:
                mark("flush-begin")
            real_flush(self, batch)
            if batch:
                mark("flush-end", len(batch))  # committed: these rows must survive
        engine.ingest.Ingester._flush = flush
        wrap(engine.catalog.Catalog, "sweep", after=lambda *a: "swept")
        wrap(engine.catalog.Catalog, "set_meta", after=lambda s, k, v: "meta:" + k.split(":")[0])
        wrap(engine.library.Library, "_sync_indexes", lambda *a: "sync-begin", lambda *a: "sync-end")
        wrap(engine.index.VectorIndex, "save", lambda *a: "save-begin", lambda *a: "save-end")
        wrap(engine.index.os, "replace", after=lambda *a: "renamed")
        wrap(engine.embedding.Embedder, "__init__", lambda *a: "loading", lambda *a: "model")
        mark("start")
        with engine.library.Library(job["library"], model=job["model"], device="cpu") as lib:
            mark("open")
            lib.scan([job["photos"]], lambda d, t, w: mark("walk" if t == 0 else "ingest"))
        mark("done")
        return 0
    except BaseException:
        os.write(fd, ("0 error " + traceback.format_exc().replace("\n", " | ") + "\n").encode())
        return 1

print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os._exit(run(job))
    print(pid, flush=True)
    print(os.waitpid(pid, 0)[1], flush=True)
'''


@dataclass
class Outcome:
    run: int
    plan: str
    phase: str
    killed: bool
    at: float           # seconds from the child's start to its last event
    files: int
    left: int           # temporaries the killed save left in the index folder
    temps: int          # ... and still there after reopening (must be none)
    problems: list[str]


def tiny_bundle(folder: Path) -> Path:
    net = EmbeddingNet(NetworkConfig(heads={"copy": 16, "semantic": 16}))
    card = {"name": "tiny-crash", "version": "1", "architecture": net.config.to_dict(),
            "input": {"size": 32, "mean": [127.0] * 3, "std": [128.0] * 3},
            "thresholds": {"copy": {"near": 0.9}, "semantic": {"similar": 0.7}}}
    return save_bundle(folder, card, net.state_dict(), half=False)


def add_photos(folder: Path, start: int, count: int) -> None:
    for seed in range(start, start + count):
        save_jpeg(photo(seed, (64, 48)), folder / f"album{seed % FOLDERS:02d}" / f"p{seed:04d}.jpg")


def plan_runs(rng: random.Random) -> list[tuple[str, str, float]]:
    """(kind, event, delay): seven timed kills per marker and every injected one, shuffled."""
    runs = [("timed", marker, round(rng.uniform(0, longest), 4))
            for marker, longest in TIMED for _ in range(7)]
    runs += [("injected", event, 0.0) for event in INJECTED]
    rng.shuffle(runs)
    return runs


class Zygote:
    def __init__(self, script: Path):
        self.proc = subprocess.Popen([sys.executable, str(script), str(ROOT)], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def wait_ready(self) -> None:
        assert self.proc.stdout.readline().strip() == "ready", "zygote failed to start"

    def start(self, job: dict) -> int:
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def status(self) -> int:
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def events(log: Path) -> list[tuple[float, str, str]]:
    """(time, event#count, detail) for each line the child wrote."""
    if not log.exists():
        return []
    rows = [line.split(" ", 2) for line in log.read_text().splitlines() if line]
    return [(float(t), e, d) for t, e, d in rows]


def wait_for(log: Path, marker: str, pid: int, timeout: float = 120.0) -> None:
    """Until the child logs ``marker`` (any count) or is gone; a hung child is killed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = [e.split("#")[0] for _, e, _ in events(log)]
        if marker in names or "done" in names or "error" in names or not alive(pid):
            return
        time.sleep(0.003)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"child {pid} hung: it never reached {marker}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # the zygote reaps its child at once, so a dead one is gone
    except ProcessLookupError:
        return False
    return True


def check(lib_dir: Path, bundle: Path, at_least: int) -> tuple[int, int, list[str]]:
    """Reopen after a crash: (files, leftover temporaries, problems found). ``at_least``: the
    files before the run plus the rows of every batch it committed."""
    problems = []
    db = sqlite3.connect(lib_dir / "catalog.sqlite")
    try:
        if (verdict := db.execute("PRAGMA integrity_check").fetchone()[0]) != "ok":
            problems.append(f"integrity_check: {verdict}")
        files = db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
        for head in HEADS:
            bare = db.execute("SELECT COUNT(*) FROM files f WHERE NOT EXISTS (SELECT 1 FROM"
                              " embeddings e WHERE e.content_hash = f.content_hash AND e.head = ?)",
                              (head,)).fetchone()[0]
            if bare:
                problems.append(f"{bare} files without a {head} embedding")
    finally:
        db.close()
    if files < at_least:
        problems.append(f"{files} files, but {at_least} were committed")
    with Library(lib_dir, model=str(bundle), device="cpu") as lib:
        reps = lib.catalog.representatives()
        for head in HEADS:
            index, want = lib._index(head), set(reps.values())
            if index.ids() != want:
                problems.append(f"{head} index: {len(index.ids() - want)} extra, "
                                f"{len(want - index.ids())} missing")
                continue
            hashes, matrix = lib.catalog.embeddings(lib.model_id, head)
            rows = [reps[h] for h in hashes]
            # the catalog keeps 8-bit codes with a scale (norms 1 ± ~2e-3), the index the
            # renormalised vectors in 8-bit codes over [-1, 1] (each component within 1/255)
            unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
            if rows and not np.allclose(index.vectors(rows), unit, atol=1 / 255 + 2e-3):
                problems.append(f"{head} index holds outdated vectors")
    return files, temporaries(lib_dir), problems


def temporaries(lib_dir: Path) -> int:
    return len(list((lib_dir / "index").glob(".*.tmp")))


def one_run(zygote: Zygote, number: int, plan: tuple[str, str, float],
            job: dict) -> tuple[bool, str, float, int]:
    """Run one scan, kill it as planned: (killed, phase, seconds, rows it committed)."""
    kind, event, delay = plan
    log = Path(job["log"])
    pid = zygote.start({**job, "suicide": event if kind == "injected" else ""})
    wait_for(log, event if kind == "timed" else "done", pid)
    if kind == "timed":
        time.sleep(delay)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it finished first
    status = zygote.status()
    got = events(log)
    errors = [d for _, e, d in got if e == "error"]
    assert not errors, f"run {number}: the scan failed instead of dying: {errors[0]}"
    committed = sum(int(d) for _, e, d in got if e.startswith("flush-end#"))
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    last = got[-1][1].split("#")[0] if got else "start"
    phase = PHASES.get(last, last) if killed else "completed"
    at = got[-1][0] - got[0][0] if got else 0.0
    return killed, phase, at, committed


def test_sigkill_at_random_points_never_loses_finished_work(tmp_path):
    script = tmp_path / "zygote.py"
    script.write_text(ZYGOTE)
    zygote = Zygote(script)
    photos, lib_dir = tmp_path / "photos", tmp_path / "lib"
    bundle = tiny_bundle(tmp_path / "tiny-bundle")
    add_photos(photos, 0, FIRST_PHOTOS)
    total = FIRST_PHOTOS
    outcomes: list[Outcome] = []
    try:
        zygote.wait_ready()
        files = 0
        for number, plan in enumerate(plan_runs(random.Random(1207)), 1):
            add_photos(photos, total, NEW_PER_RUN)
            total += NEW_PER_RUN
            job = {"library": str(lib_dir), "model": str(bundle), "photos": str(photos),
                   "batch": BATCH, "log": str(tmp_path / f"run{number:02d}.log")}
            killed, phase, at, committed = one_run(zygote, number, plan, job)
            left = temporaries(lib_dir)
            now, temps, problems = check(lib_dir, bundle, files + committed)
            outcomes.append(Outcome(number, f"{plan[0]} {plan[1]} +{plan[2]:.3f}s", phase,
                                    killed, at, now, left, temps, problems))
            files = max(files, now)
        add_photos(photos, total, 10)  # the final scan has work left to complete
        total += 10
        job = {"library": str(lib_dir), "model": str(bundle), "photos": str(photos),
               "batch": BATCH, "log": str(tmp_path / "final.log")}
        killed, phase, at, committed = one_run(zygote, 0, ("none", "", 0.0), job)
        now, temps, problems = check(lib_dir, bundle, files + committed)
        outcomes.append(Outcome(0, "final scan, no kill", phase, killed, at, now, 0, temps, problems))
    finally:
        zygote.close()
    table = "\n".join(f"{o.run:>2} {o.plan:<32} {o.phase:<22} {'killed' if o.killed else 'ran out':<8}"
                      f" {o.at:6.2f}s files={o.files:<4} temps={o.left}->{o.temps} {'; '.join(o.problems)}"
                      for o in outcomes)
    print(table)
    (tmp_path / "outcomes.txt").write_text(table)
    kills = [o for o in outcomes if o.killed]
    assert not [o for o in outcomes if o.problems or o.temps], table
    assert len(kills) >= 20, table
    assert {"walking", "ingesting", "saving an index"} <= {o.phase for o in kills}, table
    final = outcomes[-1]
    assert not final.killed and final.files == total, table


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    names = {"dead": f".x-copy.idx.{dead}.ab12cd.tmp", "alive": f".x-copy.idx.{os.getpid()}.ef34gh.tmp",
             "old": ".x-copy.idx.ij56kl.tmp", "new": ".x-copy.idx.mn78op.tmp",
             "index": "x-copy.idx"}
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(tmp_path / names["old"], (day_ago, day_ago))  # no pid in the name: judged by age
    assert remove_stale_temps(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        names[k] for k in ("alive", "new", "index"))
