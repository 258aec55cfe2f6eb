"""Image classification metrics: accuracy, per-class and averaged precision/recall/F1, confusion matrix.

Plain numpy. Rows of the confusion matrix are true labels, columns predicted labels; a ground-truth
image without a prediction is an error for its class and lands in an extra "(none)" column.
Macro and weighted averages count an undefined per-class value as 0, as scikit-learn does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jamspotter.data.records import Sample
from jamspotter.evaluate.pairing import WarningLog, pair_by_id, ratio

NONE_LABEL = "(none)"


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """`k x k` counts (row = true, column = predicted) from integer class ids; y_pred -1 goes to column k."""
    cm = np.zeros((k, k + 1), dtype=np.int64)
    np.add.at(cm, (y_true, np.where(y_pred < 0, k, y_pred)), 1)
    return cm


def evaluate_classification(gt: Sequence[Sample], pred: Sequence[Sample]) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro and weighted averages and the confusion matrix."""
    log = WarningLog()
    y_true_l: list[str] = []
    y_pred_l: list[str | None] = []
    for g, p in pair_by_id(gt, pred, log):
        if g.label is None:
            log.add("gt_without_label", g.id)  # nothing to score this image against
            continue
        if p is not None and p.label is None:
            log.add("prediction_without_label", g.id)
        y_true_l.append(g.label)
        y_pred_l.append(p.label if p is not None else None)
    gt_labels = set(y_true_l)
    labels = sorted(gt_labels | {y for y in y_pred_l if y is not None})
    for name in sorted(set(labels) - gt_labels):
        log.add("prediction_label_not_in_gt", name, sum(y == name for y in y_pred_l))
    idx = {name: i for i, name in enumerate(labels)}
    k = len(labels)
    y_true = np.array([idx[y] for y in y_true_l], dtype=np.int64)
    y_pred = np.array([-1 if y is None else idx[y] for y in y_pred_l], dtype=np.int64)
    cm = confusion_matrix(y_true, y_pred, k)
    tp, support, predicted = np.diag(cm[:, :k]), cm.sum(axis=1), cm[:, :k].sum(axis=0)
    per_class = {}
    for name, i in idx.items():
        p, r = ratio(tp[i], predicted[i]), ratio(tp[i], support[i])
        per_class[name] = {"precision": p, "recall": r, "f1": ratio(2 * tp[i], predicted[i] + support[i]),
                           "support": int(support[i]), "n_pred": int(predicted[i])}

    def average(key: str, weights: np.ndarray) -> float | None:
        vals = np.array([per_class[n][key] or 0.0 for n in labels])
        return float((vals * weights).sum() / weights.sum()) if weights.sum() else None

    has_missing = bool((y_pred < 0).any())
    return {
        "accuracy": ratio(int(tp.sum()), len(y_true)),
        "n_images": len(y_true),
        "macro": {m: average(m, np.ones(k)) for m in ("precision", "recall", "f1")},
        "weighted": {m: average(m, support.astype(float)) for m in ("precision", "recall", "f1")},
        "per_class": per_class,
        "confusion_matrix": {"labels": labels, "columns": labels + ([NONE_LABEL] if has_missing else []),
                             "matrix": (cm if has_missing else cm[:, :k]).tolist()},
        **log.as_dict(),
    }
