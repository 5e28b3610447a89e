"""Model benchmark: the shipped model against perceptual hashes and the pretrained backbone,
and the loss ablation at equal budget — all on Caltech-101 *test* classes.

    .venv/bin/python benchmarks/bench_model.py [--model lookalike-angular-v3]
        [--compare lookalike-angular-v1 ...] [--work build/model] [--copy-ablation-steps 0]
        [--skip-hashes] [--skip-real]

Rows (one table per question; everything printed as markdown and saved as JSON):
- near-duplicate retrieval: 1,000 transformed copies (``training.families``, seeded) query
  their 1,000 originals + 1,000 distractors; Recall@1, mAP, micro-AP overall and per family
  (photos the dataset lists as copies of a query's source, `duplicates_found.csv`, are left out
  of its ranking; "micro-AP raw" counts them as wrong answers);
- class-disjoint retrieval on all 3,950 test images: Recall@1/2/4/8, MAP@R, NMI (and for the
  model's semantic head once more as find-similar searches: with query expansion);
- real sets: Faces_easy crops → Faces originals (+ 1,000 test distractors), neardup_real;
- precision of the card's thresholds on test-class pairs;
- ablation: the semantic projection retrained on the same cached features with triplet,
  N-pair, angular (triplet form), N-pair + angular and α ∈ {36°, 45°, 55°}, dims 128/256/512
  (and optionally the copy branch with each loss for ``--copy-ablation-steps`` steps).

The CNN rows come from cached lower-trunk activations (``training.cached``: equal to the
engine's embeddings to ~1e-5, tested), taken at each quarter turn a head is averaged over
(``TestSet.turned``), as the engine reads photos; for such a model the pretrained backbone is
also shown averaged over the same turns, so the table says how much the averaging gives alone.
Hashes run through ``evaluate_embedder``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.decode import read_photo  # noqa: E402
from engine.embedding import Embedder  # noqa: E402
from engine.library import QUERY_EXPANSION  # noqa: E402
from engine.model_bundle import load_bundle  # noqa: E402
from training.baselines import HashEmbedder  # noqa: E402
from training.build import ModelRecipe, copy_views, semantic_features, training_folders  # noqa: E402
from training.cached import average_turns, embed_activations, pooled_features, view_activations  # noqa: E402
from training.cached_train import StageConfig, train_copy_branch, train_projection, whitening_init  # noqa: E402
from training.calibrate import sample_images  # noqa: E402
from training.evaluate import (EvalConfig, _near_duplicate_sets, class_retrieval_metrics,  # noqa: E402
                               copy_groups, evaluate_embedder, ignored_pairs, near_duplicate_metrics)
from training.families import FAMILIES, make_copy  # noqa: E402
from training.model import ModelConfig, build_model  # noqa: E402
from training.realsets import embed_head, evaluate_faces_pairs, evaluate_neardup_real  # noqa: E402

DATA = ROOT.parent / "shared/datasets"


class TestSet:
    """Lower-trunk activations of every test image and of the 1,000 transformed queries."""

    def __init__(self, net, config: EvalConfig, size: int, work: Path):
        picked = sample_images(config.dataset, "test", 10**9, config.seed)
        self.paths = [p for p, _ in picked]
        self.classes = np.array([c for _, c in picked])
        sources, distractors = _near_duplicate_sets(config.dataset, config)
        names = sorted(FAMILIES)
        self.families = [names[i % len(names)] for i in range(len(sources))]
        where = {p: i for i, p in enumerate(self.paths)}
        self.db_rows = np.array([where[p] for p in sources + distractors])
        # database photos the dataset lists as copies of a query's source: neither right nor wrong
        self.ignore = ignored_pairs(config.dataset, sources, sources + distractors)
        group = np.array(copy_groups(config.dataset, sources + distractors), dtype=object)
        self.same_copy_group = (group[:, None] == group[None, :]) & (group != None)[:, None]  # noqa: E711
        self._net, self._config, self._size, self._work, self._sources = net, config, size, work, sources
        self._turned: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.acts, self.queries = self.turned(0)

    def turned(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower activations of every test photo and of the queries, turned by ``k`` quarter
        turns as the engine turns them (cached in the work folder)."""
        if k in self._turned:
            return self._turned[k]
        config, size, net, sources = self._config, self._size, self._net, self._sources
        turn = f"-turn{k}" if k else ""
        name = f"test-{size}-{config.queries}-{config.distractors}-{config.seed}-fork{net.fork}{turn}.pt"
        target = self._work / name
        if target.exists():
            self._turned[k] = torch.load(target, weights_only=True)
            return self._turned[k]
        load = lambda i: read_photo(self.paths[i], config.image_size).image  # noqa: E731
        acts = view_activations(net, load, len(self.paths), 1, None, size, what="test photos", turn=k)[:, 0]
        copies = lambda i: make_copy(read_photo(sources[i], config.image_size).image,  # noqa: E731
                                     self.families[i], config.seed * 1_000_003 + i)
        queries = view_activations(net, copies, len(sources), 1, None, size, what="queries", turn=k)[:, 0]
        torch.save((acts, queries), target)
        self._turned[k] = (acts, queries)
        return self._turned[k]

    def embed(self, fn, part: str) -> np.ndarray:
        """``fn`` (activations → vectors) over ``part`` ("db", "queries" or "all" test photos),
        averaged over ``fn.turns`` quarter turns when it has them, as the engine does."""
        pick = {"db": lambda t: t[0][self.db_rows], "queries": lambda t: t[1], "all": lambda t: t[0]}[part]
        return average_turns(lambda k: fn(pick(self.turned(k))), getattr(fn, "turns", 1))

    def near(self, embed) -> dict:
        db, q = self.embed(embed, "db"), self.embed(embed, "queries")
        m = near_duplicate_metrics(q, np.arange(len(q)), self.families, db, np.arange(len(db)), ignore=self.ignore)
        # the number as measured before the dataset's own copies were left out, for comparison
        raw = near_duplicate_metrics(q, np.arange(len(q)), self.families, db, np.arange(len(db)))
        m["overall"]["micro-AP raw"] = raw["overall"]["micro-AP"]
        return m

    def classes_metrics(self, embed, expand: int = 0) -> dict:
        return class_retrieval_metrics(self.embed(embed, "all"), self.classes, expand=expand)


def with_turns(fn, turns: int):
    """``fn`` (activations → vectors) marked to be averaged over ``turns`` quarter turns."""
    def turned(acts):
        return fn(acts)
    turned.turns = turns
    return turned


def pretrained_embed(net, turns: int = 1):
    return with_turns(lambda acts: F.normalize(pooled_features(net, acts), dim=-1).numpy(), turns)


def head_embed(net, head: str):
    """``head`` as the engine computes it, quarter turns included."""
    return with_turns(lambda acts: embed_activations(net, acts, head), net.turns(head))


def threshold_precision(test: TestSet, net, card: dict) -> dict:
    """Pair precision and recall of the card's thresholds on test-class pairs."""
    out = {}
    t = card["thresholds"]["copy"]["near"]
    copy = head_embed(net, "copy")
    db, q = test.embed(copy, "db"), test.embed(copy, "queries")
    sims = q @ db.T
    pos = sims[np.arange(len(q)), np.arange(len(q))]
    sims[test.ignore[:, 0], test.ignore[:, 1]] = -np.inf  # the dataset's own copies: not false
    tp, fp = int((pos >= t).sum()), int((sims >= t).sum() - (pos >= t).sum())
    dd = db @ db.T
    upper = np.triu_indices(len(db), 1)
    fp_db = int(((dd[upper] >= t) & ~test.same_copy_group[upper]).sum())
    # Two views: copies against the database (as calibrated), and every pair a library of
    # these 3,000 photos would show — there, database pairs above the threshold count as
    # false, except pairs the dataset lists as copies of each other (duplicates_found.csv).
    families = np.asarray(test.families).astype(str)
    out["near"] = {"threshold": t, "precision": tp / max(1, tp + fp), "recall": tp / len(q), "tp": tp,
                   "fp": fp, "precision_all_pairs": tp / max(1, tp + fp + fp_db), "fp_database_pairs": fp_db,
                   # which edits the threshold lets through, e.g. how many mild resize + JPEG copies
                   "recall_per_family": {f: round(float((pos[families == f] >= t).mean()), 3)
                                         for f in sorted(set(families.tolist()))}}
    s = card["thresholds"]["semantic"]["similar"]
    emb = test.embed(head_embed(net, "semantic"), "all")
    upper = np.triu_indices(len(emb), 1)
    sims = (emb @ emb.T)[upper]
    same = (test.classes[:, None] == test.classes[None, :])[upper]
    hit = sims >= s
    out["similar"] = {"threshold": s, "precision": float((hit & same).sum() / max(1, hit.sum())),
                      "recall": float((hit & same).sum() / same.sum())}
    return out


def ablation(net, recipe: ModelRecipe, test: TestSet, work: Path, dataset: Path) -> list[dict]:
    train, _ = training_folders(dataset, recipe)
    feats = semantic_features(net, train, recipe, work, lambda *a: True)
    test_feats = pooled_features(net, test.acts)
    base = StageConfig(**{"steps": 1000, "batch": 32, "lr": 1e-3, **recipe.semantic_stage})
    runs = [("triplet", 45, 256), ("npair", 45, 256), ("angular", 45, 256), ("npair+angular", 45, 256),
            ("angular", 36, 256), ("angular", 55, 256), ("npair+angular", 36, 256),
            ("npair+angular", 55, 256), ("npair+angular", 45, 128), ("npair+angular", 45, 512)]
    rows = []
    for loss, alpha, dim in runs:
        torch.manual_seed(0)
        head = torch.nn.Linear(feats.shape[-1], dim)
        if recipe.semantic_init == "pca-sqrt-whiten":  # the shipped recipe's start
            whitening_init(head, feats)
        else:
            torch.nn.init.orthogonal_(head.weight)
            torch.nn.init.zeros_(head.bias)
        project = lambda x: F.normalize(head(x), dim=-1).detach().numpy()  # noqa: E731
        if not rows:  # where every run starts: the initial projection, untrained
            m = class_retrieval_metrics(project(test_feats), test.classes)
            rows.append({"head": "semantic", "loss": "(start, untrained)", "alpha": "", "dim": dim,
                         **_class_row(m), "train_s": 0.0})
        start = time.perf_counter()
        # Equal budget, no selection: every loss is measured after the same number of steps.
        train_projection(head, feats, torch.tensor(train.labels), replace(base, loss=loss, alpha_deg=alpha))
        m = class_retrieval_metrics(project(test_feats), test.classes)
        rows.append({"head": "semantic", "loss": loss, "alpha": alpha, "dim": dim, **_class_row(m),
                     "train_s": round(time.perf_counter() - start, 1)})
        print(rows[-1], flush=True)
    return rows


def copy_ablation(recipe: ModelRecipe, test: TestSet, work: Path, dataset: Path, steps: int) -> list[dict]:
    train, _ = training_folders(dataset, recipe)
    rows = []
    for loss, alpha in [("triplet", 45), ("npair", 45), ("angular", 45), ("npair+angular", 45)]:
        net = build_model(ModelConfig(heads=dict(recipe.heads), branches=dict(recipe.branches),
                                      trunk_policy="frozen", learn_gem_p=True)).eval()
        views = copy_views(net, train, recipe, work, lambda *a: True)
        cfg = StageConfig(**{**recipe.copy_stage, "steps": steps, "eval_every": max(1, steps // 4),
                             "loss": loss, "alpha_deg": alpha})
        start = time.perf_counter()
        train_copy_branch(net, views, cfg)  # equal budget: the state after the last step
        m = test.near(head_embed(net, "copy"))
        rows.append({"head": "copy", "loss": loss, "alpha": alpha, "steps": steps, **_near_row(m),
                     "train_s": round(time.perf_counter() - start, 1)})
        print(rows[-1], flush=True)
    return rows


def _class_row(m: dict) -> dict:
    return {k: round(m[k], 4) for k in ("recall@1", "recall@2", "recall@4", "recall@8", "map@r", "nmi")}


def _near_row(m: dict) -> dict:
    row = {"R@1": round(m["overall"]["recall@1"], 4), "mAP": round(m["overall"]["mAP"], 4),
           "micro-AP": round(m["overall"]["micro-AP"], 4)}
    if "micro-AP raw" in m["overall"]:  # dataset's own copies counted as wrong answers
        row["micro-AP raw"] = round(m["overall"]["micro-AP raw"], 4)
    for fam, r in sorted(m["families"].items()):
        row[f"{fam} R@1"] = round(r["recall@1"], 4)
        row[f"{fam} µAP"] = round(r["micro-AP"], 4)
    return row


def markdown(rows: list[dict], title: str) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    lines = [f"### {title}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(f"{r.get(k, ''):.4f}" if isinstance(r.get(k), float) else str(r.get(k, ""))
                                for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="bundle name or folder (default: the default)")
    parser.add_argument("--recipe", default=str(ROOT / "resources/recipes/default-model.json"))
    parser.add_argument("--dataset", default=str(DATA / "caltech101"))
    parser.add_argument("--work", default=str(ROOT / "build/model"))
    parser.add_argument("--out", default=str(ROOT / "bench-results/model.json"))
    parser.add_argument("--compare", nargs="*", default=[], metavar="BUNDLE",
                        help="more bundles measured beside it (near, classes, real sets, thresholds)")
    parser.add_argument("--copy-ablation-steps", type=int, default=0)
    parser.add_argument("--skip-hashes", action="store_true")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-ablation", action="store_true")
    parser.add_argument("--semantic-init", choices=("pca-sqrt-whiten", "orthogonal"),
                        help="override the recipe's start for the semantic ablation")
    args = parser.parse_args()
    dataset, work = Path(args.dataset), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    recipe = ModelRecipe.from_file(args.recipe)
    if args.semantic_init:
        recipe.semantic_init = args.semantic_init
    bundle = load_bundle(args.model)
    net = bundle.build_network().float().eval()
    config = EvalConfig(dataset=dataset, split="test", queries=1000, distractors=1000)
    test = TestSet(net, config, bundle.input_size, work)
    report: dict = {"model": bundle.model_id, "near": [], "classes": [], "real": []}
    named = [("pretrained Lite0+GeM 1280-d", pretrained_embed(net), pretrained_embed(net)),
             (f"{bundle.model_id} (copy / semantic head)", head_embed(net, "copy"), head_embed(net, "semantic"))]
    if net.turns("copy") > 1:  # how much of the head's score the averaging over turns gives alone
        turns = net.turns("copy")
        name = f"pretrained Lite0+GeM 1280-d, averaged over {turns} quarter turns"
        report["near"].append({"model": name, **_near_row(test.near(pretrained_embed(net, turns)))})
        print(report["near"][-1], flush=True)
    others = [load_bundle(m) for m in args.compare]
    report["compare_thresholds"] = {}
    for other in others:  # each on activations at its own fork (the same file when it matches)
        other_net = other.build_network().float().eval()
        other_test = TestSet(other_net, config, other.input_size, work)
        named.append((f"{other.model_id} (copy / semantic head)", head_embed(other_net, "copy"),
                      head_embed(other_net, "semantic"), other_test))
        report["compare_thresholds"][other.model_id] = threshold_precision(other_test, other_net, other.card)
    for name, copy_fn, class_fn, *on in named:
        where = on[0] if on else test
        report["near"].append({"model": name, **_near_row(where.near(copy_fn))})
        report["classes"].append({"model": name, **_class_row(where.classes_metrics(class_fn))})
        print(report["near"][-1], report["classes"][-1], flush=True)
    # what find-similar ranks with: the semantic head searched with query expansion
    expand = QUERY_EXPANSION.get("semantic", 0)
    if expand:
        name = f"{bundle.model_id} semantic head, find-similar's query expansion ({expand} neighbours)"
        report["classes"].append({"model": name, **_class_row(test.classes_metrics(head_embed(net, "semantic"), expand))})
        print(report["classes"][-1], flush=True)
    if not args.skip_hashes:
        for kind in ("phash", "dhash"):
            r = evaluate_embedder(HashEmbedder(kind), config)
            report["near"].append({"model": f"imagehash {kind} 64-bit", **_near_row(r["near_duplicate"])})
            report["classes"].append({"model": f"imagehash {kind} 64-bit", **_class_row(r["class_retrieval"])})
            print(report["near"][-1], flush=True)
    report["thresholds"] = threshold_precision(test, net, bundle.card)
    print(report["thresholds"], flush=True)
    if not args.skip_real:
        report["real"] = real_sets(bundle, dataset, test, others)
    if not args.skip_ablation:
        report["ablation"] = ablation(net, recipe, test, work, dataset)
    if args.copy_ablation_steps:
        report["copy_ablation"] = copy_ablation(recipe, test, work, dataset, args.copy_ablation_steps)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(render(report))
    return 0


def real_sets(bundle, dataset: Path, test: TestSet, others=()) -> list[dict]:
    distractors = [test.paths[i] for i in test.db_rows[1000:]]
    pretrained = load_bundle("lite0-imagenet-gem")
    rows = []
    for name, embedder in [("pretrained Lite0+GeM 1280-d", Embedder(pretrained, device="cpu")),
                           (bundle.model_id, Embedder(bundle, device="cpu")),
                           *[(o.model_id, Embedder(o, device="cpu")) for o in others],
                           ("imagehash phash 64-bit", HashEmbedder("phash"))]:
        embed = embed_head(embedder, "copy")
        faces = evaluate_faces_pairs(embed, dataset, distractors)["overall"]
        real = evaluate_neardup_real(embed, DATA / "neardup_real")
        rows.append({"model": name, "faces R@1": round(faces["recall@1"], 4), "faces mAP": round(faces["mAP"], 4),
                     "faces µAP": round(faces["micro-AP"], 4), "real R@1": round(real["recall@1"], 4),
                     "real mAP": round(real["mAP"], 4), "real µAP": round(real["micro-AP"], 4)})
        print(rows[-1], flush=True)
    return rows


def render(report: dict) -> str:
    parts = [f"model: {report['model']}", markdown(report["near"], "Near-duplicate retrieval (test classes)"),
             markdown(report["classes"], "Class-disjoint retrieval (test classes)"),
             markdown(report.get("real", []), "Real near-duplicate sets"),
             markdown(report.get("ablation", []), "Ablation: semantic projection, equal budget"),
             markdown(report.get("copy_ablation", []), "Ablation: copy branch, equal budget"),
             f"thresholds on test pairs: {json.dumps(report.get('thresholds'))}",
             *[f"{name}: thresholds on test pairs: {json.dumps(t)}"
               for name, t in (report.get("compare_thresholds") or {}).items()]]
    return "\n".join(p for p in parts if p)


if __name__ == "__main__":
    sys.exit(main())
