"""Parsers on what models really write, and a fuzz test: they never raise."""

from __future__ import annotations

import random
import string

import pytest

from jamspotter.formats import FAMILIES, get_format
from jamspotter.formats.parse import extract_boxes
from jamspotter.formats.tasks import (
    parse_classification,
    parse_counts,
    parse_region_answer,
    parse_sequence,
    parse_vqa,
)

Q3 = get_format("qwen3-vl")  # 0-1000 relative: on a 1000x1000 image model units == pixels
SIZE = (1000, 1000)


def boxes(text, fmt=Q3, size=SIZE):
    objs, problems = fmt.parse_detections(text, size)
    return [(o.label, [round(v, 3) for v in o.bbox]) for o in objs], problems


def test_fenced_json_with_trailing_prose():
    text = 'Sure!\n```json\n[\n\t{"bbox_2d": [10, 20, 30, 40], "label": "rope"}\n]\n```\nThat is all I see.'
    assert boxes(text) == ([("rope", [10, 20, 30, 40])], [])


def test_bare_json_and_wrapped_json():
    assert boxes('[{"bbox_2d": [1, 2, 3, 4], "label": "hose"}]')[0] == [("hose", [1, 2, 3, 4])]
    got, _ = boxes('{"objects": [{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [5, 6, 7, 8], "label": "b"}]}')
    assert [g[0] for g in got] == ["a", "b"]


def test_truncated_list_keeps_complete_items():
    got, problems = boxes('```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "rope"}, {"bbox_2d": [5, 6, 7')
    assert got == [("rope", [1, 2, 3, 4])]
    assert any("truncated" in p for p in problems)


def test_single_quotes_bbox_key_extra_keys_and_trailing_commas():
    got, problems = boxes("[{'bbox': [1, 2, 3, 4], 'label': 'strap', 'color': 'blue',}]")
    assert got == [("strap", [1, 2, 3, 4])]
    assert any("'bbox'" in p for p in problems)
    objs, _ = Q3.parse_detections("[{'bbox_2d': [1, 2, 3, 4], 'label': 'strap', 'color': 'blue'}]", SIZE)
    assert objs[0].attributes == {"color": "blue"}


def test_unquoted_keys_read_leniently():
    got, problems = boxes('[{bbox_2d: [1, 2, 3, 4], label: "wire"}]')
    assert got == [("wire", [1, 2, 3, 4])]


def test_qwen2_token_form_with_reason_and_multiple_boxes():
    q2 = get_format("qwen2-vl")
    text = ("<|object_ref_start|>rope<|object_ref_end|><|box_start|>(100,200),(300,400)<|box_end|>: long and thin\n"
            "<|object_ref_start|>film<|object_ref_end|><|box_start|>(0,0),(500,500)<|box_end|>"
            "<|box_start|>(500,500),(1000,1000)<|box_end|>")
    objs, problems = q2.parse_detections(text, (2000, 1000))
    assert problems == []
    assert [(o.label, o.bbox) for o in objs] == [("rope", [200, 200, 600, 400]), ("film", [0, 0, 1000, 500]),
                                                 ("film", [1000, 500, 2000, 1000])]
    assert objs[0].reason == "long and thin"
    cut = "<|object_ref_start|>rope<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>\n" \
          "<|object_ref_start|>hose<|object_ref_end|><|box_start|>(5,6),(7,8"
    objs, problems = q2.parse_detections(cut, (1000, 1000))
    assert [o.label for o in objs] == ["rope"] and any("truncated" in p for p in problems)


def test_plain_text_forms():
    got, _ = boxes("rope(10,20),(30,40)\nplastic film: [50, 60, 70, 80]\n- hose at (1, 2), (3, 4)")
    assert got == [("rope", [10, 20, 30, 40]), ("plastic film", [50, 60, 70, 80]), ("hose", [1, 2, 3, 4])]


def test_other_real_shapes():
    got, _ = boxes("<ref>rope</ref><box>(10,20),(30,40)</box>")
    assert got == [("rope", [10, 20, 30, 40])]
    got, _ = boxes('[{"bbox_2d": [[1, 2], [3, 4]], "label": "hose", "score": 0.8}]')
    assert got == [("hose", [1, 2, 3, 4])]
    assert Q3.parse_detections('[{"bbox_2d": [1, 2, 3, 4], "label": "hose", "score": 0.8}]', SIZE)[0][0].score == 0.8
    got, _ = boxes('```json\n[\n  {"bbox_2d": [1, 2, 3, 4], "label": "rope"},\n  {"bbox_2d": [5, 6, 7, 8], '
                   '"label": "wire"},\n]\n```')
    assert [g[0] for g in got] == ["rope", "wire"]


def test_swapped_corners_fixed_and_out_of_range_clipped():
    got, problems = boxes('[{"bbox_2d": [30, 40, 10, 20], "label": "rope"}, {"bbox_2d": [-5, 10, 1200, 20], '
                          '"label": "wire"}]')
    assert got == [("rope", [10, 20, 30, 40]), ("wire", [0, 10, 1000, 20])]
    assert any("swapped" in p for p in problems) and any("clipped" in p for p in problems)


def test_points_reported_not_boxes():
    got, problems = boxes('[{"point_2d": [10, 20], "label": "rope"}]')
    assert got == [] and any("point" in p for p in problems)


def test_garbage_gives_problems_not_exceptions():
    for text in ["", "no idea", "[{", '{"bbox_2d": "abc"}', "```json\n[\n", None, 12, "[1e999, 2, 3, 4]"]:
        objs, problems = Q3.parse_detections(text, SIZE)  # type: ignore[arg-type]
        assert isinstance(objs, list) and isinstance(problems, list)
    assert Q3.parse_detections("[]", SIZE) == ([], [])
    assert Q3.parse_detections('[{"bbox_2d": [1,2,3,4], "label": "x"}]', (0, 5))[1]


def _seeds() -> list[str]:
    out = []
    from jamspotter.data.records import Sample

    s = Sample(id="s", image="i", width=640, height=480,
               objects=[{"label": "rope", "bbox": [10, 20, 300, 400], "reason": "wraps"},
                        {"label": "plastic film", "bbox": [5, 5, 50, 60]}])
    for family in FAMILIES:
        out.append(get_format(family, jam_only=True, with_reason=True).render_detection(s)[1])
        out.append(get_format(family).render_detection(s)[1])
    out += ["rope(1,2),(3,4)", "<think>x<tool_call>[1, 2, 3, 4]</tool_call></think><answer>a</answer>",
            "[{'bbox': [1, 2, 3, 4], 'label': \"it's\"}]", '{"a": {"b": [{"bbox_2d": [1,2,3,4]}]}}']
    return out


def test_fuzz_never_raises():
    rng = random.Random(1234)
    seeds = _seeds()
    alphabet = string.printable + "{}[]()\"':,<|>" * 4 + "é😀\x00"
    tokens = ["<|box_start|>", "<|box_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "bbox_2d", "```json",
              "{", "}", "[", "]", "'", '"', "\\", ",", ":", "1e999", "-0", "NaN", "null", "</tool_call>"]
    fmts = [get_format(f) for f in FAMILIES]
    found = 0
    for i in range(10_000):
        if i % 3 == 0:
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        else:
            chars = list(rng.choice(seeds))
            for _ in range(rng.randint(1, 8)):
                op, pos = rng.random(), rng.randrange(len(chars) + 1)
                if op < 0.3 and chars:
                    del chars[min(pos, len(chars) - 1)]
                elif op < 0.6:
                    chars.insert(pos, rng.choice(tokens))
                elif op < 0.8:
                    chars = chars[:pos]  # truncation
                else:
                    chars.insert(pos, rng.choice(alphabet))
            text = "".join(chars)
        fmt = fmts[i % 3]
        objs, problems = fmt.parse_detections(text, (rng.randint(1, 5000), rng.randint(1, 5000)))
        assert all(v >= 0 for o in objs for v in o.bbox)
        assert all(isinstance(p, str) for p in problems)
        found += len(objs)
        if i % 4 == 0:  # the other task parsers share the promise
            assert isinstance(parse_counts(text)[0], dict)
            assert isinstance(parse_region_answer(text)[0], list)
            assert isinstance(parse_sequence(text, 2)[0], list) and isinstance(parse_sequence(text)[0], list)
            assert isinstance(parse_vqa(fmt, text, (640, 480)).crops, list)
            parse_classification(text, fmt.classes)
    assert found > 1000  # mutated real outputs still yield boxes


@pytest.mark.parametrize("text", ["{" * 5000, "{" * 20000 + "}" * 20000,
                                  "[" * 5000 + "]" * 5000, '{"a":' * 3000, "(" * 4000 + "1,2),(3,4)"])
def test_pathological_nesting_is_fast_and_safe(text):
    raw, problems = extract_boxes(text)
    assert isinstance(raw, list)


# ---- no invented boxes: truncated tails, thinking and prose -------------------------------------
# Qwen2.5-VL on a 1280x720 image with an explicit 1288x728 input (smart_resize, factor 28): model
# pixels x * 1280/1288, y * 720/728. [161, 182, 966, 364] is 1/8, 1/4, 3/4, 1/2 of the input ->
# [160, 180, 960, 360] in the original image, worked out by hand.
Q25 = get_format("qwen2.5-vl")
ROPE = '{"bbox_2d": [161, 182, 966, 364], "label": "rope"}'
ROPE_PX = ("rope", [160, 180, 960, 360])


def boxes_sized(text, fmt, image_size, input_size):
    objs, problems = fmt.parse_detections(text, image_size, input_size)
    return [(o.label, [round(v, 3) for v in o.bbox]) for o in objs], problems


def q25(text):
    return boxes_sized(text, Q25, (1280, 720), (1288, 728))


@pytest.mark.parametrize("tail", [
    '{"bbox_2d": [322, 91, 644, 546]',               # cut after the box, before the label
    '{"bbox_2d": [322, 91, 644, 546], "lab',         # cut inside the label key
    '{"bbox_2d": [322, 91, 644, 546], "label": "ho',  # cut inside the label
    '{"bbox_2d": [322, 91, 644, 546], ',              # cut after the comma
    '{"bbox_2d": [322, 91, 64',                       # cut inside the box
    '{',                                              # cut right after the brace
])
def test_a_truncated_last_object_is_dropped_not_reread(tail):
    got, problems = q25("```json\n[\n\t" + ROPE + ",\n\t" + tail)
    assert got == [ROPE_PX]
    assert any("cut off" in p and "dropped" in p for p in problems)


def test_a_truncated_wrapper_keeps_its_complete_items():
    text = '{"objects": [{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [5, 6, 7, 8], "lab'
    got, problems = boxes(text)
    assert got == [("a", [1, 2, 3, 4])] and any("cut off" in p for p in problems)


@pytest.mark.parametrize("text", [
    "<think>The rope at [161, 182, 966, 364] crosses the belt.</think>\n```json\n[" + ROPE + "]\n```",
    "<think>A rope: " + ROPE + "</think><answer>```json\n[" + ROPE + "]\n```</answer>",
    "The rope lies at (161,182),(966,364).\n</think>\n\n```json\n[" + ROPE + "]\n```",  # Qwen3 thinking: no <think>
    "I found a rope at [161, 182, 966, 364].\n```json\n[" + ROPE + "]\n```",
    "```json\n[" + ROPE + "]\n```\nThe rope (161,182),(966,364) could wrap around the screens.",
    "<|object_ref_start|>rope<|object_ref_end|><|box_start|>(161,182),(966,364)<|box_end|>\n"
    "that is the rope at [161, 182, 966, 364]",
])
def test_thinking_and_prose_are_not_read_beside_structured_boxes(text):
    fmt, size, inp = (get_format("qwen2-vl"), (1000, 1000), None) if "box_start" in text else (Q25, (1280, 720),
                                                                                                (1288, 728))
    got, _ = boxes_sized(text, fmt, size, inp)
    assert len(got) == 1
    if fmt is Q25:
        assert got == [ROPE_PX]
    else:
        assert got == [("rope", [161, 182, 966, 364])]


def test_boxes_only_in_the_thinking_are_not_the_answer():
    assert q25("<think>Maybe a rope at [161, 182, 966, 364]? No, a shadow.</think><answer>```json\n[]\n```</answer>") \
        == ([], [])
    got, problems = q25("<think>A rope at " + ROPE)  # cut off while thinking
    assert got == [] and any("inside <think>" in p for p in problems)


def test_crop_tool_calls_are_not_detections():
    text = ('<tool_call>\n{"name": "crop", "arguments": {"bbox_2d": [1, 2, 3, 4]}}\n</tool_call>\n'
            "<tool_call>[5, 6, 7, 8]")
    assert boxes(text)[0] == []


def test_plain_text_is_still_read_when_it_is_the_whole_answer():
    assert boxes("Boxes { rope(10,20),(30,40)")[0] == [("rope", [10, 20, 30, 40])]  # a stray brace cuts nothing
    assert boxes("<think>two items</think>rope(10,20),(30,40)\nhose: [1, 2, 3, 4]")[0] == [
        ("rope", [10, 20, 30, 40]), ("hose", [1, 2, 3, 4])]


def test_qwen25_cases_a_peer_parser_tests():
    # shapes from supervision's Qwen2.5-VL parser tests; input 640x640, image 1280x720: x * 2, y * 1.125
    text = '```json\n    [\n        {"bbox_2d": [10, 20, 110, 120], "label": "cat"}\n    ]\n    ```'
    assert boxes_sized(text, Q25, (1280, 720), (640, 640)) == ([("cat", [20, 22.5, 220, 135])], [])
    got, problems = boxes_sized('```json\n[{"bbox_2d": [-10, 0, 700, 700], "label": "dog"}]\n```', Q25, (1280, 720),
                                (640, 640))
    assert got == [("dog", [0, 0, 1280, 720])] and any("clipped" in p for p in problems)
    for text in ("```json\nnot valid json\n```", "```json\n[]\n```", "some random text without triple backticks"):
        assert boxes_sized(text, Q25, (1280, 720), (640, 640))[0] == []
    got, _ = boxes_sized('```json\n[\n  {"bbox_2d": [10, 20, 110, 120], "label": "cat"},\n  {"bbox_2d": [50, 100, '
                         '150, 200], "label": "dog"', Q25, (1280, 720), (640, 640))
    assert got == [("cat", [20, 22.5, 220, 135])]
