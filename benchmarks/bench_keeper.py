"""Keeper preference: simulated people with their own habits, held-out accuracy of the
learned preference against the built-in rules (``engine.keeper.choose_keeper``).

    .venv/bin/python benchmarks/bench_keeper.py

Each simulated person decides ``n`` groups of copies of one photo with one habit: keeps the
copy under Pictures/Originals whatever its size or format; keeps the most pixels even a JPEG
over a bigger PNG; keeps the highest JPEG quality among copies of one size. The preference is
fitted on the first 80 % of the decisions (``KeeperPreference.fit`` measures the rest); the
rules are scored on the same held-out decisions. Mean over 10 people per cell. Prints a
markdown table and writes ``bench-results/keeper.json``.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.feedback import Review, ReviewMember  # noqa: E402
from engine.keeper import Candidate, choose_keeper  # noqa: E402
from engine.keeper_model import KeeperPreference  # noqa: E402

HOME = "/home/ann/Pictures"
FOLDERS = [f"{HOME}/Exports", f"{HOME}/Phone", "/home/ann/Downloads", f"{HOME}/Shared/Family"]


def _copy(rng: random.Random, pixels: int, fmt: str = "JPEG", quality: float | None = None,
          folder: str | None = None, name: str = "IMG_0001.jpg") -> dict:
    quality = quality if fmt != "JPEG" or quality is not None else rng.uniform(60, 98)
    per_pixel = {"JPEG": 0.1 + 0.4 * (quality or 80) / 100, "PNG": 2.5, "HEIF": 0.15}[fmt]
    return {"bytes": int(pixels * per_pixel * rng.uniform(0.7, 1.3)), "width": None, "height": None,
            "pixels": pixels, "format": fmt, "has_capture_time": rng.random() < 0.5,
            "has_camera": rng.random() < 0.5, "folder": folder or rng.choice(FOLDERS), "name": name,
            "jpeg_quality": round(quality, 1) if fmt == "JPEG" else None,
            "sharpness": rng.uniform(50, 400)}


def _review(rid: int, copies: list[dict], keep: int) -> Review:
    members = tuple(ReviewMember(f"h{rid}-{i}", f"{c['folder']}/{c['name']}", i == keep, 0.9, c)
                    for i, c in enumerate(copies))
    return Review(rid, f"2024-01-01T00:00:{rid:02d}", "same-photo", "near", "m", 0.8, members)


def originals_user(n: int, seed: int = 0) -> list[Review]:
    """Keeps the copy under Pictures/Originals, whatever its size or format."""
    rng, out = random.Random(seed), []
    for rid in range(n):
        pixels = rng.choice([2, 8, 12, 24]) * 10**6
        copies = [_copy(rng, int(pixels * rng.choice([1, 0.5, 0.25])), rng.choice(["JPEG", "PNG", "HEIF"]))
                  for _ in range(rng.randint(2, 3))]
        keep = rng.randrange(len(copies))
        copies[keep]["folder"] = f"{HOME}/Originals/{2015 + rid % 8}"
        out.append(_review(rid, copies, keep))
    return out


def pixels_user(n: int, seed: int = 1) -> list[Review]:
    """Keeps the most pixels, even a JPEG over a (bigger) PNG and a low quality over a high one."""
    rng, out = random.Random(seed), []
    for rid in range(n):
        pixels = rng.choice([2, 8, 12]) * 10**6
        big, small = rng.choice(["JPEG", "PNG"]), rng.choice(["JPEG", "PNG"])
        copies = [_copy(rng, pixels, big, quality=70 if big == "JPEG" else None),
                  _copy(rng, pixels // 4, small, quality=95 if small == "JPEG" else None)]
        order = rng.sample([0, 1], 2)
        out.append(_review(rid, [copies[i] for i in order], order.index(0)))
    return out


def quality_user(n: int, seed: int = 2) -> list[Review]:
    """Keeps the highest JPEG quality among copies of the same size."""
    rng, out = random.Random(seed), []
    for rid in range(n):
        pixels = rng.choice([2, 8, 12]) * 10**6
        qualities = rng.sample(range(55, 99, 4), rng.randint(2, 3))
        copies = [_copy(rng, pixels, "JPEG", quality=q) for q in qualities]
        out.append(_review(rid, copies, qualities.index(max(qualities))))
    return out


def rules_accuracy(reviews: list[Review]) -> float:
    """Share of reviews where the built-in rules pick a copy the person kept."""
    hits = []
    for review in reviews:
        candidates = []
        for i, m in enumerate(review.members):
            f = m.features
            side = int((f["pixels"] * 4 / 3) ** 0.5)  # a 4:3 photo of that many pixels
            candidates.append(Candidate(i, m.path, side, f["pixels"] // max(1, side), f["bytes"], f["format"],
                                        0, "2024-01-01T00:00:00" if f["has_capture_time"] else None,
                                        "Camera" if f["has_camera"] else None))
        keep, _ = choose_keeper(candidates)
        hits.append(review.members[keep].kept)
    return float(np.mean(hits))


def main() -> int:
    rows = []
    for name, user in (("originals", originals_user), ("pixels", pixels_user), ("quality", quality_user)):
        for n in (5, 10, 25, 50):
            people = [user(n, seed=100 * n + s) for s in range(10)]
            fits = [KeeperPreference.fit(p) for p in people]
            rules = [rules_accuracy(p[len(p) - f.held_out:]) for p, f in zip(people, fits)]
            rows.append({"habit": name, "decisions": n, "held_out": fits[0].held_out,
                         "learned": round(float(np.mean([f.accuracy for f in fits])), 3),
                         "rules": round(float(np.mean(rules)), 3)})
    lines = ["### Keeper preference: simulated people (`bench_keeper.py`)", "",
             "Held-out share of decisions where the suggestion is a copy the person kept; mean of 10 people.", "",
             "| habit | decisions | held out | learned preference | built-in rules |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['habit']} | {r['decisions']} | {r['held_out']} | {r['learned']:.2f} | {r['rules']:.2f} |"
              for r in rows]
    markdown = "\n".join(lines)
    out = ROOT / "bench-results/keeper.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "markdown": markdown}, indent=1) + "\n")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
