"""Unchanged rescan of a large library, as after an app restart (target: 100,000 files ≤ 10 s).

    .venv/bin/python benchmarks/bench_rescan.py                          # 100,000 files
    .venv/bin/python benchmarks/bench_rescan.py --files 10000            # `make bench`'s quick size
    .venv/bin/python benchmarks/bench_rescan.py --files 50 --repeats 1   # a smoke run

Files. ``--files`` distinct tiny JPEGs (one 16×16 grayscale template with a numbered comment
segment, so every file's content hash differs; ~350 bytes each), 1,000 per folder under
``--work``/<files>/photos (default build/bench-rescan). Created once and reused: a later run
writes only the missing ones (and removes any surplus), so their mtimes stay put.

Populating the catalog is NOT the measured part. A real cold scan would decode and embed
every photo (about an hour for 100k on 2 CPU cores), so the catalog is filled by a real
``Library.scan`` whose embedder is a stand-in: it gives each content a random unit vector per
head (seeded by the content hash), of the model's dimensions. Everything else is the real
thing: reading, hashing, header parsing, catalog rows, vectors in SQLite, the HNSW indexes,
so the library on disk is what a real scan leaves, with synthetic vectors. The library is
kept in ``--work``/<files>/library and reused (``--fresh`` starts it anew); on a later run the
populate scan is itself an unchanged rescan, or adds the files that are new. 100k files hold
~35 MB (~400 MB on disk in 4 KB blocks); their library, with the default model's two 1280-d
heads, ~2.5 GB.

Measured: ``Library(folder).scan([photos])`` from a freshly opened library with no embedder
given, as the app does after a restart: the walk with one stat per file, the catalog lookups
(size and mtime), marking every file seen, the sweep of missing ones, and bringing the HNSW
indexes up to date. It never needs the model; the run stops with an error if anything was
embedded or not found unchanged. ``--repeats`` rescans (each from a newly opened library);
the table shows the median one. Per-stage times come from timers wrapped, for the run only,
around the library's own steps (engine.library's ``scan``, i.e. ``engine.scan.scan``;
``Catalog.files``; ``Library._skip_unchanged``; ``Catalog.sweep``; ``Library._sync_indexes``
and within it ``_load``, ``_wanted``, ``_rebuild``, ``_save``); "other" is the rest.

Caveat: the files, their folders and the catalog sit in the OS caches (just written or read);
after a reboot the first rescan also waits for the disk. Other work on the cores skews every
number (the load average is printed). Tests: tests/engine/test_bench_rescan.py.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import engine.library  # noqa: E402
from engine.library import Library  # noqa: E402
from engine.model_bundle import ModelBundle, load_bundle  # noqa: E402

PER_FOLDER = 1000
TARGET = (100_000, 10.0)          # the issue: 100k files rescanned in at most 10 s
FILE_PREFIX = "img_"
# (label, owner: "library" | "catalog" | "module", attribute, nested under)
STAGES = (
    ("walk + stat (engine.scan.scan)", "module", "scan", None),
    ("catalog: read file rows", "catalog", "files", None),
    ("skip unchanged", "library", "_skip_unchanged", None),
    ("hashes with embeddings", "catalog", "hashes_with_embedding", "skip unchanged"),
    ("mark seen", "catalog", "mark_seen", "skip unchanged"),
    ("sweep missing files", "catalog", "sweep", None),
    ("index sync", "library", "_sync_indexes", None),
    ("load saved index", "library", "_load", "index sync"),
    ("read vectors from catalog", "library", "_wanted", "index sync"),
    ("rebuild index", "library", "_rebuild", "index sync"),
    ("save index", "library", "_save", "index sync"),
    ("problems", "catalog", "problems", None),
)


# ---- the files ------------------------------------------------------------------------------
def template_jpeg() -> bytes:
    """A 16×16 grayscale JPEG (~300 bytes); ``numbered`` makes each copy's bytes distinct."""
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, "JPEG", quality=50, optimize=True)
    return buffer.getvalue()


def numbered(template: bytes, index: int) -> bytes:
    """``template`` with a COM segment naming ``index`` right after its SOI marker."""
    comment = f"lookalike bench-rescan {index:09d}".encode()
    return template[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + template[2:]


def file_path(photos: Path, index: int) -> Path:
    return photos / f"{index // PER_FOLDER:04d}" / f"{FILE_PREFIX}{index:07d}.jpg"


def make_files(photos: str | Path, n: int) -> int:
    """Exactly files 0..n-1 under ``photos``; returns how many were written (missing ones)."""
    photos = Path(photos)
    template, written = template_jpeg(), 0
    folders = (n + PER_FOLDER - 1) // PER_FOLDER
    for f in range(folders):
        folder = photos / f"{f:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        have = {e.name for e in os.scandir(folder)}
        for i in range(f * PER_FOLDER, min(n, (f + 1) * PER_FOLDER)):
            path = file_path(photos, i)
            if path.name not in have:
                path.write_bytes(numbered(template, i))
                written += 1
        _remove_surplus(folder, lambda name: _index_of(name) is None or _index_of(name) >= n)
    for extra in sorted(photos.iterdir()) if photos.is_dir() else ():
        if extra.is_dir() and extra.name.isdigit() and int(extra.name) >= folders:
            _remove_surplus(extra, lambda name: True)
            extra.rmdir()
    return written


def _index_of(name: str) -> int | None:
    stem = name.removeprefix(FILE_PREFIX).removesuffix(".jpg")
    return int(stem) if name.startswith(FILE_PREFIX) and name.endswith(".jpg") and stem.isdigit() else None


def _remove_surplus(folder: Path, surplus) -> None:
    """Remove this benchmark's files that ``surplus(name)`` picks; anything else is an error."""
    for entry in os.scandir(folder):
        if _index_of(entry.name) is None:
            raise SystemExit(f"{entry.path}: not made by this benchmark; choose another --work")
        if surplus(entry.name):
            os.unlink(entry.path)


# ---- populating: a real scan with a stand-in embedder ------------------------------------------
def unit_vector(content_hash: str, head: str, dim: int) -> np.ndarray:
    """A random unit vector fixed by ``content_hash`` and ``head``."""
    digest = hashlib.blake2b(f"{head}:{content_hash}".encode(), digest_size=8).digest()
    seed = int.from_bytes(digest, "little")
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


class StandInEmbedder:
    """What the scan needs of ``engine.embedding.Embedder``, without the network: every
    content gets ``unit_vector``\\ s of the model's head dimensions. Populating only."""

    gpu_jpeg = False
    workers = None
    batch_size = 64

    def __init__(self, bundle: ModelBundle):
        self.bundle = bundle
        self.dims = {head: bundle.head_dim(head) for head in bundle.heads}
        self.calls = 0

    model_id = property(lambda self: self.bundle.model_id)
    heads = property(lambda self: self.bundle.heads)
    stored_heads = property(lambda self: self.bundle.stored_heads)
    input_size = property(lambda self: self.bundle.input_size)

    def dim(self, head: str) -> int:
        return self.dims[head]

    def embed_photos(self, photos, heads=None):
        self.calls += 1
        heads = tuple(heads or self.heads)
        vectors = {h: np.stack([unit_vector(p.content_hash, h, self.dims[h]) for p in photos])
                   if photos else np.zeros((0, self.dims[h]), np.float32) for h in heads}
        return vectors, {}


def populate(library: Path, photos: Path, model: str | None) -> dict:
    """The not-measured cold scan: a real ``Library.scan`` with ``StandInEmbedder``."""
    embedder = StandInEmbedder(load_bundle(model, (library / "models",)))
    start = time.perf_counter()
    with Library(library, embedder=embedder) as lib:
        report = lib.scan([photos])
    return {"seconds": time.perf_counter() - start, "found": report.found, "embedded": report.embedded,
            "unchanged": report.unchanged, "removed": report.removed, "problems": len(report.problems),
            "model": embedder.model_id, "dims": embedder.dims,
            "note": "stand-in embedder (random unit vectors); not measured"}


# ---- the measured rescan ----------------------------------------------------------------------
class StageClock:
    """Timers wrapped around named callables for one run; ``restore`` puts the originals back."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._undo: list[tuple[object, str, object, bool]] = []

    def wrap(self, owner: object, name: str, stage: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start
                self.calls[stage] += 1

        self._undo.append((owner, name, original, name in vars(owner)))
        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, original, own in reversed(self._undo):
            if own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)
        self._undo.clear()


def rescan_once(library: Path, photos: Path, model: str | None) -> dict:
    """Open the library afresh (no embedder: the app's lazy one), rescan, time every stage."""
    clock = StageClock()
    start = time.perf_counter()
    lib = Library(library, model=model)
    opened = time.perf_counter() - start
    owners = {"library": lib, "catalog": lib.catalog, "module": engine.library}
    try:
        for stage, owner, name, _ in STAGES:
            if hasattr(owners[owner], name):  # a step the engine no longer has is left out
                clock.wrap(owners[owner], name, stage)
        start = time.perf_counter()
        report = lib.scan([photos])
        seconds = time.perf_counter() - start
    finally:
        clock.restore()
        lib.close()
    if report.embedded or report.reused or report.unchanged != report.found or report.removed:
        raise SystemExit(f"not an unchanged rescan: {report.found} found, {report.unchanged} unchanged, "
                         f"{report.embedded} embedded, {report.reused} reused, {report.removed} removed")
    stages = {stage: clock.seconds[stage] for stage, *_ in STAGES if clock.calls[stage]}
    top = sum(stages.get(stage, 0.0) for stage, *_, parent in STAGES if parent is None)
    stages["other"] = max(0.0, seconds - top)
    return {"open_s": opened, "scan_s": seconds, "found": report.found, "stages": stages,
            "calls": {stage: clock.calls[stage] for stage in stages if stage in clock.calls}}


def summarise(runs: list[dict], files: int) -> dict:
    median = sorted(runs, key=lambda r: r["scan_s"])[len(runs) // 2]
    target_rate = TARGET[0] / TARGET[1]
    within = {stage: parent for stage, *_, parent in STAGES}
    rows = [{"stage": stage, "seconds": secs, "within": within.get(stage)}
            for stage, secs in median["stages"].items()]
    return {"rescan_s": median["scan_s"], "best_s": min(r["scan_s"] for r in runs),
            "open_s": median["open_s"], "files_per_s": files / median["scan_s"] if median["scan_s"] else None,
            "stages": rows, "target_files_per_s": target_rate,
            "projected_100k_s": median["scan_s"] * TARGET[0] / files if files else None,
            "meets_target": files / median["scan_s"] >= target_rate if median["scan_s"] else None}


# ---- the table ----------------------------------------------------------------------------------
def table_lines(summary: dict) -> list[str]:
    total = summary["rescan_s"]
    lines = ["| stage | seconds | share |", "|---|---:|---:|"]
    for row in summary["stages"]:
        name = f"↳ {row['stage']}" if row["within"] else row["stage"]
        share = 100 * row["seconds"] / total if total else 0
        lines.append(f"| {name} | {row['seconds']:.2f} | {share:.0f} % |")
    lines.append(f"| **rescan, total** | **{total:.2f}** | 100 % |")
    return lines


def print_results(results: dict) -> None:
    s, n = results["summary"], results["files"]
    print(f"\n### Unchanged rescan: {n:,} files, model {results['model']} "
          f"(heads {', '.join(f'{h} {d}-d' for h, d in results['dims'].items())})\n")
    print("\n".join(table_lines(s)))
    print(f"\nRescan {s['rescan_s']:.2f} s (median of {len(results['runs'])}, best {s['best_s']:.2f} s) = "
          f"{s['files_per_s']:,.0f} files/s; opening the library {s['open_s']:.2f} s. Target "
          f"{TARGET[0]:,} files in {TARGET[1]:.0f} s ({s['target_files_per_s']:,.0f} files/s): "
          f"{'met' if s['meets_target'] else 'NOT met'}; at this rate 100k files take "
          f"{s['projected_100k_s']:.1f} s.")
    p = results["populate"]
    print(f"Catalog populated by a stand-in embedder (random vectors; not measured): {p['seconds']:.1f} s, "
          f"{p['embedded']} new; files written this run: {results['written']}.")
    m = results["machine"]
    print(f"Machine: {m['machine']}, {m['cpus']} CPUs, load average at the start {m['load_average']} "
          "(files and catalog in the OS cache)")


def machine_info() -> dict:
    return {"machine": platform.processor() or platform.machine(), "system": platform.platform(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def run(files: int, work: Path, model: str | None = None, repeats: int = 3, fresh: bool = False) -> dict:
    machine = machine_info()  # the load average before this run adds to it
    photos, library = work / str(files) / "photos", work / str(files) / "library"
    if fresh:
        shutil.rmtree(library, ignore_errors=True)
    print(f"files: {files:,} under {photos} ...", file=sys.stderr, flush=True)
    written = make_files(photos, files)
    print("populating the catalog (stand-in embedder; not measured) ...", file=sys.stderr, flush=True)
    filled = populate(library, photos, model)
    runs = []
    for i in range(repeats):
        print(f"rescan {i + 1}/{repeats} ...", file=sys.stderr, flush=True)
        runs.append(rescan_once(library, photos, model))
    return {"machine": machine, "files": files, "written": written, "model": filled["model"],
            "dims": filled["dims"], "populate": filled, "runs": runs, "summary": summarise(runs, files),
            "target": {"files": TARGET[0], "seconds": TARGET[1]}}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="rescans, each from a newly opened library")
    parser.add_argument("--model", help="model bundle (default: the built-in default)")
    parser.add_argument("--work", default=str(ROOT / "build/bench-rescan"))
    parser.add_argument("--fresh", action="store_true", help="drop the kept library and populate anew")
    parser.add_argument("--out", default=str(ROOT / "bench-results/rescan.json"))
    args = parser.parse_args(argv)
    if args.files < 1 or args.repeats < 1:
        parser.error("--files and --repeats must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    results = run(args.files, Path(args.work), args.model, args.repeats, args.fresh)
    print_results(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"Results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
