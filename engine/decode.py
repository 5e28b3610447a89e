"""Bytes → oriented RGB image at model size, plus the metadata the catalog keeps.

One read of the file gives everything: the content hash (BLAKE2b of the bytes), the header
metadata (size, format, EXIF capture time and camera) and, when asked, the pixels. JPEGs are
decoded in draft mode (libjpeg's DCT scaling) straight to about the target size; EXIF
orientation is applied; CMYK, palette, 16-bit, float and alpha images become plain 8-bit RGB
(transparent areas over white). A pixel limit guards against decompression bombs.
"""
from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Container

import numpy as np
from PIL import Image, UnidentifiedImageError

from engine.errors import DecodeError
from engine.scan import sniff_format

try:  # HEIC/HEIF; AVIF is built into Pillow ≥ 11.2
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a hard dependency
    pillow_heif = None

# Pillow warns above ~89 MP (Image.MAX_IMAGE_PIXELS); ``max_pixels`` is the limit here, so a
# 100 MP camera photo is not refused. Pillow's own hard error (above twice its limit) still
# applies. The filter is installed once, not per call: warnings.catch_warnings() is not
# thread-safe and decoding runs in worker threads.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS  # ~179 MP, Pillow's own hard bomb limit: above any camera
_EXIF_DATETIME_ORIGINAL = 0x9003
_EXIF_IFD = 0x8769
_ORIENTATION = 0x0112
# EXIF orientation → the transpose that undoes it; anything else (0, 9, junk) is ignored.
_UNDO_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
# What Pillow's parsers and decoders raise on corrupt or hostile bytes (found by fuzzing:
# TIFF tile offsets of the wrong type give TypeError, bad EXIF values struct.error, short
# GIF/TIFF streams EOFError or IndexError).
CORRUPT_DATA_ERRORS = (OSError, ValueError, SyntaxError, TypeError, IndexError, KeyError,
                       EOFError, ZeroDivisionError, struct.error, zlib.error,
                       Image.DecompressionBombError)


@dataclass
class DecodedPhoto:
    """What one read of a photo yields. ``image`` is None when pixels were not asked for."""

    path: str
    size: int
    content_hash: str
    width: int
    height: int
    format: str
    capture_time: str | None
    camera: str | None
    image: Image.Image | None
    # With ``keep_jpeg``: a plain RGB/gray JPEG's bytes and EXIF orientation, left for the
    # GPU decoder (``engine.gpu_decode``) instead of ``image``.
    jpeg: bytes | None = None
    orientation: int = 1


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def read_bytes(path: str | Path) -> bytes:
    """The whole file, or ``DecodeError`` naming it (unreadable or empty)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DecodeError(path, f"cannot read file ({exc.strerror or exc})") from exc
    if not data:
        raise DecodeError(path, "empty file (0 bytes)")
    return data


def read_photo(path: str | Path, size: int | None, *, max_pixels: int = MAX_PIXELS,
               data: bytes | None = None, skip_pixels_for: Container[str] = (),
               keep_jpeg: bool = False) -> DecodedPhoto:
    """Read ``path`` once; decode pixels to an RGB image near ``size`` px unless size is None.

    Pixels are not decoded either when the content hash is in ``skip_pixels_for`` (the
    catalog already holds the embeddings of that content: a renamed file or an exact copy).
    With ``keep_jpeg``, a plain RGB or grayscale JPEG is not decoded here either: its bytes
    and orientation are kept for a batched decode on the GPU.

    Raises ``DecodeError`` naming the file for unreadable, empty, unknown, truncated or
    oversized images.
    """
    path = str(path)
    data = read_bytes(path) if data is None else data
    if not data:
        raise DecodeError(path, "empty file (0 bytes)")
    digest = content_hash(data)
    if digest in skip_pixels_for:
        size = None
    with _open(path, data, max_pixels) as img:
        try:  # PNG's getexif() decodes the whole image to look for a trailing eXIf chunk
            width, height = _oriented_size(img)
            capture_time, camera = _exif_fields(img)
        except CORRUPT_DATA_ERRORS as exc:
            raise DecodeError(path, f"cannot read metadata, the file may be truncated or corrupt"
                                    f" ({_describe(exc)})") from exc
        fmt = img.format or "UNKNOWN"
        if size is not None and keep_jpeg and fmt == "JPEG" and img.mode in ("RGB", "L"):
            return DecodedPhoto(path, len(data), digest, width, height, fmt, capture_time, camera,
                                None, jpeg=data, orientation=_orientation(img))
        image = _pixels(path, img, size) if size is not None else None
    return DecodedPhoto(path, len(data), digest, width, height, fmt,
                        capture_time, camera, image)


def _open(path: str, data: bytes, max_pixels: int) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise DecodeError(path, _unidentified_reason(data)) from exc
    except Image.DecompressionBombError as exc:
        raise DecodeError(path, f"image too large to decode safely ({exc})") from exc
    except CORRUPT_DATA_ERRORS as exc:
        raise DecodeError(path, f"corrupt image header ({_describe(exc)})") from exc
    if img.width * img.height > max_pixels:
        img.close()
        raise DecodeError(path, f"image too large: {img.width}×{img.height} = "
                                f"{img.width * img.height:,} pixels (limit {max_pixels:,})")
    return img


def _unidentified_reason(data: bytes) -> str:
    """Why Pillow found no opener: a missing plugin, a damaged header, or not an image."""
    sniffed = sniff_format(data[:32])
    if sniffed == "HEIF":
        return ("HEIC/HEIF photo, but no HEIF decoder is available "
                "(the pillow-heif plugin is missing or failed to load)")
    if sniffed is not None:
        return (f"starts like a {sniffed} image but cannot be opened "
                f"(damaged header, or a {sniffed} variant this Pillow does not support)")
    return "not an image Lookalike can read (unknown format)"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, OSError) else str(exc)


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation 1..8; 1 (as stored) for a missing, impossible or junk value."""
    value = img.getexif().get(_ORIENTATION, 1)
    return value if isinstance(value, int) and value in _UNDO_ORIENTATION else 1


def _oriented_size(img: Image.Image) -> tuple[int, int]:
    if _orientation(img) in (5, 6, 7, 8):
        return img.height, img.width
    return img.width, img.height


def _exif_fields(img: Image.Image) -> tuple[str | None, str | None]:
    exif = img.getexif()
    when = exif.get_ifd(_EXIF_IFD).get(_EXIF_DATETIME_ORIGINAL) or exif.get(0x0132)
    capture_time = _exif_time(when)
    make, model = (str(exif.get(t, "")).strip("\x00 ") for t in (0x010F, 0x0110))
    if make and model.lower().startswith(make.lower()):
        make = ""
    camera = " ".join(p for p in (make, model) if p) or None
    return capture_time, camera


def _exif_time(value) -> str | None:
    """EXIF "YYYY:MM:DD HH:MM:SS" → ISO "YYYY-MM-DDTHH:MM:SS"; anything else → None.

    Cameras with an unset clock write blanks or zeros ("    :  :     :  :  ",
    "0000:00:00 00:00:00"); those are not a date and give None.
    """
    if not isinstance(value, str) or len(value) < 19:
        return None
    try:
        when = datetime.strptime(value[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    return when.isoformat()


def _pixels(path: str, img: Image.Image, size: int) -> Image.Image:
    if img.format == "JPEG" and img.mode in ("RGB", "L", "CMYK", "YCbCr"):
        img.draft(img.mode, (size, size))  # DCT-domain downscale; never below the request
    try:
        img.load()
        # Not ImageOps.exif_transpose: it re-serialises the EXIF block and raises
        # struct.error on a corrupt one. The photo's pixels matter, not its tags.
        method = _UNDO_ORIENTATION.get(_orientation(img))
        rgb = to_rgb(img.transpose(method) if method is not None else img)
        if rgb is img:
            rgb = img.copy()  # the opened file's image is closed when read_photo returns
    except CORRUPT_DATA_ERRORS as exc:
        raise DecodeError(path, f"cannot decode pixels, the file may be truncated or corrupt"
                                f" ({_describe(exc)})") from exc
    except MemoryError as exc:
        raise DecodeError(path, f"not enough memory to decode a {img.width}×{img.height}"
                                " image") from exc
    rgb.thumbnail((size * 2, size * 2), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return rgb


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode → 8-bit RGB; alpha composited over white; 16-bit/float rescaled."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        img = Image.fromarray(((arr - lo) * scale).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")  # L, 1, CMYK (Pillow undoes Adobe's inverted CMYK), YCbCr, LAB
    return img
