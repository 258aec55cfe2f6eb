"""COCO mAP backends: faster-coco-eval gives pycocotools' numbers on every compared case; choosing a backend.

Equality is checked to 1e-9 on all 12 COCO stats (mAP, mAP@.5, mAP@.75, by area, mAR@1/10/100, mAR by area) and
on per-class AP / AP50, against pycocotools run directly on COCO json files (the reference) and against our
pycocotools backend on the same in-memory data.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from test_evaluate_cli import failed_with, gt_dir, run_eval, write_lines  # noqa: F401 - gt_dir is a fixture
from test_evaluate_detection import (
    HAND_DT,
    HAND_GT,
    S,
    _coco_direct,
    _random_coco,
    _samples_from_coco,
    jittered_detections,
    pycocotools_eval,
)

from jamspotter.data.boxes import xywh_to_xyxy
from jamspotter.data.records import Sample
from jamspotter.errors import JamspotterError
from jamspotter.evaluate import coco as coco_mod
from jamspotter.evaluate import evaluate_detections
from jamspotter.evaluate.coco import STAT_NAMES, faster_available, resolve_map_backend

needs_faster = pytest.mark.skipif(not faster_available(), reason="faster-coco-eval is not installed")
BACKENDS = [pytest.param("faster", marks=needs_faster), "pycocotools"]
TOL = 1e-9


def _stats(m: dict) -> list[float]:
    return [-1.0 if m[k] is None else m[k] for k in STAT_NAMES]  # -1: COCOeval's "undefined"


def _ap(p: np.ndarray) -> float | None:
    return float(p[p > -1].mean()) if (p > -1).any() else None


def assert_matches_cocoeval(m: dict, ev, names: dict[int, str]) -> None:
    """Our metrics `m` equal a directly run COCOeval `ev`: all 12 stats and per-class AP / AP50 (cat id -> label)."""
    assert _stats(m) == pytest.approx(list(ev.stats), abs=TOL)
    precision = ev.eval["precision"]
    checked = 0
    for k, cat in enumerate(ev.params.catIds):
        if names[cat] not in m["per_class"]:  # a category with neither GT nor detections in this subset
            assert (precision[:, :, k] == -1).all()
            continue
        ours = m["per_class"][names[cat]]
        for key, p in (("ap", precision[:, :, k, 0, -1]), ("ap50", precision[0, :, k, 0, -1])):
            want = _ap(p)
            assert ours[key] == (None if want is None else pytest.approx(want, abs=TOL)), (names[cat], key)
        checked += 1
    assert checked == len(m["per_class"])


def assert_same_map(a: dict, b: dict) -> None:
    """Two metric dicts carry the same COCO numbers (stats and per-class AP / AP50) to 1e-9."""
    assert _stats(a) == pytest.approx(_stats(b), abs=TOL)
    assert a["per_class"].keys() == b["per_class"].keys()
    for name, c in a["per_class"].items():
        for key in ("ap", "ap50"):
            want = b["per_class"][name][key]
            assert c[key] == (None if want is None else pytest.approx(want, abs=TOL)), (name, key)


# ---- against pycocotools run directly on COCO json files ----------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_scores", [True, False])
def test_hand_built_equals_pycocotools(tmp_path, backend, with_scores):
    dets = HAND_DT if with_scores else [{**d, "score": 1.0} for d in HAND_DT]
    ev = _coco_direct(tmp_path, HAND_GT, dets)
    gt, pred = _samples_from_coco(HAND_GT, HAND_DT, with_scores)
    m = evaluate_detections(gt, pred, map_backend=backend)
    assert m["map_backend"] == {"faster": "faster-coco-eval", "pycocotools": "pycocotools"}[backend]
    assert_matches_cocoeval(m, ev, {11: "rope", 5: "glass"})


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_equals_pycocotools(tmp_path, backend, seed):
    gt_json, dets = _random_coco(seed)
    ev = _coco_direct(tmp_path, gt_json, dets)
    gt, pred = _samples_from_coco(gt_json, dets)
    m = evaluate_detections(gt, pred, map_backend=backend)
    assert_matches_cocoeval(m, ev, {c["id"]: c["name"] for c in gt_json["categories"]})
    assert 0 < m["map"] < m["map50"] < 1


def _hard_coco(seed: int) -> tuple[dict, list[dict]]:
    """Integer boxes with tied scores (one decimal), an image with 130 detections (> maxDets 100), 1-pixel boxes."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for i in range(1, 25):
        images.append({"id": i, "width": 400, "height": 300})
        for _ in range(int(rng.integers(0, 9))):
            x, y = (int(v) for v in rng.integers(0, 300, 2))
            w, h = (int(v) for v in (rng.integers(1, 3, 2) if rng.random() < 0.2 else rng.integers(4, 120, 2)))
            cat = int(rng.integers(1, 4))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})
            for _ in range(int(rng.integers(0, 3))):  # 0-2 detections per object: misses and duplicates
                j = rng.integers(-4, 5, 4)
                dets.append({"image_id": i, "category_id": cat if rng.random() < 0.85 else int(rng.integers(1, 4)),
                             "bbox": [x + int(j[0]), y + int(j[1]), max(1, w + int(j[2])), max(1, h + int(j[3]))],
                             "score": round(float(rng.random()), 1)})
        for _ in range(130 if i == 5 else int(rng.integers(0, 3))):
            dets.append({"image_id": i, "category_id": int(rng.integers(1, 4)), "score": round(float(rng.random()), 1),
                         "bbox": [int(rng.integers(0, 360)), int(rng.integers(0, 260)), 40, 40]})
    cats = [{"id": 1, "name": "rope"}, {"id": 2, "name": "hose"}, {"id": 3, "name": "paper"}]
    return {"images": images, "annotations": anns, "categories": cats}, dets


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_ties_over_100_detections_and_tiny_boxes_equal_pycocotools(tmp_path, backend, seed):
    gt_json, dets = _hard_coco(seed)
    ev = _coco_direct(tmp_path, gt_json, dets)
    gt, pred = _samples_from_coco(gt_json, dets)
    m = evaluate_detections(gt, pred, map_backend=backend)
    assert m["warnings"]["over_100_predictions_in_image"] == 1
    assert_matches_cocoeval(m, ev, {c["id"]: c["name"] for c in gt_json["categories"]})


def test_taco_subset_equals_pycocotools_for_both_backends(shared_data, tmp_path):
    """300 real TACO images (ids from 0, 60 categories, polygon areas) read by pycocotools; both backends agree.

    The comparison is on area "all" (mAP, mAP@.5, mAR, per class): TACO's GT areas come from polygons and ours
    from boxes, so the by-area stats differ by design. TACO repeats two annotation ids: renumbered, as in
    test_evaluate_detection.
    """
    from pycocotools.coco import COCO

    data = json.loads((shared_data / "taco_annotations" / "annotations.json").read_text())
    for n, a in enumerate(data["annotations"], 1):
        a["id"] = n
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = data
        coco_gt.createIndex()
    img_ids = sorted(coco_gt.getImgIds())[:300]
    rng = np.random.default_rng(11)
    dets = jittered_detections(coco_gt, img_ids, rng, lambda r: int(r.integers(0, 3)))
    ev = pycocotools_eval(coco_gt, dets, img_ids)
    names = {c["id"]: c["name"] for c in coco_gt.loadCats(coco_gt.getCatIds())}
    assert len(set(names.values())) == len(names)
    gt = [Sample(id=str(i), objects=[{"label": names[a["category_id"]], "bbox": xywh_to_xyxy(a["bbox"])}
                                     for a in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[i]))]) for i in img_ids]
    by_img: dict[int, list[dict]] = {}
    for d in dets:
        by_img.setdefault(d["image_id"], []).append(d)
    pred = [Sample(id=str(i), objects=[{"label": names[d["category_id"]], "bbox": xywh_to_xyxy(d["bbox"]),
                                        "score": d["score"]} for d in by_img.get(i, [])]) for i in img_ids]
    results = {b: evaluate_detections(gt, pred, map_backend=b) for b in ("pycocotools", "faster")
               if b == "pycocotools" or faster_available()}
    for m in results.values():
        assert [m["map"], m["map50"], m["map75"], m["mar1"], m["mar10"], m["mar100"]] == pytest.approx(
            [ev.stats[i] for i in (0, 1, 2, 6, 7, 8)], abs=TOL)
        for k, cat in enumerate(ev.params.catIds):
            if names[cat] in m["per_class"]:
                want = _ap(ev.eval["precision"][:, :, k, 0, -1])
                assert m["per_class"][names[cat]]["ap"] == (None if want is None else pytest.approx(want, abs=TOL))
    if "faster" in results:
        assert_same_map(results["faster"], results["pycocotools"])  # by-area stats too: same areas in both
    assert 0.2 < results["pycocotools"]["map50"] < 0.95


# ---- empty and degenerate cases: the faster backend against the pycocotools backend ---------------------

EMPTY_CASES = {
    "empty predictions": ([S("a", ("rope", [0, 0, 10, 10]), ("glass", [50, 50, 60, 60]))], [S("a")]),
    "no prediction line": ([S("a", ("rope", [0, 0, 10, 10])), S("b", ("rope", [5, 5, 9, 9]))],
                           [S("a", ("rope", [0, 0, 10, 10], 0.5))]),
    "empty ground truth": ([S("a")], [S("a", ("rope", [0, 0, 10, 10], 0.9))]),
    "both empty": ([S("a")], [S("a")]),
    "inverted and zero-size boxes": ([S("a", ("rope", [0, 0, 10, 10]), ("rope", [5, 5, 5, 9]))],
                                     [S("a", ("rope", [0, 0, 10, 10], 0.9), ("rope", [10, 10, 0, 0], 0.95))]),
}


@needs_faster
@pytest.mark.parametrize("case", list(EMPTY_CASES))
def test_empty_and_degenerate_cases_agree(case):
    gt, pred = EMPTY_CASES[case]
    fast = evaluate_detections(gt, pred, map_backend="faster")
    ref = evaluate_detections(gt, pred, map_backend="pycocotools")
    assert_same_map(fast, ref)
    if case == "empty predictions":
        assert fast["map"] == 0.0 and fast["map50"] == 0.0 and fast["mar100"] == 0.0
    if case in ("empty ground truth", "both empty"):
        assert fast["map"] is None and fast["mar100"] is None


@needs_faster
def test_crowd_and_given_areas_are_handled_like_pycocotools():
    """Direct runs of both libraries on crowd GT and areas that are not box areas (our evaluator sends neither)."""
    gt_json, dets = _hard_coco(3)
    rng = np.random.default_rng(0)
    for a in gt_json["annotations"]:
        a["iscrowd"] = int(rng.random() < 0.2)
        a["area"] = float(a["area"] * rng.uniform(0.2, 1.5))
    fast, _ = coco_mod._run_faster(json.loads(json.dumps(gt_json)), json.loads(json.dumps(dets)))
    ref, _ = coco_mod._run_pycocotools(json.loads(json.dumps(gt_json)), json.loads(json.dumps(dets)))
    assert np.asarray(fast.stats) == pytest.approx(np.asarray(ref.stats), abs=TOL)
    assert np.abs(fast.eval["precision"] - ref.eval["precision"]).max() <= TOL
    assert np.abs(fast.eval["recall"] - ref.eval["recall"]).max() <= TOL


# ---- choosing a backend -----------------------------------------------------------------------------------

def test_backend_resolution(monkeypatch):
    assert resolve_map_backend("pycocotools") == "pycocotools"
    assert resolve_map_backend("auto") == ("faster" if faster_available() else "pycocotools")
    with pytest.raises(ValueError, match="map backend"):
        resolve_map_backend("fast")
    monkeypatch.setattr(coco_mod, "faster_available", lambda: False)
    assert resolve_map_backend("auto") == "pycocotools"  # the fallback when faster-coco-eval is missing
    with pytest.raises(JamspotterError, match="pip install faster-coco-eval"):
        resolve_map_backend("faster")
    m = evaluate_detections([S("a", ("rope", [0, 0, 10, 10]))], [S("a", ("rope", [0, 0, 10, 10], 0.5))])
    assert m["map_backend"] == "pycocotools" and m["map"] == pytest.approx(1.0)


@needs_faster
def test_faster_backend_prints_nothing(capfd):
    gt_json, dets = _random_coco(0, 10)
    gt, pred = _samples_from_coco(gt_json, dets)
    m = evaluate_detections(gt, pred, map_backend="faster")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert m["map_backend"] == "faster-coco-eval" and m["map_backend_version"]
    assert sum(line.lstrip().startswith("Average") for line in m["coco_summary"].splitlines()) >= 12


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_map_backend_option_is_reported(tmp_path, gt_dir, backend):  # noqa: F811 - gt_dir fixture
    pred = write_lines(tmp_path / "pred.jsonl", [
        {"id": f"img{i}", "objects": [{"label": "rope", "bbox": [4, 4, 30, 20], "score": 0.9}]} for i in range(3)])
    out = tmp_path / "report"
    r = run_eval("detection", pred, gt_dir, out, "--map-backend", backend)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    package = {"faster": "faster-coco-eval", "pycocotools": "pycocotools"}[backend]
    assert m["map_backend"] == package and "coco_summary" not in m
    summary = (out / "summary.md").read_text()
    assert f"mAP computed by {package} {m['map_backend_version']}" in summary
    assert f"## COCOeval summary ({package} " in summary


def test_cli_rejects_unknown_map_backend(tmp_path, gt_dir):  # noqa: F811 - gt_dir fixture
    pred = write_lines(tmp_path / "pred.jsonl", [{"id": "img0", "objects": []}])
    r = run_eval("detection", pred, gt_dir, tmp_path / "report", "--map-backend", "fast")
    assert r.exit_code == 2 and not (tmp_path / "report" / "metrics.json").exists()  # a click usage error


def test_cli_faster_backend_missing_is_one_line_error(tmp_path, gt_dir, monkeypatch):  # noqa: F811 - gt_dir fixture
    monkeypatch.setattr(coco_mod, "faster_available", lambda: False)
    pred = write_lines(tmp_path / "pred.jsonl", [{"id": "img0", "objects": []}])
    r = run_eval("detection", pred, gt_dir, tmp_path / "report", "--map-backend", "faster")
    assert failed_with(r, "pip install faster-coco-eval")
    assert not (tmp_path / "report" / "metrics.json").exists()
    r = run_eval("detection", pred, gt_dir, tmp_path / "report", "--map-backend", "auto")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["map_backend"] == "pycocotools"
