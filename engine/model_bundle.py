"""A model bundle: a folder with ``card.json`` and ``weights.safetensors``.

The card says everything inference needs without training code: architecture (trunk, GeM,
heads and dims), input size and normalisation, plus provenance (training data, recipe,
metrics) and the calibrated similarity thresholds the engine groups with. Weights are
safetensors (no pickle), optionally fp16 on disk; they load as fp32.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from engine.errors import ModelBundleError
from engine.network import EmbeddingNet, NetworkConfig

CARD = "card.json"
WEIGHTS = "weights.safetensors"
CARD_FORMAT = 1
RESOURCES = Path(__file__).resolve().parent.parent / "resources"
BUILTIN_MODELS = RESOURCES / "models"
DEFAULT_POINTER = BUILTIN_MODELS / "DEFAULT"


@dataclass
class ModelBundle:
    path: Path
    card: dict

    @property
    def model_id(self) -> str:
        return f"{self.card['name']}@{self.card['version']}"

    @property
    def network_config(self) -> NetworkConfig:
        return NetworkConfig.from_dict(self.card["architecture"])

    @property
    def input_size(self) -> int:
        return int(self.card["input"]["size"])

    @property
    def mean(self) -> list[float]:
        return list(self.card["input"]["mean"])

    @property
    def std(self) -> list[float]:
        return list(self.card["input"]["std"])

    @property
    def heads(self) -> list[str]:
        return list(self.card["architecture"]["heads"])

    def threshold(self, head: str, level: str) -> float:
        try:
            return float(self.card["thresholds"][head][level])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelBundleError(self.path / CARD, f"no '{level}' threshold for head '{head}'") from exc

    def build_network(self) -> EmbeddingNet:
        net = EmbeddingNet(self.network_config)
        try:
            state = load_file(self.path / WEIGHTS)
        except (OSError, SafetensorError) as exc:
            raise ModelBundleError(self.path / WEIGHTS, f"cannot read weights ({exc})") from exc
        state = {k: v.float() for k, v in state.items()}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
            raise ModelBundleError(self.path / WEIGHTS,
                                   f"weights do not fit the card's architecture ({first})") from exc
        return net.eval()


def resolve(model: str | Path | None = None, search_dirs: tuple[Path, ...] = ()) -> Path:
    """Bundle folder for a name or a path; None means the built-in default."""
    if model is None:
        model = DEFAULT_POINTER.read_text().strip()
    candidate = Path(model).expanduser()
    if (candidate / CARD).is_file():
        return candidate
    for folder in (*search_dirs, BUILTIN_MODELS):
        if (Path(folder) / str(model) / CARD).is_file():
            return Path(folder) / str(model)
    raise ModelBundleError(str(model), "no such model bundle (looked in "
                           + ", ".join(str(d) for d in (*search_dirs, BUILTIN_MODELS)) + ")")


def load_bundle(model: str | Path | None = None, search_dirs: tuple[Path, ...] = ()) -> ModelBundle:
    folder = resolve(model, search_dirs)
    try:
        card = json.loads((folder / CARD).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelBundleError(folder / CARD, f"unreadable card ({exc})") from exc
    for key in ("name", "version", "architecture", "input"):
        if key not in card:
            raise ModelBundleError(folder / CARD, f"card lacks '{key}'")
    if card.get("format", CARD_FORMAT) > CARD_FORMAT:
        raise ModelBundleError(folder / CARD, f"card format {card['format']} is newer than this app")
    if not (folder / WEIGHTS).is_file():
        raise ModelBundleError(folder / WEIGHTS, "weights file missing")
    return ModelBundle(folder, card)


def save_bundle(folder: str | Path, card: dict, state_dict: dict[str, torch.Tensor],
                *, half: bool = True) -> Path:
    """Write a bundle atomically (temporary files in the folder, fsync, rename; card last)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    tensors = {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
               for k, v in state_dict.items()}
    card = {"format": CARD_FORMAT, **card, "weights_dtype": str(dtype).removeprefix("torch.")}
    _atomic_write(folder / WEIGHTS, lambda tmp: save_file(tensors, tmp))
    text = json.dumps(card, indent=2, sort_keys=False) + "\n"
    _atomic_write(folder / CARD, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return folder


def _atomic_write(target: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
