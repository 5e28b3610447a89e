"""Training on cached lower-trunk activations: same numbers as the engine, and it learns."""
import copy
import csv
import random

import numpy as np
import pytest
import torch

from engine.embedding import Embedder
from engine.errors import Cancelled
from engine.model_bundle import load_bundle
from tests import imagegen
from training.build import ModelRecipe, build, fit_fusion_map, fuse_from, training_folders
from training.cached import embed_activations, pooled_features, view_activations
from training.cached_train import StageConfig, train_copy_branch, train_projection, whitening_init
from training.evaluate import map_at_r
from training.model import ModelConfig, build_model


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_model(ModelConfig(heads={"copy": 32, "semantic": 16}, branches={"copy": 1},
                                   trunk_policy="frozen")).eval()


def images(n, size=(72, 56)):
    return [imagegen.photo(i, size) for i in range(n)]


def test_cached_embeddings_equal_the_net_on_the_engine_preprocessing(net):
    imgs = images(3)
    acts = view_activations(net, imgs.__getitem__, 3, 1, None, 64)
    assert acts.dtype == torch.float16 and acts.shape[:2] == (3, 1)
    from engine.embedding import preprocess_images
    x = preprocess_images(imgs, 64, torch.full((1, 3, 1, 1), 127.0), torch.full((1, 3, 1, 1), 128.0))
    with torch.no_grad():
        want = net(x)
        cached = torch.nn.functional.normalize(pooled_features(net, acts[:, 0]), dim=-1)
        direct = torch.nn.functional.normalize(net.pooled(x), dim=-1)
        assert float((cached * direct).sum(1).min()) > 0.9999  # float16 storage, nothing else
    for head in ("copy", "semantic"):
        np.testing.assert_allclose(embed_activations(net, acts[:, 0], head), want[head].numpy(), atol=2e-3)


def test_views_are_seeded_per_image_and_view(net):
    calls = []

    def make_view(img, rng):
        calls.append(rng.random())
        return img.rotate(90 * rng.randint(0, 3))
    a = view_activations(net, images(2).__getitem__, 2, 3, make_view, 48, seed=5)
    b = view_activations(net, images(2).__getitem__, 2, 3, make_view, 48, seed=5)
    assert torch.equal(a, b) and len(calls) == 12 and len(set(calls)) == 6
    with pytest.raises(ValueError, match="exactly one view"):
        view_activations(net, images(1).__getitem__, 1, 2, None, 48)


def test_progress_can_stop_the_view_cache(net):
    with pytest.raises(Cancelled):
        view_activations(net, images(3).__getitem__, 3, 1, None, 48, progress=lambda *a: False)


def turned_views(net, seed: int) -> torch.Tensor:
    """(24, 2, ...) cached views: 24 photos, each as it is and turned by 90°, 180° or 270°."""
    rng = random.Random(seed)
    base = images(24, (64, 64))
    turned = [img.rotate(90 * rng.randint(1, 3)) for img in base]
    pair_acts = view_activations(net, (base + turned).__getitem__, 48, 1, None, 48)[:, 0]
    return torch.stack([pair_acts[:24], pair_acts[24:]], 1)


def test_copy_branch_learns_to_match_views_and_leaves_the_rest_alone(net):
    views = turned_views(net, 0)
    semantic_before = net.heads["semantic"].weight.clone()
    trunk_before = [p.clone() for p in net.trunk.parameters()]

    def score():
        a, b = embed_activations(net, views[:, 0], "copy"), embed_activations(net, views[:, 1], "copy")
        return float((a * b).sum(1).mean() - (a @ b.T).mean())
    before = score()
    history = train_copy_branch(net, views, StageConfig(steps=30, batch=12, lr=3e-3, warmup=3, eval_every=10),
                                score)
    assert score() > before + 0.05 and score() == pytest.approx(max(h["score"] for h in history), abs=1e-4)
    assert torch.equal(net.heads["semantic"].weight, semantic_before)
    assert all(torch.equal(a, b) for a, b in zip(trunk_before, net.trunk.parameters()))


def test_copy_branch_with_koleo_still_learns_and_spreads_the_photos_more():
    torch.manual_seed(0)  # its own network: the module's one has been trained by other tests
    net = build_model(ModelConfig(heads={"copy": 32, "semantic": 16}, branches={"copy": 1},
                                  trunk_policy="frozen")).eval()
    views = turned_views(net, 1)
    start = copy.deepcopy((net.branches["copy"].state_dict(), net.heads["copy"].state_dict()))

    def score():
        a, b = embed_activations(net, views[:, 0], "copy"), embed_activations(net, views[:, 1], "copy")
        return float((a * b).sum(1).mean() - (a @ b.T).mean())

    def nearest_other():  # the mean distance from each photo to its nearest other photo
        a = torch.as_tensor(embed_activations(net, views[:, 0], "copy"))
        return float(torch.cdist(a, a).fill_diagonal_(9).min(1).values.mean())
    before = score()
    spread = {}
    for weight in (0.0, 3.0):  # the same start, steps and batches; only the regulariser differs
        net.branches["copy"].load_state_dict(start[0])
        net.heads["copy"].load_state_dict(start[1])
        cfg = StageConfig(steps=30, batch=12, lr=3e-3, warmup=3, eval_every=30, koleo=weight)
        train_copy_branch(net, views, cfg)
        spread[weight] = nearest_other()
        assert score() > before + 0.05
    assert spread[3.0] > spread[0.0] + 0.01


def test_projection_learns_classes_from_cached_features():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 40, generator=gen)
    labels = torch.arange(6).repeat_interleave(10)
    feats = centres[labels][:, None, :] + 1.5 * torch.randn(60, 2, 40, generator=gen)
    head = torch.nn.Linear(40, 8)
    score = lambda: map_at_r(torch.nn.functional.normalize(head(feats[:, 0]), dim=-1).detach().numpy(),  # noqa: E731
                             labels.numpy())
    before = score()
    train_projection(head, feats, labels, StageConfig(steps=60, batch=6, lr=1e-2, warmup=5, eval_every=20), score)
    assert score() > before + 0.1


def test_whitening_init_is_pca_scaled_by_the_root_of_each_components_spread():
    gen = torch.Generator().manual_seed(0)
    scales = torch.tensor([5.0, 2.0, 1.0, 0.5, 0.1])
    feats = (torch.randn(400, 1, 5, generator=gen) * scales + 3.0)
    head = torch.nn.Linear(5, 3)
    whitening_init(head, feats)
    with torch.no_grad():
        out = head(feats[:, 0])
    assert out.mean(0).abs().max() < 1e-4  # centred through the bias
    spread = out.std(0)
    assert torch.allclose(spread, scales[:3].sqrt(), rtol=0.15)  # std^(1 - 1/2) per component
    with pytest.raises(ValueError, match="at least 8"):
        whitening_init(torch.nn.Linear(5, 8), torch.randn(4, 1, 5))


def test_projection_needs_two_classes_with_two_photos():
    with pytest.raises(ValueError, match="two classes"):
        train_projection(torch.nn.Linear(4, 2), torch.randn(3, 1, 4), torch.tensor([0, 1, 2]), StageConfig(steps=1))


@pytest.fixture
def caltech(tmp_path):
    root = tmp_path / "caltech"
    rows = []
    names = ["Faces", "ant", "bee", "cat", "dog", "eel", "fox", "gnu"]
    for c, name in enumerate(names):
        for i in range(5):
            imagegen.save_jpeg(imagegen.class_photo(c, i, (80, 64)), root / name / f"image_{i:04d}.jpg")
        rows.append({"class": name, "split": "test" if name == "gnu" else "train", "images": 5})
    with open(root / "split.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["class", "split", "images"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def tiny_recipe(**kw):
    return ModelRecipe(**{"name": "tiny", "input_size": 64, "train_size": 48, "heads": {"copy": 16, "semantic": 8},
                          "val_fraction": 0.34, "val_images": 10, "copy_views": 2,
                          "copy_stage": {"steps": 3, "batch": 8, "eval_every": 2},
                          "semantic_stage": {"steps": 3, "batch": 4, "eval_every": 2}, **kw})


def test_training_folders_leave_out_excluded_and_test_classes(caltech):
    train, val = training_folders(caltech, tiny_recipe())
    classes = set(train.classes) | set(val.classes)
    assert classes == {"ant", "bee", "cat", "dog", "eel", "fox"} and len(val.classes) == 2
    assert not set(train.classes) & set(val.classes)
    limited, _ = training_folders(caltech, tiny_recipe(limit=7))
    assert len(limited.paths) == 7


def test_build_writes_a_calibrated_bundle_the_engine_loads_and_reuses_caches(caltech, tmp_path):
    work = tmp_path / "work"
    card = build(tiny_recipe(), caltech, tmp_path / "bundle", work)
    assert set(card["thresholds"]) == {"copy", "semantic"}
    assert card["architecture"]["branches"] == {"copy": 1}
    assert "Faces" in card["training_data"]["excluded_classes"]
    embedder = Embedder(load_bundle(tmp_path / "bundle"), device="cpu")
    vec = embedder.embed_images([imagegen.photo(1, (70, 50))])
    assert vec["copy"].shape == (1, 16) and vec["semantic"].shape == (1, 8)
    assert 0 < embedder.threshold("copy", "near") <= 1
    cached = sorted(p.name.split("-")[0] for p in work.iterdir())
    assert cached == ["copy", "copy", "heldout", "semantic"]  # views and the trained copy stage
    stamps = {p: p.stat().st_mtime_ns for p in work.iterdir()}
    again = build(tiny_recipe(semantic_stage={"steps": 2, "batch": 4, "eval_every": 1}), caltech,
                  tmp_path / "bundle2", work)
    assert {p: p.stat().st_mtime_ns for p in work.iterdir()} == stamps  # nothing recomputed
    assert again["metrics"]["history"]["copy"] == card["metrics"]["history"]["copy"]
    build(tiny_recipe(copy_views=3), caltech, tmp_path / "bundle3", work)
    assert len(list(work.iterdir())) == 6  # a changed recipe gets its own views and copy stage


def test_fusion_map_is_the_uncentred_pca_of_unit_features():
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(12, 12, generator=gen))[0]
    spread = torch.tensor([5.0, 3.0, 2.0] + [0.1] * 9)
    feats = (torch.randn(400, 12, generator=gen) * spread) @ basis.T + 0.3
    layer = torch.nn.Linear(12, 3, bias=False)
    fit_fusion_map(layer, feats)
    w = layer.weight.detach().double()
    assert torch.allclose(w @ w.T, torch.eye(3, dtype=torch.float64), atol=1e-5)  # orthonormal rows
    x = torch.nn.functional.normalize(feats.double(), dim=-1)
    vals, vecs = torch.linalg.eigh(x.T @ x / len(x))
    top = vecs[:, -3:]  # the three largest directions of the second moment (not centred)
    assert torch.allclose(top @ top.T, w.T @ w, atol=1e-4)  # the same subspace


def test_build_with_fusion_picks_the_weight_on_held_out_photos_and_fuse_from_matches_it(caltech, tmp_path):
    work = tmp_path / "work"
    recipe = tiny_recipe(fuse={"copy": {"dim": 8, "weights": [0.6, 0.3]}})
    card = build(recipe, caltech, tmp_path / "fused", work)
    rows = card["metrics"]["history"]["fuse"]
    assert [r["weight"] for r in rows] == [0.3, 0.6]  # tried in ascending order
    best = max(rows, key=lambda r: r["score"])["weight"]
    assert [r.get("chosen", False) for r in rows] == [r["weight"] == best for r in rows]
    assert card["architecture"]["fuse"] == {"copy": {"weight": best, "dim": 8}}
    assert card["heads"]["copy"]["dim"] == 24 and "fused with a 8-d PCA" in card["description"]
    bundle = load_bundle(tmp_path / "fused")
    vec = Embedder(bundle, device="cpu").embed_images([imagegen.photo(1, (70, 50))])
    assert vec["copy"].shape == (1, 24) and np.allclose(np.linalg.norm(vec["copy"], axis=1), 1, atol=1e-4)
    assert set(card["thresholds"]) == {"copy", "semantic"}
    # The same stages without fusion, then only the fusion over that bundle: the same weights.
    plain = build(tiny_recipe(), caltech, tmp_path / "plain", work)
    assert "fuse" not in plain["metrics"]["history"] and plain["architecture"]["fuse"] == {}
    again = fuse_from(load_bundle(tmp_path / "plain"), recipe, caltech, tmp_path / "again", work)
    assert again["architecture"] == card["architecture"]
    # (the plain bundle's weights went through fp16 on disk: scores agree to ~1e-4)
    assert [(r["weight"], pytest.approx(r["score"], abs=2e-3)) for r in rows] == \
        [(r["weight"], r["score"]) for r in again["metrics"]["history"]["fuse"]]
    assert again["timings"]["fuse_from"] == load_bundle(tmp_path / "plain").model_id
    a = load_bundle(tmp_path / "fused").build_network().state_dict()
    b = load_bundle(tmp_path / "again").build_network().state_dict()
    assert a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-3) for k in a)
    with pytest.raises(ValueError, match="no 'fuse' stage"):
        fuse_from(load_bundle(tmp_path / "plain"), tiny_recipe(), caltech, tmp_path / "x", work)


def test_fusion_keeps_the_smallest_weight_within_the_tolerance_of_the_best():
    from engine.network import EmbeddingNet, NetworkConfig
    from training.build import fuse_stage

    net = EmbeddingNet(NetworkConfig(heads={"copy": 8, "semantic": 8}, branches={"copy": 1},
                                     fuse={"copy": {"weight": 0.5, "dim": 4}})).eval()
    scores = {0.2: 0.90, 0.4: 0.955, 0.6: 0.958, 0.8: 0.959}

    class Held:  # held-out micro-AP as a function of the weight being tried
        def copy_score(self, n):
            return scores[n.config.fuse["copy"]["weight"]]

    feats = torch.randn(20, net.feature_dim)
    for tolerance, want in ((0.0, 0.8), (0.002, 0.6), (0.005, 0.4), (0.1, 0.2)):
        recipe = ModelRecipe(fuse={"copy": {"dim": 4, "weights": [0.8, 0.2, 0.6, 0.4], "tolerance": tolerance}})
        rows = fuse_stage(net, feats, Held(), recipe)
        assert [r["weight"] for r in rows] == [0.2, 0.4, 0.6, 0.8]
        assert net.config.fuse["copy"]["weight"] == want
        assert [r["weight"] for r in rows if r.get("chosen")] == [want]


def test_copy_branch_can_learn_through_the_fused_vector():
    from training.build import ModelRecipe as Recipe, with_fusion

    torch.manual_seed(1)
    plain = build_model(ModelConfig(heads={"copy": 32, "semantic": 16}, branches={"copy": 1},
                                    trunk_policy="frozen")).eval()
    net = with_fusion(plain, Recipe(fuse={"copy": {"dim": 24, "weights": [0.4]}}))
    views = turned_views(net, 0)
    shared = pooled_features(net, views.flatten(0, 1)).view(24, 2, -1)
    fusion_before = net.fusions["copy"].weight.clone()

    def score():  # on the fused vectors the engine compares
        a, b = embed_activations(net, views[:, 0], "copy"), embed_activations(net, views[:, 1], "copy")
        return float((a * b).sum(1).mean() - (a @ b.T).mean())
    before = score()
    train_copy_branch(net, views, StageConfig(steps=30, batch=12, lr=3e-3, warmup=3, eval_every=10), score,
                      shared=shared)
    assert score() > before + 0.02
    assert torch.equal(net.fusions["copy"].weight, fusion_before)  # the pretrained part stays
    with pytest.raises(ValueError, match="one row per cached view"):
        train_copy_branch(net, views, StageConfig(steps=1, batch=4), shared=shared[:10])
    with pytest.raises(ValueError, match="fused copy head"):
        train_copy_branch(plain, views, StageConfig(steps=1, batch=4), shared=shared)
