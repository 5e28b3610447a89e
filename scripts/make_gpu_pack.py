"""Pack the model recipe's training photos for a lent GPU machine (``../shared`` does not
travel there; at most 64 MiB does, the working tree included).

    .venv/bin/python scripts/make_gpu_pack.py            # → .pack/caltech-train.pt (38.5 MB)

Each photo of the recipe's training and held-out classes (``training.build.training_folders``:
Caltech-101 train classes minus ``Faces``) squashed to ``--side``² — the engine squashes the
whole frame too — and stored as JPEG bytes, with its class and whether its class is held out.
``training/gpu_build.py`` decodes the pack once into one uint8 tensor on the GPU. The pack is
built data, not source: ``.pack/`` is in ``.gitignore``.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.decode import read_photo  # noqa: E402
from training.build import ModelRecipe, training_folders  # noqa: E402


def pack(recipe: ModelRecipe, dataset: Path, side: int, quality: int) -> dict:
    train, val = training_folders(dataset, recipe)
    jpegs, labels, held, names = [], [], [], []
    classes = list(train.classes) + list(val.classes)
    for part, offset, is_val in ((train, 0, False), (val, len(train.classes), True)):
        for path, label in zip(part.paths, part.labels):
            img = read_photo(path, 2 * side).image.convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=quality)
            jpegs.append(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8))
            labels.append(offset + label)
            held.append(is_val)
            names.append(str(Path(path).relative_to(dataset)))
    return {"jpegs": jpegs, "labels": torch.tensor(labels), "held_out": torch.tensor(held),
            "classes": classes, "files": names, "side": side, "quality": quality,
            "recipe_split": {"exclude_classes": recipe.exclude_classes,
                             "val_fraction": recipe.val_fraction, "seed": recipe.seed}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=str(ROOT.parent / "shared/datasets/caltech101"))
    parser.add_argument("--recipe", default=str(ROOT / "resources/recipes/default-model.json"))
    parser.add_argument("--out", default=str(ROOT / ".pack/caltech-train.pt"))
    parser.add_argument("--side", type=int, default=192)
    parser.add_argument("--quality", type=int, default=82)
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = pack(ModelRecipe.from_file(args.recipe), Path(args.dataset), args.side, args.quality)
    torch.save(data, out)
    held = int(data["held_out"].sum())
    print(f"{out}: {len(data['jpegs'])} photos ({held} in held-out classes "
          f"{data['classes'][-len(set(data['labels'][data['held_out']].tolist())):]}), "
          f"{out.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
