"""What the stream runner needs from a model: `predict(frames) -> list[Detections]` with the verdict filled in.

The edge classifier (`jamspotter.edge.predict.EdgeClassifier`) satisfies it; a VLM `Detector` and the edge box
detector plug in through small adapters (`line.adapters`) that set `label`/`confidence`/`jam_risk` from
their jam-class boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from jamspotter.detections import Detections


@runtime_checkable
class FrameModel(Protocol):
    """Anything that turns RGB frames (H x W x 3 uint8) into `Detections`s, one per frame, in order."""

    def predict(self, frames: Sequence[np.ndarray]) -> list[Detections]: ...
