"""The crop tool: family coordinates -> checked original-pixel box -> crop image (hand-computed cases)."""

from __future__ import annotations

import math
import time

import pytest
from PIL import Image

from jamspotter.formats import get_format
from jamspotter.formats.crop import CropTool, check_crop, crop_call, crop_image, crop_tool_schema
from jamspotter.formats.tasks import parse_counts, tool_call_box


def test_call_maps_each_family_to_original_pixels() -> None:
    # 640x480 image. Qwen2/3: 0-1000 of each side; Qwen2.5: pixels of the smart-resized input, 644x476
    # (round(640/28)*28 = 644, round(480/28)*28 = 476).
    box = crop_call(get_format("qwen3-vl"), [250, 500, 500, 1000], (640, 480)).box
    assert box == pytest.approx([160, 240, 320, 480])
    assert crop_call(get_format("qwen2-vl"), [0, 0, 1000, 1000], (640, 480)).box == pytest.approx([0, 0, 640, 480])
    box = crop_call(get_format("qwen2.5-vl"), [161, 119, 322, 238], (640, 480)).box
    assert box == pytest.approx([161 * 640 / 644, 119 * 480 / 476, 322 * 640 / 644, 238 * 480 / 476])


@pytest.mark.parametrize(("values", "why"), [
    ([0, 0, 1200, 1000], "outside"), ([500, 500, 500, 900], "x2<=x1"), ([10, 10, 12, 500], "degenerate"),
    ([1, 2, 3], "four"), ("abc", "four numbers"), ([math.nan, 0, 10, 10], "finite"),
])
def test_bad_calls_say_why(values: object, why: str) -> None:
    call = crop_call(get_format("qwen3-vl"), values, (640, 480))  # type: ignore[arg-type]
    assert not call.ok and why in call.problem


@pytest.mark.parametrize("size", [(0, 0), (math.inf, 3), (math.nan, 3), None, "x"])
def test_impossible_sizes_are_a_problem_not_an_exception(size: object) -> None:
    for family in ("qwen2.5-vl", "qwen3-vl"):
        assert not crop_call(get_format(family), [1, 2, 3, 4], size).ok  # type: ignore[arg-type]


def test_crop_image_takes_the_outer_pixel_edges() -> None:
    image = Image.new("RGB", (100, 50))
    assert crop_image(image, [10.5, 0, 20.2, 10]).size == (11, 10)  # floor(10.5)=10 .. ceil(20.2)=21
    assert check_crop([-0.5, 0, 100.5, 50], (100, 50)).box == [0.0, 0.0, 100.0, 50.0]  # 1% overshoot clipped


def test_tool_answers_a_call_and_enforces_the_limit() -> None:
    tool = CropTool()
    tool.reset(Image.new("RGB", (200, 100), (9, 9, 9)), get_format("qwen3-vl"), max_calls=1)
    out = tool.crop([0, 0, 500, 500])
    assert out[0]["type"] == "image" and out[0]["image"].size == (100, 50)
    with pytest.raises(ValueError, match="crop limit"):
        tool.crop([0, 0, 500, 500])
    assert tool.used == 1
    schema = crop_tool_schema()
    assert schema["function"]["name"] == "crop"
    assert schema["function"]["parameters"]["required"] == ["bbox_2d"]


def test_parsers_survive_pathological_text() -> None:
    assert tool_call_box("[" * 100000) is None  # no RecursionError
    start = time.perf_counter()
    assert parse_counts("\n" * 30000 + "rope: 2")[0] == {"rope": 2}
    assert time.perf_counter() - start < 1.0  # linear, not quadratic, in blank lines
    assert get_format("qwen3-vl").parse_detections("[]", (math.inf, 3))[0] == []


@pytest.mark.parametrize("region", ["[1e400, 0, 5, 5]", "[5, 0, 1, 5]", "[0, 9, 5, 2]"])
def test_a_region_placeholder_that_is_not_a_box_is_a_data_error(region: str) -> None:
    from jamspotter.errors import DataError
    from jamspotter.formats.tasks import resolve_box_refs

    with pytest.raises(DataError, match="is not a box"):
        resolve_box_refs(get_format("qwen2.5-vl"), f"look at <bbox>{region}</bbox>", (100, 100))
    assert resolve_box_refs(get_format("qwen3-vl"), "<bbox>[0, 0, 50, 100]</bbox>", (100, 100)) == "[0, 0, 500, 1000]"
