"""The learned keeper preference: simulated people with their own habits, the fit against
scikit-learn, saving, and a library that follows what it learned."""
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.catalog import FileRecord
from engine.keeper import choose_keeper
from engine.keeper_advisor import KeeperAdvisor
from engine.keeper_model import KeeperPreference, fit_logistic
from engine.keeper_signals import FolderRates, looks_like_copy
from engine.library import Library, _candidate
from imagegen import photo, save_jpeg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: benchmarks/
from benchmarks.bench_keeper import HOME, _copy, _review, originals_user, pixels_user, quality_user  # noqa: E402

def test_originals_user_is_learned_and_the_reason_names_the_folder():
    pref = KeeperPreference.fit(originals_user(40))
    assert pref.fitted and pref.decisions == 40 and pref.held_out == 8
    assert pref.accuracy >= 0.9
    rng = random.Random(99)
    group = [_copy(rng, 24 * 10**6, "PNG", folder=f"{HOME}/Exports"),
             _copy(rng, 2 * 10**6, "JPEG", folder=f"{HOME}/Originals/2031")]   # a year not seen
    index, reason = pref.suggest(group)
    assert index == 1
    assert reason.startswith("learned from your 40 decisions: you keep ")
    assert "Pictures/Originals" in reason


def test_pixels_user_keeps_more_pixels_even_over_a_png():
    pref = KeeperPreference.fit(pixels_user(30))
    assert pref.accuracy >= 0.9
    rng = random.Random(5)
    group = [_copy(rng, 2 * 10**6, "PNG", name="scan.png"), _copy(rng, 8 * 10**6, "JPEG", quality=70)]
    assert group[0]["bytes"] > group[1]["bytes"]        # the PNG is the larger file
    index, reason = pref.suggest(group)
    assert index == 1 and "more pixels" in reason
    assert pref.weights_in_words()[0][1] == "the one with more pixels"


def test_quality_user_keeps_the_highest_jpeg_quality():
    pref = KeeperPreference.fit(quality_user(30))
    assert pref.accuracy >= 0.9
    rng = random.Random(7)
    group = [_copy(rng, 8 * 10**6, "JPEG", quality=q) for q in (62, 94, 80)]
    index, reason = pref.suggest(group)
    assert index == 1 and "higher JPEG quality" in reason


def test_accuracies_of_the_simulated_people(capsys):
    """Mean held-out accuracy over 10 simulated people per habit and number of decisions
    (printed; pytest -s shows the table)."""
    rows = []
    for name, user in (("originals", originals_user), ("pixels", pixels_user), ("quality", quality_user)):
        for n in (5, 10, 25, 50):
            fits = [KeeperPreference.fit(user(n, seed=100 * n + s)) for s in range(10)]
            rows.append((name, n, fits[0].held_out, float(np.mean([f.accuracy for f in fits]))))
    with capsys.disabled():
        print("\nhabit      decisions  held out  mean accuracy (10 people)")
        for name, n, held, acc in rows:
            print(f"{name:<10} {n:>9}  {held:>8}  {acc:>8.2f}")
    assert all(acc >= 0.8 for _, n, _, acc in rows if n >= 25)


def test_too_few_decisions_fit_nothing_and_the_rules_choose(tmp_path):
    reviews = originals_user(4)
    half = _review(99, [reviews[0].members[0].features], 0)         # one copy: not usable
    pref = KeeperPreference.fit([*reviews, half])
    assert not pref.fitted and pref.decisions == 4 and pref.suggest([{}, {}]) is None
    advisor = KeeperAdvisor(tmp_path / "keeper-preference.json")
    assert not advisor.learn(reviews).fitted and advisor.preference is None
    files = [FileRecord(1, "/p/Originals/a.jpg", 100, 1, "x", 10, 10, "JPEG", None, None),
             FileRecord(2, "/p/b.jpg", 100, 2, "x", 20, 20, "JPEG", None, None)]
    candidates = [_candidate(f) for f in files]
    assert advisor.choose(files, candidates) == choose_keeper(candidates)


def test_saved_preference_round_trips(tmp_path):
    pref = KeeperPreference.fit(originals_user(12))
    path = pref.save(tmp_path / "keeper-preference.json")
    again = KeeperPreference.load(path)
    assert again == pref and again.to_dict() == pref.to_dict()
    group = [_copy(random.Random(3), 10**6, folder=f) for f in (f"{HOME}/Exports", f"{HOME}/Originals/x")]
    assert again.suggest(group) == pref.suggest(group)
    assert KeeperPreference.load(tmp_path / "none.json") is None


def test_newton_fit_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = (x @ [1.5, -2, 0, 0.5, 0, 0.2] + rng.normal(size=300) > 0).astype(float)
    w = rng.uniform(0.2, 1.0, 300)
    sk = LogisticRegression(C=1.0, fit_intercept=False, tol=1e-10, max_iter=1000).fit(x, y, sample_weight=w)
    assert fit_logistic(x, y, w) == pytest.approx(sk.coef_[0], abs=1e-5)


def test_folder_rates_are_smoothed_towards_the_parent():
    rates = FolderRates.from_members([m for r in originals_user(20) for m in r.members])
    originals, exports = rates.rate(f"{HOME}/Originals/2015"), rates.rate(f"{HOME}/Exports")
    unseen = rates.rate(f"{HOME}/Originals/1999")               # falls back to Originals
    assert originals > 0.8 and exports < 0.3 and unseen == pytest.approx(rates.rate(f"{HOME}/Originals"))
    assert rates.telling(f"{HOME}/Originals/2015") == f"{HOME}/Originals"
    assert looks_like_copy("beach copy.jpg") and looks_like_copy("IMG_1 (1).jpg")
    assert looks_like_copy("a-1.jpg") and looks_like_copy("a_edited.jpg")
    assert not looks_like_copy("IMG_1234.jpg")


def test_library_follows_the_learned_preference(tmp_path, embedder):
    """Exact copies in Originals and Exports: the rules keep the older, shorter-named Exports
    copy; this person removed it every time, so after learning the Originals copy is kept."""
    photos = tmp_path / "photos"
    (photos / "Ex").mkdir(parents=True)
    for seed in range(7):
        original = save_jpeg(photo(seed, (96, 72)), photos / "Originals" / f"beach{seed}.jpg")
        export = shutil.copy(original, photos / "Ex" / f"b{seed}.jpg")
        os.utime(export, ns=(10**18, 10**18))   # older than the original
    with Library(tmp_path / "lib", embedder=embedder) as lib:
        lib.scan([photos / "Ex", *[photos / "Originals" / f"beach{s}.jpg" for s in range(6)]])
        groups = lib.duplicates("exact")
        assert len(groups) == 6 and all("/Ex/" in g.keep.path for g in groups)   # the rules
        removed = [g.keep.path for g in groups]
        assert lib.record_removal(groups, removed) == 6
        lib.forget(removed)
        for path in removed:
            os.remove(path)
        pref = lib.learn_keeper()
        assert pref.fitted and pref.decisions == 6 and pref.accuracy == 1.0
        assert (tmp_path / "lib" / "keeper-preference.json").exists()
        lib.scan([photos / "Originals"])                          # the seventh pair is new
        group = next(g for g in lib.duplicates("exact") if len(g.members) == 2)
        assert "/Originals/" in group.keep.path
        assert group.reason.startswith("learned from your 6 decisions") and "photos/Originals" in group.reason
    with Library(tmp_path / "lib", embedder=embedder) as again:        # read back from the file
        group = next(g for g in again.duplicates("exact") if len(g.members) == 2)
        assert "/Originals/" in group.keep.path and "learned" in group.reason
