"""Train and ship the default model: ``make model`` (see training/build.py for the recipe).

    .venv/bin/python scripts/build_model.py [--recipe resources/recipes/default-model.json]
        [--dataset ../shared/datasets/caltech101] [--out resources/models/NAME]
        [--work build/model] [--set copy_stage.steps=300 ...] [--default]
        [--fuse-from lookalike-angular-v1]

Runs on the CPU (the cached-activation path has no CUDA code yet); intermediate caches go to
--work so a rerun only retrains. --default points resources/models/DEFAULT at the new bundle.
--fuse-from BUNDLE runs only the recipe's fusion stage and the calibration over BUNDLE's
trained heads (a bundle built by the same recipe's earlier stages).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.model_bundle import BUILTIN_MODELS, DEFAULT_POINTER, load_bundle  # noqa: E402
from training.build import ModelRecipe, build, fuse_from, recalibrate  # noqa: E402


def apply_overrides(recipe: ModelRecipe, pairs: list[str]) -> None:
    """``a.b=value`` sets recipe.a[b] (JSON value, else a string)."""
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        head, _, rest = key.partition(".")
        if rest:
            getattr(recipe, head)[rest] = value
        else:
            setattr(recipe, head, value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "resources/recipes/default-model.json"))
    parser.add_argument("--dataset", default=str(ROOT.parent / "shared/datasets/caltech101"))
    parser.add_argument("--out")
    parser.add_argument("--work", default=str(ROOT / "build/model"))
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--default", action="store_true", help="make the new bundle the default")
    parser.add_argument("--calibrate-only", action="store_true",
                        help="only recompute the thresholds of the bundle at --out")
    parser.add_argument("--fuse-from", metavar="BUNDLE",
                        help="skip training: fuse and calibrate this bundle's trained heads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    recipe = ModelRecipe.from_file(args.recipe)
    apply_overrides(recipe, args.set)
    out = Path(args.out or BUILTIN_MODELS / recipe.name)
    last = [0.0]

    def progress(done: int, total: int, what: str) -> bool:
        if total and (done == total or done / total - last[0] >= 0.1 or done < last[0] * total):
            last[0] = done / total
            logging.info("%s: %d/%d", what, done, total)
        return True

    if args.calibrate_only:
        card = recalibrate(recipe, Path(args.dataset), out, Path(args.work))
        print(json.dumps({"bundle": str(out), "calibration": card["calibration"]}, indent=1))
        return 0
    if args.fuse_from:
        card = fuse_from(load_bundle(args.fuse_from), recipe, Path(args.dataset), out, Path(args.work), progress)
    else:
        card = build(recipe, Path(args.dataset), out, Path(args.work), progress)
    history = card["metrics"]["history"]
    print(json.dumps({"bundle": str(out), "thresholds": card["thresholds"], "timings": card["timings"],
                      "copy": (history.get("copy") or [])[-3:], "semantic": (history.get("semantic") or [])[-3:],
                      "fuse": history.get("fuse")}, indent=1))
    if args.default:
        DEFAULT_POINTER.write_text(out.name + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
