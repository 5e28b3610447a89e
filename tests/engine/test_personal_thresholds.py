"""Personal thresholds: the precision/recall curve against brute force, the chosen threshold,
too few decisions, per-model storage, and a library calibrated on real decisions."""
import json

import pytest

from engine.library import DuplicateGroup, Library, Member
from engine.personal_thresholds import (FILE_NAME, MIN_EACH, PersonalThresholds, calibrate_personal,
                                        fit_level, load_personal, pr_curve,
                                        precision_recall_at, save_personal)
from imagegen import crop, photo, recompress, resize, save_jpeg

# a handmade set of scored pairs: ties, a negative above some positives, a positive far down
SCORES = [0.99, 0.97, 0.97, 0.95, 0.93, 0.93, 0.90, 0.88, 0.85, 0.80, 0.70, 0.62, 0.55, 0.40]
LABELS = [1,    1,    0,    1,    1,    1,    0,    1,    0,    1,    0,    0,    1,    0]


def brute_force(scores, labels, t):
    predicted = [y for s, y in zip(scores, labels) if s >= t]
    return sum(predicted) / len(predicted), sum(predicted) / sum(labels)


def test_curve_matches_brute_force_at_every_distinct_score():
    curve = pr_curve(SCORES, LABELS)
    assert [t for t, _, _ in curve] == sorted(set(SCORES), reverse=True)
    for t, precision, recall in curve:
        assert (precision, recall) == pytest.approx(brute_force(SCORES, LABELS, t))
        assert precision_recall_at(SCORES, LABELS, t) == pytest.approx((precision, recall))
    assert precision_recall_at(SCORES, LABELS, 0.999) == (None, 0.0)
    assert pr_curve([], []) == []


@pytest.mark.parametrize("target", [0.8, 0.85, 0.9, 0.95])
def test_learned_threshold_is_the_lowest_reaching_the_target(target):
    fitted = fit_level("near", SCORES, LABELS, card_threshold=0.6, target=target)
    # brute force: the lowest same-photo pair's score whose precision reaches the target
    candidates = [s for s, y in zip(SCORES, LABELS) if y == 1 and brute_force(SCORES, LABELS, s)[0] >= target]
    assert fitted.fitted and fitted.threshold == min(candidates)
    assert fitted.precision >= target
    assert (fitted.precision, fitted.recall) == pytest.approx(brute_force(SCORES, LABELS, fitted.threshold))
    assert (fitted.card_precision, fitted.card_recall) == pytest.approx(brute_force(SCORES, LABELS, 0.6))
    assert (fitted.positives, fitted.negatives, fitted.decisions) == (8, 6, 14)
    assert fitted.in_use() == fitted.threshold


def test_target_out_of_reach_or_too_few_decisions_keeps_the_card():
    unreachable = fit_level("near", [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [0, 1, 0, 1, 0, 1], 0.75, 0.95)
    assert not unreachable.fitted and unreachable.in_use() == 0.75 and "not reached" in unreachable.note
    few = fit_level("similar", SCORES[:MIN_EACH + 1], LABELS[:MIN_EACH + 1], 0.7, 0.95)
    assert few.negatives < MIN_EACH and not few.fitted and few.in_use() == 0.7
    assert "not enough decisions" in few.note
    assert len(few.curve) == 3                      # the curve is still there to look at
    none = fit_level("near", [], [], 0.8, 0.95)
    assert none.decisions == 0 and none.card_precision is None and none.card_recall is None


def _result(model_id: str) -> PersonalThresholds:
    return PersonalThresholds(model_id, 0.9, {"near": fit_level("near", SCORES, LABELS, 0.9, 0.9),
                                              "similar": fit_level("similar", SCORES[:4], LABELS[:4], 0.6, 0.9)})


def test_saved_per_model_and_read_back(tmp_path):
    first, second = _result("model-a"), _result("model-b")
    save_personal(tmp_path, first)
    save_personal(tmp_path, second)
    assert load_personal(tmp_path, "model-a") == first
    assert load_personal(tmp_path, "model-b") == second
    assert first.learned() == {"near": first.levels["near"].threshold}
    assert load_personal(tmp_path, "model-c") is None          # stale: learned for other models
    assert sorted(json.loads((tmp_path / FILE_NAME).read_text())["models"]) == ["model-a", "model-b"]
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]  # no temporary file left behind


def test_unreadable_file_means_nothing_learned(tmp_path, caplog):
    assert load_personal(tmp_path, "m") is None
    (tmp_path / FILE_NAME).write_text("{not json")
    assert load_personal(tmp_path, "m") is None and FILE_NAME in caplog.text
    result = _result("m")
    save_personal(tmp_path, result)                            # and a save replaces it
    assert load_personal(tmp_path, "m") == result


def _group(files, level="near") -> DuplicateGroup:
    return DuplicateGroup(level, [Member(f, 1.0) for f in files], files[0], "test")


def record_decisions(lib: Library, folder) -> None:
    """One photo kept of three copies (3 same-photo pairs), three different photos
    dismissed (3 not-duplicate pairs), a photo and its crop "similar, not near" (1 pair)."""
    lib.scan([folder])
    by_name = {f.path.rsplit("/", 1)[-1]: f for f in lib.catalog.files()}
    copies = _group([by_name[n] for n in ("a.jpg", "a small.jpg", "a grainy.jpg")])
    removed = [copies.members[1].file.path, copies.members[2].file.path]
    assert lib.record_removal([copies], removed) == 1
    lib.forget(removed)                     # gone from the catalog, embeddings kept
    lib.dismiss(_group([by_name[n] for n in ("b.jpg", "c.jpg", "d.jpg")]))
    lib.dismiss(_group([by_name[n] for n in ("e.jpg", "e cropped.jpg")]), "similar-not-near")


@pytest.fixture
def decided_folder(tmp_path):
    folder = tmp_path / "photos"
    base = photo(1, (320, 240))
    save_jpeg(base, folder / "a.jpg", quality=95)
    save_jpeg(resize(base, 0.75), folder / "a small.jpg", quality=85)
    save_jpeg(recompress(base, 35), folder / "a grainy.jpg")
    for name, seed in (("b", 6), ("c", 7), ("d", 8)):
        save_jpeg(photo(seed, (320, 240)), folder / f"{name}.jpg")
    save_jpeg(photo(9, (320, 240)), folder / "e.jpg")
    save_jpeg(crop(photo(9, (320, 240)), 0.8), folder / "e cropped.jpg")
    return folder


def test_library_learns_thresholds_from_its_decisions(tmp_path, embedder, decided_folder):
    with Library(tmp_path / "lib", embedder=embedder) as lib:
        record_decisions(lib, decided_folder)
        result = calibrate_personal(lib, 0.95)
        assert result.model_id == lib.model_id and set(result.levels) == {"near", "similar"}
        # the crop is a near-level negative and a similar-level positive
        for level, head, counts in (("near", "copy", (3, 4, 0)), ("similar", "semantic", (4, 3, 0))):
            lt = result.levels[level]
            assert (lt.positives, lt.negatives, lt.skipped) == counts
            assert lt.card_threshold == lib.bundle.threshold(head, level)
            assert lt.fitted and lt.precision == 1.0 and lt.recall == 1.0   # copies vs different scenes
            assert lt.threshold in [t for t, _, _ in lt.curve]
        assert result.levels["similar"].threshold < result.levels["near"].threshold
        save_personal(lib.folder, result)
        assert load_personal(lib.folder, lib.model_id) == result
        assert load_personal(lib.folder, "another-model") is None


def test_contents_without_an_embedding_are_scored_from_their_snapshots(tmp_path, embedder, decided_folder,
                                                                       monkeypatch):
    with Library(tmp_path / "lib", embedder=embedder) as lib:
        record_decisions(lib, decided_folder)
        stored = calibrate_personal(lib).levels["near"]
        pairs = lib.feedback.pairs("copy")
        # one content of each review has no embedding, as if it was reviewed under another model
        unknown = {min(p.hash_a for p in pairs if p.kind == kind) for kind in ("same-photo", "not-duplicate")}
        real = lib.catalog.get_embedding
        monkeypatch.setattr(lib.catalog, "get_embedding",
                            lambda h, model, head: None if h in unknown else real(h, model, head))
        from_snapshots = calibrate_personal(lib).levels["near"]
        assert from_snapshots.decisions == 7 and from_snapshots.skipped == 0
        assert [s for s, _, _ in from_snapshots.curve] == pytest.approx([s for s, _, _ in stored.curve], abs=0.05)
        for h in unknown:
            lib.feedback.snapshot_path(h).unlink()
        assert calibrate_personal(lib).levels["near"].skipped == 4   # the pairs touching them


def test_target_precision_must_make_sense(tmp_path, embedder):
    from engine.errors import LookalikeError

    with Library(tmp_path / "lib", embedder=embedder) as lib:
        with pytest.raises(LookalikeError, match="target precision"):
            calibrate_personal(lib, 1.5)
        empty = calibrate_personal(lib)
        assert empty.learned() == {} and all(lt.decisions == 0 for lt in empty.levels.values())
