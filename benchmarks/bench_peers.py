"""Scan throughput side by side with the tools people use today, and against the CPU ceiling.

    .venv/bin/python benchmarks/bench_peers.py                      # quick: 40 × 12 MP, 100 × 1080p
    .venv/bin/python benchmarks/bench_peers.py --profile full       # 2,000 × 12 MP, 5,000 × 1080p
    .venv/bin/python benchmarks/bench_peers.py --sets 12mp 1080p caltech --tools lookalike imagehash
    .venv/bin/python benchmarks/bench_peers.py --n12mp 3 --n1080 5  # a smoke run

Photo sets. Synthetic, photo-like JPEGs (quality 90: smooth gradients, shapes, mid-frequency
texture and fine sensor-like noise, a little EXIF; a 12 MP file is ~2.5 MB) are generated
once, seeded, under ``--work`` (default ``build/bench-photos/<set>/photos``), with ~10 %
near-duplicates (resized, re-encoded or cropped copies of photos in the set) listed in
``<set>/manifest.json``. They are regenerated only when the asked size or seed changes. The
full profile needs ~6 GB of disk for the 12 MP set and ~2.5 GB for the 1080p one.
``caltech`` stages symlinks to the Caltech-101 *test* photos (../shared/datasets/caltech101,
read-only; nothing is copied): real, small (~300 px) camera and web photos.

What is measured, each in its own subprocess so peak RSS is per tool (the child's own
VmHWM / ``ru_maxrss``, or its largest worker process's for tools that fork a pool; not the
sum; imports count, so a tool that imports torch pays for it):

  * Lookalike cold scan: ``Library(fresh folder).scan([set])``; the model is loaded before the
    clock starts (load time is in the JSON as ``setup_s``). Then an unchanged rescan from a
    newly opened library, as after an app restart.
  * ``imagehash.phash`` the way a typical user script does it: ``Image.open(p)`` then
    ``imagehash.phash(img)``, one file after another (no draft mode, one thread).
  * imagededup ``PHash().encode_images`` + ``find_duplicates`` (its process pool,
    ``--workers`` processes), and imagededup ``CNN`` (MobileNetV3) when its weights are in
    the torch hub cache; it would download them otherwise, so the row is skipped and says why.
  * The CPU ceiling: JPEG draft-mode decode + resize to 224 alone in ``--workers`` threads,
    the model forward alone on already-decoded 224 px images (``Embedder.embed_images``),
    and their serial combination ``1 / (1/decode + 1/forward)``; Lookalike's cold scan is
    reported as a fraction of that ceiling and as a multiple of imagededup PHash.

``--workers`` (default: $OMP_NUM_THREADS when set, else the CPU count) bounds every tool's
threads or processes, torch's included. Files are read right after generation, so they sit
in the OS page cache: this measures CPU, not disk. Tables go to stdout, everything to
``bench-results/peers.json``.

Machine caveat: numbers are only comparable on one idle machine, run after run. A laptop's
turbo and thermal limits, another process on the cores (check the load average printed with
the results) or a cold disk cache change them by more than the differences between tools.
Nothing here is asserted in tests; tests/engine/test_bench_peers.py checks the photo sets.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CALTECH = ROOT.parent / "shared/datasets/caltech101"
SET_SIZES = {"12mp": (4000, 3000), "1080p": (1920, 1080)}
PROFILES = {"quick": {"12mp": 40, "1080p": 100, "caltech": 400},
            "full": {"12mp": 2000, "1080p": 5000, "caltech": 0}}   # caltech 0: every test photo
TOOLS = ("lookalike", "imagehash", "imagededup-phash", "imagededup-cnn", "ceiling")
DUP_KINDS = ("resize", "reencode", "crop")
FORWARD_IMAGES = 256          # the forward-only ceiling runs on at most this many photos
RESULT_TAG = "BENCH-RESULT "  # the line a child process reports on
GENERATOR = 2                 # bump when synth_photo changes: cached sets are then regenerated


# ---- photo sets -----------------------------------------------------------------------------
def synth_photo(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A photo-like RGB image: a scene drawn at 1/8 resolution, upscaled, then fine per-pixel
    noise (which is what makes JPEG sizes camera-like: ~2.5 MB for 12 MP at quality 90)."""
    scene = _scene(max(2, width // 8), max(2, height // 8), rng)
    pixels = np.asarray(scene.resize((width, height), Image.Resampling.BILINEAR), np.int16)
    pixels = pixels + rng.integers(-6, 7, (height, width, 1), dtype=np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _scene(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """Sky over ground at a random tilted horizon, patches of gratings, shapes, texture.

    Varied enough that Lookalike's model keeps most unrelated scenes below its near-duplicate
    threshold (abstract scenes all look somewhat alike to an ImageNet network)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    horizon = h * rng.uniform(0.2, 0.8) + (xx - w / 2) * rng.uniform(-0.4, 0.4)
    t = np.clip((yy - horizon) / (h * 0.05), 0, 1)[..., None]
    img = rng.uniform(0, 255, 3) * (1 - t) + rng.uniform(0, 255, 3) * t
    img = img + (yy / h)[..., None] * rng.uniform(-60, 60, 3)
    for _ in range(int(rng.integers(2, 6))):
        angle, period = rng.uniform(0, np.pi), rng.uniform(2, max(3, w / 6))
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)[..., None]
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(w * 0.08, w * 0.4)
        inside = (((xx - cx) ** 2 + (yy - cy) ** 2) < r * r)[..., None]
        colour = 128 + wave * rng.uniform(40, 120) * rng.uniform(-1, 1, 3)
        img = np.where(inside, 0.5 * img + 0.5 * colour, img)
    scene = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    _draw_shapes(ImageDraw.Draw(scene), w, h, rng)
    texture = rng.normal(0, rng.uniform(3, 15), (h, w, 1))
    return Image.fromarray(np.clip(np.asarray(scene, np.float32) + texture, 0, 255).astype(np.uint8))


def _draw_shapes(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    for _ in range(int(rng.integers(4, 20))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        x1, y1 = x0 + int(rng.integers(w // 30 + 1, w // 3 + 2)), y0 + int(rng.integers(h // 30 + 1, h // 3 + 2))
        kind = rng.random()
        if kind < 0.35:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        elif kind < 0.7:
            corners = int(rng.integers(3, 7))
            draw.polygon([(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(corners)], fill=colour)
        else:
            draw.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(1, max(2, w // 40))))


def camera_exif(index: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Lookalike", "Bench Camera"
    exif[0x0132] = f"2024:05:{1 + index % 28:02d} 12:{index % 60:02d}:00"
    return exif


def near_duplicate(original: Image.Image, kind: str) -> tuple[Image.Image, int]:
    """A copy as people make them: downsized for sharing, re-saved, or cropped a little."""
    w, h = original.size
    if kind == "resize":
        return original.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.LANCZOS), 85
    if kind == "reencode":
        return original, 70
    if kind == "crop":
        dx, dy = w // 20, h // 20
        return original.crop((dx, dy, w - dx, h - dy)), 90
    raise ValueError(f"unknown near-duplicate kind {kind!r}")


def _write_original(photos: Path, index: int, size: tuple[int, int], seed: int, quality: int) -> str:
    name = f"photo_{index:05d}.jpg"
    img = synth_photo(*size, np.random.default_rng([seed, index]))
    img.save(photos / name, "JPEG", quality=quality, exif=camera_exif(index))
    return name


def _write_duplicate(photos: Path, j: int, original: str, kind: str) -> dict:
    name = f"nearcopy_{j:05d}_{kind}.jpg"
    with Image.open(photos / original) as src:  # from the saved JPEG, as a real copy would be
        img, quality = near_duplicate(src.convert("RGB"), kind)
        img.save(photos / name, "JPEG", quality=quality, exif=src.getexif())
    return {"file": name, "original": original, "kind": kind}


def _duplicate_plan(n: int, seed: int, dup_fraction: float) -> tuple[int, list[tuple[int, str]]]:
    """How many originals, and for each near-copy: (index of its original, kind)."""
    n_dup = max(1, round(n * dup_fraction)) if n >= 2 and dup_fraction > 0 else 0
    n_orig = n - n_dup
    rng = np.random.default_rng([seed, n, 1])
    sources = rng.choice(n_orig, size=n_dup, replace=n_dup > n_orig)
    return n_orig, [(int(s), DUP_KINDS[j % len(DUP_KINDS)]) for j, s in enumerate(sources)]


def generate_set(folder: str | Path, n: int, size: tuple[int, int] = (4000, 3000), *, seed: int = 0,
                 quality: int = 90, dup_fraction: float = 0.1, workers: int = 1) -> dict:
    """``n`` JPEGs in ``folder/photos`` (originals + near-copies), ``folder/manifest.json``.

    Cached: when the manifest asks for the same thing and every file is there, nothing is
    written. Same arguments, same bytes."""
    folder = Path(folder)
    params = {"n": n, "size": list(size), "seed": seed, "quality": quality,
              "dup_fraction": dup_fraction, "generator": GENERATOR}
    cached = _cached_manifest(folder, params)
    if cached is not None:
        return cached
    photos = _fresh_photo_folder(folder)
    n_orig, plan = _duplicate_plan(n, seed, dup_fraction)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        originals = list(pool.map(lambda i: _write_original(photos, i, size, seed, quality), range(n_orig)))
        dups = list(pool.map(lambda jp: _write_duplicate(photos, jp[0], originals[jp[1][0]], jp[1][1]),
                             enumerate(plan)))
    manifest = {"params": params, "photos": originals + [d["file"] for d in dups],
                "near_duplicates": dups}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))  # last: marks complete
    return manifest


def _cached_manifest(folder: Path, params: dict) -> dict | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("params") != params:
        return None
    if not all((folder / "photos" / name).exists() for name in manifest.get("photos", [])):
        return None
    return manifest


def _fresh_photo_folder(folder: Path) -> Path:
    """Empty ``folder/photos``; only what an earlier run of this script made is deleted."""
    photos = folder / "photos"
    try:
        old = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        old = {}
    (folder / "manifest.json").unlink(missing_ok=True)
    for name in old.get("photos", []):
        (photos / name).unlink(missing_ok=True)
    photos.mkdir(parents=True, exist_ok=True)
    leftover = [p for p in photos.iterdir() if p.name.startswith(("photo_", "nearcopy_"))]
    for p in leftover:  # an interrupted generation (no manifest yet)
        p.unlink()
    if any(photos.iterdir()):
        raise SystemExit(f"{photos} holds files this benchmark did not make; choose another --work")
    return photos


def stage_caltech(folder: str | Path, limit: int = 0, dataset: Path = CALTECH) -> dict:
    """Symlinks to the Caltech-101 test photos (first ``limit``, 0 = all) in ``folder/photos``."""
    folder = Path(folder)
    params = {"source": str(dataset), "limit": limit}
    cached = _cached_manifest(folder, params)
    if cached is not None:
        return cached
    classes = [line.split(",")[0] for line in (dataset / "split.csv").read_text().splitlines()[1:]
               if line.split(",")[1] == "test"]
    picked = [p for c in classes for p in sorted((dataset / c).glob("*.jpg"))]
    picked = picked[:limit] if limit else picked
    photos = folder / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    for link in photos.iterdir():  # an earlier staging: links only, the dataset is never touched
        if link.is_symlink():
            link.unlink()
    if any(photos.iterdir()):
        raise SystemExit(f"{photos} holds files this benchmark did not make; choose another --work")
    names = []
    for p in picked:
        names.append(f"{p.parent.name}_{p.name}")
        (photos / names[-1]).symlink_to(p)
    manifest = {"params": params, "photos": names, "near_duplicates": []}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


# ---- the measurements; each runs in a child process -------------------------------------------
def peak_rss_mb() -> float:
    """This process's peak RSS, or its largest finished child's (a worker pool's), in MB.

    On Linux the own peak is VmHWM: ``ru_maxrss`` survives exec, so a child started by a big
    parent would report the parent's peak instead of its own."""
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 1024 ** 2  # KiB on Linux, bytes on macOS
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        status = Path("/proc/self/status").read_text()
        own = int(status.split("VmHWM:")[1].split()[0])  # KiB
    except (OSError, IndexError, ValueError):
        pass
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) * scale


def _photo_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))


def _clocked(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _limit_torch_threads(workers: int) -> None:
    import torch

    torch.set_num_threads(workers)


def measure_lookalike(folder: Path, library: Path, workers: int, device: str, rescan: bool) -> dict:
    from engine.embedding import Embedder
    from engine.library import Library

    _limit_torch_threads(workers)
    start = time.perf_counter()
    # Rescan: open the library as the app does after a restart; the model loads only if needed.
    embedder = None if rescan else Embedder.load(device=device, workers=workers)
    with Library(library, embedder=embedder, device=device) as lib:
        setup = time.perf_counter() - start
        report, secs = _clocked(lambda: lib.scan([folder]))
        result = {"photos": report.found, "seconds": secs, "setup_s": setup,
                  "embedded": report.embedded, "problems": len(report.problems)}
        if not rescan:
            groups, result["grouping_s"] = _clocked(lambda: lib.duplicates("near"))
            result["found"] = f"{len(groups)} near groups, {sum(len(g.members) for g in groups)} files"
    return result


def measure_imagehash(folder: Path) -> dict:
    import imagehash

    paths = _photo_paths(folder)

    def run():
        return [imagehash.phash(Image.open(p)) for p in paths]  # what a typical script does

    hashes, secs = _clocked(run)
    distinct = len(set(map(str, hashes)))
    return {"photos": len(paths), "seconds": secs, "found": f"{len(paths) - distinct} equal hashes"}


def measure_imagededup_phash(folder: Path, workers: int) -> dict:
    from imagededup.methods import PHash

    phasher = PHash(verbose=False)
    encodings, enc = _clocked(lambda: phasher.encode_images(image_dir=str(folder), num_enc_workers=workers))
    dups, find = _clocked(lambda: phasher.find_duplicates(encoding_map=encodings, num_dist_workers=workers))
    return {"photos": len(encodings), "seconds": enc + find, "encode_s": enc, "find_s": find,
            "found": f"{sum(1 for v in dups.values() if v)} files with a duplicate"}


def mobilenet_weights() -> Path:
    """Where torchvision caches the MobileNetV3-small weights imagededup's CNN loads."""
    import torch
    from torchvision.models import MobileNet_V3_Small_Weights

    url = MobileNet_V3_Small_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def measure_imagededup_cnn(folder: Path, workers: int) -> dict:
    weights = mobilenet_weights()
    if not weights.exists():
        return {"skipped": f"MobileNetV3 weights not cached ({weights}); imagededup's CNN would "
                           "download them and this benchmark runs offline"}
    _limit_torch_threads(workers)
    from imagededup.methods import CNN

    cnn, setup = _clocked(lambda: CNN(verbose=False))
    encodings, enc = _clocked(lambda: cnn.encode_images(image_dir=str(folder)))
    dups, find = _clocked(lambda: cnn.find_duplicates(encoding_map=encodings, num_sim_workers=workers))
    return {"photos": len(encodings), "seconds": enc + find, "setup_s": setup, "encode_s": enc,
            "find_s": find, "found": f"{sum(1 for v in dups.values() if v)} files with a duplicate"}


def decode_224(path: Path, size: int = 224) -> Image.Image:
    """The least work that gets a model-sized image out of a JPEG: draft decode, one resize."""
    with Image.open(path) as img:
        img.draft("RGB", (size, size))
        return img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)


def measure_decode_ceiling(folder: Path, workers: int) -> dict:
    paths = _photo_paths(folder)
    with ThreadPoolExecutor(workers) as pool:
        _, secs = _clocked(lambda: list(pool.map(decode_224, paths)))
    return {"photos": len(paths), "seconds": secs}


def measure_forward_ceiling(folder: Path, workers: int, device: str) -> dict:
    from engine.embedding import Embedder

    _limit_torch_threads(workers)
    embedder = Embedder.load(device=device, workers=workers)
    size = embedder.input_size
    images = [decode_224(p, size) for p in _photo_paths(folder)[:FORWARD_IMAGES]]
    embedder.embed_images(images[:2])  # warm-up: first-call allocations and kernel choice
    _, secs = _clocked(lambda: embedder.embed_images(images))
    return {"photos": len(images), "seconds": secs, "batch": embedder.batch_size}


def child_main(args) -> int:
    folder, workers, device = Path(args.folder), args.workers, args.device
    tool = args.child
    if tool in ("lookalike-cold", "lookalike-rescan"):
        result = measure_lookalike(folder, Path(args.library), workers, device, tool.endswith("rescan"))
    elif tool == "imagehash":
        result = measure_imagehash(folder)
    elif tool == "imagededup-phash":
        result = measure_imagededup_phash(folder, workers)
    elif tool == "imagededup-cnn":
        result = measure_imagededup_cnn(folder, workers)
    elif tool == "ceiling-decode":
        result = measure_decode_ceiling(folder, workers)
    elif tool == "ceiling-forward":
        result = measure_forward_ceiling(folder, workers, device)
    else:
        raise SystemExit(f"unknown child tool {tool!r}")
    if "skipped" not in result:
        result["peak_rss_mb"] = peak_rss_mb()
    print(RESULT_TAG + json.dumps(result), flush=True)
    return 0


# ---- the parent: sets, children, tables -------------------------------------------------------
LABELS = {"lookalike-cold": "Lookalike scan, cold", "lookalike-rescan": "Lookalike rescan, unchanged",
          "imagehash": "imagehash.phash (Image.open, 1 thread)",
          "imagededup-phash": "imagededup PHash encode + find",
          "imagededup-cnn": "imagededup CNN encode + find",
          "ceiling-decode": "ceiling: draft decode + resize 224",
          "ceiling-forward": "ceiling: model forward only",
          "ceiling-combined": "ceiling: decode + forward (estimate)"}


def run_child(tool: str, folder: Path, args, library: Path | None = None) -> dict:
    """Run one measurement in a fresh interpreter; its result, or an ``error`` row."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", tool, "--folder", str(folder),
           "--workers", str(args.workers), "--device", args.device]
    if library is not None:
        cmd += ["--library", str(library)]
    print(f"  {LABELS[tool]} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(args.workers))
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return {"tool": tool, **json.loads(line[len(RESULT_TAG):])}
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"tool": tool, "error": f"exit {proc.returncode}: {tail[:300]}"}


def _child_env(workers: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(workers)
    return env


def child_tools(tools: list[str]) -> list[str]:
    order = []
    for tool in tools:
        if tool == "lookalike":
            order += ["lookalike-cold", "lookalike-rescan"]
        elif tool == "ceiling":
            order += ["ceiling-decode", "ceiling-forward"]
        else:
            order.append(tool)
    return order


def bench_set(folder: Path, tools: list[str], args) -> list[dict]:
    library = Path(tempfile.mkdtemp(prefix="lookalike-bench-peers-lib-"))
    try:
        return [run_child(tool, folder, args, library if tool.startswith("lookalike") else None)
                for tool in child_tools(tools)]
    finally:
        shutil.rmtree(library, ignore_errors=True)


def rate(row: dict | None) -> float | None:
    if not row or "seconds" not in row or not row["seconds"]:
        return None
    return row["photos"] / row["seconds"]


def summarise(rows: list[dict]) -> dict:
    """Add photos/s and the ratio to imagededup PHash to every row; the ceiling and ratios."""
    by_tool = {r["tool"]: r for r in rows}
    decode, forward = rate(by_tool.get("ceiling-decode")), rate(by_tool.get("ceiling-forward"))
    combined = 1 / (1 / decode + 1 / forward) if decode and forward else None
    if combined:
        rows.append({"tool": "ceiling-combined", "photos_per_s": combined})
    phash = rate(by_tool.get("imagededup-phash"))
    for row in rows:
        row.setdefault("photos_per_s", rate(row))
        row["vs_imagededup_phash"] = row["photos_per_s"] / phash if phash and row["photos_per_s"] else None
    cold = rate(by_tool.get("lookalike-cold"))
    return {"decode_per_s": decode, "forward_per_s": forward, "ceiling_per_s": combined,
            "cold_vs_ceiling": cold / combined if cold and combined else None,
            "cold_vs_imagededup_phash": cold / phash if cold and phash else None}


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def print_table(name: str, manifest: dict, rows: list[dict], summary: dict) -> None:
    dups = len(manifest["near_duplicates"])
    print(f"\n### {name}: {len(manifest['photos'])} photos ({dups} near-copies)\n")
    print("| tool | photos | seconds | photos/s | peak RSS MB | vs imagededup PHash | notes |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        note = r.get("skipped") or r.get("error") or r.get("found") or ""
        note = ("skipped: " if "skipped" in r else "failed: " if "error" in r else "") + note
        print(f"| {LABELS[r['tool']]} | {_fmt(r.get('photos'), 'd')} | {_fmt(r.get('seconds'), '.2f')} "
              f"| {_fmt(r.get('photos_per_s'), '.1f')} | {_fmt(r.get('peak_rss_mb'), '.0f')} "
              f"| {_fmt(r.get('vs_imagededup_phash'), '.2f')}{'×' if r.get('vs_imagededup_phash') else ''} "
              f"| {note} |")
    ceiling, phash = summary["cold_vs_ceiling"], summary["cold_vs_imagededup_phash"]
    if ceiling is None and phash is None:
        return
    print(f"\nLookalike cold scan: {_fmt(ceiling and 100 * ceiling, '.0f')} % of the CPU ceiling, "
          f"{_fmt(phash, '.2f')}× imagededup PHash.")


def machine_info(args) -> dict:
    return {"machine": platform.processor() or platform.machine(), "system": platform.platform(),
            "cpus": os.cpu_count(), "workers": args.workers, "device": args.device,
            "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def prepare_set(name: str, args) -> dict:
    folder = Path(args.work) / name
    print(f"preparing {name} in {folder} ...", file=sys.stderr, flush=True)
    if name == "caltech":
        return stage_caltech(folder, args.ncaltech)
    n = args.n12mp if name == "12mp" else args.n1080
    return generate_set(folder, n, SET_SIZES[name], seed=args.seed, workers=args.workers)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--sets", nargs="+", choices=("12mp", "1080p", "caltech"), default=["12mp", "1080p"])
    parser.add_argument("--caltech", action="store_true", help="also the Caltech-101 test photos")
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    parser.add_argument("--n12mp", type=int, help="12 MP photos (profile default)")
    parser.add_argument("--n1080", type=int, help="1920×1080 photos (profile default)")
    parser.add_argument("--ncaltech", type=int, help="Caltech photos, 0 = all (profile default)")
    parser.add_argument("--work", default=str(ROOT / "build/bench-photos"))
    parser.add_argument("--out", default=str(ROOT / "bench-results/peers.json"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--library", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    args.n12mp = profile["12mp"] if args.n12mp is None else args.n12mp
    args.n1080 = profile["1080p"] if args.n1080 is None else args.n1080
    args.ncaltech = profile["caltech"] if args.ncaltech is None else args.ncaltech
    if args.caltech and "caltech" not in args.sets:
        args.sets.append("caltech")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    results = {"machine": machine_info(args), "profile": args.profile, "tools": args.tools, "sets": {}}
    for name in args.sets:
        manifest = prepare_set(name, args)
        rows = bench_set(Path(args.work) / name / "photos", args.tools, args)
        summary = summarise(rows)
        print_table(name, manifest, rows, summary)
        results["sets"][name] = {"photos": len(manifest["photos"]), "params": manifest["params"],
                                 "near_duplicates": len(manifest["near_duplicates"]),
                                 "rows": rows, "summary": summary}
    m = results["machine"]
    print(f"\nMachine: {m['machine']}, {m['cpus']} CPUs, {args.workers} workers, device {args.device}, "
          f"load average {m['load_average']} (other work on the cores skews every number)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"Results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
