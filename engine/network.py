"""The embedding network: timm trunk → GeM pooling → named heads → L2 normalisation.

This is the one model definition. The engine builds it from a bundle's card to embed photos;
``training/`` wraps the same class to train it. A head with ``dim: null`` in the card is the
pooled trunk feature itself (the pretrained default bundle); otherwise it is a linear
projection to ``dim``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import timm
import torch
import torch.nn.functional as F
from torch import nn


class GeM(nn.Module):
    """Generalised-mean pooling (Radenović et al. 2018): (mean x^p)^(1/p) over H×W."""

    def __init__(self, p: float = 3.0, learnable: bool = False, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learnable)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clamp(min=self.eps).pow(self.p)
        return x.mean(dim=(-2, -1)).pow(1.0 / self.p)


@dataclass
class NetworkConfig:
    """Architecture as stored in a bundle card (``card["architecture"]``)."""

    trunk: str = "tf_efficientnet_lite0"
    gem_p: float = 3.0
    learn_gem_p: bool = False
    heads: dict[str, int | None] = field(default_factory=lambda: {"copy": None, "semantic": None})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NetworkConfig":
        known = {k: data[k] for k in ("trunk", "gem_p", "learn_gem_p", "heads") if k in data}
        return cls(**known)


class EmbeddingNet(nn.Module):
    """Returns a dict ``{head: (B, dim) L2-normalised}`` for the heads asked for."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        self.trunk = timm.create_model(config.trunk, pretrained=False, num_classes=0, global_pool="")
        self.pool = GeM(config.gem_p, learnable=config.learn_gem_p)
        width = self.trunk.num_features
        self.heads = nn.ModuleDict({
            name: nn.Linear(width, dim) if dim else nn.Identity()
            for name, dim in config.heads.items()})
        self.feature_dim = width

    def head_dim(self, head: str) -> int:
        return self.config.heads[head] or self.feature_dim

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.trunk.forward_features(x))

    def forward(self, x: torch.Tensor, heads: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        feats = self.pooled(x)
        names = heads or tuple(self.heads.keys())
        return {name: F.normalize(self.heads[name](feats).float(), dim=-1) for name in names}
