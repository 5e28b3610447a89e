"""Folding BatchNorm into convolutions leaves the network's output unchanged."""
import pytest
import torch
from torch import nn

from engine.fuse import fold_batchnorm
from engine.network import EmbeddingNet, NetworkConfig


def randomise_norms(net):
    gen = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def test_folded_lite0_with_a_branch_gives_the_same_embeddings():
    torch.manual_seed(0)
    net = EmbeddingNet(NetworkConfig(heads={"copy": 16, "semantic": None}, branches={"copy": 1})).eval()
    randomise_norms(net)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        before = net(x)
        count = fold_batchnorm(net)
        after = net(x)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert count > 40 and norms == 0
    for head in before:
        torch.testing.assert_close(after[head], before[head], atol=1e-4, rtol=1e-4)


def test_a_norm_not_after_a_conv_is_left_alone_and_training_nets_are_refused():
    seq = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3)).eval()
    assert fold_batchnorm(seq) == 0
    with pytest.raises(ValueError, match="eval"):
        fold_batchnorm(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)))
