"""Threshold calibration: distractors only add negatives, so thresholds can only rise."""
import numpy as np
import pytest
from PIL import Image

from tests import imagegen
from tests.training.test_evaluate import PixelEmbedder
from training.calibrate import calibrate_images, threshold_at_precision


class TwoHeads(PixelEmbedder):
    heads = ["copy", "semantic"]

    def embed_images(self, images, heads=None):
        return super().embed_images(images, heads or self.heads)


def test_threshold_at_precision_matches_a_direct_count():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(0.8, 0.1, 200), rng.normal(0.4, 0.15, 2000)
    thr, recall = threshold_at_precision(pos, neg, 0.9)
    tp, fp = (pos >= thr).sum(), (neg >= thr).sum()
    assert tp / (tp + fp) >= 0.9 and recall == pytest.approx(tp / len(pos))
    below = np.concatenate([pos, neg])[np.concatenate([pos, neg]) < thr].max()
    tp2, fp2 = (pos >= below).sum(), (neg >= below).sum()
    assert tp2 / (tp2 + fp2) < 0.9  # the next lower score would miss the target


def test_distractors_raise_thresholds_and_are_counted():
    originals = [Image.blend(imagegen.photo(i, (64, 48)), Image.new("RGB", (64, 48), c), 0.5)
                 for i, c in enumerate([(255, 0, 0)] * 4 + [(0, 0, 255)] * 4)]
    classes = ["red"] * 4 + ["blue"] * 4
    distractors = [Image.blend(imagegen.photo(100 + i, (64, 48)), Image.new("RGB", (64, 48), (250, 20, 10)), 0.5)
                   for i in range(12)]
    plain = calibrate_images(TwoHeads(), originals, classes, seed=1)
    harder = calibrate_images(TwoHeads(), originals, classes, seed=1, distractors=distractors)
    assert harder["distractors"] == 12 and plain["distractors"] == 0
    for head, level in (("copy", "near"), ("semantic", "similar")):
        assert harder["thresholds"][head][level] >= plain["thresholds"][head][level]
    # reddish distractors look like the red class: the similar threshold must go up
    assert harder["thresholds"]["semantic"]["similar"] > plain["thresholds"]["semantic"]["similar"]
