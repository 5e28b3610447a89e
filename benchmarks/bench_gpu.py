"""GPU throughput: nvJPEG decode, the model's forward pass, the scan end to end, and training.

    python3 benchmarks/bench_gpu.py                                 # CUDA: 400 × 12 MP, 2,000 × 1080p
    python3 benchmarks/bench_gpu.py --n12mp 100 --n1080 500 --budget 300
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --smoke   # the CPU check; nvJPEG rows skipped
    bash scripts/gpu_bench.sh                                       # on a lent GPU machine (device tool)

It imports only what a scan needs (torch, torchvision, timm, numpy, Pillow, safetensors), not
``engine.library`` (hnswlib) nor the GUI, so it runs on a bare CUDA image; the training row
imports ``training`` when it runs and reports why when it cannot.

Photo sets: bench_peers' generator (``generate_set``) without near-copies: ``--n12mp``
4000×3000 and ``--n1080`` 1920×1080 photo-like JPEGs (quality 90, ~2.5 MB and ~0.5 MB) under
``--work`` (default build/bench-gpu), made on the machine in threads and reused while their
size and seed stay. They are read right after being written, so they sit in the page cache:
this measures the GPU and the CPU, not the disk.

Rows, per set:
  * nvJPEG ceiling: ``torchvision.io.decode_jpeg(list, device="cuda")`` in batches of
    ``--decode-batch``, bytes read beforehand, decode alone (no resize). Only on CUDA: on a
    machine without it, ``decode_jpeg`` is never called with ``device="cuda"``.
  * End to end: the scan's own path without the walk and the vector index: an
    ``engine.ingest.Ingester`` writing into a new ``engine.catalog.Catalog`` in a temporary
    folder, with an ``Embedder`` on the device; threads read, hash and parse headers, JPEGs are
    decoded, oriented, resized and normalised on the device in batches, embedded, and rows and
    vectors written. Then the same with ``gpu_jpeg`` off (Pillow draft-mode decode in CPU
    threads). Each is also given as a share of the nvJPEG ceiling; the issue's target is ≥ 70 %
    for 12 MP JPEGs end to end.
And once: the model's forward ceiling (the default bundle's network as the Embedder runs it:
BatchNorm folded, channels_last, bf16 autocast on CUDA; random input, batch
``--forward-batch``), and the training throughput of the copy-detection recipe (the training
module's ``Trainer.train_step`` over its own data pipeline with GPU-side augmentation, on
generated images, starting from the default bundle; ``--train-steps`` steps after a warm-up),
in views per second (two views of each photo).

``--budget`` seconds (0: none) bounds the run: a step that would start after it is recorded as
skipped, and the JSON (``--out``, default bench-results/gpu.json; with ``--smoke``
bench-results/gpu-smoke.json) is rewritten after every row, so a run stopped from outside keeps
what it measured. ``--smoke`` shrinks everything (photos at a tenth of the size) to check the
code, not to measure. Nothing here is asserted in tests; tests/engine/test_bench_gpu.py runs
the pieces at smoke size on the CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_peers import SET_SIZES, generate_set, synth_photo  # noqa: E402
from engine.catalog import Catalog  # noqa: E402
from engine.decode import read_photo  # noqa: E402
from engine.embedding import Embedder, pick_device  # noqa: E402
from engine.errors import LookalikeError  # noqa: E402
from engine.ingest import Ingester  # noqa: E402
from engine.model_bundle import ModelBundle, load_bundle, resolve  # noqa: E402
from engine.progress import null_progress  # noqa: E402
from engine.scan import scan  # noqa: E402

TARGET = 0.70                 # end to end ≥ 70 % of the nvJPEG ceiling for 12 MP JPEGs
LABELS = {"nvjpeg": "nvJPEG ceiling: decode_jpeg(list, device) alone",
          "forward": "model forward ceiling",
          "e2e-gpu": "end to end: Ingester, JPEG decode on the device",
          "e2e-cpu": "end to end: Ingester, Pillow draft decode in CPU threads",
          "train": "training: copy-detection recipe"}


class Budget:
    """The run's time budget in seconds (0: none); ``why_not`` says why a step may not start."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.perf_counter()

    def why_not(self) -> str | None:
        spent = time.perf_counter() - self.start
        if self.seconds and spent >= self.seconds:
            return f"time budget of {self.seconds:.0f} s spent ({spent:.0f} s in)"
        return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _row(row: str, images: int, seconds: float, **extra) -> dict:
    return {"row": row, "label": LABELS[row], "images": images, "seconds": seconds,
            "per_s": images / seconds if seconds else None, **extra}


def skipped(row: str, reason: str, **extra) -> dict:
    return {"row": row, "label": LABELS[row], "skipped": reason, **extra}


def photo_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".jpg")


# ---- the measurements -----------------------------------------------------------------------
def measure_nvjpeg(paths: list[Path], device: torch.device, batch: int) -> dict:
    """Batched decode alone on a CUDA device, the bytes already in host memory."""
    if device.type != "cuda":
        return skipped("nvjpeg", f"device is {device.type}: nvJPEG needs a CUDA GPU")
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths]
    decode_jpeg(data[:batch], mode=ImageReadMode.RGB, device=device)  # warm-up: handles, buffers
    _sync(device)
    pixels, start = 0, time.perf_counter()
    for i in range(0, len(data), batch):
        out = decode_jpeg(data[i:i + batch], mode=ImageReadMode.RGB, device=device)
        pixels += sum(img.shape[1] * img.shape[2] for img in out)
        del out
    _sync(device)
    seconds = time.perf_counter() - start
    return _row("nvjpeg", len(data), seconds, batch=batch, megapixels_per_s=pixels / 1e6 / seconds,
                megabytes=sum(d.numel() for d in data) / 1e6)


def measure_forward(embedder: Embedder, batch: int, iters: int) -> dict:
    """The Embedder's own network (folded BatchNorm, channels_last; bf16 on CUDA), random input."""
    net, device, size, heads = embedder.net, embedder.device, embedder.input_size, tuple(embedder.heads)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    with torch.inference_mode(), autocast:
        for _ in range(2):  # warm-up: kernel choice, allocator
            net(x, heads)
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            net(x, heads)
        _sync(device)
    dtype = "bf16 autocast" if device.type == "cuda" else "fp32"
    return _row("forward", batch * iters, time.perf_counter() - start, batch=batch,
                note=f"{dtype}, channels_last, {size} px, heads {', '.join(heads)}")


def measure_ingest(folder: Path, embedder: Embedder) -> dict:
    """The scan's ingest (read, hash, parse, decode, embed, write rows) into a fresh catalog;
    JPEGs are decoded on the embedder's device when its ``gpu_jpeg`` is on."""
    device, gpu_jpeg = embedder.device, embedder.gpu_jpeg
    entries = scan([folder]).files
    warm = [read_photo(e.path, embedder.input_size, keep_jpeg=gpu_jpeg) for e in entries[:8]]
    embedder.embed_photos(warm)  # CUDA context, nvJPEG handles, first kernels: not timed
    _sync(device)
    with tempfile.TemporaryDirectory(prefix="lookalike-bench-gpu-") as tmp:
        catalog = Catalog(Path(tmp) / "catalog.sqlite")
        try:
            scan_id = catalog.start_scan([str(folder)])
            start = time.perf_counter()
            stats = Ingester(catalog, embedder, scan_id).run(entries, null_progress)
            _sync(device)
            seconds = time.perf_counter() - start
            rows = catalog.count_files()
        finally:
            catalog.close()
    decoder = ("Pillow draft mode" if not gpu_jpeg else "nvJPEG" if device.type == "cuda"
               else f"torchvision on the {device.type}")
    return _row("e2e-gpu" if gpu_jpeg else "e2e-cpu", len(entries), seconds, embedded=stats.embedded,
                failed=stats.failed, catalog_rows=rows, batch=embedder.batch_size, decoder=decoder,
                workers=embedder.workers or "default",
                note=f"{decoder}; {stats.embedded} embedded, {stats.failed} failed")


def make_training_folder(folder: Path, images: int, size: tuple[int, int], classes: int = 3,
                         workers: int = 1) -> Path:
    """``images`` small generated JPEGs in ``classes`` label folders (reused when complete)."""
    from concurrent.futures import ThreadPoolExecutor

    def write(i: int) -> None:
        path = folder / f"class{i % classes}" / f"img_{i:05d}.jpg"
        if not path.exists():
            synth_photo(*size, np.random.default_rng([17, i])).save(path, "JPEG", quality=90)

    for c in range(classes):
        (folder / f"class{c}").mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(write, range(images)))
    return folder


def measure_training(folder: Path, device: torch.device, steps: int, warmup: int, batch: int | None,
                     workers: int, image_size: int) -> dict:
    """Steps of the copy-detection recipe through the training module's own pipeline."""
    try:
        from training.config import TrainConfig
        from training.loop import Trainer
        from training.model import ModelConfig
    except ImportError as exc:
        return skipped("train", f"the training module cannot be imported here ({exc})")
    with tempfile.TemporaryDirectory(prefix="lookalike-bench-train-") as out:
        config = TrainConfig(data=str(folder), recipe="copy-detection", device=str(device), workers=workers,
                             gpu_augment=True, image_size=image_size, out=out,
                             model=ModelConfig(start_from=str(resolve(None))))
        if batch:
            config.copy_batch = batch
        try:
            trainer = Trainer(config)
            seconds = _train_steps(trainer, device, steps, warmup)
        except (ImportError, LookalikeError) as exc:
            return skipped("train", f"the recipe cannot run here ({exc})")
    views = steps * config.copy_batch * 2
    return _row("train", views, seconds, steps=steps, batch=config.copy_batch, image_size=image_size,
                augment="GPUAugment" if trainer.data.gpu_augment is not None else "CopyAugment (CPU workers)",
                note=f"{steps} steps of {config.copy_batch} photos × 2 views, {config.loss} loss, "
                     f"{image_size} px, {workers} loader workers; views/s")


def _train_steps(trainer, device: torch.device, steps: int, warmup: int) -> float:
    done, epoch, start = 0, 0, time.perf_counter()
    while done < warmup + steps:
        trainer.data.set_epoch(epoch)
        for batches in trainer.data.batches():
            trainer.train_step(batches)  # returns the loss as a float: one sync per step
            done += 1
            if done == warmup:
                _sync(device)
                start = time.perf_counter()
            if done == warmup + steps:
                break
        epoch += 1
    _sync(device)
    return time.perf_counter() - start


# ---- the run ----------------------------------------------------------------------------------
class Run:
    """Rows as they come, written to ``out`` after each one."""

    def __init__(self, args, device: torch.device, bundle: ModelBundle):
        self.args, self.device, self.bundle = args, device, bundle
        self.budget = Budget(args.budget)
        self.results = {"machine": machine_info(device), "device": str(device), "model": bundle.model_id,
                        "smoke": args.smoke, "args": {k: v for k, v in vars(args).items() if k != "out"},
                        "target": {"e2e_vs_nvjpeg_12mp": TARGET}, "rows": []}

    def add(self, row: dict, set_name: str | None = None) -> dict:
        row = {"set": set_name or "—", **row}
        self.results["rows"].append(row)
        self.results["summary"] = summarise(self.results["rows"])
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.results, indent=1) + "\n")
        what = row.get("skipped") or f"{row['per_s']:,.1f}/s"
        print(f"  {set_name or ''} {row['label']}: {what}", file=sys.stderr, flush=True)
        return row

    def step(self, row: str, fn, set_name: str | None = None) -> dict:
        why = self.budget.why_not()
        return self.add(skipped(row, why) if why else fn(), set_name)

    def photo_set(self, name: str, n: int) -> None:
        a, dev = self.args, self.device
        if n <= 0:
            return
        why = self.budget.why_not()
        if why:
            for row in ("nvjpeg", "e2e-gpu", "e2e-cpu"):
                self.add(skipped(row, why), name)
            return
        size = tuple(max(16, s // 10) for s in SET_SIZES[name]) if a.smoke else SET_SIZES[name]
        print(f"preparing {n} × {size[0]}×{size[1]} ({name}) ...", file=sys.stderr, flush=True)
        folder = Path(a.work) / name
        generate_set(folder, n, size, seed=a.seed, dup_fraction=0.0, workers=a.gen_workers)
        paths = photo_paths(folder / "photos")
        self.step("nvjpeg", lambda: measure_nvjpeg(paths, dev, a.decode_batch), name)
        for gpu_jpeg in (True, False):
            self.step("e2e-gpu" if gpu_jpeg else "e2e-cpu",
                      lambda: measure_ingest(folder / "photos", self.embedder(gpu_jpeg)), name)

    def embedder(self, gpu_jpeg: bool = False) -> Embedder:
        """A new Embedder as the scan makes it (batch 256 on CUDA, the default threads)."""
        return Embedder(self.bundle, device=str(self.device), gpu_jpeg=gpu_jpeg, workers=self.args.workers)

    def training(self) -> None:
        a = self.args
        folder = Path(a.work) / "train"

        def run() -> dict:
            make_training_folder(folder, a.train_images, a.train_photo_size, workers=a.gen_workers)
            return measure_training(folder, self.device, a.train_steps, a.train_warmup, a.train_batch,
                                    a.train_workers, a.train_size)
        self.step("train", run)


def summarise(rows: list[dict]) -> dict:
    """Per set: end to end (device decode) over the nvJPEG ceiling, and against the target."""
    out = {}
    for name in sorted({r["set"] for r in rows if r["set"] in SET_SIZES}):
        by = {r["row"]: r for r in rows if r["set"] == name}
        ceiling = by.get("nvjpeg", {}).get("per_s")
        block = {"nvjpeg_per_s": ceiling}
        for row in ("e2e-gpu", "e2e-cpu"):
            rate = by.get(row, {}).get("per_s")
            block[f"{row}_per_s"] = rate
            block[f"{row}_vs_nvjpeg"] = rate / ceiling if rate and ceiling else None
        if name == "12mp" and block["e2e-gpu_vs_nvjpeg"] is not None:
            block["meets_target"] = block["e2e-gpu_vs_nvjpeg"] >= TARGET
        out[name] = block
    return out


def machine_info(device: torch.device) -> dict:
    import torchvision

    info = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda)
    return info


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table_lines(results: dict) -> list[str]:
    summary = results.get("summary", {})
    lines = ["| set | measurement | images | seconds | per s | vs nvJPEG | notes |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in results["rows"]:
        share = summary.get(r["set"], {}).get(f"{r['row']}_vs_nvjpeg")
        note = f"skipped: {r['skipped']}" if "skipped" in r else r.get("note", "")
        lines.append(f"| {r['set']} | {r['label']} | {_fmt(r.get('images'), 'd')} | "
                     f"{_fmt(r.get('seconds'), '.2f')} | {_fmt(r.get('per_s'), ',.1f')} | "
                     f"{_fmt(share and 100 * share, '.0f')}{' %' if share else ''} | {note} |")
    return lines


def print_results(results: dict) -> None:
    m = results["machine"]
    print(f"\n### GPU benchmark on {results['device']} ({m.get('gpu', m['machine'])}), "
          f"model {results['model']}"
          + (" — smoke run, not a measurement" if results["smoke"] else "") + "\n")
    print("\n".join(table_lines(results)))
    twelve = results.get("summary", {}).get("12mp", {})
    if twelve.get("meets_target") is not None:
        print(f"\n12 MP end to end: {100 * twelve['e2e-gpu_vs_nvjpeg']:.0f} % of the nvJPEG ceiling "
              f"(target ≥ {100 * TARGET:.0f} %): {'met' if twelve['meets_target'] else 'NOT met'}.")
    print(f"Machine: {m['cpus']} CPUs, torch {m['torch']}, torchvision {m['torchvision']}, "
          f"load average at the start {m['load_average']}")


# ---- arguments --------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto = CUDA when present")
    p.add_argument("--n12mp", type=int, help="12 MP photos (default 400; smoke 2)")
    p.add_argument("--n1080", type=int, help="1920×1080 photos (default 2000; smoke 3)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the code, measures nothing")
    p.add_argument("--budget", type=float, default=0, help="seconds; later steps are skipped (0 = none)")
    p.add_argument("--decode-batch", type=int, default=256)
    p.add_argument("--forward-batch", type=int, help="default 256 on CUDA, 32 on the CPU, smoke 4")
    p.add_argument("--forward-iters", type=int, help="default 50 on CUDA, 4 on the CPU, smoke 1")
    p.add_argument("--workers", type=int, help="ingest threads (default: the scan's own default)")
    p.add_argument("--train-steps", type=int, help="default 100; smoke 2")
    p.add_argument("--train-warmup", type=int, help="default 5; smoke 1")
    p.add_argument("--train-batch", type=int, help="photos per step (default: the recipe's; smoke 4)")
    p.add_argument("--train-images", type=int, help="generated training photos (default 1,200; smoke 12)")
    p.add_argument("--train-workers", type=int, help="DataLoader workers (default 4; smoke 0)")
    p.add_argument("--train-size", type=int, help="training image size (default 224; smoke 64)")
    p.add_argument("--gen-workers", type=int, default=os.cpu_count() or 1, help="threads that write the sets")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=str(ROOT / "build/bench-gpu"))
    p.add_argument("--out", help="default bench-results/gpu.json (smoke: gpu-smoke.json)")
    args = p.parse_args(argv)
    cuda = args.device == "auto" and torch.cuda.is_available() or args.device.startswith("cuda")
    defaults = {"n12mp": (400, 2), "n1080": (2000, 3), "train_steps": (100, 2), "train_warmup": (5, 1),
                "train_batch": (None, 4), "train_images": (1200, 12), "train_workers": (4, 0),
                "train_size": (224, 64), "forward_batch": (256 if cuda else 32, 4),
                "forward_iters": (50 if cuda else 4, 1)}
    for key, (normal, smoke) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, smoke if args.smoke else normal)
    args.train_photo_size = (96, 72) if args.smoke else (320, 240)
    if args.smoke:
        args.work = str(Path(args.work) / "smoke")
    args.out = args.out or str(ROOT / "bench-results" / ("gpu-smoke.json" if args.smoke else "gpu.json"))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device)
    run = Run(args, device, load_bundle())
    run.step("forward", lambda: measure_forward(run.embedder(), args.forward_batch, args.forward_iters))
    run.photo_set("12mp", args.n12mp)
    run.training()
    run.photo_set("1080p", args.n1080)
    print_results(run.results)
    print(f"Results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
