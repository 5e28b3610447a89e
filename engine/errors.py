"""Exceptions raised by the engine. Each names the file (or folder) and the reason."""
from __future__ import annotations

from pathlib import Path


class LookalikeError(Exception):
    """Base class of every error the engine raises on purpose."""


class FileError(LookalikeError):
    """A problem with one file; ``str()`` reads ``"<path>: <reason>"``."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DecodeError(FileError):
    """A file could not be read or decoded as an image."""


class ModelBundleError(FileError):
    """A model bundle folder is missing, incomplete or inconsistent."""


class CatalogError(LookalikeError):
    """The library's SQLite catalog is unusable (corrupt, newer schema, locked)."""


class VectorIndexError(LookalikeError):
    """The vector index could not be built, loaded, queried or saved."""


class Cancelled(LookalikeError):
    """Long work was stopped because the progress callback returned False."""
