"""Clip detection: score each labelled frame of a clip (`frame_objects`) as an image of its own.

A prediction for a clip carries `frame_objects` for the frames it looked at, with their frame numbers
in `meta["frame_indices"]` (as `jamspotter infer` writes them; default 0, 1, 2 ...). Only those frames
are scored; labelled frames the prediction skipped (e.g. sampled every n-th frame) are counted, not
scored as misses. A clip with no prediction at all is scored as all misses, like a missing image.
"""

from __future__ import annotations

from collections.abc import Sequence

from jamspotter.data.records import Sample
from jamspotter.evaluate.pairing import WarningLog


def frame_id(clip_id: str, frame: int) -> str:
    """Id of one frame of a clip in metrics and galleries: `clip#frame`."""
    return f"{clip_id}#{frame}"


def expand_clips(
    gt: Sequence[Sample], pred: Sequence[Sample], log: WarningLog
) -> tuple[list[Sample], list[Sample]]:
    """Replace clips with `frame_objects` by one sample per scored frame, on both sides; other samples pass through."""
    clip_ids = {g.id for g in gt if g.frame_objects is not None}
    if not clip_ids:
        return list(gt), list(pred)
    pred_by_id: dict[str, Sample] = {}
    for p in pred:
        pred_by_id.setdefault(p.id, p)
    gt_out: list[Sample] = []
    pred_out: list[Sample] = [p for p in pred if p.id not in clip_ids]
    for g in gt:
        if g.frame_objects is None:
            gt_out.append(g)
            continue
        p = pred_by_id.get(g.id)
        n = len(g.frame_objects)
        predicted: dict[int, tuple[list, list]] = {}
        if p is not None and p.frame_objects is None:
            log.add("clip_prediction_without_frames", g.id)  # scored as all misses
        elif p is not None:
            indices = p.meta.get("frame_indices") or list(range(len(p.frame_objects)))
            problems = p.meta.get("parse_problems") or [[] for _ in p.frame_objects]
            for k, objs, probs in zip(indices, p.frame_objects, problems, strict=False):
                if 0 <= int(k) < n:
                    predicted[int(k)] = (objs, probs if isinstance(probs, list) else [probs])
                else:
                    log.add("prediction_frame_without_gt", frame_id(g.id, int(k)))
            if n - len(predicted):
                log.add("clip_frames_not_predicted", g.id, n - len(predicted))
        frames = sorted(predicted) if p is not None and p.frame_objects is not None else range(n)
        for k in frames:
            image = g.frames[k] if g.frames and k < len(g.frames) else None
            gt_out.append(Sample(id=frame_id(g.id, k), image=image, width=g.width, height=g.height,
                                 objects=g.frame_objects[k]))
            if k in predicted:
                objs, probs = predicted[k]
                pred_out.append(Sample(id=frame_id(g.id, k), objects=objs, meta={"parse_problems": probs}))
    return gt_out, pred_out
