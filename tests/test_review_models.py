"""Review regressions: the image token budget asked for is the one the processor uses."""

from __future__ import annotations

import json
from pathlib import Path

from jamspotter.formats import resize_params
from jamspotter.models.loading import load_processor
from jamspotter.models.tiny import build_tiny_model


def test_load_processor_budget_applies_to_released_min_max_pixels_config(tmp_path: Path) -> None:
    # Released Qwen2/2.5-VL configs carry min_pixels/max_pixels (not `size`); the override must still win.
    folder = build_tiny_model("qwen2.5-vl", tmp_path / "m", real_tokenizer=False, hidden_size=32, layers=1)
    path = folder / "processor_config.json"
    cfg = json.loads(path.read_text())
    image = cfg["image_processor"]
    image.pop("size", None)
    image.update(min_pixels=3136, max_pixels=12845056)
    path.write_text(json.dumps(cfg))
    processor = load_processor(folder, max_pixels=200704)
    assert resize_params(processor).max_pixels == 200704
    assert resize_params(processor).min_pixels == 3136
