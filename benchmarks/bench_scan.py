"""Scan-speed benchmark: prints a table of photos/s for each stage and for whole scans.

    .venv/bin/python benchmarks/bench_scan.py [--folder DIR] [--limit N] [--device auto]

By default it reads the first N photos (sorted) of the Caltech-101 *test* classes in
../shared/datasets/caltech101 and keeps its library in a temporary folder. Nothing is timed
in the tests; this is where speed is measured.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.decode import read_photo  # noqa: E402
from engine.embedding import Embedder  # noqa: E402
from engine.library import Library  # noqa: E402
from engine.parallel import ordered_map  # noqa: E402
from engine.scan import scan  # noqa: E402


def pick_folder(args) -> Path:
    if args.folder:
        return Path(args.folder)
    dataset = ROOT.parent / "shared/datasets/caltech101"
    classes = [l.split(",")[0] for l in (dataset / "split.csv").read_text().splitlines()[1:]
               if l.split(",")[1] == "test"]
    staging = Path(tempfile.mkdtemp(prefix="lookalike-bench-photos-"))
    picked = [p for c in classes for p in sorted((dataset / c).glob("*.jpg"))][: args.limit]
    for p in picked:   # symlinks: the scan reads the real files, nothing is copied
        (staging / f"{p.parent.name}_{p.name}").symlink_to(p)
    return staging


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder")
    parser.add_argument("--limit", type=int, default=400)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=str(ROOT / "bench-results/scan.json"))
    args = parser.parse_args()
    folder = pick_folder(args)
    embedder = Embedder.load(device=args.device)
    rows = []
    found, secs = timed(lambda: scan([folder]))
    n = len(found.files)
    rows.append(("walk + sniff", n, secs))
    paths = [f.path for f in found.files]
    _, secs = timed(lambda: [r for r in ordered_map(lambda p: read_photo(p, embedder.input_size), paths)])
    rows.append(("decode (threads, draft mode)", n, secs))
    images = [read_photo(p, embedder.input_size).image for p in paths[:128]]
    embedder.embed_images(images[:8])
    _, secs = timed(lambda: embedder.embed_images(images))
    rows.append((f"embed only (batch {embedder.batch_size})", len(images), secs))
    lib_dir = Path(tempfile.mkdtemp(prefix="lookalike-bench-lib-"))
    try:
        with Library(lib_dir, embedder=embedder) as lib:
            report, secs = timed(lambda: lib.scan([folder]))
            rows.append(("full scan, cold", report.found, secs))
            report, secs = timed(lambda: lib.scan([folder]))
            rows.append(("rescan, nothing changed", report.found, secs))
            groups, secs = timed(lambda: lib.duplicates("near"))
            rows.append((f"near-duplicate grouping ({len(groups)} groups)", report.found, secs))
            _, secs = timed(lambda: [lib.similar(p, k=10) for p in paths[:50]])
            rows.append(("find-similar, library photo", 50, secs))
    finally:
        shutil.rmtree(lib_dir, ignore_errors=True)
        if not args.folder:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, device {embedder.device}, torch threads {torch.get_num_threads()}")
    print(f"Model: {embedder.model_id}, input {embedder.input_size}px\n")
    print(f"| {'stage':44} | {'items':>6} | {'seconds':>8} | {'items/s':>8} |")
    print(f"|{'-' * 46}|{'-' * 8}|{'-' * 10}|{'-' * 10}|")
    for name, count, secs in rows:
        print(f"| {name:44} | {count:6d} | {secs:8.2f} | {count / secs if secs else 0:8.1f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "device": str(embedder.device),
                    "threads": torch.get_num_threads(), "load_average": os.getloadavg()},
        "model": embedder.model_id, "input": embedder.input_size,
        "rows": [{"stage": name, "items": count, "seconds": secs, "per_s": count / secs if secs else 0.0}
                 for name, count, secs in rows]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
