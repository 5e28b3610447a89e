"""Dropping files on a view: one implementation of Qt's three drag-and-drop handlers.

A view mixes in ``DropTarget`` (before ``QWidget``), says which dropped paths it wants in
``accepted_drops(mime)`` (none: the drag is refused) and acts on them in ``take_drop``.
"""
from __future__ import annotations


def local_files(mime) -> list[str]:
    """The local paths among a drag's URLs (remote URLs are ignored)."""
    if mime is None or not mime.hasUrls():
        return []
    return [p for p in (url.toLocalFile() for url in mime.urls() if url.isLocalFile()) if p]


class DropTarget:
    def accepted_drops(self, mime) -> list[str]:
        raise NotImplementedError

    def take_drop(self, paths: list[str]) -> None:
        raise NotImplementedError

    def dragEnterEvent(self, event) -> None:
        if self.accepted_drops(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:
        paths = self.accepted_drops(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.take_drop(paths)
