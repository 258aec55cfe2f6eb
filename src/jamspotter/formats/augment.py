"""Instruction augmentation from box labels: counting and region checks (full / partial / none).

Each augmented sample is a copy of its source image's `Sample` with ONE `QATurn` (model-agnostic text,
regions as `<bbox>[...]</bbox>` in original pixels, see `tasks`) and `meta` =
`{"task": kind, "augmented_from": id, "region": [...]}`. Answers are computed from the boxes, never
from the sampling intent: a region drawn to hold one object fully also reports every other object
it shows, with its true visible percentage; `none` regions touch no labelled box at all.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from jamspotter.data.boxes import box_area, clip_box
from jamspotter.data.records import BoxObject, QATurn, Sample
from jamspotter.formats.contract import dataset_classes, default_classes
from jamspotter.formats.tasks import count_answer, count_question, region_answer, region_question

KINDS: tuple[str, ...] = ("count", "full", "partial", "none")
MIN_REGION = 4.0  # pixels; smaller regions say nothing useful
COUNT_CLASSES = 8  # classes one counting question asks about (a longer list makes a long answer)


def _disjoint(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when the boxes share no point at all (touching edges count as disjoint; degenerate boxes count)."""
    return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def _count_turn(sample: Sample, rng: random.Random, classes: Sequence[str]) -> QATurn:
    """Count up to COUNT_CLASSES classes drawn from the class list without looking at the image.

    Choosing the classes from what the image holds would name the answer in the question; drawn blind,
    absent classes (answer 0) come up as often as they do in the data.
    """
    asked = rng.sample(list(classes), k=min(len(classes), COUNT_CLASSES))
    return QATurn(question=count_question(asked), answer=count_answer(sample.objects, asked))


def _full_region(obj: BoxObject, w: int, h: int, rng: random.Random) -> list[float]:
    x1, y1, x2, y2 = obj.bbox
    bw, bh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    m = [rng.uniform(0, 0.6) * s for s in (bw, bh, bw, bh)]
    return clip_box([x1 - m[0], y1 - m[1], x2 + m[2], y2 + m[3]], w, h)


def _partial_region(obj: BoxObject, w: int, h: int, rng: random.Random) -> list[float]:
    """A region that cuts the box along one side, keeping 15-85% of it."""
    x1, y1, x2, y2 = obj.bbox
    keep = rng.uniform(0.15, 0.85)
    pad = [rng.uniform(0, 0.4) * s for s in (x2 - x1, y2 - y1)]
    side = rng.choice("lrtb")
    if side in "lr":
        cut = x1 + keep * (x2 - x1) if side == "l" else x2 - keep * (x2 - x1)
        region = [x1 - pad[0], y1 - pad[1], cut, y2 + pad[1]] if side == "l" else [cut, y1 - pad[1], x2 + pad[0],
                                                                                  y2 + pad[1]]
    else:
        cut = y1 + keep * (y2 - y1) if side == "t" else y2 - keep * (y2 - y1)
        region = [x1 - pad[0], y1 - pad[1], x2 + pad[0], cut] if side == "t" else [x1 - pad[0], cut, x2 + pad[0],
                                                                                  y2 + pad[1]]
    return clip_box(region, w, h)


def _empty_region(objects: Sequence[BoxObject], w: int, h: int, rng: random.Random,
                  tries: int = 60) -> list[float] | None:
    """A region that overlaps no labelled box (rejection sampling), or None when none was found."""
    for _ in range(tries):
        rw, rh = rng.uniform(0.08, 0.4) * w, rng.uniform(0.08, 0.4) * h
        if rw < MIN_REGION or rh < MIN_REGION:
            continue
        x, y = rng.uniform(0, w - rw), rng.uniform(0, h - rh)
        region = [x, y, x + rw, y + rh]
        if all(_disjoint(region, o.bbox) for o in objects):
            return region
    return None


def augment_sample(sample: Sample, kinds: Sequence[str], per_image: int, rng: random.Random,
                   classes: Sequence[str] | None = None) -> list[Sample]:
    """Up to `per_image` augmented copies of one image sample (kinds taken in turn; impossible ones skipped).

    `classes`: the class list count questions draw from (default: the taxonomy's classes).
    This is the one generator of count and region tasks: `data augment` and training both call it.
    """
    classes = list(classes) if classes else default_classes()
    if sample.image is None or not sample.width or not sample.height:
        return []
    w, h = int(sample.width), int(sample.height)
    objects = [o.model_copy(update={"bbox": clip_box(o.bbox, w, h)}) for o in sample.objects]
    usable = [o for o in objects if box_area(o.bbox) > 0]
    order = list(kinds)
    rng.shuffle(order)
    out: list[Sample] = []
    for k in range(per_image):
        kind = order[k % len(order)]
        region: list[float] | None = None
        if kind == "count":
            turn = _count_turn(sample, rng, classes)
        else:
            if kind == "none":
                region = _empty_region(objects, w, h, rng)
            elif usable:
                obj = rng.choice(usable if kind == "full" else [o for o in usable if min(
                    o.bbox[2] - o.bbox[0], o.bbox[3] - o.bbox[1]) >= 2] or usable)
                region = _full_region(obj, w, h, rng) if kind == "full" else _partial_region(obj, w, h, rng)
            if region is None or box_area(region) <= 0:
                continue
            turn = QATurn(question=region_question(region), answer=region_answer(objects, region))
        meta = {**sample.meta, "task": kind, "augmented_from": sample.id}
        if region is not None:
            meta["region"] = region
        out.append(sample.model_copy(update={"id": f"{sample.id}-aug{k}-{kind}", "qa": [turn], "meta": meta,
                                             "objects": objects}))
    return out


def augment_samples(samples: Iterable[Sample], kinds: Sequence[str] = KINDS, per_image: int = 4,
                    seed: int = 0) -> list[Sample]:
    """Augmented copies for every image sample (clips and samples without a size are skipped).

    Count questions draw from the dataset's class list (the taxonomy's classes plus every label in the data).
    """
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown augmentation kinds {bad}; choose from {', '.join(KINDS)}")
    samples = list(samples)
    classes = dataset_classes(samples)
    rng = random.Random(seed)
    out: list[Sample] = []
    for s in samples:
        out.extend(augment_sample(s, kinds, per_image, rng, classes))
    return out
