"""Reading predictions files: shorthands, raw model text, image sizes from files, clear errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from jamspotter.data.records import BoxObject, Sample
from jamspotter.errors import DataError
from jamspotter.evaluate import evaluate_detections, load_predictions


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_shorthands_become_samples(tmp_path):
    cls = load_predictions(write(tmp_path / "c.jsonl", [{"id": 3, "label": "glass", "score": 0.7, "ms": 12}]),
                           "classification")
    assert cls[0].id == "3" and cls[0].label == "glass" and cls[0].meta == {"score": 0.7, "ms": 12}
    traj = load_predictions(write(tmp_path / "t.jsonl", [{"id": "a", "values": [[1, 2], [3, 4]]}]), "trajectory")
    assert traj[0].target.values == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(DataError, match=r"c2\.jsonl:1: classification predictions need a \"label\""):
        load_predictions(write(tmp_path / "c2.jsonl", [{"id": "a", "objects": []}]), "classification")
    with pytest.raises(DataError, match=r"d\.jsonl:2: .*\"id\""):
        load_predictions(write(tmp_path / "d.jsonl", [{"id": "a"}, {"objects": []}]))


def test_raw_text_image_size_from_file_or_counted(tmp_path):
    from jamspotter.formats import get_format

    Image.new("RGB", (200, 100)).save(tmp_path / "a.png")
    gt = [Sample(id="a", image="a.png", objects=[{"label": "rope", "bbox": [20, 10, 120, 60]}]),
          Sample(id="b", image="missing.png")]
    text = get_format("qwen3-vl").render_detection(gt[0].model_copy(update={"width": 200, "height": 100}))[1]
    path = write(tmp_path / "p.jsonl", [{"id": "a", "text": text}, {"id": "b", "text": text}])
    pred = load_predictions(path, "detection", gt, tmp_path, family="qwen3-vl")
    assert pred[0].objects[0].bbox == pytest.approx([20, 10, 120, 60], abs=0.2)  # size read from a.png
    assert pred[1].objects == [] and "image size unknown" in pred[1].meta["parse_problems"][0]
    m = evaluate_detections(gt, pred)
    assert m["tp"] == 1 and m["warnings"]["parse_problem"] == 1


def test_reads_what_jamspotter_infer_writes(tmp_path):
    """Lines from `jamspotter.infer.inputs.write_predictions`: boxes read as given, parse problems counted."""
    infer_inputs = pytest.importorskip("jamspotter.infer.inputs")

    gt = [Sample(id="a", image="a.png", width=64, height=48, objects=[{"label": "rope", "bbox": [4, 4, 30, 20]}])]
    box = BoxObject(label="rope", bbox=[4, 5, 30, 20], score=0.8)
    pred = gt[0].model_copy(update={"objects": [box],
                                    "meta": {"text": "[...]", "parse_problems": ["closed a truncated list"]}})
    path = tmp_path / "pred.jsonl"
    infer_inputs.write_predictions(path, [pred])
    loaded = load_predictions(path, "detection", gt)
    m = evaluate_detections(gt, loaded)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 0, 0) and m["score_source"] == "model"
    assert m["warnings"] == {"parse_problem": 1}
    assert loaded[0].meta["text"] == "[...]"
