"""Deterministic, stratified, group-aware train/val/test splits: the one split rule of every stage.

Samples that show the same picture (augmented copies of an image, frames of one clip, anything sharing
`meta["group"]`) always land in the same split, so no image leaks from training into evaluation.
Strata are the image label or dominant class, or the dominant jam class. The same seed and data
always give the same split. Training uses `train` (and unsplit) samples, selection `val`, reports `test`.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence

from jamspotter.data.records import Sample
from jamspotter.data.taxonomy import DEFAULT_TAXONOMY, Taxonomy
from jamspotter.errors import DataError

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
               if taxonomy.is_jam(o)]
        if not jam and sample.label and taxonomy.jam_risk(sample.label):
            jam = [sample.label]
        return dominant(jam) or "(no jam)"
    raise ValueError(f"by must be 'label' or 'jam', got {by!r}")


def group_key(sample: Sample) -> str:
    """What ties samples to one picture: `meta["group"]`, `meta["clip"]`, the video, the frames, the image.

    Augmented copies keep their source's image path, so they share its key.
    """
    meta = sample.meta or {}
    for key in ("group", "clip"):
        if meta.get(key):
            return f"{key}:{meta[key]}"
    if sample.video:
        return f"video:{sample.video}"
    if sample.frames:
        return "frames:" + "|".join(sample.frames)
    if sample.image:
        return f"image:{sample.image}"
    return f"id:{meta.get('augmented_from') or sample.id}"


def in_split(sample: Sample, split: str) -> bool:
    """True when `sample` belongs to `split`; unsplit samples count as training data only."""
    return sample.split == split or (split == "train" and sample.split is None)


def select_split(samples: Sequence[Sample], split: str | None) -> list[Sample]:
    """The samples of one split (`None`: all of them); unsplit samples belong to `train`."""
    if split is None:
        return list(samples)
    if split not in SPLIT_NAMES:
        raise DataError(f"split must be one of {', '.join(SPLIT_NAMES)}, got {split!r}")
    return [s for s in samples if in_split(s, split)]


def holdout(samples: Sequence[Sample], fraction: float, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """(kept, held out): about `fraction` of the samples held out, whole groups at a time, seeded."""
    if not samples or fraction <= 0:
        return list(samples), []
    marked = assign_splits(samples, (1 - fraction, fraction), seed=seed)
    kept = [s for s, m in zip(samples, marked, strict=True) if m.split == "train"]
    held = [s for s, m in zip(samples, marked, strict=True) if m.split == "val"]
    return kept, held


def _cut(n: int, ratios: Sequence[float]) -> list[int]:
    """Split n items by ratios with largest remainder (ties to the earlier split)."""
    raw = [n * r for r in ratios]
    counts = [int(x) for x in raw]
    order = sorted(range(len(ratios)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def parse_ratios(text: str) -> tuple[float, ...]:
    """`"0.8,0.1,0.1"` -> (0.8, 0.1, 0.1); must be 1-3 finite non-negative numbers summing to 1."""
    try:
        ratios = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"ratios must be numbers like 0.8,0.1,0.1, got {text!r}") from None
    if (not 1 <= len(ratios) <= len(SPLIT_NAMES) or not all(math.isfinite(r) and r >= 0 for r in ratios)
            or abs(sum(ratios) - 1) > 1e-6):
        raise ValueError(f"ratios must be 1-3 finite non-negative numbers summing to 1, got {text!r}")
    return ratios


def assign_splits(samples: Sequence[Sample], ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                  by: str = "label", taxonomy: Taxonomy = DEFAULT_TAXONOMY) -> list[Sample]:
    """Copies of `samples` (same order) with `split` set to train/val/test, stratified by `by`, by group.

    Samples are first gathered into groups (`group_key`); a group's stratum is that of its first
    non-augmented member. Each stratum's groups are shuffled (seeded) and spread evenly over [0, 1);
    all groups are then ordered by that position and cut by the ratios. Every stratum lands in each
    split in proportion, and the split sizes (in groups) match the ratios even when strata are tiny.
    """
    members: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        members[group_key(s)].append(i)
    strata: dict[str, list[str]] = defaultdict(list)
    for key, idx in members.items():
        lead = next((i for i in idx if "augmented_from" not in (samples[i].meta or {})), idx[0])
        strata[stratum(samples[lead], by, taxonomy)].append(key)
    keyed: list[tuple[float, str, str]] = []
    for name in sorted(strata):
        groups = sorted(strata[name])
        random.Random(f"{seed}:{name}").shuffle(groups)
        keyed += [((k + 0.5) / len(groups), name, g) for k, g in enumerate(groups)]
    keyed.sort()
    names = [name for name, count in zip(SPLIT_NAMES, _cut(len(keyed), ratios), strict=False) for _ in range(count)]
    split_of = {i: name for (_, _, g), name in zip(keyed, names, strict=True) for i in members[g]}
    return [s.model_copy(update={"split": split_of[i]}) for i, s in enumerate(samples)]
