"""Training benchmark: fine-tune on Caltech-101 train classes with several losses at the same
budget and compare with the pretrained backbone on the test classes.

    .venv/bin/python benchmarks/bench_training.py [--steps 200] [--image-size 128]
        [--losses npair+angular triplet] [--device auto]

Prints a table (and writes bench-results/training.json): class-disjoint Recall@K, MAP@R,
NMI on all test-class images, plus near-duplicate Recall@1 and micro-AP of the semantic
head's trunk (copy head = GeM features of the fine-tuned trunk).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.embedding import Embedder  # noqa: E402
from engine.model_bundle import load_bundle  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.evaluate import EvalConfig, evaluate_embedder  # noqa: E402
from training.loop import train  # noqa: E402
from training.model import ModelConfig  # noqa: E402


def pretrained_at(size: int, device: str) -> Embedder:
    bundle = load_bundle()
    bundle.card = copy.deepcopy(bundle.card)
    bundle.card["input"]["size"] = size
    return Embedder(bundle, device=device)


def row(name: str, results: dict, seconds: float) -> dict:
    c, n = results["class_retrieval"], results["near_duplicate"]["overall"]
    return {"model": name, **{k: c[k] for k in ("recall@1", "recall@2", "recall@4", "recall@8", "map@r", "nmi")},
            "neardup_recall@1": n["recall@1"], "neardup_micro-AP": n["micro-AP"], "train_s": seconds}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default=str(ROOT.parent / "shared/datasets/caltech101"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--losses", nargs="+", default=["npair+angular", "triplet"])
    parser.add_argument("--alpha", type=float, default=45.0)
    parser.add_argument("--n-classes", type=int, default=16)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--distractors", type=int, default=500)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--trunk", choices=("all", "partial", "frozen"), default="partial")
    parser.add_argument("--skip-pretrained", action="store_true")
    parser.add_argument("--tag", default="training")
    args = parser.parse_args()
    evaluation = EvalConfig(dataset=Path(args.dataset), split="test", queries=args.queries,
                            distractors=args.distractors, image_size=2 * args.image_size)
    rows = []
    if not args.skip_pretrained:
        rows.append(row(f"pretrained Lite0+GeM @{args.image_size}px",
                        evaluate_embedder(pretrained_at(args.image_size, args.device), evaluation), 0.0))
        print(rows[-1], flush=True)
    work = Path(tempfile.mkdtemp(prefix="lookalike-bench-train-"))
    base = TrainConfig(data=args.dataset, data_split="train", recipe="finetune", image_size=args.image_size,
                       epochs=1, steps_per_epoch=args.steps, n_classes=args.n_classes, alpha_deg=args.alpha,
                       workers=args.workers, val_images=200, device=args.device, lr=args.lr,
                       model=ModelConfig(heads={"copy": 256, "semantic": 256}, trunk_policy=args.trunk))
    for loss in args.losses:
        config = replace(base, loss=loss, out=str(work / f"run-{loss}"), name=f"bench-{loss}")
        start = time.perf_counter()
        result = train(config, export_to=work / f"bundle-{loss}")
        seconds = time.perf_counter() - start
        results = evaluate_embedder(Embedder.load(result.bundle, device=args.device), evaluation)
        rows.append(row(f"{loss} ({args.steps} steps, lr {args.lr:g}, trunk {args.trunk})", results, seconds))
        print(rows[-1], flush=True)
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / f"{args.tag}.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    keys = list(rows[0])
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
