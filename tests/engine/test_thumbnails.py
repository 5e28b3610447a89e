"""ThumbnailCache: content-keyed disk cache of oriented RGB thumbnails, atomic and thread-safe."""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import engine.thumbnails as thumbnails
from engine.decode import content_hash
from engine.errors import DecodeError
from engine.thumbnails import ThumbnailCache

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
SIZE = 64


def split_image(size=(300, 200), left=RED, right=BLUE) -> Image.Image:
    """Left half one colour, right half another: orientation is visible in the pixels."""
    img = Image.new("RGB", size, right)
    img.paste(left, (0, 0, size[0] // 2, size[1]))
    return img


def save_jpeg(path: Path, img: Image.Image | None = None, **params) -> Path:
    (img or split_image()).save(path, "JPEG", quality=90, **params)
    return path


def fits(actual: tuple[int, int], photo: tuple[int, int], box: int = SIZE) -> bool:
    """``actual`` is ``photo`` shrunk so its longest side is ``box`` (±1 px of rounding on the
    other side: the decode shrinks in steps)."""
    scale = box / max(photo)
    expected = (photo[0] * scale, photo[1] * scale)
    return max(actual) == box and all(abs(a - e) <= 1 for a, e in zip(actual, expected))


def mean_rgb(img: Image.Image, box) -> np.ndarray:
    return np.asarray(img.crop(box), dtype=np.float64).reshape(-1, 3).mean(axis=0)


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def hash_of(path: Path) -> str:
    return content_hash(path.read_bytes())


@pytest.fixture
def cache(tmp_path) -> ThumbnailCache:
    return ThumbnailCache(tmp_path / "thumbs", size=SIZE)


@pytest.fixture
def no_decode(monkeypatch):
    """Make any decode fail, to prove an answer came from the cache."""
    def refuse(*args, **kwargs):
        raise AssertionError("read_photo was called on a cache hit")
    monkeypatch.setattr(thumbnails, "read_photo", refuse)


def test_large_jpeg_gives_longest_side_equal_to_size_and_one_file(tmp_path):
    cache = ThumbnailCache(tmp_path / "thumbs", size=256)
    photo = save_jpeg(tmp_path / "big.jpg", split_image((3000, 2000)))
    thumb = cache.get(photo)
    assert thumb.mode == "RGB" and thumb.size == (256, 171)
    path = cache.path_for(hash_of(photo))
    assert path == tmp_path / "thumbs" / hash_of(photo)[:2] / f"{hash_of(photo)}-256.jpg"
    assert files_under(tmp_path / "thumbs") == [path]
    with Image.open(path) as stored:
        assert stored.format == "JPEG" and stored.size == (256, 171)


def test_exif_orientation_6_gives_portrait_thumbnail(cache, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90° clockwise
    photo = save_jpeg(tmp_path / "rotated.jpg", split_image((300, 200)), exif=exif.tobytes())
    thumb = cache.get(photo)
    assert fits(thumb.size, (200, 300))  # portrait
    w, h = thumb.size
    assert mean_rgb(thumb, (0, 0, w, h // 3))[0] > 200  # the red left half is now on top
    assert mean_rgb(thumb, (0, 2 * h // 3, w, h))[2] > 200
    assert cache.get_cached(hash_of(photo)).size == thumb.size  # stored oriented too


def test_png_with_alpha_gives_rgb_over_white(cache, tmp_path):
    img = Image.new("RGBA", (100, 50), (0, 0, 255, 255))
    img.paste((0, 0, 0, 0), (0, 0, 50, 50))  # left half fully transparent
    photo = tmp_path / "alpha.png"
    img.save(photo)
    thumb = cache.get(photo)
    assert thumb.mode == "RGB" and thumb.size == (SIZE, SIZE // 2)
    assert np.allclose(mean_rgb(thumb, (0, 0, 24, 32)), WHITE, atol=8)
    assert np.allclose(mean_rgb(thumb, (40, 0, 64, 32)), BLUE, atol=8)


def test_small_photo_is_not_enlarged(cache, tmp_path):
    photo = save_jpeg(tmp_path / "tiny.jpg", split_image((40, 20)))
    assert cache.get(photo).size == (40, 20)


def test_same_content_under_two_names_shares_one_file(cache, tmp_path, monkeypatch):
    first = save_jpeg(tmp_path / "a.jpg")
    copy = tmp_path / "sub dir" / "copie é.jpg"
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    made = cache.get(first)
    monkeypatch.setattr(thumbnails, "read_photo", lambda *a, **k: pytest.fail("decoded again"))
    again = cache.get(copy)
    assert again.size == made.size
    assert len(files_under(tmp_path / "thumbs")) == 1


def test_get_cached_is_none_before_and_image_after(cache, tmp_path):
    photo = save_jpeg(tmp_path / "p.jpg")
    digest = hash_of(photo)
    assert cache.get_cached(digest) is None
    assert not (tmp_path / "thumbs").exists()  # a miss creates nothing
    made = cache.get(photo, digest)
    cached = cache.get_cached(digest)
    assert cached.mode == "RGB" and cached.size == made.size
    assert fits(cached.size, (300, 200))


def test_hit_with_known_hash_never_reads_the_photo(cache, tmp_path, no_decode):
    photo = save_jpeg(tmp_path / "p.jpg")
    digest = hash_of(photo)
    cache.put(digest, split_image())
    photo.unlink()  # the grid may show a thumbnail of a photo on an unplugged drive
    assert fits(cache.get(photo, digest).size, (300, 200))


def test_stale_hash_caches_the_current_content(cache, tmp_path):
    photo = save_jpeg(tmp_path / "p.jpg")
    stale = "ab" * 20
    cache.get(photo, stale)
    assert cache.get_cached(stale) is None
    assert cache.get_cached(hash_of(photo)) is not None


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_cached_thumbnail_is_discarded_and_remade(cache, tmp_path, damage, caplog):
    photo = save_jpeg(tmp_path / "p.jpg")
    digest = hash_of(photo)
    made = cache.get(photo)
    path = cache.path_for(digest)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a jpeg" * 50,
                      "empty": b""}[damage])
    remade = cache.get(photo)
    assert remade.size == made.size
    assert "corrupt cached thumbnail" in caplog.text and str(path) in caplog.text
    with Image.open(path) as stored:
        stored.load()  # the file on disk is whole again
    path.write_bytes(data[:100])
    assert cache.get_cached(digest) is None and not path.exists()


def test_text_file_named_jpg_raises_decode_error_naming_it(cache, tmp_path):
    fake = tmp_path / "notes é.jpg"
    fake.write_text("this is not a photo\n")
    with pytest.raises(DecodeError) as err:
        cache.get(fake)
    assert str(fake) in str(err.value) and err.value.path == str(fake)
    with pytest.raises(DecodeError, match="unknown format"):
        cache.get(fake, hash_of(fake))
    assert not (tmp_path / "thumbs").exists() or files_under(tmp_path / "thumbs") == []


@pytest.mark.parametrize("content", [None, b""])
def test_missing_or_empty_file_raises_decode_error(cache, tmp_path, content):
    path = tmp_path / "gone.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DecodeError, match="gone.jpg"):
        cache.get(path)


def test_put_shrinks_converts_and_leaves_the_callers_image_alone(cache):
    digest = "cd" * 20
    image = Image.new("RGBA", (400, 200), (0, 255, 0, 255))
    cache.put(digest, image)
    assert image.size == (400, 200) and image.mode == "RGBA"
    stored = cache.get_cached(digest)
    assert stored.mode == "RGB" and stored.size == (SIZE, SIZE // 2)


def test_path_for_rejects_what_is_not_a_hash(cache):
    for bad in ("../../etc/passwd", "AB" * 20, "", "ab"):
        with pytest.raises(ValueError):
            cache.path_for(bad)


def test_sizes_share_a_folder_without_clashing(tmp_path):
    small = ThumbnailCache(tmp_path / "thumbs", size=32)
    large = ThumbnailCache(tmp_path / "thumbs", size=96)
    photo = save_jpeg(tmp_path / "p.jpg")
    assert max(small.get(photo).size) == 32 and max(large.get(photo).size) == 96
    assert max(small.get_cached(hash_of(photo)).size) == 32
    assert len(files_under(tmp_path / "thumbs")) == 2


def _fill(cache: ThumbnailCache, count: int) -> list[Path]:
    """``count`` thumbnails with mtimes one hour apart, oldest first."""
    paths, now = [], time.time()
    for i in range(count):
        digest = f"{i:02x}" * 20
        cache.put(digest, Image.effect_noise((SIZE, SIZE), 40 + i).convert("RGB"))
        path = cache.path_for(digest)
        stamp = now - (count - i) * 3 * 3600
        os.utime(path, (stamp, stamp))
        paths.append(path)
    return paths


def test_trim_evicts_oldest_first_down_to_max_bytes(cache):
    paths = _fill(cache, 5)
    sizes = [p.stat().st_size for p in paths]
    assert cache.size_on_disk() == sum(sizes)
    cache.max_bytes = sum(sizes[2:])  # room for the three newest
    freed = cache.trim()
    assert freed == sizes[0] + sizes[1]
    assert [p.exists() for p in paths] == [False, False, True, True, True]
    assert cache.size_on_disk() == sum(sizes[2:]) <= cache.max_bytes
    assert cache.trim() == 0


def test_a_hit_on_an_old_thumbnail_saves_it_from_trim(cache):
    paths = _fill(cache, 3)
    oldest_hash = paths[0].name.split("-")[0]
    assert cache.get_cached(oldest_hash) is not None  # older than an hour: mtime refreshed
    cache.max_bytes = paths[0].stat().st_size
    cache.trim()
    assert [p.exists() for p in paths] == [True, False, False]


def test_a_recent_hit_does_not_rewrite_mtime(cache):
    digest = "ef" * 20
    cache.put(digest, split_image())
    path = cache.path_for(digest)
    recent = time.time() - 60
    os.utime(path, (recent, recent))
    cache.get_cached(digest)
    assert path.stat().st_mtime == pytest.approx(recent, abs=1e-3)


def test_trim_removes_temporary_files_left_by_a_crash(cache):
    _fill(cache, 1)
    shard = next((cache.folder).iterdir())
    stale, fresh = shard / ".abc-64.x1.tmp", shard / ".abc-64.x2.tmp"
    stale.write_bytes(b"x" * 100)
    fresh.write_bytes(b"x" * 100)  # may be a write in flight
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    assert cache.trim() == 100
    assert not stale.exists() and fresh.exists()


def test_clear_removes_thumbnails_but_not_foreign_files(cache, tmp_path):
    _fill(cache, 3)
    foreign = cache.folder / "README.txt"
    foreign.write_text("keep me")
    cache.clear()
    assert cache.size_on_disk() == 0
    assert files_under(cache.folder) == [foreign]
    cache.put("ab" * 20, split_image())  # usable again after clear
    assert cache.get_cached("ab" * 20) is not None


def test_concurrent_gets_of_one_photo_make_one_whole_file(cache, tmp_path):
    photo = save_jpeg(tmp_path / "p.jpg", split_image((1200, 800)))
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(photo.read_bytes())
    digest = hash_of(photo)
    jobs = [(photo, None), (copy, None), (photo, digest), (copy, digest)] * 6
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda job: cache.get(*job), jobs))
    assert len({r.size for r in results}) == 1 and fits(results[0].size, (1200, 800))
    assert files_under(cache.folder) == [cache.path_for(digest)]  # no temporary file left
    with Image.open(cache.path_for(digest)) as stored:
        stored.load()


def test_writes_leave_no_temporary_files(cache, tmp_path):
    for i in range(3):
        cache.get(save_jpeg(tmp_path / f"{i}.jpg", split_image((100 + i, 80))))
    assert not [p for p in files_under(cache.folder) if p.suffix != ".jpg" or p.name.startswith(".")]


def test_failed_write_is_logged_cleaned_up_and_still_returns_the_image(cache, tmp_path,
                                                                       monkeypatch, caplog):
    photo = save_jpeg(tmp_path / "p.jpg")

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(thumbnails.os, "replace", disk_full)
    assert fits(cache.get(photo).size, (300, 200))
    assert "cannot write thumbnail" in caplog.text and "No space left" in caplog.text
    assert files_under(cache.folder) == []
