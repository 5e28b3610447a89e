"""Embedder and model bundles: shapes, normalisation, errors naming files, bundle round trip."""
import json

import numpy as np
import pytest
import torch
from PIL import ImageOps

from engine.embedding import Embedder, pick_device
from engine.errors import DecodeError, LookalikeError, ModelBundleError
from engine.model_bundle import CARD, WEIGHTS, load_bundle, save_bundle
from engine.network import EmbeddingNet, NetworkConfig
from imagegen import photo, save_jpeg


@pytest.fixture
def files(tmp_path):
    return [save_jpeg(photo(s), tmp_path / f"{s}.jpg") for s in range(3)]


def test_embed_files_shape_norm_and_order(embedder, files):
    vecs = embedder.embed_files(files, head="copy")
    assert vecs.shape == (3, embedder.dim("copy")) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    one = embedder.embed_files([files[1]], head="copy")
    assert np.allclose(vecs[1], one[0], atol=1e-5)


def test_edited_copy_is_closer_than_another_photo(embedder, tmp_path):
    a = save_jpeg(photo(1), tmp_path / "a.jpg")
    b = save_jpeg(ImageOps.mirror(photo(1)).resize((200, 150)), tmp_path / "b.jpg", quality=70)
    c = save_jpeg(photo(2), tmp_path / "c.jpg")
    va, vb, vc = embedder.embed_files([a, b, c])
    assert va @ vb > va @ vc + 0.1


def test_unreadable_file_raises_naming_it(embedder, files, tmp_path):
    bad = tmp_path / "broken photo.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(DecodeError, match="broken photo.jpg"):
        embedder.embed_files([files[0], bad])


def test_skip_errors_leaves_bad_files_out_and_reports_them(embedder, files, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    errors = []
    vecs = embedder.embed_files([files[0], bad, files[1]], skip_errors=True, errors=errors)
    assert vecs.shape[0] == 2
    assert [e.path for e in errors] == [str(bad)] and "empty" in errors[0].reason


def test_unknown_head_is_an_error(embedder, files):
    with pytest.raises(LookalikeError, match="no head 'colour'"):
        embedder.embed_files(files, head="colour")


def test_cuda_asked_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(LookalikeError, match="no CUDA"):
        pick_device("cuda")
    assert pick_device("auto").type == "cpu"


def test_bundle_round_trip_gives_same_vectors(tmp_path, embedder):
    torch.manual_seed(0)
    net = EmbeddingNet(NetworkConfig(heads={"copy": 32, "semantic": 16}))
    card = {"name": "tiny", "version": "3", "architecture": net.config.to_dict(),
            "input": {"size": 96, "mean": [127.0] * 3, "std": [128.0] * 3},
            "thresholds": {"copy": {"near": 0.9}, "semantic": {"similar": 0.7}}}
    save_bundle(tmp_path / "tiny", card, net.state_dict(), half=False)
    loaded = Embedder.load(tmp_path / "tiny", device="cpu")
    assert loaded.model_id == "tiny@3" and loaded.dim("copy") == 32 and loaded.dim("semantic") == 16
    assert loaded.threshold("copy", "near") == 0.9
    images = [photo(5), photo(6)]
    x = loaded.preprocess(images)
    with torch.no_grad():
        expected = net.eval()(x)
    got = loaded.embed_images(images)
    for head in ("copy", "semantic"):
        assert np.allclose(got[head], expected[head].numpy(), atol=1e-5)


def test_default_bundle_card_is_complete():
    bundle = load_bundle()
    assert set(bundle.heads) == {"copy", "semantic"}
    assert 0 < bundle.threshold("semantic", "similar") < bundle.threshold("copy", "near") < 1
    assert bundle.input_size == 224 and bundle.mean == [127.0] * 3 and bundle.std == [128.0] * 3


@pytest.mark.parametrize("damage", ["no-weights", "bad-json", "no-arch", "wrong-shapes"])
def test_damaged_bundle_raises_model_bundle_error(tmp_path, damage):
    net = EmbeddingNet(NetworkConfig(heads={"copy": 8}))
    card = {"name": "t", "version": "1", "architecture": net.config.to_dict(),
            "input": {"size": 64, "mean": [0.0] * 3, "std": [1.0] * 3}}
    folder = save_bundle(tmp_path / "t", card, net.state_dict())
    if damage == "no-weights":
        (folder / WEIGHTS).unlink()
    elif damage == "bad-json":
        (folder / CARD).write_text("{not json")
    elif damage == "no-arch":
        (folder / CARD).write_text(json.dumps({"name": "t", "version": "1", "input": {}}))
    else:
        card["architecture"]["heads"] = {"copy": 16}
        (folder / CARD).write_text(json.dumps(card))
    with pytest.raises(ModelBundleError, match=str(folder)):
        load_bundle(folder).build_network()


def test_unknown_model_name_lists_where_it_looked(tmp_path):
    with pytest.raises(ModelBundleError, match="no such model bundle"):
        load_bundle("does-not-exist", (tmp_path,))


def test_storage_heads_of_the_built_in_bundles():
    from engine.model_bundle import load_bundle

    pretrained = load_bundle("lite0-imagenet-gem")  # both heads: the pooled 1280-d feature
    assert pretrained.stored_heads == ["copy"]
    assert [pretrained.storage_head(h) for h in ("copy", "semantic")] == ["copy", "copy"]
    trained = load_bundle("lookalike-angular-v1")  # a branch and a projection each: distinct
    assert trained.stored_heads == ["copy", "semantic"]
    assert trained.storage_head("semantic") == "semantic"
