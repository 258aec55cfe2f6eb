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


def match_dataset(
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    gt_images: np.ndarray,
    pred_boxes: np.ndarray,
    pred_classes: np.ndarray,
    pred_images: np.ndarray,
    pred_scores: np.ndarray,
    iou_threshold: float = 0.5,
    chunk_entries: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Match many images at once; returns `(pred_to_gt, pred_iou)`: matched GT row (-1 if none) and IoU per prediction.

    `gt_images` must be non-decreasing (each image's boxes contiguous); predictions may come in any order.
    Consecutive images are batched into one `iou_matrix` call of about `chunk_entries` entries (cross-image and
    cross-class pairs masked out), which beats one call per image several times over. Every prediction then
    takes its best box; only images where two predictions want the same box are resolved one prediction at a
    time in score order, which gives the same result as the plain greedy loop.
    """
    gt_images = np.asarray(gt_images, dtype=np.int64)
    pred_images = np.asarray(pred_images, dtype=np.int64)
    n_pred = len(pred_images)
    pred_to_gt = np.full(n_pred, -1, dtype=np.int64)
    pred_iou = np.zeros(n_pred, dtype=np.float64)
    if n_pred == 0 or len(gt_images) == 0:
        return pred_to_gt, pred_iou
    if np.any(np.diff(gt_images) < 0):
        raise ValueError("gt_images must be sorted (each image's ground-truth boxes contiguous)")
    by_score = np.argsort(-np.asarray(pred_scores, dtype=np.float64), kind="stable")
    order = by_score[np.argsort(pred_images[by_score], kind="stable")]  # by image, then score (ties: input order)
    n_img = int(max(gt_images[-1], pred_images.max())) + 1
    p_cum = np.concatenate([[0], np.cumsum(np.bincount(pred_images, minlength=n_img))])
    g_cum = np.concatenate([[0], np.cumsum(np.bincount(gt_images, minlength=n_img))])
    n_cls = int(max(np.max(gt_classes, initial=0), np.max(pred_classes, initial=0))) + 1
    gt_key = gt_images * n_cls + np.asarray(gt_classes, dtype=np.int64)  # same key = same image and same class
    pred_key = pred_images * n_cls + np.asarray(pred_classes, dtype=np.int64)
    start = 0
    while start < n_img:
        end = start + 1
        while end < n_img and (p_cum[end + 1] - p_cum[start]) * (g_cum[end + 1] - g_cum[start]) <= chunk_entries:
            end += 1
        _match_chunk(order[p_cum[start]:p_cum[end]], int(g_cum[start]), int(g_cum[end]), gt_boxes, gt_key,
                     gt_images, pred_boxes, pred_key, pred_images, iou_threshold, pred_to_gt, pred_iou)
        start = end
    return pred_to_gt, pred_iou


def _match_chunk(rows, gs, ge, gt_boxes, gt_key, gt_images, pred_boxes, pred_key, pred_images,  # noqa: ANN001
                 thr: float, pred_to_gt: np.ndarray, pred_iou: np.ndarray) -> None:
    """Greedy matching of the predictions `rows` (sorted by image, then score) against GT rows `gs:ge`."""
    if len(rows) == 0 or gs == ge:
        return
    gi = gt_images[gs:ge]
    ious = iou_matrix(pred_boxes[rows], gt_boxes[gs:ge])
    ious[pred_key[rows][:, None] != gt_key[gs:ge][None, :]] = -1.0
    best = ious.argmax(axis=1)
    best_iou = ious[np.arange(len(rows)), best]
    ok = best_iou >= thr
    wanted = np.bincount(best[ok], minlength=ge - gs)
    if wanted.max(initial=0) > 1:  # contention: resolve those images one prediction at a time, by score
        contested = np.isin(pred_images[rows], gi[wanted > 1])
        ok &= ~contested
        free = np.ones(ge - gs, dtype=bool)
        for r in np.flatnonzero(contested):
            row = np.where(free, ious[r], -1.0)
            g = int(row.argmax())
            if row[g] >= thr:
                pred_to_gt[rows[r]], pred_iou[rows[r]], free[g] = gs + g, row[g], False
    pred_to_gt[rows[ok]] = gs + best[ok]
    pred_iou[rows[ok]] = best_iou[ok]


def match_arrays(
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    pred_boxes: np.ndarray,
    pred_classes: np.ndarray,
    pred_scores: np.ndarray,
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Match one image; returns `(pred_to_gt, pred_iou)`: the matched GT index (-1 if none) and IoU per prediction."""
    return match_dataset(np.asarray(gt_boxes).reshape(-1, 4), np.asarray(gt_classes), np.zeros(len(gt_classes)),
                         np.asarray(pred_boxes).reshape(-1, 4), np.asarray(pred_classes), np.zeros(len(pred_classes)),
                         pred_scores, iou_threshold)


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
