"""Export a trained model as an engine bundle (safetensors + JSON card), thresholds included.

The bundle needs no training code and no pickle: ``engine.Embedder.load`` reads it. The
card records the architecture, preprocessing, data, the whole recipe, the validation
history and the thresholds calibrated on the held-out photos with the engine's own
preprocessing.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

from engine.embedding import Embedder
from engine.model_bundle import load_bundle, save_bundle
from training.calibrate import calibrate_images
from training.validate import _val_set

DEFAULT_THRESHOLDS = {"copy": {"near": 0.9}, "semantic": {"similar": 0.7}}


def build_card(trainer, thresholds: dict, calibration: dict | None = None) -> dict:
    config = trainer.config
    net = trainer.net
    return {
        "name": config.name,
        "version": _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d%H%M%S"),
        "description": f"EfficientNet-Lite0 + GeM, {config.recipe} recipe, loss {config.loss}",
        "architecture": net.config.to_dict(),
        "input": {"size": config.image_size, "resize": "squash", "mean": [127.0] * 3,
                  "std": [128.0] * 3, "colour": "RGB", "range": "0-255"},
        "heads": {h: {"dim": net.head_dim(h), "trained": h in config.trained_heads()} for h in net.heads},
        "training_data": {"folder": str(config.data), "split": config.data_split,
                          "classes": len(trainer.data.train.classes), "images": len(trainer.data.train.paths),
                          "validation_classes": len(trainer.data.val.classes)},
        "recipe": config.to_dict(),
        "metrics": {"best": trainer.result.best, "history": trainer.result.history},
        "thresholds": thresholds,
        "calibration": calibration,
    }


def export_bundle(trainer, out_dir: str | Path, calibrate: bool = True, half: bool = True) -> Path:
    """Write the best-on-validation weights as a bundle (fp16 on disk unless ``half=False``);
    calibrate its thresholds on the held-out photos."""
    net = trainer.net
    state = trainer.best_state or net.state_dict()
    folder = save_bundle(out_dir, build_card(trainer, DEFAULT_THRESHOLDS), state, half=half)
    if calibrate:
        images, labels = _val_set(trainer.data)
        embedder = Embedder(load_bundle(folder), device=str(trainer.device))
        report = calibrate_images(embedder, images, list(labels), trainer.config.seed)
        save_bundle(folder, build_card(trainer, report["thresholds"], report), state, half=half)
    return folder
