"""Review regressions: resize settings read from what training actually saves and loads."""

from __future__ import annotations

import json
from pathlib import Path

from jamspotter.formats import ResizeParams, get_format, resize_params


def test_resize_params_reads_a_transformers5_saved_processor_folder(tmp_path: Path) -> None:
    # processor.save_pretrained (transformers 5) writes processor_config.json with the image processor
    # nested, and no preprocessor_config.json: `formats parse --processor final/` must still read it.
    cfg = {"image_processor": {"patch_size": 16, "merge_size": 2,
                               "size": {"shortest_edge": 1024, "longest_edge": 200704}},
           "processor_class": "Qwen3VLProcessor"}
    (tmp_path / "processor_config.json").write_text(json.dumps(cfg))
    assert resize_params(tmp_path) == ResizeParams(32, 1024, 200704)
    assert get_format("qwen2.5-vl", processor=tmp_path).params.max_pixels == 200704


def test_resize_params_of_a_config_with_both_spellings_match_the_loaded_processor(tmp_path: Path) -> None:
    # A config saved with both min/max_pixels and size, then max_pixels edited (the usual memory fix):
    # the image processor applies max_pixels over size, so the format must read the same budget.
    from transformers import AutoImageProcessor

    cfg = {"min_pixels": 3136, "max_pixels": 200704, "size": {"shortest_edge": 3136, "longest_edge": 12845056},
           "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2, "image_processor_type": "Qwen2VLImageProcessor"}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(cfg))
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert resize_params(loaded) == ResizeParams(28, 3136, 200704)
    assert resize_params(tmp_path) == resize_params(loaded)
