"""`jamspotter eval ...`: reports on disk, counted warnings, one-line errors, raw model text via formats."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from jamspotter.cli import app
from jamspotter.data.io import write_samples
from jamspotter.data.records import Sample

runner = CliRunner()


@pytest.fixture()
def gt_dir(tmp_path):
    """Three 64x48 images (one missing on disk) with rope / cardboard boxes."""
    root = tmp_path / "gt"
    (root / "images").mkdir(parents=True)
    samples = []
    for i in range(3):
        if i < 2:
            Image.new("RGB", (64, 48), (90, 90, 90)).save(root / "images" / f"{i}.jpg")
        samples.append(Sample(id=f"img{i}", image=f"images/{i}.jpg", width=64, height=48, objects=[
            {"label": "rope", "bbox": [4, 4, 30, 20]}, {"label": "cardboard", "bbox": [34, 20, 60, 44]}]))
    write_samples(root / "samples.jsonl", samples)
    return root


def failed_with(r, text: str) -> bool:
    """A one-line user error: exit code 2 and an `error: ...` line naming `text`."""
    return r.exit_code == 2 and any(line.startswith("error: ") and text in line for line in r.output.splitlines())


def run_eval(task: str, pred, gt, out, *extra: str):
    return runner.invoke(app, ["eval", task, "--pred", str(pred), "--gt", str(gt), "--out", str(out), *extra])


def write_lines(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_eval_detection_writes_report(tmp_path, gt_dir):
    pred = write_lines(tmp_path / "pred.jsonl", [
        {"id": "img0", "objects": [{"label": "rope", "bbox": [4, 4, 30, 20], "score": 0.9},
                                   {"label": "cardboard", "bbox": [34, 20, 60, 44], "score": 0.8}]},
        {"id": "img1", "objects": [{"label": "rope", "bbox": [40, 0, 60, 10], "score": 0.7}]},
        {"id": "img2", "objects": [{"label": "rope", "bbox": [4, 4, 30, 20], "score": 0.6}]},
    ])
    out = tmp_path / "report"
    r = run_eval("detection", pred, gt_dir, out)
    assert r.exit_code == 0, r.output
    assert "jam recall" in r.output
    m = json.loads((out / "metrics.json").read_text())
    assert (m["tp"], m["fp"], m["fn"]) == (3, 1, 3)
    assert m["jam_recall"] == pytest.approx(2 / 3) and m["jam_precision"] == pytest.approx(2 / 3)
    assert m["warnings"] == {"gallery_missing_image": 1}  # img2 has an error and no image on disk
    for name in ("summary.md", "pr_curve.png", "per_class.png", "gallery.html"):
        assert (out / name).stat().st_size > 0, name
    assert len(list((out / "gallery").glob("*.jpg"))) == 1  # only img1 has errors and an image
    summary = (out / "summary.md").read_text()
    assert "COCO mAP@[.5:.95]" in summary and "gallery_missing_image" in summary
    assert not list(out.glob(".*.tmp"))


def test_eval_detection_malformed_line_is_one_line_error(tmp_path, gt_dir):
    pred = write_lines(tmp_path / "pred.jsonl", [{"id": "img0", "objects": []}, "{not json"])
    r = run_eval("detection", pred, gt_dir, tmp_path / "o")
    assert failed_with(r, "pred.jsonl:2: malformed JSON")
    bad_box = write_lines(tmp_path / "bad.jsonl", [{"id": "img0", "objects": [{"label": "rope", "bbox": [1, 2]}]}])
    r = run_eval("detection", bad_box, gt_dir, tmp_path / "o")
    assert failed_with(r, "bad.jsonl:1: objects.0.bbox")
    assert not (tmp_path / "o").exists()


def test_eval_error_stays_one_line_when_the_path_has_a_newline(tmp_path, gt_dir):
    r = run_eval("detection", tmp_path / "two\nlines.jsonl", gt_dir, tmp_path / "o")
    assert r.exit_code == 2 and r.output.endswith("two lines.jsonl: no such file\n"), r.output
    assert r.output.count("\n") == 1 and r.output.startswith("error: ") and not (tmp_path / "o").exists()


def test_eval_detection_raw_text_needs_family(tmp_path, gt_dir):
    pred = write_lines(tmp_path / "pred.jsonl", [{"id": "img0", "text": "[]"}])
    r = run_eval("detection", pred, gt_dir, tmp_path / "o")
    assert failed_with(r, "pass --family")


@pytest.mark.parametrize("family", ["qwen2-vl", "qwen2.5-vl", "qwen3-vl"])
def test_eval_detection_parses_raw_model_text(tmp_path, gt_dir, family):
    from jamspotter.data.io import read_samples
    from jamspotter.formats import get_format

    fmt = get_format(family)
    gt = read_samples(gt_dir)
    rows = [{"id": s.id, "text": fmt.render_detection(s)[1]} for s in gt[:2]]
    rows.append({"id": "img2", "text": "I see a rope at (oops"})  # unreadable model output
    pred = write_lines(tmp_path / "pred.jsonl", rows)
    out = tmp_path / "report"
    r = runner.invoke(app, ["eval", "detection", "--pred", str(pred), "--gt", str(gt_dir), "--out", str(out),
                            "--family", family, "--raw", "--gallery", "0"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert (m["tp"], m["fp"], m["fn"]) == (4, 0, 2)
    assert m["mean_iou"] > 0.9  # boxes survive the family's coordinate round trip
    assert m["warnings"].get("parse_problem", 0) >= 1


def test_eval_classification_and_trajectory(tmp_path):
    gt = tmp_path / "gt"
    write_samples(gt / "samples.jsonl", [
        Sample(id="a", label="glass", target={"kind": "trajectory", "values": [[1.0], [2.0]], "names": ["speed"]}),
        Sample(id="b", label="paper", target={"kind": "trajectory", "values": [[0.0], [0.0]], "names": ["speed"]}),
    ])
    cls = write_lines(tmp_path / "cls.jsonl", [{"id": "a", "label": "glass", "score": 0.9},
                                                {"id": "b", "label": "glass"}])
    r = run_eval("classification", cls, gt, tmp_path / "c")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert m["accuracy"] == 0.5 and (tmp_path / "c" / "confusion_matrix.png").is_file()
    traj = write_lines(tmp_path / "traj.jsonl", [{"id": "a", "values": [[1.0], [4.0]]},
                                                  {"id": "b", "values": [[1.0], [-1.0]]}])
    r = run_eval("trajectory", traj, gt, tmp_path / "t")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert m["per_component"]["speed"] == {"mse": pytest.approx(6 / 4), "mae": pytest.approx(1.0)}
    assert (tmp_path / "t" / "sequences.png").is_file()
