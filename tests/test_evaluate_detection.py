"""Detection metrics: hand-computed P/R/F1 cases, greedy matching, and mAP against pycocotools run directly."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jamspotter.data.boxes import iou, xywh_to_xyxy
from jamspotter.data.records import Sample
from jamspotter.evaluate import evaluate_detection_run, evaluate_detections, match_arrays, match_detections
from jamspotter.evaluate.matching import match_dataset


def S(id_: str, *objs: tuple) -> Sample:  # noqa: N802 - short builder
    """Sample from (label, bbox[, score]) tuples."""
    return Sample(id=id_, width=100, height=100, objects=[
        {"label": o[0], "bbox": o[1], **({"score": o[2]} if len(o) > 2 else {})} for o in objs])


def test_perfect_predictions():
    gt = [S("a", ("rope", [0, 0, 10, 10]), ("glass", [20, 20, 40, 40]))]
    m = evaluate_detections(gt, gt)
    assert (m["precision"], m["recall"], m["f1"], m["mean_iou"]) == (1.0, 1.0, 1.0, 1.0)
    assert m["map"] == pytest.approx(1.0) and m["map50"] == pytest.approx(1.0)
    assert m["warnings"] == {}


def test_empty_predictions_are_all_misses():
    gt = [S("a", ("rope", [0, 0, 10, 10]), ("rope", [20, 20, 30, 30]), ("glass", [50, 50, 60, 60]))]
    m = evaluate_detections(gt, [S("a")])
    assert (m["tp"], m["fp"], m["fn"]) == (0, 0, 3)
    assert m["precision"] is None and m["recall"] == 0.0 and m["f1"] == 0.0 and m["mean_iou"] is None
    assert m["jam_recall"] == 0.0 and m["jam_precision"] is None
    assert m["map"] == 0.0 and m["map50"] == 0.0  # COCOeval ran on an empty result set


def test_empty_ground_truth_all_false_positives():
    m = evaluate_detections([S("a")], [S("a", ("rope", [0, 0, 10, 10], 0.9), ("hose", [5, 5, 9, 9], 0.3))])
    assert (m["tp"], m["fp"], m["fn"]) == (0, 2, 0)
    assert m["precision"] == 0.0 and m["recall"] is None and m["f1"] == 0.0
    assert m["map"] is None  # undefined: COCO has no ground truth to average over
    assert m["warnings"]["prediction_label_not_in_gt"] == 2


def test_both_empty_is_undefined_not_zero():
    m = evaluate_detections([S("a")], [S("a")])
    assert m["precision"] is None and m["recall"] is None and m["f1"] is None


def test_duplicates_only_highest_score_matches():
    gt = [S("a", ("rope", [0, 0, 10, 10]))]
    # the worse-fitting box has the higher score: greedy by score gives the match to it
    pred = [S("a", ("rope", [0, 0, 10, 10], 0.4), ("rope", [0, 0, 10, 8], 0.9), ("rope", [1, 0, 10, 10], 0.6))]
    m = evaluate_detections(gt, pred)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 2, 0)
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == 1.0 and m["f1"] == pytest.approx(0.5)
    assert m["mean_iou"] == pytest.approx(0.8)
    mt = match_detections(gt[0].objects, pred[0].objects)
    assert mt.matches == [(1, 0, pytest.approx(0.8))] and mt.false_positives == [0, 2] and mt.misses == []


def test_wrong_class_at_perfect_iou_is_a_miss_and_a_false_positive():
    m = evaluate_detections([S("a", ("rope", [0, 0, 10, 10]))], [S("a", ("wire", [0, 0, 10, 10]))])
    assert (m["tp"], m["fp"], m["fn"]) == (0, 1, 1)
    assert m["per_class"]["rope"]["recall"] == 0.0 and m["per_class"]["wire"]["precision"] == 0.0
    # both are jam classes: the picker removes it whatever it is called; the exact-class figures need the label
    assert m["jam_recall"] == 1.0 and m["jam_precision"] == 1.0
    assert m["jam_recall_exact"] == 0.0 and m["jam_precision_exact"] == 0.0


def test_threshold_is_inclusive_and_both_thresholds_reported():
    gt, pred = [S("a", ("rope", [0, 0, 10, 10]))], [S("a", ("rope", [0, 0, 10, 5]))]  # IoU exactly 0.5
    m = evaluate_detections(gt, pred, iou_threshold=0.75)
    assert m["tp"] == 0 and m["by_iou"]["0.75"]["tp"] == 0 and m["by_iou"]["0.5"]["tp"] == 1
    assert evaluate_detections(gt, pred)["tp"] == 1


def test_greedy_by_score_not_optimal_assignment():
    gt = [S("a", ("rope", [0, 0, 10, 10]), ("rope", [5, 0, 15, 10]))]
    # P1 (0.9) takes G1 (IoU 8/12); P2 (0.8) fits G1 perfectly but G1 is gone and G2 is only 1/3
    pred = [S("a", ("rope", [0, 0, 10, 10], 0.8), ("rope", [2, 0, 12, 10], 0.9))]
    m = evaluate_detections(gt, pred)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 1)
    assert m["mean_iou"] == pytest.approx(8 / 12)


def test_missing_and_unknown_ids_are_counted():
    gt = [S("a", ("rope", [0, 0, 10, 10])), S("b", ("rope", [0, 0, 10, 10]), ("hose", [20, 20, 30, 30]))]
    pred = [S("a", ("rope", [0, 0, 10, 10])), S("zzz", ("rope", [0, 0, 10, 10])), S("a")]
    m = evaluate_detections(gt, pred)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 0, 2)  # b: all misses; zzz is not scored
    assert m["warnings"] == {"duplicate_prediction_id": 1, "missing_prediction": 1, "prediction_without_gt": 1}
    assert m["warning_examples"]["missing_prediction"] == ["b"]


def test_jam_recall_uses_object_flag_then_taxonomy():
    gt = [S("a", ("rope", [0, 0, 10, 10]), ("glass", [20, 20, 30, 30]), ("hose", [40, 40, 50, 50]))]
    gt[0].objects[1].jam_risk = True  # this glass shard is flagged as jam risk by the labeller
    pred = [S("a", ("glass", [20, 20, 30, 30]), ("plastic", [60, 60, 70, 70]))]
    m = evaluate_detections(gt, pred)
    assert m["jam_counts"] == {"gt": 3, "pred": 0, "tp": 0, "tp_gt_exact": 1, "tp_pred_exact": 0}
    # the detector called the flagged shard "glass", a material class: the picker would leave it on the belt
    assert m["jam_recall"] == 0.0 and m["jam_recall_exact"] == pytest.approx(1 / 3) and m["jam_precision"] is None
    assert m["recall"] == pytest.approx(1 / 3) and m["precision"] == pytest.approx(1 / 2)


def test_unknown_labels_and_score_source_reported():
    gt = [S("a", ("Widget", [0, 0, 10, 10]))]
    m = evaluate_detections(gt, [S("a", ("Widget", [0, 0, 10, 10]))])
    assert m["warnings"]["label_not_in_taxonomy"] == 1
    assert m["score_source"].startswith("none") and "pr_curve" not in m


def _reference_greedy(gt_objs, pred_objs, thr):
    """Pure-Python greedy: scalar iou, predictions by descending score, best free same-class GT."""
    order = sorted(range(len(pred_objs)), key=lambda i: -pred_objs[i][2])
    free, out = set(range(len(gt_objs))), [-1] * len(pred_objs)
    for p in order:
        best, best_iou = -1, -1.0
        for g in sorted(free):
            if gt_objs[g][0] == pred_objs[p][0]:
                v = iou(gt_objs[g][1], pred_objs[p][1])
                if v > best_iou:
                    best, best_iou = g, v
        if best >= 0 and best_iou >= thr:
            out[p] = best
            free.discard(best)
    return out


box = st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(1, 30), st.integers(1, 30)).map(
    lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), box), max_size=6),
       st.lists(st.tuples(st.integers(0, 1), box, st.sampled_from([0.1, 0.5, 0.9])), max_size=8),
       st.sampled_from([0.1, 0.3, 0.5]))
def test_vectorised_matching_equals_reference(gt_objs, pred_objs, thr):
    p2g, _ = match_arrays(np.array([g[1] for g in gt_objs], float).reshape(-1, 4),
                          np.array([g[0] for g in gt_objs], int),
                          np.array([p[1] for p in pred_objs], float).reshape(-1, 4),
                          np.array([p[0] for p in pred_objs], int),
                          np.array([p[2] for p in pred_objs], float), thr)
    assert p2g.tolist() == _reference_greedy(gt_objs, pred_objs, thr)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(st.tuples(st.integers(0, 1), box), max_size=5),
                          st.lists(st.tuples(st.integers(0, 1), box, st.sampled_from([0.2, 0.7])), max_size=7)),
                min_size=1, max_size=6),
       st.sampled_from([1, 12, 60, 4096]))
def test_batched_matching_over_images_equals_per_image_reference(images, chunk_entries):
    """Chunks of several images (and images split from their neighbours) give the per-image greedy result."""
    gt = [(i, o) for i, (g, _) in enumerate(images) for o in g]
    pr = [(i, o) for i, (_, p) in reversed(list(enumerate(images))) for o in p]  # predictions in any image order
    p2g, _ = match_dataset(np.array([o[1] for _, o in gt], float).reshape(-1, 4), np.array([o[0] for _, o in gt]),
                           np.array([i for i, _ in gt]), np.array([o[1] for _, o in pr], float).reshape(-1, 4),
                           np.array([o[0] for _, o in pr]), np.array([i for i, _ in pr]),
                           np.array([o[2] for _, o in pr], float), 0.3, chunk_entries)
    offsets = np.cumsum([0] + [len(g) for g, _ in images])
    for i, (g, p) in enumerate(images):
        ours = [int(v) - offsets[i] if v >= 0 else -1 for (j, _), v in zip(pr, p2g, strict=True) if j == i]
        assert ours == _reference_greedy(g, p, 0.3)


# ---- mAP against pycocotools run directly on COCO json files -------------------------------------------

def _coco_direct(tmp_path, gt_json: dict, dets: list[dict]) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    (tmp_path / "gt.json").write_text(json.dumps(gt_json))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(tmp_path / "gt.json"))
        ev = COCOeval(coco_gt, coco_gt.loadRes(str(tmp_path / "dt.json")), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _samples_from_coco(gt_json: dict, dets: list[dict], with_scores: bool = True):
    names = {c["id"]: c["name"] for c in gt_json["categories"]}
    gt, pred = [], []
    # COCOeval walks images in sorted id order; with tied scores (all 1.0) AP depends on that order, so the
    # samples follow it too (our evaluator numbers images in sample order).
    for im in sorted(gt_json["images"], key=lambda im: im["id"]):
        gt.append(Sample(id=f"img{im['id']}", width=im["width"], height=im["height"], objects=[
            {"label": names[a["category_id"]], "bbox": xywh_to_xyxy(a["bbox"])}
            for a in gt_json["annotations"] if a["image_id"] == im["id"]]))
        pred.append(Sample(id=f"img{im['id']}", objects=[
            {"label": names[d["category_id"]], "bbox": xywh_to_xyxy(d["bbox"]),
             **({"score": d["score"]} if with_scores else {})} for d in dets if d["image_id"] == im["id"]]))
    return gt, pred


def _coco_tp_at_50(ev) -> int:
    return int(sum(((e["dtMatches"][0] > 0) & ~e["dtIgnore"][0].astype(bool)).sum()
                   for e in ev.evalImgs if e is not None and e["aRng"] == [0, 1e10]))


HAND_GT = {
    # category ids deliberately not 1..K and image ids not 1..N: our in-memory ids must not matter
    "images": [{"id": 7, "width": 100, "height": 80}, {"id": 3, "width": 100, "height": 80}],
    "categories": [{"id": 11, "name": "rope"}, {"id": 5, "name": "glass"}],
    "annotations": [
        {"id": 1, "image_id": 7, "category_id": 11, "bbox": [10, 10, 30, 20], "area": 600, "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 5, "bbox": [50, 40, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 3, "image_id": 3, "category_id": 11, "bbox": [0, 0, 40, 40], "area": 1600, "iscrowd": 0},
        {"id": 4, "image_id": 3, "category_id": 11, "bbox": [60, 10, 20, 60], "area": 1200, "iscrowd": 0},
    ],
}
HAND_DT = [
    {"image_id": 7, "category_id": 11, "bbox": [12, 10, 30, 20], "score": 0.9},
    {"image_id": 7, "category_id": 11, "bbox": [50, 40, 20, 20], "score": 0.8},  # right place, wrong class
    {"image_id": 7, "category_id": 5, "bbox": [52, 44, 20, 18], "score": 0.3},
    {"image_id": 3, "category_id": 11, "bbox": [0, 0, 40, 30], "score": 0.7},
    {"image_id": 3, "category_id": 11, "bbox": [0, 0, 40, 40], "score": 0.2},  # duplicate of a matched box
]


@pytest.mark.parametrize("with_scores", [True, False])
def test_map_equals_pycocotools_hand_built(tmp_path, with_scores):
    dets = HAND_DT if with_scores else [{**d, "score": 1.0} for d in HAND_DT]
    ev = _coco_direct(tmp_path, HAND_GT, dets)
    gt, pred = _samples_from_coco(HAND_GT, HAND_DT, with_scores)
    m = evaluate_detections(gt, pred)
    assert m["map"] == pytest.approx(ev.stats[0], abs=1e-12)
    assert m["map50"] == pytest.approx(ev.stats[1], abs=1e-12)
    assert m["tp"] == _coco_tp_at_50(ev) == 3
    assert (m["fp"], m["fn"]) == (2, 1)
    assert m["score_source"] == ("model" if with_scores else "none: every prediction scored 1.0")
    p = ev.eval["precision"]
    for k, cat in enumerate(ev.params.catIds):
        name = {11: "rope", 5: "glass"}[cat]
        assert m["per_class"][name]["ap"] == pytest.approx(p[:, :, k, 0, -1].mean(), abs=1e-12)


def _random_coco(seed: int, n_images: int = 40):
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "width": 640, "height": 480})
        for _ in range(rng.integers(0, 8)):
            x, y = int(rng.integers(0, 560)), int(rng.integers(0, 400))
            w, h = int(rng.integers(5, 80)), int(rng.integers(5, 80))
            cat = int(rng.integers(1, 4))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})
            if rng.random() < 0.8:  # a jittered detection, sometimes of the wrong class
                jit = rng.integers(-6, 7, size=4)
                dets.append({"image_id": i, "category_id": cat if rng.random() < 0.85 else int(rng.integers(1, 4)),
                             "bbox": [int(x + jit[0]), int(y + jit[1]), max(1, int(w + jit[2])),
                                      max(1, int(h + jit[3]))], "score": round(float(rng.random()), 3)})
        for _ in range(rng.integers(0, 3)):  # background false positives
            dets.append({"image_id": i, "category_id": int(rng.integers(1, 4)),
                         "bbox": [int(rng.integers(0, 600)), int(rng.integers(0, 440)), 30, 30],
                         "score": round(float(rng.random()), 3)})
    cats = [{"id": 1, "name": "rope"}, {"id": 2, "name": "plastic film"}, {"id": 3, "name": "cardboard"}]
    return {"images": images, "annotations": anns, "categories": cats}, dets


@pytest.mark.parametrize("seed", [0, 1])
def test_map_equals_pycocotools_random(tmp_path, seed):
    gt_json, dets = _random_coco(seed)
    ev = _coco_direct(tmp_path, gt_json, dets)
    gt, pred = _samples_from_coco(gt_json, dets)
    m = evaluate_detections(gt, pred)
    assert m["map"] == pytest.approx(ev.stats[0], abs=1e-12)
    assert m["map50"] == pytest.approx(ev.stats[1], abs=1e-12)
    assert m["mar100"] == pytest.approx(ev.stats[8], abs=1e-12)
    by_area = [m[k] if m[k] is not None else -1.0 for k in ("map_small", "map_medium", "map_large")]
    assert by_area == pytest.approx(list(ev.stats[3:6]), abs=1e-12)  # -1: pycocotools' "undefined"
    assert m["tp"] == _coco_tp_at_50(ev)
    assert 0 < m["map"] < m["map50"] < 1


def test_pr_curve_ends_at_overall_precision_and_recall():
    gt_json, dets = _random_coco(3, 20)
    gt, pred = _samples_from_coco(gt_json, dets)
    r = evaluate_detection_run(gt, pred, coco=False)
    pr = r.metrics["pr_curve"]
    assert pr["recall"][-1] == pytest.approx(r.metrics["recall"])
    assert pr["precision"][-1] == pytest.approx(r.metrics["precision"])
    assert all(a >= b for a, b in zip(pr["score"], pr["score"][1:], strict=False))
    assert "map" not in r.metrics


def jittered_detections(coco_gt, img_ids, rng, copies) -> list[dict]:  # noqa: ANN001
    """COCO-style detections: `copies(rng)` noisy copies of each GT box, 20% with a wrong class, random scores."""
    cat_ids = coco_gt.getCatIds()
    dets = []
    for a in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=img_ids)):
        for _ in range(copies(rng)):
            x, y, w, h = a["bbox"]
            jit = rng.normal(0, 0.08, 4) * [w, h, w, h]
            cat = a["category_id"] if rng.random() < 0.8 else int(rng.choice(cat_ids))
            dets.append({"image_id": a["image_id"], "category_id": cat, "score": float(rng.random()),
                         "bbox": [float(x + jit[0]), float(y + jit[1]), float(max(1.0, w + jit[2])),
                                  float(max(1.0, h + jit[3]))]})
    return dets


def pycocotools_eval(coco_gt, dets, img_ids):  # noqa: ANN001, ANN201
    """pycocotools' own COCOeval (bbox) on `dets`, restricted to `img_ids`, summarised quietly."""
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco_gt, coco_gt.loadRes(dets), "bbox")
        ev.params.imgIds = img_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def test_map_equals_pycocotools_on_real_taco_file(shared_data, tmp_path):
    """A real COCO file (TACO: image and category ids from 0, 60 categories, areas from polygons) read by pycocotools.

    TACO repeats two annotation ids; pycocotools indexes annotations by id, so a repeated id silently swaps
    one box for another. The copy given to pycocotools gets unique annotation ids (our evaluator numbers its own).
    """
    from pycocotools.coco import COCO

    data = json.loads((shared_data / "taco_annotations" / "annotations.json").read_text())
    for n, a in enumerate(data["annotations"], 1):
        a["id"] = n
    (tmp_path / "taco.json").write_text(json.dumps(data))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(tmp_path / "taco.json"))
    img_ids = sorted(coco_gt.getImgIds())[:400]
    rng = np.random.default_rng(5)
    dets = jittered_detections(coco_gt, img_ids, rng, lambda r: int(r.random() < 0.8))
    ev = pycocotools_eval(coco_gt, dets, img_ids)
    names = {c["id"]: c["name"] for c in coco_gt.loadCats(coco_gt.getCatIds())}
    gt = [Sample(id=str(i), objects=[{"label": names[a["category_id"]], "bbox": xywh_to_xyxy(a["bbox"])}
                                     for a in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[i]))]) for i in img_ids]
    pred = [Sample(id=str(i), objects=[{"label": names[d["category_id"]], "bbox": xywh_to_xyxy(d["bbox"]),
                                        "score": d["score"]} for d in dets if d["image_id"] == i]) for i in img_ids]
    m = evaluate_detections(gt, pred)
    assert m["map"] == pytest.approx(ev.stats[0], abs=1e-9)
    assert m["map50"] == pytest.approx(ev.stats[1], abs=1e-9)
    assert 0.2 < m["map50"] < 0.95


def test_degenerate_and_crowd_boxes_are_counted_and_consistent_with_coco():
    gt = [S("a", ("rope", [0, 0, 10, 10]), ("rope", [5, 5, 5, 9]))]
    gt[0].objects[0].iscrowd = True
    pred = [S("a", ("rope", [0, 0, 10, 10], 0.9), ("rope", [10, 10, 0, 0], 0.95))]  # the top-scored box is inverted
    m = evaluate_detections(gt, pred)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 1)
    assert m["warnings"] == {"crowd_gt_counted_as_object": 1, "gt_box_without_area": 1,
                             "prediction_box_without_area": 1}
    # COCO: recall 0.5 at precision 1/2 (the inverted box ranks first and is a false positive, not ignored)
    assert m["map50"] == pytest.approx(0.5 * 51 / 101)


def test_clips_are_scored_per_predicted_frame():
    rope, hose = {"label": "rope", "bbox": [0, 0, 10, 10]}, {"label": "hose", "bbox": [20, 20, 40, 40]}
    gt = [Sample(id="c", video="c.mp4", width=64, height=48, frame_objects=[[rope], [rope, hose], [hose], []]),
          Sample(id="d", video="d.mp4", width=64, height=48, frame_objects=[[rope], [rope]]),
          S("img", ("rope", [0, 0, 10, 10]))]
    pred = [Sample(id="c", frame_objects=[[rope], [rope]], meta={"frame_indices": [0, 2],
                                                                 "parse_problems": [[], ["trailing prose"]]}),
            S("img", ("rope", [0, 0, 10, 10]))]
    m = evaluate_detections(gt, pred)
    # scored: c#0 (rope found), c#2 (hose missed, rope false positive), d#0 and d#1 (no prediction), img
    assert (m["n_images"], m["tp"], m["fp"], m["fn"]) == (5, 2, 1, 3)
    assert m["warnings"] == {"clip_frames_not_predicted": 2, "missing_prediction": 2, "parse_problem": 1}
    assert m["warning_examples"]["missing_prediction"] == ["d#0", "d#1"]
