"""The JSON box syntax shared by Qwen2.5-VL and Qwen3-VL (they differ only in coordinates)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from jamspotter.formats.base import BoxItem, Format


class JsonFormat(Format):
    """A fenced JSON list of `{"bbox_2d": [...], "label": ...}`, one item per line as the models write it."""

    empty_target = "```json\n[]\n```"

    def write_boxes(self, items: list[BoxItem]) -> str:
        if not items:
            return self.empty_target
        rows = []
        for label, values, reason in items:
            item: dict[str, object] = {"bbox_2d": [int(v) for v in values], "label": label}
            if reason:
                item["reason"] = " ".join(reason.split())
            rows.append("\t" + json.dumps(item, ensure_ascii=False))
        return "```json\n[\n" + ",\n".join(rows) + "\n]\n```"

    def detection_prompt(self, classes: Sequence[str], *, jam_only: bool, with_reason: bool) -> str:
        what = "jam-causing item" if jam_only else "item"
        names = ", ".join(f'"{c}"' for c in classes)
        keys = '"bbox_2d" and "label"' + (' and a one-line "reason" why it could jam the line' if with_reason else "")
        return (f"Locate every {what} on the conveyor belt that belongs to the following categories: {names}. "
                f"Report bbox coordinates in JSON format, one object per item with {keys}. "
                "Output [] if there are none.")
