"""Benchmark: detection evaluation of 10,000 images with ~10 boxes each.

Prints the time of our matching + P/R/F1 (vectorised per image), of pycocotools mAP, and of a simple
reference measured in the same run (pure-Python greedy matching with the scalar `iou` per pair, on a
subset, scaled to the full set), with the ratio. Also checks our TP count against the reference's.

    .venv/bin/python benchmarks/bench_eval.py [--images 10000] [--ref-images 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from jamspotter.data.boxes import iou
from jamspotter.data.records import Sample
from jamspotter.evaluate.coco import coco_map
from jamspotter.evaluate.detection import evaluate_detection_run
from jamspotter.evaluate.pairing import WarningLog, pair_by_id

LABELS = ("rope", "plastic film", "hose", "cardboard", "paper", "metal")


def make_data(n: int, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """GT with ~10 boxes per image; predictions jittered (some relabelled, some dropped) plus a few false positives."""
    rng = np.random.default_rng(seed)
    gt, pred = [], []
    for i in range(n):
        k = int(rng.integers(6, 15))
        xy = rng.uniform(0, 1100, (k, 2))
        wh = rng.uniform(20, 180, (k, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        labels = rng.integers(0, len(LABELS), k)
        keep = rng.random(k) < 0.85
        pboxes = boxes[keep] + rng.normal(0, 6, (keep.sum(), 4))
        plabels = np.where(rng.random(keep.sum()) < 0.9, labels[keep], rng.integers(0, len(LABELS), keep.sum()))
        n_fp = int(rng.integers(0, 3))
        fxy = rng.uniform(0, 1100, (n_fp, 2))
        pboxes = np.concatenate([pboxes, np.concatenate([fxy, fxy + 60], axis=1)])
        plabels = np.concatenate([plabels, rng.integers(0, len(LABELS), n_fp)])
        scores = rng.random(len(pboxes))
        gt.append(Sample.model_construct(id=f"img{i}", width=1280, height=1280, objects=[
            _box(LABELS[c], b) for c, b in zip(labels, boxes, strict=True)]))
        pred.append(Sample.model_construct(id=f"img{i}", objects=[
            _box(LABELS[c], b, s) for c, b, s in zip(plabels, pboxes, scores, strict=True)]))
    return gt, pred


def _box(label: str, b: np.ndarray, score: float | None = None):
    from jamspotter.data.records import BoxObject

    # model_construct: skip validation, the data is well-formed by construction and building stays quick
    return BoxObject.model_construct(label=label, bbox=[float(v) for v in b],
                                     score=None if score is None else float(score))


def reference_tp(gt: list[Sample], pred: list[Sample], thr: float = 0.5) -> int:
    """The simple reference: per image, predictions by score, scalar `iou` against every free same-class GT box."""
    tp = 0
    for g, p in zip(gt, pred, strict=True):
        free = [True] * len(g.objects)
        for o in sorted(p.objects, key=lambda o: -(o.score or 1.0)):
            best, best_i = thr, -1
            for j, t in enumerate(g.objects):
                if free[j] and t.label == o.label:
                    v = iou(o.bbox, t.bbox)
                    if v >= best:
                        best, best_i = v, j
            if best_i >= 0:
                free[best_i] = False
                tp += 1
    return tp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--ref-images", type=int, default=1_000, help="subset for the pure-Python reference")
    args = ap.parse_args()

    t0 = time.perf_counter()
    gt, pred = make_data(args.images)
    n_gt, n_pred = sum(len(s.objects) for s in gt), sum(len(s.objects) for s in pred)
    print(f"data: {args.images} images, {n_gt} GT boxes, {n_pred} predictions "
          f"(built in {time.perf_counter() - t0:.1f} s)")

    t0 = time.perf_counter()
    ev = evaluate_detection_run(gt, pred, 0.5, coco=False)
    t_ours = time.perf_counter() - t0
    m = ev.metrics
    print(f"ours   matching + P/R/F1 + per class + jam recall: {t_ours:6.2f} s   "
          f"P {m['precision']:.3f} R {m['recall']:.3f} F1 {m['f1']:.3f} TP {m['tp']}")

    t0 = time.perf_counter()
    c = coco_map(pair_by_id(gt, pred, WarningLog()))
    t_coco = time.perf_counter() - t0
    print(f"pycocotools mAP (COCOeval evaluate+accumulate):    {t_coco:6.2f} s   "
          f"mAP {c['map']:.3f} mAP50 {c['map50']:.3f}")

    n_ref = min(args.ref_images, args.images)
    t0 = time.perf_counter()
    ref_sub = reference_tp(gt[:n_ref], pred[:n_ref])
    t_ref = (time.perf_counter() - t0) * args.images / n_ref
    t0 = time.perf_counter()
    ours_sub = evaluate_detection_run(gt[:n_ref], pred[:n_ref], 0.5, coco=False).metrics["tp"]
    t_ours_sub = time.perf_counter() - t0
    print(f"reference pure-Python per-pair iou loop ({n_ref} images, scaled to {args.images}): {t_ref:6.2f} s")
    print(f"ratio reference / ours: {t_ref / t_ours:.1f}x   (on the subset: TP ours {ours_sub} vs reference {ref_sub}; "
          f"ours {t_ours_sub:.2f} s)")
    print(f"total with mAP: {t_ours + t_coco:.2f} s")


if __name__ == "__main__":
    main()
