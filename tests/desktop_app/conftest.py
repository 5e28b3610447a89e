"""GUI test fixtures: Services over a temporary library, the session's CPU model, a fake trash."""
import pytest

from imagegen import photo, resize, save_jpeg


@pytest.fixture
def services(tmp_path, embedder, qapp):
    from desktop_app.workers import Services
    from engine.library import Library
    from engine.thumbnails import ThumbnailCache
    from engine.trash import Trash

    library = Library(tmp_path / "library", embedder=embedder)
    svc = Services(library, ThumbnailCache(tmp_path / "library" / "thumbnails"),
                   Trash(tmp_path / "library" / "trash-journal.jsonl", trash_dir=tmp_path / "fake-trash"))
    yield svc
    svc.close()


@pytest.fixture
def photo_folder(tmp_path):
    """Five photos: one with an exact copy and a resized copy, and two unrelated ones."""
    folder = tmp_path / "photos"
    save_jpeg(photo(1), folder / "beach.jpg")
    save_jpeg(photo(1), folder / "copies" / "beach copy.jpg")
    save_jpeg(resize(photo(1), 0.75), folder / "copies" / "beach-small.jpg", quality=85)
    save_jpeg(photo(6), folder / "other 6.jpg")
    save_jpeg(photo(7), folder / "other 7.jpg")
    return folder
