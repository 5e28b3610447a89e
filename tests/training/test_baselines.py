"""training.baselines: hash rows reproduce imagehash's Hamming distances exactly, and behave
like an embedder (heads, model id, evaluation-ready unit rows)."""
from __future__ import annotations

import imagehash
import numpy as np
import pytest

import imagegen
from training.baselines import HashEmbedder


@pytest.fixture(scope="module")
def images():
    base = [imagegen.photo(seed, (96, 72)) for seed in range(5)]
    return base + [imagegen.resize(base[0], 0.6), imagegen.recompress(base[1], 40)]


@pytest.mark.parametrize("kind,hash_size", [("phash", 8), ("dhash", 8), ("phash", 6)])
def test_dot_product_is_one_minus_twice_normalised_hamming(images, kind, hash_size):
    embedder = HashEmbedder(kind, hash_size)
    rows = embedder.embed_images(images, ("copy",))["copy"]
    bits = hash_size * hash_size
    assert rows.dtype == np.float32 and rows.shape == (len(images), bits)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-6)
    reference = getattr(imagehash, kind)
    hashes = [reference(img, hash_size=hash_size) for img in images]
    for i in range(len(images)):
        for j in range(len(images)):
            expected = 1 - 2 * (hashes[i] - hashes[j]) / bits
            assert rows[i] @ rows[j] == pytest.approx(expected, abs=1e-6)


def test_identical_images_score_one_and_copies_beat_unrelated(images):
    embedder = HashEmbedder("phash")
    rows = embedder.embed_images([images[0], images[0].copy(), images[5], images[3]])["copy"]
    assert rows[0] @ rows[1] == pytest.approx(1.0, abs=1e-6)
    assert rows[0] @ rows[2] > rows[0] @ rows[3]  # resized copy above an unrelated photo


def test_heads_and_model_id(images):
    embedder = HashEmbedder("dhash", 8)
    assert embedder.model_id == "imagehash-dhash-64"
    out = embedder.embed_images(images[:2])
    assert set(out) == {"copy", "semantic"}
    assert np.array_equal(out["copy"], out["semantic"])
    assert embedder.embed_images([], ("copy",))["copy"].shape == (0, 64)
    with pytest.raises(ValueError, match="no head"):
        embedder.embed_images(images[:1], ("colour",))


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown hash kind 'ahash'"):
        HashEmbedder("ahash")
