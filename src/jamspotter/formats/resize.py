"""`smart_resize` exactly as the Qwen-VL image processors do it, and where its settings come from.

Qwen2.5-VL writes boxes in pixels of the RESIZED input, so a format must use the same factor and
min/max pixels as the processor that feeds the model: `resize_params` reads them from a loaded
processor or a saved processor folder (preprocessor_config.json) instead of trusting defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jamspotter.data.io import read_mapping

MAX_ASPECT_RATIO = 200


def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56, max_pixels: int = 14 * 14 * 4 * 1280
) -> tuple[int, int]:
    """(height, width) the Qwen-VL processor resizes an image to: multiples of `factor`, area in range.

    Same arithmetic as `transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize`
    (and qwen-vl-utils): round to the nearest multiple; if the area is too big scale by
    sqrt(hw / max_pixels) and floor, if too small scale up and ceil. Raises ValueError when the
    aspect ratio exceeds 200, as the processor does.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got height={height} width={width}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        ratio = max(height, width) / min(height, width)
        raise ValueError(f"absolute aspect ratio must be smaller than {MAX_ASPECT_RATIO}, got {ratio}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class ResizeParams:
    """The three numbers smart_resize needs: factor = patch_size * merge_size, and the pixel budget."""

    factor: int
    min_pixels: int
    max_pixels: int

    def resize(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the model input for an image of (width, height)."""
        h, w = smart_resize(int(height), int(width), self.factor, self.min_pixels, self.max_pixels)
        return w, h


# Defaults = the released models' preprocessor_config.json (on the hub, beside each model's weights):
# Qwen2-VL / Qwen2.5-VL: patch 14 x merge 2, min_pixels 3136, max_pixels 12845056;
# Qwen3-VL: patch 16 x merge 2, size {shortest_edge: 65536, longest_edge: 16777216}.
DEFAULT_PARAMS: dict[str, ResizeParams] = {
    "qwen2-vl": ResizeParams(28, 3136, 12845056),
    "qwen2.5-vl": ResizeParams(28, 3136, 12845056),
    "qwen3-vl": ResizeParams(32, 65536, 16777216),
}


def _get(obj: Any, key: str) -> Any:
    """Attribute or mapping lookup (processor attributes, SizeDict, or plain dicts)."""
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def params_from_config(config: Any, default: ResizeParams | None = None) -> ResizeParams:
    """Read factor/min/max from an image processor or its config dict.

    Accepts both spellings found in released configs: `min_pixels`/`max_pixels` (Qwen2/2.5) and
    `size: {shortest_edge, longest_edge}` (Qwen3-VL, and transformers 5 processors, where
    shortest/longest_edge hold pixel COUNTS, not side lengths). Missing values fall back to `default`.
    """
    default = default or DEFAULT_PARAMS["qwen2-vl"]
    patch, merge = _get(config, "patch_size"), _get(config, "merge_size")
    factor = int(patch) * int(merge) if patch and merge else default.factor
    size = _get(config, "size")
    lo = hi = None
    if size is not None:  # transformers 5 keeps the budget in size
        lo = _get(size, "shortest_edge") or _get(size, "min_pixels")
        hi = _get(size, "longest_edge") or _get(size, "max_pixels")
    # A top-level min_pixels/max_pixels overrides size, as the image processor's __init__ applies it.
    lo = _get(config, "min_pixels") or lo
    hi = _get(config, "max_pixels") or hi
    return ResizeParams(factor, int(lo or default.min_pixels), int(hi or default.max_pixels))


def resize_params(source: Any, default: ResizeParams | None = None) -> ResizeParams:
    """ResizeParams of a processor object, an image processor, a folder, or a preprocessor_config.json path."""
    if isinstance(source, str | Path):
        path = Path(source)
        cfg_path = path / "preprocessor_config.json" if path.is_dir() else path
        if path.is_dir() and not cfg_path.is_file() and (path / "processor_config.json").is_file():
            cfg_path = path / "processor_config.json"  # transformers 5 save_pretrained nests it there
        config = read_mapping(cfg_path, "processor config")
        if isinstance(config.get("image_processor"), dict):
            config = config["image_processor"]
        return params_from_config(config, default)
    image_processor = getattr(source, "image_processor", None)
    return params_from_config(image_processor if image_processor is not None else source, default)
