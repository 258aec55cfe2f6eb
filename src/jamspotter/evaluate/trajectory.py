"""Clip target metrics: MSE and MAE per component of a sequence target (e.g. velocity, curvature, belt speed).

Errors pool every time step of every clip. A prediction longer or shorter than its target is scored
on the common prefix and counted in `warnings`; a different number of components cannot be scored
and is counted too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jamspotter.data.records import Sample
from jamspotter.evaluate.pairing import WarningLog, pair_by_id


def component_names(gt: Sequence[Sample]) -> list[str]:
    """Names from the first `target.names`, else `c0, c1, ...`."""
    for g in gt:
        if g.target is not None and g.target.values:
            k = len(g.target.values[0])
            return list(g.target.names) if g.target.names and len(g.target.names) == k else [f"c{i}" for i in range(k)]
    return []


def trajectory_pairs(
    gt: Sequence[Sample], pred: Sequence[Sample], log: WarningLog
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """`(id, true T x K, predicted T x K)` for every clip that can be scored; the rest is counted in `log`."""
    out = []
    for g, p in pair_by_id(gt, pred, log):
        if g.target is None or not g.target.values:
            log.add("gt_without_target", g.id)
            continue
        if p is None:
            continue  # counted as missing_prediction
        if p.target is None or not p.target.values:
            log.add("prediction_without_values", g.id)
            continue
        true = np.asarray(g.target.values, dtype=np.float64)
        try:
            predv = np.asarray(p.target.values, dtype=np.float64)
        except ValueError:
            log.add("ragged_prediction", g.id)
            continue
        if true.ndim != 2 or predv.ndim != 2 or predv.shape[1] != true.shape[1]:
            log.add("component_count_mismatch", f"{g.id}: {predv.shape} vs {true.shape}")
            continue
        if len(predv) != len(true):
            log.add("length_mismatch", f"{g.id}: {len(predv)} vs {len(true)} steps")
            n = min(len(predv), len(true))
            true, predv = true[:n], predv[:n]
        out.append((g.id, true, predv))
    return out


def evaluate_trajectories(gt: Sequence[Sample], pred: Sequence[Sample]) -> dict:
    """MSE and MAE per component and overall, over all scored time steps of all clips."""
    log = WarningLog()
    names = component_names(gt)
    pairs = trajectory_pairs(gt, pred, log)
    if pairs:
        err = np.concatenate([p - t for _, t, p in pairs])
        mse, mae = (err**2).mean(axis=0), np.abs(err).mean(axis=0)
        per = {n: {"mse": float(mse[i]), "mae": float(mae[i])} for i, n in enumerate(names)}
        overall = {"mse": float((err**2).mean()), "mae": float(np.abs(err).mean())}
    else:
        per, overall = {n: {"mse": None, "mae": None} for n in names}, {"mse": None, "mae": None}
    return {**overall, "per_component": per, "n_clips": len(pairs), "n_steps": int(sum(len(t) for _, t, _ in pairs)),
            **log.as_dict()}
