"""Pair predictions with ground truth by id, counting every problem instead of dropping it silently."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from jamspotter.data.records import Sample

MAX_EXAMPLES = 10


@dataclass
class WarningLog:
    """Counted warnings with a few examples each; lands in metrics.json as `warnings` / `warning_examples`."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, example: str | None = None, n: int = 1) -> None:
        """Count `n` occurrences of `kind`, keeping the first few examples."""
        self.counts[kind] += n
        if example is not None:
            ex = self.examples.setdefault(kind, [])
            if len(ex) < MAX_EXAMPLES:
                ex.append(example)

    def as_dict(self) -> dict[str, dict]:
        """`{"warnings": {kind: count}, "warning_examples": {kind: [...]}}` with sorted keys."""
        return {
            "warnings": {k: int(v) for k, v in sorted(self.counts.items())},
            "warning_examples": {k: self.examples[k] for k in sorted(self.examples)},
        }


def pair_by_id(
    gt: Sequence[Sample], pred: Sequence[Sample], log: WarningLog
) -> list[tuple[Sample, Sample | None]]:
    """`(gt, pred-or-None)` in GT order; missing predictions, unknown ids and duplicates are counted in `log`.

    Prediction parse problems carried in `pred.meta["parse_problems"]` (raw model text) are counted too.
    """
    by_id: dict[str, Sample] = {}
    for p in pred:
        if p.id in by_id:
            log.add("duplicate_prediction_id", p.id)  # the first line wins
            continue
        by_id[p.id] = p
        for problem in _flat(p.meta.get("parse_problems") or []):
            log.add("parse_problem", f"{p.id}: {problem}")
    gt_ids: set[str] = set()
    pairs: list[tuple[Sample, Sample | None]] = []
    for g in gt:
        if g.id in gt_ids:
            log.add("duplicate_gt_id", g.id)
            continue
        gt_ids.add(g.id)
        p = by_id.get(g.id)
        if p is None:
            log.add("missing_prediction", g.id)
        pairs.append((g, p))
    for pid in by_id:
        if pid not in gt_ids:
            log.add("prediction_without_gt", pid)
    return pairs


def _flat(items: object) -> list[str]:
    """Problems as a flat list of strings (a clip carries one list per frame)."""
    if isinstance(items, list | tuple):
        return [x for item in items for x in _flat(item)]
    return [str(items)]


def ratio(num: float, den: float) -> float | None:
    """`num / den`, or None when undefined (nothing to divide by): reports show it as n/a, never as 0."""
    return float(num) / float(den) if den else None


def prf(tp: int, fp: int, fn: int) -> dict[str, float | int | None]:
    """Precision, recall and F1 from counts; F1 = 2TP / (2TP + FP + FN), None only when all counts are 0."""
    return {"precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn), "f1": ratio(2 * tp, 2 * tp + fp + fn),
            "tp": int(tp), "fp": int(fp), "fn": int(fn)}
