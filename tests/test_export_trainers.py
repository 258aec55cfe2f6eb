"""`data export --for TRAINER`: each trainer's layout and resize pipeline, checked against rules written out here.

Each trainer's resize is re-stated below from its own source (file and function cited), and the sizes the
model sees are hand-computed literals; exported Qwen2.5-VL boxes must be those pixels within 1 px.
"""

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jamspotter.cli import app
from jamspotter.data import Sample
from jamspotter.data.io import write_samples

PEERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "peer_formats"
STRAP = [1003, 64, 1120, 668]  # on 1280x720; the same place on the other sizes below
SIZES = {(1280, 720): STRAP, (1920, 1080): [1504.5, 96, 1680, 1002], (640, 480): [501.5, 42.67, 560, 445.33]}


# ---- the trainers' rules, written out from their sources ----------------------------------------------------
def llamafactory_first_step(w, h, min_pixels=32 * 32, max_pixels=768 * 768):
    # LLaMA-Factory src/llamafactory/data/mm_plugin.py `_preprocess_image`:
    #   if image.width * image.height > image_max_pixels:
    #       resize_factor = math.sqrt(image_max_pixels / (image.width * image.height))
    #       width, height = int(image.width * resize_factor), int(image.height * resize_factor)
    #   (the same upwards for image_min_pixels); defaults getattr(processor, "image_max_pixels", 768 * 768)
    if w * h > max_pixels:
        f = math.sqrt(max_pixels / (w * h))
        w, h = int(w * f), int(h * f)
    if w * h < min_pixels:
        f = math.sqrt(min_pixels / (w * h))
        w, h = int(w * f), int(h * f)
    return w, h


def swift_first_step(w, h, max_pixels):
    # ms-swift swift/template/vision_utils.py `rescale_image`:
    #   ratio = width / height; height_scaled = math.sqrt(max_pixels / ratio); width_scaled = height_scaled * ratio
    #   then both int() and torchvision Resize((height_scaled, width_scaled)); nothing when w*h <= max_pixels
    if w * h <= max_pixels:
        return w, h
    hs = math.sqrt(max_pixels / (w / h))
    return int(hs * (w / h)), int(hs)


# (width, height) the model sees after each trainer's whole pipeline, worked by hand (smart_resize factor 28):
SEEN = {
    # LLaMA-Factory, 768*768: 1280x720 -> 1024x576 -> round to 28: 1036x588 (issue 13's example);
    # 1920x1080 -> 1024x576 -> 1036x588; 640x480 below the budget -> 644x476
    "llamafactory": {(1280, 720): (1036, 588), (1920, 1080): (1036, 588), (640, 480): (644, 476)},
    # 2U1 scripts/finetune.sh --image_min_pixels 401408 --image_max_pixels 1003520:
    # 1288x728 fits; 1920x1080 shrinks by sqrt(2073600/1003520) -> floor to 28: 1316x728;
    # 640x480 (644x476 = 306,544 < 401,408) UPSCALED by sqrt(401408/307200) -> ceil to 28: 756x560
    "2u1": {(1280, 720): (1288, 728), (1920, 1080): (1316, 728), (640, 480): (756, 560)},
    # qwen-vl-finetune scripts/sft_*.sh --max_pixels 50176 --min_pixels 784: 1280x720 / (30/7) -> 298.7x168
    # -> 280x168; 1920x1080 / (45/7) -> 280x168; 640x480 / 2.474 -> 258.7x194 -> 252x168
    "qwen-vl-finetune": {(1280, 720): (280, 168), (1920, 1080): (280, 168), (640, 480): (252, 168)},
    # TRL: the processor as loaded, Qwen2.5-VL preprocessor_config.json 3136 / 12845056: rounding only
    "trl": {(1280, 720): (1288, 728), (1920, 1080): (1932, 1092), (640, 480): (644, 476)},
}


def expected_box(box, size, seen):
    (w, h), (sw, sh) = size, seen
    return [box[0] * sw / w, box[1] * sh / h, box[2] * sw / w, box[3] * sh / h]


def test_first_steps_written_from_source_give_the_issue_numbers():
    assert llamafactory_first_step(1280, 720) == (1024, 576)
    assert llamafactory_first_step(1920, 1080) == (1024, 576)
    assert llamafactory_first_step(640, 480) == (640, 480)
    # swift --max_pixels 500000: h = sqrt(500000 / 1.777...) = 530.33 -> 530, w = 942.8 -> 942
    assert swift_first_step(1280, 720, 500000) == (942, 530)


# ---- the exports ------------------------------------------------------------------------------------------
def make_dataset(tmp_path, sizes=SIZES):
    samples = [Sample(id=f"img{w}x{h}", image=str(tmp_path / f"img{w}x{h}.jpg"), width=w, height=h,
                      objects=[{"label": "strap", "bbox": box}]) for (w, h), box in sizes.items()]
    ds = tmp_path / "ds"
    ds.mkdir()
    write_samples(ds / "samples.jsonl", samples)
    return ds


def export(ds, out, *args):
    return CliRunner().invoke(app, ["data", "export", str(ds), "--to", "qwen2.5-vl", "--out", str(out), *args])


def boxes_of(text):
    body = text.split("```json\n", 1)[1].rsplit("```", 1)[0]
    return [item["bbox_2d"] for item in json.loads(body)]


def read_records(path):
    text = Path(path).read_text()
    return json.loads(text) if text.startswith("[") else [json.loads(ln) for ln in text.splitlines()]


def answer_text(rec):
    if "conversations" in rec:
        return rec["conversations"][-1]["value"]
    content = rec["messages"][-1]["content"]
    return content if isinstance(content, str) else "".join(p.get("text") or "" for p in content)


@pytest.mark.parametrize("trainer", sorted(SEEN))
def test_exported_qwen25_boxes_are_pixels_of_what_the_trainer_feeds_the_model(tmp_path, trainer):
    ds = make_dataset(tmp_path)
    out = tmp_path / "train.json"
    result = export(ds, out, "--for", trainer)
    assert result.exit_code == 0, result.output
    records = read_records(out)
    assert len(records) == 3
    for rec, (size, box) in zip(records, SIZES.items(), strict=True):
        [got] = boxes_of(answer_text(rec))
        want = expected_box(box, size, SEEN[trainer][size])
        assert all(abs(g - e) <= 1 for g, e in zip(got, want, strict=True)), (trainer, size, got, want)


def test_llamafactory_writes_the_issue_box_and_a_dataset_info_entry(tmp_path):
    ds = make_dataset(tmp_path, {(1280, 720): STRAP})
    out = tmp_path / "lf" / "jam_train.json"
    out.parent.mkdir()
    (out.parent / "dataset_info.json").write_text(json.dumps({"other": {"file_name": "x.json"}}))
    result = export(ds, out, "--for", "llamafactory")
    assert result.exit_code == 0, result.output
    assert "image_max_pixels: 589824" in result.output and "image_min_pixels: 1024" in result.output
    [rec] = json.loads(out.read_text())  # sharegpt: a JSON list of messages + images
    assert boxes_of(rec["messages"][-1]["content"]) == [[812, 52, 906, 546]]
    assert rec["messages"][0]["role"] == "user" and rec["messages"][0]["content"].count("<image>") == 1
    assert rec["images"] == [str(tmp_path / "img1280x720.jpg")]
    info = json.loads((out.parent / "dataset_info.json").read_text())
    assert info["other"] == {"file_name": "x.json"}  # other entries kept
    peer = json.loads((PEERS / "llamafactory" / "dataset_info.mllm_demo.json").read_text())["mllm_demo"]
    entry = info["jam_train"]
    assert entry["file_name"] == "jam_train.json" and entry["formatting"] == peer["formatting"]
    assert entry["columns"] == peer["columns"]
    assert {k: v for k, v in entry["tags"].items() if k in peer["tags"]} == peer["tags"]


def test_llamafactory_max_pixels_overrides_its_first_step(tmp_path):
    ds = make_dataset(tmp_path, {(1280, 720): STRAP})
    out = tmp_path / "lf.json"
    result = export(ds, out, "--for", "llamafactory", "--max-pixels", "262144")
    assert result.exit_code == 0, result.output
    assert "image_max_pixels: 262144" in result.output
    # 512*512: 1280x720 * sqrt(262144/921600) = 682.7x384 -> 682x384 -> round to 28: 672x392
    assert llamafactory_first_step(1280, 720, max_pixels=262144) == (682, 384)
    [rec] = read_records(out)
    [got] = boxes_of(rec["messages"][-1]["content"])
    want = expected_box(STRAP, (1280, 720), (672, 392))
    assert all(abs(g - e) <= 1 for g, e in zip(got, want, strict=True))


def test_2u1_is_a_json_list_llava_style_and_refuses_jsonl(tmp_path):
    ds = make_dataset(tmp_path, {(640, 480): SIZES[(640, 480)]})
    out = tmp_path / "2u1.json"
    result = export(ds, out, "--for", "2u1")
    assert result.exit_code == 0, result.output
    assert "--image_min_pixels 401408 --image_max_pixels 1003520" in result.output
    data = json.load(out.open())  # 2U1 src/dataset reads the file with json.load
    assert isinstance(data, list)
    assert data[0]["image"] == str(tmp_path / "img640x480.jpg")
    assert [t["from"] for t in data[0]["conversations"]] == ["human", "gpt"]
    assert data[0]["conversations"][0]["value"].startswith("<image>\n")
    bad = export(ds, tmp_path / "2u1.jsonl", "--for", "2u1")
    assert bad.exit_code == 2 and bad.output.count("error:") == 1 and "JSON list" in bad.output
    assert not (tmp_path / "2u1.jsonl").exists()


def test_qwen_vl_finetune_conversations_and_flags(tmp_path):
    ds = make_dataset(tmp_path, {(1280, 720): STRAP})
    out = tmp_path / "qvf.json"
    result = export(ds, out, "--for", "qwen-vl-finetune")
    assert result.exit_code == 0, result.output
    assert "--min_pixels 784 --max_pixels 50176" in result.output
    [rec] = json.loads(out.read_text())
    assert set(rec) >= {"image", "conversations"} and rec["conversations"][1]["from"] == "gpt"


def test_swift_grounding_uses_objects_in_real_pixels(tmp_path):
    ds = make_dataset(tmp_path, {(1280, 720): STRAP})
    out = tmp_path / "swift.jsonl"
    result = export(ds, out, "--for", "swift", "--max-pixels", "500000")
    assert result.exit_code == 0, result.output
    assert "--max_pixels 500000" in result.output
    [rec] = read_records(out)
    assert rec["objects"] == {"ref": ["strap"], "bbox": [[1003.0, 64.0, 1120.0, 668.0]], "bbox_type": "real"}
    answer = rec["messages"][-1]["content"]
    assert answer.count("<bbox>") == 1 and answer.count("<ref-object>") == 1 and "1003" not in answer
    assert rec["messages"][0]["content"].startswith("<image>") and rec["images"] == [str(tmp_path / "img1280x720.jpg")]


def test_trl_dataset_loads_with_image_parts_and_no_placeholder_text(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = make_dataset(tmp_path)
    out = tmp_path / "trl.jsonl"
    result = export(ds, out, "--for", "trl")
    assert result.exit_code == 0, result.output
    assert "min_pixels=3136, max_pixels=12845056" in result.output
    loaded = datasets.load_dataset("json", data_files=str(out), split="train")
    assert len(loaded) == 3 and set(loaded.column_names) == {"messages", "images"}
    for row in loaded:
        user, assistant = row["messages"]
        assert [p["type"] for p in user["content"]] == ["image", "text"]
        assert all("<image>" not in (p.get("text") or "") for m in row["messages"] for p in m["content"])
        assert assistant["role"] == "assistant" and assistant["content"][0]["type"] == "text"
        assert len(row["images"]) == 1


def test_for_plain_is_the_default_export(tmp_path):
    ds = make_dataset(tmp_path)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert export(ds, a).exit_code == 0
    assert export(ds, b, "--for", "plain").exit_code == 0
    assert a.read_bytes() == b.read_bytes()
    [got] = boxes_of(answer_text(read_records(a)[0]))  # the model's own budget: 1288x728
    want = expected_box(STRAP, (1280, 720), (1288, 728))
    assert all(abs(g - e) <= 1 for g, e in zip(got, want, strict=True))


def test_for_refused_on_coco(tmp_path):
    ds = make_dataset(tmp_path)
    result = CliRunner().invoke(app, ["data", "export", str(ds), "--to", "coco", "--out", str(tmp_path / "g.json"),
                                      "--for", "swift"])
    assert result.exit_code == 2 and result.output.count("error:") == 1


def test_trl_keeps_a_system_prompt_and_every_image_as_parts(tmp_path):
    datasets = pytest.importorskip("datasets")
    s = Sample(id="two", image=str(tmp_path / "a.jpg"), width=1280, height=720,
               qa=[{"question": "Compare the two belts.", "answer": "Same belt."}],
               meta={"system": "You inspect belts.", "images": [str(tmp_path / "b.jpg")]})
    ds = tmp_path / "ds"
    ds.mkdir()
    write_samples(ds / "samples.jsonl", [s])
    out = tmp_path / "trl.jsonl"
    result = export(ds, out, "--for", "trl")
    assert result.exit_code == 0, result.output
    [row] = datasets.load_dataset("json", data_files=str(out), split="train")
    system, user, _ = row["messages"]
    assert system["role"] == "system" and system["content"][0]["text"] == "You inspect belts."
    assert [p["type"] for p in user["content"]].count("image") == 2 == len(row["images"])
    assert "<image>" not in json.dumps(row["messages"])


@pytest.mark.parametrize(("family", "needs"), [("qwen2.5-vl", True), ("qwen3-vl", True), ("qwen2-vl", False)])
def test_swift_export_names_the_bbox_format_its_json_answers_need(family: str, needs: bool) -> None:
    # swift/template/templates/qwen.py: QWENVL_BBOX_FORMAT defaults to 'legacy', which fills <bbox>/<ref-object>
    # with Qwen2-VL box tokens (right for Qwen2-VL, wrong inside a Qwen2.5/3-VL JSON answer)
    from jamspotter.data.trainers import get_trainer

    _, line = get_trainer("swift").format(family)
    assert ("QWENVL_BBOX_FORMAT=new" in line) == needs
