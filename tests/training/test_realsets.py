"""training.realsets on tiny generated stand-ins for the real near-duplicate sets: every metric
against a brute-force ranking of all pairs (ties: negatives first), with a tiny pixel embedding."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imagegen
from engine.decode import read_photo
from engine.errors import DecodeError, FileError
from training import realsets
from training.realsets import (
    evaluate_faces_pairs,
    evaluate_neardup_real,
    faces_pairs,
    format_realsets,
)


def tiny_embed(images: list[Image.Image]) -> np.ndarray:
    """4×4 grey pixels minus their mean, L2-normalised: deterministic and imperfect."""
    rows = np.stack([np.asarray(img.convert("L").resize((4, 4), Image.Resampling.BOX), np.float32).ravel()
                     for img in images])
    rows -= rows.mean(1, keepdims=True)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def constant_embed(images: list[Image.Image]) -> np.ndarray:
    """Every image scores 1 against every other: all ties, so every metric is the pessimistic one."""
    return np.ones((len(images), 3), np.float32) / np.sqrt(3)


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])


def embedded(embed, paths: list[Path]) -> np.ndarray:
    return embed([read_photo(p, 320).image for p in paths])


def brute_force_ap(scores: list[float], positive: list[bool]) -> tuple[float, bool]:
    """(AP, top item is positive) of a ranking with ties broken against the positives."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], positive[i]))
    hits, precisions = 0, []
    for position, i in enumerate(order, 1):
        if positive[i]:
            hits += 1
            precisions.append(hits / position)
    return float(np.mean(precisions)), positive[order[0]]


@pytest.fixture
def faces(tmp_path) -> Path:
    rows = []
    for i in range(1, 6):
        original = imagegen.photo(i, (96, 72))
        imagegen.save_jpeg(original, tmp_path / "Faces" / f"image_{i:04d}.jpg")
        copy = imagegen.resize(imagegen.crop(original, 0.7 + 0.05 * i), 0.8)
        imagegen.save_jpeg(copy, tmp_path / "Faces_easy" / f"image_{i:04d}.jpg")
        rows += [[f"Faces_easy/image_{i:04d}.jpg", f"face_{i:04d}", "crop_rescale"],
                 [f"Faces/image_{i:04d}.jpg", f"face_{i:04d}", "original"]]
    for i in range(3):
        imagegen.save_jpeg(imagegen.photo(100 + i, (96, 72)), tmp_path / "BACKGROUND" / f"{i}.jpg")
    write_csv(tmp_path / "neardup_faces_pairs.csv", ["file", "group_id", "relation"], rows[::-1])
    return tmp_path


def test_faces_pairs_sorted_by_group(faces):
    pairs = faces_pairs(faces)
    assert [(o.parent.name, c.parent.name) for o, c in pairs] == [("Faces", "Faces_easy")] * 5
    assert [o.name for o, _ in pairs] == [f"image_{i:04d}.jpg" for i in range(1, 6)]
    assert all(o.name == c.name for o, c in pairs)


def test_faces_pairs_errors_name_the_csv(tmp_path, faces):
    with pytest.raises(FileError, match="neardup_faces_pairs.csv: ground-truth csv not found"):
        faces_pairs(tmp_path / "nowhere")
    write_csv(faces / "neardup_faces_pairs.csv", ["file", "group_id", "relation"],
              [["Faces/image_0001.jpg", "face_0001", "original"]])
    with pytest.raises(FileError, match="neardup_faces_pairs.csv: group 'face_0001' lacks"):
        faces_pairs(faces)


@pytest.mark.parametrize("embed", [tiny_embed, constant_embed])
def test_faces_metrics_match_brute_force(faces, embed, monkeypatch):
    monkeypatch.setattr(realsets, "BATCH", 2)  # several decode batches
    pairs = faces_pairs(faces)
    distractors = sorted((faces / "BACKGROUND").glob("*.jpg")) + [pairs[0][0]]  # a pair image: left out
    result = evaluate_faces_pairs(embed, faces, distractors)
    assert (result["queries"], result["database"], result["distractors"]) == (5, 8, 3)
    assert set(result["families"]) == {"faces_crop"}
    db = embedded(embed, [o for o, _ in pairs] + distractors[:3])
    query = embedded(embed, [c for _, c in pairs])
    sims = query @ db.T
    per_query = [brute_force_ap(list(sims[q]), [j == q for j in range(len(db))]) for q in range(5)]
    micro, _ = brute_force_ap(list(sims.ravel()), [j == q for q in range(5) for j in range(len(db))])
    overall = result["overall"]
    assert overall["recall@1"] == pytest.approx(np.mean([top for _, top in per_query]))
    assert overall["mAP"] == pytest.approx(np.mean([ap for ap, _ in per_query]))
    assert overall["micro-AP"] == pytest.approx(micro)


@pytest.fixture
def real(tmp_path) -> Path:
    base, other = imagegen.photo(7, (96, 72)), imagegen.photo(8, (80, 80))
    files = {"a/orig.jpg": base, "a/small.jpg": imagegen.resize(base, 0.5),
             "a/nested/q40.jpg": imagegen.recompress(base, 40), "b/orig.png": other,
             "b/flip.jpg": other.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
             "single/one.jpg": imagegen.photo(9, (96, 72)), "single/two.jpg": imagegen.photo(10, (64, 96))}
    for name, img in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        img.save(tmp_path / name)
    (tmp_path / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    groups = ["g1", "g1", "g1", "g2", "g2", "s1", "s2"]
    rows = [[name, g, "ok", ""] for name, g in zip(files, groups)]
    rows.insert(2, ["a/broken.jpg", "g1", "unreadable", "corrupt copy"])
    write_csv(tmp_path / "groundtruth.csv", ["file", "group_id", "readable", "note"], rows)
    return tmp_path


@pytest.mark.parametrize("embed", [tiny_embed, constant_embed])
def test_neardup_real_matches_brute_force(real, embed, monkeypatch):
    monkeypatch.setattr(realsets, "BATCH", 3)
    result = evaluate_neardup_real(embed, real)
    with (real / "groundtruth.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["readable"] == "ok"]
    files, groups = [r["file"] for r in rows], [r["group_id"] for r in rows]
    emb = embedded(embed, [real / f for f in files])
    sims = emb @ emb.T
    per_query = [brute_force_ap([sims[i, j] for j in range(7) if j != i],
                                [groups[j] == groups[i] for j in range(7) if j != i])
                 for i in range(5)]  # the first five images are in groups of 2 and 3
    pairs = [(i, j) for i in range(7) for j in range(i + 1, 7)]
    micro, _ = brute_force_ap([sims[i, j] for i, j in pairs], [groups[i] == groups[j] for i, j in pairs])
    assert result["recall@1"] == pytest.approx(np.mean([top for _, top in per_query]))
    assert result["mAP"] == pytest.approx(np.mean([ap for ap, _ in per_query]))
    assert result["micro-AP"] == pytest.approx(micro)
    counts = {k: result[k] for k in ("images", "groups", "singletons", "queries", "pairs", "negative_pairs")}
    assert counts == {"images": 7, "groups": 2, "singletons": 2, "queries": 5, "pairs": 4,
                      "negative_pairs": 17}
    assert result["skipped"] == [{"file": "a/broken.jpg", "reason": "readable=unreadable: corrupt copy"}]
    cosines = [p["cosine"] for p in result["positive_pairs"]]
    expected = sorted(float(sims[i, j]) for i, j in pairs if groups[i] == groups[j])
    assert cosines == pytest.approx(expected)


def test_neardup_real_raises_on_an_ok_row_that_does_not_decode(real):
    text = (real / "groundtruth.csv").read_text().replace("unreadable", "ok")
    (real / "groundtruth.csv").write_text(text)
    with pytest.raises(DecodeError, match="broken.jpg"):
        evaluate_neardup_real(tiny_embed, real)


def test_ties_count_against_the_positives(real):
    """Hand-worked: with all scores tied every positive ranks after all negatives."""
    result = evaluate_neardup_real(constant_embed, real)
    group_of_three = (1 / 5 + 2 / 6) / 2  # 2 positives among 6 others
    group_of_two = 1 / 6                  # 1 positive among 6 others
    assert result["recall@1"] == 0.0
    assert result["mAP"] == pytest.approx((3 * group_of_three + 2 * group_of_two) / 5)
    assert result["micro-AP"] == pytest.approx((1 / 18 + 2 / 19 + 3 / 20 + 4 / 21) / 4)


def test_format_realsets(faces, real):
    text = format_realsets(evaluate_faces_pairs(tiny_embed, faces),
                           evaluate_neardup_real(tiny_embed, real))
    assert "Faces crop pairs (5 crops, 5 database images)" in text
    assert "neardup_real (7 images, 2 groups, 2 singletons, 5 queries, 4 positive pairs)" in text
    assert "Hardest positive pairs" in text and "`a/broken.jpg`" in text
    assert text.count("| recall@1 | mAP | micro-AP |") == 2
    assert format_realsets(None, None) == ""
