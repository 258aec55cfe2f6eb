"""Adapter: a VLM `jamspotter.infer.Detector` as a `FrameModel` for the stream runner.

VLM text carries no confidence, so a jam-risk box counts with score 1.0 unless the model gave one, and
a frame whose answer the parser had to repair (problems) gets confidence 0: it goes to the review queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jamspotter.data.records import BoxObject
from jamspotter.data.taxonomy import Taxonomy
from jamspotter.line.protocol import FramePrediction

CLEAR = "clear"  # label of a frame with no jam-risk item


class DetectorFrameModel:
    """Wrap anything with `detect(images, batch_size=...) -> [result with .detections, .problems]`."""

    def __init__(self, detector: Any, taxonomy: Taxonomy | None = None, batch_size: int = 1) -> None:
        self.detector, self.taxonomy, self.batch_size = detector, taxonomy or Taxonomy(), batch_size

    def _is_jam(self, box: BoxObject) -> bool:
        return box.jam_risk if box.jam_risk is not None else self.taxonomy.jam_risk(box.label)

    def predict(self, frames: Sequence[np.ndarray]) -> list[FramePrediction]:
        """One prediction per frame: the most confident jam-risk box, else `clear`."""
        out = []
        for res in self.detector.detect(list(frames), batch_size=self.batch_size):
            jams = sorted(((b.score if b.score is not None else 1.0, b.label) for b in res.detections
                           if self._is_jam(b)), reverse=True)
            sure = 0.0 if res.problems else 1.0
            if jams:
                top = [(label, float(score) * sure) for score, label in jams[:3]]
                out.append(FramePrediction(top[0][0], top[0][1], top, True, list(res.detections)))
            else:
                out.append(FramePrediction(CLEAR, sure, [(CLEAR, sure)], False, list(res.detections)))
        return out


def load_vlm_frame_model(name_or_path: str, **detector_kwargs: Any) -> DetectorFrameModel:
    """Load `jamspotter.infer.Detector` (task detect_jam) and wrap it."""
    from jamspotter.infer.detector import Detector

    return DetectorFrameModel(Detector(name_or_path, task="detect_jam", **detector_kwargs))
