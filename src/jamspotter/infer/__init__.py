"""jamspotter.infer: run a Qwen-VL detector on images, samples and clips (see DESIGN.md module map)."""

from jamspotter.infer.detector import (
    TASKS,
    DetectionResult,
    Detector,
    iter_video_frames,
    prediction_sample,
    to_pil,
    training_meta,
)

__all__ = ["TASKS", "DetectionResult", "Detector", "iter_video_frames", "prediction_sample", "to_pil", "training_meta"]
