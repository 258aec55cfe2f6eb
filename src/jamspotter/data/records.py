"""The canonical records that flow between every stage: `Sample` and its `BoxObject`s.

A `Sample` never holds model-specific text. Boxes are `[x1, y1, x2, y2]` floats in absolute pixels
of the ORIGINAL image. Paths (`image`, `video`, `frames`) are relative to the folder of the JSONL
file that holds the record, or absolute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


def _box4(v: Any) -> list[float]:
    if not isinstance(v, list | tuple) or len(v) != 4:
        raise ValueError("bbox must be a list of 4 numbers [x1, y1, x2, y2]")
    out = [float(x) for x in v]
    if any(x != x or x in (float("inf"), float("-inf")) for x in out):
        raise ValueError("bbox values must be finite numbers")
    return out


def _polygons(v: Any) -> Any:
    if v is None:
        return None
    if not isinstance(v, list | tuple) or not all(isinstance(p, list | tuple) for p in v):
        raise ValueError("polygon must be a list of [x, y, x, y, ...] lists")
    out = [[float(x) for x in p] for p in v]
    if any(x != x or x in (float("inf"), float("-inf")) for p in out for x in p):
        raise ValueError("polygon values must be finite numbers")
    return out


class BoxObject(_Record):
    """One labelled region; detections from a model use the same shape plus `score`."""

    label: str
    bbox: list[float]
    jam_risk: bool | None = None
    score: float | None = None
    polygon: list[list[float]] | None = None  # COCO-style polygons, absolute pixels: [[x, y, x, y, ...]]
    iscrowd: bool = False
    reason: str | None = None  # optional one-line reason (why it is a jam risk)
    attributes: dict[str, Any] = Field(default_factory=dict)

    _check_bbox = field_validator("bbox", mode="before")(classmethod(lambda cls, v: _box4(v)))
    _check_polygon = field_validator("polygon", mode="before")(classmethod(lambda cls, v: _polygons(v)))


class Crop(_Record):
    """A region an answer looks at (a crop tool call of the QnA format)."""

    bbox: list[float]
    label: str | None = None

    _check_bbox = field_validator("bbox", mode="before")(classmethod(lambda cls, v: _box4(v)))


class QATurn(_Record):
    """A free-form question/answer turn; `crops` are the boxes the answer looks at, in order."""

    question: str
    answer: str
    think: str | None = None
    crops: list[Crop] = Field(default_factory=list)


class Target(_Record):
    """A non-box target, e.g. a clip's per-step `(belt_speed, ...)` sequence."""

    kind: str  # "trajectory", "belt_speed", ...
    values: list[list[float]]
    names: list[str] | None = None  # component names, e.g. ["velocity", "curvature"]


class Sample(_Record):
    """One image (or clip) with its labels; one JSONL line."""

    id: str
    image: str | None = None
    width: int | None = None
    height: int | None = None
    objects: list[BoxObject] = Field(default_factory=list)
    label: str | None = None  # image-level class (classification)
    qa: list[QATurn] = Field(default_factory=list)
    target: Target | None = None
    split: str | None = None
    source: str | None = None
    video: str | None = None
    frames: list[str] | None = None
    fps: float | None = None
    frame_objects: list[list[BoxObject]] | None = None  # per-frame boxes of a clip
    flags: list[str] = Field(default_factory=list)  # e.g. "missing_image"
    meta: dict[str, Any] = Field(default_factory=dict)

    def resolve(self, path: str | None, root: str | Path | None) -> Path | None:
        """Resolve a record path against the dataset root (the JSONL's folder)."""
        if path is None:
            return None
        p = Path(path)
        return p if p.is_absolute() or root is None else Path(root) / p

    def image_path(self, root: str | Path | None = None) -> Path | None:
        """Absolute (or root-relative) path of the image."""
        return self.resolve(self.image, root)

    @property
    def task(self) -> str:
        """What the sample teaches, decided from what it carries (the one rule prompts, training and exports use):
        "qa" (its turns), "sequence" (a numeric target), "classification" (a label and no boxes) or "detection"
        (boxes, or none: the empty answer)."""
        if self.qa:
            return "qa"
        if self.target is not None:
            return "sequence"
        if self.label is not None and not self.objects:
            return "classification"
        return "detection"

    def to_json(self) -> str:
        """One compact JSON line, without defaulted empty fields."""
        return self.model_dump_json(exclude_defaults=True)
