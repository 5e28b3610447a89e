"""Build resources/samples/: the small photo library bundled with Lookalike.

Why: the app ships a tiny demo library so that a first-time user (and `make run`, and the
tests) can see every level of matching at work without pointing the app at their own
photos: exact copies, near-duplicates (resized, recompressed, cropped, rotated,
mirrored, colour-edited, re-saved as PNG / WebP) and merely "similar" photos (two
different pictures of the same kind of thing).

The originals come from Caltech-101 (CC BY 4.0), and only from the *test* classes of the
class-disjoint split in caltech101/split.csv, so that nothing shown as a demo or measured
by a test was ever seen by training. The near-duplicates are made here, so the ground
truth is known exactly and is written to manifest.csv (file, source, class, edit, group).
File and folder names look like a real library and never reveal the answer.

The output is deterministic (fixed seed, fixed edit plan). Files listed in an existing
manifest.csv (i.e. made by an earlier run) are deleted before regenerating; anything
else in the folder is left alone and reported.

    python scripts/make_samples.py [--dataset ../shared/datasets/caltech101]
                                   [--out resources/samples]
"""
from __future__ import annotations

import argparse
import csv
import random
import shutil
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps, ImageStat

REPO = Path(__file__).resolve().parent.parent
SEED = 20240
MAX_SIDE = 400
QUALITY = 85
# Varied test classes; the first four contribute two different photos each ("similar").
CLASSES = ["sunflower", "llama", "pizza", "schooner", "panda", "strawberry",
           "stop_sign", "lotus", "rooster", "okapi"]
PAIRED = 4
# Edit plan: original index -> edits made from it (covers every edit kind at least once).
PLAN = {0: ["resize", "exact-copy"], 2: ["recompress"], 4: ["crop"], 6: ["rotate90", "webp"],
        8: ["mirror"], 10: ["color"], 12: ["png"]}
JPEG = (".jpg", {"quality": QUALITY, "optimize": True})
ENCODE = {"recompress": (".jpg", {"quality": 35, "optimize": True}),
          "png": (".png", {"optimize": True}), "webp": (".webp", {"quality": 80, "method": 4})}
FOLDERS = ["trips/2019-lisbon", "trips/2021-alps", "family", "phone-backup", "edits"]
CREDITS = """# Sample photos: credits

All photos in this folder are derived from **Caltech-101**:

> Fei-Fei Li, Rob Fergus, Pietro Perona. "Learning generative visual models from few training
> examples: an incremental Bayesian approach tested on 101 object categories."
> CVPR 2004 Workshop on Generative-Model Based Vision.
> CaltechDATA, doi:10.22002/D1.20086

Licence: [Creative Commons Attribution 4.0 (CC BY 4.0)](https://creativecommons.org/licenses/by/4.0/).

Changes: every photo was re-encoded (EXIF orientation applied, converted to RGB, longest side
at most {max_side} px, JPEG quality {quality}, metadata dropped) and renamed. Near-duplicate copies
were then made by `scripts/make_samples.py`: resized to 60 %, recompressed at JPEG quality 35,
cropped to a ~80 % off-centre region, rotated 90°, mirrored, colour-edited (brightness,
contrast, saturation), re-saved as PNG and as WebP, and one exact byte copy under another name
in another folder. `manifest.csv` lists each file's Caltech-101 source, class, edit and group.

Only images of the **test-split classes** (caltech101/split.csv, the class-disjoint split) are
used, so no sample was seen when training the shipped model.
"""


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def looks_like_photo(img: Image.Image) -> bool:
    """Real colour (some Caltech 'RGB' files are grey) and no flat black/white corners
    (clip-art, or Caltech's rotated images with black wedges)."""
    if ImageStat.Stat(img.convert("HSV").getchannel("S")).mean[0] < 40:
        return False
    w, h = img.size
    flat = 0
    for x, y in [(0, 0), (w - 12, 0), (0, h - 12), (w - 12, h - 12)]:
        st = ImageStat.Stat(img.crop((x, y, x + 12, y + 12)).convert("L"))
        flat += st.stddev[0] < 6 and not 20 < st.mean[0] < 235
    return flat < 2


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def pick_originals(dataset: Path, rng: random.Random) -> list[dict]:
    test = {r["class"] for r in read_csv(dataset / "split.csv") if r["split"] == "test"}
    missing = [c for c in CLASSES if c not in test]
    if missing:
        raise SystemExit(f"not test-split classes: {missing}")
    dup = {r["file"] for r in read_csv(dataset / "duplicates_found.csv")}
    labels = read_csv(dataset / "labels.csv")
    chosen: list[dict] = []
    for i, cls in enumerate(CLASSES):
        pool = sorted((r for r in labels if r["label"] == cls and r["mode"] == "RGB"
                       and min(int(r["width"]), int(r["height"])) >= 200
                       and r["file"] not in dup), key=lambda r: r["file"])
        rng.shuffle(pool)
        want, got = (2 if i < PAIRED else 1), 0
        for r in pool:
            # skip photos close to one already picked: they would be unmarked near-dups
            if any(hamming(r["dhash64"], c["dhash64"]) < 16 for c in chosen):
                continue
            with Image.open(dataset / r["file"]) as im:
                if not looks_like_photo(im.convert("RGB")):
                    continue
            chosen.append(r)
            got += 1
            if got == want:
                break
        if got < want:
            raise SystemExit(f"not enough colour photos in {cls}")
    return chosen


def load(path: Path) -> Image.Image:
    with Image.open(path) as im:
        img = ImageOps.exif_transpose(im).convert("RGB")
    img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return img


def edit(img: Image.Image, kind: str) -> Image.Image:
    w, h = img.size
    if kind == "resize":
        return img.resize((round(w * 0.6), round(h * 0.6)), Image.Resampling.LANCZOS)
    if kind == "crop":  # keep ~80 % of each side, a little off-centre
        cw, ch = round(w * 0.8), round(h * 0.8)
        left, top = round(w * 0.13), round(h * 0.07)
        return img.crop((left, top, left + cw, top + ch))
    if kind == "rotate90":
        return img.transpose(Image.Transpose.ROTATE_90)
    if kind == "mirror":
        return ImageOps.mirror(img)
    if kind == "color":
        img = ImageEnhance.Brightness(img).enhance(1.15)
        img = ImageEnhance.Contrast(img).enhance(1.2)
        return ImageEnhance.Color(img).enhance(1.4)
    return img  # original / recompress / png / webp: same pixels, encoding differs


def make_namer(rng: random.Random):
    """Realistic, unique, answer-free names (seeded), styled per folder."""
    used: set[str] = set()

    def name(folder: str, ext: str) -> str:
        while True:
            if folder.startswith("trips"):
                stem = f"DSC_{rng.randrange(100, 9999):04d}"
            elif folder == "phone-backup":
                stem = (f"IMG_2022{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}_"
                        f"{rng.randrange(8, 22):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}")
            else:
                stem = f"IMG_{rng.randrange(100, 9999):04d}"
            if stem not in used:
                used.add(stem)
                return f"{folder}/{stem}{ext}"
    return name


def clean(out: Path) -> None:
    """Delete what an earlier run made (as listed in its manifest), then empty folders."""
    manifest = out / "manifest.csv"
    if manifest.exists():
        for r in read_csv(manifest):
            p = (out / r["file"]).resolve()
            if p.is_relative_to(out.resolve()):  # never delete outside --out
                p.unlink(missing_ok=True)
        manifest.unlink()
    (out / "CREDITS.md").unlink(missing_ok=True)
    for d in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(d.iterdir()):
            d.rmdir()
    for p in out.rglob("*"):
        if p.is_file():
            print(f"warning: leaving unknown file {p}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", type=Path, default=REPO.parent / "shared/datasets/caltech101")
    ap.add_argument("--out", type=Path, default=REPO / "resources/samples")
    args = ap.parse_args()
    rng = random.Random(SEED)
    originals = pick_originals(args.dataset, rng)
    args.out.mkdir(parents=True, exist_ok=True)
    clean(args.out)
    name = make_namer(rng)
    rows = []
    for i, src in enumerate(originals):
        img = load(args.dataset / src["file"])
        home = rng.choice(FOLDERS)
        base = dict(source=src["file"], **{"class": src["label"]}, group=f"g{i + 1:02d}")
        rel = name(home, ".jpg")
        for kind in ["original"] + PLAN.get(i, []):
            ext, kw = ENCODE.get(kind, JPEG)
            # copies go to another folder than their original, as in real libraries
            others = [f for f in FOLDERS if f != home]
            dst = rel if kind == "original" else name(rng.choice(others), ext)
            (args.out / dst).parent.mkdir(parents=True, exist_ok=True)
            if kind == "exact-copy":
                shutil.copyfile(args.out / rel, args.out / dst)
            else:
                edit(img, kind).save(args.out / dst, **kw)
            rows.append(dict(file=dst, edit=kind, **base))

    rows.sort(key=lambda r: r["file"])
    with (args.out / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "source", "class", "edit", "group"],
                           lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    (args.out / "CREDITS.md").write_text(CREDITS.format(max_side=MAX_SIDE, quality=QUALITY))
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{len(rows)} photos, {len(originals)} originals, {total / 1e6:.2f} MB in {args.out}")


if __name__ == "__main__":
    main()
