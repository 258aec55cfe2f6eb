"""Formats: smart_resize against transformers, render -> parse round trips, resize settings from processors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jamspotter.data.records import BoxObject, Sample
from jamspotter.errors import JamspotterError
from jamspotter.formats import FAMILIES, get_format, resize_params, smart_resize
from jamspotter.formats.resize import DEFAULT_PARAMS, ResizeParams

CONFIG_DIRS = {"qwen2-vl": "Qwen2-VL-2B-Instruct", "qwen2.5-vl": "Qwen2.5-VL-3B-Instruct",
               "qwen3-vl": "Qwen3-VL-4B-Instruct"}


# ---- smart_resize ------------------------------------------------------------------------------
sides = st.integers(1, 9000)
budgets = st.sampled_from([(3136, 12845056), (56 * 56, 28 * 28 * 1280), (65536, 16777216),
                           (256 * 28 * 28, 1280 * 28 * 28), (4 * 32 * 32, 64 * 32 * 32)])


@settings(max_examples=400, deadline=None)
@given(h=sides, w=sides, factor=st.sampled_from([28, 32]), budget=budgets)
def test_smart_resize_matches_transformers(h, w, factor, budget):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize

    lo, hi = budget
    try:
        expected = hf_smart_resize(h, w, factor=factor, min_pixels=lo, max_pixels=hi)
    except ValueError:
        with pytest.raises(ValueError):
            smart_resize(h, w, factor, lo, hi)
        return
    got = smart_resize(h, w, factor, lo, hi)
    assert got == tuple(expected)
    assert got[0] % factor == 0 and got[1] % factor == 0


def test_smart_resize_rejects_extreme_aspect_ratio():
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 2010)


@pytest.mark.parametrize("family", FAMILIES)
def test_grid_matches_real_image_processor(shared_data, family):
    """The real processor built from the released preprocessor_config.json agrees on the grid."""
    from transformers import AutoImageProcessor

    folder = shared_data / "qwen_configs" / CONFIG_DIRS[family]
    proc = AutoImageProcessor.from_pretrained(folder)
    fmt = get_format(family, processor=proc)
    assert fmt.params == resize_params(folder) == DEFAULT_PARAMS[family]
    small = get_format(family, processor=proc, max_pixels=200_000)  # keep the real processor fast here
    proc_small = AutoImageProcessor.from_pretrained(folder, max_pixels=200_000)
    assert get_format(family, processor=proc_small).params == small.params
    rng = np.random.default_rng(0)
    for _ in range(4):
        h, w = int(rng.integers(20, 700)), int(rng.integers(20, 700))
        grid = proc_small(images=[np.zeros((h, w, 3), np.uint8)], return_tensors="np")["image_grid_thw"][0]
        rw, rh = small.input_size(w, h)
        patch = small.params.factor // 2
        assert (int(grid[1]) * patch, int(grid[2]) * patch) == (rh, rw)


def test_resize_params_both_config_spellings(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"size": {"shortest_edge": 1000, "longest_edge": 99999}, "patch_size": 16, "merge_size": 2}))
    assert resize_params(tmp_path) == ResizeParams(32, 1000, 99999)
    legacy = {"min_pixels": 5, "max_pixels": 6, "patch_size": 14, "merge_size": 2}
    assert resize_params(legacy) == ResizeParams(28, 5, 6)
    with pytest.raises(JamspotterError):
        resize_params(tmp_path / "missing")


def test_get_format_names():
    assert FAMILIES == ("qwen2-vl", "qwen2.5-vl", "qwen3-vl")
    assert get_format("Qwen2_5_VL").family == "qwen2.5-vl"
    assert get_format("qwen2.5-vl", max_pixels=100_000).params.max_pixels == 100_000
    with pytest.raises(JamspotterError, match="unknown model family"):
        get_format("llava")


# ---- round trips ---------------------------------------------------------------------------------
@st.composite
def image_and_boxes(draw):
    w = draw(st.integers(8, 6000))
    h = draw(st.integers(max(1, w // 150 + 1), min(6000, w * 150)))
    n = draw(st.integers(0, 5))
    objs = []
    for _ in range(n):
        xs = sorted(draw(st.floats(0, w, allow_nan=False)) for _ in range(2))
        ys = sorted(draw(st.floats(0, h, allow_nan=False)) for _ in range(2))
        label = draw(st.sampled_from(["rope", "plastic film", "hose", "glass", "cardboard", "wire"]))
        objs.append(BoxObject(label=label, bbox=[xs[0], ys[0], xs[1], ys[1]]))
    return w, h, objs


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=150, deadline=None)
@given(data=image_and_boxes())
def test_render_parse_round_trip(family, data):
    w, h, objs = data
    fmt = get_format(family, max_pixels=2_000_000)
    sample = Sample(id="s", image="i.jpg", width=w, height=h, objects=objs)
    _, target = fmt.render_detection(sample)
    parsed, problems = fmt.parse_detections(target, (w, h))
    assert all("zero area" in p for p in problems)  # tiny boxes may quantise to zero width; reported, kept
    if fmt.relative:
        tol_x, tol_y = w / 1000 / 2 + 1e-6, h / 1000 / 2 + 1e-6
    else:
        rw, rh = fmt.input_size(w, h)
        tol_x, tol_y = w / rw / 2 + 1e-6, h / rh / 2 + 1e-6
    key = lambda o: (o.bbox[1], o.bbox[0])  # noqa: E731
    assert len(parsed) == len(objs)
    for o, p in zip(sorted(objs, key=key), parsed, strict=True):
        assert p.label == o.label
        for i, tol in enumerate((tol_x, tol_y, tol_x, tol_y)):
            assert abs(p.bbox[i] - o.bbox[i]) <= tol, (o.bbox, p.bbox, tol)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("size", [(5600, 28), (28, 5600), (3980, 20), (1, 150), (9000, 9000), (13, 7)])
def test_round_trip_extreme_shapes(family, size):
    w, h = size
    fmt = get_format(family)
    objs = [BoxObject(label="rope", bbox=[0, 0, w, h]), BoxObject(label="hose", bbox=[w / 3, h / 7, w / 2, h * 0.9])]
    _, target = fmt.render_detection(Sample(id="s", image="i.jpg", width=w, height=h, objects=objs))
    parsed, _ = fmt.parse_detections(target, size)
    rw, rh = (1000, 1000) if fmt.relative else fmt.input_size(w, h)
    for o, p in zip(objs, parsed, strict=True):
        assert p.bbox == pytest.approx(o.bbox, abs=max(w / rw, h / rh) / 2 + 1e-6)


def test_resize_params_from_processor_objects():
    class ImageProc:  # transformers 5 keeps min/max pixels in `size`
        patch_size, merge_size, size = 16, 2, {"shortest_edge": 1024, "longest_edge": 4096}

    class Processor:
        image_processor = ImageProc()

    assert resize_params(Processor()) == ResizeParams(32, 1024, 4096)
    fmt = get_format("qwen2.5-vl", processor=Processor())
    assert fmt.params == ResizeParams(32, 1024, 4096) and fmt.input_size(640, 480) == (64, 32)


def test_qwen25_uses_resized_pixels_and_input_size():
    fmt = get_format("qwen2.5-vl")
    assert fmt.input_size(1280, 720) == (1288, 728)
    boxes, _ = fmt.parse_detections('[{"bbox_2d": [0, 0, 644, 364], "label": "rope"}]', (1280, 720))
    assert boxes[0].bbox == pytest.approx([0, 0, 640, 360])
    boxes, _ = fmt.parse_detections('[{"bbox_2d": [0, 0, 100, 100], "label": "rope"}]', (1280, 720),
                                    input_size=(200, 100))
    assert boxes[0].bbox == pytest.approx([0, 0, 640, 720])


def test_relative_families_ignore_resize():
    for family in ("qwen2-vl", "qwen3-vl"):
        fmt = get_format(family)
        boxes, _ = fmt.parse_detections('[{"bbox_2d": [500, 250, 1000, 1000], "label": "hose"}]', (640, 480))
        assert boxes[0].bbox == pytest.approx([320, 120, 640, 480])


def test_empty_targets_parse_to_nothing_without_problems():
    sample = Sample(id="s", image="i.jpg", width=100, height=50)
    for family in FAMILIES:
        fmt = get_format(family)
        _, target = fmt.render_detection(sample)
        assert fmt.parse_detections(target, (100, 50)) == ([], [])


def test_jam_only_detection_keeps_jam_items_and_reasons():
    s = Sample(id="s", image="i.jpg", width=1000, height=1000, objects=[
        BoxObject(label="rope", bbox=[0, 0, 10, 10], reason="wraps around\nscreens"),
        BoxObject(label="glass", bbox=[20, 20, 30, 30]), BoxObject(label="odd", bbox=[40, 40, 50, 50], jam_risk=True)])
    for family in FAMILIES:
        fmt = get_format(family, jam_only=True, with_reason=True)
        [(prompt, target)] = fmt.render_turns(s)
        # the prompt names the class list, never the labels of this image ("odd" is not in the list)
        assert "glass" not in target and "jam" in prompt and "reason" in prompt and "odd" not in prompt
        assert prompt == fmt.prompt()
        objs, problems = fmt.parse_detections(target, (1000, 1000))
        assert [o.label for o in objs] == ["rope", "odd"] and problems == []
        assert objs[0].reason == "wraps around screens" and objs[1].reason is None


def test_missing_size_is_a_data_error():
    from jamspotter.errors import DataError

    with pytest.raises(DataError, match="s1"):
        get_format("qwen3-vl").render_detection(Sample(id="s1", image="i.jpg"))
    with pytest.raises(DataError, match="aspect ratio"):
        get_format("qwen2.5-vl").render_detection(Sample(id="s2", image="i.jpg", width=4020, height=20))


def test_qwen2_target_tokens_with_real_tokenizer(shared_data):
    """Box tokens are single special ids, and text decoded with skip_special_tokens still parses."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(shared_data / "qwen2_5_vl_tokenizer")
    fmt = get_format("qwen2-vl", jam_only=True, with_reason=True)
    s = Sample(id="s", image="i.jpg", width=640, height=480, objects=[
        BoxObject(label="rope", bbox=[10, 20, 300, 400], reason="long and thin"),
        BoxObject(label="plastic film", bbox=[320, 10, 600, 200])])
    [(_, target)] = fmt.render_turns(s)
    ids = tok(target)["input_ids"]
    for special in ("<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>"):
        assert ids.count(tok.convert_tokens_to_ids(special)) == 2
    want, _ = fmt.parse_detections(target, (640, 480))
    for skip in (False, True):
        got, problems = fmt.parse_detections(tok.decode(ids, skip_special_tokens=skip), (640, 480))
        assert problems == []
        assert [(o.label, o.bbox, o.reason) for o in got] == [(o.label, o.bbox, o.reason) for o in want]
