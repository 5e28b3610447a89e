"""Fold BatchNorm into the convolution before it, for inference only.

A trained network's BatchNorm is a fixed per-channel affine map, so ``bn(conv(x))`` equals one
convolution with scaled weights and a bias. EfficientNet-Lite runs about 50 separate
BatchNorm ops per photo; folding them removes that work (and the memory traffic) from every
scan. Each BatchNorm that directly follows a convolution among its siblings (timm registers
``conv_pw, bn1, conv_dw, bn2, …`` in forward order) is folded; the norm's activation (timm's
``BatchNormAct2d``) stays. The network must be in eval mode and is changed in place: never
fold a network that will be trained.
"""
from __future__ import annotations

import torch
from torch import nn


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.data.mul_(scale.view(-1, 1, 1, 1).to(conv.weight.dtype))
    new_bias = (bias - bn.running_mean) * scale + bn.bias.detach()
    conv.bias = nn.Parameter(new_bias.to(conv.weight.dtype), requires_grad=False)


def _after_norm(bn: nn.BatchNorm2d) -> nn.Module:
    """What is left of a norm once its affine part lives in the convolution."""
    parts = [getattr(bn, name) for name in ("drop", "act") if isinstance(getattr(bn, name, None), nn.Module)]
    parts = [p for p in parts if not isinstance(p, nn.Identity)]
    return nn.Sequential(*parts) if parts else nn.Identity()


def fold_batchnorm(net: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a convolution; returns how many were folded."""
    if net.training:
        raise ValueError("fold_batchnorm is for inference: call net.eval() first")
    folded = 0
    for parent in list(net.modules()):
        previous: tuple[str, nn.Module] | None = None
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Identity):
                continue
            if (isinstance(child, nn.BatchNorm2d) and previous is not None
                    and isinstance(previous[1], nn.Conv2d) and child.track_running_stats
                    and previous[1].out_channels == child.num_features):
                _fold(previous[1], child)
                setattr(parent, name, _after_norm(child))
                folded += 1
            previous = (name, child)
    return folded
