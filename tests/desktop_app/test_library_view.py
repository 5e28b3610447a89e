"""Library page: add folders (call, drag-and-drop), scan with progress and a summary, cancel,
remove a folder, problems table."""
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent

from desktop_app.views.library_view import LibraryView, format_duration, local_folders


def make_view(services, qtbot):
    view = LibraryView(services)
    qtbot.addWidget(view)
    return view


def mime_with(*paths):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def test_add_folders_scans_with_progress_and_summary(services, photo_folder, qtbot):
    (photo_folder / "notes.jpg").write_bytes(b"not a photo at all")
    view = make_view(services, qtbot)
    progress = []
    view.progress_bar.valueChanged.connect(progress.append)
    with qtbot.waitSignal(view.scanFinished, timeout=60000) as finished:
        with qtbot.waitSignal(view.foldersChanged, timeout=10000):
            view.add_folders([str(photo_folder)])
        assert view.is_scanning() and view.progress_bar.isVisibleTo(view)
        assert not view.scan_button.isEnabled() and view.cancel_button.isEnabled()
        job = view._scan_job
        with qtbot.waitSignal(job.progress, timeout=60000):
            pass
    report = finished.args[0]
    assert report.found == 5 and report.embedded + report.reused == 5 and len(report.problems) == 1
    assert progress, "the progress bar never moved"
    text = view.summary_label.text()
    assert "Found 5 photos" in text and "1 problems" in text and "removed" in text
    assert not view.is_scanning() and view.scan_button.isEnabled()
    assert view.problems_model.rowCount() == 1
    assert view.problems_model.problem(0).path.endswith("notes.jpg")
    qtbot.waitUntil(lambda: view.folders() == [str(photo_folder)], timeout=10000)

    with qtbot.waitSignal(view.scanFinished, timeout=60000) as again:   # incremental rescan
        view.start_scan()
    assert again.args[0].unchanged == 5 and again.args[0].embedded == 0
    assert "5 unchanged" in view.summary_label.text()


def test_cancel_returns_to_idle(services, photo_folder, qtbot):
    view = make_view(services, qtbot)
    qtbot.waitUntil(lambda: services.wait(0), timeout=10000)     # the initial refresh
    with qtbot.waitSignal(view.scanFinished, timeout=60000) as finished:
        view.start_scan([str(photo_folder)])
        view.cancel_button.click()
        assert view.status_label.text() == "Cancelling…" and not view.cancel_button.isEnabled()
    report = finished.args[0]
    assert report is None or report.cancelled
    assert "cancelled" in view.summary_label.text().lower()
    assert not view.is_scanning() and view.scan_button.isEnabled() and view.error_label.text() == ""
    assert not view.cancel_button.isVisibleTo(view) and not view.progress_bar.isVisibleTo(view)


def test_drop_a_folder_adds_it(services, photo_folder, tmp_path, qtbot):
    view = make_view(services, qtbot)
    stray = tmp_path / "file.txt"
    stray.write_text("x")
    assert local_folders(mime_with(photo_folder, stray)) == [str(photo_folder)]
    assert local_folders(mime_with(stray)) == []
    remote = QMimeData()
    remote.setUrls([QUrl("https://example.com/photos/")])
    assert local_folders(remote) == []

    actions = Qt.DropAction.CopyAction
    not_folders = mime_with(stray)   # keep a reference: the event does not own its mime data
    enter = QDragEnterEvent(QPointF(5, 5), actions, not_folders, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    view.dragEnterEvent(enter)
    assert not enter.isAccepted()
    mime = mime_with(photo_folder)
    enter = QDragEnterEvent(QPointF(5, 5), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    view.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(5, 5), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(view.scanFinished, timeout=60000) as finished:
        view.dropEvent(drop)
    assert drop.isAccepted() and finished.args[0].found == 5
    qtbot.waitUntil(lambda: view.folders() == [str(photo_folder)], timeout=10000)


def test_add_a_missing_folder_shows_why(services, tmp_path, qtbot):
    view = make_view(services, qtbot)
    with qtbot.waitSignal(view.foldersChanged, timeout=10000):
        view.add_folders([str(tmp_path / "nowhere")])
    assert "not a folder" in view.error_label.text() and not view.is_scanning()


def test_remove_folder_after_confirming(services, photo_folder, qtbot, monkeypatch):
    view = make_view(services, qtbot)
    with qtbot.waitSignal(view.scanFinished, timeout=60000):
        view.add_folders([str(photo_folder)])
    qtbot.waitUntil(lambda: view.folders() == [str(photo_folder)], timeout=10000)
    view.folder_list.setCurrentRow(0)
    asked = []
    monkeypatch.setattr(view, "_confirm_remove", lambda path: asked.append(path) or False)
    view.remove_button.click()
    assert asked == [str(photo_folder)] and services.wait(10000) and view.folders() == [str(photo_folder)]
    monkeypatch.setattr(view, "_confirm_remove", lambda path: True)
    with qtbot.waitSignal(view.foldersChanged, timeout=10000):
        view.remove_button.click()
    qtbot.waitUntil(lambda: view.folders() == [], timeout=10000)
    assert all(p.exists() for p in photo_folder.rglob("*.jpg"))    # photos stay on disk
    files = services.files()
    with qtbot.waitSignal(files.finished, timeout=10000) as listed:
        pass
    assert listed.args[0] == []


def test_format_duration():
    assert format_duration(4.4) == "4 s"
    assert format_duration(125) == "2 min 05 s"
    assert format_duration(3 * 3600 + 60) == "3 h 01 min"
