"""Dataset statistics: classes, boxes per image, box sizes (COCO areas), jam-risk share, splits.

`dataset_stats` returns plain numbers (JSON-able, testable); `print_stats` draws them as rich tables.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from jamspotter.data.boxes import box_area
from jamspotter.data.records import Sample
from jamspotter.data.taxonomy import DEFAULT_TAXONOMY, Taxonomy

# COCO area ranges (px^2): small < 32^2 <= medium < 96^2 <= large
SMALL, MEDIUM = 32**2, 96**2
SIDE_BINS = (0, 16, 32, 64, 128, 256, 512, 1024)  # histogram of sqrt(area) in px


def dataset_stats(samples: Sequence[Sample], taxonomy: Taxonomy = DEFAULT_TAXONOMY) -> dict:
    """Counts for a dataset; every number the `stats` command prints comes from here."""
    objects = [o for s in samples for o in s.objects]
    classes = Counter(o.label for o in objects)
    image_labels = Counter(s.label for s in samples if s.label is not None)
    per_image = Counter(len(s.objects) for s in samples)
    sizes = Counter()
    side_hist = [0] * len(SIDE_BINS)
    for o in objects:
        area = box_area(o.bbox)
        sizes["small" if area < SMALL else "medium" if area < MEDIUM else "large"] += 1
        side = math.sqrt(area)
        side_hist[max(i for i, b in enumerate(SIDE_BINS) if side >= b)] += 1
    jam_objects = sum(taxonomy.is_jam(o) for o in objects)
    jam_images = sum(any(taxonomy.is_jam(o) for o in s.objects)
                     or (s.label is not None and taxonomy.jam_risk(s.label)) for s in samples)
    return {
        "samples": len(samples),
        "objects": len(objects),
        "splits": dict(sorted(Counter(s.split or "(none)" for s in samples).items())),
        "classes": dict(classes.most_common()),
        "jam_classes": sorted(c for c in classes if taxonomy.jam_risk(c)),
        "image_labels": dict(image_labels.most_common()),
        "boxes_per_image": {str(k): per_image[k] for k in sorted(per_image)},
        "mean_boxes_per_image": len(objects) / len(samples) if samples else 0.0,
        "box_sizes": {k: sizes[k] for k in ("small", "medium", "large")},
        "box_side_histogram": {
            (f"{lo}-{SIDE_BINS[i + 1]}" if i + 1 < len(SIDE_BINS) else f"{lo}+"): side_hist[i]
            for i, lo in enumerate(SIDE_BINS)
        },
        "jam_object_share": jam_objects / len(objects) if objects else 0.0,
        "jam_image_share": jam_images / len(samples) if samples else 0.0,
        "qa_turns": sum(len(s.qa) for s in samples),
        "clips": sum(s.video is not None or s.frames is not None for s in samples),
        "flags": dict(Counter(f for s in samples for f in s.flags)),
    }


def text_bar(value: int, peak: int, width: int = 30) -> str:
    """A bar of block characters proportional to value/peak."""
    return "█" * (round(width * value / peak) if peak else 0)


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    table = Table(title=title, title_justify="left")
    for i, c in enumerate(columns):
        table.add_column(c, justify="left" if i == 0 or c == "" else "right")
    for r in rows:
        table.add_row(*(f"{v:.1%}" if isinstance(v, float) else str(v) for v in r))
    return table


def print_stats(stats: dict, console: Console | None = None, top: int = 30) -> None:
    """Draw the statistics as rich tables (classes capped at `top` rows)."""
    console = console or Console()
    n, m = stats["samples"], stats["objects"]
    console.print(_table("dataset", ["", "value"], [
        ("samples", n), ("objects", m), ("mean boxes / image", f"{stats['mean_boxes_per_image']:.2f}"),
        ("jam-risk objects", stats["jam_object_share"]), ("samples with jam risk", stats["jam_image_share"]),
        ("QA turns", stats["qa_turns"]), ("clips", stats["clips"]),
        *((f"flag {k}", v) for k, v in stats["flags"].items()),
    ]))
    console.print(_table("splits", ["split", "samples", "share"],
                         [(k, v, v / n if n else 0.0) for k, v in stats["splits"].items()]))
    jam = set(stats["jam_classes"])
    if stats["classes"]:
        rows = [(c, "yes" if c in jam else "", v, v / m) for c, v in list(stats["classes"].items())[:top]]
        more = len(stats["classes"]) - top
        console.print(_table(f"classes ({len(stats['classes'])}" + (f", top {top})" if more > 0 else ")"),
                             ["class", "jam risk", "objects", "share"], rows))
    if stats["image_labels"]:
        console.print(_table("image labels", ["label", "samples", "share"],
                             [(c, v, v / n) for c, v in stats["image_labels"].items()]))
    if m:
        peak = max(stats["boxes_per_image"].values())
        console.print(_table("boxes per image", ["boxes", "images", ""],
                             [(k, v, text_bar(v, peak)) for k, v in stats["boxes_per_image"].items()]))
        console.print(_table("box sizes (COCO areas)", ["size", "objects", "share"],
                             [(k, v, v / m) for k, v in stats["box_sizes"].items()]))
        peak = max(stats["box_side_histogram"].values())
        console.print(_table("box side sqrt(area), px", ["px", "objects", ""],
                             [(k, v, text_bar(v, peak)) for k, v in stats["box_side_histogram"].items()]))
