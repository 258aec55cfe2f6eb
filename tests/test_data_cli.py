"""`jamspotter data ...`: bad input gives one line and exit code 2 with nothing written; the happy paths."""

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from jamspotter.cli import app
from jamspotter.data import read_samples

runner = CliRunner()


def make_image(path, size=(64, 48)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 90, 90)).save(path)


def coco_doc(bbox=(1, 2, 10, 20), file_name="a.png", category_id=1):
    return {"images": [{"id": 1, "file_name": file_name, "width": 64, "height": 48}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": category_id, "bbox": list(bbox)}],
            "categories": [{"id": 1, "name": "rope"}, {"id": 2, "name": "glass"}]}


def yolo_dir(tmp_path, lines):
    make_image(tmp_path / "y" / "images" / "img3.png")
    (tmp_path / "y" / "labels").mkdir()
    (tmp_path / "y" / "labels" / "img3.txt").write_text(lines)
    (tmp_path / "y" / "data.yaml").write_text("train: images\nnames: [rope, glass]\n")
    return tmp_path / "y"


def bad_coco(tmp_path, text):
    make_image(tmp_path / "a.png")
    (tmp_path / "c.json").write_text(text)
    return tmp_path / "c.json"


CASES = {
    "malformed json": ("coco", lambda t: bad_coco(t, '{"images": [\n  {"id": 1,}\n]}'),
                       r"c.json:2: malformed JSON"),
    "x2 < x1": ("coco", lambda t: bad_coco(t, json.dumps(coco_doc(bbox=(30, 2, -10, 20)))),
                r"c.json:images[0]: annotations[0] (id 1): x2 < x1 in box [30, 2, 20, 22]"),
    "unknown category": ("coco", lambda t: bad_coco(t, json.dumps(coco_doc(category_id=5))),
                         r"c.json:images[0]: annotations[0] (id 1): unknown category_id 5"),
    "missing image": ("coco", lambda t: bad_coco(t, json.dumps(coco_doc(file_name="nope.png"))),
                      r"c.json:images[0]: image"),
    "malformed txt line": ("yolo", lambda t: yolo_dir(t, "0 0.5 0.5 0.1 0.1\n0 0.5 0.5\n"),
                           r"labels/img3.txt:2: expected 'class cx cy w h' (or a polygon), got 3 values"),
    "unknown class id": ("yolo", lambda t: yolo_dir(t, "3 0.5 0.5 0.1 0.1\n"),
                         r"labels/img3.txt:1: unknown class id 3 (data.yaml has 2 names)"),
    "malformed xml": ("voc", lambda t: (make_image(t / "a.png"), (t / "a.xml").write_text("<annotation><size>"),
                                        t)[-1], r"a.xml: malformed XML (line 1"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, case):
    kind, build, expected = CASES[case]
    (tmp_path / "in").mkdir()
    src = build(tmp_path / "in")
    out = tmp_path / "out"
    r = runner.invoke(app, ["data", "import", "--from", kind, str(src), "--out", str(out)])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], r.output
    assert not out.exists()


def test_skip_invalid_imports_the_rest_and_reports(tmp_path):
    make_image(tmp_path / "a.png")
    lines = [{"image_path": "a.png", "object": {"rope": [[1, 1, 9, 9]]}},
             {"image_path": "a.png", "object": {"rope": [[9, 1, 1, 9]]}},
             {"image_path": "missing.png", "object": {}}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + "{oops\n")
    r = runner.invoke(app, ["data", "import", "--from", "detjson", str(tmp_path / "d.jsonl"), "--out",
                            str(tmp_path / "out"), "--skip-invalid"])
    assert r.exit_code == 2 and "d.jsonl:4: malformed JSON" in r.output  # a broken file is never skipped
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    r = runner.invoke(app, ["data", "import", "--from", "detjson", str(tmp_path / "d.jsonl"), "--out",
                            str(tmp_path / "out"), "--skip-invalid"])
    assert r.exit_code == 0, r.output
    assert "imported 1 samples" in r.output and "skipped 2 entries" in r.output
    assert "d.jsonl:2: object 'rope'[0]: x2 < x1" in r.output and "d.jsonl:3: image" in r.output
    (s,) = read_samples(tmp_path / "out")
    assert s.image == str((tmp_path / "a.png").resolve())  # outside --out: stored absolute


def test_allow_missing_images_flags_records(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps(coco_doc(file_name="gone.png")))
    (tmp_path / "tax.yaml").write_text("rope: false\n")
    r = runner.invoke(app, ["data", "import", "--from", "coco", str(tmp_path / "c.json"), "--out",
                            str(tmp_path / "out"), "--allow-missing-images", "--taxonomy", str(tmp_path / "tax.yaml")])
    assert r.exit_code == 0, r.output
    (s,) = read_samples(tmp_path / "out")
    assert s.flags == ["missing_image"] and s.objects[0].bbox == [1, 2, 11, 22]
    assert s.objects[0].jam_risk is False  # the --taxonomy override wins over the default (rope = jam risk)
    assert json.loads((tmp_path / "out" / "classes.json").read_text())[1] == {"id": 2, "name": "glass"}


def test_import_split_stats_validate_export(tmp_path):
    ds = tmp_path / "ds"
    for i in range(10):
        make_image(ds / "imgs" / f"{i}.png")
    recs = [{"image_path": f"imgs/{i}.png", "object": {"rope" if i % 2 else "glass": [[1, 1, 20, 20 + i]]}}
            for i in range(10)]
    (tmp_path / "d.json").write_text(json.dumps(recs))
    r = runner.invoke(app, ["data", "import", "--from", "detjson", str(tmp_path / "d.json"), "--out", str(ds),
                            "--images", str(ds)])
    assert r.exit_code == 2 and "own input" in r.output  # never written into its own input
    images, ds = ds, tmp_path / "dataset"
    r = runner.invoke(app, ["data", "import", "--from", "detjson", str(tmp_path / "d.json"), "--out", str(ds),
                            "--images", str(images)])
    assert r.exit_code == 0, r.output
    assert read_samples(ds)[0].image == str(images / "imgs" / "0.png")  # outside --out: stored absolute

    r = runner.invoke(app, ["data", "split", str(ds), "--ratios", "0.6,0.2,0.2", "--seed", "1"])
    assert r.exit_code == 0 and "train 6, val 2, test 2" in r.output, r.output
    r = runner.invoke(app, ["data", "split", str(ds), "--ratios", "0.6,0.6"])
    assert r.exit_code == 2 and r.output.startswith("error: --ratios")

    r = runner.invoke(app, ["data", "stats", str(ds)])
    assert r.exit_code == 0 and "jam-risk objects" in r.output and "50.0%" in r.output, r.output
    r = runner.invoke(app, ["data", "stats", str(ds), "--json"])
    assert json.loads(r.output)["classes"] == {"glass": 5, "rope": 5}

    r = runner.invoke(app, ["data", "validate", str(ds)])
    assert r.exit_code == 0 and "no problems" in r.output, r.output
    (images / "imgs" / "3.png").unlink()
    r = runner.invoke(app, ["data", "validate", str(ds)])
    assert r.exit_code == 2 and "3.png not found" in r.output and "error: " in r.output

    r = runner.invoke(app, ["data", "export", "--to", "coco", str(ds), "--out", str(tmp_path / "val.json"),
                            "--split", "val"])
    assert r.exit_code == 0, r.output
    assert len(json.loads((tmp_path / "val.json").read_text())["images"]) == 2
    r = runner.invoke(app, ["data", "export", "--to", "yolo", str(ds), "--out", str(tmp_path / "yolo")])
    assert r.exit_code == 0 and (tmp_path / "yolo" / "data.yaml").is_file(), r.output
    r = runner.invoke(app, ["data", "export", "--to", "coco", str(ds), "--out", str(tmp_path / "x.json"),
                            "--split", "nope"])
    assert r.exit_code == 2 and "no samples with split 'nope'" in r.output


@pytest.mark.parametrize("to, family, key", [("qwen2.5-vl", None, "messages"), ("conversations", "qwen2-vl",
                                                                                "conversations")])
def test_chat_export_with_real_formats(tmp_path, to, family, key):
    pytest.importorskip("jamspotter.formats").get_format("qwen2.5-vl")
    make_image(tmp_path / "ds" / "a.png", (640, 480))
    (tmp_path / "d.json").write_text(json.dumps([{"image_path": "a.png", "object": {"rope": [[10, 20, 300, 200]]}}]))
    assert runner.invoke(app, ["data", "import", "--from", "detjson", str(tmp_path / "d.json"), "--out",
                               str(tmp_path / "dj"), "--images", str(tmp_path / "ds")]).exit_code == 0
    args = ["data", "export", "--to", to, str(tmp_path / "dj"), "--out", str(tmp_path / "ds" / "train.json")]
    r = runner.invoke(app, args + (["--family", family] if family else []))
    assert r.exit_code == 0, r.output
    (rec,) = json.loads((tmp_path / "ds" / "train.json").read_text())
    turns = rec[key]
    first = turns[0]["content"] if key == "messages" else turns[0]["value"]
    answer = turns[1]["content"] if key == "messages" else turns[1]["value"]
    assert first.startswith("<image>") and first.count("<image>") == 1
    assert "rope" in answer and "<image>" not in answer
    if family == "qwen2-vl":
        assert "<|box_start|>" in answer
    else:
        assert "bbox_2d" in answer and rec["images"] == [str(tmp_path / "ds" / "a.png")]
    if to.startswith("qwen"):
        r = runner.invoke(app, args[:-2] + ["--out", str(tmp_path / "x.json"), "--family", "qwen3-vl"])
        assert r.exit_code == 2 and "already names the family" in r.output


def test_qwen25_chat_export_uses_the_trainers_pixel_budget(tmp_path):
    # Qwen2.5-VL boxes are pixels of the resized input: a smaller max_pixels must shrink them accordingly
    make_image(tmp_path / "ds" / "a.png", (1280, 960))
    (tmp_path / "d.json").write_text(json.dumps([{"image_path": "a.png", "object": {"rope": [[640, 480, 1280, 960]]}}]))
    assert runner.invoke(app, ["data", "import", "--from", "detjson", str(tmp_path / "d.json"), "--out",
                               str(tmp_path / "dj"), "--images", str(tmp_path / "ds")]).exit_code == 0
    boxes = {}
    for name, extra in (("full", []), ("small", ["--max-pixels", str(640 * 480)])):
        out = tmp_path / f"{name}.json"
        r = runner.invoke(app, ["data", "export", "--to", "qwen2.5-vl", str(tmp_path / "dj"), "--out", str(out),
                                *extra])
        assert r.exit_code == 0, r.output
        answer = json.loads(out.read_text())[0]["messages"][1]["content"]
        boxes[name] = json.loads(answer.split("```json")[1].split("```")[0])[0]["bbox_2d"]
    assert boxes["full"] == [644, 476, 1288, 952]  # 1280x960 -> smart_resize 1288x952
    assert boxes["small"] == [308, 238, 616, 476]  # max 640*480 pixels -> 616x476
