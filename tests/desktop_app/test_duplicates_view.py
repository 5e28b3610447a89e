"""The duplicates view: review decisions (plain), the group model, and the whole flow on a
scanned folder (regroup, not-a-duplicate, trash with a fake trash dir, undo, compare)."""
import os
from dataclasses import dataclass

import pytest
from PySide6.QtWidgets import QMenu

from desktop_app.views.group_model import GroupListModel, GroupRole, ReviewState, format_bytes

WAIT = 60000


@dataclass(frozen=True)
class Rec:
    path: str
    size: int = 1000
    width: int | None = 100
    height: int | None = 100
    mtime_ns: int = 0
    capture_time: str | None = None
    id: int = 0
    content_hash: str = "h"
    format: str | None = "JPEG"
    camera: str | None = None


@dataclass(frozen=True)
class Mem:
    file: Rec
    similarity: float = 1.0


@dataclass(frozen=True)
class Grp:
    members: list
    keep: Rec
    level: str = "near"
    reason: str = "largest"


def group(*records, keep=0):
    return Grp([Mem(r) for r in records], records[keep])


@pytest.fixture
def two_groups():
    a = group(Rec("/p/a.jpg", size=3000, width=200, height=200, mtime_ns=5),
              Rec("/p/copies/a2.jpg", size=2000, width=100, height=100, mtime_ns=1),
              Rec("/q/a3.jpg", size=9000, width=300, height=300, mtime_ns=9))
    b = group(Rec("/p/b.jpg", size=500, mtime_ns=2, capture_time="2019-05-01T10:00:00"),
              Rec("/q/b2.jpg", size=700, mtime_ns=1, capture_time="2020-01-01T00:00:00"))
    return a, b


def marked(state):
    return sorted(f.path for f in state.marked_files())


# ---- ReviewState (no widgets) ------------------------------------------------------------
def test_default_marks_keep_the_suggested_copy(two_groups):
    state = ReviewState(list(two_groups))
    assert marked(state) == ["/p/copies/a2.jpg", "/q/a3.jpg", "/q/b2.jpg"]
    assert state.space_to_free() == 2000 + 9000 + 700
    assert state.groups_losing_every_copy() == []
    assert "3 file(s)" in state.summary() and "11.7 KB" in state.summary()
    assert state.summary().endswith("/q/b2.jpg")


def test_keep_largest_and_oldest(two_groups):
    state = ReviewState(list(two_groups))
    state.apply("largest")
    assert marked(state) == ["/p/a.jpg", "/p/b.jpg", "/p/copies/a2.jpg"]   # b: same pixels, b2 larger file
    state.apply("oldest")   # a: mtime; b: capture time wins over the file time
    assert marked(state) == ["/p/a.jpg", "/q/a3.jpg", "/q/b2.jpg"]


def test_keep_in_folder_leaves_groups_without_a_photo_there(two_groups):
    state = ReviewState(list(two_groups))
    state.set_marked("/p/b.jpg", True)
    state.set_marked("/q/b2.jpg", False)
    state.apply("folder", "/p/copies")
    assert marked(state) == ["/p/a.jpg", "/p/b.jpg", "/q/a3.jpg"]   # b untouched: nothing in /p/copies
    state.apply("folder", "/p")          # subfolders count as inside
    assert marked(state) == ["/q/a3.jpg", "/q/b2.jpg"]
    with pytest.raises(ValueError):
        state.apply("folder")


def test_clear_and_suggested(two_groups):
    state = ReviewState(list(two_groups))
    state.apply("clear")
    assert marked(state) == [] and state.space_to_free() == 0
    state.apply("suggested")
    assert marked(state) == ["/p/copies/a2.jpg", "/q/a3.jpg", "/q/b2.jpg"]


def test_every_copy_marked_is_detected(two_groups):
    a, b = two_groups
    state = ReviewState([a, b])
    state.set_marked("/p/b.jpg", True)
    assert state.groups_losing_every_copy() == [b]
    state.set_marked("/q/b2.jpg", False)
    assert state.groups_losing_every_copy() == []


def test_regroup_keeps_decisions_for_photos_still_shown(two_groups):
    a, b = two_groups
    state = ReviewState([a, b])
    state.set_marked("/q/a3.jpg", False)
    state.set_marked("/q/b2.jpg", False)
    state.set_groups([a])
    assert marked(state) == ["/p/copies/a2.jpg"]
    state.set_groups([a, b])          # b's decision was dropped with it: back to the default
    assert marked(state) == ["/p/copies/a2.jpg", "/q/b2.jpg"]


def test_format_bytes():
    assert format_bytes(999) == "999 bytes"
    assert format_bytes(1500) == "1.5 KB"
    assert format_bytes(2_300_000) == "2.3 MB"
    assert format_bytes(None) == "?"


def test_group_list_model(qtmodeltester, two_groups):
    model = GroupListModel()
    model.set_groups(list(two_groups))
    qtmodeltester.check(model)
    assert model.rowCount() == 2
    assert model.index(0, 0).data() == "3 photos · near · a.jpg"
    assert model.index(1, 0).data(GroupRole) is two_groups[1]
    model.remove_group(two_groups[0])
    assert model.rowCount() == 1 and model.group(0) is two_groups[1]
    qtmodeltester.check(model)


# ---- the view on a scanned folder ----------------------------------------------------------
@pytest.fixture
def view(services, photo_folder, qtbot):
    from desktop_app.views.duplicates_view import DuplicatesView

    job = services.scan([str(photo_folder)])
    with qtbot.waitSignal(job.finished, timeout=WAIT):
        pass
    widget = DuplicatesView(services)
    qtbot.addWidget(widget)
    widget.confirm = lambda text: True
    widget.warnings = []
    widget.warn = widget.warnings.append
    return widget


def refreshed(view, qtbot, action=None):
    with qtbot.waitSignal(view.groupsChanged, timeout=WAIT):
        (action or view.refresh)()
    return view.model.groups()


def names(group):
    return sorted(m.file.path.rsplit("/", 1)[1] for m in group.members)


def test_near_group_with_keeper_and_live_threshold(view, qtbot, qtmodeltester):
    groups = refreshed(view, qtbot)
    assert len(groups) == 1 and groups[0].level == "near"
    assert names(groups[0]) == ["beach copy.jpg", "beach-small.jpg", "beach.jpg"]
    qtmodeltester.check(view.model)
    keeper = groups[0].keep.path
    assert keeper.endswith("/beach.jpg")
    assert view._cards[keeper].keep_label.text().startswith("KEEP — ")
    assert not view._cards[keeper].remove_box.isChecked()
    assert all(c.remove_box.isChecked() for p, c in view._cards.items() if p != keeper)
    assert sorted(f.path for f in view.marked_files()) == sorted(p for p in view._cards if p != keeper)
    qtbot.waitUntil(lambda: all(not c.thumb.pixmap().isNull() for c in view._cards.values()), timeout=WAIT)
    with qtbot.waitSignal(view.groupsChanged, timeout=WAIT):   # debounced: one regroup for three moves
        for value in (90, 95, 100):
            view.slider.setValue(value)
    assert view.threshold() == 1.0
    assert [(g.level, names(g)) for g in view.model.groups()] == [("exact", ["beach copy.jpg", "beach.jpg"])]
    refreshed(view, qtbot, view._on_reset_clicked)
    assert view.threshold() is None and len(view.model.groups()[0].members) == 3
    refreshed(view, qtbot, lambda: view.set_level("exact"))
    assert not view.slider.isEnabled() and names(view.model.groups()[0]) == ["beach copy.jpg", "beach.jpg"]


def test_moment_level_stacks_a_burst_with_its_best_shot(view, qtbot, services, tmp_path):
    from PIL import Image, ImageFilter

    from imagegen import photo, save_jpeg

    folder, scene = tmp_path / "burst", photo(1)
    for name, img, when in (("IMG_1.jpg", scene, "10:00:01"),
                            ("IMG_2.jpg", scene.filter(ImageFilter.GaussianBlur(1)), "10:00:04")):
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9003] = f"2024:05:01 {when}"
        save_jpeg(img, folder / name, exif=exif)
    with qtbot.waitSignal(services.scan([str(folder)]).finished, timeout=WAIT):
        pass
    groups = refreshed(view, qtbot, lambda: view.set_level("moment"))
    assert [(g.level, names(g)) for g in groups] == [("moment", ["IMG_1.jpg", "IMG_2.jpg"])]
    assert view.level_box.currentText() == "Same moment (bursts)"
    assert view.slider.isEnabled() and view.slider.value() == round(100 * services.thresholds()["similar"])
    assert view.threshold() is None and not view.dismiss_button.isEnabled()
    keeper = groups[0].keep.path
    assert keeper.endswith("/IMG_1.jpg")
    assert view._cards[keeper].keep_label.text() == "BEST SHOT — sharpest of 2, well exposed"
    other = next(m.file.path for m in groups[0].members if m.file.path != keeper)
    assert not view.state.is_marked(groups[0], other)  # the other shot is a photo, not a copy
    assert refreshed(view, qtbot, lambda: view.slider.setValue(100)) == []
    refreshed(view, qtbot, lambda: view.set_level("near"))
    assert view.dismiss_button.isEnabled()


def test_only_the_latest_regroup_is_shown(view, qtbot):
    refreshed(view, qtbot)
    shown = []
    view.groupsChanged.connect(shown.append)
    view._threshold = 1.0
    first = view.refresh()
    view._threshold = None
    second = view.refresh()
    with qtbot.waitSignals([first.finished, second.finished], timeout=WAIT):
        pass
    qtbot.waitUntil(lambda: bool(shown), timeout=WAIT)
    qtbot.wait(50)
    assert shown == [1] and len(view.model.groups()[0].members) == 3


def test_not_a_duplicate_is_remembered(view, qtbot):
    refreshed(view, qtbot)
    refreshed(view, qtbot, view._on_dismiss_clicked)
    assert view.model.rowCount() == 0
    for _ in range(2):   # the near group stays gone; byte-identical copies are still reported
        groups = refreshed(view, qtbot)
        assert [(g.level, names(g)) for g in groups] == [("exact", ["beach copy.jpg", "beach.jpg"])]


def test_similar_not_a_copy_hides_the_group_at_the_near_level_only(view, qtbot, services):
    refreshed(view, qtbot)
    assert view.similar_button.isEnabled()
    refreshed(view, qtbot, view.similar_button.click)
    assert [g.level for g in refreshed(view, qtbot)] == ["exact"]  # the near group is gone
    reviews = services.library.feedback.reviews()
    assert [r.kind for r in reviews] == ["similar-not-near"] and reviews[0].level == "near"
    view.set_level("similar")
    assert not view.similar_button.isEnabled()


def test_move_to_trash_and_undo(view, qtbot, photo_folder, tmp_path):
    group = refreshed(view, qtbot)[0]
    marked_files = view.marked_files()
    before = {f.path: open(f.path, "rb").read() for f in marked_files}
    assert len(before) == 2 and not view.undo_button.isEnabled()
    with qtbot.waitSignal(view.libraryChanged, timeout=WAIT):
        view.trash_button.click()
    qtbot.waitUntil(lambda: view.model.rowCount() == 0, timeout=WAIT)
    assert all(not os.path.exists(p) for p in before)
    trashed = sorted(p.name for p in (tmp_path / "fake-trash" / "files").iterdir())
    assert trashed == sorted(p.rsplit("/", 1)[1] for p in before)
    assert (photo_folder / "beach.jpg").exists() and view.undo_button.isEnabled()
    review = view.services.library.feedback.reviews()[-1]  # the person kept the rest
    assert review.kind == "same-photo" and sum(m.kept for m in review.members) >= 1
    with qtbot.waitSignal(view.libraryChanged, timeout=WAIT):
        view.undo_button.click()
    qtbot.waitUntil(lambda: view.model.rowCount() == 1, timeout=WAIT)
    assert {p: open(p, "rb").read() for p in before} == before
    assert names(view.model.groups()[0]) == names(group)
    assert not view.undo_button.isEnabled()


def test_refuses_to_remove_every_copy_and_waits_for_confirmation(view, qtbot, photo_folder):
    refreshed(view, qtbot)
    asked = []
    view.confirm = lambda text: asked.append(text) or False
    assert view.move_marked_to_trash() is None and len(asked) == 1     # cancelled: nothing moves
    assert "2 file(s)" in asked[0] and "beach copy.jpg" in asked[0]
    keeper_card = view._cards[view.current_group().keep.path]
    keeper_card.remove_box.setChecked(True)
    assert view.move_marked_to_trash() is None
    assert len(asked) == 1 and "every copy" in view.warnings[0]
    assert len(list(photo_folder.rglob("*.jpg"))) == 5 and len(view.marked_files()) == 3


def failed_removal(view, qtbot) -> str:
    with qtbot.waitSignal(view.libraryChanged, timeout=WAIT):
        view.trash_button.click()
    return view.warnings[-1]


def test_engine_refuses_when_the_kept_copy_vanished_from_disk(view, qtbot, photo_folder, tmp_path):
    group = refreshed(view, qtbot)[0]
    os.unlink(group.keep.path)             # deleted outside the app after the review
    message = failed_removal(view, qtbot)
    assert "no copy" in message and group.keep.path in message and "no longer on disk" in message
    assert len(list(photo_folder.rglob("*.jpg"))) == 4
    assert not (tmp_path / "fake-trash" / "files").exists() or not any((tmp_path / "fake-trash" / "files").iterdir())


def test_file_changed_since_review_is_refused_and_nothing_moves(view, qtbot, photo_folder):
    refreshed(view, qtbot)
    first, second = view.marked_files()
    with open(second.path, "ab") as f:     # edited in another program after the review
        f.write(b"more")
    message = failed_removal(view, qtbot)
    assert second.path in message and "changed since it was reviewed" in message
    assert "nothing was moved" in message and os.path.exists(first.path)
    assert not view.services.can_undo()


def test_removal_to_a_chosen_folder_and_undo(view, qtbot, photo_folder, tmp_path):
    chosen = tmp_path / "put aside"
    chosen.mkdir()
    view.services.set_removal_folder(chosen)
    refreshed(view, qtbot)
    marked_files = view.marked_files()
    asked = []
    view.confirm = lambda text: asked.append(text) or True
    with qtbot.waitSignal(view.libraryChanged, timeout=WAIT):
        view.trash_button.click()
    assert asked[0].startswith(f"Move 2 file(s) to the folder {chosen}?")
    for f in marked_files:
        assert not os.path.exists(f.path) and (chosen / f.path.lstrip("/")).is_file()
    with qtbot.waitSignal(view.libraryChanged, timeout=WAIT):
        view.undo_button.click()
    assert all(os.path.exists(f.path) for f in marked_files) and list(chosen.iterdir()) == []
    view.services.set_removal_folder(None)
    assert view.services.removal_folder() is None


def test_a_removal_folder_inside_a_photo_folder_is_refused(view, qtbot, photo_folder):
    view.services.set_removal_folder(photo_folder / "removed")
    refreshed(view, qtbot)
    message = failed_removal(view, qtbot)
    assert "inside the photo folder" in message
    assert len(list(photo_folder.rglob("*.jpg"))) == 5


def test_rules_apply_to_the_view(view, qtbot, photo_folder):
    refreshed(view, qtbot)
    view.choose_folder = lambda: str(photo_folder / "copies")
    view._on_folder_clicked()
    assert sorted(f.path.rsplit("/", 1)[1] for f in view.marked_files()) == ["beach.jpg"]
    assert view._cards[str(photo_folder / "beach.jpg")].remove_box.isChecked()
    view.apply_rule("clear")
    assert view.marked_files() == [] and not view.trash_button.isEnabled()


def test_find_similar_from_the_context_menu(view, qtbot):
    refreshed(view, qtbot)
    path = next(iter(view._cards))
    view._on_card_menuRequested(path, view.mapToGlobal(view.rect().center()))
    menu = view.findChild(QMenu)
    with qtbot.waitSignal(view.findSimilarRequested) as blocker:
        menu.actions()[0].trigger()
    assert blocker.args == [path]
    menu.close()


# ---- compare -------------------------------------------------------------------------------
def test_compare_dialog(services, photo_folder, qtbot):
    from desktop_app.views.compare_dialog import CompareDialog

    dialog = CompareDialog(services, str(photo_folder / "beach.jpg"),
                           str(photo_folder / "copies" / "beach-small.jpg"))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(dialog.loaded, timeout=WAIT)
    left, right = dialog.panes
    assert right.shown_size() == left.shown_size()          # the smaller copy is shown at the same scale
    zoom = dialog.zoom
    dialog.zoom_in()
    dialog.zoom_in()
    assert left.zoom == right.zoom == pytest.approx(zoom * 1.25 ** 2)
    dialog.set_zoom(4.0)
    qtbot.waitUntil(lambda: left.horizontalScrollBar().maximum() > 0)
    left.horizontalScrollBar().setValue(left.horizontalScrollBar().maximum())
    assert right.horizontalScrollBar().value() == right.horizontalScrollBar().maximum() > 0
    dialog.flicker_button.setChecked(True)
    assert dialog.flicker_timer.isActive() and dialog.showing() == 0
    qtbot.waitUntil(lambda: dialog.showing() == 1, timeout=2000)
    assert left.pixmap is dialog.pixmaps[1] and not dialog.columns[1].isVisible()
    dialog.diff_button.setChecked(True)
    assert not dialog.flicker_button.isChecked() and not dialog.flicker_timer.isActive()
    diff = dialog.diff_pixmap
    assert diff is not None and not diff.isNull() and diff.size() == dialog.pixmaps[0].size()
    assert left.pixmap is diff


def test_compare_dialog_explains_a_crop(services, tmp_path, qtbot):
    from desktop_app.views.compare_dialog import CompareDialog
    from imagegen import photo, save_jpeg

    original = photo(3, (640, 480))
    first = save_jpeg(original, tmp_path / "pair" / "original.jpg")
    second = save_jpeg(original.crop((120, 90, 520, 390)), tmp_path / "pair" / "cropped.jpg")
    dialog = CompareDialog(services, str(first), str(second))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: "crop" in dialog.explain_label.text(), timeout=WAIT)
    assert "B is a 39% crop of A" in dialog.explain_label.text()
    assert dialog.aligned_button.isEnabled() and dialog.heat_pixmap.size().width() == 640
    qtbot.waitUntil(dialog.loaded, timeout=WAIT)
    dialog.aligned_button.setChecked(True)
    assert dialog.panes[0].pixmap is dialog.heat_pixmap and not dialog.columns[1].isVisible()
    dialog.diff_button.setChecked(True)
    assert not dialog.aligned_button.isChecked() and dialog.panes[0].pixmap is dialog.diff_pixmap


def test_compare_from_the_view(view, qtbot):
    refreshed(view, qtbot)
    dialog = view.compare()
    qtbot.waitUntil(dialog.loaded, timeout=WAIT)
    group = view.current_group()
    assert dialog.paths == [group.keep.path, group.members[1].file.path]
    dialog.close()
