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


# ---- fused heads: [√w · own, √(1 − w) · shared] ------------------------------------------------

def fused_net(weight=0.3, dim=32, seed=0):
    torch.manual_seed(seed)
    n = EmbeddingNet(NetworkConfig(heads={"copy": 16, "semantic": 8}, branches={"copy": 1},
                                   fuse={"copy": {"weight": weight, "dim": dim}}))
    n.reset_branches()
    with torch.no_grad():
        for p in n.branches["copy"].parameters():  # the branch differs from the shared top
            p.add_(0.05 * torch.randn_like(p))
    return n.eval()


@pytest.mark.parametrize("dim", [32, None])
def test_a_fused_head_scores_the_weighted_sum_of_its_parts_cosines(dim):
    n = fused_net(0.3, dim)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        out = n(x)
        h = n.lower(x)
        own = torch.nn.functional.normalize(n.heads["copy"](n.branch_features("copy", h)), dim=-1)
        shared = torch.nn.functional.normalize(n.fusions["copy"](n.upper(h)), dim=-1)
    assert out["copy"].shape == (4, n.head_dim("copy")) == (4, 16 + (dim or n.feature_dim))
    assert torch.allclose(out["copy"].norm(dim=1), torch.ones(4), atol=1e-6)
    want = 0.3 * own @ own.T + 0.7 * shared @ shared.T
    assert torch.allclose(out["copy"] @ out["copy"].T, want, atol=1e-5)
    assert out["semantic"].shape == (4, 8)  # other heads are untouched
    # the weight is read at run time: a second weight gives the other mix
    n.config.fuse["copy"]["weight"] = 0.6
    with torch.no_grad():
        again = n(x)["copy"]
    assert torch.allclose(again @ again.T, 0.6 * own @ own.T + 0.4 * shared @ shared.T, atol=1e-5)


@pytest.mark.parametrize("fuse, message", [({"colour": {"weight": 0.5}}, "does not exist"),
                                           ({"copy": {"weight": 1.0}}, "between 0 and 1"),
                                           ({"copy": {"dim": 8}}, "between 0 and 1"),
                                           ({"copy": {"weight": 0.5, "dim": 5000}}, "1–1280")])
def test_bad_fusions_are_refused(fuse, message):
    with pytest.raises(ValueError, match=message):
        EmbeddingNet(NetworkConfig(heads={"copy": 8}, fuse=fuse))


def test_a_fused_bundle_round_trips_and_states_its_dimension(tmp_path):
    n = fused_net(0.4, 24)
    card = {"name": "fused", "version": "1", "architecture": n.config.to_dict(),
            "input": {"size": 64, "mean": [127.0] * 3, "std": [128.0] * 3},
            "heads": {"copy": {"dim": 40}, "semantic": {"dim": 8}},
            "thresholds": {"copy": {"near": 0.9}, "semantic": {"similar": 0.6}}}
    save_bundle(tmp_path / "b", card, n.state_dict(), half=False)
    bundle = load_bundle(tmp_path / "b")
    assert bundle.head_dim("copy") == 40 and bundle.stored_heads == ["copy", "semantic"]
    embedder = Embedder(bundle, device="cpu")
    images = [imagegen.photo(i, (80, 60)) for i in range(3)]
    got = embedder.embed_images(images)
    with torch.no_grad():
        want = n(embedder.preprocess(images))
    np.testing.assert_allclose(got["copy"], want["copy"].numpy(), atol=1e-5)
    # a card whose stated size disagrees with its architecture is refused, naming the card
    card["heads"]["copy"]["dim"] = 16
    save_bundle(tmp_path / "c", card, n.state_dict(), half=False)
    from engine.errors import ModelBundleError
    with pytest.raises(ModelBundleError, match=r"card\.json.*'copy' is 16-d in the card but 40-d"):
        load_bundle(tmp_path / "c").build_network()


def test_a_heads_length_comes_from_the_architecture_where_the_card_does_not_say_it(tmp_path):
    config = NetworkConfig(heads={"copy": 16, "semantic": None}, fuse={"copy": {"weight": 0.5, "dim": 8}})
    assert config.head_dim("copy") == 24 and config.head_dim("semantic", 1280) == 1280
    with pytest.raises(ValueError, match="trunk's feature size"):
        config.head_dim("semantic")
    n = fused_net(0.5, 8)
    card = {"name": "nodims", "version": "1", "architecture": n.config.to_dict(),
            "input": {"size": 64, "mean": [127.0] * 3, "std": [128.0] * 3}}
    save_bundle(tmp_path / "b", card, n.state_dict(), half=False)
    bundle = load_bundle(tmp_path / "b")
    assert bundle.head_dim("copy") == 24 == bundle.build_network().head_dim("copy")
