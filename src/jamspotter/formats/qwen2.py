"""Qwen2-VL: boxes as special tokens, `(x1,y1),(x2,y2)` integers 0-1000 relative to width/height."""

from __future__ import annotations

from collections.abc import Sequence

from jamspotter.formats.base import BoxItem, Format

REF_START, REF_END = "<|object_ref_start|>", "<|object_ref_end|>"
BOX_START, BOX_END = "<|box_start|>", "<|box_end|>"


class Qwen2VLFormat(Format):
    """`<|object_ref_start|>rope<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>`, one per line."""

    family = "qwen2-vl"
    relative = True
    empty_target = "none"

    def write_box(self, values: Sequence[int]) -> str:
        x1, y1, x2, y2 = (int(v) for v in values)
        return f"{BOX_START}({x1},{y1}),({x2},{y2}){BOX_END}"

    def write_boxes(self, items: list[BoxItem]) -> str:
        if not items:
            return self.empty_target
        lines = []
        for label, values, reason in items:
            line = f"{REF_START}{label}{REF_END}{self.write_box(values)}"
            lines.append(f"{line}: {' '.join(reason.split())}" if reason else line)
        return "\n".join(lines)

    def detection_prompt(self, classes: Sequence[str], *, jam_only: bool, with_reason: bool) -> str:
        what = "jam-causing item" if jam_only else "item"
        text = (f"Find every {what} on the conveyor belt that belongs to these classes: {', '.join(classes)}. "
                "Give the class name and bounding box of each one, one per line. Answer none if there are none.")
        if with_reason:
            text += " After each box, add a short reason why it could jam the line."
        return text
