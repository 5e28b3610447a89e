"""Review decisions as data: storage, kinds, pairs, snapshots, and what each level hides."""
import pytest

from engine.catalog import Catalog
from engine.errors import LookalikeError
from engine.feedback import FeedbackStore
from engine.keeper_features import jpeg_quality, photo_features, sharpness
from engine.library import Library
from imagegen import photo, save_jpeg


def _record(cat, path, digest):
    fid = cat.upsert_file(str(path), path.stat().st_size, 1, digest, 256, 192, "JPEG", None, None, 1)
    return cat.files_by_ids([fid])[fid]


def test_reviews_round_trip_with_pairs_and_snapshots(tmp_path):
    cat = Catalog(tmp_path / "lib" / "catalog.sqlite")
    files = [save_jpeg(photo(s), tmp_path / f"{s}.jpg") for s in range(3)]
    recs = [_record(cat, f, f"h{i}") for i, f in enumerate(files)]
    store = FeedbackStore(cat, tmp_path / "lib" / "feedback")
    members = [(recs[0], True, 1.0, photo_features(recs[0])), (recs[1], False, 0.93, {}),
               (recs[2], False, 0.91, {})]
    rid = store.record("same-photo", members, level="near", model_id="m", threshold=0.8)
    store.record("similar-not-near", [(recs[1], True, 1.0, {}), (recs[2], True, 0.7, {})], level="near")
    store.record("not-duplicate", [(recs[0], True, 1.0, {}), (recs[2], True, 0.6, {})])
    reviews = store.reviews()
    assert [r.kind for r in reviews] == ["same-photo", "similar-not-near", "not-duplicate"]
    first = reviews[0]
    assert first.id == rid and first.model_id == "m" and first.threshold == 0.8 and first.level == "near"
    assert [m.kept for m in first.members] == [True, False, False]
    assert first.members[0].features["jpeg_quality"] == pytest.approx(90, abs=1)
    assert all(store.snapshot_path(f"h{i}").exists() for i in range(3))
    copy = {(p.hash_a, p.hash_b): p.label for p in store.pairs("copy")}
    # later reviews override earlier ones: h1-h2 was "same photo", then "similar, not near"
    assert copy == {("h0", "h1"): 1, ("h0", "h2"): 0, ("h1", "h2"): 0}
    semantic = {(p.hash_a, p.hash_b): p.label for p in store.pairs("semantic")}
    assert semantic == {("h0", "h1"): 1, ("h0", "h2"): 0, ("h1", "h2"): 1}
    assert store.counts() == {"same-photo": 1, "not-duplicate": 1, "similar-not-near": 1}
    assert FeedbackStore(cat, tmp_path / "x").counts() == store.counts()  # counted in SQL
    with pytest.raises(LookalikeError, match="unknown review kind"):
        store.record("maybe", members)
    cat.delete_review(rid)
    assert len(store.reviews()) == 2


def test_keeper_features_measure_quality_and_sharpness(tmp_path):
    from PIL import Image, ImageFilter

    sharp = photo(1, (320, 240))
    assert sharpness(sharp) > 2 * sharpness(sharp.filter(ImageFilter.GaussianBlur(3)))
    low = save_jpeg(sharp, tmp_path / "low.jpg", quality=40)
    with Image.open(low) as img:
        assert jpeg_quality(img) == pytest.approx(40, abs=1)
    png = tmp_path / "a.png"
    sharp.save(png)
    with Image.open(png) as img:
        assert jpeg_quality(img) is None


def test_library_records_dismissals_and_removals_and_hides_by_level(tmp_path, embedder, monkeypatch):
    import engine.feedback

    snapshot_reads = []
    real_read = engine.feedback.read_photo
    monkeypatch.setattr(engine.feedback, "read_photo", lambda *a, **k: snapshot_reads.append(a) or real_read(*a, **k))
    folder = tmp_path / "photos"
    folder.mkdir()
    base = photo(4, (320, 240))
    save_jpeg(base, folder / "a.jpg", quality=95)
    save_jpeg(base.resize((240, 180)), folder / "b.jpg", quality=80)
    with Library(tmp_path / "lib", embedder=embedder) as lib:
        lib.scan([folder])
        near = lib.duplicates("near", threshold=0.5)
        assert len(near) == 1
        lib.dismiss(near[0], "similar-not-near", threshold=0.5)
        assert lib.duplicates("near", threshold=0.5) == []
        assert len(lib.duplicates("similar", threshold=0.5)) == 1  # still alike
        lib.undismiss(near[0])
        group = lib.duplicates("near", threshold=0.5)[0]
        removed = [m.file.path for m in group.members if m.file.path != group.keep.path]
        assert lib.record_removal([group], removed, {"near": 0.5}) == 1
        lib.forget(removed)
        kinds = [r.kind for r in lib.feedback.reviews()]
        assert kinds == ["similar-not-near", "same-photo"]
        last = lib.feedback.reviews()[-1]
        assert {m.path: m.kept for m in last.members} == {group.keep.path: True, removed[0]: False}
        assert last.threshold == 0.5 and last.model_id == lib.model_id
        # the removed photo's embedding stays for learning; its snapshot is there too
        gone = next(m.content_hash for m in last.members if not m.kept)
        assert lib.catalog.get_embedding(gone, lib.model_id, "copy") is not None
        assert lib.feedback.snapshot_path(gone).exists()
        assert snapshot_reads == []  # snapshots come from the decode that measured the features
        with pytest.raises(LookalikeError):
            lib.dismiss(group, "same-photo")
