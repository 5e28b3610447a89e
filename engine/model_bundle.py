"""A model bundle: a folder with ``card.json`` and ``weights.safetensors``.

The card says everything inference needs without training code: architecture (trunk, GeM,
heads and dims), input size and normalisation, plus provenance (training data, recipe,
metrics) and the calibrated similarity thresholds the engine groups with. Weights are
safetensors (no pickle, so loading a bundle never runs code from it), optionally fp16 on
disk; they load as fp32 after a check that every tensor the architecture needs is there,
with its shape and a floating-point (or, for counters, integer) dtype and finite values, and
nothing else is: a bad bundle is a ``ModelBundleError`` naming the file and the reason.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from engine.atomic import atomic_write
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

    def head_dim(self, head: str) -> int:
        """Length of ``head``'s vectors: as the card states it (``build_network`` checks it
        against the architecture), else from projection sizes the architecture names."""
        stated = ((self.card.get("heads") or {}).get(head) or {}).get("dim")
        try:
            return int(stated) if stated is not None else self.network_config.head_dim(head)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelBundleError(self.path / CARD, f"no valid dimension for head '{head}' ({exc})") from exc

    def storage_head(self, head: str) -> str:
        """The head whose stored vectors and index ``head`` uses. Heads with no projection and
        no trunk branch of their own all compute the same vector (the shared trunk's pooled,
        normalised feature: both heads of the pretrained default), so the library stores and
        indexes it once, under the first of them."""
        arch, config = self.card["architecture"], self.network_config

        def plain(name: str) -> bool:
            return name in arch["heads"] and arch["heads"][name] is None \
                and name not in (arch.get("branches") or {}) and name not in (arch.get("fuse") or {}) \
                and config.head_turns(name) == 1

        return next((h for h in self.heads if plain(h)), head) if plain(head) else head

    @property
    def stored_heads(self) -> list[str]:
        """The heads whose vectors are stored (``storage_head`` of every head, each once)."""
        return list(dict.fromkeys(self.storage_head(h) for h in self.heads))

    def threshold(self, head: str, level: str) -> float:
        try:
            return float(self.card["thresholds"][head][level])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelBundleError(self.path / CARD, f"no '{level}' threshold for head '{head}'") from exc

    def build_network(self) -> EmbeddingNet:
        """The network of the card with the bundle's weights (checked: names, shapes, dtypes)."""
        try:
            net = EmbeddingNet(self.network_config)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelBundleError(self.path / CARD, f"the card's architecture is not one this app "
                                                     f"can build ({exc})") from exc
        expected = net.state_dict()
        try:
            state = load_file(self.path / WEIGHTS)
        except (OSError, SafetensorError) as exc:
            raise ModelBundleError(self.path / WEIGHTS, f"cannot read weights, not a safetensors "
                                                        f"file or damaged ({exc})") from exc
        problems = weight_problems(state, expected)
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise ModelBundleError(self.path / WEIGHTS,
                                   f"weights do not fit the card's architecture: {shown}")
        net.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
        stated = self.card.get("heads") or {}
        wrong = [f"'{h}' is {self.head_dim(h)}-d in the card but {net.head_dim(h)}-d in the architecture"
                 for h in self.heads if "dim" in (stated.get(h) or {}) and self.head_dim(h) != net.head_dim(h)]
        if wrong:
            raise ModelBundleError(self.path / CARD, "; ".join(wrong))
        return net.eval()


_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def weight_problems(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> list[str]:
    """Why ``found`` cannot be loaded where ``expected`` is: one reason per problem."""
    problems = []
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing ({_names(missing)})")
    if extra:
        problems.append(f"{len(extra)} unexpected tensor(s) ({_names(extra)})")
    for key in (k for k in expected if k in found):
        want, got = expected[key], found[key]
        if tuple(got.shape) != tuple(want.shape):
            problems.append(f"'{key}' has shape {tuple(got.shape)}, the architecture needs "
                            f"{tuple(want.shape)}")
        elif want.is_floating_point() and got.dtype not in _FLOATS:
            problems.append(f"'{key}' is {_dtype(got)}, expected a floating-point tensor")
        elif not want.is_floating_point() and (got.is_floating_point() or got.dtype == torch.bool
                                               or got.is_complex()):
            problems.append(f"'{key}' is {_dtype(got)}, expected an integer tensor ({_dtype(want)})")
        elif got.is_floating_point() and not bool(torch.isfinite(got).all()):
            problems.append(f"'{key}' holds NaN or infinite values")
    return problems


def _names(keys: list[str]) -> str:
    return ", ".join(f"'{k}'" for k in keys[:3]) + (", …" if len(keys) > 3 else "")


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelBundleError(folder / CARD, f"unreadable card ({exc})") from exc
    if not isinstance(card, dict):
        raise ModelBundleError(folder / CARD, "the card is not a JSON object")
    for key in ("name", "version", "architecture", "input"):
        if key not in card:
            raise ModelBundleError(folder / CARD, f"card lacks '{key}'")
    if not isinstance(card["architecture"], dict):
        raise ModelBundleError(folder / CARD, "the card's 'architecture' is not a JSON object")
    if not isinstance(card.get("format", CARD_FORMAT), int):
        raise ModelBundleError(folder / CARD, f"card format {card['format']!r} is not a number")
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
    atomic_write(folder / WEIGHTS, lambda tmp: save_file(tensors, tmp))
    text = json.dumps(card, indent=2, sort_keys=False) + "\n"
    atomic_write(folder / CARD, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return folder

