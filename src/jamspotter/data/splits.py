"""Deterministic stratified train/val/test splits.

Strata are the image label or dominant class, or the dominant jam class. The same seed and data
always give the same split.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence

from jamspotter.data.records import Sample
from jamspotter.data.taxonomy import DEFAULT_TAXONOMY, Taxonomy

SPLIT_NAMES = ("train", "val", "test")


def stratum(sample: Sample, by: str = "label", taxonomy: Taxonomy = DEFAULT_TAXONOMY) -> str:
    """The key a sample is stratified on.

    `label`: the image label, else the most frequent object label, else `(none)`.
    `jam`: the most frequent jam-risk object label (or a jam-risk image label), else `(no jam)`.
    """
    def dominant(labels: list[str]) -> str | None:
        if not labels:
            return None
        counts = Counter(labels)
        return min(counts, key=lambda k: (-counts[k], k))  # ties -> alphabetical, so it is deterministic

    if by == "label":
        return sample.label or dominant([o.label for o in sample.objects]) or "(none)"
    if by == "jam":
        jam = [o.label for o in sample.objects
               if (o.jam_risk if o.jam_risk is not None else taxonomy.jam_risk(o.label))]
        if not jam and sample.label and taxonomy.jam_risk(sample.label):
            jam = [sample.label]
        return dominant(jam) or "(no jam)"
    raise ValueError(f"by must be 'label' or 'jam', got {by!r}")


def _cut(n: int, ratios: Sequence[float]) -> list[int]:
    """Split n items by ratios with largest remainder (ties to the earlier split)."""
    raw = [n * r for r in ratios]
    counts = [int(x) for x in raw]
    order = sorted(range(len(ratios)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def parse_ratios(text: str) -> tuple[float, ...]:
    """`"0.8,0.1,0.1"` -> (0.8, 0.1, 0.1); must be 1-3 non-negative numbers summing to 1."""
    try:
        ratios = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"ratios must be numbers like 0.8,0.1,0.1, got {text!r}") from None
    if not 1 <= len(ratios) <= len(SPLIT_NAMES) or any(r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise ValueError(f"ratios must be 1-3 non-negative numbers summing to 1, got {text!r}")
    return ratios


def assign_splits(samples: Sequence[Sample], ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                  by: str = "label", taxonomy: Taxonomy = DEFAULT_TAXONOMY) -> list[Sample]:
    """Copies of `samples` (same order) with `split` set to train/val/test, stratified by `by`.

    Each stratum is shuffled (seeded) and its items spread evenly over [0, 1); all items are then
    ordered by that position and cut by the ratios. Every stratum lands in each split in proportion,
    and the split sizes match the ratios overall even when strata are tiny.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        groups[stratum(s, by, taxonomy)].append(i)
    keyed: list[tuple[float, str, int]] = []
    for key in sorted(groups):
        idx = sorted(groups[key], key=lambda i: samples[i].id)
        random.Random(f"{seed}:{key}").shuffle(idx)
        keyed += [((k + 0.5) / len(idx), key, i) for k, i in enumerate(idx)]
    keyed.sort()
    names = [name for name, count in zip(SPLIT_NAMES, _cut(len(keyed), ratios), strict=False) for _ in range(count)]
    split_of = {i: name for (_, _, i), name in zip(keyed, names, strict=True)}
    return [s.model_copy(update={"split": split_of[i]}) for i, s in enumerate(samples)]
