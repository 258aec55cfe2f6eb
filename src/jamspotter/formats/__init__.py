"""Model-family formats: the only place that knows how each Qwen-VL generation reads and writes boxes.

    fmt = get_format("qwen2.5-vl", processor=processor)     # or min_pixels=..., max_pixels=...
    prompt, target = fmt.render_detection(sample)             # prompt == fmt.prompt() for every image
    boxes, problems = fmt.parse_detections(text, (sample.width, sample.height))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jamspotter.data.taxonomy import Taxonomy
from jamspotter.errors import JamspotterError
from jamspotter.formats.base import Format
from jamspotter.formats.qwen2 import Qwen2VLFormat
from jamspotter.formats.qwen3 import Qwen3VLFormat
from jamspotter.formats.qwen25 import Qwen25VLFormat
from jamspotter.formats.resize import DEFAULT_PARAMS, ResizeParams, resize_params, smart_resize

FORMATS: dict[str, type[Format]] = {f.family: f for f in (Qwen2VLFormat, Qwen25VLFormat, Qwen3VLFormat)}
FAMILIES: tuple[str, ...] = tuple(FORMATS)
_ALIASES = {"qwen2": "qwen2-vl", "qwen2vl": "qwen2-vl", "qwen2.5": "qwen2.5-vl", "qwen25-vl": "qwen2.5-vl",
            "qwen2_5-vl": "qwen2.5-vl", "qwen2_5_vl": "qwen2.5-vl", "qwen25vl": "qwen2.5-vl", "qwen3": "qwen3-vl",
            "qwen3vl": "qwen3-vl", "qwen2_vl": "qwen2-vl", "qwen3_vl": "qwen3-vl"}


def canonical_family(family: str) -> str:
    """`Qwen2.5-VL`, `qwen2_5_vl` ... -> `qwen2.5-vl`; unknown names raise JamspotterError."""
    key = str(family).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in FORMATS:
        raise JamspotterError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    return key


def get_format(
    family: str,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    processor: Any = None,
    classes: Sequence[str] | None = None,
    taxonomy: Taxonomy | None = None,
    jam_only: bool = False,
    with_reason: bool = False,
    tool_call: str = "json",
) -> Format:
    """The `Format` of a family. Resize settings: the processor's (object or folder) when given,
    else the released model's defaults; explicit min/max_pixels override either. `classes` are listed in
    detection prompts (default: jam-causing + material classes); `jam_only` asks only for jam-causing items,
    `with_reason` with a one-line reason each; `tool_call` is the crop call syntax. A run's settings come from
    its `RunContract` (`contract.format(processor)`), never from the image at hand."""
    key = canonical_family(family)
    params = DEFAULT_PARAMS[key]
    if processor is not None:
        params = resize_params(processor, default=params)
    params = ResizeParams(params.factor, int(min_pixels or params.min_pixels), int(max_pixels or params.max_pixels))
    if params.min_pixels > params.max_pixels:
        raise JamspotterError(f"min_pixels {params.min_pixels} is larger than max_pixels {params.max_pixels}")
    if tool_call not in ("json", "list"):
        raise JamspotterError(f"unknown tool-call syntax {tool_call!r}; use json or list")
    if with_reason and not jam_only:
        raise JamspotterError("with_reason applies to jam-only answers")
    return FORMATS[key](params, classes=classes, taxonomy=taxonomy, jam_only=jam_only, with_reason=with_reason,
                        tool_call=tool_call)


__all__ = [
    "FAMILIES", "FORMATS", "Format", "Qwen2VLFormat", "Qwen25VLFormat", "Qwen3VLFormat", "ResizeParams",
    "canonical_family", "get_format", "resize_params", "smart_resize",
]
