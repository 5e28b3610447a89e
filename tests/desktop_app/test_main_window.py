"""The whole window end to end: add a folder, wait for the scan, review duplicates, move a
copy to the (fake) trash, undo, find similar — and the event loop never stalls."""
import time

import pytest
from PySide6.QtCore import QElapsedTimer, QTimer

from imagegen import photo, save_jpeg


class StallMeter:
    """Longest gap between ticks of a 10 ms timer on the GUI thread (work on the GUI thread
    shows up as a long gap)."""

    def __init__(self):
        self.longest_ms = 0
        self._clock = QElapsedTimer()
        self._timer = QTimer()
        self._timer.setInterval(10)
        self._timer.timeout.connect(self._tick)

    def start(self):
        self._clock.start()
        self._timer.start()

    def stop(self):
        self._timer.stop()

    def _tick(self):
        self.longest_ms = max(self.longest_ms, self._clock.restart())


@pytest.fixture
def window(services, qtbot, tmp_path, monkeypatch):
    from PySide6.QtCore import QSettings

    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    from desktop_app.main_window import MainWindow

    win = MainWindow(services)
    qtbot.addWidget(win)
    win.show()
    return win


def test_add_scan_review_trash_undo_and_find_similar(window, services, qtbot, photo_folder):
    window.add_folders([str(photo_folder)])
    with qtbot.waitSignal(window.library_view.scanFinished, timeout=120000):
        pass
    assert services.library.catalog.count_files() == 5

    dup = window.duplicates_view
    window.tabs.setCurrentWidget(dup)
    qtbot.waitUntil(lambda: dup.group_count() == 1, timeout=30000)
    marked = dup.marked_files()
    assert len(marked) == 2 and all("copies" in f.path for f in marked)
    dup.confirm = lambda text: True
    with qtbot.waitSignal(dup.libraryChanged, timeout=30000):
        dup.remove_marked()
    assert not (photo_folder / "copies" / "beach copy.jpg").exists()
    assert (photo_folder / "beach.jpg").exists()
    with qtbot.waitSignal(dup.libraryChanged, timeout=60000):
        dup.undo()
    assert (photo_folder / "copies" / "beach copy.jpg").exists()

    with qtbot.waitSignal(window.similar_view.resultsShown, timeout=30000):
        window.find_similar(str(photo_folder / "beach.jpg"))
    assert window.tabs.currentWidget() is window.similar_view
    assert window.similar_view.matches[0].file.path == str(photo_folder / "copies" / "beach copy.jpg")


def test_event_loop_never_stalls_during_a_scan(window, services, qtbot, tmp_path):
    folder = tmp_path / "many"
    for seed in range(120):
        save_jpeg(photo(seed, (320, 240)), folder / f"{seed:03d}.jpg")
    meter = StallMeter()
    meter.start()
    started = time.perf_counter()
    window.add_folders([str(folder)])
    with qtbot.waitSignal(window.library_view.scanFinished, timeout=300000):
        pass
    window.tabs.setCurrentWidget(window.browse_view)
    qtbot.wait(500)
    meter.stop()
    print(f"\nscan of 120 photos: {time.perf_counter() - started:.1f} s, longest event-loop stall "
          f"{meter.longest_ms} ms")
    assert meter.longest_ms < 1000
