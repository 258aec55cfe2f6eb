"""COCO mAP@[.5:.95] and mAP@.5 through pycocotools, with the COCO objects built in memory.

Image ids are 1..N in ground-truth order and category ids 1..K over the sorted union of labels, the
same for ground truth and detections. Ground-truth areas are box areas and iscrowd is 0. A run
with no detections at all still goes through COCOeval (loadRes cannot take an empty list, so the
empty result set is built directly). pycocotools' prints are captured.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

from jamspotter.data.boxes import xyxy_to_xywh
from jamspotter.data.records import Sample

STAT_NAMES = ("map", "map50", "map75", "map_small", "map_medium", "map_large",
              "mar1", "mar10", "mar100", "mar_small", "mar_medium", "mar_large")


def coco_dicts(pairs: Sequence[tuple[Sample, Sample | None]]) -> tuple[dict, list[dict], list[str]]:
    """COCO ground-truth dataset, detection results list and the label of each category id (index + 1)."""
    labels = sorted({o.label for g, p in pairs for o in g.objects + (p.objects if p else [])})
    cat = {name: i + 1 for i, name in enumerate(labels)}
    images, anns, dets = [], [], []
    for img_id, (g, p) in enumerate(pairs, 1):
        image = {"id": img_id, "file_name": g.image or g.id}
        if g.width and g.height:
            image.update(width=g.width, height=g.height)
        images.append(image)
        for o in g.objects:
            x, y, w, h = xyxy_to_xywh(o.bbox)
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat[o.label], "bbox": [x, y, w, h],
                         "area": max(w, 0.0) * max(h, 0.0), "iscrowd": 0})
        for o in p.objects if p else []:
            dets.append({"image_id": img_id, "category_id": cat[o.label], "bbox": xyxy_to_xywh(o.bbox),
                         "score": 1.0 if o.score is None else float(o.score)})
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
