"""Box maths shared by importers, formats, the evaluator, rewards and the crop tool.

Boxes are `[x1, y1, x2, y2]` floats in absolute pixels of the original image. Write IoU once here:
the evaluator, the region rewards and the crop tool must agree on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BoxLike = Sequence[float]


def xywh_to_xyxy(box: BoxLike) -> list[float]:
    """COCO `[x, y, w, h]` to `[x1, y1, x2, y2]`."""
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y + h]


def xyxy_to_xywh(box: BoxLike) -> list[float]:
    """`[x1, y1, x2, y2]` to COCO `[x, y, w, h]`."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def cxcywh_norm_to_xyxy(box: BoxLike, width: float, height: float) -> list[float]:
    """YOLO normalised `[cx, cy, w, h]` to absolute `[x1, y1, x2, y2]`."""
    cx, cy, w, h = (float(v) for v in box)
    return [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]


def xyxy_to_cxcywh_norm(box: BoxLike, width: float, height: float) -> list[float]:
    """Absolute `[x1, y1, x2, y2]` to YOLO normalised `[cx, cy, w, h]`."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]


def clip_box(box: BoxLike, width: float, height: float) -> list[float]:
    """Clip a box to the image `[0, width] x [0, height]`."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [min(max(x1, 0.0), width), min(max(y1, 0.0), height),
            min(max(x2, 0.0), width), min(max(y2, 0.0), height)]


def box_area(box: BoxLike) -> float:
    """Area of a box; zero for degenerate or inverted boxes."""
    x1, y1, x2, y2 = box
    return max(0.0, float(x2) - float(x1)) * max(0.0, float(y2) - float(y1))


def intersection(a: BoxLike, b: BoxLike) -> float:
    """Area of the overlap of two boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return float(w * h) if w > 0 and h > 0 else 0.0


def iou(a: BoxLike, b: BoxLike) -> float:
    """Intersection over union of two xyxy boxes (0 when both are empty)."""
    inter = intersection(a, b)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def iou_matrix(a: np.ndarray | Sequence[BoxLike], b: np.ndarray | Sequence[BoxLike]) -> np.ndarray:
    """Pairwise IoU, shape `(len(a), len(b))`, vectorised; same definition as `iou`."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def visible_fraction(box: BoxLike, region: BoxLike) -> float:
    """Share of `box`'s area that lies inside `region` (0..1); used by region-check tasks."""
    area = box_area(box)
    return intersection(box, region) / area if area > 0 else 0.0
