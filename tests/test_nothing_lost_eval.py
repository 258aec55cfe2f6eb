"""Issue 11 on the eval side: NaN/Inf refused at the border, strict JSON reports, the output policy for report
folders, inverted boxes in the gallery, and file modes that honour the umask."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import modes
from PIL import Image
from typer.testing import CliRunner

from jamspotter.cli import app
from jamspotter.data.io import write_samples
from jamspotter.data.records import BoxObject, Sample

runner = CliRunner()


def strict_json(path: Path) -> object:
    """Parse as strict JSON: a bare NaN/Infinity fails."""
    def refuse(name: str) -> None:
        raise AssertionError(f"{path}: bare {name} in JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def one_error_line(r, text: str) -> bool:
    lines = r.output.splitlines()
    return r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0]


@pytest.fixture()
def gt_dir(tmp_path: Path) -> Path:
    root = tmp_path / "gt"
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (64, 48), (90, 90, 90)).save(root / "images" / "0.png")
    write_samples(root / "samples.jsonl", [Sample(id="img0", image="images/0.png", width=64, height=48, objects=[
        BoxObject(label="rope", bbox=[4, 4, 30, 20]), BoxObject(label="cardboard", bbox=[34, 20, 60, 44])])])
    return root


def eval_det(pred: Path, gt: Path, out: Path, *extra: str):
    return runner.invoke(app, ["eval", "detection", "--pred", str(pred), "--gt", str(gt), "--out", str(out), *extra])


@pytest.mark.parametrize("backend", ["pycocotools", "faster"])
@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_scores_are_one_line_errors(tmp_path, gt_dir, backend, bad):
    if backend == "faster":
        pytest.importorskip("faster_coco_eval")
    pred = tmp_path / "pred.jsonl"
    line = '{"id": "img0", "objects": [{"label": "rope", "bbox": [4, 4, 30, 20], "score": SCORE}]}'
    pred.write_text('{"id": "img0", "objects": []}\n' + line.replace("SCORE", bad) + "\n")
    r = eval_det(pred, gt_dir, tmp_path / "report", "--map-backend", backend)
    assert one_error_line(r, "pred.jsonl:2: non-finite number"), r.output
    assert not (tmp_path / "report").exists()


def test_non_finite_boxes_and_values_are_refused(tmp_path, gt_dir):
    pred = tmp_path / "pred.jsonl"
    pred.write_text('{"id": "img0", "objects": [{"label": "rope", "bbox": [4, NaN, 30, 20]}]}\n')
    assert one_error_line(eval_det(pred, gt_dir, tmp_path / "r"), "pred.jsonl:1: non-finite number NaN")
    traj = tmp_path / "traj.jsonl"
    traj.write_text('{"id": "img0", "values": [[1.0], [Infinity]]}\n')
    r = runner.invoke(app, ["eval", "trajectory", "--pred", str(traj), "--gt", str(gt_dir),
                            "--out", str(tmp_path / "t")])
    assert one_error_line(r, "traj.jsonl:1: non-finite number Infinity")


def test_the_evaluator_refuses_nan_scores_given_in_python():
    from jamspotter.errors import DataError
    from jamspotter.evaluate.detection import evaluate_detections

    gt = [Sample(id="a", width=10, height=10, objects=[BoxObject(label="rope", bbox=[0, 0, 5, 5])])]
    pred = [Sample(id="a", objects=[BoxObject(label="rope", bbox=[0, 0, 5, 5], score=float("nan"))])]
    with pytest.raises(DataError, match="prediction for a: score nan"):
        evaluate_detections(gt, pred, map_backend="pycocotools")


def test_write_json_is_strict(tmp_path):
    from jamspotter.data.io import write_json

    write_json(tmp_path / "m.json", {"a": float("nan"), "b": [1.0, float("inf")], "c": (float("-inf"), 2)})
    assert strict_json(tmp_path / "m.json") == {"a": None, "b": [1.0, None], "c": [None, 2]}


def test_metrics_json_never_holds_bare_nan(tmp_path):
    # a NaN in the ground truth's target (a dataset, not a prediction) makes the error undefined: null
    gt = tmp_path / "gt.jsonl"
    gt.write_text('{"id": "a", "target": {"kind": "trajectory", "values": [[NaN], [1.0]]}}\n')
    traj = tmp_path / "traj.jsonl"
    traj.write_text('{"id": "a", "values": [[1.0], [1.0]]}\n')
    r = runner.invoke(app, ["eval", "trajectory", "--pred", str(traj), "--gt", str(gt), "--out", str(tmp_path / "t")])
    assert r.exit_code == 0, r.output
    m = strict_json(tmp_path / "t" / "metrics.json")
    assert m["mse"] is None and m["mae"] is None


def test_inverted_predicted_box_is_drawn_normalised(tmp_path, gt_dir):
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"id": "img0", "objects": [{"label": "wire", "bbox": [60, 40, 40, 30], "score": 0.9}]})
                    + "\n")
    r = eval_det(pred, gt_dir, tmp_path / "report")
    assert r.exit_code == 0, r.output
    m = strict_json(tmp_path / "report" / "metrics.json")
    assert m["warnings"]["prediction_box_without_area"] == 1 and (m["tp"], m["fp"]) == (0, 1)
    [card] = list((tmp_path / "report" / "gallery").glob("*.jpg"))
    with Image.open(card) as im:  # the orange (255, 150, 0) outline lies on the box's top edge y=30, x=40..60
        top = im.convert("RGB").getpixel((50, 30))
    assert top[0] > 200 and 100 < top[1] < 200 and top[2] < 120  # orange, not grey, red or green


def test_report_folder_follows_the_output_policy(tmp_path, gt_dir, monkeypatch):
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"id": "img0", "objects": [{"label": "rope", "bbox": [4, 4, 30, 20]}]}) + "\n")
    out = tmp_path / "report"
    assert eval_det(pred, gt_dir, out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    r = eval_det(pred, gt_dir, out)
    assert one_error_line(r, "pass --overwrite")
    # a failure while writing the report leaves the earlier report exactly as it was, and no staging folder
    import jamspotter.evaluate.report as report

    def broken(*args, **kwargs):
        raise RuntimeError("disk trouble")

    monkeypatch.setattr(report, "error_gallery", broken)
    r = eval_det(pred, gt_dir, out, "--overwrite")
    assert r.exit_code != 0 and isinstance(r.exception, RuntimeError)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name in before} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    monkeypatch.undo()
    (out / "notes.md").write_text("mine")  # added to the report since: never deleted by --overwrite
    assert one_error_line(eval_det(pred, gt_dir, out, "--overwrite"), "notes.md")
    (out / "notes.md").unlink()
    assert eval_det(pred, gt_dir, out, "--overwrite", "--gallery", "0").exit_code == 0
    assert eval_det(pred, gt_dir, tmp_path / "fresh", "--gallery", "0").exit_code == 0
    files = {p.relative_to(out) for p in out.rglob("*")}
    assert files == {p.relative_to(tmp_path / "fresh") for p in (tmp_path / "fresh").rglob("*")}  # nothing stale
    # never into its own input, nor into a folder jamspotter did not write
    assert one_error_line(eval_det(pred, gt_dir, gt_dir, "--overwrite"), "own input")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert one_error_line(eval_det(pred, gt_dir, foreign, "--overwrite"), "did not write")
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_report_files_honour_the_umask(tmp_path, gt_dir, umask_027):
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"id": "img0", "objects": [{"label": "wire", "bbox": [1, 1, 9, 9], "score": 0.5}]})
                    + "\n")
    assert eval_det(pred, gt_dir, tmp_path / "report").exit_code == 0
    assert (tmp_path / "report" / "gallery").is_dir()
    assert modes(tmp_path / "report") == {("dir", 0o750), ("file", 0o640)}
