"""The trainable model: engine's ``EmbeddingNet`` started from pretrained weights.

The engine owns the one network definition (so a bundle loads without training code); this
module builds it for training: the ImageNet EfficientNet-Lite0 trunk (or the trunk of an
existing bundle, to fine-tune a model further), named linear heads, and the trunk freezing
policy of a recipe.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from engine.backbone import TIMM_ARCH, imagenet_state_dict
from engine.model_bundle import load_bundle
from engine.network import EmbeddingNet, NetworkConfig

log = logging.getLogger(__name__)


@dataclass
class ModelConfig:
    heads: dict[str, int | None] = field(default_factory=lambda: {"copy": 256, "semantic": 256})
    trunk: str = TIMM_ARCH
    gem_p: float = 3.0
    learn_gem_p: bool = True
    start_from: str | None = None      # a bundle name/folder; None = ImageNet weights
    trunk_policy: str = "partial"      # "all", "partial" (last blocks + head conv) or "frozen"
    trainable_blocks: int = 2          # with "partial": how many of the 7 stages train
    branches: dict[str, int] = field(default_factory=dict)  # head → own copy of the last n stages


def build_model(config: ModelConfig) -> EmbeddingNet:
    net = EmbeddingNet(NetworkConfig(trunk=config.trunk, gem_p=config.gem_p,
                                     learn_gem_p=config.learn_gem_p, heads=dict(config.heads),
                                     branches=dict(config.branches)))
    if config.start_from:
        _load_trunk_from_bundle(net, config.start_from)
    else:
        trunk_state = {k: v for k, v in imagenet_state_dict().items() if not k.startswith("classifier.")}
        net.trunk.load_state_dict(trunk_state, strict=True)
        net.reset_branches()
    for head in net.heads.values():
        if isinstance(head, nn.Linear):
            _init_projection(head)
    apply_trunk_policy(net, config.trunk_policy, config.trainable_blocks)
    return net


def _load_trunk_from_bundle(net: EmbeddingNet, model: str) -> None:
    bundle = load_bundle(model)
    source = bundle.build_network()
    net.trunk.load_state_dict(source.trunk.state_dict(), strict=True)
    net.pool.p.data.copy_(source.pool.p.data)
    net.reset_branches()
    for name, branch in net.branches.items():  # a branch of the same shape continues training
        if name in source.branches and len(source.branches[name].blocks) == len(branch.blocks):
            branch.load_state_dict(source.branches[name].state_dict())
    for name, head in net.heads.items():
        if name in source.heads and type(source.heads[name]) is type(head):
            if not isinstance(head, nn.Linear) or head.weight.shape == source.heads[name].weight.shape:
                head.load_state_dict(source.heads[name].state_dict())


def _init_projection(layer: nn.Linear) -> None:
    """Orthogonal init keeps cosine geometry of the pooled features at the start."""
    nn.init.orthogonal_(layer.weight)
    nn.init.zeros_(layer.bias)


def apply_trunk_policy(net: EmbeddingNet, policy: str, trainable_blocks: int = 2) -> None:
    if policy not in ("all", "partial", "frozen"):
        raise ValueError(f"trunk policy must be all, partial or frozen, not {policy!r}")
    trunk = net.trunk
    for p in trunk.parameters():
        p.requires_grad = policy == "all"
    if policy == "partial":
        stages = list(trunk.blocks)[-trainable_blocks:] if trainable_blocks > 0 else []
        for module in (*stages, trunk.conv_head, trunk.bn2):
            for p in module.parameters():
                p.requires_grad = True


def parameter_groups(net: EmbeddingNet, lr: float, trunk_lr_mult: float, weight_decay: float) -> list[dict]:
    """AdamW groups: trunk at a lower rate; no weight decay on norms, biases and GeM's p."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        is_trunk = name.startswith("trunk.")
        no_decay = p.ndim <= 1
        groups.setdefault((is_trunk, no_decay), []).append(p)
    return [{"params": params, "lr": lr * (trunk_lr_mult if is_trunk else 1.0),
             "weight_decay": 0.0 if no_decay else weight_decay}
            for (is_trunk, no_decay), params in sorted(groups.items())]
