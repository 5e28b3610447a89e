"""Checkpoints: weights, optimiser and scheduler state, configs, step, history and RNG state,
written atomically so a crash mid-save never leaves a half file. Resume continues exactly.

A checkpoint holds only tensors and plain Python data (dicts, lists, tuples, numbers,
strings, None): the numpy and Python RNG states are stored as a tensor and lists of ints,
and numpy numbers in the history become Python numbers. It is read with
``torch.load(weights_only=True)``, whose unpickler builds nothing else, so opening a
checkpoint someone handed you cannot run code; one that holds other objects is refused with
a ``FileError`` (that includes checkpoints written before this format).
"""
from __future__ import annotations

import pickle
import random
import re
from pathlib import Path

import numpy as np
import torch

from engine.atomic import atomic_write
from engine.errors import FileError

REQUIRED = ("model", "optimizer", "scheduler", "epoch", "step", "epoch_step", "history", "best",
            "best_state", "rng")


def save_checkpoint(path: Path, trainer) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": trainer.net.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "train_config": plain(trainer.config.to_dict()),
        "model_config": plain(dict(trainer.model_config.__dict__)),
        "epoch": trainer.epoch,
        "step": trainer.step,
        "epoch_step": trainer.epoch_step,
        "history": plain(trainer.result.history),
        "best": plain(trainer.result.best),
        "best_state": trainer.best_state,
        "rng": rng_state(),
    }
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def read_checkpoint(path: Path) -> dict:
    """The checkpoint's contents, read without running any code from the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise FileError(path, f"refused: {_why_refused(str(exc))}; nothing in it was run") from exc
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise FileError(path, f"cannot read checkpoint ({exc})") from exc
    if not isinstance(state, dict):
        raise FileError(path, "not a Lookalike checkpoint (not a dictionary)")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise FileError(path, f"not a Lookalike checkpoint (lacks {', '.join(missing)})")
    return state


def _why_refused(message: str) -> str:
    """torch's long weights-only message, boiled down to what the file holds."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", message)
    if found:
        return (f"it holds a Python object ({found[1].rstrip('.')}) besides tensors and plain "
                "data, and loading it could run code (a checkpoint of an older Lookalike, or "
                "of another program?)")
    found = re.search(r"WeightsUnpickler error:\s*(.+)", message)
    detail = found[1].strip() if found else message.splitlines()[0] if message else "unknown"
    return f"not a checkpoint of tensors and plain data, or damaged ({detail})"


def load_checkpoint(path: Path, trainer) -> None:
    state = read_checkpoint(path)
    try:
        trainer.net.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise FileError(path, f"checkpoint does not fit this training run ({exc})") from exc
    trainer.epoch, trainer.step, trainer.epoch_step = state["epoch"], state["step"], state["epoch_step"]
    trainer.result.history = state["history"]
    trainer.result.best = state["best"]
    trainer.best_state = state["best_state"]


def rng_state() -> dict:
    """torch, numpy and Python RNG states as tensors and plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": [int(x) for x in internal],
                   "gauss_next": None if gauss_next is None else float(gauss_next)},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def plain(value):
    """``value`` with numpy numbers and arrays turned into Python numbers and tensors."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, Path):
        return str(value)
    return value
