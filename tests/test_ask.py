"""`Detector.ask` and `jamspotter ask`: the crop-tool loop on tiny models of all three families.

The models are forced to write a crop call (tests/forcing.py: their real `generate` runs, only the tokens are
scripted), so the test sees what the model receives in its next turn. Expected sizes are worked out by hand
from smart_resize: factor 28 (Qwen2/2.5-VL, min 3136 px) and 32 (Qwen3-VL, min 65536 px, so small images are
scaled up: beta = sqrt(min / area), each side ceil(side * beta / 32) * 32).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from forcing import scripted_generate
from PIL import Image
from typer.testing import CliRunner

FAMILIES = ("qwen2-vl", "qwen2.5-vl", "qwen3-vl")
ANSWER = "</think><answer>yes</answer>"

# family -> (image size, bbox_2d the model writes, the crop in original pixels, patch grid of the image,
#            patch grid of the 120x72 crop)
CASES = {
    # 0-1000 on 250x200: x 160*0.25 = 40, 640*0.25 = 160; y 100*0.2 = 20, 460*0.2 = 92.
    # image: 200/28 = 7.1 -> 196, 250/28 = 8.9 -> 252: grid 14 x 18 (patch 14).
    # crop 120x72: 72/28 = 2.6 -> 84, 120/28 = 4.3 -> 112: grid 6 x 8.
    "qwen2-vl": ((250, 200), [160, 100, 640, 460], [40.0, 20.0, 160.0, 92.0], [1, 14, 18], [1, 6, 8]),
    # pixels of the resized input; 252x196 is already a multiple of 28, so input = original and the
    # call's numbers are original pixels. Same crop, same grids.
    "qwen2.5-vl": ((252, 196), [40, 20, 160, 92], [40.0, 20.0, 160.0, 92.0], [1, 14, 18], [1, 6, 8]),
    # image 250x200 = 50000 < 65536: beta = 1.1449, 200 -> ceil(7.16) * 32 = 256, 250 -> ceil(8.94) * 32 = 288,
    # grid 16 x 18 (patch 16). Crop 120x72 = 8640: beta = 2.7541, 72 -> ceil(6.20) * 32 = 224,
    # 120 -> ceil(10.33) * 32 = 352: grid 14 x 22.
    "qwen3-vl": ((250, 200), [160, 100, 640, 460], [40.0, 20.0, 160.0, 92.0], [1, 16, 18], [1, 14, 22]),
}


def crop_call(values: list[float]) -> str:
    return '<think>Something long on the left. <tool_call>\n{"name": "crop", "arguments": {"bbox_2d": ' \
        + json.dumps(values) + "}}\n</tool_call>"


def belt_image(size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def ask_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from jamspotter.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("ask_models")
    return {f: build_tiny_model(f, root / f, real_tokenizer=False) for f in FAMILIES}


@pytest.fixture(scope="session")
def askers(ask_models: dict[str, Path]) -> dict:
    from jamspotter.infer import Detector

    return {f: Detector(p, max_new_tokens=96, device="cpu") for f, p in ask_models.items()}


def script(monkeypatch: pytest.MonkeyPatch, det, replies: list[str]) -> list[dict]:  # noqa: ANN001
    calls: list[dict] = []
    real = type(det.model).generate.__get__(det.model)  # the class's generate, even when already scripted
    monkeypatch.setattr(det.model, "generate", scripted_generate(real, det.tokenizer, replies, calls))
    return calls


@pytest.mark.parametrize("family", FAMILIES)
def test_the_crop_image_is_in_the_next_turn(askers: dict, family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    det = askers[family]
    size, values, box, grid, crop_grid = CASES[family]
    image = belt_image(size)
    calls = script(monkeypatch, det, [crop_call(values), ANSWER])
    answer = det.ask(image, "Is there a rope on the belt?")

    assert len(calls) == 2
    assert calls[0]["image_grid_thw"].tolist() == [grid]
    assert calls[1]["image_grid_thw"].tolist() == [grid, crop_grid]  # original first, then the crop
    # the second image's pixels are the crop of the hand-computed region (PIL crop, run through the processor)
    first = grid[1] * grid[2]
    expected = det.processor.image_processor(images=[image.crop((40, 20, 160, 92))], return_tensors="pt")
    assert np.allclose(calls[1]["pixel_values"][first:].numpy(), expected["pixel_values"].numpy(), atol=1e-5)
    # the second prompt holds the model's call, then the crop as a tool response, then a new assistant turn
    prompt = det.tokenizer.decode(calls[1]["input_ids"][0])
    call_at, response_at = prompt.rindex("</tool_call>"), prompt.rindex("<tool_response>")
    assert call_at < response_at and prompt.count("<|vision_start|>") == 2
    assert prompt.endswith("<|im_start|>assistant\n")
    assert calls[0]["do_sample"] is False and calls[1]["do_sample"] is False

    assert answer.answer == "yes" and answer.think == "Something long on the left."
    assert answer.crops == [box] and answer.crops_used == 1
    assert answer.text == crop_call(values) + "<tool_response>crop</tool_response>" + ANSWER
    assert answer.problems == []


def test_bad_calls_get_an_error_message_and_no_image(askers: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    det = askers["qwen2-vl"]
    outside = crop_call([600, 600, 1200, 1200])  # 0-1000 past the far edges: x2 = 300 on a 250 px wide image
    other_tool = '<tool_call>\n{"name": "zoom", "arguments": {"level": 2}}\n</tool_call>'
    calls = script(monkeypatch, det, [outside, other_tool, ANSWER])
    answer = det.ask(belt_image((250, 200)), "Is there a rope?")

    assert len(calls) == 3
    assert [c["image_grid_thw"].tolist() for c in calls] == [[[1, 14, 18]]] * 3  # never a second image
    second, third = (det.tokenizer.decode(c["input_ids"][0]) for c in calls[1:])
    # the same error text TRL's GRPO loop gives the model for a failed call
    assert "<tool_response>\n{'error': 'crop box [150, 120, 300, 240] is outside the 250x200 image'}\n" \
        "</tool_response>" in second
    assert """{'error': "unknown tool 'zoom'; the only tool is crop"}""" in third
    assert answer.answer == "yes" and answer.crops == [] and answer.crops_used == 0
    assert len(answer.problems) == 2 and "outside" in answer.problems[0] and "zoom" in answer.problems[1]
    assert "<tool_response>error: crop box [150, 120, 300, 240] is outside" in answer.text


def test_the_seed_data_call_syntax_is_answered_too(askers: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    det = askers["qwen2-vl"]
    calls = script(monkeypatch, det, ["<think>Closer. <tool_call>[160, 100, 640, 460]</tool_call>", ANSWER])
    answer = det.ask(belt_image((250, 200)), "Is there a rope?")
    assert calls[1]["image_grid_thw"].tolist() == [[1, 14, 18], [1, 6, 8]]
    assert answer.crops == [[40.0, 20.0, 160.0, 92.0]] and answer.answer == "yes" and answer.problems == []


def test_max_crops_bounds_the_loop(askers: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    det = askers["qwen2-vl"]
    always = crop_call([160, 100, 640, 460])  # a model that never stops cropping
    calls = script(monkeypatch, det, [always])
    answer = det.ask(belt_image((250, 200)), "Is there a rope?", max_crops=2)
    # two crops, one "limit reached" message, then the fourth call ends the loop
    assert len(calls) == 4
    assert [len(c["image_grid_thw"]) for c in calls] == [1, 2, 3, 3]
    assert "{'error': 'crop limit reached (2 per answer)'}" in det.tokenizer.decode(calls[3]["input_ids"][0])
    assert answer.crops_used == 2 and answer.crops == [[40.0, 20.0, 160.0, 92.0]] * 2
    assert answer.answer == "" and any("over the limit of 2 crops" in p for p in answer.problems)

    calls = script(monkeypatch, det, [always, ANSWER])
    answer = det.ask(belt_image((250, 200)), "Is there a rope?", max_crops=0)
    assert len(calls) == 2 and len(calls[1]["image_grid_thw"]) == 1  # told so, no image, then it answers
    assert answer.answer == "yes" and answer.crops_used == 0 and "crop limit reached" in answer.problems[0]


def test_each_turn_is_bounded_and_a_cut_answer_says_so(askers: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    det = askers["qwen2.5-vl"]
    calls = script(monkeypatch, det, ["<think>" + "belt " * 40])
    answer = det.ask(belt_image((252, 196)), "Is there a rope?", max_new_tokens=8)
    assert len(calls) == 1 and calls[0]["max_new_tokens"] == 8
    assert "answer cut at max_new_tokens=8" in answer.problems


def test_region_in_the_question_is_written_in_the_family_coordinates(askers: dict,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    det = askers["qwen2-vl"]
    calls = script(monkeypatch, det, [ANSWER])
    det.ask(belt_image((250, 200)), "What is in <bbox>[25, 50, 125, 150]</bbox>?")
    # 0-1000 on 250x200: x 25 / 0.25 = 100, 125 / 0.25 = 500; y 50 / 0.2 = 250, 150 / 0.2 = 750, in Qwen2's tokens
    assert "What is in <|box_start|>(100,250),(500,750)<|box_end|>?" in det.tokenizer.decode(calls[0]["input_ids"][0])


def test_bad_arguments_are_one_line_errors(askers: dict) -> None:
    from jamspotter.errors import DataError, JamspotterError

    det = askers["qwen2-vl"]
    with pytest.raises(JamspotterError, match="question is empty"):
        det.ask(belt_image((64, 64)), "  ")
    with pytest.raises(JamspotterError, match="max_crops"):
        det.ask(belt_image((64, 64)), "rope?", max_crops=-1)
    with pytest.raises(DataError, match="201x1"):
        det.ask(Image.new("RGB", (201, 1)), "rope?")


def one_error(result) -> str:  # noqa: ANN001
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_cli_prints_the_answer_and_the_crops(ask_models: dict[str, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration

    from jamspotter.cli import app

    model = ask_models["qwen2-vl"]
    belt_image((250, 200)).save(tmp_path / "belt.png")
    tokenizer = AutoTokenizer.from_pretrained(model)
    real = Qwen2VLForConditionalGeneration.generate

    def run(*extra: str):  # noqa: ANN202
        forced = scripted_generate(real, tokenizer, [crop_call([160, 100, 640, 460]), ANSWER])
        monkeypatch.setattr(Qwen2VLForConditionalGeneration, "generate", forced)
        return CliRunner().invoke(app, ["ask", str(model), str(tmp_path / "belt.png"), "Is there a rope?",
                                        "--device", "cpu", "--max-new-tokens", "96", *extra])

    result = run("--json")
    assert result.exit_code == 0, result.output
    reply = json.loads(result.stdout)
    assert reply == {"answer": "yes", "think": "Something long on the left.", "crops": [[40.0, 20.0, 160.0, 92.0]],
                     "crops_used": 1, "text": reply["text"], "problems": []}
    result = run()
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["answer: yes", "think: Something long on the left.",
                                          "crop 1: [40, 20, 160, 92]"]


def test_cli_bad_input_is_one_error_line(ask_models: dict[str, Path], tmp_path: Path) -> None:
    from jamspotter.cli import app

    model = str(ask_models["qwen2-vl"])
    (tmp_path / "bad.png").write_text("not an image")
    assert "bad.png" in one_error(CliRunner().invoke(app, ["ask", model, str(tmp_path / "bad.png"), "rope?"]))
    assert "no such image" in one_error(CliRunner().invoke(app, ["ask", model, str(tmp_path / "x.png"), "rope?"]))
    Image.new("RGB", (32, 32)).save(tmp_path / "ok.png")
    assert "question is empty" in one_error(CliRunner().invoke(app, ["ask", model, str(tmp_path / "ok.png"), " "]))
    assert "--max-crops" in one_error(CliRunner().invoke(app, ["ask", model, str(tmp_path / "ok.png"), "rope?",
                                                               "--max-crops", "-1"]))
    assert "no such folder" in one_error(CliRunner().invoke(app, ["ask", str(tmp_path / "nomodel"),
                                                                  str(tmp_path / "ok.png"), "rope?"]))
