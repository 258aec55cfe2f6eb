"""GRPO rewards on hand-written completions of all three families, and fuzz: they never raise.

Every expected model text below is written by hand (not with the project's renderers). The scene is a
640x480 image with a rope at [64, 48, 320, 240] and a cardboard at [384, 288, 576, 432] (pixels):
- 0-1000 units (Qwen2-VL, Qwen3-VL): x * 1000/640, y * 1000/480 -> rope (100,100),(500,500),
  cardboard (600,600),(900,900);
- Qwen2.5-VL with an explicit 1120x840 input (both sides x 1.75): rope [112, 84, 560, 420],
  cardboard [672, 504, 1008, 756].
Expected rewards are worked out by hand from the formulas in `jamspotter.train.rewards`.
"""

from __future__ import annotations

import json
import math
import pickle
import random
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from jamspotter.train.rewards import (
    RewardWeights,
    completion_text,
    count_reward,
    crop_reward,
    detection_reward,
    format_reward,
    reward_functions,
    sequence_reward,
    tool_results,
)

SIZE = [640, 480]
INPUT = [1120, 840]
ROPE = {"label": "rope", "bbox": [64.0, 48.0, 320.0, 240.0]}
CARD = {"label": "cardboard", "bbox": [384.0, 288.0, 576.0, 432.0]}
BOTH = [ROPE, CARD]


def qwen2(items):
    return "\n".join(f"<|object_ref_start|>{lab}<|object_ref_end|><|box_start|>({a},{b}),({c},{d})<|box_end|>"
                     for lab, (a, b, c, d) in items)


def json_boxes(items):
    rows = [f'\t{{"bbox_2d": [{a}, {b}, {c}, {d}], "label": "{lab}"}}' for lab, (a, b, c, d) in items]
    return "```json\n[\n" + ",\n".join(rows) + "\n]\n```"


# family -> hand-made facts: writer, rope/cardboard in its units, input size, a rope shifted right and its
# IoU with the true rope, ten junk boxes, an out-of-range rope, the empty answer, crop boxes
FAMILIES = {
    "qwen2-vl": dict(
        write=qwen2, rope=(100, 100, 500, 500), card=(600, 600, 900, 900), input=None,
        shifted=(130, 100, 530, 500), shifted_iou=370 / 430,  # x 100..500 vs 130..530 (same y)
        junk=[(10 + 90 * k, 900, 80 + 90 * k, 990) for k in range(10)], outside=(100, 100, 500, 1200),
        empty="none", crop_hit=(90, 90, 510, 510), crop_miss=(600, 600, 900, 900),
        crop_out=(900, 900, 1500, 1500), crop_thin=(100, 100, 101, 101)),
    "qwen2.5-vl": dict(
        write=json_boxes, rope=(112, 84, 560, 420), card=(672, 504, 1008, 756), input=INPUT,
        shifted=(147, 84, 595, 420), shifted_iou=236 / 276,  # +35 input px = +20 px: x 64..320 vs 84..340
        junk=[(10 + 100 * k, 760, 90 + 100 * k, 830) for k in range(10)], outside=(112, 84, 560, 900),
        empty="```json\n[]\n```", crop_hit=(100, 75, 570, 430), crop_miss=(672, 504, 1008, 756),
        crop_out=(1000, 700, 1700, 1300), crop_thin=(112, 84, 113, 85)),
    "qwen3-vl": dict(
        write=json_boxes, rope=(100, 100, 500, 500), card=(600, 600, 900, 900), input=None,
        shifted=(130, 100, 530, 500), shifted_iou=370 / 430,
        junk=[(10 + 90 * k, 900, 80 + 90 * k, 990) for k in range(10)], outside=(100, 100, 500, 1200),
        empty="```json\n[]\n```", crop_hit=(90, 90, 510, 510), crop_miss=(600, 600, 900, 900),
        crop_out=(900, 900, 1500, 1500), crop_thin=(100, 100, 101, 101)),
}
FAMILY_NAMES = list(FAMILIES)


def det(family, texts, gt, **kw):
    f = FAMILIES[family]
    n = len(texts)
    return detection_reward(texts, gt=[gt] * n, image_size=[SIZE] * n, family=[family] * n,
                            input_size=[f["input"]] * n, **kw)


def fmt_reward(family, texts, task=None):
    f = FAMILIES[family]
    n = len(texts)
    return format_reward(texts, family=[family] * n, task=[task] * n, image_size=[SIZE] * n,
                         input_size=[f["input"]] * n)


# ---- detection -----------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_perfect_answer_scores_the_maximum_and_shifted_boxes_less(family):
    f = FAMILIES[family]
    w = f["write"]
    perfect = w([("rope", f["rope"]), ("cardboard", f["card"])])
    shifted = w([("rope", f["shifted"]), ("cardboard", f["card"])])
    got = det(family, [perfect, shifted], BOTH)
    assert got[0] == pytest.approx(1.0)  # F1 1, IoU 1, no extra boxes: the formula's maximum
    # F1 1 (IoU still >= 0.5), mean IoU = (1 + shifted IoU) / 2 -> 0.7 + 0.3 * mean IoU
    assert got[1] == pytest.approx(0.7 + 0.3 * (1 + f["shifted_iou"]) / 2)
    assert got[1] < got[0]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_duplicated_or_extra_boxes_score_lower_than_the_single_correct_box(family):
    f = FAMILIES[family]
    w = f["write"]
    single = w([("rope", f["rope"])])
    dup = w([("rope", f["rope"]), ("rope", f["rope"])])
    extra = w([("rope", f["rope"])] + [("cardboard", b) for b in f["junk"]])
    got = det(family, [single, dup, extra], [ROPE])
    # the rope weighs 2 (jam-causing): F1_w = 2*2 / (2*2 + FP + 0)
    assert got[0] == pytest.approx(1.0)
    assert got[1] == pytest.approx(4 / 5 * 1 / 2)  # FP 1, anti-spam 1/2
    assert got[2] == pytest.approx(4 / 14 * 1 / 11)  # FP 10, anti-spam 1/11
    assert got[2] < got[1] < got[0]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_missed_rope_costs_more_than_a_missed_cardboard(family):
    f = FAMILIES[family]
    w = f["write"]
    miss_rope = w([("cardboard", f["card"])])
    miss_card = w([("rope", f["rope"])])
    got = det(family, [miss_rope, miss_card], BOTH)
    # W = 2 (rope) + 1 (cardboard) = 3: F1_w = 2 TP_w / (TP_w + W + FP)
    assert got[0] == pytest.approx(2 * 1 / (1 + 3))
    assert got[1] == pytest.approx(2 * 2 / (2 + 3))
    assert got[0] < got[1]
    plain = det(family, [miss_rope, miss_card], BOTH, jam_weight=1.0)  # without jam weighting they tie
    assert plain[0] == pytest.approx(plain[1]) == pytest.approx(2 / 3)
    # the gt's own jam_risk flag is the jam rule when the label is unknown to the taxonomy
    flagged = [{"label": "widget", "bbox": ROPE["bbox"], "jam_risk": True}, CARD]
    assert det(family, [miss_rope], flagged)[0] == pytest.approx(0.5)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_wrong_label_does_not_match(family):
    f = FAMILIES[family]
    assert det(family, [f["write"]([("hose", f["rope"])])], [ROPE]) == [0.0]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_malformed_text_gets_the_format_penalty_and_no_detection_reward(family):
    f = FAMILIES[family]
    truncated = f["write"]([("rope", f["rope"])])[:-30]  # cut inside the box
    for text in ["There is a rope near the top left of the belt.", truncated, "", "{[(<"]:
        assert det(family, [text], BOTH) == [0.0], text
        assert fmt_reward(family, [text]) == [0.0], text
    good = f["write"]([("rope", f["rope"]), ("cardboard", f["card"])])
    assert fmt_reward(family, [good]) == [1.0]
    clipped = f["write"]([("rope", f["outside"])])  # read, but with an out-of-range problem: partial credit
    assert fmt_reward(family, [clipped]) == [0.5]
    no_size = format_reward([good, clipped, "blah"], family=[family] * 3)  # no image_size: syntax alone
    assert no_size == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_empty_scene(family):
    f = FAMILIES[family]
    texts = [f["empty"], "[]", "None.", f["write"]([("rope", f["rope"])]), "I am not sure.", ""]
    assert det(family, texts, []) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert fmt_reward(family, texts) == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert det(family, [f["empty"]], BOTH) == [0.0]  # nothing found on a non-empty scene


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_conversational_completions_score_like_the_string(family):
    f = FAMILIES[family]
    w = f["write"]
    texts = [w([("rope", f["rope"]), ("cardboard", f["card"])]), w([("rope", f["shifted"])]),
             w([("rope", f["rope"]), ("rope", f["rope"])]), f["empty"], "garbage"]
    as_string = det(family, texts, BOTH)
    variants = [
        [[{"role": "assistant", "content": t}] for t in texts],
        [[{"role": "assistant", "content": [{"type": "text", "text": t}]}] for t in texts],
        [[{"role": "assistant", "reasoning_content": "I look at the belt.", "content": t}] for t in texts],
    ]
    for v in variants:
        assert det(family, v, BOTH) == as_string
        assert format_reward(v, family=[family] * len(v), image_size=[SIZE] * len(v),
                             input_size=[f["input"]] * len(v)) == fmt_reward(family, texts)


def test_qwen2_text_decoded_without_special_tokens_still_scores():
    """TRL decodes with skip_special_tokens=True, which drops Qwen2-VL's box tokens."""
    text = "rope(100,100),(500,500)\ncardboard(600,600),(900,900)"
    assert det("qwen2-vl", [text], BOTH) == [pytest.approx(1.0)]


def test_qwen25_uses_the_input_size_it_is_given():
    # the same text read against a 640x480 input (as if unresized) puts the rope at 1.75x its place
    text = json_boxes([("rope", (112, 84, 560, 420))])
    assert det("qwen2.5-vl", [text], [ROPE]) == [pytest.approx(1.0)]
    got = detection_reward([text], gt=[[ROPE]], image_size=[SIZE], family=["qwen2.5-vl"], input_size=[SIZE])
    assert got == [0.0]


def test_rows_of_other_tasks_are_not_scored_by_detection():
    f = FAMILIES["qwen3-vl"]
    text = f["write"]([("rope", f["rope"])])
    got = detection_reward([text] * 4, gt=[[ROPE]] * 4, image_size=[SIZE] * 4, family=["qwen3-vl"] * 4,
                           task=[None, "detect", "qna", "count"])
    assert got == [pytest.approx(1.0), pytest.approx(1.0), None, None]


# ---- completion_text / tool_results --------------------------------------------------------------
def crop_messages(box, final, image=True):
    msgs = [{"role": "assistant", "content": "<think>Something long lies at the top left.",
             "tool_calls": [{"type": "function", "function": {"name": "crop", "arguments": {"bbox_2d": list(box)}}}]}]
    if image:
        msgs.append({"role": "tool", "name": "crop", "content": [{"type": "image", "image": Image.new("RGB", (8, 8))}]})
    msgs.append({"role": "assistant", "content": final})
    return msgs


def test_completion_text_rebuilds_the_model_text():
    msgs = crop_messages((90, 90, 510, 510), "A rope.</think><answer>yes</answer>")
    assert completion_text(msgs) == (
        "<think>Something long lies at the top left.\n<tool_call>\n"
        '{"name": "crop", "arguments": {"bbox_2d": [90, 90, 510, 510]}}\n</tool_call>\n'
        "A rope.</think><answer>yes</answer>")
    reasoning = [{"role": "assistant", "reasoning_content": "hmm", "content": "[]",
                  "tool_calls": [{"name": "crop", "arguments": '{"bbox_2d": [1, 2, 3, 4]}'}]}]
    assert completion_text(reasoning) == ('<think>hmm</think>[]\n<tool_call>\n'
                                          '{"name": "crop", "arguments": {"bbox_2d": [1, 2, 3, 4]}}\n</tool_call>')
    assert completion_text([{"role": "assistant", "reasoning_content": "  ", "content": "x"}]) == "x"
    assert tool_results(msgs) == 1
    assert tool_results(crop_messages((1, 2, 3, 4), "x", image=False)) == 0
    assert tool_results([{"role": "tool", "content": {"error": "boom"}}]) == 0
    for junk in [None, 3, 2.5, [None, 1, [[]]], {"role": "tool", "content": "x"}, [{"content": {"a": 1}}]]:
        assert completion_text(junk) == ""
        assert tool_results(junk) == 0


# ---- crop ----------------------------------------------------------------------------------------
def qna_text(calls, answer, syntax="json"):
    def call(box):
        if syntax == "list":
            return "<tool_call>[" + ", ".join(str(v) for v in box) + "]</tool_call>"
        return '<tool_call>\n{"name": "crop", "arguments": {"bbox_2d": [' + ", ".join(str(v) for v in box) \
            + "]}}\n</tool_call>"
    return ("<think>Something long lies at the top left. " + " ".join(call(b) for b in calls)
            + f" The crop shows it.</think><answer>{answer}</answer>")


def crop(family, completions, answer="yes", gt=(ROPE,), **kw):
    f = FAMILIES[family]
    n = len(completions)
    return crop_reward(completions, gt=[list(gt)] * n, image_size=[SIZE] * n, family=[family] * n,
                       answer=[answer] * n, input_size=[f["input"]] * n, task=["qna"] * n, **kw)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_crop_bonus_only_with_an_overlapping_crop_and_the_right_answer(family):
    f = FAMILIES[family]
    hit, miss = f["crop_hit"], f["crop_miss"]
    texts = [qna_text([hit], "Yes, a rope."), qna_text([hit], "No."), qna_text([miss], "Yes."),
             qna_text([miss], "no"), qna_text([hit], "yes", syntax="list")]
    assert crop(family, texts) == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert fmt_reward(family, texts, task="qna") == [1.0] * 5


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_invalid_or_too_many_crops_are_penalised_and_no_crop_is_neutral(family):
    f = FAMILIES[family]
    hit = f["crop_hit"]
    texts = [
        "<think>I can see it.</think><answer>yes</answer>",  # no crop: neutral
        qna_text([f["crop_out"]], "yes"),  # outside the image
        qna_text([f["crop_thin"]], "yes"),  # under 4 px wide
        qna_text([hit] * 4, "yes"),  # over max_crops=3
        qna_text([hit] * 3, "yes"),  # at the limit: fine
        qna_text([f["crop_out"], f["crop_thin"]], "yes"),  # two bad calls
        '<think><tool_call>\n{"name": "zoom", "arguments": {"bbox_2d": [1, 2, 3, 4]}}\n</tool_call></think>'
        "<answer>yes</answer>",  # not the crop tool
    ]
    assert crop(family, texts) == [0.0, -0.5, -0.5, -0.5, 1.0, -1.0, -0.5]
    assert crop(family, [qna_text([hit] * 2, "yes")], max_crops=1) == [-0.5]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_crop_in_conversational_completions_needs_the_image_back(family):
    f = FAMILIES[family]
    final = "It is a rope.</think><answer>yes</answer>"
    got = crop(family, [crop_messages(f["crop_hit"], final), crop_messages(f["crop_hit"], final, image=False),
                        crop_messages(f["crop_miss"], final)])
    assert got == [1.0, 0.0, 0.0]
    n = 1
    assert format_reward([crop_messages(f["crop_hit"], final)], family=[family] * n, task=["qna"] * n,
                         image_size=[SIZE] * n, input_size=[f["input"]] * n) == [1.0]


def test_crop_reward_applies_to_qna_rows_only():
    f = FAMILIES["qwen3-vl"]
    text = qna_text([f["crop_hit"]], "yes")
    got = crop_reward([text] * 3, gt=[[ROPE]] * 3, image_size=[SIZE] * 3, family=["qwen3-vl"] * 3,
                      answer=["yes"] * 3, task=[None, "count", "qna"])
    assert got == [None, None, 1.0]


def test_qna_format_partial_credit():
    f = FAMILIES["qwen3-vl"]
    hit = f["crop_hit"]
    texts = [
        "<think>ok</think><answer>yes</answer>",
        "ok</think><answer>yes</answer>",  # Qwen3 thinking: <think> was in the prompt
        "<answer>yes</answer>",  # no thinking
        "<think>ok</think>yes",  # no answer tags
        "<think>ok</think><answer>yes</answer> and more prose",  # text after the answer
        "<think>look <tool_call>[1, 2, 3</think><answer>yes</answer>",  # malformed crop call
        "yes",
        "<think>a <tool_call>[90, 90, 510, 510]</tool_call></think>\n<think>b</think><answer>yes</answer>",
        qna_text([hit], ""),  # empty answer
    ]
    got = fmt_reward("qwen3-vl", texts, task="qna")
    assert got == [1.0, 1.0, 0.5, 0.25, 0.75, 0.5, 0.0, 1.0, 0.25]


# ---- count and sequence --------------------------------------------------------------------------
def test_count_reward_ordering():
    counts = {"rope": 2, "cardboard": 1}
    texts = ["rope: 2\ncardboard: 1", "<think>two ropes</think><answer>rope: 2\ncardboard: 1</answer>",
             "rope: 1\ncardboard: 1", "rope: 2", "rope: 5\ncardboard: 0", "I cannot tell",
             '{"rope": 2, "cardboard": 1}']
    got = count_reward(texts, counts=[counts] * len(texts), task=["count"] * len(texts))
    # 1 - mean(min(1, |pred - true| / max(1, true)))
    assert got == [1.0, 1.0, pytest.approx(1 - (0.5 + 0) / 2), 0.5, 0.0, 0.0, 1.0]
    assert format_reward(texts, task=["count"] * len(texts)) == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0]
    # `datasets` fills keys absent from a row with None: such classes were not asked
    assert count_reward(["rope: 2"], counts=[{"rope": 2, "cardboard": None}], task=["count"]) == [1.0]
    assert count_reward(["rope: 2"], counts=[{"rope": 2}], task=[None]) == [None]


def test_sequence_reward_ordering():
    target = [[1.0, 0.5], [2.0, 0.5]]  # component scales: mean |v| = 1.5, mean |k| = 0.5
    texts = ["[(1, 0.5), (2, 0.5)]", "[(1.3, 0.5), (2, 0.5)]", "[(1, 0.5)]", "[(1, 0.5), (2, 0.5), (3, 0.5)]",
             "no idea", "<answer>[(1, 0.5), (2, 0.5)]</answer>"]
    got = sequence_reward(texts, target=[target] * len(texts), task=["sequence"] * len(texts))
    assert got == [pytest.approx(0.0, abs=1e-9), pytest.approx(-0.3 / 1.5 / 4), pytest.approx(-0.5),
                   pytest.approx(-2 / 6), -1.0, pytest.approx(0.0, abs=1e-9)]
    assert got[0] > got[1] > got[3] > got[2] > got[4]
    one = sequence_reward(["[1, 2]", "[1, 3]"], target=[{"kind": "belt_speed", "values": [[1.0], [2.0]]}] * 2,
                          task=["sequence"] * 2)
    assert one == [pytest.approx(0.0, abs=1e-9), pytest.approx(-1 / 1.5 / 2)]
    assert format_reward(texts[:5], task=["sequence"] * 5, target=[target] * 5) == [1.0, 1.0, 1.0, 1.0, 0.0]


# ---- wiring --------------------------------------------------------------------------------------
def test_reward_functions_for_grpo():
    funcs, weights = reward_functions(RewardWeights(detection=2.0, crop=0.0, jam_weight=1.0, max_crops=1))
    assert [f.__name__ for f in funcs] == ["detection_reward", "format_reward", "crop_reward", "count_reward",
                                           "sequence_reward"]
    assert weights == [2.0, 0.5, 0.0, 1.0, 1.0]
    f = FAMILIES["qwen3-vl"]
    texts = [f["write"]([("cardboard", f["card"])]), f["write"]([("rope", f["rope"])]),
             qna_text([f["crop_hit"]] * 2, "yes")]
    trl_kwargs = dict(prompts=["p"] * 3, completion_ids=[[1]] * 3, trainer_state=None, log_extra=print,
                      log_metric=print, gt=[BOTH, BOTH, [ROPE]], image_size=[SIZE] * 3, family=["qwen3-vl"] * 3,
                      input_size=[None] * 3, task=[None, None, "qna"], answer=[None, None, "yes"],
                      counts=[None] * 3, target=[None] * 3)
    det_, fmt_, crop_, count_, seq_ = (fn(completions=texts, **trl_kwargs) for fn in funcs)
    assert det_[:2] == [pytest.approx(2 / 3), pytest.approx(2 / 3)]  # jam_weight 1: the two misses tie
    assert det_[2] is None and crop_ == [None, None, -0.5]  # max_crops 1
    assert fmt_ == [1.0, 1.0, 1.0] and count_ == [None] * 3 and seq_ == [None] * 3
    again = pickle.loads(pickle.dumps(funcs[0]))
    assert again.__name__ == "detection_reward" and again(texts[:1], **{**trl_kwargs, "gt": [BOTH]})[0] == \
        pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        RewardWeights(jam_weight=0)


# ---- fuzz ----------------------------------------------------------------------------------------
def _seeds() -> list[str]:
    try:  # the parser's own fuzz seeds (tests/ is on sys.path under pytest)
        from test_formats_parse import _seeds as parser_seeds

        seeds = list(parser_seeds())
    except ImportError:
        seeds = []
    for f in FAMILIES.values():
        seeds += [f["write"]([("rope", f["rope"]), ("cardboard", f["card"])]), f["empty"],
                  qna_text([f["crop_hit"]], "yes"), qna_text([f["crop_out"]], "no", syntax="list")]
    return seeds + ["rope: 2\ncardboard: 1", "[(1, 0.5), (2, 0.5)]", "[1e999, -0, NaN]", "{" * 3000,
                    "<tool_call>" + "[" * 5000 + "</tool_call>", "<think>" * 50, "\x00é😀"]


TASKS = [None, "detect", "qna", "count", "sequence", "region", 7]


def all_rewards(completions, family, size=SIZE, input_size=None, gt=(ROPE,), task=None, counts=None, target=None,
                answer="yes"):
    n = len(completions)
    cols = dict(gt=[list(gt) if isinstance(gt, tuple) else gt] * n, image_size=[size] * n, family=[family] * n,
                input_size=[input_size] * n, task=[task] * n, answer=[answer] * n,
                counts=[counts if counts is not None else {"rope": 1}] * n,
                target=[target if target is not None else [[1.0, 2.0]]] * n)
    funcs, _ = reward_functions()
    return [fn(completions, **cols) for fn in funcs]


@pytest.fixture()
def no_reward_errors(caplog, monkeypatch):
    """Fail when a reward's safety net caught an exception (a row left None by a bug, not by design)."""
    from jamspotter.train import rewards

    monkeypatch.setattr(rewards, "_warned", set())
    yield
    assert not [r for r in caplog.get_records("call") if "failed on a row" in r.getMessage()]


def check(results, n):
    for values in results:
        assert len(values) == n
        for v in values:
            assert v is None or (isinstance(v, float) and math.isfinite(v)), v


def test_fuzz_mutated_model_text_never_raises(no_reward_errors):
    rng = random.Random(15)
    seeds = _seeds()
    tokens = ["<|box_start|>", "<|box_end|>", "<|object_ref_start|>", "<think>", "</think>", "<answer>", "</answer>",
              "<tool_call>", "</tool_call>", "bbox_2d", "```json", "{", "}", "[", "]", '"', ",", "1e999", "NaN", "-"]
    alphabet = string.printable + "{}[]()<>|" * 3
    texts = []
    for _ in range(240):
        chars = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(chars) + 1)
            op = rng.random()
            if op < 0.3 and chars:
                del chars[min(pos, len(chars) - 1)]
            elif op < 0.6:
                chars.insert(pos, rng.choice(tokens))
            elif op < 0.75:
                chars = chars[:pos]
            else:
                chars.insert(pos, rng.choice(alphabet))
        texts.append("".join(chars))
    texts += seeds
    for k, family in enumerate(FAMILY_NAMES):
        for task in TASKS:
            check(all_rewards(texts[k::3], family, input_size=FAMILIES[family]["input"], task=task), len(texts[k::3]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=200), family=st.sampled_from(FAMILY_NAMES), task=st.sampled_from(TASKS))
def test_fuzz_random_text_never_raises(text, family, task):
    from jamspotter.train import rewards

    saved = set(rewards._warned)
    rewards._warned.clear()
    try:
        check(all_rewards([text, [{"role": "assistant", "content": text}]], family, task=task), 2)
        assert not {k for k in rewards._warned if k.endswith("_reward")}  # no row hit the safety net
    finally:
        rewards._warned.clear()
        rewards._warned.update(saved)


JUNK = [None, [], {}, "junk", 0, -1, float("nan"), float("inf"), [float("nan"), float("nan")], [0, 0], [-5, 10],
        [1e308, 1e308], [float("inf"), 480], [640], [640, 480, 3], ["640", "480"], [True, False], [[1, 2], [3, 4]],
        [{"label": None, "bbox": [1, 2, 3, 4]}], [{"label": "rope", "bbox": [float("nan"), 0, 1, 1]}],
        [{"label": "rope", "bbox": [5, 5, 1, 1]}], [{"label": "rope"}], [["rope", [1, 2, 3, 4]]],
        {"rope": float("nan")}, {"rope": -3, "x": "y"}, {"values": [[1, 2], [3]]}, [[float("inf")]], [[True]]]
JUNK_COMPLETIONS = [None, 12, float("nan"), [], [{}], [None], [[["nested"]]], {"role": "assistant"},
                    [{"role": "assistant", "content": None, "tool_calls": "x"}],
                    [{"role": "assistant", "content": [None, {"type": "text"}, {"type": "text", "text": 5}]}],
                    [{"role": "assistant", "tool_calls": [None, {"function": None}, {"function": {"arguments": "{"}}]}],
                    [{"role": "assistant",
                      "tool_calls": [{"function": {"name": "crop", "arguments": {"bbox_2d": [float("nan")] * 4}}}]}],
                    "<answer>yes</answer>"]


def test_junk_columns_and_completions_never_raise(no_reward_errors):
    funcs, _ = reward_functions()
    rng = random.Random(3)
    n = len(JUNK_COMPLETIONS)
    for _ in range(150):
        cols = {c: [rng.choice(JUNK) for _ in range(n)] for c in ("gt", "image_size", "input_size", "counts", "target")}
        cols.update(family=[rng.choice(FAMILY_NAMES + [None, "bogus", 5, ["qwen3-vl"]]) for _ in range(n)],
                    task=[rng.choice(TASKS + [float("nan"), ""]) for _ in range(n)],
                    answer=[rng.choice(["yes", None, 3, [], float("nan")]) for _ in range(n)])
        check([fn(JUNK_COMPLETIONS, **cols) for fn in funcs], n)
    # whole columns of the wrong shape, or missing
    for bad in [None, "x", 5, [], {"a": 1}]:
        check([fn(JUNK_COMPLETIONS, gt=bad, image_size=bad, family=bad, input_size=bad, task=bad, counts=bad,
                  target=bad, answer=bad) for fn in funcs], n)
        check([fn(bad) for fn in funcs], len(bad) if isinstance(bad, list) else 1 if isinstance(bad, str | dict) else 0)


@pytest.mark.parametrize("text", ["a" + " " * 100_000 + "b", "<answer>" * 30_000, "<tool_call>" * 20_000,
                                  "\n" * 30_000 + "rope", "<think>" * 30_000, "- \n*" * 20_000])
def test_long_degenerate_text_is_scored_in_linear_time(text):
    """A collapsing policy repeats one token up to the length limit: every reward stays fast on such text
    (each of these took 10-90 s through quadratic regex paths)."""
    import time

    start = time.perf_counter()
    for task in TASKS[:5]:
        check(all_rewards([text], "qwen2.5-vl", task=task, counts={"rope": 1}), 1)
    assert time.perf_counter() - start < 5.0


def test_count_reward_reads_counts_given_as_json_as_it_reads_dicts() -> None:
    # GRPO's dataset carries the counts of each row as a JSON object (their keys vary from row to row)
    answers = ["rope: 2\ncardboard: 0", "rope: 1\ncardboard: 3"]
    truth = [{"rope": 2, "cardboard": 1}, {"rope": 2, "cardboard": 1}]
    as_dicts = count_reward(answers, counts=truth, task=["count"] * 2)
    assert count_reward(answers, counts=[json.dumps(t) for t in truth], task=["count"] * 2) == as_dicts
    assert as_dicts == [1 - (0 + 1) / 2, 1 - (0.5 + 1) / 2]  # |2-2|/2, |0-1|/1; |1-2|/2, min(1, |3-1|/1)
