"""Benchmark: detection evaluation of 10,000 images with ~10 boxes each.

Prints the time of our matching + P/R/F1 (vectorised per image), of COCO mAP through pycocotools (the
reference, with the garbage collector on as before and paused as now) and through faster-coco-eval (the
default backend when installed) with their ratio and largest difference, and of a simple reference measured
in the same run (pure-Python greedy matching with the scalar `iou` per pair, on a subset, scaled to the full
set), with the ratio. Also checks our TP count against the reference's.

    .venv/bin/python benchmarks/bench_eval.py [--images 10000] [--ref-images 1000] [--repeat 3] [--results-dir DIR]

Results: benchmarks/results/eval.json (through benchmarks/_results.py).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _results import Ratio, add_results_arg, ratio_table, write_results

from jamspotter.data.boxes import iou
from jamspotter.data.records import Sample
from jamspotter.evaluate.coco import RUNNERS, STAT_NAMES, coco_dicts, coco_map, faster_available
from jamspotter.evaluate.detection import evaluate_detection_run
from jamspotter.evaluate.matching import match_arrays
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


def reference_tp(gt: list[Sample], pred: list[Sample], thr: float = 0.5, label_first: bool = False) -> int:
    """Simple pure-Python reference: per image, scalar `iou` per (prediction, GT) pair, then greedy by score.

    `label_first=False` computes the IoU of every pair (the naive loop); `True` skips other-class pairs first.
    """
    tp = 0
    for g, p in zip(gt, pred, strict=True):
        free = [True] * len(g.objects)
        for o in sorted(p.objects, key=lambda o: -(1.0 if o.score is None else o.score)):
            if label_first:
                ious = [iou(o.bbox, t.bbox) if t.label == o.label else -1.0 for t in g.objects]
            else:
                ious = [iou(o.bbox, t.bbox) for t in g.objects]
                ious = [v if t.label == o.label else -1.0 for v, t in zip(ious, g.objects, strict=True)]
            best, best_j = -1.0, -1
            for j, v in enumerate(ious):
                if free[j] and v > best:
                    best, best_j = v, j
            if best_j >= 0 and best >= thr:
                free[best_j] = False
                tp += 1
    return tp


def per_image_tp(gt: list[Sample], pred: list[Sample], thr: float = 0.5) -> int:
    """Our matching called once per image (one `iou_matrix` per image) instead of batched over images."""
    labels = {o.label for s in gt + pred for o in s.objects}
    ids = {name: i for i, name in enumerate(sorted(labels))}
    tp = 0
    for g, p in zip(gt, pred, strict=True):
        p2g, _ = match_arrays(np.array([o.bbox for o in g.objects]).reshape(-1, 4),
                              np.array([ids[o.label] for o in g.objects]),
                              np.array([o.bbox for o in p.objects]).reshape(-1, 4),
                              np.array([ids[o.label] for o in p.objects]),
                              np.array([1.0 if o.score is None else o.score for o in p.objects]), thr)
        tp += int((p2g >= 0).sum())
    return tp


def max_map_diff(a: dict, b: dict) -> float:
    """Largest absolute difference of two `coco_map` results over the 12 stats and per-class AP / AP50."""
    def num(v: float | None) -> float:
        return -1.0 if v is None else v  # COCOeval's "undefined"

    pairs = [(a[k], b[k]) for k in STAT_NAMES] + [(a["per_class"][n][k], c[k]) for n, c in b["per_class"].items()
                                                  for k in ("ap", "ap50")]
    return max(abs(num(x) - num(y)) for x, y in pairs)


def timed(fn, *args, repeat: int = 1, **kw):  # noqa: ANN001, ANN002, ANN003, ANN201
    """(result, best wall time of `repeat` runs): the best run is the least disturbed by other load."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        best = min(best, time.perf_counter() - t0)
    return out, best


def main(argv: list[str] | None = None) -> Path:
    """Run the benchmark, print its table, write eval.json; returns the path written."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--ref-images", type=int, default=1_000, help="subset for the pure-Python reference")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs (pycocotools: one run)")
    add_results_arg(ap)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    gt, pred = make_data(args.images)
    n_gt, n_pred = sum(len(s.objects) for s in gt), sum(len(s.objects) for s in pred)
    print(f"data: {args.images} images, {n_gt} GT boxes, {n_pred} predictions "
          f"(built in {time.perf_counter() - t0:.1f} s)")

    ev, t_ours = timed(evaluate_detection_run, gt, pred, 0.5, coco=False, repeat=args.repeat)
    m = ev.metrics
    print(f"ours: matching + P/R/F1 + per class + jam recall + PR curve   {t_ours:6.2f} s   "
          f"P {m['precision']:.3f} R {m['recall']:.3f} F1 {m['f1']:.3f} TP {m['tp']}")
    pairs = pair_by_id(gt, pred, WarningLog())
    print("COCO mAP (build COCO dicts in memory, loadRes, evaluate, accumulate, summarize):")
    _, t_gc_on = timed(lambda: RUNNERS["pycocotools"](*coco_dicts(pairs)[:2]))
    print(f"  {'pycocotools, garbage collector on (before)':<48}{t_gc_on:6.2f} s")
    ref, t_ref = timed(coco_map, pairs, "pycocotools")
    print(f"  {'pycocotools, GC paused':<48}{t_ref:6.2f} s   "
          f"mAP {ref['map']:.4f} mAP50 {ref['map50']:.4f} mAR100 {ref['mar100']:.4f}")
    t_map = t_ref
    ratios: list[Ratio] = []
    results: dict = {"seconds_ours_prf1": t_ours, "seconds_pycocotools_gc_on": t_gc_on, "seconds_pycocotools": t_ref,
                     "ours": {k: m[k] for k in ("precision", "recall", "f1", "tp")},
                     "pycocotools": {k: ref[k] for k in ("map", "map50", "mar100")}}
    checks: dict = {}
    if faster_available():
        fast, t_fast = timed(coco_map, pairs, "faster", repeat=args.repeat)
        diff = max_map_diff(fast, ref)
        print(f"  {'faster-coco-eval ' + fast['map_backend_version'] + ', GC paused':<48}{t_fast:6.2f} s   "
              f"mAP {fast['map']:.4f} mAP50 {fast['map50']:.4f} mAR100 {fast['mar100']:.4f}   "
              f"max |diff| vs pycocotools (12 stats, per-class AP/AP50) {diff:.1e}")
        print(f"  ratio: faster-coco-eval is {t_ref / t_fast:.1f}x pycocotools (GC paused), "
              f"{t_gc_on / t_fast:.1f}x pycocotools as before")
        t_map = t_fast
        ratios += [Ratio("COCO mAP: faster-coco-eval vs pycocotools", t_fast, t_ref, "s", "pycocotools, GC paused",
                         higher_is_better=False),
                   Ratio("COCO mAP: faster-coco-eval vs pycocotools+GC", t_fast, t_gc_on, "s",
                         "pycocotools, GC on", higher_is_better=False)]
        results["seconds_faster_coco_eval"] = t_fast
        checks["max_abs_diff_faster_vs_pycocotools"] = diff
    else:
        print("  faster-coco-eval not installed (pip install faster-coco-eval): skipped")
    ev_all, t_all = timed(evaluate_detection_run, gt, pred, 0.5, coco=True, repeat=1)
    results["seconds_total_with_map"] = t_all
    results["map_backend"] = ev_all.metrics["map_backend"]
    print(f"total, evaluate_detection_run with mAP ({ev_all.metrics['map_backend']}, default backend): {t_all:.2f} s "
          f"(sum of the parts above {t_ours + t_map:.2f} s)")

    n = min(args.ref_images, args.images)
    scale = args.images / n
    sub_gt, sub_pred = gt[:n], pred[:n]
    ours_sub, t_sub = timed(lambda: evaluate_detection_run(sub_gt, sub_pred, 0.5, coco=False).metrics["tp"],
                            repeat=args.repeat)
    print(f"\nreferences on the first {n} images, times scaled to {args.images} (ours on it: {t_sub * scale:.2f} s):")
    for name, fn in (("naive pure Python, scalar iou for every pair", lambda: reference_tp(sub_gt, sub_pred)),
                     ("pure Python, scalar iou for same-class pairs", lambda: reference_tp(sub_gt, sub_pred,
                                                                                           label_first=True)),
                     ("our matching, one iou_matrix per image", lambda: per_image_tp(sub_gt, sub_pred))):
        tp, t = timed(fn, repeat=args.repeat)
        print(f"  {name:<48} {t * scale:6.2f} s   ratio to ours (full metrics) {t / t_sub:5.1f}x   "
              f"TP {tp} (ours {ours_sub}{', same' if tp == ours_sub else ', DIFFERENT'})")
        short = {"naive": "naive pure Python", "pure": "same-class pure Python", "our": "per-image matching"}
        ratios.append(Ratio(f"P/R/F1: ours vs {short[name.split()[0]]}", t_sub * scale, t * scale, "s",
                            name, higher_is_better=False))
        checks[f"tp_same: {name}"] = tp == ours_sub
    print()
    print(ratio_table(ratios))
    return write_results("eval", script=__file__, argv=argv, settings=vars(args), results=results, ratios=ratios,
                         results_dir=args.results_dir,
                         checks=checks)

if __name__ == "__main__":
    main()
