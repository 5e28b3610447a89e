"""Heads averaged over quarter turns: a photo and its turned copies get one vector."""
import numpy as np
import pytest
import torch
from PIL import Image

from engine.embedding import Embedder
from engine.model_bundle import load_bundle, save_bundle
from engine.network import EmbeddingNet, NetworkConfig
from imagegen import photo, save_jpeg
from training.cached import MEAN, STD, embed_activations, embed_turned, lower_activations, preprocess_images

TURNED = [Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270]


def tiny(turns=None, **kwargs) -> EmbeddingNet:
    torch.manual_seed(0)
    config = NetworkConfig(heads={"copy": 16, "semantic": 8}, branches={"copy": 1},
                           fuse={"copy": {"weight": 0.3, "dim": None}}, turns=turns or {}, **kwargs)
    return EmbeddingNet(config).eval()


@torch.no_grad()
def test_four_turns_give_one_vector_and_other_heads_stay_single_view():
    net = tiny({"copy": 4})
    x = torch.randn(3, 3, 64, 64)
    base = net(x)
    assert torch.allclose(base["copy"].norm(dim=1), torch.ones(3), atol=1e-5)
    for k in (1, 2, 3):
        turned = net(torch.rot90(x, k, dims=(2, 3)))
        assert torch.allclose(turned["copy"], base["copy"], atol=1e-5)
        # the semantic head is not averaged: it sees the photo as it is
        assert not torch.allclose(turned["semantic"], base["semantic"], atol=1e-3)
    plain = tiny()(x)
    assert torch.allclose(plain["semantic"], base["semantic"], atol=1e-6)
    assert not torch.allclose(plain["copy"], base["copy"], atol=1e-3)


@torch.no_grad()
def test_two_turns_cover_the_half_turn_only():
    net = tiny({"copy": 2})
    x = torch.randn(2, 3, 64, 64)
    base = net(x, ("copy",))["copy"]
    assert torch.allclose(net(torch.rot90(x, 2, dims=(2, 3)), ("copy",))["copy"], base, atol=1e-5)
    assert not torch.allclose(net(torch.rot90(x, 1, dims=(2, 3)), ("copy",))["copy"], base, atol=1e-3)


def test_training_mode_sees_single_views():
    net = tiny({"copy": 4}).train()
    x = torch.randn(2, 3, 64, 64)
    out = net(x, ("copy",))["copy"]
    assert torch.allclose(out, net.embed_from(net.lower(x), ("copy",))["copy"], atol=1e-6)
    assert out.requires_grad


@pytest.mark.parametrize("turns, message", [({"copy": 3}, "1, 2 or 4"), ({"colour": 4}, "'colour'")])
def test_bad_turns_are_refused(turns, message):
    with pytest.raises(ValueError, match=message):
        tiny(turns)


def test_config_round_trip_and_old_cards():
    config = tiny({"copy": 4}).config
    assert NetworkConfig.from_dict(config.to_dict()).turns == {"copy": 4}
    old = config.to_dict()
    del old["turns"]  # cards written before turns existed
    assert NetworkConfig.from_dict(old).turns == {}


def test_a_turned_plain_head_is_stored_apart(tmp_path):
    """Both heads of the pretrained bundle are the same vector and stored once; averaging one
    of them over turns makes it another vector, stored under its own name."""
    for turns, stored in (({}, ["copy"]), ({"copy": 4}, ["copy", "semantic"])):
        net = EmbeddingNet(NetworkConfig(heads={"copy": None, "semantic": None}, turns=turns))
        card = {"name": "plain", "version": "1", "architecture": net.config.to_dict(),
                "input": {"size": 64, "mean": [127.0] * 3, "std": [128.0] * 3}}
        folder = save_bundle(tmp_path / f"plain{len(turns)}", card, net.state_dict(), half=False)
        assert load_bundle(folder).stored_heads == stored


def test_embedder_finds_a_turned_file_identical(tmp_path):
    """Through the engine: a photo saved turned (EXIF orientation lost, or turned in an editor)
    gets the photo's own vector, up to resampling, where a single view does not."""
    net = tiny({"copy": 4})
    card = {"name": "turny", "version": "1", "architecture": net.config.to_dict(),
            "input": {"size": 96, "mean": [127.0] * 3, "std": [128.0] * 3}}
    folder = save_bundle(tmp_path / "turny", card, net.state_dict(), half=False)
    embedder = Embedder.load(folder, device="cpu")
    original = photo(3, (240, 160))
    paths = [save_jpeg(original, tmp_path / "a.jpg", quality=95)]
    paths += [save_jpeg(original.transpose(t), tmp_path / f"t{i}.jpg", quality=95) for i, t in enumerate(TURNED)]
    vecs = embedder.embed_files(paths, head="copy")
    assert (vecs[1:] @ vecs[0]).min() > 0.999
    single = Embedder(load_bundle(folder), device="cpu")
    single.net.config.turns = {}
    one = single.embed_files(paths, head="copy")
    assert (one[1:] @ one[0]).min() < (vecs[1:] @ vecs[0]).min() - 1e-3


def test_cached_activations_average_as_the_engine_does():
    """Training and benchmarks embed cached lower-trunk activations: turned after
    preprocessing and averaged by ``embed_turned``, they give the engine's vectors."""
    net = tiny({"copy": 4})
    images = [photo(7), photo(8, (180, 240))]
    acts = {k: lower_activations(net, images, 64, turn=k) for k in range(4)}
    got = embed_turned(net, acts.__getitem__, "copy")
    with torch.no_grad():
        expected = net(preprocess_images(images, 64, MEAN, STD), ("copy",))["copy"].numpy()
    assert np.allclose(got, expected, atol=2e-3)  # activations are cached in float16
    single = embed_activations(net, acts[0], "copy")
    assert np.allclose(embed_turned(tiny(), acts.__getitem__, "copy"), embed_activations(tiny(), acts[0], "copy"))
    assert not np.allclose(single, got, atol=1e-3)


def test_a_recipe_with_bad_turns_is_refused_when_building():
    from training.build import ModelRecipe, set_turns

    net = tiny()
    set_turns(net, ModelRecipe(turns={"copy": "4"}))
    assert net.config.turns == {"copy": 4}
    with pytest.raises(ValueError, match="1, 2 or 4"):
        set_turns(net, ModelRecipe(turns={"copy": 3}))
    with pytest.raises(ValueError, match="'colour'"):
        set_turns(net, ModelRecipe(turns={"colour": 4}))
