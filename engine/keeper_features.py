"""What a person may weigh when choosing which copy of a photo to keep, measured per file:
resolution, bytes, format, an estimate of the JPEG quality, sharpness, metadata completeness
and folder. Stored with every review (``engine.feedback``) so the keeper preference can be
learned later, even after the removed copies went to the trash.
"""
from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, ImageFilter

from engine.decode import CORRUPT_DATA_ERRORS, MAX_PIXELS, read_bytes, read_photo
from engine.errors import DecodeError

# The IJG (libjpeg) standard luminance quantisation table at quality 50, in the natural
# (row-major) order Pillow reports; a file's table relative to it gives the quality setting that made it.
_STD_LUMA = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
                      14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
                      18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                      49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
                     dtype=np.float64)
SHARPNESS_SIZE = 512


def jpeg_quality(img: Image.Image) -> float | None:
    """The IJG quality (1..100) whose luminance table is closest to ``img``'s; None if not JPEG."""
    tables = getattr(img, "quantization", None)
    if not tables or 0 not in tables:
        return None
    table = np.asarray(tables[0], dtype=np.float64)
    if table.size != 64:
        return None
    scale = float(np.mean(table / _STD_LUMA) * 100)  # libjpeg: table = std * scale / 100
    quality = (200 - scale) / 2 if scale <= 100 else 5000 / scale
    return round(float(np.clip(quality, 1, 100)), 1)


def sharpness(img: Image.Image) -> float:
    """Variance of a Laplacian of the grey image at ~512 px: higher is sharper."""
    grey = img.convert("L")
    grey.thumbnail((SHARPNESS_SIZE, SHARPNESS_SIZE))
    lap = np.asarray(grey.filter(ImageFilter.Kernel((3, 3), [0, 1, 0, 1, -4, 1, 0, 1, 0], 1, 128)),
                     dtype=np.float64)
    return round(float(lap.var()), 3)


def photo_features(record, *, measure_sharpness: bool = True) -> dict:
    """Features of one catalogued file (a ``FileRecord``); pixel-based ones are None when the
    file cannot be read now (the decision is stored all the same). ``measure_sharpness``
    False skips the one feature that decodes pixels (its value stays None)."""
    return read_features(record, measure_sharpness=measure_sharpness)[0]


def read_features(record, *, measure_sharpness: bool = True) -> tuple[dict, Image.Image | None]:
    """``photo_features`` and the ~512-px image sharpness was measured on (None when not
    decoded), from one read of the file: a review keeps its snapshot from that image."""
    out = {"bytes": int(record.size or 0), "width": record.width, "height": record.height,
           "pixels": int((record.width or 0) * (record.height or 0)), "format": record.format,
           "has_capture_time": record.capture_time is not None, "has_camera": record.camera is not None,
           "folder": os.path.dirname(record.path), "name": os.path.basename(record.path),
           "jpeg_quality": None, "sharpness": None}
    image = None
    try:
        data = read_bytes(record.path)
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height <= MAX_PIXELS:
                out["jpeg_quality"] = jpeg_quality(img)
        if measure_sharpness:
            image = read_photo(record.path, SHARPNESS_SIZE, data=data).image
            out["sharpness"] = sharpness(image)
    except (DecodeError, *CORRUPT_DATA_ERRORS):
        pass
    return out, image
