"""Adapters that make box detectors `FrameModel`s for the stream runner.

- `DetectorFrameModel`: a VLM `jamspotter.infer.Detector` (`detect(images) -> [Detections]`).
  VLM text carries no confidence, so a jam-risk box counts with score 1.0 unless the model gave one. A frame
  whose answer could not be read whole (output cut off, items dropped or ignored, no boxes found, a box
  without a label) gets confidence 0: it goes to the review queue. Cosmetic parser notes (a `bbox` key
  instead of `bbox_2d`, swapped or clipped corners, JSON read leniently) leave the scores as they are.
- `BoxDetectorFrameModel`: the edge SSDlite detector (`predict(images) -> [[BoxObject, ...], ...]`).

A frame's verdict is its most confident jam-risk box; a frame without one is `clear`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from jamspotter.data.taxonomy import Taxonomy
from jamspotter.detections import Detections

CLEAR = "clear"  # label of a frame with no jam-risk item
# Parser problems that mean part of the answer was lost or never read (see jamspotter.formats.parse):
# the frame may hold a jam item nobody saw. Every other note is cosmetic: the boxes were read in full.
UNREAD_ANSWER = re.compile(r"dropped|truncat|cut off|cut at|unclosed|not read|ignored|parser error|no boxes found|"
                           r"not 4 finite|non-finite|no label|expected text", re.IGNORECASE)


def answer_unread(problems: Sequence[str]) -> bool:
    """True when a parse problem says part of the model's answer was lost (not a cosmetic repair)."""
    return any(UNREAD_ANSWER.search(str(p)) for p in problems)


def frame_verdict(det: Detections, taxonomy: Taxonomy, sure: float = 1.0) -> Detections:
    """`det` with its verdict: the most confident jam-risk box (score None counts as 1.0), scaled by `sure`;
    else `clear` with `sure`."""
    boxes = det.objects
    jams = sorted(((b.score if b.score is not None else 1.0, b.label) for b in boxes
                   if taxonomy.is_jam(b)), reverse=True)
    if jams:
        top = [(label, float(score) * sure) for score, label in jams[:3]]
        return replace(det, label=top[0][0], confidence=top[0][1], top=top, jam_risk=True)
    return replace(det, label=CLEAR, confidence=sure, top=[(CLEAR, sure)], jam_risk=False)


class DetectorFrameModel:
    """Wrap anything with `detect(images, batch_size=...) -> [Detections]` (boxes in `.objects`, parse `.problems`)."""

    def __init__(self, detector: Any, taxonomy: Taxonomy | None = None, batch_size: int = 1) -> None:
        self.detector, self.taxonomy, self.batch_size = detector, taxonomy or Taxonomy(), batch_size

    def predict(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """One prediction per frame; an answer read only in part makes the frame unsure (confidence 0)."""
        return [frame_verdict(res, self.taxonomy, 0.0 if answer_unread(res.problems) else 1.0)
                for res in self.detector.detect(list(frames), batch_size=self.batch_size)]


class BoxDetectorFrameModel:
    """Wrap anything with `predict(images) -> list[list[BoxObject]]` (the edge box detector)."""

    def __init__(self, detector: Any, taxonomy: Taxonomy | None = None) -> None:
        self.detector, self.taxonomy = detector, taxonomy or Taxonomy()

    def predict(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """One prediction per frame from the detector's scored boxes."""
        return [frame_verdict(Detections(list(boxes), image_size=(f.shape[1], f.shape[0])), self.taxonomy)
                for f, boxes in zip(frames, self.detector.predict(list(frames)), strict=True)]


def load_vlm_frame_model(name_or_path: str, **detector_kwargs: Any) -> DetectorFrameModel:
    """Load `jamspotter.infer.Detector` (task detect_jam) and wrap it."""
    from jamspotter.infer.detector import Detector

    return DetectorFrameModel(Detector(name_or_path, task="detect_jam", **detector_kwargs))


def load_box_frame_model(path: str) -> BoxDetectorFrameModel:
    """Load the edge box detector (ONNX Runtime or PyTorch) and wrap it."""
    from jamspotter.edge.detector import load_box_detector

    return BoxDetectorFrameModel(load_box_detector(path))
