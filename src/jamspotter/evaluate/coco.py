"""COCO mAP@[.5:.95] and mAP@.5 through pycocotools, with the COCO objects built in memory.

Image ids are 1..N in ground-truth order and category ids 1..K over the sorted union of labels, the
same for ground truth and detections. Annotation ids start at 1 and are unique (pycocotools treats
id 0 as "unmatched" and indexes annotations by id). Ground-truth areas are box areas and iscrowd is 0. A run
with no detections at all still goes through COCOeval (loadRes cannot take an empty list, so the
empty result set is built directly). pycocotools' prints are captured.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

from jamspotter.data.records import BoxObject, Sample

STAT_NAMES = ("map", "map50", "map75", "map_small", "map_medium", "map_large",
              "mar1", "mar10", "mar100", "mar_small", "mar_medium", "mar_large")


def _xywh(objs: Sequence[BoxObject]) -> list[list[float]]:
    """xyxy -> COCO xywh for many boxes at once (the arithmetic of `xyxy_to_xywh`).

    Inverted boxes get width/height 0, as `iou_matrix` sees them; a negative COCO area would otherwise fall
    outside every area range and pycocotools would ignore the box instead of counting it as a false positive.
    """
    b = np.array([o.bbox for o in objs], dtype=np.float64).reshape(-1, 4)
    b[:, 2:] = np.maximum(b[:, 2:] - b[:, :2], 0.0)
    return b.tolist()


def coco_dicts(pairs: Sequence[tuple[Sample, Sample | None]]) -> tuple[dict, list[dict], list[str]]:
    """COCO ground-truth dataset, detection results list and the label of each category id (index + 1)."""
    g_rows = [(i, o) for i, (g, _) in enumerate(pairs, 1) for o in g.objects]
    p_rows = [(i, o) for i, (_, p) in enumerate(pairs, 1) if p for o in p.objects]
    labels = sorted({o.label for _, o in g_rows} | {o.label for _, o in p_rows})
    cat = {name: i + 1 for i, name in enumerate(labels)}
    images = []
    for img_id, (g, _) in enumerate(pairs, 1):
        image = {"id": img_id, "file_name": g.image or g.id}
        if g.width and g.height:
            image.update(width=g.width, height=g.height)
        images.append(image)
    anns = [{"id": n, "image_id": i, "category_id": cat[o.label], "bbox": b, "area": b[2] * b[3],
             "iscrowd": 0} for n, ((i, o), b) in enumerate(zip(g_rows, _xywh([o for _, o in g_rows]), strict=True), 1)]
    dets = [{"image_id": i, "category_id": cat[o.label], "bbox": b, "score": 1.0 if o.score is None else float(o.score)}
            for (i, o), b in zip(p_rows, _xywh([o for _, o in p_rows]), strict=True)]
    gt = {"images": images, "annotations": anns, "categories": [{"id": i, "name": n} for n, i in cat.items()]}
    return gt, dets, labels


def coco_map(pairs: Sequence[tuple[Sample, Sample | None]]) -> dict:
    """pycocotools bbox metrics: `map`, `map50`, the other COCO stats, per-class AP / AP50 (None = undefined).

    `coco_summary` keeps pycocotools' own printout for the report.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_dict, dets, labels = coco_dicts(pairs)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        coco_gt = COCO()
        coco_gt.dataset = gt_dict
        coco_gt.createIndex()
        if dets:
            coco_dt = coco_gt.loadRes(dets)
        else:  # what loadRes would return for an empty list, if it accepted one
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt_dict["images"], "categories": gt_dict["categories"], "annotations": []}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = {name: (None if v < 0 else float(v)) for name, v in zip(STAT_NAMES, ev.stats, strict=True)}
    precision = ev.eval["precision"]  # [iou thresholds, recall points, categories, areas, max dets]
    per_class = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p_all, p50 = precision[:, :, k, 0, -1], precision[0, :, k, 0, -1]
        per_class[labels[cat_id - 1]] = {
            "ap": float(np.mean(p_all[p_all > -1])) if (p_all > -1).any() else None,
            "ap50": float(np.mean(p50[p50 > -1])) if (p50 > -1).any() else None,
        }
    return {**stats, "per_class": per_class, "coco_summary": log.getvalue()}
