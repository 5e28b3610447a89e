"""Simulated users: review decisions replayed from ground truth, then learning from them.

    .venv/bin/python benchmarks/bench_feedback.py [--originals 240] [--steps 200] [--seed 0]

A library is built from Caltech-101 *test*-class photos (../shared/datasets, read only; the
photos are copied into ``--work`` as the person's files) plus edited copies of 40 % of them
made with the evaluation families (seeded: resize+JPEG, crop, rotation/flip, colour, overlay,
border, perspective, chains). The originals are split in two halves by index: the simulated
person reviews only groups of half A; half B is never reviewed and is where the result is
measured. Caltech-101 has its own near-identical photos within classes (drawings, bursts), so
the near level proposes false groups without any help.

The person, following the ground truth, for every near-duplicate group the active model
proposes with the slider ``--review-offset`` (0.1) below its card threshold (people lower it to
find more) whose photos all lie in half A: removes the copies of the
suggested keeper's photo (a "same photo" review of those), and marks every other photo of
the group "not a duplicate" with the keeper (one review per photo).

Then, with the same library:
  * ``train_from_feedback`` (the product's code path, its own held-out split of decisions and
    built-in benchmark gate), with the candidate saved even when not activated, so it can be
    measured;
  * personal thresholds calibrated on the decisions (``engine.personal_thresholds``);
  * on half B: every pair of files, labelled by the ground truth; the number of false pairs
    at the recall the active model has at its card threshold (equal recall), and pair AP,
    for the active model, the candidate, and the precision/recall of the card threshold vs
    the personal one.

Prints markdown tables and writes ``bench-results/feedback.json``. Needs ../shared/datasets.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.decode import read_photo  # noqa: E402
from engine.embedding import Embedder  # noqa: E402
from engine.library import DuplicateGroup, Library, Member  # noqa: E402
from engine.model_bundle import load_bundle  # noqa: E402
from engine.personal_thresholds import calibrate_personal, precision_recall_at  # noqa: E402
from training.calibrate import sample_images  # noqa: E402
from training.families import FAMILIES, make_copy  # noqa: E402
from training.feedback_train import (FeedbackConfig, average_precision,  # noqa: E402
                                     false_positives_at_recall, train_from_feedback)

DATA = ROOT.parent / "shared/datasets/caltech101"


def build_library(folder: Path, originals: int, seed: int) -> dict[str, tuple[int, str]]:
    """Photos under ``folder``; returns file name → (source index, half "A"/"B")."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    truth = {}
    names = sorted(FAMILIES)
    rng = random.Random(seed)
    for i, (path, cls) in enumerate(sample_images(DATA, "test", originals, seed)):
        half = "AB"[i % 2]
        name = f"{half}-{i:04d}-{cls}.jpg"
        shutil.copyfile(path, folder / name)
        truth[name] = (i, half)
        if rng.random() < 0.4:
            family = names[i % len(names)]
            copy = make_copy(read_photo(path, 640).image, family, seed * 7919 + i)
            copy_name = f"{half}-{i:04d}-{cls}-{family}.jpg"
            copy.convert("RGB").save(folder / copy_name, quality=88)
            truth[copy_name] = (i, half)
    return truth


def replay_decisions(lib: Library, truth: dict, threshold: float) -> dict:
    """The simulated person reviews half A's near groups at ``threshold``; returns counts."""
    source = lambda f: truth[Path(f.path).name][0]  # noqa: E731
    counts = {"groups": 0, "same-photo": 0, "not-duplicate": 0, "skipped (half B)": 0}
    for group in lib.duplicates("near", threshold):
        if any(truth[Path(m.file.path).name][1] != "A" for m in group.members):
            counts["skipped (half B)"] += 1
            continue
        counts["groups"] += 1
        keep = group.keep
        same = [m for m in group.members if source(m.file) == source(keep)]
        if len(same) > 1:
            lib.record_removal([DuplicateGroup("near", same, keep, group.reason)],
                               [m.file.path for m in same if m.file.path != keep.path])
            counts["same-photo"] += 1
        for m in group.members:
            if source(m.file) != source(keep):
                pair = DuplicateGroup("near", [Member(keep, 1.0), m], keep, group.reason)
                lib.dismiss(pair, "not-duplicate")
                counts["not-duplicate"] += 1
    return counts


def half_b_pairs(files: list, truth: dict) -> tuple[list[str], np.ndarray]:
    """Half B's files (paths) and the ground-truth label of each pair (upper triangle)."""
    paths = sorted(str(f) for f in files if truth[Path(f).name][1] == "B")
    src = np.array([truth[Path(p).name][0] for p in paths])
    upper = np.triu_indices(len(paths), 1)
    return paths, (src[:, None] == src[None, :])[upper].astype(int)


def pair_metrics(embedder: Embedder, paths: list[str], labels: np.ndarray, threshold: float,
                 recall: float | None = None) -> dict:
    emb = embedder.embed_files(paths, head="copy")
    scores = (emb @ emb.T)[np.triu_indices(len(paths), 1)]
    precision, at_threshold_recall = precision_recall_at(scores, labels, threshold)
    recall = at_threshold_recall if recall is None else recall
    return {"pair AP": average_precision(scores, labels), "recall at threshold": at_threshold_recall,
            "precision at threshold": precision,
            "false pairs at equal recall": false_positives_at_recall(scores, labels, recall),
            "equal recall": recall, "threshold": threshold, "positives": int(labels.sum()),
            "negatives": int((labels == 0).sum()), "scores": scores}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--originals", type=int, default=240)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="active model (default: the built-in default)")
    parser.add_argument("--review-offset", type=float, default=0.1,
                        help="the person reviews with the slider this far below the card's near threshold")
    parser.add_argument("--work", default=str(ROOT / "build/bench-feedback"))
    parser.add_argument("--out", default=str(ROOT / "bench-results/feedback.json"))
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"needs {DATA} (Caltech-101 with split.csv)")
        return 2
    work = Path(args.work)
    started = time.perf_counter()
    truth = build_library(work / "photos", args.originals, args.seed)
    shutil.rmtree(work / "lib", ignore_errors=True)
    report: dict = {"originals": args.originals, "files": len(truth), "steps": args.steps, "seed": args.seed}
    with Library(work / "lib", model=args.model, device="cpu") as lib:
        lib.scan([work / "photos"])
        base = lib.bundle
        report["model"] = base.model_id
        review_at = base.threshold("copy", "near") - args.review_offset
        report["review_threshold"] = round(review_at, 4)
        report["decisions"] = replay_decisions(lib, truth, review_at)
        print("decisions:", report["decisions"], flush=True)
        personal = calibrate_personal(lib, 0.95).levels["near"]
        cfg = FeedbackConfig(steps=args.steps, seed=args.seed, save_rejected=True)
        result = train_from_feedback(lib, cfg)
        report["training"] = {k: v for k, v in result.to_dict().items() if k != "history"}
        files = [f.path for f in lib.catalog.files()]
    paths, labels = half_b_pairs(files, truth)
    before = pair_metrics(Embedder(base, device="cpu"), paths, labels, base.threshold("copy", "near"))
    candidate = load_bundle(result.bundle)
    after = pair_metrics(Embedder(candidate, device="cpu"), paths, labels, candidate.threshold("copy", "near"),
                         recall=before["recall at threshold"])
    rows = [("active model, card threshold", before), ("after learning from decisions", after)]
    if personal.threshold is not None:  # the active model with the threshold learned from decisions
        t = personal.threshold
        precision, recall = precision_recall_at(before["scores"], labels, t)
        rows.append((f"active model, personal threshold {t:.3f}",
                     {"precision at threshold": precision, "recall at threshold": recall, "threshold": t}))
    report["half_b"] = [{"model": name, **{k: v for k, v in m.items() if k != "scores"}} for name, m in rows]
    report["personal_near"] = {k: getattr(personal, k) for k in ("threshold", "precision", "recall",
                                                                 "positives", "negatives", "card_threshold")}
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["markdown"] = render(report)  # benchmarks/report.py puts it into docs/benchmarks.md
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1, default=float) + "\n")
    print(report["markdown"])
    return 0


def render(report: dict) -> str:
    d, t = report["decisions"], report["training"]
    lines = [f"### Learning from decisions (simulated person, {report['files']} photos, model {report['model']})", "",
             f"Decisions replayed on half A: {d['same-photo']} same photo, {d['not-duplicate']} not a duplicate "
             f"({d['groups']} groups reviewed at threshold {report['review_threshold']:.3f}). Training: {t['pairs'].get('train_pairs')} pairs, "
             f"{t['pairs'].get('held_pairs')} held out, {report['steps']} steps, {t['seconds']} s. "
             f"Verdict: {t['reason']}.", "",
             "| half B (never reviewed) | threshold | precision | recall | pair AP | false pairs at equal recall |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in report["half_b"]:
        cell = lambda k, f=".3f": format(row[k], f) if row.get(k) is not None else "–"  # noqa: E731
        lines.append(f"| {row['model']} | {cell('threshold')} | {cell('precision at threshold')} | "
                     f"{cell('recall at threshold')} | {cell('pair AP')} | {cell('false pairs at equal recall', 'd')} |")
    lines.append(f"\nHalf B pairs: {report['half_b'][0]['positives']} same photo, "
                 f"{report['half_b'][0]['negatives']:,} not; equal recall = the active model's recall at its "
                 f"card threshold ({report['half_b'][0]['equal recall']:.3f}).")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
