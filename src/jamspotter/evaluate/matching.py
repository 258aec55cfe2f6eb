"""Greedy one-to-one matching of predicted boxes to ground truth, by IoU with class agreement.

Predictions are taken in descending score order (stable, so ties keep file order, as pycocotools
does); each takes the free ground-truth box of the same class with the highest IoU, if that IoU is
at least the threshold. IoU comes from `jamspotter.data.boxes.iou_matrix`, the one the rewards and
the crop tool use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jamspotter.data.boxes import iou_matrix
from jamspotter.data.records import BoxObject


def match_arrays(
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    pred_boxes: np.ndarray,
    pred_classes: np.ndarray,
    pred_scores: np.ndarray,
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Match one image; returns `(pred_to_gt, pred_iou)`: the matched GT index (-1 if none) and IoU per prediction.

    Vectorised: one IoU matrix per image; the greedy loop runs only when two predictions want the
    same ground-truth box (otherwise every prediction simply gets its best box).
    """
    n_pred, n_gt = len(pred_boxes), len(gt_boxes)
    pred_to_gt = np.full(n_pred, -1, dtype=np.int64)
    pred_iou = np.zeros(n_pred, dtype=np.float64)
    if n_pred == 0 or n_gt == 0:
        return pred_to_gt, pred_iou
    ious = iou_matrix(pred_boxes, gt_boxes)
    ious[pred_classes[:, None] != gt_classes[None, :]] = -1.0  # class disagreement never matches
    best = ious.argmax(axis=1)
    best_iou = ious[np.arange(n_pred), best]
    ok = best_iou >= iou_threshold
    wanted = best[ok]
    if len(np.unique(wanted)) == len(wanted):  # no contention: greedy gives everyone their best box
        pred_to_gt[ok] = wanted
        pred_iou[ok] = best_iou[ok]
        return pred_to_gt, pred_iou
    free = np.ones(n_gt, dtype=bool)
    for p in np.argsort(-pred_scores, kind="stable"):
        row = np.where(free, ious[p], -1.0)
        g = int(row.argmax())
        if row[g] >= iou_threshold:
            pred_to_gt[p], pred_iou[p], free[g] = g, row[g], False
    return pred_to_gt, pred_iou


@dataclass
class Matching:
    """Result of matching one image: matched pairs, false positives and misses (indices into the inputs)."""

    matches: list[tuple[int, int, float]]  # (pred index, gt index, IoU)
    false_positives: list[int]  # prediction indices with no match
    misses: list[int]  # ground-truth indices with no match


def match_detections(
    gt_objects: Sequence[BoxObject], pred_objects: Sequence[BoxObject], iou_threshold: float = 0.5
) -> Matching:
    """Greedy one-to-one matching by IoU with class agreement; predictions without a score count as 1.0."""
    labels = {o.label for o in gt_objects} | {o.label for o in pred_objects}
    ids = {name: i for i, name in enumerate(sorted(labels))}
    pred_to_gt, pred_iou = match_arrays(
        np.array([o.bbox for o in gt_objects], dtype=np.float64).reshape(-1, 4),
        np.array([ids[o.label] for o in gt_objects], dtype=np.int64),
        np.array([o.bbox for o in pred_objects], dtype=np.float64).reshape(-1, 4),
        np.array([ids[o.label] for o in pred_objects], dtype=np.int64),
        np.array([1.0 if o.score is None else o.score for o in pred_objects], dtype=np.float64),
        iou_threshold,
    )
    matched_gt = set(int(g) for g in pred_to_gt if g >= 0)
    return Matching(
        matches=[(p, int(g), float(pred_iou[p])) for p, g in enumerate(pred_to_gt) if g >= 0],
        false_positives=[p for p, g in enumerate(pred_to_gt) if g < 0],
        misses=[g for g in range(len(gt_objects)) if g not in matched_gt],
    )
