"""Detection metrics: P/R/F1 at an IoU threshold (and at 0.5), mean IoU, per class, jam-class recall, COCO mAP.

Jam recall/precision are counted the way a picker acts: class-agnostically across jam-causing classes
(a rope found and called "hose" is still removed), one-to-one; the class-exact figures sit beside them.

Undefined ratios (nothing predicted, nothing to find) are None, shown as n/a, never silently 0.
Clips with per-frame boxes are scored frame by frame (see `clips.py`).
A ground-truth image without a prediction line counts as all misses and is reported in `warnings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from jamspotter.data.records import BoxObject, Sample
from jamspotter.data.taxonomy import Taxonomy, canonical_label, normalise
from jamspotter.errors import DataError, JamspotterError
from jamspotter.evaluate.clips import expand_clips
from jamspotter.evaluate.matching import match_dataset
from jamspotter.evaluate.pairing import WarningLog, pair_by_id, prf, ratio

PR_POINTS = 200  # a PR curve in metrics.json is down-sampled to about this many points


@dataclass
class ImageResult:
    """One image after matching at the chosen threshold: which prediction got which GT box (-1 = none)."""

    gt: Sample
    pred: Sample | None
    pred_to_gt: np.ndarray
    pred_iou: np.ndarray

    @property
    def pred_objects(self) -> list[BoxObject]:
        return self.pred.objects if self.pred else []

    @property
    def misses(self) -> list[int]:
        matched = set(self.pred_to_gt[self.pred_to_gt >= 0].tolist())
        return [i for i in range(len(self.gt.objects)) if i not in matched]

    @property
    def false_positives(self) -> list[int]:
        return np.flatnonzero(self.pred_to_gt < 0).tolist()


@dataclass
class DetectionEval:
    """Metrics (the metrics.json dict) plus the per-image matching the error gallery draws."""

    metrics: dict
    images: list[ImageResult]


def _boxes(objs: Sequence[BoxObject]) -> np.ndarray:
    return np.fromiter(chain.from_iterable(o.bbox for o in objs), np.float64, 4 * len(objs)).reshape(-1, 4)


def _jam_flags(objs: Sequence[BoxObject], by_label: np.ndarray, overridden: np.ndarray) -> np.ndarray:
    """`Taxonomy.is_jam` for many objects at once (the labels' answers precomputed): a label the evaluation
    taxonomy names explicitly (`overridden`) takes its answer, else the object's own flag, else the label's.
    """
    flags = by_label.copy()
    own = [o.jam_risk for o in objs]
    for i in (i for i, v in enumerate(own) if v is not None and not overridden[i]):
        flags[i] = own[i]
    return flags


def jam_matches(gt_boxes: np.ndarray, gt_jam: np.ndarray, gt_images: np.ndarray, pred_boxes: np.ndarray,
                pred_jam: np.ndarray, pred_images: np.ndarray, scores: np.ndarray, iou_threshold: float) -> int:
    """How many jam-causing GT boxes a jam-causing prediction finds, whatever jam class either is called.

    The same greedy one-to-one matching as every other figure (`match_dataset`, highest score first), run
    on the jam-causing boxes alone with one shared class: each GT box is found at most once, a duplicate
    prediction is a false positive, and a box predicted as a material class never counts.
    """
    g, p = np.flatnonzero(gt_jam), np.flatnonzero(pred_jam)
    p2g, _ = match_dataset(gt_boxes[g], np.zeros(len(g), np.int64), gt_images[g], pred_boxes[p],
                           np.zeros(len(p), np.int64), pred_images[p], scores[p], iou_threshold)
    return int((p2g >= 0).sum())


def _pr_curve(scores: np.ndarray, matched: np.ndarray, n_gt: int) -> dict | None:
    """Precision/recall as the score threshold falls, down-sampled; None without model scores or GT."""
    if len(scores) == 0 or n_gt == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(matched[order])
    precision, recall = tp / np.arange(1, len(tp) + 1), tp / n_gt
    keep = np.unique(np.linspace(0, len(tp) - 1, min(len(tp), PR_POINTS)).round().astype(int))
    return {"score": scores[order][keep].tolist(), "precision": precision[keep].tolist(),
            "recall": recall[keep].tolist()}


def evaluate_detection_run(
    gt: Sequence[Sample],
    pred: Sequence[Sample],
    iou_threshold: float = 0.5,
    taxonomy: Taxonomy | None = None,
    coco: bool = True,
    map_backend: str = "auto",
) -> DetectionEval:
    """Match every image and compute all detection metrics; see `evaluate_detections` for the keys.

    `map_backend` picks the COCOeval implementation (`auto`, `faster`, `pycocotools`; see `coco.py`).
    """
    if not 0.0 <= iou_threshold <= 1.0:  # also refuses NaN
        raise JamspotterError(f"the IoU threshold must be in [0, 1], got {iou_threshold}")
    if coco:  # an unusable backend fails before any work
        from jamspotter.evaluate.coco import resolve_map_backend

        map_backend = resolve_map_backend(map_backend)
    taxonomy = taxonomy or Taxonomy()
    log = WarningLog()
    gt, pred = expand_clips(gt, pred, log)
    pairs = pair_by_id(gt, pred, log)
    # Flat arrays over all images: one conversion, one batched matching call per threshold.
    g_objs = [o for g, _ in pairs for o in g.objects]
    p_objs = [o for _, p in pairs if p for o in p.objects]
    g_count = np.array([len(g.objects) for g, _ in pairs], dtype=np.int64)
    p_count = np.array([len(p.objects) if p else 0 for _, p in pairs], dtype=np.int64)
    g_img, p_img = np.repeat(np.arange(len(pairs)), g_count), np.repeat(np.arange(len(pairs)), p_count)
    g_off = np.concatenate([[0], np.cumsum(g_count)])
    p_off = np.concatenate([[0], np.cumsum(p_count)])
    g_labels, p_labels = [o.label for o in g_objs], [o.label for o in p_objs]
    gt_label_set = set(g_labels)
    labels = sorted(gt_label_set | set(p_labels))
    cls = {name: i for i, name in enumerate(labels)}
    gt_cls = np.array([cls[x] for x in g_labels], dtype=np.int64)
    pred_cls = np.array([cls[x] for x in p_labels], dtype=np.int64)
    k = len(labels)
    n_gt_c, n_pred_c = np.bincount(gt_cls, minlength=k), np.bincount(pred_cls, minlength=k)
    for name in sorted(set(labels) - gt_label_set):
        log.add("prediction_label_not_in_gt", name, int(n_pred_c[cls[name]]))
    overrides = set(taxonomy.overrides) | {normalise(x) for x in taxonomy.overrides}
    for name in sorted(gt_label_set):
        if canonical_label(name) is None and name not in overrides and normalise(name) not in overrides:
            log.add("label_not_in_taxonomy", name)  # counted as not jam-causing unless objects say jam_risk
    has_score = np.array([o.score is not None for o in p_objs], dtype=bool)
    scores = np.array([1.0 if o.score is None else o.score for o in p_objs], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(scores))
    if len(bad):
        image = pairs[int(np.searchsorted(p_off, bad[0], side="right")) - 1][0].id
        raise DataError(f"prediction for {image}: score {scores[bad[0]]} is not a finite number")
    gt_boxes, pred_boxes = _boxes(g_objs), _boxes(p_objs)
    for kind, boxes_, objs in (("gt_box_without_area", gt_boxes, g_objs), ("prediction_box_without_area",
                                                                          pred_boxes, p_objs)):
        for i in np.flatnonzero((boxes_[:, 2] <= boxes_[:, 0]) | (boxes_[:, 3] <= boxes_[:, 1])):
            log.add(kind, str(objs[i].bbox))  # IoU 0 with everything: it can only be a miss / false positive
    for i in np.flatnonzero([o.iscrowd for o in g_objs]):
        log.add("crowd_gt_counted_as_object", g_objs[i].label)  # scored like any box (COCO iscrowd=0)
    for i in np.flatnonzero(p_count > 100):
        log.add("over_100_predictions_in_image", pairs[i][0].id)  # COCO mAP keeps the 100 best-scored only
    class_jam = np.array([taxonomy.jam_risk(name) for name in labels], dtype=bool)  # once per label, not per box
    class_over = np.array([name in overrides or normalise(name) in overrides for name in labels], dtype=bool)
    gt_jam = _jam_flags(g_objs, class_jam[gt_cls], class_over[gt_cls])
    pred_jam = _jam_flags(p_objs, class_jam[pred_cls], class_over[pred_cls])

    thresholds = sorted({iou_threshold, 0.5})
    matched_at: dict[float, np.ndarray] = {}
    for t in thresholds:
        p2g, piou = match_dataset(gt_boxes, gt_cls, g_img, pred_boxes, pred_cls, p_img, scores, t)
        matched_at[t] = p2g >= 0
        if t == iou_threshold:
            pred_to_gt, pred_iou = p2g, piou
    local = np.where(pred_to_gt >= 0, pred_to_gt - g_off[p_img], -1)
    images = [ImageResult(g, p, local[p_off[i]:p_off[i + 1]], pred_iou[p_off[i]:p_off[i + 1]])
              for i, (g, p) in enumerate(pairs)]

    def counts(matched: np.ndarray) -> dict:
        tp = int(matched.sum())
        return prf(tp, len(pred_cls) - tp, len(gt_cls) - tp)

    matched = matched_at[iou_threshold]
    ious = pred_iou[matched]
    tp_c = np.bincount(pred_cls[matched], minlength=k)
    iou_sum_c = np.bincount(pred_cls[matched], weights=ious, minlength=k)
    jam_tp_gt = int(gt_jam[pred_to_gt[matched]].sum())  # class-exact: the match needed the same label
    jam_tp_pred = int((matched & pred_jam).sum())
    jam_found = jam_matches(gt_boxes, gt_jam, g_img, pred_boxes, pred_jam, p_img, scores, iou_threshold)
    n_pred = len(pred_cls)
    metrics: dict = {
        "iou_threshold": iou_threshold,
        **counts(matched),
        "mean_iou": float(ious.mean()) if len(ious) else None,
        "jam_recall": ratio(jam_found, int(gt_jam.sum())),
        "jam_precision": ratio(jam_found, int(pred_jam.sum())),
        "jam_recall_exact": ratio(jam_tp_gt, int(gt_jam.sum())),
        "jam_precision_exact": ratio(jam_tp_pred, int(pred_jam.sum())),
        "jam_counts": {"gt": int(gt_jam.sum()), "pred": int(pred_jam.sum()), "tp": jam_found,
                       "tp_gt_exact": jam_tp_gt, "tp_pred_exact": jam_tp_pred},
        "by_iou": {f"{t:g}": counts(matched_at[t]) for t in thresholds},
        "n_images": len(pairs), "n_gt": len(gt_cls), "n_pred": n_pred,
        "score_source": ("model" if n_pred and has_score.all() else
                         "none: every prediction scored 1.0" if not has_score.any() else
                         f"partial: {int((~has_score).sum())} of {n_pred} predictions without score scored 1.0"),
    }
    if has_score.any():
        metrics["pr_curve"] = _pr_curve(scores, matched, len(gt_cls))
    per_class = {}
    for name, i in cls.items():
        tp = int(tp_c[i])
        per_class[name] = {
            "n_gt": int(n_gt_c[i]), "n_pred": int(n_pred_c[i]),
            **prf(tp, int(n_pred_c[i]) - tp, int(n_gt_c[i]) - tp),
            "mean_iou": float(iou_sum_c[i] / tp) if tp else None,
            "jam_risk": taxonomy.jam_risk(name),
        }
    if coco:
        from jamspotter.evaluate.coco import coco_map

        c = coco_map(pairs, map_backend)
        for name, ap in c.pop("per_class").items():
            per_class[name].update(ap)
        metrics.update(c)
    metrics["per_class"] = per_class
    metrics.update(log.as_dict())
    return DetectionEval(metrics, images)


def evaluate_detections(
    gt: list[Sample], pred: list[Sample], iou_threshold: float = 0.5, taxonomy: Taxonomy | None = None,
    map_backend: str = "auto",
) -> dict:
    """All detection metrics as one JSON-able dict (what `jamspotter eval detection` writes as metrics.json).

    Top level: `precision`, `recall`, `f1` (with `tp`/`fp`/`fn`) at `iou_threshold`, `by_iou` (also at 0.5),
    `mean_iou` of matched pairs, `jam_recall` / `jam_precision` (jam-causing boxes alone, matched whatever jam
    class they are called, as the picker acts; a box is jam-causing by its `jam_risk`, else by the taxonomy;
    labels the taxonomy overrides follow the override), `jam_recall_exact` / `jam_precision_exact` (the label
    must match too) with the counts behind all four in `jam_counts`,
    COCO `map` (@[.5:.95]) and `map50` from
    faster-coco-eval or pycocotools (`map_backend` says which), `score_source`, `per_class`, and counted `warnings`.
    """
    return evaluate_detection_run(gt, pred, iou_threshold, taxonomy, map_backend=map_backend).metrics
