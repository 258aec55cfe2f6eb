"""jamspotter.infer: run a Qwen-VL detector on images, samples and clips (see docs/design.md)."""

from jamspotter.detections import Detections
from jamspotter.infer.ask import Answer
from jamspotter.infer.detector import TASKS, Detector, iter_video_frames, load_contract, to_pil

__all__ = ["TASKS", "Answer", "Detections", "Detector", "iter_video_frames", "load_contract", "to_pil"]
