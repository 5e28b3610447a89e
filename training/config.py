"""Training configuration: one dataclass with defaults; the CLI maps flags onto it and the
whole config is saved with every checkpoint and in the exported bundle's card."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from training.model import ModelConfig

RECIPES = ("finetune", "copy-detection", "both")


@dataclass
class TrainConfig:
    data: str = ""                     # labeled folder (one subfolder per label) or caltech101 folder
    data_split: str | None = None      # for a Caltech-101 layout: "train" uses split.csv's train classes
    recipe: str = "finetune"           # finetune: semantic head on labels; copy-detection; both
    loss: str = "npair+angular"
    alpha_deg: float = 45.0
    lam: float = 2.0
    margin: float = 0.2                # triplet / contrastive baselines
    mining: str = "semihard"
    embedding_l2: float = 0.0
    model: ModelConfig = field(default_factory=ModelConfig)
    image_size: int = 224
    epochs: int = 5
    steps_per_epoch: int | None = None
    n_classes: int = 16                # N of the N-pair batch (2N images)
    copy_batch: int = 32               # photos per copy-detection batch (2 views each)
    lr: float = 1e-3
    trunk_lr_mult: float = 0.1
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 1.0
    freeze_bn: bool = True             # keep BatchNorm running statistics fixed while training
    val_fraction: float = 0.2
    val_images: int = 300
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    gpu_augment: bool | None = None    # None: on when training on CUDA
    out: str = "runs/lookalike"
    name: str = "lookalike-custom"

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = ModelConfig(**self.model)
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, not {self.recipe!r}")

    def trained_heads(self) -> tuple[str, ...]:
        return {"finetune": ("semantic",), "copy-detection": ("copy",), "both": ("copy", "semantic")}[self.recipe]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))
