"""Checks on boxes and images shared by the importers and `jamspotter data validate`.

Labelling tools often overshoot the image by a pixel (TACO has boxes at y=-1.3); those are clipped.
Anything further out is a real labelling error and is reported, never silently clipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from PIL import Image

from jamspotter.data.boxes import clip_box
from jamspotter.data.images import ORIENTATION_TAG, SWAPS_SIDES, upright_size
from jamspotter.data.records import Sample
from jamspotter.errors import DataError

MISSING_IMAGE = "missing_image"


def overshoot_tolerance(side: float) -> float:
    """How far (px) a box may leave an image side of this length and still be clipped: 2 px or 1 %."""
    return max(2.0, 0.01 * float(side))


def check_box(bbox: Sequence[float], width: float | None, height: float | None) -> tuple[list[float], str | None]:
    """Return `(clipped box, problem or None)`: tiny overshoots are clipped, real ones reported."""
    x1, y1, x2, y2 = (float(v) for v in bbox)
    shown = "[" + ", ".join(f"{v:g}" for v in (x1, y1, x2, y2)) + "]"
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return [x1, y1, x2, y2], f"non-finite value in box {shown}"
    if x2 < x1:
        return [x1, y1, x2, y2], f"x2 < x1 in box {shown}"
    if y2 < y1:
        return [x1, y1, x2, y2], f"y2 < y1 in box {shown}"
    if width is None or height is None:
        if x2 == x1 or y2 == y1:
            return [x1, y1, x2, y2], f"empty box {shown}"
        return [x1, y1, x2, y2], None
    tw, th = overshoot_tolerance(width), overshoot_tolerance(height)
    if x1 < -tw or y1 < -th or x2 > width + tw or y2 > height + th:
        return [x1, y1, x2, y2], f"box {shown} lies outside the {width:g}x{height:g} image"
    box = clip_box([x1, y1, x2, y2], width, height)
    if box[2] <= box[0] or box[3] <= box[1]:
        return box, f"empty box {shown} (zero width or height inside the {width:g}x{height:g} image)"
    return box, None


def exif_transposed(path: str | Path) -> bool:
    """True when the image's EXIF orientation swaps width and height when displayed."""
    try:
        with Image.open(path) as im:
            return im.getexif().get(ORIENTATION_TAG, 1) in SWAPS_SIDES
    except Exception:  # noqa: BLE001 - only a hint: any unreadable header means "no rotation known"
        return False


def size_problem(path: str | Path, real: tuple[int, int], width: int | None, height: int | None) -> str | None:
    """Message when a recorded size disagrees with the upright image size `real`, else None."""
    if width is None or height is None or (int(width), int(height)) == tuple(real):
        return None
    hint = ""
    if (int(height), int(width)) == tuple(real) and exif_transposed(path):
        hint = (" (the recorded size is the stored pixels before the EXIF rotation: the labels were made on the"
                " unrotated image; save the image upright, e.g. PIL.ImageOps.exif_transpose, and rotate its labels)")
    return f"recorded size {width}x{height} but the image {path} is {real[0]}x{real[1]} (upright){hint}"


def _box_problems(where: str, boxes: Iterable[tuple[str, Sequence[float]]], w: int | None, h: int | None) -> list[str]:
    out = []
    for name, bbox in boxes:
        clipped, problem = check_box(bbox, w, h)
        if problem is None and [float(v) for v in bbox] != clipped:
            problem = f"box {list(bbox)} overshoots the image slightly (clip it)"
        if problem:
            out.append(f"{where}: {name}: {problem}")
    return out


def validate_samples(samples: Iterable[Sample], root: str | Path | None, check_images: bool = True) -> list[str]:
    """All problems of a dataset as one-line strings naming the sample; empty when it is clean.

    Checks: boxes (objects, clip frames, QA crops) ordered and inside the image, unique ids, and with
    `check_images` that each image exists (unless flagged `missing_image`) and its header size matches.
    """
    problems: list[str] = []
    seen: set[str] = set()
    for i, s in enumerate(samples):
        where = f"sample {i} (id {s.id})"
        if s.id in seen:
            problems.append(f"{where}: duplicate id")
        seen.add(s.id)
        boxes = [(f"objects[{j}]", o.bbox) for j, o in enumerate(s.objects)]
        boxes += [(f"qa[{j}].crops[{k}]", c.bbox) for j, t in enumerate(s.qa) for k, c in enumerate(t.crops)]
        for f, objs in enumerate(s.frame_objects or []):
            boxes += [(f"frame_objects[{f}][{j}]", o.bbox) for j, o in enumerate(objs)]
        problems += _box_problems(where, boxes, s.width, s.height)
        if not check_images or s.image is None or MISSING_IMAGE in s.flags:
            continue
        path = s.image_path(root)
        try:
            real = upright_size(path)
        except DataError as e:
            problems.append(f"{where}: {e.format_message()}")
            continue
        if real is None:
            problems.append(f"{where}: image {path} not found")
        elif (msg := size_problem(path, real, s.width, s.height)) is not None:
            problems.append(f"{where}: {msg}")
    return problems
