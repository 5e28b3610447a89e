"""Improve the active model from the person's own review decisions (``lookalike train
--from-feedback``, the GUI's "Improve from my decisions").

Data: the labelled pairs of ``engine.feedback`` (same photo / not a duplicate / similar but not
a near-duplicate) over the 320-px snapshots kept with each review, mixed with the copy-detection
recipe on photos of the library itself, so general copy detection is not forgotten.

Model: the active bundle; the semantic head is untouched. By default (``mode="projection"``)
only the copy head's linear projection trains, over frozen features; a head that had none
gets a square one starting as the identity, so training starts from the same embedding. With
``mode="branch"`` the copy head also gets (or keeps) its own branch, a copy of the trunk's
last stage, and that trains too. Activations of the frozen lower trunk are cached once per
augmented view (``training.cached``), as in ``make model``, which keeps a CPU run to minutes.

Loss: N-pair + angular (Wang et al. 2017) over one batch holding (a) library photos × 2
augmented views (each photo its own class), (b) the person's "same photo" pairs, one view of
each side as a class, and (c) both photos of each "not a duplicate" pair as two classes of the
same batch, so they are pushed apart as hard negatives.

Acceptance: decisions are split by review into training and held-out ones. The new model is
activated only if on the held-out decisions it is not worse (pair AP, false pairs at the
active model's recall; each held-out photo is also paired with the library's unreviewed
photos as negatives), on the built-in near-duplicate benchmark (library photos and seeded
copies of them through the evaluation families) its micro-AP is at most ``max_drop`` lower,
and it is better on the decisions or, on a tie there, on the benchmark. The decisions are
pairs the active model proposed, so it usually ranks them almost perfectly: ties are the
common case (see ``_verdict``).
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.decode import read_photo
from engine.errors import Cancelled, DecodeError, LookalikeError
from engine.model_bundle import save_bundle
from engine.network import EmbeddingNet
from engine.progress import ProgressCallback, null_progress
from training.augment import AugmentConfig, CopyAugment
from training.cached import embed_turned, pooled_features, view_activations
from training.cached_train import StageConfig, freeze_batchnorm, branch_groups, make_loss, optimise
from training.evaluate import near_duplicate_metrics
from training.families import FAMILIES, make_copy

log = logging.getLogger(__name__)


@dataclass
class FeedbackConfig:
    steps: int = 200
    batch: int = 48              # library photos per batch (2 views each)
    pair_batch: int = 16         # the person's pairs per batch
    views: int = 4               # cached augmented views per photo
    train_size: int | None = None  # default: the model's input size
    lr: float = 2e-4
    trunk_lr_mult: float = 0.3
    library_photos: int = 300    # copy-detection photos drawn from the library
    benchmark_photos: int = 100  # built-in benchmark: library photos × one family copy each
    holdout: float = 0.3         # share of reviews held out for the decision
    max_drop: float = 0.01       # allowed micro-AP drop on the built-in benchmark
    mode: str = "projection"     # "projection": a linear copy head over frozen features
                                 # (identity start when the head had none); "branch": also
                                 # the copy branch (its own last trunk stage)
    branch_stages: int = 1
    min_pairs: int = 4
    seed: int = 0
    name: str | None = None      # bundle name (default: <active model>-personal-<n>)
    save_rejected: bool = False  # also save a candidate that is not activated (benchmarks)


@dataclass
class FeedbackResult:
    name: str
    bundle: Path | None          # saved when activated (or asked to keep a rejected one)
    activated: bool
    reason: str
    before: dict
    after: dict
    pairs: dict
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "bundle": str(self.bundle) if self.bundle else None}


@dataclass
class _Split:
    hashes: list[str]                       # every reviewed content with pixels, row order
    train: list[tuple[int, int, int]]       # (row a, row b, label)
    held: list[tuple[int, int, int]]


def split_decisions(pairs, image_of, holdout: float, seed: int) -> _Split:
    """Pairs with pixels, split by review so one decision never lands on both sides."""
    usable = [p for p in pairs if p.hash_a in image_of and p.hash_b in image_of]
    reviews = sorted({p.review_id for p in usable})
    rng = random.Random(seed)
    rng.shuffle(reviews)
    n_held = max(1, round(len(reviews) * holdout)) if len(reviews) > 1 else 0
    held_ids = set(reviews[:n_held])
    hashes = sorted({h for p in usable for h in (p.hash_a, p.hash_b)})
    row = {h: i for i, h in enumerate(hashes)}
    out = _Split(hashes, [], [])
    for p in usable:
        (out.held if p.review_id in held_ids else out.train).append((row[p.hash_a], row[p.hash_b], p.label))
    return out


def pair_scores(emb: np.ndarray, pairs: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    a, b, y = (np.array(c) for c in zip(*pairs)) if pairs else (np.zeros(0, int),) * 3
    return np.einsum("nd,nd->n", emb[a], emb[b]) if len(a) else np.zeros(0), y.astype(int)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of the positives when pairs are ranked by score (ties: negatives first)."""
    if labels.sum() == 0:
        return float("nan")
    order = np.lexsort((labels, -scores))
    hits = labels[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def false_positives_at_recall(scores: np.ndarray, labels: np.ndarray, recall: float) -> int:
    """Negatives scoring at or above the cut that keeps ``recall`` of the positives."""
    pos = np.sort(scores[labels == 1])[::-1]
    if not len(pos):
        return 0
    cut = pos[max(0, int(np.ceil(recall * len(pos))) - 1)]
    return int((scores[labels == 0] >= cut).sum())


def train_from_feedback(library, config: FeedbackConfig = FeedbackConfig(),
                        progress: ProgressCallback = null_progress) -> FeedbackResult:
    """Fine-tune the active model on ``library``'s decisions; activate it only if it is better."""
    started = time.perf_counter()
    bundle = library.bundle
    pairs = library.feedback.pairs("copy")
    files = library.catalog.files()
    images = _reviewed_images(library, files, {h for p in pairs for h in (p.hash_a, p.hash_b)})
    split = split_decisions(pairs, images, config.holdout, config.seed)
    counts = _counts(split)
    if len(split.train) < config.min_pairs or not split.held:
        raise LookalikeError(
            f"not enough decisions to learn from: {len(split.train)} training and {len(split.held)} held-out "
            f"pairs with photos (need at least {config.min_pairs} and 1); review more groups first")
    if config.mode not in ("projection", "branch"):
        raise LookalikeError(f"unknown feedback training mode '{config.mode}'")
    net = _with_projection(bundle) if config.mode == "projection" else _trainable(bundle, config.branch_stages)
    reviewed = [images[h] for h in split.hashes]
    library_imgs, bench = _library_images(files, set(split.hashes), config)
    size = bundle.input_size
    train_size = config.train_size or size
    augment = CopyAugment(AugmentConfig(size=train_size, rot90_p=0.5, min_crop_area=0.3,
                                        overlay_p=0.3, border_p=0.25))
    views = view_activations(net, (reviewed + library_imgs).__getitem__, len(reviewed) + len(library_imgs),
                             config.views, augment.view, train_size, config.seed, progress,
                             "training views")
    held_acts = _turned_activations(net, reviewed, size)
    bench_acts = _benchmark_activations(net, bench, size, config.seed)
    before = _measure(net, held_acts, split.held, bench_acts, bundle)
    history = _train(net, views, len(reviewed), split.train, config, progress)
    if history[-1]["step"] < config.steps:  # the progress callback asked to stop
        raise Cancelled("learning from your decisions was stopped; the active model is unchanged")
    after = _measure(net, held_acts, split.held, bench_acts, bundle, before["recall_at_threshold"])
    activated, reason = _verdict(before, after, config.max_drop)
    name = config.name or _next_name(library, bundle.model_id)
    result = FeedbackResult(name, None, activated, reason, before, after, counts, history)
    if activated or config.save_rejected:
        result.bundle = _save(library, net, bundle, name, result, bench_acts)
    if activated:
        library.set_active_model(name)
    result.seconds = round(time.perf_counter() - started, 1)
    log.info("feedback training: %s", reason)
    return result


def _counts(split: _Split) -> dict:
    pos = lambda rows: sum(1 for *_, y in rows if y == 1)  # noqa: E731
    return {"train_pairs": len(split.train), "train_positive": pos(split.train),
            "held_pairs": len(split.held), "held_positive": pos(split.held), "photos": len(split.hashes)}


def _reviewed_images(library, files: list, hashes: set[str]) -> dict:
    """content hash → PIL image: its snapshot, else a catalogued file with that content."""
    paths = {f.content_hash: f.path for f in files if f.content_hash in hashes}
    out = {}
    for digest in sorted(hashes):
        for path in (library.feedback.snapshot_path(digest), paths.get(digest)):
            if path is None or not Path(path).exists():
                continue
            try:
                out[digest] = read_photo(path, 320).image
                break
            except DecodeError as exc:
                log.warning("decision photo skipped: %s", exc)
    return out


def _library_images(files: list, exclude: set[str], config: FeedbackConfig) -> tuple[list, list]:
    """Photos of the library for the copy-detection part and, apart from them where the
    library is large enough, for the built-in benchmark."""
    seen, paths = set(), []
    for f in files:
        if f.content_hash not in exclude and f.content_hash not in seen:
            seen.add(f.content_hash)
            paths.append(f.path)
    random.Random(config.seed).shuffle(paths)
    images = []
    for path in paths[:config.library_photos + config.benchmark_photos]:
        try:
            images.append(read_photo(path, 320).image)
        except DecodeError as exc:
            log.info("library photo skipped: %s", exc)
    if len(images) < 4:
        raise LookalikeError("the library needs at least 4 readable photos besides the reviewed ones")
    bench = images[config.library_photos:] or images[-config.benchmark_photos:]
    return images[:config.library_photos], bench


def _benchmark_activations(net: EmbeddingNet, originals: list, size: int, seed: int) -> dict:
    names = sorted(FAMILIES)
    families = [names[i % len(names)] for i in range(len(originals))]
    copies = [make_copy(img, fam, seed * 7919 + i) for i, (img, fam) in enumerate(zip(originals, families))]
    both = originals + copies
    acts = _turned_activations(net, both, size)
    return {"originals": {k: a[:len(originals)] for k, a in acts.items()},
            "copies": {k: a[len(originals):] for k, a in acts.items()}, "families": families}


def _turned_activations(net: EmbeddingNet, images: list, size: int) -> dict[int, torch.Tensor]:
    """Lower activations of ``images`` at each quarter turn the copy head is averaged over, so
    that ``_copy_vectors`` measures the vectors the engine stores (a model averaged over turns
    is judged and calibrated averaged, though it trains on single views)."""
    return {k: view_activations(net, images.__getitem__, len(images), 1, None, size, turn=k)[:, 0]
            for k in range(0, 4, 4 // net.turns("copy"))}


def _copy_vectors(net: EmbeddingNet, acts: dict[int, torch.Tensor]) -> np.ndarray:
    return embed_turned(net, acts.__getitem__, "copy")


def _measure(net, held_acts, held, bench, bundle, recall: float | None = None) -> dict:
    """The held-out decisions, each photo in them also paired with every benchmark original
    (photos of the library nobody reviewed, taken as not duplicates of them): the person's
    own pairs alone are ones the active model proposed, so it often ranks them perfectly and
    a better model could not show it; against the library's other photos it can. Then the
    built-in benchmark."""
    emb = _copy_vectors(net, held_acts)
    scores, labels = pair_scores(emb, held)
    own_ap = average_precision(scores, labels)
    photos = sorted({i for a, b, _ in held for i in (a, b)})
    others = _copy_vectors(net, bench["originals"])
    scores = np.concatenate([scores, (emb[photos] @ others.T).ravel()])
    labels = np.concatenate([labels, np.zeros(len(photos) * len(others), int)])
    threshold = bundle.threshold("copy", "near")
    if recall is None:  # the active model: its recall at its own threshold
        recall = float((scores[labels == 1] >= threshold).mean()) if (labels == 1).any() else 1.0
    pos, neg, m = _benchmark_pairs(net, bench)
    hits = (pos >= threshold).sum()
    return {"heldout_ap": average_precision(scores, labels), "heldout_decisions_only_ap": own_ap,
            "recall_at_threshold": recall,
            "heldout_false_positives": false_positives_at_recall(scores, labels, recall),
            "heldout_negatives": int((labels == 0).sum()),
            "benchmark_micro_ap": m["overall"]["micro-AP"], "benchmark_recall@1": m["overall"]["recall@1"],
            "benchmark_precision_at_threshold": float(hits / max(1, hits + (neg >= threshold).sum()))}


def _benchmark_pairs(net: EmbeddingNet, bench: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """Copy→original scores of the built-in benchmark: positives, negatives, metrics."""
    db = _copy_vectors(net, bench["originals"])
    queries = _copy_vectors(net, bench["copies"])
    sims = queries @ db.T
    pos, neg = np.diag(sims).copy(), sims[~np.eye(len(db), dtype=bool)]
    m = near_duplicate_metrics(queries, np.arange(len(db)), bench["families"], db, np.arange(len(db)))
    return pos, neg, m


def _verdict(before: dict, after: dict, max_drop: float) -> tuple[bool, str]:
    """Activated when not worse on the held-out decisions (pair AP and false pairs at equal
    recall), at most ``max_drop`` worse on the built-in benchmark, and better: on the held-out
    decisions, or — on a tie there — on the benchmark. Ties are the usual case: the decisions
    are pairs the active model itself proposed, so it already ranks them almost perfectly (in
    ``bench_feedback.py`` its held-out AP was 0.994 and 1.000), and the copies it missed, which
    a better model would find, never reach a decision."""
    ap0, ap1 = before["heldout_ap"], after["heldout_ap"]
    fp0, fp1 = before["heldout_false_positives"], after["heldout_false_positives"]
    b0, b1 = before["benchmark_micro_ap"], after["benchmark_micro_ap"]
    numbers = (f"held-out decisions AP {ap0:.3f} → {ap1:.3f}, false positives at equal recall "
               f"{fp0} → {fp1}; built-in benchmark micro-AP {b0:.3f} → {b1:.3f}")
    if ap1 < ap0 or fp1 > fp0:
        return False, f"not activated: worse on your held-out decisions ({numbers})"
    if b1 < b0 - max_drop:
        return False, f"not activated: worse on the built-in benchmark by more than {max_drop:.0%} ({numbers})"
    if not (ap1 > ap0 or fp1 < fp0 or b1 > b0):
        return False, f"not activated: no better on your held-out decisions or the benchmark ({numbers})"
    return True, f"activated: {numbers}"


def _trainable(bundle, stages: int) -> EmbeddingNet:
    """The active network, with a copy branch of its own if it has none yet."""
    net = bundle.build_network().float()
    if "copy" in net.branches:
        return net.eval()
    config = bundle.network_config
    config.branches = {**config.branches, "copy": stages}
    forked = EmbeddingNet(config)
    missing, unexpected = forked.load_state_dict(net.state_dict(), strict=False)
    if unexpected or any(not k.startswith("branches.") for k in missing):
        raise LookalikeError(f"cannot give {bundle.model_id} a copy branch ({missing[:3]}, {unexpected[:3]})")
    forked.reset_branches()  # the branch starts as the trunk's top: the same embedding
    return forked.eval()


def _with_projection(bundle) -> EmbeddingNet:
    """The active network; a copy head without a projection gets a square one that starts as
    the identity (the same embedding), so only a linear map of frozen features is learned."""
    net = bundle.build_network().float()
    if net.config.heads.get("copy"):
        return net.eval()
    config = bundle.network_config
    config.heads = {**config.heads, "copy": net.feature_dim}
    projected = EmbeddingNet(config)
    missing, unexpected = projected.load_state_dict(net.state_dict(), strict=False)
    if unexpected or sorted(missing) != ["heads.copy.bias", "heads.copy.weight"]:
        raise LookalikeError(f"cannot give {bundle.model_id} a copy projection ({missing[:3]}, {unexpected[:3]})")
    with torch.no_grad():
        projected.heads["copy"].weight.copy_(torch.eye(net.feature_dim))
        projected.heads["copy"].bias.zero_()
    return projected.eval()


def _train(net: EmbeddingNet, views: torch.Tensor, n_reviewed: int, pairs: list, config: FeedbackConfig,
           progress: ProgressCallback) -> list[dict]:
    cfg = StageConfig(steps=config.steps, batch=config.batch, lr=config.lr, trunk_lr_mult=config.trunk_lr_mult,
                      warmup=min(20, config.steps // 5), eval_every=max(1, config.steps), seed=config.seed)
    loss_fn = make_loss(cfg)
    n_lib, k = views.shape[0] - n_reviewed, views.shape[1]
    positives = [(a, b) for a, b, y in pairs if y == 1]
    negatives = [(a, b) for a, b, y in pairs if y == 0]
    head = net.heads["copy"]
    if config.mode == "branch":
        module, groups = branch_groups(net, cfg)
        branch = net.branches["copy"]
        features = lambda rows, cols: branch(  # noqa: E731
            views[rows, cols].float().contiguous(memory_format=torch.channels_last))
    else:  # the features below the projection never change: computed once
        feats = pooled_features(net, views.flatten(0, 1), "copy").view(*views.shape[:2], -1)
        module, groups = head, [{"params": list(head.parameters()), "lr": cfg.lr}]
        features = lambda rows, cols: feats[rows, cols]  # noqa: E731

    # A fused copy head (engine.network: fuse) is compared through its fused vector, so the
    # loss sees that; the shared part is frozen and computed once per view.
    shared = (pooled_features(net, views.flatten(0, 1)).view(*views.shape[:2], -1)
              if "copy" in net.fusions else None)

    def step_loss(gen: torch.Generator) -> torch.Tensor:
        module.train()
        freeze_batchnorm(module)
        rows, cols = _batch(gen, n_reviewed, n_lib, k, positives, negatives, config)
        labels = torch.arange(len(rows) // 2).repeat_interleave(2)
        own = head(features(rows, cols))
        return loss_fn(own if shared is None else net.fused("copy", own, shared[rows, cols]), labels)

    return optimise(module, groups, step_loss, cfg, None, progress, "learning from your decisions")


def _batch(gen, n_reviewed, n_lib, k, positives, negatives, config) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and view indices, two per class: library photos (two views), "same photo" pairs
    (a view of each side) and both photos of "not a duplicate" pairs (two views each)."""
    pick = lambda items, n: [items[i] for i in torch.randperm(len(items), generator=gen)[:n].tolist()]  # noqa: E731
    rand_view = lambda: int(torch.randint(k, (1,), generator=gen))  # noqa: E731
    rows, cols = [], []

    def two_views(row: int) -> None:
        first = rand_view()
        rows.extend([row, row])
        cols.extend([first, (first + 1 + int(torch.randint(k - 1, (1,), generator=gen))) % k])

    n_pairs = min(config.pair_batch, len(positives) + len(negatives))
    n_pos = min(len(positives), max(n_pairs // 2, n_pairs - len(negatives)))
    for a, b in pick(positives, n_pos):
        rows.extend([a, b])
        cols.extend([rand_view(), rand_view()])
    used = set()
    for a, b in pick(negatives, n_pairs - n_pos):
        for row in (a, b):
            if row not in used:  # a photo in two negative pairs is still one class
                used.add(row)
                two_views(row)
    for row in torch.randperm(n_lib, generator=gen)[:config.batch].tolist():
        two_views(n_reviewed + row)
    return torch.tensor(rows), torch.tensor(cols)


def _next_name(library, base: str) -> str:
    stem = base.split("-personal-")[0]
    n = 1
    while (library.folder / "models" / f"{stem}-personal-{n}").exists():
        n += 1
    return f"{stem}-personal-{n}"


def _save(library, net: EmbeddingNet, bundle, name: str, result: FeedbackResult, bench: dict) -> Path:
    """The new bundle in the library's models folder. Its near threshold is the one at which
    the new model's built-in benchmark pairs reach the precision the active model had there
    at its own threshold (the copy embedding moved, so the old number would not fit)."""
    from training.calibrate import threshold_at_precision

    pos, neg, _ = _benchmark_pairs(net, bench)
    target = result.before["benchmark_precision_at_threshold"]
    near, _ = threshold_at_precision(pos, neg, target)
    card = dict(bundle.card)
    thresholds = {h: dict(v) for h, v in bundle.card.get("thresholds", {}).items()}
    thresholds.setdefault("copy", {})["near"] = round(float(near), 4)
    card.update(name=name, version="1", architecture=net.config.to_dict(), thresholds=thresholds,
                description=f"{bundle.model_id} fine-tuned on the person's own review decisions "
                            f"({result.pairs['train_pairs']} pairs) with N-pair + angular loss",
                feedback={**result.to_dict(), "near_threshold_precision": target})
    return save_bundle(library.folder / "models" / name, card, net.state_dict())
