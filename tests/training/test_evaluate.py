"""training.evaluate: every metric against a naive Python loop or a hand-worked example, and the
dataset evaluation on a tiny generated Caltech-style folder with a simple real embedder."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

import imagegen
from engine.errors import Cancelled
from training import evaluate
from training.calibrate import threshold_at_precision
from training.evaluate import (
    EvalConfig,
    class_retrieval_metrics,
    evaluate_embedder,
    format_table,
    map_at_r,
    near_duplicate_metrics,
    nmi,
    recall_at_k,
    run_eval,
)
from training.families import FAMILIES


def unit(rng: np.random.Generator, n: int, d: int = 8) -> np.ndarray:
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def angles(*degrees: float) -> np.ndarray:
    rad = np.radians(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], 1)


# ---- naive oracles --------------------------------------------------------------------------

def ranked_others(emb, i, query=None):
    """Other items, most similar to ``query`` (default: item i itself) first (random data: no ties)."""
    q = emb[i] if query is None else query
    others = [j for j in range(len(emb)) if j != i]
    return sorted(others, key=lambda j: -float(np.dot(q, emb[j])))


def naive_recall(emb, labels, k, queries=None):
    hits = [any(labels[j] == labels[i] for j in ranked_others(emb, i, None if queries is None else queries[i])[:k])
            for i in range(len(emb))]
    return sum(hits) / len(emb)


def naive_map_at_r(emb, labels, queries=None):
    aps = []
    for i in range(len(emb)):
        r = sum(1 for j in range(len(emb)) if j != i and labels[j] == labels[i])
        if r == 0:
            continue
        correct, total = 0, 0.0
        for pos, j in enumerate(ranked_others(emb, i, None if queries is None else queries[i])[:r], start=1):
            if labels[j] == labels[i]:
                correct += 1
                total += correct / pos
        aps.append(total / r)
    return sum(aps) / len(aps)


def naive_near_duplicate(query, source, db, ids, ignore=()):
    """Pooled pairs, fully materialised; rank and pooled order put a tied negative first.
    ``ignore``: (query row, db row) pairs dropped from the pool."""
    ranks, pairs = [], []
    dropped = {tuple(p) for p in ignore}
    for i in range(len(query)):
        sims = [float(np.dot(query[i], db[j])) for j in range(len(db))]
        s_pos = sims[ids.index(source[i])]
        negs = [s for j, s in enumerate(sims) if ids[j] != source[i] and (i, j) not in dropped]
        ranks.append(1 + sum(1 for s in negs if s >= s_pos))
        pairs += [(s_pos, 1)] + [(s, 0) for s in negs]
    pairs.sort(key=lambda p: (-p[0], p[1]))
    tp, precisions = 0, []
    for position, (_, is_pos) in enumerate(pairs, start=1):
        if is_pos:
            tp += 1
            precisions.append(tp / position)
    pos = np.array([p[0] for p in pairs if p[1]])
    neg = np.array([p[0] for p in pairs if not p[1]])
    return {"recall@1": sum(r == 1 for r in ranks) / len(ranks), "mAP": sum(1 / r for r in ranks) / len(ranks),
            "micro-AP": sum(precisions) / len(precisions), "threshold": threshold_at_precision(pos, neg, 0.95)}


# ---- class retrieval ------------------------------------------------------------------------

def test_hand_worked_example():
    # Points on the unit circle at 0°, 15°, 100°, 40° with labels A, A, A, B.
    # q0 (A, 0°):   others by angle 15°(A) 40°(B) 100°(A); R = 2 → top 2 = [A, B] → AP = (1/1)/2 = 0.5
    # q1 (A, 15°):  0°(A) 40°(B) 100°(A);                   R = 2 → [A, B]        → AP = 0.5
    # q2 (A, 100°): 40°(B) 15°(A) 0°(A);                    R = 2 → [B, A]        → AP = (1/2)/2 = 0.25
    # q3 (B, 40°):  R = 0 → skipped.                        MAP@R = (0.5 + 0.5 + 0.25) / 3 = 5/12
    # Recall@1: q0 ✓ q1 ✓ q2 ✗ q3 ✗ (no other B) = 1/2; @2: q2 ✓ → 3/4; @4 clips to the 3 others: 3/4.
    emb, labels = angles(0, 15, 100, 40), ["A", "A", "A", "B"]
    assert map_at_r(emb, labels) == pytest.approx(5 / 12)
    assert recall_at_k(emb, labels, (1, 2, 4)) == {1: 0.5, 2: 0.75, 4: 0.75}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("chunk", [5, 1024])
def test_recall_and_map_at_r_match_naive_loops(seed, chunk, monkeypatch):
    monkeypatch.setattr(evaluate, "CHUNK", chunk)
    rng = np.random.default_rng(seed)
    emb = unit(rng, 23).astype(np.float32)
    labels = rng.integers(0, 5, 23).tolist()
    got = recall_at_k(emb, labels, (1, 2, 4, 8))
    assert got == {k: naive_recall(emb, labels, k) for k in (1, 2, 4, 8)}
    assert map_at_r(emb, labels) == pytest.approx(naive_map_at_r(emb, labels), abs=1e-12)


@pytest.mark.parametrize("chunk", [5, 1024])
def test_expanded_search_matches_naive_loops(chunk, monkeypatch):
    # find-similar's query expansion: each row plus its 2 nearest others weighted by their
    # cosines to it (negative ones count 0), summed, at unit length
    monkeypatch.setattr(evaluate, "CHUNK", chunk)
    rng = np.random.default_rng(3)
    emb = unit(rng, 23).astype(np.float32)
    labels = rng.integers(0, 4, 23).tolist()
    want_q = np.stack([emb[i] + sum(max(0.0, float(emb[i] @ emb[j])) * emb[j] for j in ranked_others(emb, i)[:2])
                       for i in range(len(emb))])
    want_q /= np.linalg.norm(want_q, axis=1, keepdims=True)
    queries = evaluate.expand_leave_one_out(emb, 2)
    np.testing.assert_allclose(queries, want_q, rtol=1e-5, atol=1e-6)
    got = class_retrieval_metrics(emb, labels, expand=2)
    assert got["expand"] == 2
    for k in (1, 2, 4, 8):
        assert got[f"recall@{k}"] == naive_recall(emb, labels, k, want_q)
    assert got["map@r"] == pytest.approx(naive_map_at_r(emb, labels, want_q), abs=1e-9)
    assert got["map@r"] != pytest.approx(map_at_r(emb, labels), abs=1e-6)  # expansion changed the ranking


def test_map_at_r_is_one_only_for_perfect_clusters():
    emb = angles(0, 1, 2, 120, 121, 122, 240, 241)
    labels = [0, 0, 0, 1, 1, 1, 2, 2]
    assert map_at_r(emb, labels) == 1.0
    assert map_at_r(emb, [0, 1, 0, 1, 0, 1, 2, 2]) < 1.0


def test_nmi_perfect_and_label_names_do_not_matter():
    rng = np.random.default_rng(0)
    centres = unit(rng, 4, 16) * 10
    emb = np.concatenate([c + rng.normal(scale=0.05, size=(6, 16)) for c in centres])
    labels = np.repeat(["w", "x", "y", "z"], 6)
    assert nmi(emb, labels) == pytest.approx(1.0)
    assert nmi(emb, np.repeat([3, 1, 0, 2], 6)) == pytest.approx(1.0)
    assert nmi(emb, rng.permutation(labels)) < 0.5


def test_class_retrieval_metrics_keys():
    rng = np.random.default_rng(3)
    out = class_retrieval_metrics(unit(rng, 20).astype(np.float32), rng.integers(0, 4, 20))
    assert set(out) == {"recall@1", "recall@2", "recall@4", "recall@8", "map@r", "nmi", "items", "classes", "expand"}
    assert out["recall@1"] <= out["recall@2"] <= out["recall@4"] <= out["recall@8"]


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        recall_at_k(np.zeros((3, 2)), [0, 1])
    with pytest.raises(ValueError):
        map_at_r(angles(0, 90, 180), [0, 1, 2])


# ---- near-duplicate retrieval ---------------------------------------------------------------

def near_dup_case(rng, n_db=17, n_query=29, dim=6, integer=False):
    db = rng.integers(-2, 3, (n_db, dim)).astype(float) if integer else unit(rng, n_db, dim)
    source = rng.integers(0, n_db, n_query)
    noise = rng.integers(-1, 2, (n_query, dim)) if integer else rng.normal(scale=0.7, size=(n_query, dim))
    query = db[source] + noise
    if not integer:
        query /= np.linalg.norm(query, axis=1, keepdims=True)
    ids = [f"img{j:02d}" for j in rng.permutation(n_db)]
    return query, [ids[s] for s in source], db, ids


def check_against_naive(query, source, db, ids, families):
    got = near_duplicate_metrics(query, source, families, db, ids)
    assert got["queries"] == len(query) and got["database"] == len(db)
    groups = {"overall": np.ones(len(query), bool)} | {f: np.array(families) == f for f in set(families)}
    for name, member in groups.items():
        row = got["overall"] if name == "overall" else got["families"][name]
        want = naive_near_duplicate(query[member], [s for s, m in zip(source, member) if m], db, ids)
        assert row["queries"] == int(member.sum())
        for key in ("recall@1", "mAP", "micro-AP"):
            assert row[key] == pytest.approx(want[key], rel=1e-12), (name, key)
        assert row["threshold@95p"] == pytest.approx(want["threshold"][0], rel=1e-12), name
        assert row["recall@95p"] == want["threshold"][1], name


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("chunk", [4, 1024])
def test_near_duplicate_matches_brute_force_pooled_pairs(seed, chunk, monkeypatch):
    monkeypatch.setattr(evaluate, "CHUNK", chunk)
    rng = np.random.default_rng(seed)
    query, source, db, ids = near_dup_case(rng)
    check_against_naive(query, source, db, ids, [["a", "b", "c"][i % 3] for i in range(len(query))])


def test_near_duplicate_ties_count_against_the_positive(monkeypatch):
    # small integer vectors: dot products are exact, so many scores tie
    monkeypatch.setattr(evaluate, "CHUNK", 7)
    query, source, db, ids = near_dup_case(np.random.default_rng(5), n_db=12, n_query=40, dim=3, integer=True)
    check_against_naive(query, source, db, ids, ["x" if i % 4 else "y" for i in range(len(query))])


@pytest.mark.parametrize("chunk", [16, 1024])
def test_near_duplicate_high_precision_threshold_keeps_enough_negatives(chunk, monkeypatch):
    # perfect separation with distinct scores: the 95 % cut lies *below* every positive, after
    # 200/0.95 - 200 = 10 negatives, so the pooled ranking must keep at least those
    monkeypatch.setattr(evaluate, "CHUNK", chunk)
    rng = np.random.default_rng(7)
    db_angles = np.cumsum(rng.uniform(1.0, 2.5, 200))
    db, query = angles(*db_angles), angles(*(db_angles + rng.uniform(0.05, 0.2, 200)))
    ids = list(range(len(db)))
    check_against_naive(query, ids, db, ids, ["f"] * len(query))
    overall = near_duplicate_metrics(query, ids, ["f"] * len(query), db, ids)["overall"]
    assert overall["micro-AP"] == 1.0 and overall["threshold@95p"] < float(np.cos(np.radians(0.2)))


def test_near_duplicate_hand_worked_example():
    # db 0°, 90°, 180°; q0 copies 0° and sits at 10° → rank 1, AP 1;
    # q1 copies 90° but sits at 160°: 180° scores higher → rank 2, AP 1/2.
    # Pooled pairs by score: q0·0° (cos 10°, +), q1·180° (cos 20°, −), q1·90° (cos 70°, +),
    # q0·90° (cos 80°, −), ... → micro-AP = (1/1 + 2/3) / 2 = 5/6.
    got = near_duplicate_metrics(angles(10, 160), [0, 1], ["crop", "mild"], angles(0, 90, 180), [0, 1, 2])
    assert got["overall"]["recall@1"] == 0.5 and got["overall"]["mAP"] == 0.75
    assert got["overall"]["micro-AP"] == pytest.approx(5 / 6)
    assert got["families"]["mild"]["mAP"] == 0.5 and got["families"]["crop"]["micro-AP"] == 1.0


def test_near_duplicate_ignored_pairs_are_neither_hits_nor_misses():
    # the hand-worked example with q1·180° ignored (180° a known copy of q1's source):
    # q1's positive (cos 70°) now outranks every negative it has left → all perfect
    got = near_duplicate_metrics(angles(10, 160), [0, 1], ["crop", "mild"], angles(0, 90, 180), [0, 1, 2],
                                 ignore=[(1, 2)])
    assert got["overall"]["recall@1"] == 1.0 and got["overall"]["mAP"] == 1.0
    assert got["overall"]["micro-AP"] == 1.0 and got["ignored_pairs"] == 1


@pytest.mark.parametrize("chunk", [3, 1024])
def test_near_duplicate_ignore_matches_brute_force(chunk, monkeypatch):
    monkeypatch.setattr(evaluate, "CHUNK", chunk)
    rng = np.random.default_rng(11)
    query, source, db, ids = near_dup_case(rng)
    src = [ids.index(s) for s in source]
    ignore = sorted({(i, int(j)) for i in range(len(query)) for j in rng.integers(0, len(db), 3) if j != src[i]})
    got = near_duplicate_metrics(query, source, ["f"] * len(query), db, ids, ignore=ignore)["overall"]
    want = naive_near_duplicate(query, source, db, ids, ignore)
    for key in ("recall@1", "mAP", "micro-AP"):
        assert got[key] == pytest.approx(want[key], rel=1e-12), key
    assert got["threshold@95p"] == pytest.approx(want["threshold"][0], rel=1e-12)
    # and ignoring something changes the answer on this case (the check can fail)
    plain = near_duplicate_metrics(query, source, ["f"] * len(query), db, ids)["overall"]
    assert plain["micro-AP"] < got["micro-AP"]


def test_near_duplicate_ignoring_the_source_itself_is_refused():
    with pytest.raises(ValueError, match="own source"):
        near_duplicate_metrics(angles(10), [0], ["crop"], angles(0, 90), [0, 1], ignore=[(0, 0)])
    with pytest.raises(ValueError, match="database rows < 2"):
        near_duplicate_metrics(angles(10), [0], ["crop"], angles(0, 90), [0, 1], ignore=[(0, 5)])


def test_ignored_pairs_come_from_the_datasets_own_copy_list(tmp_path):
    for name in ("a/1.jpg", "a/2.jpg", "a/3.jpg", "b/1.jpg", "b/2.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert evaluate.ignored_pairs(tmp_path, [tmp_path / "a/1.jpg"], [tmp_path / "a/1.jpg"]).shape == (0, 2)
    (tmp_path / "duplicates_found.csv").write_text(
        "kind,group,file,label\nsame_dhash64,0,a/1.jpg,a\nsame_dhash64,0,a/2.jpg,a\n"
        "same_dhash64,1,b/1.jpg,b\nsame_dhash64,1,b/2.jpg,b\n")
    sources = [tmp_path / "a/1.jpg", tmp_path / "a/3.jpg", tmp_path / "b/2.jpg"]
    database = sources + [tmp_path / "a/2.jpg", tmp_path / "b/1.jpg"]
    # a/1's copy a/2 (row 3); a/3 has none; b/2's copy b/1 (row 4); never a photo against itself
    assert evaluate.ignored_pairs(tmp_path, sources, database).tolist() == [[0, 3], [2, 4]]
    assert evaluate.copy_groups(tmp_path, database + [tmp_path.parent / "elsewhere.jpg"]) == \
        ["0", None, "1", "0", "1", None]
    (tmp_path / "duplicates_found.csv").write_text("file,label\na/1.jpg,a\n")
    with pytest.raises(evaluate.LookalikeError, match="duplicates_found.csv.*group"):
        evaluate.known_copies(tmp_path)


def test_near_duplicate_unknown_source_is_refused():
    with pytest.raises(ValueError, match="not in the database"):
        near_duplicate_metrics(angles(0), ["nope"], ["crop"], angles(0, 90), ["a", "b"])


# ---- dataset evaluation ---------------------------------------------------------------------

COLOURS = {"ant": (220, 30, 30), "bee": (30, 200, 40), "cat": (30, 40, 220), "dog": (230, 220, 30)}
TRAIN_COLOURS = {"elk": (128, 128, 128)}


class PixelEmbedder:
    """A real if simple embedder: ``semantic`` = colour histogram, ``copy`` = 8×8 grey pixels."""

    model_id = "pixels@1"

    def embed_images(self, images, heads):
        out = {}
        for head in heads:
            rows = [self._histogram(im) if head == "semantic" else self._pixels(im) for im in images]
            rows = np.stack(rows).astype(np.float32)
            out[head] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        return out

    @staticmethod
    def _histogram(im):
        arr = np.asarray(im.convert("RGB").resize((32, 32))) // 64
        codes = arr[..., 0] * 16 + arr[..., 1] * 4 + arr[..., 2]
        return np.bincount(codes.ravel(), minlength=64).astype(float)

    @staticmethod
    def _pixels(im):
        grey = np.asarray(im.convert("L").resize((8, 8), Image.Resampling.BOX), float).ravel()
        return grey - grey.mean() + 1e-3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("caltech")
    rows = []
    for split, colours in (("test", COLOURS), ("train", TRAIN_COLOURS)):
        for c, (name, rgb) in enumerate(colours.items()):
            for i in range(6):
                tint = Image.new("RGB", (64, 48), rgb)
                img = Image.blend(imagegen.photo(100 * c + i + (50 if split == "train" else 0), (64, 48)), tint, 0.6)
                imagegen.save_jpeg(img, root / name / f"image_{i:04d}.jpg", quality=95)
            rows.append({"class": name, "split": split, "images": 6})
    for i in range(3):
        imagegen.save_jpeg(imagegen.photo(900 + i, (64, 48)), root / "BACKGROUND_Google" / f"image_{i:04d}.jpg")
    with open(root / "split.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["class", "split", "images"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def config(dataset, **kw):
    return EvalConfig(dataset, **{"queries": 16, "distractors": 4, "image_size": 64, **kw})


def test_evaluate_embedder_structure_and_sanity(dataset):
    calls = []
    results = evaluate_embedder(PixelEmbedder(), config(dataset), lambda *a: calls.append(a))
    cls = results["class_retrieval"]
    assert (cls["items"], cls["classes"]) == (24, 4)  # test classes only
    assert cls["recall@1"] == cls["map@r"] == 1.0 and cls["nmi"] == pytest.approx(1.0)
    near = results["near_duplicate"]
    assert (near["queries"], near["database"]) == (16, 20)
    assert sorted(near["families"]) == sorted(FAMILIES)
    assert all(row["queries"] == 2 for row in near["families"].values())
    for row in [near["overall"], *near["families"].values()]:
        assert 0 <= row["recall@1"] <= row["mAP"] <= 1 and 0 <= row["micro-AP"] <= 1
    assert near["families"]["mild"]["recall@1"] == 1.0  # resize + JPEG keeps the 8×8 thumbnail
    assert results["model"] == "pixels@1" and results["config"]["dataset"] == str(dataset)
    json.dumps(results)
    done = [c[0] for c in calls]
    assert done == sorted(done) and done[-1] == calls[-1][1] == 24 + 16 + 4
    table = format_table(results)
    assert "| overall | 16 |" in table and "| rotate_flip | 2 |" in table and "recall@8" in table


def test_evaluate_embedder_is_repeatable_and_caps(dataset):
    cfg = config(dataset, class_images=8, background=3, queries=8, distractors=100)
    first, second = (evaluate_embedder(PixelEmbedder(), cfg) for _ in range(2))
    assert first == second
    assert first["class_retrieval"]["items"] == 8 and first["class_retrieval"]["classes"] == 4
    assert first["near_duplicate"]["database"] == 24 + 3  # every test image, plus the background


def test_evaluate_embedder_cancels(dataset):
    with pytest.raises(Cancelled):
        evaluate_embedder(PixelEmbedder(), config(dataset), lambda done, total, what: done < 10)


def test_run_eval_writes_json(dataset, tmp_path, monkeypatch):
    from engine.embedding import Embedder

    monkeypatch.setattr(Embedder, "load", classmethod(lambda cls, model=None, device="auto": PixelEmbedder()))
    out = tmp_path / "reports" / "eval.json"
    results = run_eval(config(dataset), output=out)
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert not math.isnan(results["near_duplicate"]["overall"]["micro-AP"])
