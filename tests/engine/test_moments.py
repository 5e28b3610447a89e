"""Same-moment stacks: time runs, the complete-link guard inside a run, the best shot, and the
"moment" level of a real library built from generated JPEGs with EXIF capture times."""
import math
import shutil

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from engine.library import Library
from engine.moments import best_shot, group_moments, measure, score_shot, time_runs
from imagegen import crop, photo, recompress, save_jpeg


def shot(img: Image.Image, path, when: str | None = None):
    """Save ``img`` as a JPEG whose EXIF DateTimeOriginal is ``when`` ("YYYY:MM:DD HH:MM:SS")."""
    if when is None:
        return save_jpeg(img, path)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = when
    return save_jpeg(img, path, exif=exif)


def pan(img: Image.Image, dx: int) -> Image.Image:
    """The frame a camera panning ``dx`` px to the right would take (same size)."""
    w, h = img.size
    return img.crop((dx, 0, w - 40 + dx, h)).resize((w, h))


def at(seconds: float | None) -> str | None:
    return None if seconds is None else f"2024-05-01T10:{int(seconds) // 60:02d}:{int(seconds) % 60:02d}"


# ---- time runs ---------------------------------------------------------------------------
def test_runs_split_at_gaps_longer_than_the_window():
    ids = [5, 1, 2, 3, 4, 6]
    times = [at(25), at(0), at(10), at(21), None, "not a time"]
    assert time_runs(ids, times) == [[1, 2], [3, 5]]          # 10 s apart joins, 11 s does not
    assert time_runs(ids, times, window_s=11) == [[1, 2, 3, 5]]
    assert time_runs(ids, times, window_s=9.9) == [[3, 5]]


def test_photos_without_a_time_never_join_and_do_not_break_a_run():
    assert time_runs([1, 2, 3], [at(0), None, at(4)]) == [[1, 3]]
    assert time_runs([1, 2], [None, None]) == [] and time_runs([], []) == []


def test_equal_times_are_one_run_in_id_order():
    assert time_runs([9, 3, 7], [at(2), at(2), at(0)], window_s=0) == [[3, 9]]


def test_bad_arguments():
    with pytest.raises(ValueError):
        time_runs([1], [at(0)], window_s=-1)
    with pytest.raises(ValueError):
        time_runs([1, 2], [at(0)])


# ---- grouping inside a run ------------------------------------------------------------------
def _angles(*degrees: float) -> np.ndarray:
    return np.array([[math.cos(math.radians(d)), math.sin(math.radians(d))] for d in degrees], np.float32)


def test_a_panning_burst_does_not_chain_unrelated_frames():
    # each frame ~30° from the last: neighbours are alike (0.85-0.87), frames two apart not (< 0.5)
    vectors = _angles(0, 30, 62, 92)
    times = [at(0), at(1), at(2), at(3)]
    assert group_moments([1, 2, 3, 4], times, vectors, 0.84) == [[1, 2], [3, 4]]
    # without the complete-link guard the chain would glue the whole burst together
    assert group_moments([1, 2, 3, 4], times, vectors, 0.84, link_floor=-1.0) == [[1, 2, 3, 4]]


def test_alike_photos_in_different_runs_or_without_time_stay_apart():
    vectors = _angles(0, 1, 2, 3, 90)
    times = [at(0), at(3), at(60), None, at(2)]   # 3 is a minute later; 4 has no time
    assert group_moments([1, 2, 3, 4, 5], times, vectors, 0.9) == [[1, 2]]
    assert group_moments([10, 11], [at(5), at(0)], _angles(0, 5), 0.9) == [[11, 10]]  # time order


def test_group_moments_checks_shapes():
    with pytest.raises(ValueError):
        group_moments([1, 2], [at(0), at(1)], _angles(0), 0.9)


# ---- best shot -------------------------------------------------------------------------------
def test_best_shot_prefers_the_sharp_frame(tmp_path):
    blurred = save_jpeg(photo(1).filter(ImageFilter.GaussianBlur(2)), tmp_path / "blurred.jpg")
    sharp = save_jpeg(photo(1), tmp_path / "sharp.jpg")
    assert best_shot([str(blurred), str(sharp)]) == (str(sharp), "sharpest of 2, well exposed")
    assert score_shot(str(sharp)).sharpness > 10 * score_shot(str(blurred)).sharpness


def test_best_shot_prefers_the_well_exposed_frame(tmp_path):
    # brighter means more contrast where nothing clipped: the blown-out frame is "sharper"
    blown = save_jpeg(ImageEnhance.Brightness(photo(3)).enhance(2.5), tmp_path / "blown.jpg")
    good = save_jpeg(photo(3), tmp_path / "good.jpg")
    assert score_shot(str(blown)).sharpness > score_shot(str(good)).sharpness
    assert score_shot(str(blown)).highlights > 0.2 > score_shot(str(good)).highlights
    path, reason = best_shot([str(blown), str(good)])
    assert path == str(good)
    assert reason.startswith("well exposed, ") and reason.endswith("% clipped highlights"), reason


def test_unreadable_files_score_lowest_and_never_raise(tmp_path):
    good = save_jpeg(photo(2), tmp_path / "good.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a photo")
    missing = tmp_path / "gone.jpg"
    assert score_shot(str(broken)).error and score_shot(str(missing)).error
    path, reason = best_shot([str(broken), str(missing), str(good)])
    assert path == str(good) and reason.endswith("; 2 could not be read")
    path, reason = best_shot([str(missing), str(broken)])
    assert path == str(missing) and reason.startswith("none of the 2 could be read (")


def test_best_shot_edge_cases(tmp_path):
    only = save_jpeg(photo(3), tmp_path / "only.jpg")
    assert best_shot([str(only)]) == (str(only), "the only photo")
    with pytest.raises(ValueError):
        best_shot([])
    tiny = measure(Image.new("RGB", (2, 1), "white"))
    assert tiny.sharpness == 0.0 and tiny.highlights == 1.0


# ---- the "moment" level of a library -----------------------------------------------------------
@pytest.fixture
def burst(tmp_path):
    folder, scene = tmp_path / "photos", photo(1)
    files = {
        "first": shot(scene, folder / "burst 1.jpg", "2024:05:01 10:00:01"),
        "panned": shot(pan(scene, 20), folder / "burst 2.jpg", "2024:05:01 10:00:03"),
        "shaky": shot(scene.filter(ImageFilter.GaussianBlur(1)), folder / "burst 3.jpg",
                      "2024:05:01 10:00:06"),
        "other": shot(photo(10), folder / "other.jpg", "2024:05:01 10:00:04"),
        "later": shot(recompress(scene, 60), folder / "an hour later.jpg", "2024:05:01 11:00:06"),
        "undated": shot(crop(scene, 0.95), folder / "undated.jpg"),
    }
    (folder / "backup").mkdir()
    files["copy"] = shutil.copy(files["first"], folder / "backup" / "burst 1.jpg")
    return folder, {k: str(v) for k, v in files.items()}


def test_library_stacks_a_burst_but_not_a_photo_taken_an_hour_later(tmp_path, embedder, burst):
    folder, files = burst
    with Library(tmp_path / "lib", embedder=embedder) as lib:
        lib.scan([folder])
        groups = lib.duplicates("moment", 0.8)
        assert len(groups) == 1
        stack = groups[0]
        assert stack.level == "moment"
        stacked = {m.file.path for m in stack.members}
        assert stacked == {files[k] for k in ("first", "copy", "panned", "shaky")}
        assert stack.keep.path == files["first"] == stack.members[0].file.path
        assert stack.reason == "sharpest of 3, well exposed"
        assert {m.file.path: m.similarity for m in stack.members}[files["copy"]] == 1.0
        assert lib.duplicates("moment", 0.8, window_s=1) == []
        default = lib.duplicates("moment")          # the model's calibrated "similar" threshold
        stacked = {m.file.path for g in default for m in g.members}
        assert {files["first"], files["panned"]} <= stacked
        assert files["later"] not in stacked and files["undated"] not in stacked
        assert all(g.level == "moment" for g in default)
        assert all(g.level != "moment" for g in lib.duplicates("similar"))
