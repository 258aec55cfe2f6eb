"""Exporters (COCO via pycocotools, YOLO folder, chat files with a fake format), splits, stats, HF datasets."""

import json
from collections import Counter

import pytest
import yaml
from PIL import Image

from jamspotter.data import Sample
from jamspotter.data.exporters import export_chat, export_coco, export_yolo
from jamspotter.data.splits import assign_splits, parse_ratios, stratum
from jamspotter.data.stats import dataset_stats, print_stats
from jamspotter.data.validate import check_box, validate_samples
from jamspotter.errors import DataError, OutputError


def sample(i, objects=(), **kw):
    return Sample(id=f"s{i}", image=f"images/s{i}.png", width=64, height=48,
                  objects=[{"label": lb, "bbox": b, "jam_risk": lb == "rope"} for lb, b in objects], **kw)


class FakeFormat:
    """Stands in for jamspotter.formats: renders turns without any box grammar."""

    def render_turns(self, s):
        if s.id == "empty":
            return []
        return [(f"Find items in {s.id}.", f"{len(s.objects)} items"), ("Jam risk?", "yes")]


# ---- COCO --------------------------------------------------------------------------------------
def test_coco_export_is_read_by_pycocotools(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    samples = [sample(0, [("rope", [1, 2, 21, 32]), ("glass", [30, 5, 60, 40])]),
               sample(1, [("rope", [0, 0, 64, 48])]), sample(2)]
    samples[0].objects[1].polygon = [[30, 5, 60, 5, 60, 40]]
    export_coco(samples, tmp_path / "gt.json", root=tmp_path)
    doc = json.loads((tmp_path / "gt.json").read_text())
    assert [(c["id"], c["name"]) for c in doc["categories"]] == [(1, "glass"), (2, "rope")]
    first = doc["annotations"][0]
    assert first["bbox"] == [1, 2, 20, 30] and first["area"] == 600 and "segmentation" not in first
    assert doc["annotations"][1]["area"] == pytest.approx(30 * 35 / 2)
    assert doc["images"][0]["file_name"] == "images/s0.png"
    gt = COCO(str(tmp_path / "gt.json"))
    dets = gt.loadRes([{**a, "score": 1.0} for a in doc["annotations"]])
    ev = COCOeval(gt, dets, "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_coco_export_keeps_given_ids_and_needs_sizes(tmp_path):
    export_coco([sample(0, [("rope", [1, 1, 5, 5]), ("zip tie", [1, 1, 5, 5])])], tmp_path / "a.json",
                classes=[{"id": 0, "name": "rope"}, {"id": 4, "name": "wire"}])
    cats = json.loads((tmp_path / "a.json").read_text())["categories"]
    assert [(c["id"], c["name"]) for c in cats] == [(0, "rope"), (4, "wire"), (5, "zip tie")]
    with pytest.raises(DataError, match="s9: COCO needs width and height"):
        export_coco([Sample(id="s9", image="x.png")], tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()


# ---- YOLO --------------------------------------------------------------------------------------
def test_yolo_export_layout_and_refuses_foreign_folder(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (64, 48)).save(tmp_path / "images" / "s0.png")
    samples = [sample(0, [("rope", [16, 12, 48, 36])], split="val"), sample(1, split="train"),
               Sample(id="clip", video="c.mp4", fps=5)]
    Image.new("RGB", (64, 48)).save(tmp_path / "images" / "s1.png")
    report = export_yolo(samples, tmp_path / "yolo", root=tmp_path)
    assert (report.written, report.skipped, report.reasons) == (2, 1, ("clip: a clip, not an image",))
    data = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert data["names"] == {0: "rope"} and data["val"] == "images/val" and data["train"] == "images/train"
    assert (tmp_path / "yolo" / "labels" / "train" / "s1.txt").read_text() == ""
    assert (tmp_path / "yolo" / "labels" / "val" / "s0.txt").read_text() == "0 0.5 0.5 0.5 0.5\n"
    assert (tmp_path / "yolo" / "images" / "val" / "s0.png").resolve() == (tmp_path / "images" / "s0.png")
    with pytest.raises(OutputError, match="pass --overwrite"):
        export_yolo(samples[:1], tmp_path / "yolo", root=tmp_path)
    export_yolo(samples[:1], tmp_path / "yolo", root=tmp_path, overwrite=True)  # replaces the earlier export
    assert not (tmp_path / "yolo" / "labels" / "train").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="jamspotter did not write"):
        export_yolo(samples, tmp_path / "other", overwrite=True)
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"


# ---- chat files --------------------------------------------------------------------------------
def test_chat_exports_put_the_placeholder_before_the_first_turn(tmp_path):
    samples = [sample(0, [("rope", [1, 1, 5, 5])]), Sample(id="clip", video="/data/c.mp4", fps=10),
               Sample(id="empty", image="x.png"), Sample(id="frames", frames=["a.png"])]
    report = export_chat(samples, FakeFormat(), tmp_path / "llava.json", layout="conversations", root=tmp_path,
                         relative_paths=True)
    assert (report.written, report.skipped) == (2, 2)
    recs = json.loads((tmp_path / "llava.json").read_text())
    assert recs[0] == {"id": "s0", "image": "images/s0.png", "conversations": [
        {"from": "human", "value": "<image>\nFind items in s0."}, {"from": "gpt", "value": "1 items"},
        {"from": "human", "value": "Jam risk?"}, {"from": "gpt", "value": "yes"}]}
    assert recs[1]["video"] == "/data/c.mp4" and recs[1]["conversations"][0]["value"].startswith("<video>\n")

    export_chat(samples[:2], FakeFormat(), tmp_path / "sft.jsonl", layout="messages", root=tmp_path,
                relative_paths=True)
    lines = [json.loads(ln) for ln in (tmp_path / "sft.jsonl").read_text().splitlines()]
    assert lines[0] == {"messages": [
        {"role": "user", "content": "<image>Find items in s0."}, {"role": "assistant", "content": "1 items"},
        {"role": "user", "content": "Jam risk?"}, {"role": "assistant", "content": "yes"}],
        "images": ["images/s0.png"]}
    assert lines[1]["videos"] == ["/data/c.mp4"] and lines[1]["messages"][0]["content"].startswith("<video>")
    export_chat(samples[:1], FakeFormat(), tmp_path / "abs.jsonl", root=tmp_path)  # default: absolute paths
    assert json.loads((tmp_path / "abs.jsonl").read_text())["images"] == [str(tmp_path / "images" / "s0.png")]


# ---- splits ------------------------------------------------------------------------------------
def test_splits_are_deterministic_and_stratified():
    samples = [Sample(id=f"g{i}", label="glass") for i in range(50)]
    samples += [sample(i, [("rope", [1, 1, 5, 5]), ("rope", [2, 2, 6, 6]), ("glass", [0, 0, 9, 9])])
                for i in range(20)]
    a = assign_splits(samples, (0.8, 0.1, 0.1), seed=3)
    assert a == assign_splits(samples, (0.8, 0.1, 0.1), seed=3)
    assert a != assign_splits(samples, (0.8, 0.1, 0.1), seed=4)
    assert [s.id for s in a] == [s.id for s in samples]
    by_class = Counter((s.label or "rope", s.split) for s in a)
    assert by_class == {("glass", "train"): 40, ("glass", "val"): 5, ("glass", "test"): 5,
                        ("rope", "train"): 16, ("rope", "val"): 2, ("rope", "test"): 2}
    assert stratum(samples[-1], "jam") == "rope" and stratum(samples[0], "jam") == "(no jam)"
    assert Counter(s.split for s in assign_splits(samples[:7], (0.5, 0.5))) == {"train": 4, "val": 3}
    singletons = [Sample(id=str(i), label=f"class {i}") for i in range(10)]  # tiny strata still fill every split
    assert Counter(s.split for s in assign_splits(singletons, (0.6, 0.2, 0.2))) == {"train": 6, "val": 2, "test": 2}
    with pytest.raises(ValueError):
        parse_ratios("0.8,0.3")


# ---- stats -------------------------------------------------------------------------------------
def test_stats_numbers(capsys):
    samples = [sample(0, [("rope", [0, 0, 10, 10]), ("glass", [0, 0, 40, 40])]), sample(1, [("rope", [0, 0, 64, 48])]),
               Sample(id="c", label="glass", split="val")]
    st = dataset_stats(samples)
    assert st["classes"] == {"rope": 2, "glass": 1} and st["jam_classes"] == ["rope"]
    assert st["box_sizes"] == {"small": 1, "medium": 2, "large": 0}
    assert st["boxes_per_image"] == {"0": 1, "1": 1, "2": 1}
    assert st["jam_object_share"] == pytest.approx(2 / 3) and st["jam_image_share"] == pytest.approx(2 / 3)
    assert st["box_side_histogram"]["0-16"] == 1 and st["box_side_histogram"]["32-64"] == 2
    assert st["splits"] == {"(none)": 2, "val": 1}
    print_stats(st)
    out = capsys.readouterr().out
    assert "box sizes (COCO areas)" in out and "rope" in out and "66.7%" in out


# ---- validation --------------------------------------------------------------------------------
def test_validate_samples(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (64, 48)).save(tmp_path / "images" / "s0.png")
    Image.new("RGB", (60, 48)).save(tmp_path / "images" / "s1.png")
    good, wrong_size = sample(0, [("rope", [0, 0, 64, 48])]), sample(1)
    outside = sample(2, [("rope", [10, 10, 90, 20])], flags=["missing_image"])
    tiny = sample(3, [("rope", [-0.5, 0, 10, 10])], flags=["missing_image"])
    problems = validate_samples([good, wrong_size, outside, tiny, sample(4)], tmp_path)
    assert len(problems) == 4
    assert "s1" in problems[0] and "recorded size 64x48" in problems[0]
    assert "objects[0]: box [10, 10, 90, 20] lies outside" in problems[1]
    assert "overshoots the image slightly" in problems[2]
    assert "s4" in problems[3] and "not found" in problems[3]
    assert validate_samples([good], tmp_path) == []
    assert check_box([-1, 0, 10, 10], 64, 48) == ([0, 0, 10, 10], None)
