"""The crop tool: a model's crop call -> a checked box in ORIGINAL pixels -> the crop image.

One implementation for every stage: SFT renders crop images with it, GRPO rollouts answer the
model's `crop` tool calls with it, and `Detector.ask` / the service run the same loop at inference.
Coordinates follow the family's convention (0-1000 relative, or resized-input pixels for Qwen2.5-VL)
and are mapped back to the original image before cropping, so a crop always shows original pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jamspotter.formats.base import Format

MIN_CROP_SIDE = 4.0  # original pixels: a thinner crop shows the model nothing
MAX_CROP_ASPECT = 200.0  # Qwen-VL processors refuse images with a longer side over 200x the shorter one
INSIDE_TOLERANCE = 0.01  # a call may overshoot the image by 1% of its side (rounding) and still count as inside


@dataclass(frozen=True)
class CropCall:
    """A checked crop call: `box` in original pixels (clipped to the image) when valid, else `problem` says why."""

    box: list[float] | None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.box is not None


def check_crop(box: Sequence[float], image_size: tuple[int, int], min_side: float = MIN_CROP_SIDE) -> CropCall:
    """Validate an original-pixel crop box: finite, ordered, inside the image, not degenerate. Never raises."""
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
        w, h = (float(v) for v in image_size)
    except (TypeError, ValueError):
        return CropCall(None, f"crop box {box!r} is not [x1, y1, x2, y2]")
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or w <= 0 or h <= 0:
        return CropCall(None, f"crop box {box!r} is not finite")
    if x2 <= x1 or y2 <= y1:
        return CropCall(None, f"crop box {_fmt(box)} has x2<=x1 or y2<=y1")
    tx, ty = INSIDE_TOLERANCE * w, INSIDE_TOLERANCE * h
    if x1 < -tx or y1 < -ty or x2 > w + tx or y2 > h + ty:
        return CropCall(None, f"crop box {_fmt(box)} is outside the {int(w)}x{int(h)} image")
    clipped = [max(x1, 0.0), max(y1, 0.0), min(x2, w), min(y2, h)]
    cw, ch = clipped[2] - clipped[0], clipped[3] - clipped[1]
    if min(cw, ch) < min_side:
        return CropCall(None, f"crop box {_fmt(box)} is degenerate (narrower than {min_side:g} px)")
    if max(cw, ch) / min(cw, ch) > MAX_CROP_ASPECT:
        return CropCall(None, f"crop box {_fmt(box)} has an aspect ratio over {MAX_CROP_ASPECT:g}")
    return CropCall(clipped)


def crop_call(fmt: Format, values: Sequence[Any], image_size: tuple[int, int],
              input_size: tuple[int, int] | None = None) -> CropCall:
    """A crop call's `bbox_2d` in the family's coordinates -> a checked original-pixel box. Never raises."""
    try:
        nums = [float(v) for v in values]
    except (TypeError, ValueError):
        return CropCall(None, f"crop bbox_2d {values!r} is not four numbers")
    if len(nums) != 4 or not all(math.isfinite(v) for v in nums):
        return CropCall(None, f"crop bbox_2d {values!r} is not four finite numbers")
    sizes = [image_size] if input_size is None else [image_size, input_size]
    if not all(_positive_size(size) for size in sizes):
        return CropCall(None, f"cannot crop an image of size {image_size!r} (model input {input_size!r})")
    if not fmt.relative and input_size is None:
        input_size = fmt.input_size(*(int(v) for v in image_size))
    return check_crop(fmt.from_model(nums, image_size, input_size), image_size)


def _positive_size(size: Any) -> bool:
    try:
        w, h = (float(v) for v in size)
    except (TypeError, ValueError):
        return False
    return math.isfinite(w) and math.isfinite(h) and w >= 1 and h >= 1


def crop_image(image: Any, box: Sequence[float]) -> Any:
    """The PIL crop of an original-pixel box (outer pixel edges: floor the start, ceil the end)."""
    x1, y1, x2, y2 = box
    w, h = image.size
    left, top = max(0, math.floor(x1)), max(0, math.floor(y1))
    right, bottom = min(w, max(left + 1, math.ceil(x2))), min(h, max(top + 1, math.ceil(y2)))
    return image.crop((left, top, right, bottom))


def _fmt(box: Sequence[Any]) -> str:
    try:
        return "[" + ", ".join(f"{float(v):g}" for v in box) + "]"
    except (TypeError, ValueError):
        return repr(box)


class CropTool:
    """The `crop` tool over one image: what a GRPO rollout and `Detector.ask` give the model.

    `crop` is the only public method besides `reset`: TRL turns public methods of an environment into
    tools, and its docstring is the schema the model reads (`crop_tool_schema`), so training and
    inference show the model the same tool. A bad call raises ValueError with the reason, which TRL
    (and `Detector.ask`) hand back to the model as the tool's error.
    """

    def __init__(self) -> None:
        self.image: Any = None
        self.format: Format | None = None
        self.input_size: tuple[int, int] | None = None
        self.max_calls = 0
        self.calls: list[CropCall] = []

    def reset(self, image: Any = None, fmt: Format | None = None, input_size: tuple[int, int] | None = None,
              max_calls: int = 3) -> None:
        """Start a new conversation about `image` (RGB PIL) whose boxes the model writes in `fmt`'s convention."""
        self.image, self.format, self.max_calls = image, fmt, int(max_calls)
        self.input_size = tuple(input_size) if input_size is not None else None  # type: ignore[assignment]
        self.calls = []

    def crop(self, bbox_2d: list[float]) -> list:
        """Zoom into a region of the conveyor-belt image to look at it closely.

        Args:
            bbox_2d: The region to crop as [x1, y1, x2, y2], in the same coordinates you use for boxes.
        """
        if self.image is None or self.format is None:
            raise ValueError("no image to crop")
        if len(self.calls) >= self.max_calls:
            raise ValueError(f"crop limit reached ({self.max_calls} per answer)")
        call = crop_call(self.format, bbox_2d if isinstance(bbox_2d, (list, tuple)) else [bbox_2d],
                         self.image.size, self.input_size)
        self.calls.append(call)
        if not call.ok:
            raise ValueError(call.problem)
        return [{"type": "image", "image": crop_image(self.image, call.box)}]

    @property
    def used(self) -> int:
        """How many calls returned a crop image."""
        return sum(c.ok for c in self.calls)


def tool_error_text(reason: str) -> str:
    """What the model reads for a failed tool call: TRL's GRPO loop answers `str({"error": reason})`, so
    inference answers the same text."""
    return str({"error": reason})


def crop_tool_schema() -> dict[str, Any]:
    """The JSON schema of the crop tool, as chat templates and TRL render it from `CropTool.crop`."""
    from transformers.utils import get_json_schema

    return get_json_schema(CropTool().crop)
