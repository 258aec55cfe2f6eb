"""Chat files hold box text in the coordinates of the family that wrote them: `data import --family` turns
it into original pixels, and without it chat exports refuse to copy the numbers into another family.

Every expected number below is worked out by hand from smart_resize (factor 28, default budget
3136..12845056 pixels for Qwen2.5-VL) and the 0-1000 grid of Qwen2-VL / Qwen3-VL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from jamspotter.cli import app
from jamspotter.data import read_samples

runner = CliRunner()


def one_error(r) -> str:
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0]


def conversation_file(tmp_path: Path, answer: str, size=(1280, 720), question="<image>\nFind the rope.",
                      sample_id="belt-7") -> Path:
    Image.new("RGB", size, (90, 90, 90)).save(tmp_path / "a.png")
    recs = [{"id": sample_id, "image": "a.png", "conversations": [
        {"from": "human", "value": question}, {"from": "gpt", "value": answer}]}]
    (tmp_path / "chat.json").write_text(json.dumps(recs))
    return tmp_path / "chat.json"


def import_chat(tmp_path: Path, src: Path, *extra: str, kind="conversations"):
    return runner.invoke(app, ["data", "import", "--from", kind, str(src), "--out", str(tmp_path / "ds"), *extra])


def export_answer(tmp_path: Path, to: str, *extra: str) -> str:
    out = tmp_path / f"{to}.json"
    r = runner.invoke(app, ["data", "export", "--to", to, str(tmp_path / "ds"), "--out", str(out), *extra])
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text())[0]["messages"][1]["content"]


def json_boxes(answer: str) -> list[list[int]]:
    body = answer.split("```json")[1].split("```")[0] if "```json" in answer else answer
    return [item["bbox_2d"] for item in json.loads(body)]


# 1280x720 -> smart_resize 1288x728 (720/28 = 25.7 -> 26*28; 1280/28 = 45.7 -> 46*28; under the pixel cap).
# [161, 182, 966, 364] is x 1/8 and 3/4 of 1288, y 1/4 and 1/2 of 728 ->
# original [160, 180, 960, 360] -> Qwen3-VL 0-1000: [125, 250, 750, 500].
QWEN25_ANSWER = '```json\n[\n\t{"bbox_2d": [161, 182, 966, 364], "label": "rope"}\n]\n```'


def test_qwen25_conversation_file_exports_to_qwen3_in_its_grid(tmp_path):
    src = conversation_file(tmp_path, QWEN25_ANSWER)
    r = import_chat(tmp_path, src, "--family", "qwen2.5-vl")
    assert r.exit_code == 0, r.output
    (s,) = read_samples(tmp_path / "ds")
    assert s.qa[0].answer == '```json\n[\n\t{"bbox_2d": <bbox>[160, 180, 960, 360]</bbox>, "label": "rope"}\n]\n```'
    assert "box_family" not in s.meta
    assert json_boxes(export_answer(tmp_path, "qwen3-vl")) == [[125, 250, 750, 500]]
    assert json_boxes(export_answer(tmp_path, "qwen2.5-vl")) == [[161, 182, 966, 364]]  # back as the file had it


def test_the_pixel_budget_the_boxes_were_written_for(tmp_path):
    # max_pixels 200704 (= 921600 * 49/225): 1280x720 scales by 7/15 to 597.3x336 -> floor to 28s: 588x336.
    # [147, 84, 441, 168] is x 1/4 and 3/4 of 588, y 1/4 and 1/2 of 336 -> original [320, 180, 960, 360]
    # -> Qwen3-VL [250, 250, 750, 500].
    src = conversation_file(tmp_path, '[{"bbox_2d": [147, 84, 441, 168], "label": "rope"}]')
    r = import_chat(tmp_path, src, "--family", "qwen2.5-vl", "--max-pixels", "200704")
    assert r.exit_code == 0, r.output
    assert "<bbox>[320, 180, 960, 360]</bbox>" in read_samples(tmp_path / "ds")[0].qa[0].answer
    assert json_boxes(export_answer(tmp_path, "qwen3-vl")) == [[250, 250, 750, 500]]


def test_qwen2_token_boxes_in_a_messages_file(tmp_path):
    # Qwen2-VL 0-1000 on 640x480: (100,200),(300,400) -> [64, 96, 192, 192] original pixels.
    # Qwen2.5-VL input 644x476 (640/28 = 22.9 -> 23*28, 480/28 = 17.1 -> 17*28):
    # 64*644/640 = 64.4, 96*476/480 = 95.2, 192*644/640 = 193.2, 192*476/480 = 190.4 -> [64, 95, 193, 190].
    Image.new("RGB", (640, 480)).save(tmp_path / "a.png")
    rec = {"messages": [{"role": "user", "content": "<image>Where is the rope?"},
                        {"role": "assistant", "content": "<|object_ref_start|>rope<|object_ref_end|>"
                                                         "<|box_start|>(100,200),(300,400)<|box_end|>"}],
           "images": ["a.png"]}
    (tmp_path / "m.jsonl").write_text(json.dumps(rec) + "\n")
    r = import_chat(tmp_path, tmp_path / "m.jsonl", "--family", "qwen2-vl", kind="messages")
    assert r.exit_code == 0, r.output
    assert read_samples(tmp_path / "ds")[0].qa[0].answer == "rope <bbox>[64, 96, 192, 192]</bbox>"
    assert export_answer(tmp_path, "qwen2.5-vl") == "rope [64, 95, 193, 190]"
    assert export_answer(tmp_path, "qwen2-vl") == "rope <|box_start|>(100,200),(300,400)<|box_end|>"


def test_crop_tool_calls_are_converted_too(tmp_path):
    answer = ('<think>Look closer.<tool_call>\n{"name": "crop", "arguments": {"bbox_2d": [161, 182, 966, 364]}}\n'
              "</tool_call></think><answer>A rope.</answer>")
    r = import_chat(tmp_path, conversation_file(tmp_path, answer), "--family", "qwen2.5-vl")
    assert r.exit_code == 0, r.output
    assert '{"bbox_2d": <bbox>[160, 180, 960, 360]</bbox>}' in read_samples(tmp_path / "ds")[0].qa[0].answer
    assert '"bbox_2d": [125, 250, 750, 500]' in export_answer(tmp_path, "qwen3-vl")


@pytest.mark.parametrize("to", ["qwen3-vl", "qwen2.5-vl", "conversations", "sharegpt"])
def test_without_family_chat_exports_refuse_the_box_text(tmp_path, to):
    src = conversation_file(tmp_path, QWEN25_ANSWER)
    r = import_chat(tmp_path, src)
    assert r.exit_code == 0 and "--family" in r.output, r.output
    (s,) = read_samples(tmp_path / "ds")
    assert s.meta["box_family"] == "unknown" and s.qa[0].answer == QWEN25_ANSWER  # kept as written
    out = tmp_path / "out.json"
    line = one_error(runner.invoke(app, ["data", "export", "--to", to, str(tmp_path / "ds"), "--out", str(out)]))
    assert "belt-7" in line and "--family" in line
    assert not out.exists()


def test_chat_text_without_box_text_needs_no_family(tmp_path):
    r = import_chat(tmp_path, conversation_file(tmp_path, "A rope, 2 m long."))
    assert r.exit_code == 0 and "--family" not in r.output, r.output
    assert "box_family" not in read_samples(tmp_path / "ds")[0].meta
    assert export_answer(tmp_path, "qwen3-vl") == "A rope, 2 m long."


def test_boxes_off_the_family_grid_are_an_error_naming_the_sample(tmp_path):
    # 1400 > 1288, the widest a Qwen2.5-VL box can be for this image: written for another family or budget
    src = conversation_file(tmp_path, '[{"bbox_2d": [0, 0, 1400, 364], "label": "rope"}]')
    line = one_error(import_chat(tmp_path, src, "--family", "qwen2.5-vl"))
    assert "belt-7" in line and "qwen2.5-vl" in line
    assert not (tmp_path / "ds").exists()
    r = import_chat(tmp_path, src, "--family", "qwen2.5-vl", "--skip-invalid")
    assert r.exit_code == 2 and "nothing to import" in r.output


def test_points_cannot_become_boxes(tmp_path):
    src = conversation_file(tmp_path, '[{"point_2d": [161, 182], "label": "rope"}]')
    line = one_error(import_chat(tmp_path, src, "--family", "qwen3-vl"))
    assert "belt-7" in line and "point_2d" in line


@pytest.mark.parametrize("args, expected", [
    (["--from", "coco", "--family", "qwen3-vl"], "conversations|messages only"),
    (["--from", "conversations", "--max-pixels", "200704"], "need --family"),
    (["--from", "conversations", "--family", "qwen9"], "unknown model family"),
])
def test_family_option_misuse(tmp_path, args, expected):
    src = conversation_file(tmp_path, QWEN25_ANSWER)
    line = one_error(runner.invoke(app, ["data", "import", str(src), "--out", str(tmp_path / "ds"), *args]))
    assert expected in line
