"""Heads that own a branch of the trunk (engine/network.py): shape, sharing, bundles."""
import numpy as np
import pytest
import torch

from engine.embedding import Embedder
from engine.model_bundle import load_bundle, save_bundle
from engine.network import EmbeddingNet, NetworkConfig
from tests import imagegen


def net(branches, heads=None, seed=0):
    torch.manual_seed(seed)
    n = EmbeddingNet(NetworkConfig(heads=heads or {"copy": 16, "semantic": 8}, branches=branches))
    n.reset_branches()
    return n.eval()


def test_a_fresh_branch_is_the_trunk_top_and_forward_is_lower_then_heads():
    n = net({"copy": 2})
    assert n.fork == len(n.trunk.blocks) - 2
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        h = n.lower(x)
        assert torch.allclose(n.branch_features("copy", h), n.pooled(x), atol=1e-5)
        assert torch.allclose(n.upper(h), n.pooled(x), atol=1e-5)
        out = n(x)
        assert set(out) == {"copy", "semantic"} and out["copy"].shape == (2, 16)
        assert torch.allclose(out["copy"].norm(dim=1), torch.ones(2))


def test_branch_weights_are_its_own():
    n = net({"copy": 1})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = n(x)
        for p in n.branches["copy"].parameters():
            p.add_(0.05 * torch.randn_like(p))
        after = n(x)
    assert torch.equal(before["semantic"], after["semantic"])  # shared top untouched
    assert not torch.allclose(before["copy"], after["copy"])


def test_branches_of_different_depths_fork_at_the_earliest():
    n = net({"copy": 2, "semantic": 1})
    assert n.fork == len(n.trunk.blocks) - 2
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        h = n.lower(x)
        assert torch.allclose(n.branch_features("semantic", h), n.pooled(x), atol=1e-5)


@pytest.mark.parametrize("branches, message", [({"colour": 1}, "do not exist"), ({"copy": 0}, "1–7"),
                                               ({"copy": 9}, "1–7")])
def test_bad_branches_are_refused(branches, message):
    with pytest.raises(ValueError, match=message):
        EmbeddingNet(NetworkConfig(heads={"copy": 8}, branches=branches))


def test_bundle_round_trip_keeps_the_branch(tmp_path):
    n = net({"copy": 1})
    with torch.no_grad():
        for p in n.branches["copy"].parameters():
            p.add_(0.02 * torch.randn_like(p))
    card = {"name": "branched", "version": "1", "architecture": n.config.to_dict(),
            "input": {"size": 64, "mean": [127.0] * 3, "std": [128.0] * 3},
            "thresholds": {"copy": {"near": 0.9}, "semantic": {"similar": 0.6}}}
    save_bundle(tmp_path / "b", card, n.state_dict(), half=False)
    assert any(k.startswith("branches.copy.") for k in n.state_dict())
    embedder = Embedder(load_bundle(tmp_path / "b"), device="cpu")
    images = [imagegen.photo(i, (80, 60)) for i in range(3)]
    got = embedder.embed_images(images)
    x = embedder.preprocess(images)
    with torch.no_grad():
        want = n(x)
    for head in ("copy", "semantic"):
        np.testing.assert_allclose(got[head], want[head].numpy(), atol=1e-5)
