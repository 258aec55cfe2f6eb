"""Reading images the one way every stage agrees on: upright (EXIF orientation applied) and bounded in size.

Labelling tools, Ultralytics and the transformers image loader all show a photo upright; a box drawn
on the upright photo lands in the wrong place if the stored pixels are used instead. Pillow's
decompression-bomb guard stays on, and an image it refuses is a one-line `DataError`, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from jamspotter.errors import DataError

ORIENTATION_TAG = 0x0112
SWAPS_SIDES = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 or 270 degrees
# Errors Pillow raises for unreadable, truncated, hostile or oversized files.
_IMAGE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError,
                 Image.DecompressionBombWarning)


def _fail(path: str | Path, e: BaseException) -> DataError:
    if isinstance(e, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return DataError(f"{path}: image too large ({' '.join(str(e).split())})")
    return DataError(f"{path}: cannot read image ({' '.join(str(e).split()) or type(e).__name__})")


def upright_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) as the image is shown (EXIF-rotated), from the header only; None when absent."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if im.getexif().get(ORIENTATION_TAG, 1) in SWAPS_SIDES:
                    w, h = h, w
                return w, h
    except FileNotFoundError:
        return None
    except _IMAGE_ERRORS as e:
        raise _fail(path, e) from None


def open_rgb(path: str | Path) -> Any:
    """The image as an upright RGB PIL image, fully loaded; unreadable or oversized files raise DataError."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return ImageOps.exif_transpose(im).convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{path}: no such image") from None
    except _IMAGE_ERRORS as e:
        raise _fail(path, e) from None
