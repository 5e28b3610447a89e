"""Training stages on cached activations (``training.cached``): the default model's recipe.

- ``train_copy_branch``: the copy-detection recipe. Every photo is its own class; a batch
  holds P photos × 2 of their cached augmented views; the loss (N-pair + angular by default)
  pulls the two views together and pushes the other photos away. Trains the ``copy`` head's
  branch (its own last trunk stages, GeM exponent, projection); BatchNorm statistics stay
  fixed.
- ``train_projection``: supervised N-pair batches (N classes × 2 photos) on cached pooled
  features of the frozen trunk; trains a linear projection head only.

Both use AdamW with linear warm-up and cosine decay, clip gradients, call ``validate`` every
``eval_every`` steps and keep the best state (higher is better), and report progress through
the callback (returning False stops after the current step, keeping the best state so far).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from engine.network import EmbeddingNet
from engine.progress import ProgressCallback, null_progress, wants_stop
from training.losses import build_loss, koleo_loss


@dataclass
class StageConfig:
    steps: int = 1500
    batch: int = 128             # copy: photos per batch (2 views each); semantic: classes
    lr: float = 1e-3             # projection head
    trunk_lr_mult: float = 0.3   # branch stages and GeM, relative to lr
    weight_decay: float = 1e-4
    warmup: int = 50
    loss: str = "npair+angular"
    alpha_deg: float = 45.0
    lam: float = 2.0
    margin: float = 0.2
    grad_clip: float = 1.0
    eval_every: int = 250
    seed: int = 0
    koleo: float = 0.0           # copy: weight of the KoLeo entropy regulariser (0: none)

    def to_dict(self) -> dict:
        return asdict(self)


def make_loss(cfg: StageConfig) -> nn.Module:
    kwargs = {"npair": {}, "triplet": {"margin": cfg.margin}, "contrastive": {"margin": cfg.margin},
              "npair+angular": {"alpha_deg": cfg.alpha_deg, "lam": cfg.lam}}.get(
        cfg.loss, {"alpha_deg": cfg.alpha_deg})
    return build_loss(cfg.loss, **kwargs)


def _schedule(cfg: StageConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def freeze_batchnorm(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def optimise(module: nn.Module, groups: list[dict], step_loss: Callable[[torch.Generator], torch.Tensor],
              cfg: StageConfig, validate: Callable[[], float] | None, progress: ProgressCallback,
              what: str) -> list[dict]:
    """The shared loop; returns the history and leaves ``module`` in its best validated state."""
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg))
    params = [p for g in groups for p in g["params"]]
    history: list[dict] = []
    best_score, best_state = -math.inf, None
    running, start = 0.0, time.perf_counter()

    def checkpoint(step: int) -> None:
        nonlocal best_score, best_state
        score = validate() if validate else step  # no validation: keep the last state
        history.append({"step": step, "loss": running / max(1, min(step, cfg.eval_every)),
                        "score": score, "seconds": round(time.perf_counter() - start, 1)})
        if score > best_score:
            best_score, best_state = score, copy.deepcopy(module.state_dict())

    for step in range(cfg.steps):
        if step % cfg.eval_every == 0:
            checkpoint(step)
            running = 0.0
        loss = step_loss(gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        running += float(loss.detach())
        if wants_stop(progress, step + 1, cfg.steps, what):
            break
    checkpoint(step + 1)
    module.load_state_dict(best_state)
    module.eval()
    return history


def branch_groups(net: EmbeddingNet, cfg: StageConfig, head: str = "copy") -> tuple[nn.Module, list[dict]]:
    """The trainable part of ``head`` (its branch, GeM exponent and projection, if any) as one
    module, and its AdamW parameter groups (the branch at ``trunk_lr_mult`` × lr)."""
    branch, proj = net.branches[head], net.heads[head]
    trunk_params = [p for name, p in branch.named_parameters() if not name.startswith("pool.")]
    branch.pool.p.requires_grad = True
    groups = [{"params": list(proj.parameters()), "lr": cfg.lr},
              {"params": trunk_params, "lr": cfg.lr * cfg.trunk_lr_mult},
              {"params": [branch.pool.p], "lr": cfg.lr * cfg.trunk_lr_mult, "weight_decay": 0.0}]
    return nn.ModuleDict({"branch": branch, "head": proj}), [g for g in groups if g["params"]]


def train_copy_branch(net: EmbeddingNet, acts: torch.Tensor, cfg: StageConfig,
                      validate: Callable[[], float] | None = None,
                      progress: ProgressCallback = null_progress,
                      shared: torch.Tensor | None = None) -> list[dict]:
    """Train ``net.branches['copy']`` and ``net.heads['copy']`` on (N, K, C, h, w) cached views.

    With ``shared`` (N, K, D: the frozen shared top's pooled feature of every view) and a
    fused copy head, the loss is put on the fused vector, so the branch learns what adds to
    the pretrained feature rather than what replaces it."""
    n, k = acts.shape[:2]
    if shared is not None and ("copy" not in net.fusions or shared.shape[:2] != (n, k)):
        raise ValueError("shared features need a fused copy head and one row per cached view")
    if k < 2 or n < 2:
        raise ValueError(f"copy training needs ≥2 photos with ≥2 views each, got {n}×{k}")
    branch, head = net.branches["copy"], net.heads["copy"]
    module, groups = branch_groups(net, cfg)
    loss_fn = make_loss(cfg)
    p = min(cfg.batch, n)
    labels = torch.arange(p).repeat_interleave(2)

    def step_loss(gen: torch.Generator) -> torch.Tensor:
        module.train()
        freeze_batchnorm(module)
        photos = torch.randperm(n, generator=gen)[:p]
        first = torch.randint(k, (p,), generator=gen)
        second = (first + torch.randint(1, k, (p,), generator=gen)) % k  # a different view
        views = torch.stack([first, second], 1).reshape(-1)
        rows = photos.repeat_interleave(2)
        x = acts[rows, views].float().contiguous(memory_format=torch.channels_last)
        emb = head(branch(x))
        if shared is not None:
            emb = net.fused("copy", emb, shared[rows, views])
        loss = loss_fn(emb, labels)
        return loss + cfg.koleo * koleo_loss(emb, labels) if cfg.koleo else loss

    return optimise(module, groups, step_loss, cfg, validate, progress, "copy branch")


def whitening_init(head: nn.Linear, feats: torch.Tensor, power: float = 0.5) -> None:
    """Start ``head`` as PCA of ``feats`` (…, D) to its output size, each component divided by
    its standard deviation to ``power`` (1 = whitening, 0.5 = its square root: on Caltech
    train classes the square root lifted test MAP@R where full whitening lowered it).
    Centring moves into the bias, so the head maps a feature straight to the projected one."""
    x = feats.reshape(-1, feats.shape[-1]).double()
    mean = x.mean(0)
    _, singular, vh = torch.linalg.svd(x - mean, full_matrices=False)
    dim = head.out_features
    if dim > len(singular):
        raise ValueError(f"PCA to {dim} dimensions needs at least {dim} feature rows, got {len(x)}")
    std = (singular[:dim] / len(x) ** 0.5).clamp(min=1e-12)
    weight = vh[:dim] / std[:, None] ** power
    with torch.no_grad():
        head.weight.copy_(weight.float())
        head.bias.copy_(-(weight @ mean).float())


def train_projection(head: nn.Linear, feats: torch.Tensor, labels: torch.Tensor, cfg: StageConfig,
                     validate: Callable[[], float] | None = None,
                     progress: ProgressCallback = null_progress) -> list[dict]:
    """Train a linear head on (N, V, D) cached features of N labelled photos (V views each)."""
    labels = torch.as_tensor(labels)
    classes = [torch.nonzero(labels == c).flatten() for c in torch.unique(labels)]
    classes = [members for members in classes if len(members) >= 2]
    if len(classes) < 2:
        raise ValueError("supervised training needs at least two classes with two photos each")
    v = feats.shape[1]
    n_cls = min(cfg.batch, len(classes))
    batch_labels = torch.arange(n_cls).repeat_interleave(2)
    loss_fn = make_loss(cfg)

    def step_loss(gen: torch.Generator) -> torch.Tensor:
        head.train()
        picked = torch.randperm(len(classes), generator=gen)[:n_cls]
        rows = torch.cat([classes[c][torch.randperm(len(classes[c]), generator=gen)[:2]] for c in picked])
        views = torch.randint(v, (len(rows),), generator=gen)
        return loss_fn(head(feats[rows, views]), batch_labels)

    groups = [{"params": list(head.parameters()), "lr": cfg.lr}]
    return optimise(head, groups, step_loss, cfg, validate, progress, "semantic head")
