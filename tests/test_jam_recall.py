"""Jam recall/precision as the picker needs them: class-agnostic across jam-causing classes, one-to-one.

Every expected number below is counted by hand from the boxes in the test (IoU of identical boxes is 1,
of [0,0,10,10] vs [0,0,10,4] is 0.4).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from jamspotter.data.records import BoxObject, Sample
from jamspotter.evaluate.detection import evaluate_detections


def S(sid: str, *objs: tuple) -> Sample:
    return Sample(id=sid, width=100, height=100,
                  objects=[BoxObject(label=o[0], bbox=o[1], score=o[2] if len(o) > 2 else None) for o in objs])


def jam(m: dict) -> tuple:
    return m["jam_recall"], m["jam_precision"], m["jam_recall_exact"], m["jam_precision_exact"]


def test_rope_called_hose_is_found_but_not_exact():
    m = evaluate_detections([S("a", ("rope", [0, 0, 10, 10]))], [S("a", ("hose", [0, 0, 10, 10]))],
                            map_backend="pycocotools")
    assert jam(m) == (1.0, 1.0, 0.0, 0.0)
    assert m["jam_counts"] == {"gt": 1, "pred": 1, "tp": 1, "tp_gt_exact": 0, "tp_pred_exact": 0}
    assert (m["tp"], m["fp"], m["fn"]) == (0, 1, 1)  # the all-class figures still need the class


def test_a_material_box_never_counts_as_a_jam_hit():
    # the rope is boxed perfectly but called cardboard (a material): the picker would leave it on the belt
    m = evaluate_detections([S("a", ("rope", [0, 0, 10, 10]))], [S("a", ("cardboard", [0, 0, 10, 10]))],
                            map_backend="pycocotools")
    assert jam(m) == (0.0, None, 0.0, None)
    assert m["jam_counts"] == {"gt": 1, "pred": 0, "tp": 0, "tp_gt_exact": 0, "tp_pred_exact": 0}
    # and a material GT box found by a jam prediction is a jam false positive, not a hit
    m = evaluate_detections([S("a", ("cardboard", [0, 0, 10, 10]))], [S("a", ("rope", [0, 0, 10, 10]))],
                            map_backend="pycocotools")
    assert jam(m) == (None, 0.0, None, 0.0)


def test_duplicates_count_once():
    # one rope, predicted twice on the same spot (hose 0.9, rope 0.8) and once as wire far away
    gt = [S("a", ("rope", [0, 0, 10, 10]))]
    pred = [S("a", ("hose", [0, 0, 10, 10], 0.9), ("rope", [0, 0, 10, 10], 0.8), ("wire", [50, 50, 60, 60], 0.7))]
    m = evaluate_detections(gt, pred, map_backend="pycocotools")
    # agnostic: the hose (higher score) takes the rope; the second box and the wire are false positives
    # exact: only the rope prediction matches
    assert jam(m) == (1.0, pytest.approx(1 / 3), 1.0, pytest.approx(1 / 3))
    assert m["jam_counts"] == {"gt": 1, "pred": 3, "tp": 1, "tp_gt_exact": 1, "tp_pred_exact": 1}


def test_one_to_one_over_several_objects_and_the_iou_threshold():
    gt = [S("a", ("rope", [0, 0, 10, 10]), ("hose", [20, 20, 30, 30]), ("film", [40, 40, 50, 50])),
          S("b", ("strap", [0, 0, 10, 10]))]
    pred = [S("a", ("hose", [0, 0, 10, 10]),  # rope found as hose
                ("rope", [20, 20, 30, 30]),  # hose found as rope
                ("film", [40, 40, 50, 44])),  # IoU 0.4 < 0.5: not found, a false positive
            S("b", ("strap", [0, 0, 10, 10]))]  # exact hit
    m = evaluate_detections(gt, pred, map_backend="pycocotools")
    assert jam(m) == (pytest.approx(3 / 4), pytest.approx(3 / 4), pytest.approx(1 / 4), pytest.approx(1 / 4))
    m = evaluate_detections(gt, pred, iou_threshold=0.4, map_backend="pycocotools")
    assert m["jam_recall"] == 1.0 and m["jam_recall_exact"] == pytest.approx(2 / 4)


def test_the_twin_reads_the_class_agnostic_recall(tmp_path):
    from jamspotter.cli import app
    from jamspotter.data.io import write_samples

    write_samples(tmp_path / "gt" / "samples.jsonl",
                  [S("a", ("rope", [0, 0, 10, 10])), S("b", ("hose", [0, 0, 10, 10]))])
    (tmp_path / "pred.jsonl").write_text(
        json.dumps({"id": "a", "objects": [{"label": "hose", "bbox": [0, 0, 10, 10]}]}) + "\n"
        + json.dumps({"id": "b", "objects": [{"label": "hose", "bbox": [0, 0, 10, 10]}]}) + "\n")
    runner = CliRunner()
    r = runner.invoke(app, ["eval", "detection", "--pred", str(tmp_path / "pred.jsonl"), "--gt", str(tmp_path / "gt"),
                            "--out", str(tmp_path / "report"), "--no-map", "--gallery", "0"])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert (m["jam_recall"], m["jam_recall_exact"]) == (1.0, 0.5)
    r = runner.invoke(app, ["line", "simulate", "--detector-metrics", str(tmp_path / "report" / "metrics.json"),
                            "--hours", "16", "--out", str(tmp_path / "twin")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "twin" / "simulation.json").read_text())["detector"]["recall"] == 1.0
