"""Learning from review decisions: the split, the metrics, the verdict, and a tiny real run."""
import numpy as np
import pytest
from PIL import ImageOps

from engine.errors import Cancelled, LookalikeError
from engine.feedback import LabelledPair
from engine.library import DuplicateGroup, Library, Member
from imagegen import crop, photo, resize, save_jpeg
from training.feedback_train import (FeedbackConfig, _batch, _verdict, average_precision,
                                     false_positives_at_recall, split_decisions, train_from_feedback)


def test_split_keeps_each_review_on_one_side_and_drops_pairs_without_pixels():
    pairs = [LabelledPair("a", "b", 1, 1, "same-photo"), LabelledPair("a", "c", 1, 1, "same-photo"),
             LabelledPair("d", "e", 0, 2, "not-duplicate"), LabelledPair("f", "g", 0, 3, "not-duplicate"),
             LabelledPair("x", "a", 0, 4, "not-duplicate")]
    split = split_decisions(pairs, dict.fromkeys("abcdefg"), holdout=0.34, seed=0)
    assert "x" not in split.hashes and len(split.train) + len(split.held) == 4
    side = {}
    for where, rows in (("train", split.train), ("held", split.held)):
        for a, b, _ in rows:
            review = next(p.review_id for p in pairs if {p.hash_a, p.hash_b} == {split.hashes[a], split.hashes[b]})
            assert side.setdefault(review, where) == where
    assert split.held


def test_average_precision_and_false_positives_against_brute_force():
    rng = np.random.default_rng(0)
    scores, labels = rng.random(50), (rng.random(50) < 0.4).astype(int)
    order = np.argsort(-scores)
    hits = labels[order]
    brute = np.mean([hits[:i + 1].mean() for i in range(50) if hits[i]])
    assert average_precision(scores, labels) == pytest.approx(brute)
    pos = np.sort(scores[labels == 1])[::-1]
    cut = pos[int(np.ceil(0.5 * len(pos))) - 1]
    assert false_positives_at_recall(scores, labels, 0.5) == int(((scores >= cut) & (labels == 0)).sum())


def test_verdict_no_worse_on_decisions_better_somewhere_small_benchmark_drop():
    before = {"heldout_ap": 0.80, "heldout_false_positives": 5, "benchmark_micro_ap": 0.90}
    better = {"heldout_ap": 0.85, "heldout_false_positives": 3, "benchmark_micro_ap": 0.895}
    assert _verdict(before, better, 0.01)[0]
    assert _verdict(before, {**better, "heldout_false_positives": 5}, 0.01)[0]  # AP up alone
    ok, reason = _verdict(before, {**better, "benchmark_micro_ap": 0.88}, 0.01)
    assert not ok and "built-in benchmark" in reason
    tie = {**better, "heldout_ap": 0.80, "heldout_false_positives": 5}
    ok, reason = _verdict(before, tie, 0.01)
    assert not ok and "no better" in reason  # a tie on the decisions, a little worse on the benchmark
    assert _verdict(before, {**tie, "benchmark_micro_ap": 0.91}, 0.01)[0]  # the benchmark breaks a tie
    ok, reason = _verdict(before, {**better, "heldout_false_positives": 6}, 0.01)
    assert not ok and "worse on your held-out" in reason


def test_batches_hold_two_rows_per_class_with_negatives_as_separate_classes():
    import torch

    gen = torch.Generator().manual_seed(0)
    cfg = FeedbackConfig(batch=5, pair_batch=4)
    rows, cols = _batch(gen, 6, 10, 3, [(0, 1), (2, 3)], [(4, 5), (0, 5)], cfg)
    assert len(rows) == len(cols) and len(rows) % 2 == 0
    assert (cols < 3).all() and ((rows < 6) | (rows >= 6)).all()
    library_rows = rows[rows >= 6]
    assert len(library_rows) == 10  # 5 photos × 2 views
    pairs = rows.view(-1, 2).tolist()
    assert [0, 1] in pairs and [2, 3] in pairs and [4, 4] in pairs and [5, 5] in pairs


@pytest.fixture
def reviewed_library(tmp_path, embedder):
    folder = tmp_path / "photos"
    folder.mkdir()
    for s in range(14):
        base = photo(s, (320, 240))
        save_jpeg(base, folder / f"{s}.jpg", quality=95)
        if s < 6:  # copies the person will confirm
            save_jpeg(resize(crop(base, 0.8), 0.7), folder / f"{s} edit.jpg", quality=70)
        if 6 <= s < 10:  # a near twin the person says is a different photo
            save_jpeg(ImageOps.mirror(base).rotate(3), folder / f"{s} twin.jpg", quality=90)
    lib = Library(tmp_path / "lib", embedder=embedder)
    lib.scan([folder])
    by_name = {f.path.rsplit("/", 1)[1]: f for f in lib.catalog.files()}
    for s in range(10):  # the groups the person reviewed, as the duplicates view shows them
        original, other = by_name[f"{s}.jpg"], by_name[f"{s} edit.jpg" if s < 6 else f"{s} twin.jpg"]
        group = DuplicateGroup("near", [Member(original, 1.0), Member(other, 0.9)], original, "")
        if s < 6:
            lib.record_removal([group], [other.path])
        else:
            lib.dismiss(group)
    yield lib
    lib.close()


def test_a_tiny_run_measures_before_and_after_and_activates_only_when_better(reviewed_library):
    lib = reviewed_library
    counts = lib.feedback.counts()
    assert counts["same-photo"] >= 3 and counts["not-duplicate"] >= 2
    cfg = FeedbackConfig(steps=6, batch=4, pair_batch=4, views=2, train_size=64, library_photos=8,
                         benchmark_photos=8, holdout=0.3, min_pairs=2)
    seen = []

    def stop_while_training(done, total, what):
        seen.append(what)
        return what != "learning from your decisions"

    with pytest.raises(Cancelled):  # stopped mid-training: nothing is measured, saved or activated
        train_from_feedback(lib, cfg, stop_while_training)
    assert seen.count("learning from your decisions") == 1 and lib.active_model_name() is None
    assert not (lib.folder / "models").exists()
    result = train_from_feedback(lib, cfg)
    for side in (result.before, result.after):
        assert 0 <= side["heldout_ap"] <= 1 and 0 <= side["benchmark_micro_ap"] <= 1
    assert result.pairs["train_pairs"] >= 2 and result.pairs["held_pairs"] >= 1
    assert result.after["recall_at_threshold"] == result.before["recall_at_threshold"]
    if result.activated:
        assert result.bundle.is_dir() and lib.model_id == result.name == lib.active_model_name()
        assert lib.bundle.card["feedback"]["pairs"] == result.pairs
    else:
        assert result.bundle is None and lib.active_model_name() is None
        assert "not activated" in result.reason


def test_too_few_decisions_is_a_clear_error(tmp_path, embedder):
    folder = tmp_path / "p"
    folder.mkdir()
    for s in range(5):
        save_jpeg(photo(s), folder / f"{s}.jpg")
    with Library(tmp_path / "lib", embedder=embedder) as lib:
        lib.scan([folder])
        with pytest.raises(LookalikeError, match="not enough decisions"):
            train_from_feedback(lib, FeedbackConfig(steps=1))


@pytest.mark.parametrize("mode", ["projection", "branch"])
def test_the_trainable_network_starts_from_the_active_embedding(mode):
    import torch

    from engine.model_bundle import load_bundle
    from training.feedback_train import _trainable, _with_projection

    bundle = load_bundle()
    net = _with_projection(bundle) if mode == "projection" else _trainable(bundle, 1)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        want = bundle.build_network().float()(x, ("copy",))["copy"]
        got = net(x, ("copy",))["copy"]
    assert torch.allclose(got, want, atol=1e-5)
    trainable = list(net.heads["copy"].parameters()) if mode == "projection" else list(net.branches["copy"].parameters())
    assert trainable and net.config.heads["semantic"] == bundle.network_config.heads["semantic"]


def test_a_model_averaged_over_turns_is_measured_as_the_engine_reads_photos():
    """Learning from decisions trains on single views, but judges and calibrates the copy
    vectors the library stores: averaged over quarter turns when the model says so."""
    import torch

    from engine.embedding import preprocess_images
    from engine.network import EmbeddingNet, NetworkConfig
    from training.cached import MEAN, STD
    from training.feedback_train import _copy_vectors, _turned_activations

    torch.manual_seed(0)
    net = EmbeddingNet(NetworkConfig(heads={"copy": 16}, branches={"copy": 1}, turns={"copy": 4})).eval()
    images = [photo(1), photo(2, (160, 220))]
    acts = _turned_activations(net, images, 64)
    assert sorted(acts) == [0, 1, 2, 3]
    with torch.no_grad():
        engine = net(preprocess_images(images, 64, MEAN, STD), ("copy",))["copy"].numpy()
    assert np.allclose(_copy_vectors(net, acts), engine, atol=2e-3)
    net.config.turns = {}
    assert sorted(_turned_activations(net, images, 64)) == [0]
