"""Browse page: the photo list model (lazy thumbnails, sort, folder filter), the problems model,
the preview pane and the BrowseView itself."""
import dataclasses
import os
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage, QPixmap

from desktop_app.models import PathRole, PhotoListModel, ProblemsModel, RecordRole, format_bytes

DECORATION = Qt.ItemDataRole.DecorationRole


@dataclasses.dataclass(frozen=True)
class FakeRecord:  # duck-typed FileRecord: the models never import the engine
    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str = "ab" * 32
    width: int | None = 640
    height: int | None = 480
    format: str | None = "JPEG"
    capture_time: str | None = None
    camera: str | None = None


@dataclasses.dataclass(frozen=True)
class FakeProblem:
    path: str
    kind: str
    message: str


class FakeLoader(QObject):
    loaded = Signal(object, QImage)
    missing = Signal(object, str)

    def __init__(self):
        super().__init__()
        self.requests, self.cancels = [], 0

    def request(self, key, path, content_hash, max_side=None):
        self.requests.append(key)

    def cancel_pending(self):
        self.cancels += 1


def fake_records(root="/photos"):
    return [
        FakeRecord(1, f"{root}/b/zebra.jpg", 300, 5_000_000_000_000_000_000, capture_time="2019-06-01T10:00:00"),
        FakeRecord(2, f"{root}/a/Apple.jpg", 100, 1_000_000_000_000_000_000),            # 2001, no EXIF
        FakeRecord(3, f"{root}/a/mango.jpg", 200, 1_700_000_000_000_000_000, capture_time="2005-01-01T00:00:00"),
        FakeRecord(4, f"{root}/ab/kiwi.jpg", 50, 1_600_000_000_000_000_000),              # 2020
    ]


def names(model):
    return [model.data(model.index(r, 0)) for r in range(model.rowCount())]


def scan_and_list(services, folder, qtbot):
    job = services.scan([str(folder)])
    with qtbot.waitSignal(job.finished, timeout=60000) as scanned:
        pass
    files = services.files()
    with qtbot.waitSignal(files.finished, timeout=10000) as listed:
        pass
    return scanned.args[0], listed.args[0]


def test_photo_list_model_sorts_and_filters(qtmodeltester, qapp):
    loader = FakeLoader()
    model = PhotoListModel(loader)
    model.set_photos(fake_records())
    qtmodeltester.check(model)
    assert loader.cancels >= 1
    assert names(model) == ["Apple.jpg", "mango.jpg", "zebra.jpg", "kiwi.jpg"]    # date: EXIF, else mtime
    model.sort_by("name")
    assert names(model) == ["Apple.jpg", "kiwi.jpg", "mango.jpg", "zebra.jpg"]
    model.sort_by("size")
    assert names(model) == ["kiwi.jpg", "Apple.jpg", "mango.jpg", "zebra.jpg"]
    model.sort_by("size", descending=True)
    assert names(model)[0] == "zebra.jpg"
    with pytest.raises(ValueError):
        model.sort_by("colour")

    model.sort_by("name")
    model.set_folder("/photos/a/")               # "/photos/ab" must not match "/photos/a"
    assert names(model) == ["Apple.jpg", "mango.jpg"]
    assert model.total_count() == 4 and model.row_of_path("/photos/b/zebra.jpg") == -1
    qtmodeltester.check(model)
    model.set_folder(None)
    assert model.rowCount() == 4
    index = model.index(model.row_of_path("/photos/b/zebra.jpg"), 0)
    assert model.data(index, PathRole) == "/photos/b/zebra.jpg"
    assert model.data(index, RecordRole).id == 1
    tip = model.data(index, Qt.ItemDataRole.ToolTipRole)
    assert "/photos/b/zebra.jpg" in tip and "640×480" in tip and "300 bytes" in tip


def test_thumbnails_are_requested_once_and_missing_ones_marked_broken(qapp):
    loader = FakeLoader()
    model = PhotoListModel(loader, icon_size=64)
    model.set_photos(fake_records())
    first = model.data(model.index(0, 0), DECORATION)
    model.data(model.index(0, 0), DECORATION)
    assert isinstance(first, QPixmap) and first.width() == 64
    assert loader.requests == [model.record(0).id]
    changed = []
    model.dataChanged.connect(lambda a, b, roles: changed.append((a.row(), b.row(), list(roles))))
    loader.missing.emit(model.record(0).id, "cannot read file")
    assert changed == [(0, 0, [DECORATION])]
    broken = model.data(model.index(0, 0), DECORATION)
    assert broken.toImage() != first.toImage()
    assert loader.requests == [model.record(0).id]      # a broken one is not asked for again
    loader.loaded.emit(999, QImage(8, 8, QImage.Format.Format_RGB888))   # not in the model: ignored
    assert len(changed) == 1


def test_lru_cache_evicts_and_rerequests(qapp):
    loader = FakeLoader()
    model = PhotoListModel(loader, cache_size=2)       # small images are not scaled up
    model.set_photos(fake_records())
    image = QImage(20, 10, QImage.Format.Format_RGB888)
    image.fill(Qt.GlobalColor.red)
    for row in range(3):
        model.data(model.index(row, 0), DECORATION)
        loader.loaded.emit(model.record(row).id, image)
    assert model.data(model.index(2, 0), DECORATION).size().toTuple() == (20, 10)
    assert len(loader.requests) == 3
    model.data(model.index(0, 0), DECORATION)           # evicted: a placeholder again, asked again
    assert len(loader.requests) == 4 and loader.requests[-1] == model.record(0).id


def test_photo_list_model_on_a_scanned_folder(services, photo_folder, qtbot, qtmodeltester):
    report, records = scan_and_list(services, photo_folder, qtbot)
    assert report.found == 5 and len(records) == 5
    model = PhotoListModel(services.loader)
    model.set_photos(records)
    qtmodeltester.check(model)
    model.sort_by("name")
    assert names(model) == sorted((os.path.basename(r.path) for r in records), key=str.casefold)
    model.set_folder(str(photo_folder / "copies"))
    assert sorted(names(model)) == ["beach copy.jpg", "beach-small.jpg"]
    model.set_folder(None)

    row = names(model).index("beach.jpg")
    index = model.index(row, 0)
    placeholder = model.data(index, DECORATION)
    assert placeholder.size().toTuple() == (model.icon_size, model.icon_size) == (160, 160)
    with qtbot.waitSignal(model.dataChanged, timeout=20000,
                          check_params_cb=lambda top, bottom, roles: top.row() == row) as changed:
        pass
    assert list(changed.args[2]) == [DECORATION]
    thumb = model.data(index, DECORATION)
    assert thumb.toImage() != placeholder.toImage()
    assert thumb.deviceIndependentSize().toSize().toTuple() == (160, 120)   # 256×192 photo, fit to 160

    gone = dataclasses.replace(records[0], id=10_000, path=str(photo_folder / "gone.jpg"), content_hash=None)
    model.set_photos([*records, gone])
    row = model.row_of_path(gone.path)
    model.data(model.index(row, 0), DECORATION)
    with qtbot.waitSignal(model.dataChanged, timeout=20000,
                          check_params_cb=lambda top, bottom, roles: top.row() == row):
        pass
    assert model.data(model.index(row, 0), DECORATION).toImage() != placeholder.toImage()


def test_problems_model(qtmodeltester, qapp):
    model = ProblemsModel()
    qtmodeltester.check(model)
    model.set_problems([FakeProblem("/p/a.jpg", "decode", "truncated JPEG"),
                        FakeProblem("/p/b.txt", "unsupported", "not an image")])
    qtmodeltester.check(model)
    assert model.rowCount() == 2 and model.columnCount() == 3
    assert [model.headerData(c, Qt.Orientation.Horizontal) for c in range(3)] == ["Path", "Problem", "Reason"]
    assert model.data(model.index(1, 2)) == "not an image"
    assert model.problem(0).path == "/p/a.jpg"


def test_format_bytes():
    assert format_bytes(999) == "999 bytes"
    assert format_bytes(1536) == "1.5 KB"
    assert format_bytes(2_500_000) == "2.5 MB"


def test_browse_view_lists_previews_and_finds_similar(services, photo_folder, qtbot):
    from desktop_app.views.browse_view import BrowseView

    scan_and_list(services, photo_folder, qtbot)
    view = BrowseView(services)
    qtbot.addWidget(view)
    view.resize(900, 600)
    view.show()
    with qtbot.waitSignal(view.photosLoaded, timeout=10000) as loaded:
        view.refresh()
    assert loaded.args == [5] and view.model.rowCount() == 5
    assert "5 photos" in view.count_label.text()
    qtbot.waitUntil(lambda: view.folder_combo.count() == 2, timeout=10000)   # All folders + photo_folder

    target = str(photo_folder / "other 6.jpg")
    with qtbot.waitSignal(view.preview.imageShown, timeout=20000) as shown:
        assert view.select_path(target)
    assert shown.args == [target]
    assert view.preview.image_size() == (256, 192)
    assert view.preview.field_text("Name") == "other 6.jpg"
    assert view.preview.field_text("Resolution") == "256×192"
    assert view.preview.field_text("Folder") == str(photo_folder)

    with qtbot.waitSignal(view.findSimilarRequested, timeout=1000) as similar:
        view.find_similar_action.trigger()
    assert similar.args == [target]
    view.copy_path_action.trigger()
    from PySide6.QtGui import QGuiApplication
    assert QGuiApplication.clipboard().text() == target

    view.sort_combo.setCurrentIndex(view.sort_combo.findData("size"))
    assert view.current_record().path == target                   # selection survives a re-sort
    sizes = [view.model.record(r).size for r in range(5)]
    assert sizes == sorted(sizes)
    view.folder_combo.setCurrentIndex(view.folder_combo.findData(str(photo_folder)))
    assert view.model.rowCount() == 5


def test_browse_view_folder_filter(services, photo_folder, tmp_path, qtbot):
    from desktop_app.views.browse_view import BrowseView
    from imagegen import photo, save_jpeg

    second = tmp_path / "second"
    save_jpeg(photo(3), second / "alone.jpg")
    scan_and_list(services, photo_folder, qtbot)
    scan_and_list(services, second, qtbot)
    view = BrowseView(services)
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.photosLoaded, timeout=10000):
        view.refresh()
    qtbot.waitUntil(lambda: view.folder_combo.count() == 3, timeout=10000)
    view.folder_combo.setCurrentIndex(view.folder_combo.findData(str(second)))
    assert view.model.rowCount() == 1 and view.count_label.text() == "1 of 6 photos"
    assert view.select_path(str(photo_folder / "beach.jpg"))     # hidden by the filter: shows all
    assert view.folder_combo.currentIndex() == 0 and view.model.rowCount() == 6


def test_preview_ignores_stale_results(services, photo_folder, qtbot):
    from desktop_app.views.preview import PreviewWidget

    _, records = scan_and_list(services, photo_folder, qtbot)
    preview = PreviewWidget(services)
    qtbot.addWidget(preview)
    first, second = records[0], records[3]
    shown = []
    preview.imageShown.connect(shown.append)
    preview.show_record(first)
    with qtbot.waitSignal(preview.imageShown, timeout=20000):
        preview.show_record(second)
    services.wait(10000)
    qtbot.wait(50)
    assert shown == [second.path] and preview.record is second
    preview.actual_size_button.setChecked(True)
    assert preview.image_label.pixmap().size().toTuple() == preview.image_size()
    preview.clear()
    assert not preview.has_image() and preview.field_text("Name") == ""


def test_preview_reports_a_file_that_went_away(services, photo_folder, qtbot):
    from desktop_app.views.preview import PreviewWidget

    _, records = scan_and_list(services, photo_folder, qtbot)
    Path(records[0].path).unlink()
    preview = PreviewWidget(services)
    qtbot.addWidget(preview)
    with qtbot.waitSignal(preview.loadFailed, timeout=20000):
        preview.show_record(records[0])
    assert not preview.has_image() and "Cannot show" in preview.image_label.text()
