"""`Format`: how one Qwen-VL generation reads and writes boxes, shared by all tasks.

Subclasses (qwen2.py, qwen25.py, qwen3.py) only choose the coordinate system and the box syntax;
conversion, parsing and task dispatch live here so the three generations cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from jamspotter.data.boxes import box_area
from jamspotter.data.records import BoxObject, Sample
from jamspotter.data.taxonomy import DEFAULT_TAXONOMY, JAM_CLASSES, MATERIAL_CLASSES, Taxonomy
from jamspotter.errors import DataError
from jamspotter.formats.parse import RawBox, extract_boxes
from jamspotter.formats.resize import DEFAULT_PARAMS, MAX_ASPECT_RATIO, ResizeParams

BoxItem = tuple[str, list[int], str | None]  # (label, box in model coordinates, reason)


class Format:
    """Prompt/target rendering and parsing for one model family; boxes in ORIGINAL pixels outside."""

    family: ClassVar[str] = ""
    relative: ClassVar[bool] = True  # True: integers 0-1000 of the side; False: pixels of the resized input
    empty_target: ClassVar[str] = "[]"

    def __init__(
        self,
        params: ResizeParams | None = None,
        classes: Sequence[str] | None = None,
        taxonomy: Taxonomy | None = None,
        jam_only: bool = False,
        with_reason: bool = False,
        tool_call: str = "json",
    ) -> None:
        self.params = params or DEFAULT_PARAMS[self.family]
        self.classes: tuple[str, ...] = tuple(classes) if classes else JAM_CLASSES + MATERIAL_CLASSES
        self.taxonomy = taxonomy or DEFAULT_TAXONOMY
        self.jam_only = jam_only  # detection asks for (and targets list) jam-causing items only
        self.with_reason = with_reason  # jam-only answers carry a one-line reason per item
        self.tool_call = tool_call  # crop tool-call syntax: "json" (TRL's) or "list" ([x1, y1, x2, y2])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(family={self.family!r}, params={self.params})"

    # ---- coordinates ---------------------------------------------------------------------------
    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the model input after smart_resize."""
        return self.params.resize(width, height)

    def _scale(
        self, image_size: tuple[int, int], input_size: tuple[int, int] | None
    ) -> tuple[float, float, int, int]:
        """Model units per original pixel along x and y, and the largest valid x and y."""
        w, h = image_size
        if self.relative:
            return 1000 / w, 1000 / h, 1000, 1000
        rw, rh = input_size or self.input_size(w, h)
        return rw / w, rh / h, rw, rh

    def to_model(
        self, box: Sequence[float], image_size: tuple[int, int], input_size: tuple[int, int] | None = None
    ) -> list[int]:
        """Original-pixel box -> the integers this family writes (rounded, clamped to the valid range)."""
        sx, sy, mx, my = self._scale(image_size, input_size)
        x1, y1, x2, y2 = box
        return [min(max(round(v * s), 0), m) for v, s, m in ((x1, sx, mx), (y1, sy, my), (x2, sx, mx), (y2, sy, my))]

    def from_model(
        self, values: Sequence[float], image_size: tuple[int, int], input_size: tuple[int, int] | None = None
    ) -> list[float]:
        """Model coordinates -> original-pixel box (no clipping; see `parse_detections`)."""
        sx, sy, _, _ = self._scale(image_size, input_size)
        x1, y1, x2, y2 = values
        return [x1 / sx, y1 / sy, x2 / sx, y2 / sy]

    # ---- syntax (per family) -------------------------------------------------------------------
    def write_boxes(self, items: list[BoxItem]) -> str:
        """The answer text for a list of boxes."""
        raise NotImplementedError

    def write_box(self, values: Sequence[int]) -> str:
        """One box referred to inside prose (a region in a question, a crop tool call)."""
        return "[" + ", ".join(str(int(v)) for v in values) + "]"

    def detection_prompt(self, classes: Sequence[str], *, jam_only: bool, with_reason: bool) -> str:
        """The user instruction asking for boxes of `classes`."""
        raise NotImplementedError

    # ---- detection -----------------------------------------------------------------------------
    def image_size_of(self, sample: Sample) -> tuple[int, int]:
        """(width, height) of a sample; a missing size is a data error (boxes cannot be converted)."""
        if not sample.width or not sample.height or sample.width <= 0 or sample.height <= 0:
            raise DataError(f"sample {sample.id}: width/height missing, cannot write model coordinates")
        w, h = int(sample.width), int(sample.height)
        if max(w, h) / min(w, h) > MAX_ASPECT_RATIO:
            raise DataError(f"sample {sample.id}: {w}x{h} has an aspect ratio over {MAX_ASPECT_RATIO}; "
                            "Qwen-VL processors refuse it (crop or pad the image)")
        return w, h

    def is_jam(self, obj: BoxObject) -> bool:
        """An object's jam risk: its own flag when set, else the taxonomy's answer for its label."""
        return self.taxonomy.is_jam(obj)

    def asked_classes(self) -> list[str]:
        """The classes every detection prompt names: the format's list, or its jam-causing part when jam-only.

        Never the labels of the image at hand: a per-image list names the answer in the question.
        """
        if not self.jam_only:
            return list(self.classes)
        return [c for c in self.classes if self.taxonomy.jam_risk(c)] or list(JAM_CLASSES)

    def prompt(self) -> str:
        """The detection instruction, the same for every image."""
        return self.detection_prompt(self.asked_classes(), jam_only=self.jam_only, with_reason=self.with_reason)

    def expected_objects(self, objects: Sequence[BoxObject]) -> list[BoxObject]:
        """The objects a correct detection answer lists: all of them, or the jam-causing ones when jam-only."""
        return [o for o in objects if self.is_jam(o)] if self.jam_only else list(objects)

    def render_boxes(self, objects: Sequence[BoxObject], image_size: tuple[int, int],
                     input_size: tuple[int, int] | None = None, *, with_reason: bool = False) -> str:
        """Answer text for `objects` (original pixels), top-to-bottom then left-to-right."""
        ordered = sorted(objects, key=lambda o: (o.bbox[1], o.bbox[0]))
        items = [(o.label, self.to_model(o.bbox, image_size, input_size), o.reason if with_reason else None)
                 for o in ordered]
        return self.write_boxes(items)

    def render_detection(self, sample: Sample) -> tuple[str, str]:
        """(prompt, target) for box detection as this format was configured (all classes, or jam-only)."""
        size = self.image_size_of(sample)
        objects = self.expected_objects(sample.objects)
        return self.prompt(), self.render_boxes(objects, size, with_reason=self.with_reason)

    def boxes_from_raw(
        self, raw: Sequence[RawBox], image_size: tuple[int, int], input_size: tuple[int, int] | None = None
    ) -> tuple[list[BoxObject], list[str]]:
        """Model-coordinate boxes -> `BoxObject`s in original pixels; fixes and reports swapped/out-of-range values."""
        problems: list[str] = []
        _, _, mx, my = self._scale(image_size, input_size)
        w, h = image_size
        out: list[BoxObject] = []
        for r in raw:
            x1, y1, x2, y2 = r.values
            if x1 > x2 or y1 > y2:
                problems.append(f"box at {r.start} had x1>x2 or y1>y2: corners swapped")
                x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
            clipped = [min(max(x1, 0), mx), min(max(y1, 0), my), min(max(x2, 0), mx), min(max(y2, 0), my)]
            if clipped != [x1, y1, x2, y2]:
                problems.append(f"box at {r.start} outside 0..{mx}x0..{my}: clipped")
            bbox = self.from_model(clipped, image_size, input_size)
            bbox = [min(max(bbox[0], 0.0), w), min(max(bbox[1], 0.0), h),
                    min(max(bbox[2], 0.0), w), min(max(bbox[3], 0.0), h)]
            if box_area(bbox) <= 0:
                problems.append(f"box at {r.start} has zero area")
            label = r.label or "object"
            try:
                out.append(BoxObject(label=label, bbox=bbox, jam_risk=self.taxonomy.jam_risk(label), score=r.score,
                                     reason=r.reason, attributes=r.extra))
            except ValueError as e:  # pydantic's ValidationError; model text must never crash the caller
                problems.append(f"box at {r.start} dropped: {str(e).splitlines()[0]}")
        return out, problems

    def parse_detections(
        self, text: str, image_size: tuple[int, int], input_size: tuple[int, int] | None = None
    ) -> tuple[list[BoxObject], list[str]]:
        """Boxes in ORIGINAL pixels read from model text, and the problems met. Never raises."""
        try:
            w, h = (int(v) for v in image_size)
            if w <= 0 or h <= 0:
                raise ValueError("sizes must be positive")
            if input_size is not None:
                rw, rh = (int(v) for v in input_size)
                if rw <= 0 or rh <= 0:
                    raise ValueError("sizes must be positive")
                input_size = (rw, rh)
            elif not self.relative:
                input_size = self.input_size(w, h)
        except (TypeError, ValueError, OverflowError) as e:  # OverflowError: int(inf)
            return [], [f"cannot use image_size {image_size!r} / input_size {input_size!r}: {e}"]
        raw, problems = extract_boxes(text)
        boxes, more = self.boxes_from_raw(raw, (w, h), input_size)
        return boxes, problems + more

    # ---- every task ----------------------------------------------------------------------------
    def render_turns(self, sample: Sample) -> list[tuple[str, str]]:
        """(user, assistant) text pairs for a sample, task chosen from what it carries. No image placeholder.

        qa -> its turns (think/answer with crop tool calls when present); target -> numeric sequence;
        a label and no objects -> classification; otherwise detection as configured (no objects teach the
        empty answer).
        """
        from jamspotter.formats import tasks  # tasks imports Format for typing only

        task = sample.task
        if task == "qa":
            return [tasks.render_qa_turn(self, turn, sample) for turn in sample.qa]
        if task == "sequence":
            return [tasks.render_sequence(sample)]
        if task == "classification":
            return [tasks.render_classification(sample, self.classes)]
        return [self.render_detection(sample)]
