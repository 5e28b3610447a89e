"""Take a screenshot of each main view on the sample library, for the README and docs.

    Xvfb :99 -screen 0 1600x1000x24 &
    DISPLAY=:99 QT_QPA_PLATFORM=xcb .venv/bin/python scripts/screenshots.py

Uses a throw-away library in build/screenshot-library and writes docs/screenshots/*.png.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QEventLoop, QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
LIBRARY = ROOT / "build" / "screenshot-library"


def wait(app: QApplication, ms: int) -> None:
    # An event loop, not a processEvents() loop: PySide6 6.12's processEvents() drops a
    # reference to None on every call and crashes Python 3.11 after a few thousand calls.
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait_for(app: QApplication, condition, timeout_ms: int = 120000) -> None:
    waited = 0
    while not condition() and waited < timeout_ms:
        wait(app, 100)
        waited += 100


def main() -> int:
    app = QApplication(sys.argv)
    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(LIBRARY / "settings"))
    from desktop_app.main_window import MainWindow
    from desktop_app.workers import Services

    shutil.rmtree(LIBRARY, ignore_errors=True)
    services = Services.open(LIBRARY)
    window = MainWindow(services)
    window.resize(1400, 860)
    window.show()
    finished = []
    window.library_view.scanFinished.connect(finished.append)
    window.add_folders([str(ROOT / "resources" / "samples")])
    wait_for(app, lambda: finished)
    OUT.mkdir(parents=True, exist_ok=True)
    wait(app, 1500)
    window.grab().save(str(OUT / "library.png"))
    window.tabs.setCurrentWidget(window.browse_view)
    wait(app, 2500)
    window.browse_view.select_path(str(ROOT / "resources/samples/trips/2021-alps/DSC_2519.jpg"))
    wait(app, 2500)
    window.grab().save(str(OUT / "browse.png"))
    window.tabs.setCurrentWidget(window.duplicates_view)
    window.duplicates_view.set_level("near")
    wait(app, 3000)
    window.grab().save(str(OUT / "duplicates.png"))
    window.find_similar(str(ROOT / "resources/samples/family/IMG_6323.jpg"))
    wait(app, 3000)
    window.grab().save(str(OUT / "similar.png"))
    window.tabs.setCurrentWidget(window.finetune_view)
    wait(app, 500)
    window.grab().save(str(OUT / "finetune.png"))
    window.close()
    services.close()
    print("wrote", ", ".join(p.name for p in sorted(OUT.glob("*.png"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
