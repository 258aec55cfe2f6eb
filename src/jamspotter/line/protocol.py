"""What the stream runner needs from a model: `predict(frames) -> list[FramePrediction]`.

The edge classifier (`jamspotter.edge.predict.EdgeClassifier`) satisfies it; a VLM `Detector` plugs in
through a small adapter that fills `detections` and sets `jam_risk`/`confidence` from its jam-class boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from jamspotter.data.records import BoxObject


@dataclass
class FramePrediction:
    """One frame's verdict: top class and confidence, top-k, whether it is a jam risk, boxes if any."""

    label: str
    confidence: float
    top: list[tuple[str, float]]
    jam_risk: bool
    detections: list[BoxObject] = field(default_factory=list)


@runtime_checkable
class FrameModel(Protocol):
    """Anything that turns RGB frames (H x W x 3 uint8) into `FramePrediction`s, one per frame, in order."""

    def predict(self, frames: Sequence[np.ndarray]) -> list[FramePrediction]: ...
