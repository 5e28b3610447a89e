"""Start the Lookalike window: ``lookalike-gui`` (or ``make run``)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QMessageBox

from engine.errors import LookalikeError

ORGANISATION, APPLICATION = "Lookalike", "Lookalike"


def settings() -> QSettings:
    return QSettings(ORGANISATION, APPLICATION)


def threshold_overrides(prefs: QSettings) -> dict[str, float]:
    """Thresholds the user set in Settings (absent keys: use the model card's)."""
    out = {}
    for level in ("near", "similar"):
        value = prefs.value(f"thresholds/{level}")
        if value not in (None, ""):
            out[level] = float(value)
    return out


def apply_thresholds(services, prefs: QSettings) -> None:
    """Thresholds from Settings: the ones set by hand, and whether learned ones are used."""
    services.threshold_overrides = threshold_overrides(prefs)
    services.use_learned_thresholds = prefs.value("thresholds/use_learned", False, type=bool)


def apply_removal_folder(services, prefs: QSettings) -> None:
    """Removed photos go to the chosen folder when one is set, else to the system trash."""
    folder = str(prefs.value("removal/folder") or "").strip()
    try:
        services.set_removal_folder(folder or None)
    except LookalikeError as exc:
        QMessageBox.warning(None, "Lookalike", f"Removed photos will go to the system trash:\n{exc}")
        services.set_removal_folder(None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lookalike-gui", description="The Lookalike window.")
    parser.add_argument("--library", type=Path, help="library folder (default: from settings)")
    parser.add_argument("--add", type=Path, action="append", default=[],
                        help="add this folder to the library and scan it on start")
    args, qt_args = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app = QApplication([sys.argv[0], *qt_args])
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    from desktop_app.main_window import MainWindow
    from desktop_app.workers import Services

    prefs = settings()
    library = args.library or prefs.value("library/folder") or None
    try:
        services = Services.open(library, model=prefs.value("model/name") or None,
                                 device=str(prefs.value("model/device") or "auto"),
                                 thumbnail_bytes=int(float(prefs.value("thumbnails/max_mb") or 512)) * 1024**2)
    except LookalikeError as exc:  # the window cannot open without a library: say why, plainly
        QMessageBox.critical(None, "Lookalike", f"Cannot open the library:\n{exc}")
        return 1
    apply_thresholds(services, prefs)
    apply_removal_folder(services, prefs)
    window = MainWindow(services)
    window.show()
    services.trim_thumbnails()
    if args.add:
        window.add_folders([str(p) for p in args.add], show_duplicates=True)
    code = app.exec()
    services.close()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
