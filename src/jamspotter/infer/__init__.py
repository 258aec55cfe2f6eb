"""jamspotter.infer: run a Qwen-VL detector on images, samples and clips (see docs/design.md)."""

from jamspotter.infer.detector import (
    TASKS,
    DetectionResult,
    Detector,
    iter_video_frames,
    load_contract,
    prediction_sample,
    to_pil,
)

__all__ = ["TASKS", "DetectionResult", "Detector", "iter_video_frames", "load_contract", "prediction_sample",
           "to_pil"]
