"""Qwen2.5-VL: JSON `bbox_2d` in absolute pixels of the smart-resized input (not the original image)."""

from __future__ import annotations

from jamspotter.formats.json_format import JsonFormat


class Qwen25VLFormat(JsonFormat):
    """```json [{"bbox_2d": [x1, y1, x2, y2], "label": "rope"}] ``` in resized-input pixels."""

    family = "qwen2.5-vl"
    relative = False
