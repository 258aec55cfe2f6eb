"""Qwen3-VL: JSON `bbox_2d` like Qwen2.5-VL, but integers 0-1000 relative to width/height."""

from __future__ import annotations

from jamspotter.formats.json_format import JsonFormat


class Qwen3VLFormat(JsonFormat):
    """```json [{"bbox_2d": [x1, y1, x2, y2], "label": "rope"}] ``` on a 0-1000 grid; smart_resize factor 32."""

    family = "qwen3-vl"
    relative = True
