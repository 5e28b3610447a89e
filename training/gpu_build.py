"""The model recipe on a GPU: both heads trained in minutes, the whole data path on the device.

``training/build.py`` (``make model``) trains on the CPU over cached activations, so only the
copy branch's last stage and the projections can learn, from 8 fixed views per photo. With a
GPU each step makes fresh views instead:

1. ``scripts/make_gpu_pack.py`` (here) packs the recipe's photos — Caltech-101 train classes
   minus ``Faces``, the same held-out classes — as 192² JPEGs (~38 MB). They are decoded once
   into one uint8 tensor on the device.
2. The network starts from ``lookalike-angular-v1`` (ImageNet Lite0 trunk + its semantic
   projection); the ``copy`` head gets a branch of the last ``copy_stages`` stages, started
   from ImageNet, and a projection started as PCA (root-whitened) of its pooled features.
3. ``copy``: every step draws ``copy_batch`` photos, makes two views of each on the device
   (``GPUAugment``: crop, flips, quarter turns, shear, borders, colour, grayscale, blur, boxes;
   plus a JPEG round trip through nvJPEG at random quality for a share of them) and trains
   the branch and projection with N-pair + angular. bf16 autocast, channels_last; the frozen
   lower trunk runs without gradients.
4. ``semantic``: the shared trunk's top ``semantic_stages`` stages (used by the semantic
   head alone once the copy branch forks below them) and the projection fine-tune on
   supervised N-pair + angular batches (all training classes × 2 photos, several per step).
5. Each stage runs for a time budget (cosine learning rate over the time, not the steps) and
   keeps its best state on the held-out classes: copy micro-AP of device-made copies and of
   copies made with the benchmark's families (mild edits included) against the originals plus
   training-photo distractors, semantic MAP@R. Step 0 (the start) is a
   candidate too, so a stage never ends worse on that check than it began.

``run`` writes ``gpu-model.safetensors`` (the whole network, fp16) and ``gpu-model.json``
(recipe, histories, throughput, machine); ``scripts/finish_gpu_model.py`` turns them into a
calibrated bundle on the development machine. The same code runs on the CPU at toy sizes
(tests/training/test_gpu_build.py); nvJPEG is only asked for on CUDA.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import math
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

from engine.model_bundle import load_bundle
from engine.network import EmbeddingNet, NetworkConfig
from training.augment import AugmentConfig, GPUAugment
from training.cached_train import freeze_batchnorm, whitening_init
from training.evaluate import class_retrieval_metrics, near_duplicate_metrics
from training.families import FAMILIES, make_copy
from training.losses import build_loss, koleo_loss

log = logging.getLogger(__name__)

MEAN, STD = 127.0, 128.0


@dataclass
class GPURecipe:
    start: str = "lookalike-angular-v1"     # bundle giving the trunk and the semantic projection
    copy_stages: int = 3                    # last trunk stages the copy head owns
    copy_init: str = "imagenet"             # or "start": the start's copy branch and head, extended
                                            # downwards with ImageNet stages (a warm start)
    semantic_stages: int = 2                # shared top stages the semantic stage fine-tunes (0: none)
    train_size: int = 160                   # copy views
    semantic_size: int = 192
    eval_size: int = 224                    # the engine's input size
    copy_batch: int = 512                   # photos per step, two views each
    copy_lr: float = 1e-3                   # projection; the branch gets lr × trunk_lr_mult
    copy_trunk_lr_mult: float = 0.3
    copy_seconds: float = 180.0
    copy_warmup: int = 100
    # strength 0.6 and jpeg_p 0.5: on two CPU warm-start runs (docs/training.md) the milder
    # mix gave test micro-AP 0.857 and mild-edit micro-AP 0.845, against 0.845 and 0.795 at
    # strength 1 / jpeg_p 0.3
    copy_augment: dict = field(default_factory=lambda: {"rot90_p": 0.5, "min_crop_area": 0.3,
                                                        "overlay_p": 0.3, "border_p": 0.25,
                                                        "strength": 0.6})
    jpeg_p: float = 0.5                     # share of copy views sent through a JPEG round trip
    jpeg_qualities: tuple = (30, 50, 70, 90)
    semantic_lr: float = 1e-4
    semantic_trunk_lr_mult: float = 0.3
    semantic_seconds: float = 90.0
    semantic_warmup: int = 50
    semantic_groups: int = 4                # N-pair batches (all classes × 2 photos) per step
    alpha_deg: float = 45.0
    lam: float = 2.0
    koleo: float = 0.0                      # copy: KoLeo regulariser weight (3 measured on the CPU
                                            # path: +1.6 points for the branch alone; model card)
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    eval_every_s: float = 20.0
    val_distractors: int = 1000
    check_family_copies: int = 2           # held-out copies per original made with the benchmark's
                                            # families (training.families), besides the device-made one
    seed: int = 0

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# ---- data -----------------------------------------------------------------------------------

def decode_pack(pack: dict, device: torch.device, workers: int = 16) -> torch.Tensor:
    """The pack's JPEGs → (N, 3, side, side) uint8 on ``device`` (Pillow in threads: small
    photos, a few seconds at most, and no nvJPEG needed)."""
    side = int(pack["side"])

    def one(data: torch.Tensor) -> np.ndarray:
        img = Image.open(io.BytesIO(data.numpy().tobytes())).convert("RGB")
        if img.size != (side, side):
            img = img.resize((side, side), Image.Resampling.BICUBIC)
        return np.asarray(img)

    with ThreadPoolExecutor(workers) as pool:
        arrays = list(pool.map(one, pack["jpegs"]))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous().to(device)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8/float 0..255 (B, 3, H, W) → normalised float (B, 3, size, size), bilinear squash
    as the engine does (antialiased when shrinking)."""
    x = x.float()
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=size < x.shape[-1])
    return (x - MEAN) / STD


class JpegRoundTrip:
    """Re-encode a share of a normalised batch as JPEG and decode it back, on its device.

    On CUDA both directions go through nvJPEG (``torchvision.io.encode_jpeg`` /
    ``decode_jpeg(device=...)``); elsewhere through libjpeg on the CPU. If the installed
    torchvision cannot do it, it says so once and the views stay as they are."""

    def __init__(self, p: float, qualities: tuple, generator: torch.Generator):
        self.p, self.qualities, self.gen = p, tuple(int(q) for q in qualities), generator
        self.broken: str | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.p <= 0 or self.broken:
            return x
        from torchvision.io import decode_jpeg, encode_jpeg
        n = x.shape[0]
        pick = torch.rand(n, generator=self.gen, device=self.gen.device).cpu() < self.p
        which = torch.randint(len(self.qualities), (n,), generator=self.gen, device=self.gen.device).cpu()
        if not bool(pick.any()):
            return x
        pixels = (x * STD + MEAN).round().clamp(0, 255).to(torch.uint8)
        out = x.clone()
        try:
            for qi, quality in enumerate(self.qualities):
                idx = torch.nonzero(pick & (which == qi)).flatten().tolist()
                if not idx:
                    continue
                encoded = encode_jpeg([pixels[i].contiguous() for i in idx], quality=quality)
                encoded = [e.cpu() for e in encoded]
                if x.device.type == "cuda":
                    decoded = decode_jpeg(encoded, device=x.device)
                else:
                    decoded = [decode_jpeg(e) for e in encoded]
                out[idx] = (torch.stack(decoded).to(x.device).float() - MEAN) / STD
        except (RuntimeError, TypeError, ValueError) as exc:
            self.broken = f"JPEG round trip switched off: {exc}"
            log.warning(self.broken)
            return x
        return out


# ---- the network ----------------------------------------------------------------------------

def start_network(recipe: GPURecipe) -> EmbeddingNet:
    """``recipe.start``'s trunk, pool and semantic projection; a fresh copy branch of
    ``copy_stages`` ImageNet stages (the start's own copy branch is dropped)."""
    bundle = load_bundle(recipe.start)
    old = bundle.build_network()
    cfg = old.config
    if cfg.branches.get("semantic"):
        raise ValueError(f"{recipe.start}: a semantic branch is not a start this recipe knows")
    net = EmbeddingNet(NetworkConfig(trunk=cfg.trunk, gem_p=cfg.gem_p, learn_gem_p=True,
                                     heads=dict(cfg.heads), branches={"copy": recipe.copy_stages}))
    state = old.state_dict()
    keep = {k: v for k, v in state.items() if k.startswith(("trunk.", "pool.", "heads.semantic."))}
    missing, unexpected = net.load_state_dict(keep, strict=False)
    assert not unexpected, unexpected
    net.reset_branches()
    if recipe.copy_init == "start":
        own = cfg.branches.get("copy", 0)
        if not 1 <= own <= recipe.copy_stages:
            raise ValueError(f"{recipe.start} has a copy branch of {own} stages; a warm start needs "
                             f"1–{recipe.copy_stages}")
        shift = recipe.copy_stages - own
        warm = {}
        for k, v in state.items():
            if k.startswith("branches.copy.blocks."):
                _, _, _, i, rest = k.split(".", 4)
                warm[f"branches.copy.blocks.{int(i) + shift}.{rest}"] = v
            elif k.startswith(("branches.copy.", "heads.copy.")):
                warm[k] = v
        missing, unexpected = net.load_state_dict(warm, strict=False)
        assert not unexpected, unexpected
    elif recipe.copy_init != "imagenet":
        raise ValueError(f"copy_init must be 'imagenet' or 'start', not {recipe.copy_init!r}")
    if net.fork + recipe.semantic_stages > len(net.trunk.blocks):
        raise ValueError("semantic_stages reaches below the copy branch's fork")
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def copy_parameters(net: EmbeddingNet, recipe: GPURecipe) -> list[dict]:
    branch = list(net.branches["copy"].parameters())
    return [{"params": list(net.heads["copy"].parameters()), "lr": recipe.copy_lr},
            {"params": branch, "lr": recipe.copy_lr * recipe.copy_trunk_lr_mult}]


def semantic_parameters(net: EmbeddingNet, recipe: GPURecipe) -> list[dict]:
    top = []
    if recipe.semantic_stages:
        t = net.trunk
        for module in (*list(t.blocks)[-recipe.semantic_stages:], t.conv_head, t.bn2):
            top += list(module.parameters())
    groups = [{"params": list(net.heads["semantic"].parameters()), "lr": recipe.semantic_lr}]
    if top:
        groups.append({"params": top, "lr": recipe.semantic_lr * recipe.semantic_trunk_lr_mult})
    return groups


def embed(net: EmbeddingNet, images: torch.Tensor, head: str, size: int, batch: int = 512,
          augment=None) -> torch.Tensor:
    """L2-normalised float32 embeddings of uint8 images (optionally through ``augment``)."""
    net.eval()
    out = []
    with torch.no_grad(), _autocast(images.device):
        for s in range(0, len(images), batch):
            x = images[s:s + batch]
            x = augment(x) if augment else resize(x, size)
            x = x.contiguous(memory_format=torch.channels_last)
            out.append(net(x, (head,))[head].float())
    return torch.cat(out)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


# ---- held-out checks --------------------------------------------------------------------------

def family_copies(originals: torch.Tensor, per_photo: int, size: int, seed: int
                  ) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """``per_photo`` copies of each uint8 original made with ``training.families`` (photo i
    gets families i, i + step, ... of the sorted list, so every family is covered evenly),
    squashed to ``size`` as the engine would: (queries uint8 on the originals' device,
    source index of each, family name of each)."""
    names = sorted(FAMILIES)
    per_photo = min(per_photo, len(names))
    if per_photo <= 0 or not len(originals):
        return originals[:0], np.zeros(0, np.int64), []
    arrays = originals.permute(0, 2, 3, 1).cpu().numpy()
    step = len(names) // per_photo
    out, source, families = [], [], []
    for i, array in enumerate(arrays):
        img = Image.fromarray(array)
        for j in range(per_photo):
            family = names[(i + j * step) % len(names)]
            copy = make_copy(img, family, seed * 100_003 + i * 17 + j)
            out.append(np.asarray(copy.resize((size, size), Image.Resampling.BILINEAR)))
            source.append(i)
            families.append(family)
    queries = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous().to(originals.device)
    return queries, np.asarray(source, np.int64), families


class HeldOutCheck:
    """Fixed held-out material: originals of the held-out classes, one device-made copy of
    each (seeded, the training augmentation and JPEG round trip), ``check_family_copies``
    copies of each made with the benchmark's own families (``training.families``: mild
    resize + JPEG, crop, rotation/flip, colour, overlay, border, perspective, chains; on the
    CPU, once), and training photos as distractors.

    Device-made copies alone reward exactly the invariance the training teaches; the family
    copies also measure what that invariance costs (mild edits against class look-alikes),
    so the selected state is the best on both together (``micro-AP`` pools every query)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, held: torch.Tensor,
                 recipe: GPURecipe):
        device = images.device
        self.recipe = recipe
        idx = torch.nonzero(held).flatten()
        self.originals = images[idx]
        self.labels = labels[idx].cpu().numpy()
        train_idx = torch.nonzero(~held).flatten()
        gen = torch.Generator().manual_seed(recipe.seed + 17)
        pick = train_idx[torch.randperm(len(train_idx), generator=gen)[:recipe.val_distractors].to(train_idx.device)]
        self.distractors = images[pick]
        dgen = torch.Generator(device=device).manual_seed(recipe.seed + 23)
        aug = GPUAugment(AugmentConfig(**{"size": recipe.eval_size, **recipe.copy_augment}))
        jpeg = JpegRoundTrip(recipe.jpeg_p, recipe.jpeg_qualities, dgen)
        with torch.no_grad():
            self.queries = torch.cat([jpeg(aug(self.originals[s:s + 256], dgen))
                                      for s in range(0, len(self.originals), 256)])
        self.family_queries, self.family_source, self.family_names = family_copies(
            self.originals, recipe.check_family_copies, recipe.eval_size, recipe.seed)

    def copy_score(self, net: EmbeddingNet) -> dict:
        size = self.recipe.eval_size
        db = torch.cat([embed(net, self.originals, "copy", size), embed(net, self.distractors, "copy", size)])
        q = embed(net, self.queries, "copy", size, augment=lambda x: x).cpu().numpy()
        n = len(self.originals)
        ids = np.arange(len(db))
        db = db.cpu().numpy()
        if not len(self.family_source):
            m = near_duplicate_metrics(q, np.arange(n), ["device-made"] * n, db, ids)["overall"]
            return {"micro-AP": float(m["micro-AP"]), "R@1": float(m["recall@1"])}
        fq = embed(net, self.family_queries, "copy", size).cpu().numpy()
        both = near_duplicate_metrics(np.concatenate([q, fq]), np.concatenate([np.arange(n), self.family_source]),
                                      ["device-made"] * n + self.family_names, db, ids)
        fam = near_duplicate_metrics(fq, self.family_source, self.family_names, db, ids)["overall"]
        return {"micro-AP": float(both["overall"]["micro-AP"]), "R@1": float(both["overall"]["recall@1"]),
                "device µAP": float(both["families"]["device-made"]["micro-AP"]),
                "families µAP": float(fam["micro-AP"]),
                "mild µAP": float(both["families"]["mild"]["micro-AP"]) if "mild" in both["families"] else None}

    def semantic_score(self, net: EmbeddingNet) -> dict:
        emb = embed(net, self.originals, "semantic", self.recipe.eval_size).cpu().numpy()
        m = class_retrieval_metrics(emb, self.labels)
        return {"map@r": float(m["map@r"]), "R@1": float(m["recall@1"])}


# ---- training stages ----------------------------------------------------------------------------

def _cosine(elapsed: float, seconds: float, step: int, warmup: int) -> float:
    warm = min(1.0, (step + 1) / max(1, warmup))
    return warm * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / max(seconds, 1e-9))))


def _run_stage(name: str, net: EmbeddingNet, groups: list[dict], step_loss, score, key: str,
               seconds: float, warmup: int, recipe: GPURecipe, trainable: list[torch.nn.Module],
               log_fn=print) -> dict:
    """Optimise for ``seconds``; keep the best state of ``trainable`` by ``score()[key]``."""
    device = next(net.parameters()).device
    params = [p for g in groups for p in g["params"]]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(groups, weight_decay=recipe.weight_decay)
    base = [g["lr"] for g in opt.param_groups]

    def snapshot():
        return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in trainable]

    first = score(net)
    history = [{"step": 0, "seconds": 0.0, **first}]
    best, best_state = first[key], snapshot()
    log_fn(f"[{name}] start {first}")
    step, samples, losses = 0, 0, []
    started = last_eval = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            break
        factor = _cosine(elapsed, seconds, step, warmup)
        for g, lr in zip(opt.param_groups, base):
            g["lr"] = lr * factor
        net.train()
        freeze_batchnorm(net)
        opt.zero_grad(set_to_none=True)
        loss, n = step_loss(step)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
        opt.step()
        step += 1
        samples += n
        losses.append(float(loss.detach()) if step % 10 == 0 else None)
        now = time.perf_counter()
        if now - last_eval >= recipe.eval_every_s or now - started >= seconds:
            _sync(device)
            train_s = now - started
            row = {"step": step, "seconds": round(train_s, 1),
                   "loss": float(np.mean([v for v in losses[-50:] if v is not None] or [float("nan")])),
                   "views_per_s": round(samples / max(train_s, 1e-9), 1), **score(net)}
            history.append(row)
            log_fn(f"[{name}] {row}")
            if row[key] > best:
                best, best_state = row[key], snapshot()
            last_eval = time.perf_counter()
            started += last_eval - now          # evaluation time does not eat the budget
    for p in params:
        p.requires_grad_(False)
    for module, state in zip(trainable, best_state):
        module.load_state_dict(state)
    total = time.perf_counter() - started
    return {"history": history, "best": best, "key": key, "steps": step,
            "train_seconds": round(total, 1), "views_per_s": round(samples / max(total, 1e-9), 1)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _pca_start(net: EmbeddingNet, images: torch.Tensor, train_idx: torch.Tensor, aug: GPUAugment,
               gen: torch.Generator, recipe: GPURecipe) -> None:
    """Start the copy projection as PCA (root-whitened) of the branch's pooled features on plain
    photos and augmented views."""
    device = images.device
    net.eval()
    with torch.no_grad(), _autocast(device):
        sample = train_idx[torch.randperm(len(train_idx), device=device, generator=gen)[:1024]]
        feats, rows, need = [], 0, max(2 * len(sample), 2 * net.heads["copy"].out_features)
        while rows < need:        # plain photos, then augmented views until PCA has enough rows
            for s in range(0, len(sample), 256):
                x = images[sample[s:s + 256]]
                view = resize(x, recipe.train_size) if not feats else aug(x, gen)
                h = net.lower(view.contiguous(memory_format=torch.channels_last))
                feats.append(net.branch_features("copy", h).float())
                rows += len(x)
    whitening_init(net.heads["copy"], torch.cat(feats).cpu())
    net.heads["copy"].to(device)


def train_copy(net: EmbeddingNet, images: torch.Tensor, train_idx: torch.Tensor, check: HeldOutCheck,
               recipe: GPURecipe, log_fn=print) -> dict:
    device = images.device
    gen = torch.Generator(device=device).manual_seed(recipe.seed)
    aug = GPUAugment(AugmentConfig(**{"size": recipe.train_size, **recipe.copy_augment}))
    jpeg = JpegRoundTrip(recipe.jpeg_p, recipe.jpeg_qualities, gen)
    loss_fn = build_loss("npair+angular", alpha_deg=recipe.alpha_deg, lam=recipe.lam)
    batch = min(recipe.copy_batch, len(train_idx))
    labels = torch.arange(batch, device=device).repeat_interleave(2)
    if recipe.copy_init == "imagenet":
        _pca_start(net, images, train_idx, aug, gen, recipe)

    def step_loss(step: int):
        pick = train_idx[torch.randperm(len(train_idx), device=device, generator=gen)[:batch]]
        x = images[pick]
        views = torch.stack([x, x], 1)                              # (B, 2, 3, H, W)
        v = aug(views, gen).flatten(0, 1)                            # (2B, 3, s, s), interleaved
        v = jpeg(v).contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), _autocast(device):
            h = net.lower(v)
        with _autocast(device):
            emb = net.embed_from(h, ("copy",))["copy"]
        loss = loss_fn(emb.float(), labels)
        if recipe.koleo:
            loss = loss + recipe.koleo * koleo_loss(emb.float(), labels)
        return loss, len(v)

    result = _run_stage("copy", net, copy_parameters(net, recipe), step_loss, check.copy_score,
                        "micro-AP", recipe.copy_seconds, recipe.copy_warmup, recipe,
                        [net.branches["copy"], net.heads["copy"]], log_fn)
    result["jpeg"] = jpeg.broken or "on" if recipe.jpeg_p else "off"
    return result


def train_semantic(net: EmbeddingNet, images: torch.Tensor, labels: torch.Tensor, train_idx: torch.Tensor,
                   check: HeldOutCheck, recipe: GPURecipe, log_fn=print) -> dict:
    device = images.device
    gen = torch.Generator(device=device).manual_seed(recipe.seed + 1)
    aug = GPUAugment(AugmentConfig(size=recipe.semantic_size, rot90_p=0.0, flip_p=0.0, overlay_p=0.0,
                                   border_p=0.0, perspective_p=0.1, grayscale_p=0.05, blur_p=0.1,
                                   colour_p=0.5, strength=0.6, min_crop_area=0.35))
    loss_fn = build_loss("npair+angular", alpha_deg=recipe.alpha_deg, lam=recipe.lam)
    train_labels = labels[train_idx]
    members = [train_idx[train_labels == c] for c in torch.unique(train_labels)]
    members = [m for m in members if len(m) >= 2]
    n_cls = len(members)
    group_labels = torch.arange(n_cls, device=device).repeat_interleave(2)

    def step_loss(step: int):
        rows = []
        for _ in range(recipe.semantic_groups):
            for m in members:
                rows.append(m[torch.randperm(len(m), device=device, generator=gen)[:2]])
        x = images[torch.cat(rows)]
        v = aug(x, gen)
        flip = torch.rand(len(v), device=device, generator=gen) < 0.5
        v = torch.where(flip.view(-1, 1, 1, 1), v.flip(-1), v).contiguous(memory_format=torch.channels_last)
        with _autocast(device):
            emb = net(v, ("semantic",))["semantic"]
        emb = emb.float().view(recipe.semantic_groups, 2 * n_cls, -1)
        loss = sum(loss_fn(emb[g], group_labels) for g in range(recipe.semantic_groups)) / recipe.semantic_groups
        return loss, len(v)

    trainable = [net.heads["semantic"], net.trunk]
    return _run_stage("semantic", net, semantic_parameters(net, recipe), step_loss, check.semantic_score,
                      "map@r", recipe.semantic_seconds, recipe.semantic_warmup, recipe, trainable, log_fn)


# ---- the whole run -----------------------------------------------------------------------------

def run(pack_path: Path, out: Path, recipe: GPURecipe, device: str = "auto", log_fn=print) -> dict:
    started = time.perf_counter()
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    torch.manual_seed(recipe.seed)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    pack = torch.load(pack_path, weights_only=False)
    t = time.perf_counter()
    images = decode_pack(pack, dev)
    labels = pack["labels"].to(dev)
    held = pack["held_out"].to(dev)
    decode_s = time.perf_counter() - t
    log_fn(f"decoded {len(images)} photos ({int(held.sum())} held out) in {decode_s:.1f} s on {dev}")
    net = start_network(recipe).to(dev).to(memory_format=torch.channels_last)
    check = HeldOutCheck(images, labels, held, recipe)
    train_idx = torch.nonzero(~held).flatten()
    report = {"recipe": recipe.to_dict(), "device": str(dev), "machine": machine(dev),
              "pack": {"photos": len(images), "held_out": int(held.sum()), "side": pack["side"],
                       "held_out_classes": sorted({pack["classes"][i] for i in pack["labels"][pack["held_out"]].tolist()}),
                       "train_classes": len({int(i) for i in pack["labels"][~pack["held_out"]].tolist()})},
              "decode_s": round(decode_s, 1)}
    if recipe.copy_seconds > 0:
        report["copy"] = train_copy(net, images, train_idx, check, recipe, log_fn)
    if recipe.semantic_seconds > 0:
        report["semantic"] = train_semantic(net, images, labels, train_idx, check, recipe, log_fn)
    report["architecture"] = net.config.to_dict()
    report["total_s"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float16 if v.is_floating_point() else v.dtype).contiguous()
             for k, v in net.state_dict().items()}
    save_file(state, str(out / "gpu-model.safetensors"))
    (out / "gpu-model.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def machine(dev: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__}
    try:
        import torchvision
        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", default=".pack/caltech-train.pt")
    parser.add_argument("--out", default="build/gpu-model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                        help="override a recipe field, e.g. --set copy_seconds=120")
    args = parser.parse_args(argv)
    recipe = GPURecipe()
    for item in args.set:
        name, _, value = item.partition("=")
        if not hasattr(recipe, name):
            parser.error(f"--set {item}: GPURecipe has no field {name!r}")
        setattr(recipe, name, json.loads(value))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = run(Path(args.pack), Path(args.out), recipe, args.device)
    for stage in ("copy", "semantic"):
        if stage in report:
            r = report[stage]
            print(f"{stage}: best {r['key']} {r['best']:.4f} (start {r['history'][0][r['key']]:.4f}), "
                  f"{r['steps']} steps in {r['train_seconds']} s, {r['views_per_s']} views/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
