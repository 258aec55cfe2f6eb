"""Review regressions: re-parsing raw Qwen2.5-VL text uses the input size the model really saw."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jamspotter.data.records import Sample
from jamspotter.detections import Detections
from jamspotter.evaluate.predictions import load_predictions
from jamspotter.infer.inputs import prediction_record


def test_raw_qwen25_text_is_reparsed_against_the_recorded_input_size(tmp_path: Path) -> None:
    # A model fine-tuned with a small max_pixels saw a 448x252 input of a 1280x720 image and wrote pixels of it.
    text = '```json\n[{"bbox_2d": [112, 63, 224, 126], "label": "rope"}]\n```'
    result = Detections([], text=text, image_size=(1280, 720), input_size=(448, 252))
    record = prediction_record(result.to_sample(Sample(id="a", image="a.jpg", width=1280, height=720)))
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps(record) + "\n")
    gt = [Sample(id="a", image="a.jpg", width=1280, height=720)]
    (obj,) = load_predictions(pred, "detection", gt, tmp_path, family="qwen2.5-vl", raw=True)[0].objects
    assert obj.bbox == pytest.approx([320, 180, 640, 360])


def test_eval_taxonomy_overrides_the_flags_importers_stored() -> None:
    # Importers store jam_risk on every box (default taxonomy at import time); `eval detection --taxonomy`
    # must still decide for the labels it names, on both sides, or it changes no jam metric at all.
    from jamspotter.data.records import BoxObject
    from jamspotter.data.taxonomy import DEFAULT_TAXONOMY, Taxonomy
    from jamspotter.evaluate.detection import evaluate_detections

    def box(label: str, bbox: list[float]) -> BoxObject:
        return BoxObject(label=label, bbox=bbox, jam_risk=DEFAULT_TAXONOMY.jam_risk(label))

    objects = [box("bale wire", [0, 0, 10, 10]), box("rope", [20, 20, 30, 30])]
    gt = [Sample(id="a", width=100, height=100, objects=objects)]
    pred = [Sample(id="a", objects=[box("bale wire", [0, 0, 10, 10])])]
    m = evaluate_detections(gt, pred, taxonomy=Taxonomy({"bale wire": True}), map_backend="pycocotools")
    assert m["jam_counts"] == {"gt": 2, "pred": 1, "tp": 1, "tp_gt_exact": 1, "tp_pred_exact": 1}
    assert m["jam_recall"] == pytest.approx(0.5) and m["jam_precision"] == pytest.approx(1.0)
