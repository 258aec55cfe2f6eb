"""Formats: tasks (count, regions, classification, think/answer with crops, sequences), augment, CLI."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jamspotter.cli import app
from jamspotter.data.boxes import intersection, visible_fraction
from jamspotter.data.io import read_samples, write_samples
from jamspotter.data.records import BoxObject, Crop, QATurn, Sample, Target
from jamspotter.formats import FAMILIES, get_format
from jamspotter.formats.augment import augment_samples
from jamspotter.formats.tasks import (
    box_ref,
    count_answer,
    count_question,
    parse_classification,
    parse_counts,
    parse_region_answer,
    parse_sequence,
    parse_vqa,
    region_answer,
    render_sequence,
    render_vqa,
)

SAMPLE = Sample(id="b1", image="images/b1.jpg", width=800, height=600, objects=[
    BoxObject(label="rope", bbox=[100, 100, 300, 200]), BoxObject(label="rope", bbox=[500, 400, 700, 550]),
    BoxObject(label="glass", bbox=[350, 50, 450, 150])])


def test_count_render_and_parse():
    prompt, target = count_question(["rope", "glass", "hose"]), count_answer(SAMPLE.objects, ["rope", "glass", "hose"])
    assert "rope, glass, hose" in prompt
    assert target == "rope: 2\nglass: 1\nhose: 0"
    assert parse_counts(target) == ({"rope": 2, "glass": 1, "hose": 0}, [])
    assert parse_counts('```json\n{"rope": 3}\n```') == ({"rope": 3}, [])
    assert parse_counts("I cannot tell")[1]


def test_region_answer_full_partial_none():
    objs = SAMPLE.objects
    assert region_answer(objs, [90, 90, 310, 210]) == "rope: fully inside"
    text = region_answer(objs, [0, 0, 200, 600])  # half of the first rope
    assert text == "rope: partially inside, 50% visible"
    assert region_answer(objs, [0, 300, 100, 350]) == "nothing"
    assert parse_region_answer("rope: fully inside\nglass: partially inside, 37% visible") == (
        [("rope", "full", 100.0), ("glass", "partial", 37.0)], [])
    assert parse_region_answer("nothing") == ([], [])


def test_region_question_rendered_per_family():
    turn = QATurn(question=f"What is inside the region {box_ref([80, 60, 400, 300])}?", answer="nothing")
    sample = SAMPLE.model_copy(update={"qa": [turn]})
    users = {f: get_format(f).render_turns(sample)[0][0] for f in FAMILIES}
    assert users["qwen2-vl"].endswith("<|box_start|>(100,100),(500,500)<|box_end|>?")
    assert users["qwen3-vl"].endswith("[100, 100, 500, 500]?")
    rw, rh = get_format("qwen2.5-vl").input_size(800, 600)
    assert users["qwen2.5-vl"].endswith(f"[{round(80 * rw / 800)}, {round(60 * rh / 600)}, "
                                        f"{round(400 * rw / 800)}, {round(300 * rh / 600)}]?")


@pytest.mark.parametrize("tool_call", ["json", "list"])
@pytest.mark.parametrize("family", FAMILIES)
def test_vqa_crops_render_and_parse_back(family, tool_call):
    fmt = get_format(family, tool_call=tool_call)
    turn = QATurn(question="Is there a jam risk?", answer="Yes: a rope.",
                  think="Something long on the left.<crop>It is a rope.",
                  crops=[Crop(bbox=[80, 60, 400, 300]), Crop(bbox=[0, 0, 800, 600])])
    r = render_vqa(fmt, turn, (800, 600))
    call = '<tool_call>\n{"name": "crop", "arguments": {"bbox_2d": [' if tool_call == "json" else "<tool_call>["
    assert r.text.startswith("<think>Something long on the left." + call)
    assert r.text.endswith("</think><answer>Yes: a rope.</answer>")
    assert len(r.offsets) == 2 and all(r.text[:o].endswith("</tool_call>") for o in r.offsets)
    assert r.crops == [[80, 60, 400, 300], [0, 0, 800, 600]]
    back = parse_vqa(fmt, r.text, (800, 600))
    assert back.problems == [] and back.answer == "Yes: a rope." and back.offsets == r.offsets
    for got, want in zip(back.crops, r.crops, strict=True):
        assert got == pytest.approx(want, abs=1.0)
    assert fmt.render_turns(SAMPLE.model_copy(update={"qa": [turn]})) == [("Is there a jam risk?", r.text)]


def test_vqa_parse_garbage():
    fmt = get_format("qwen3-vl")
    out = parse_vqa(fmt, "<think>hmm <tool_call>[1, 2</tool_call> so", (100, 100))
    assert out.crops == [] and out.problems


def test_sequence_render_and_parse():
    s = Sample(id="c", video="clips/c.mp4", fps=10,
               target=Target(kind="trajectory", values=[[0.5, 0.01], [0.52, -0.02]], names=["v", "k"]))
    prompt, target = render_sequence(s)
    assert "(v, k)" in prompt and target == "[(0.5, 0.01), (0.52, -0.02)]"
    assert parse_sequence(target, 2) == ([[0.5, 0.01], [0.52, -0.02]], [])
    rows, problems = parse_sequence("[(0.5, 0.01), (0.52, -0.0", 2)
    assert rows == [[0.5, 0.01]] and problems
    assert get_format("qwen2-vl").render_turns(s) == [(prompt, target)]
    one = Sample(id="c", video="c.mp4", target=Target(kind="belt_speed", values=[[1.0], [0.98]], names=["m_s"]))
    prompt, target = render_sequence(one)
    assert "belt speed" in prompt and target == "[1, 0.98]"
    assert parse_sequence(target, 1) == ([[1.0], [0.98]], [])
    assert parse_sequence("[1, 0.9", 1)[0] == [[1.0], [0.9]]
    assert parse_sequence("garbage", 2)[1] and parse_sequence(None)[1]  # type: ignore[arg-type]


def test_classification_render_and_parse():
    s = Sample(id="t", image="x.jpg", width=10, height=10, label="cardboard")
    fmt = get_format("qwen2.5-vl")
    [(prompt, target)] = fmt.render_turns(s)
    assert "cardboard" in prompt and target == "cardboard"
    assert parse_classification("Cardboard.", fmt.classes) == ("cardboard", [])
    assert parse_classification("It looks like a plastic bag", fmt.classes)[0] == "plastic film"  # alias, longest
    assert parse_classification("a plastic bottle", fmt.classes)[0] == "plastic"
    assert parse_classification("???", fmt.classes)[0] is None


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 6))
def test_augment_answers_are_true(seed, n):
    rng = random.Random(seed)
    w, h = rng.randint(50, 2000), rng.randint(50, 2000)
    objs = []
    for _ in range(n):
        x1, y1 = rng.uniform(0, w - 2), rng.uniform(0, h - 2)
        objs.append(BoxObject(label=rng.choice(["rope", "hose", "glass"]),
                              bbox=[x1, y1, rng.uniform(x1 + 1, w), rng.uniform(y1 + 1, h)]))
    s = Sample(id="s", image="i.jpg", width=w, height=h, objects=objs)
    out = augment_samples([s], per_image=8, seed=seed)
    for a in out:
        kind, turn = a.meta["task"], a.qa[0]
        if kind == "count":
            counts, _ = parse_counts(turn.answer)
            assert all(v == sum(o.label == k for o in objs) for k, v in counts.items())
            continue
        region = a.meta["region"]
        got, problems = parse_region_answer(turn.answer)
        assert problems == []
        shown = [o for o in objs if visible_fraction(o.bbox, region) > 0]
        assert len(got) == len(shown)
        for (label, status, pct), o in zip(got, sorted(shown, key=lambda o: (o.bbox[1], o.bbox[0])), strict=True):
            f = visible_fraction(o.bbox, region)
            assert label == o.label
            assert (status == "full") == (f >= 1 - 1e-9)
            if status == "partial":
                assert abs(pct - 100 * f) <= 1.0
        if kind == "none":
            assert got == [] and all(intersection(o.bbox, region) == 0 for o in objs)
        if kind == "full":
            assert any(st_ == "full" for _, st_, _ in got)
        if kind == "partial":
            assert any(st_ == "partial" for _, st_, _ in got)


def test_cli_augment_and_render(tmp_path):
    from typer.testing import CliRunner

    src = tmp_path / "ds"
    write_samples(src / "samples.jsonl", [SAMPLE, Sample(id="clip", video="c.mp4")])
    out = tmp_path / "aug"
    r = CliRunner().invoke(app, ["data", "augment", str(src), "--per-image", "4", "--seed", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    samples = read_samples(out)
    assert len(samples) == 2 + 4
    assert samples[0].image == "../ds/images/b1.jpg"
    for s in samples[2:]:
        for family in FAMILIES:
            (user, assistant), = get_format(family).render_turns(s)
            assert "<bbox>" not in user
    r = CliRunner().invoke(app, ["data", "augment", str(src), "--only-new", "--out", str(src)])
    assert r.exit_code == 2 and "own input" in r.output and len(read_samples(src)) == 2
    r = CliRunner().invoke(app, ["data", "augment", str(src), "--kinds", "count,bogus"])
    assert r.exit_code == 2 and "error: --kinds: unknown bogus" in r.output


def test_cli_parse_prints_json_and_exits_zero():
    from typer.testing import CliRunner

    runner = CliRunner()
    r = runner.invoke(app, ["parse", "--family", "qwen2.5-vl", "--image-size", "1280", "720"],
                      input='```json\n[{"bbox_2d": [0, 0, 644, 364], "label": "rope"}, {"bbox_2d": [5, 6')
    assert r.exit_code == 0
    result = json.loads(r.stdout.splitlines()[0])
    assert result["input_size"] == [1288, 728]
    assert result["objects"][0]["bbox"] == pytest.approx([0, 0, 640, 360])
    assert result["problems"]
    r = runner.invoke(app, ["parse", "--family", "qwen2.5-vl", "--image-size", "1280", "720", "--input-size", "640",
                            "360"], input='[{"bbox_2d": [0, 0, 320, 180], "label": "rope"}]')
    assert json.loads(r.stdout)["objects"][0]["bbox"] == pytest.approx([0, 0, 640, 360])
    r = runner.invoke(app, ["parse", "--family", "llava", "--image-size", "10", "10"], input="")
    assert r.exit_code == 2 and "unknown model family" in r.output
    r = runner.invoke(app, ["parse", "--family", "qwen3-vl", "--image-size", "0", "0"], input="\x00garbage{[")
    assert r.exit_code == 0 and json.loads(r.stdout.splitlines()[0])["objects"] == []


def test_cli_parse_reads_processor_folder(tmp_path, shared_data):
    from typer.testing import CliRunner

    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"min_pixels": 3136, "max_pixels": 28 * 28 * 100, "patch_size": 14, "merge_size": 2}))
    text = '[{"bbox_2d": [0, 0, 140, 140], "label": "rope"}]'
    runner = CliRunner()
    args = ["parse", "--family", "qwen2.5-vl", "--image-size", "1280", "720", "--processor"]
    small = json.loads(runner.invoke(app, [*args, str(tmp_path)], input=text).stdout.splitlines()[0])
    real = json.loads(runner.invoke(app, [*args, str(shared_data / "qwen_configs" / "Qwen2.5-VL-7B-Instruct")],
                                    input=text).stdout.splitlines()[0])
    assert real["input_size"] == [1288, 728] and small["input_size"] == [364, 196]
    assert small["objects"][0]["bbox"] == pytest.approx([0, 0, 140 * 1280 / 364, 140 * 720 / 196])
