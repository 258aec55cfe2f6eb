"""Chat files of the toolkits our users train with import with every box, image and system prompt.

The peer demo files are the real ones in ../shared/data/peer_formats (see its README for their
sources and the sizes of the images they name; placeholder images of those sizes are made here).
Every expected box is worked out by hand in the comments from the numbers in the files.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from jamspotter.cli import app
from jamspotter.data import read_samples

runner = CliRunner()
PEERS = "peer_formats"


def one_error(r) -> str:
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0]


def images(root: Path, sizes: dict[str, tuple[int, int]]) -> None:
    for name, size in sizes.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (90, 90, 90)).save(root / name)


def run_import(src: Path, out: Path, kind: str, *extra: str):
    return runner.invoke(app, ["data", "import", "--from", kind, str(src), "--out", str(out), *extra])


def imported(src: Path, out: Path, kind: str, *extra: str):
    r = run_import(src, out, kind, *extra)
    assert r.exit_code == 0, r.output
    return read_samples(out), r.output


def exported(ds: Path, out: Path, to: str, *extra: str) -> list[dict]:
    r = runner.invoke(app, ["data", "export", "--to", to, str(ds), "--out", str(out), *extra])
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text())


def boxes(s) -> list[tuple[str, list[float]]]:
    return [(o.label, o.bbox) for o in s.objects]


def texts(s) -> str:
    return "".join(t.question + t.answer for t in s.qa)


# ---- ms-swift grounding (docs/source_en/Customization/Custom-dataset.md) -------------------------------
@pytest.fixture
def swift(shared_data, tmp_path) -> Path:
    src = tmp_path / "grounding.jsonl"
    shutil.copy(shared_data / PEERS / "ms-swift" / "grounding.jsonl", src)
    images(tmp_path, {"dog.jpg": (1500, 1800), "sheep.jpg": (900, 800)})
    return src


def test_swift_grounding_records_import_with_every_box(swift, tmp_path):
    samples, output = imported(swift, tmp_path / "ds", "messages")
    dog, sheep, click = samples
    # record 1, bbox_type absent = real pixels: the file's numbers, labelled by the <ref-object> before each <bbox>
    assert boxes(dog) == [("a dog", [331.5, 761.4, 853.5, 1594.8]), ("a woman", [676.5, 685.8, 1099.5, 1427.4])]
    assert dog.qa[0].answer == ("a dog<bbox>[331.5, 761.4, 853.5, 1594.8]</bbox> and "
                                "a woman<bbox>[676.5, 685.8, 1099.5, 1427.4]</bbox> are playing on the beach")
    # record 2: one ref ("Find the <ref-object>") names both boxes of the answer
    assert boxes(sheep) == [("sheep", [90.9, 160.8, 135, 212.8]), ("sheep", [360.9, 480.8, 495, 532.8])]
    assert sheep.qa[0].question == "Find the sheep in the image"
    assert sheep.qa[0].answer == "<bbox>[90.9, 160.8, 135, 212.8]</bbox><bbox>[360.9, 480.8, 495, 532.8]</bbox>"
    # record 3: a click point is no box: kept in the text as written, and reported
    assert click.objects == [] and click.qa[0].answer == "Action: click(start_box='[615, 226]')"
    assert click.meta["points_as_text"] == 1 and "1 points" in output
    assert "imported 3 samples, 4 objects" in output
    for s in samples:
        assert s.meta["system"] == "You are a helpful assistant."
        assert "<ref-object>" not in texts(s) and not re.search(r"<bbox>(?!\[)", texts(s))
        assert "box_family" not in s.meta
    assert (dog.width, dog.height, sheep.width, sheep.height) == (1500, 1800, 900, 800)


def test_swift_norm1000_boxes_scale_by_the_image_size(tmp_path):
    # sheep.jpg 900x800: [100, 200, 500, 600] / 1000 -> x*0.9, y*0.8 = [90, 160, 450, 480]
    images(tmp_path, {"sheep.jpg": (900, 800)})
    rec = {"messages": [{"role": "user", "content": "<image>Find the <ref-object>"},
                        {"role": "assistant", "content": "<bbox>"}],
           "images": ["sheep.jpg"],
           "objects": {"ref": ["rope"], "bbox": [[100, 200, 500, 600]], "bbox_type": "norm1000"}}
    (tmp_path / "g.jsonl").write_text(json.dumps(rec) + "\n")
    (s,), _ = imported(tmp_path / "g.jsonl", tmp_path / "ds", "messages")
    assert boxes(s) == [("rope", [90, 160, 450, 480])] and s.objects[0].jam_risk is True
    assert s.qa[0].answer == "<bbox>[90, 160, 450, 480]</bbox>"


@pytest.mark.parametrize("objects, expected", [
    ({"ref": ["rope"], "bbox": [[1, 2, 30, 40], [5, 5, 9, 9]]}, "2 boxes but the turns hold 1 <ref-object> and 1"),
    ({"ref": ["rope"], "bbox": []}, "more <bbox> placeholders than the 0 entries"),
    ({"ref": ["rope"], "bbox": [[1, 2, 30, 40]], "bbox_type": "norm1"}, "bbox_type 'norm1' not supported"),
    ({"ref": ["rope"], "bbox": [[1, 2, 3]]}, "objects.bbox[0] must be [x1, y1, x2, y2]"),
    ({"ref": ["rope"], "bbox": [[1, 2, 3000, 40]]}, "rope"),  # beyond the 900 px image
])
def test_swift_objects_that_do_not_fit_the_turns_are_one_error_line(tmp_path, objects, expected):
    images(tmp_path, {"sheep.jpg": (900, 800)})
    rec = {"messages": [{"role": "user", "content": "<image>Find the <ref-object>"},
                        {"role": "assistant", "content": "<bbox>"}], "images": ["sheep.jpg"], "objects": objects}
    (tmp_path / "g.jsonl").write_text(json.dumps(rec) + "\n")
    line = one_error(run_import(tmp_path / "g.jsonl", tmp_path / "ds", "messages"))
    assert "g.jsonl:1" in line and (expected in line or expected == "rope"), line
    assert not (tmp_path / "ds").exists()


def test_swift_norm1000_needs_the_image(tmp_path):
    rec = {"messages": [{"role": "user", "content": "<image><ref-object>"}, {"role": "assistant", "content": "<bbox>"}],
           "images": ["gone.jpg"], "objects": {"ref": ["rope"], "bbox": [[1, 2, 3, 4]], "bbox_type": "norm1000"}}
    (tmp_path / "g.jsonl").write_text(json.dumps(rec) + "\n")
    line = one_error(run_import(tmp_path / "g.jsonl", tmp_path / "ds", "messages", "--allow-missing-images"))
    assert "image size unknown" in line


def test_swift_grounding_round_trip_keeps_boxes_images_and_system(swift, tmp_path):
    # Qwen2-VL writes boxes on a 0-1000 grid: 1.5 px (dog.jpg x) / 1.8 px (y) a step, so back within 1 px.
    first, _ = imported(swift, tmp_path / "ds", "messages")
    recs = exported(tmp_path / "ds", tmp_path / "out" / "chat.json", "sharegpt", "--family", "qwen2-vl")
    assert [r["messages"][0] for r in recs] == [{"role": "system", "content": "You are a helpful assistant."}] * 3
    assert [r["images"] for r in recs] == [[str(tmp_path / n)] for n in ("dog.jpg", "sheep.jpg", "dog.jpg")]
    again, _ = imported(tmp_path / "out" / "chat.json", tmp_path / "ds2", "messages", "--family", "qwen2-vl")
    for a, b in zip(first, again, strict=True):
        assert (b.image, b.meta["system"]) == (a.image, a.meta["system"])
        assert len(b.objects) == len(a.objects)
        for oa, ob in zip(a.objects, b.objects, strict=True):
            assert ob.bbox == pytest.approx(oa.bbox, abs=1.0)


# ---- qwen-vl-finetune demo (QwenLM/Qwen3-VL qwen-vl-finetune/demo/single_images.json) --------------------
def test_qwen_vl_finetune_demo_imports_with_every_image(shared_data, tmp_path):
    images(tmp_path, {"demo/images/10095.png": (422, 359), "demo/images/10149.png": (314, 281)})
    src = shared_data / PEERS / "qwen-vl-finetune" / "single_images.json"
    samples, _ = imported(src, tmp_path / "ds", "conversations", "--images", str(tmp_path))
    assert [(Path(s.image).relative_to(tmp_path).as_posix(), s.width, s.height) for s in samples] == [
        ("demo/images/10095.png", 422, 359), ("demo/images/10095.png", 422, 359), ("demo/images/10149.png", 314, 281)]
    assert [(s.qa[0].question, s.qa[0].answer) for s in samples] == [
        ("Is the value of Favorable 38 in 2015?", "Yes"),
        ("How many values are below 40 in Unfavorable graph?", "6"),
        ("In which year the value was 51?", "2014")]
    recs = exported(tmp_path / "ds", tmp_path / "out.json", "conversations")
    assert [r["image"] for r in recs] == [str(tmp_path / "demo/images/10095.png")] * 2 + [
        str(tmp_path / "demo/images/10149.png")]
    assert all(r["conversations"][0]["value"].count("<image>") == 1 for r in recs)


# ---- LLaMA-Factory mllm_demo (hiyouga/LLaMA-Factory data/mllm_demo.json): several images a record -----------
def test_llamafactory_mllm_demo_keeps_every_image_in_its_turn(shared_data, tmp_path):
    images(tmp_path, {"mllm_demo_data/1.jpg": (300, 168), "mllm_demo_data/2.jpg": (300, 199),
                      "mllm_demo_data/3.jpg": (300, 166)})
    src = shared_data / PEERS / "llamafactory" / "mllm_demo.json"
    source = json.loads(src.read_text())
    samples, _ = imported(src, tmp_path / "ds", "messages", "--images", str(tmp_path))
    assert len(samples) == len(source)
    for s, rec in zip(samples, source, strict=True):
        paths = [s.image, *s.meta.get("images", [])]
        assert paths == [str(tmp_path / p) for p in rec["images"]]
    two = samples[0]  # "<image>Who are they?" ... "What are they doing?<image>": one image in each turn
    assert two.meta["images"] == [str(tmp_path / "mllm_demo_data/1.jpg")] and two.meta["image_turns"] == [0, 1]
    assert [t.question for t in two.qa] == ["Who are they?", "What are they doing?"]
    recs = exported(tmp_path / "ds", tmp_path / "out" / "chat.json", "sharegpt")
    for out, rec in zip(recs, source, strict=True):
        assert out["images"] == [str(tmp_path / p) for p in rec["images"]]
        users_out = [m["content"].count("<image>") for m in out["messages"] if m["role"] == "user"]
        users_in = [m["content"].count("<image>") for m in rec["messages"] if m["role"] == "user"]
        assert users_out == users_in  # each placeholder back in the turn it was in
    again, _ = imported(tmp_path / "out" / "chat.json", tmp_path / "ds2", "messages")
    assert [(s.image, s.meta.get("images"), s.meta.get("image_turns")) for s in again] == [
        (s.image, s.meta.get("images"), s.meta.get("image_turns")) for s in samples]


# ---- 2U1/Qwen2-VL-Finetune README: a LLaVA JSON list, `image` a path or a list ------------------------------
def test_2u1_record_with_two_images(shared_data, tmp_path):
    images(tmp_path, {"000000033471.jpg": (640, 480), "000000033472.jpg": (640, 480)})
    src = shared_data / PEERS / "2u1" / "llava_demo.json"
    one, two = imported(src, tmp_path / "ds", "conversations", "--images", str(tmp_path))[0]
    assert "images" not in one.meta and len(one.qa) == 3
    assert (two.image, two.meta["images"]) == (str(tmp_path / "000000033471.jpg"), [str(tmp_path / "000000033472.jpg")])
    assert "image_turns" not in two.meta  # both in the first turn
    rec = exported(tmp_path / "ds", tmp_path / "out.json", "conversations")[1]
    assert rec["image"] == [str(tmp_path / "000000033471.jpg"), str(tmp_path / "000000033472.jpg")]
    assert rec["conversations"][0]["value"] == "<image>\n<image>\nIs the perspective of the camera differnt?"


# ---- one hand-written answer per model family ---------------------------------------------------------------
def family_file(tmp_path: Path, size: tuple[int, int], answers: list[str]) -> Path:
    images(tmp_path, {"a.png": size})
    msgs = []
    for k, answer in enumerate(answers):
        msgs += [{"role": "user", "content": ("<image>" if k == 0 else "") + f"question {k}"},
                 {"role": "assistant", "content": answer}]
    rec = {"messages": [{"role": "system", "content": "Spot jams."}, *msgs], "images": ["a.png"]}
    (tmp_path / "m.jsonl").write_text(json.dumps(rec) + "\n")
    return tmp_path / "m.jsonl"


def test_qwen2_token_boxes_become_objects(tmp_path):
    # 0-1000 grid on 640x480: (100,200),(300,400) -> x*0.64, y*0.48 = [64, 96, 192, 192]
    src = family_file(tmp_path, (640, 480), ["<|object_ref_start|>rope<|object_ref_end|>"
                                             "<|box_start|>(100,200),(300,400)<|box_end|>"])
    (s,), out = imported(src, tmp_path / "ds", "messages", "--family", "qwen2-vl")
    assert boxes(s) == [("rope", [64, 96, 192, 192])] and s.objects[0].jam_risk is True
    assert s.qa[0].answer == "rope <bbox>[64, 96, 192, 192]</bbox>" and s.meta["system"] == "Spot jams."
    assert "1 samples, 1 objects" in out


def test_qwen25_json_boxes_at_the_default_budget_become_objects(tmp_path):
    # 1280x720 -> 1288x728 (default budget): x*1280/1288, y*720/728.
    # [161, 182, 966, 364] -> [160, 180, 960, 360]; [644, 364, 1288, 728] -> [640, 360, 1280, 720].
    # The second answer repeats the rope: one object. The crop tool call is no object.
    first = ('```json\n[{"bbox_2d": [161, 182, 966, 364], "label": "rope"}, '
             '{"bbox_2d": [644, 364, 1288, 728], "label": "cardboard"}]\n```')
    second = ('<think><tool_call>{"name": "crop", "arguments": {"bbox_2d": [0, 0, 322, 182]}}</tool_call></think>'
              '<answer>[{"bbox_2d": [161, 182, 966, 364], "label": "rope"}]</answer>')
    (s,), _ = imported(family_file(tmp_path, (1280, 720), [first, second]), tmp_path / "ds", "messages",
                       "--family", "qwen2.5-vl")
    assert boxes(s) == [("rope", [160, 180, 960, 360]), ("cardboard", [640, 360, 1280, 720])]
    assert [o.jam_risk for o in s.objects] == [True, False]
    assert '"bbox_2d": <bbox>[0, 0, 320, 180]</bbox>' in s.qa[1].answer  # the crop stays a (converted) crop


def test_qwen3_json_boxes_become_objects_with_the_given_taxonomy(tmp_path):
    # 0-1000 on 1280x720: [125, 250, 750, 500] -> x*1.28, y*0.72 = [160, 180, 960, 360]
    (tmp_path / "tax.yaml").write_text("rope: false\n")
    src = family_file(tmp_path, (1280, 720), ['[{"bbox_2d": [125, 250, 750, 500], "label": "rope"}]'])
    (s,), _ = imported(src, tmp_path / "ds", "messages", "--family", "qwen3-vl", "--taxonomy",
                       str(tmp_path / "tax.yaml"))
    assert boxes(s) == [("rope", [160, 180, 960, 360])] and s.objects[0].jam_risk is False


def test_without_family_no_objects_are_guessed(tmp_path):
    src = family_file(tmp_path, (1280, 720), ['[{"bbox_2d": [125, 250, 750, 500], "label": "rope"}]'])
    (s,), _ = imported(src, tmp_path / "ds", "messages")
    assert s.objects == [] and s.meta["box_family"] == "unknown"
