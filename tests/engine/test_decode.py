"""read_photo: one read gives the content hash, the metadata and an oriented 8-bit RGB image."""
from __future__ import annotations

import hashlib
import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin, features

from engine.decode import DecodedPhoto, DecodeError, content_hash, read_photo, to_rgb
from imagegen import photo

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def save(img: Image.Image, path: Path, fmt: str | None = None, **params) -> Path:
    img.save(path, fmt, **params)
    return path


def split_image(size=(200, 100), left=RED, right=BLUE) -> Image.Image:
    """Left half one colour, right half another: orientation is visible in the pixels."""
    img = Image.new("RGB", size, right)
    img.paste(left, (0, 0, size[0] // 2, size[1]))
    return img


def mean_rgb(img: Image.Image, box=None) -> np.ndarray:
    region = img.crop(box) if box else img
    return np.asarray(region, dtype=np.float64).reshape(-1, 3).mean(axis=0)


def assert_close(actual, expected, tol: float) -> None:
    assert np.abs(np.asarray(actual, float) - np.asarray(expected, float)).max() <= tol, \
        f"{actual} is not within {tol} of {expected}"


# ------------------------------------------------------------------ hash and basic metadata

def test_metadata_of_a_plain_jpeg(tmp_path):
    path = save(photo(1), tmp_path / "a.jpg", quality=90)
    data = path.read_bytes()

    got = read_photo(path, 224)

    assert isinstance(got, DecodedPhoto)
    assert got.path == str(path)
    assert got.size == len(data) == path.stat().st_size
    assert got.content_hash == content_hash(data)
    assert len(got.content_hash) == 40 and int(got.content_hash, 16) >= 0  # 20 bytes, hex
    assert (got.width, got.height, got.format) == (256, 192, "JPEG")
    assert got.capture_time is None and got.camera is None
    assert got.image.mode == "RGB" and got.image.size == (256, 192)


def test_content_hash_depends_on_bytes_only(tmp_path):
    data = (save(photo(2), tmp_path / "a.png")).read_bytes()
    (tmp_path / "copy with another name.png").write_bytes(data)
    changed = bytearray(data)
    changed[-20] ^= 0x01  # inside the IEND/IDAT tail: one byte differs
    (tmp_path / "changed.png").write_bytes(bytes(changed))

    a = read_photo(tmp_path / "a.png", None).content_hash
    copy = read_photo(tmp_path / "copy with another name.png", None).content_hash
    other = content_hash(bytes(changed))

    assert a == copy
    assert other != a
    assert a == hashlib.blake2b(data, digest_size=20).hexdigest()


def test_data_argument_avoids_reading_the_file(tmp_path):
    data = io.BytesIO()
    photo(3).save(data, "PNG")
    got = read_photo(tmp_path / "never-written.png", 64, data=data.getvalue())
    assert got.content_hash == content_hash(data.getvalue())
    assert got.image is not None


def test_size_none_gives_metadata_without_pixels(tmp_path):
    path = save(photo(4), tmp_path / "a.jpg")
    got = read_photo(path, None)
    assert got.image is None
    assert (got.width, got.height, got.format) == (256, 192, "JPEG")


def test_skip_pixels_for_known_content(tmp_path):
    path = save(photo(5), tmp_path / "a.jpg")
    known = content_hash(path.read_bytes())

    skipped = read_photo(path, 224, skip_pixels_for={known})
    decoded = read_photo(path, 224, skip_pixels_for={"0" * 40})

    assert skipped.image is None
    assert (skipped.width, skipped.height, skipped.format) == (256, 192, "JPEG")
    assert skipped.content_hash == known
    assert decoded.image is not None


# ------------------------------------------------------------------ orientation

def write_oriented_jpeg(path: Path, orientation: int) -> Path:
    img = split_image((200, 100), left=RED, right=BLUE)
    exif = img.getexif()
    exif[0x0112] = orientation
    return save(img, path, "JPEG", exif=exif, quality=95)


def test_exif_orientation_6_rotates_clockwise(tmp_path):
    path = write_oriented_jpeg(tmp_path / "rotated.jpg", 6)

    got = read_photo(path, 224)

    assert (got.width, got.height) == (100, 200)
    assert got.image.size == (100, 200)
    assert got.image.height > got.image.width
    # Orientation 6 means "turn 90° clockwise to view": the left edge becomes the top.
    top = mean_rgb(got.image, (0, 0, 100, 90))
    bottom = mean_rgb(got.image, (0, 110, 100, 200))
    assert_close(top, RED, 12)
    assert_close(bottom, BLUE, 12)


@pytest.mark.parametrize("orientation, size, top_colour", [
    (1, (200, 100), None),
    (3, (200, 100), None),    # 180°: red ends on the right
    (8, (100, 200), BLUE),    # 90° counter-clockwise: the right edge becomes the top
])
def test_other_orientations(tmp_path, orientation, size, top_colour):
    got = read_photo(write_oriented_jpeg(tmp_path / "o.jpg", orientation), 224)
    assert (got.width, got.height) == size == got.image.size
    if top_colour is not None:
        assert_close(mean_rgb(got.image, (0, 0, 100, 90)), top_colour, 12)
    else:
        left = mean_rgb(got.image, (0, 0, 90, 100))
        assert_close(left, RED if orientation == 1 else BLUE, 12)


# ------------------------------------------------------------------ size, draft mode, pixel limit

def test_jpeg_is_decoded_in_draft_mode_near_the_target_size(tmp_path, monkeypatch):
    big = Image.new("RGB", (4000, 3000), (40, 120, 200))
    big.paste((230, 200, 20), (0, 0, 2000, 3000))
    path = save(big, tmp_path / "big.jpg", quality=80)
    drafted = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        out = real_draft(self, mode, size)
        drafted.append(self.size)
        return out

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)

    got = read_photo(path, 224)

    assert (got.width, got.height) == (4000, 3000)   # metadata is the file's full size
    assert drafted, "draft() was not called for a JPEG"
    w, h = drafted[0]
    assert w < 4000 and h < 3000 and min(w, h) >= 224  # DCT scaling, never below the request
    assert max(got.image.size) <= 448 and min(got.image.size) >= 224
    assert got.image.size[0] / got.image.size[1] == pytest.approx(4 / 3, rel=0.02)
    assert_close(mean_rgb(got.image, (0, 0, 100, 100)), (230, 200, 20), 15)


def test_large_png_is_shrunk_to_at_most_twice_the_size(tmp_path):
    path = save(photo(6, (1000, 750)), tmp_path / "big.png")
    got = read_photo(path, 100)
    assert max(got.image.size) <= 200
    assert got.image.size == (200, 150)
    assert (got.width, got.height) == (1000, 750)


def test_small_image_is_not_enlarged(tmp_path):
    got = read_photo(save(photo(7, (64, 48)), tmp_path / "s.png"), 224)
    assert got.image.size == (64, 48)


def test_pixel_limit(tmp_path):
    path = save(Image.new("RGB", (100, 100), RED), tmp_path / "bomb.bmp")
    with pytest.raises(DecodeError) as info:
        read_photo(path, 224, max_pixels=1000)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)
    assert "too large" in str(info.value)
    # exactly at the limit is allowed
    assert read_photo(path, 224, max_pixels=10_000).image is not None


def bmp_header_only(width: int, height: int) -> bytes:
    """A BMP that claims a size but carries no real pixels: the header is all Image.open reads."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 16, 0, 0, 54) + info + b"\x00" * 16


def test_100_megapixel_camera_photo_is_not_a_bomb():
    # Fujifilm GFX100: 11648×8736 = 101.8 MP, above Pillow's 89 MP warning, below MAX_PIXELS.
    got = read_photo("gfx100.bmp", None, data=bmp_header_only(11648, 8736))
    assert (got.width, got.height) == (11648, 8736)


def test_pixel_limit_is_checked_before_pixels_are_decoded():
    with pytest.raises(DecodeError, match="too large"):
        read_photo("huge.bmp", 224, max_pixels=50_000_000, data=bmp_header_only(11648, 8736))


def test_real_bomb_is_refused_with_the_default_limit():
    with pytest.raises(DecodeError, match="too large"):
        read_photo("bomb.bmp", 224, data=bmp_header_only(65_000, 65_000))


# ------------------------------------------------------------------ colour modes

def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = save(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=95)
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
        expected = mean_rgb(raw.convert("RGB"))

    got = read_photo(path, 224)

    assert got.format == "JPEG"
    assert got.image.mode == "RGB"
    assert_close(mean_rgb(got.image), expected, 3)
    assert_close(mean_rgb(got.image), RED, 20)   # no magenta/cyan-inverted surprise


def test_palette_png_with_transparency_over_white(tmp_path):
    img = Image.new("P", (40, 20), 1)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    img.paste(0, (0, 0, 20, 20))  # left half: palette index 0, the transparent one
    path = save(img, tmp_path / "pal.png", transparency=0)
    with Image.open(path) as raw:
        assert raw.mode == "P" and "transparency" in raw.info

    got = read_photo(path, 224)

    assert got.image.mode == "RGB"
    assert_close(mean_rgb(got.image, (0, 0, 20, 20)), WHITE, 0)
    assert_close(mean_rgb(got.image, (20, 0, 40, 20)), BLUE, 0)


def test_palette_png_without_transparency(tmp_path):
    img = Image.new("P", (20, 20), 1)
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    got = read_photo(save(img, tmp_path / "pal.png"), 224)
    assert got.image.mode == "RGB"
    assert_close(mean_rgb(got.image), GREEN, 0)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_over_white(tmp_path, mode):
    img = Image.new("RGBA", (40, 20), (255, 0, 0, 255))
    img.paste((0, 0, 0, 0), (0, 0, 20, 20))  # left half fully transparent black
    img = img.convert(mode)
    path = save(img, tmp_path / "alpha.png")

    got = read_photo(path, 224)

    assert got.image.mode == "RGB"
    assert_close(mean_rgb(got.image, (0, 0, 20, 20)), WHITE, 0)
    expected_right = RED if mode == "RGBA" else (76, 76, 76)  # L of pure red is 76
    assert_close(mean_rgb(got.image, (20, 0, 40, 20)), expected_right, 1)


def test_half_transparent_pixels_blend_with_white(tmp_path):
    path = save(Image.new("RGBA", (10, 10), (0, 0, 0, 128)), tmp_path / "half.png")
    got = read_photo(path, 224)
    assert_close(mean_rgb(got.image), (127, 127, 127), 1)


def test_16_bit_grayscale_png_is_rescaled_to_8_bit(tmp_path):
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16)
    img = Image.fromarray(np.tile(ramp, (16, 1)))
    assert img.mode == "I;16"
    path = save(img, tmp_path / "gray16.png")

    got = read_photo(path, 256)

    assert got.image.mode == "RGB" and got.image.size == (256, 16)
    arr = np.asarray(got.image)
    assert arr.min() == 0 and arr.max() == 255
    row = arr[8, :, 0].astype(int)
    assert np.all(np.diff(row) >= 0), "gradient is not monotonic"
    assert len(np.unique(row)) > 200            # the 16 bits were spread, not clipped
    assert np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])


def test_16_bit_flat_image_does_not_divide_by_zero(tmp_path):
    img = Image.fromarray(np.full((8, 8), 30000, np.uint16))
    got = read_photo(save(img, tmp_path / "flat16.png"), 224)
    assert got.image.mode == "RGB"
    assert np.isfinite(np.asarray(got.image, float)).all()


def test_float_image_to_rgb():
    arr = np.linspace(-1.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    out = np.asarray(to_rgb(Image.fromarray(arr, "F")))
    assert out.min() == 0 and out.max() == 255


def test_one_bit_image(tmp_path):
    img = Image.new("1", (40, 20), 0)
    img.paste(1, (20, 0, 40, 20))
    path = save(img, tmp_path / "bits.png")

    got = read_photo(path, 224)

    assert got.image.mode == "RGB"
    assert_close(mean_rgb(got.image, (0, 0, 20, 20)), (0, 0, 0), 0)
    assert_close(mean_rgb(got.image, (20, 0, 40, 20)), WHITE, 0)


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (32, 32), RED), Image.new("RGB", (32, 32), GREEN)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as raw:
        assert getattr(raw, "n_frames", 1) == 2

    got = read_photo(path, 224)

    assert got.format == "GIF"
    assert got.image.mode == "RGB"
    assert_close(mean_rgb(got.image), RED, 0)


# ------------------------------------------------------------------ broken files

def test_truncated_jpeg(tmp_path):
    data = (save(photo(8), tmp_path / "full.jpg", quality=95)).read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(DecodeError) as info:
        read_photo(path, 224)
    assert str(path) in str(info.value)
    assert "truncated" in str(info.value)


@pytest.mark.parametrize("size", [224, None])
def test_truncated_png(tmp_path, size):
    # Pillow's PNG getexif() decodes the pixels to look for a trailing eXIf chunk, so even a
    # metadata-only read meets the truncation: it must still be a DecodeError naming the file.
    data = (save(photo(8), tmp_path / "full.png")).read_bytes()
    path = tmp_path / "half.png"
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(DecodeError, match="truncated") as info:
        read_photo(path, size)
    assert info.value.path == str(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(DecodeError, match="empty") as info:
        read_photo(path, 224)
    assert info.value.path == str(path)


def test_text_file(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photo\n" * 10)
    with pytest.raises(DecodeError, match="not an image") as info:
        read_photo(path, 224)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "gone.jpg"
    with pytest.raises(DecodeError) as info:
        read_photo(path, 224)
    assert info.value.path == str(path)
    assert "cannot read" in info.value.reason


def test_corrupt_header(tmp_path):
    data = bytearray(save(photo(9), tmp_path / "ok.png").read_bytes())
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data[:8]) + b"\x00" * 40)  # PNG signature, garbage chunks
    with pytest.raises(DecodeError) as info:
        read_photo(path, 224)
    assert info.value.path == str(path)


# ------------------------------------------------------------------ EXIF fields

@pytest.mark.parametrize("make, model, camera", [
    ("Canon", "Canon EOS 5D", "Canon EOS 5D"),   # model already names the maker
    ("FUJIFILM", "X-T3", "FUJIFILM X-T3"),
    ("", "Pixel 7", "Pixel 7"),
    (None, None, None),
])
def test_exif_capture_time_and_camera(tmp_path, make, model, camera):
    img = photo(10)
    exif = img.getexif()
    exif.get_ifd(0x8769)[0x9003] = "2021:06:01 12:34:56"   # DateTimeOriginal
    if make is not None:
        exif[0x010F] = make
        exif[0x0110] = model
    path = save(img, tmp_path / "exif.jpg", exif=exif)

    got = read_photo(path, None)

    assert got.capture_time == "2021-06-01T12:34:56"
    assert got.camera == camera


def test_exif_datetime_is_the_fallback_capture_time(tmp_path):
    img = photo(11)
    exif = img.getexif()
    exif[0x0132] = "2019:12:31 23:59:58"   # DateTime (IFD0)
    got = read_photo(save(img, tmp_path / "dt.jpg", exif=exif), None)
    assert got.capture_time == "2019-12-31T23:59:58"


@pytest.mark.parametrize("value", [
    "    :  :     :  :  ",      # camera clock never set: blanks
    "0000:00:00 00:00:00",      # ... or zeros
    "2021:13:45 99:00:00",      # impossible date
    "yesterday",
])
def test_malformed_exif_time_is_ignored(tmp_path, value):
    img = photo(12)
    exif = img.getexif()
    exif.get_ifd(0x8769)[0x9003] = value
    got = read_photo(save(img, tmp_path / "bad-time.jpg", exif=exif), None)
    assert got.capture_time is None


# ------------------------------------------------------------------ other formats

def _heif_can_write() -> bool:
    try:
        import pillow_heif
        pillow_heif.register_heif_opener()
        Image.new("RGB", (16, 16)).save(io.BytesIO(), "HEIF")
        return True
    except Exception:
        return False


LOSSLESS = 0
FORMATS = [
    pytest.param("PNG", ".png", {}, LOSSLESS, id="png"),
    pytest.param("BMP", ".bmp", {}, LOSSLESS, id="bmp"),
    pytest.param("TIFF", ".tif", {}, LOSSLESS, id="tiff"),
    pytest.param("TIFF", ".tiff", {"compression": "tiff_lzw"}, LOSSLESS, id="tiff-lzw"),
    pytest.param("PPM", ".ppm", {}, LOSSLESS, id="ppm"),
    pytest.param("WEBP", ".webp", {"lossless": True}, LOSSLESS, id="webp-lossless"),
    pytest.param("WEBP", ".webp", {"quality": 90}, 12, id="webp"),
    pytest.param("JPEG", ".jpg", {"quality": 95}, 12, id="jpeg"),
    pytest.param("HEIF", ".heic", {"quality": 90}, 15, id="heif", marks=pytest.mark.skipif(
        not _heif_can_write(), reason="pillow-heif has no HEIF encoder in this build")),
    pytest.param("AVIF", ".avif", {"quality": 90}, 15, id="avif", marks=pytest.mark.skipif(
        not features.check("avif"), reason="this Pillow was built without AVIF support")),
]


@pytest.mark.parametrize("fmt, suffix, params, tolerance", FORMATS)
def test_format_round_trip(tmp_path, fmt, suffix, params, tolerance):
    original = photo(13, (96, 64))
    path = save(original, tmp_path / f"img{suffix}", fmt, **params)

    got = read_photo(path, 224)

    assert got.format == fmt
    assert (got.width, got.height) == (96, 64)
    assert got.image.mode == "RGB" and got.image.size == (96, 64)
    diff = np.abs(np.asarray(got.image, float) - np.asarray(original, float))
    if tolerance == LOSSLESS:
        assert diff.max() == 0
    else:
        assert diff.mean() <= tolerance
