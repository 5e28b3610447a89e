"""The embedding network: timm trunk → GeM pooling → named heads → L2 normalisation.

This is the one model definition. The engine builds it from a bundle's card to embed photos;
``training/`` wraps the same class to train it. A head with ``dim: null`` in the card is the
pooled trunk feature itself (the pretrained default bundle); otherwise it is a linear
projection to ``dim``.

A head may own a **branch**: its own copy of the trunk's last ``n`` stages (plus the head
convolution and its own GeM). The lower trunk runs once per photo and is shared; the branch
forks after it. This is how one network serves two objectives that fight inside one
embedding: the ``copy`` head fine-tunes its branch for invariance to crops, turns and edits,
while the ``semantic`` head keeps the ImageNet top it needs to group unseen classes
(``branches: {"copy": 2}`` in the card; no entry = the shared top).

A head may also be **fused** with the shared top's pooled feature (``fuse: {"copy": {"weight":
0.3, "dim": 256}}``): its vector is the concatenation ``[√w · own, √(1 − w) · shared]`` of two
unit vectors, so the cosine of two such vectors is ``w · cos(own) + (1 − w) · cos(shared)``,
one score an HNSW index can search. ``shared`` is the ImageNet top's GeM feature, through a
bias-free linear map to ``dim`` (a PCA fitted on training photos) or as it is (``dim: null``).
A fine-tuned copy branch learns invariance to edits; the pretrained feature keeps what the
fine-tune gives up (telling apart two photos of one subject taken the same way), and the
fused score beats both (docs/model-card.md).

A head may be **averaged over quarter turns** (``turns: {"copy": 4}``): in eval mode its
vector is the normalised mean of the head's vectors for the photo and the photo turned by
90°, 180° and 270° (``2``: by 0° and 180°). The four turns of a photo form a group, so a photo
and any quarter-turned copy of it get the same vector — what a copy found with its EXIF
orientation lost or turned in an editor needs — at four forward passes per photo. Heads that
are not averaged are read from the first pass. Training (``train()`` mode) sees single views.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import timm
import torch
import torch.nn.functional as F
from torch import nn


TURNS = (1, 2, 4)  # subgroups of the quarter turns: none, the half turn, all four


def check_turns(turns: dict, heads) -> dict[str, int]:
    """``turns`` (head → quarter turns averaged) as ints; ValueError naming a head that does
    not exist or a count that is not a subgroup of the quarter turns."""
    out = {}
    for head, n in turns.items():
        if head not in heads:
            raise ValueError(f"turns for a head that does not exist: '{head}'")
        if int(n) not in TURNS:
            raise ValueError(f"head '{head}' can be averaged over 1, 2 or 4 quarter turns, not {n}")
        out[head] = int(n)
    return out


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
    branches: dict[str, int] = field(default_factory=dict)  # head → trunk stages it owns
    fuse: dict[str, dict] = field(default_factory=dict)  # head → {"weight": w, "dim": d | None}
    turns: dict[str, int] = field(default_factory=dict)  # head → quarter turns averaged (1, 2 or 4)

    def to_dict(self) -> dict:
        return asdict(self)

    def head_dim(self, head: str, width: int | None = None) -> int:
        """Length of ``head``'s vectors: its projection (``width``, the trunk's pooled feature
        size, where it has none) plus its fused part's. Raises ValueError when that needs the
        width and none is given."""
        fuse = self.fuse.get(head)
        parts = [self.heads[head]] + ([fuse.get("dim")] if fuse is not None else [])
        if width is None and any(not d for d in parts):
            raise ValueError(f"the length of head '{head}' depends on the trunk's feature size")
        return sum(int(d or width) for d in parts)

    def head_turns(self, head: str) -> int:
        """How many quarter turns of a photo ``head``'s vector is averaged over (1: none)."""
        return int((self.turns or {}).get(head, 1))

    @classmethod
    def from_dict(cls, data: dict) -> "NetworkConfig":
        known = {k: data[k] for k in ("trunk", "gem_p", "learn_gem_p", "heads", "branches", "fuse", "turns")
                 if k in data}
        return cls(**known)


class Branch(nn.Module):
    """A head's own trunk top: copies of the last stages, head convolution and GeM."""

    def __init__(self, trunk: nn.Module, stages: int, pool: GeM):
        super().__init__()
        self.blocks = copy.deepcopy(nn.Sequential(*list(trunk.blocks)[-stages:]))
        self.conv_head = copy.deepcopy(trunk.conv_head)
        self.bn2 = copy.deepcopy(trunk.bn2)
        self.pool = copy.deepcopy(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.bn2(self.conv_head(self.blocks(x))))


class EmbeddingNet(nn.Module):
    """Returns a dict ``{head: (B, dim) L2-normalised}`` for the heads asked for."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        self.trunk = timm.create_model(config.trunk, pretrained=False, num_classes=0, global_pool="")
        self.pool = GeM(config.gem_p, learnable=config.learn_gem_p)
        width = self.trunk.num_features
        unknown = set(config.branches) - set(config.heads)
        if unknown:
            raise ValueError(f"branches for heads that do not exist: {sorted(unknown)}")
        stages = len(self.trunk.blocks)
        for head, n in config.branches.items():
            if not 1 <= int(n) <= stages:
                raise ValueError(f"branch of head '{head}' must own 1–{stages} stages, not {n}")
        for head, spec in config.fuse.items():
            if head not in config.heads:
                raise ValueError(f"fusion for a head that does not exist: '{head}'")
            if not isinstance(spec, dict) or not 0.0 < float(spec.get("weight", -1)) < 1.0:
                raise ValueError(f"fusion of head '{head}' needs a weight between 0 and 1, not {spec}")
            if spec.get("dim") is not None and not 1 <= int(spec["dim"]) <= width:
                raise ValueError(f"fusion of head '{head}' must project to 1–{width} dimensions")
        check_turns(config.turns, config.heads)
        self.fork = stages - max(config.branches.values(), default=0)  # shared stages
        self.branches = nn.ModuleDict({name: Branch(self.trunk, int(n), self.pool)
                                       for name, n in config.branches.items()})
        self.heads = nn.ModuleDict({
            name: nn.Linear(width, dim) if dim else nn.Identity()
            for name, dim in config.heads.items()})
        self.fusions = nn.ModuleDict({
            name: nn.Linear(width, int(spec["dim"]), bias=False) if spec.get("dim") else nn.Identity()
            for name, spec in config.fuse.items()})
        self.feature_dim = width

    def reset_branches(self) -> None:
        """Start every branch as a copy of the trunk's top (after loading trunk weights)."""
        for name, n in self.config.branches.items():
            self.branches[name] = Branch(self.trunk, int(n), self.pool)

    def head_dim(self, head: str) -> int:
        return self.config.head_dim(head, self.feature_dim)

    def fused(self, head: str, own: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        """``head``'s vector from its own projected output and the shared top's pooled feature
        (unit length; unchanged when ``head`` is not fused)."""
        own = F.normalize(own.float(), dim=-1)
        if head not in self.fusions:
            return own
        w = float(self.config.fuse[head]["weight"])
        other = F.normalize(self.fusions[head](shared).float(), dim=-1)
        return torch.cat([own * w ** 0.5, other * (1.0 - w) ** 0.5], dim=-1)

    def lower(self, x: torch.Tensor) -> torch.Tensor:
        """The shared part of the trunk: stem and the stages before the earliest fork."""
        t = self.trunk
        return t.blocks[:self.fork](t.bn1(t.conv_stem(x)))

    def upper(self, h: torch.Tensor) -> torch.Tensor:
        """The shared trunk top from the fork on, pooled."""
        t = self.trunk
        return self.pool(t.bn2(t.conv_head(t.blocks[self.fork:](h))))

    def branch_features(self, head: str, h: torch.Tensor) -> torch.Tensor:
        """Pooled features for ``head`` from the fork activations ``h``."""
        if head not in self.branches:
            return self.upper(h)
        branch = self.branches[head]
        skip = len(self.trunk.blocks) - self.fork - len(branch.blocks)
        return branch(self.trunk.blocks[self.fork:self.fork + skip](h) if skip else h)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.trunk.forward_features(x))

    def embed_from(self, h: torch.Tensor, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Heads from fork activations; heads on the shared top share one pass through it."""
        shared = None
        out = {}
        for name in names:
            if shared is None and (name not in self.branches or name in self.fusions):
                shared = self.upper(h)
            feats = self.branch_features(name, h) if name in self.branches else shared
            out[name] = self.fused(name, self.heads[name](feats), shared)
        return out

    def forward(self, x: torch.Tensor, heads: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """``x``: (B, 3, S, S) preprocessed photos. In eval mode, heads with ``turns`` are
        averaged over the photos' quarter turns (see the module's docstring)."""
        names = heads or tuple(self.heads.keys())
        out = self.embed_from(self.lower(x), names)
        if self.training:
            return out
        for n in sorted({self.turns(name) for name in names} - {1}):
            turned = tuple(name for name in names if self.turns(name) == n)
            total = {name: out[name].float() for name in turned}
            for k in range(4 // n, 4, 4 // n):
                xk = torch.rot90(x, k, dims=(2, 3)).contiguous(memory_format=torch.channels_last)
                for name, v in self.embed_from(self.lower(xk), turned).items():
                    total[name] = total[name] + v.float()
            out.update({name: F.normalize(v, dim=-1) for name, v in total.items()})
        return out

    def turns(self, head: str) -> int:
        """How many quarter turns of a photo ``head``'s vector is averaged over (1: none)."""
        return self.config.head_turns(head)
