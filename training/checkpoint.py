"""Checkpoints: weights, optimiser and scheduler state, configs, step, history and RNG state,
written atomically so a crash mid-save never leaves a half file. Resume continues exactly."""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from engine.errors import FileError


def save_checkpoint(path: Path, trainer) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": trainer.net.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "train_config": trainer.config.to_dict(),
        "model_config": trainer.model_config.__dict__,
        "epoch": trainer.epoch,
        "step": trainer.step,
        "epoch_step": trainer.epoch_step,
        "history": trainer.result.history,
        "best": trainer.result.best,
        "best_state": trainer.best_state,
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
    }
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: Path, trainer) -> None:
    try:
        # our own file: it holds numpy RNG state and plain dicts besides tensors
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise FileError(path, f"cannot read checkpoint ({exc})") from exc
    trainer.net.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.epoch, trainer.step, trainer.epoch_step = state["epoch"], state["step"], state["epoch_step"]
    trainer.result.history = state["history"]
    trainer.result.best = state["best"]
    trainer.best_state = state["best_state"]
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
