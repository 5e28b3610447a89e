"""The training loop: AdamW with warm-up and cosine decay, bf16 autocast and channels_last on
CUDA, gradient clipping, deterministic seeds, checkpoint/resume, best-on-validation selection,
progress and cancel through a callback, and DistributedDataParallel under ``torchrun``.
"""
from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from engine.embedding import pick_device
from engine.progress import ProgressCallback, null_progress, wants_stop
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.data import TrainData, build_data
from training.losses import build_loss
from training.model import build_model, parameter_groups
from training.validate import validate

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)   # one validation row per epoch (epoch 0 = before)
    best: dict | None = None
    bundle: Path | None = None
    checkpoint: Path | None = None
    cancelled: bool = False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_lambda(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


class Trainer:
    def __init__(self, config: TrainConfig):
        self.rank, self.world = _distributed()
        self.config = config
        self.device = pick_device(config.device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        seed_everything(config.seed)
        trained = config.trained_heads()
        heads = {h: (config.model.heads.get(h) if h in trained else None) for h in ("copy", "semantic")}
        self.model_config = replace(config.model, heads=heads)
        self.net = build_model(self.model_config).to(self.device)
        if self.device.type == "cuda":
            self.net = self.net.to(memory_format=torch.channels_last)
        self.data: TrainData = build_data(config, self.rank, self.world, self.device)
        self.loss = build_loss(config.loss, **_loss_kwargs(config))
        total = config.epochs * self.data.steps_per_epoch
        self.optimizer = torch.optim.AdamW(parameter_groups(self.net, config.lr, config.trunk_lr_mult,
                                                            config.weight_decay))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(config.warmup_steps, total))
        self.model = DistributedDataParallel(self.net) if self.world > 1 else self.net
        self.epoch, self.step, self.epoch_step = 0, 0, 0
        self.result = TrainResult()
        self.best_state: dict | None = None

    # ---- one step -------------------------------------------------------------------------
    def _forward_loss(self, images: torch.Tensor, labels: torch.Tensor, head: str) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                emb = self.model(images, (head,))[head]
        else:
            emb = self.model(images, (head,))[head]
        return self.loss(emb.float(), labels.to(self.device))

    def _train_mode(self) -> None:
        """Train mode, but BatchNorm keeps its ImageNet statistics: metric-learning batches
        (2N images of N classes) are small and class-skewed, and updating the running
        statistics on them degrades the pretrained features."""
        self.model.train()
        if self.config.freeze_bn:
            for module in self.net.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def train_step(self, batches: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> float:
        self._train_mode()
        self.optimizer.zero_grad(set_to_none=True)
        total = sum(self._forward_loss(x, y, head) for head, (x, y) in batches.items())
        total.backward()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return float(total.detach())

    # ---- epochs ---------------------------------------------------------------------------
    def run(self, progress: ProgressCallback = null_progress, resume: bool = False,
            events=None) -> TrainResult:
        """Train; ``events(dict)`` (optional) receives every step's loss and every validation row."""
        self._events = events or (lambda item: None)
        ckpt = Path(self.config.out) / "checkpoint.pt"
        if resume and ckpt.exists():
            load_checkpoint(ckpt, self)
        elif self.rank == 0:
            self._validate()
        total = self.config.epochs * self.data.steps_per_epoch
        while self.epoch < self.config.epochs:
            self.data.set_epoch(self.epoch)
            losses = []
            for batches in self.data.batches(skip=self.epoch_step):
                losses.append(self.train_step(batches))
                self.epoch_step += 1
                self._events({"type": "step", "step": self.step, "loss": losses[-1]})
                if wants_stop(progress, self.step, total, f"epoch {self.epoch + 1}/{self.config.epochs} "
                                                             f"loss {np.mean(losses[-20:]):.4f}"):
                    self.result.cancelled = True
                    break
            if self.result.cancelled:
                break
            self.epoch, self.epoch_step = self.epoch + 1, 0
            if self.rank == 0:
                self._validate(loss=float(np.mean(losses)) if losses else None)
                self.result.checkpoint = save_checkpoint(ckpt, self)
            if self.world > 1:
                dist.barrier()
        if self.result.cancelled and self.rank == 0:
            self.result.checkpoint = save_checkpoint(ckpt, self)
        return self.result

    def _validate(self, loss: float | None = None) -> None:
        metrics = validate(self.net, self.data, self.config.trained_heads(), self.device)
        row = {"epoch": self.epoch, "step": self.step, "train_loss": loss, **metrics}
        self.result.history.append(row)
        log.info("validation %s", row)
        getattr(self, "_events", lambda item: None)({"type": "validation", **row})
        if self.result.best is None or metrics["score"] > self.result.best["score"]:
            self.result.best = row
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}


def _loss_kwargs(config: TrainConfig) -> dict:
    name = config.loss
    kwargs: dict = {"embedding_l2_weight": config.embedding_l2} if config.embedding_l2 else {}
    if "angular" in name:
        kwargs["alpha_deg"] = config.alpha_deg
    if name == "npair+angular":
        kwargs["lam"] = config.lam
    if name == "triplet":
        kwargs.update(margin=config.margin, mining=config.mining)
    return kwargs


def train(config: TrainConfig, progress: ProgressCallback = null_progress, *, resume: bool = False,
          export_to: str | Path | None = None, events=None) -> TrainResult:
    """Train per ``config``; on rank 0 export the best epoch as a bundle into ``export_to``."""
    from training.export import export_bundle

    trainer = Trainer(config)
    try:
        result = trainer.run(progress, resume=resume, events=events)
        if export_to and not result.cancelled and trainer.rank == 0:
            result.bundle = export_bundle(trainer, export_to)
        return result
    finally:
        if trainer.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
