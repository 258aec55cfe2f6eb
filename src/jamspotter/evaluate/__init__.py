"""Detection, classification and trajectory metrics, and reports with plots and error galleries."""

from jamspotter.evaluate.classification import evaluate_classification
from jamspotter.evaluate.detection import DetectionEval, evaluate_detection_run, evaluate_detections
from jamspotter.evaluate.matching import Matching, match_arrays, match_dataset, match_detections
from jamspotter.evaluate.predictions import load_predictions
from jamspotter.evaluate.trajectory import evaluate_trajectories

__all__ = [
    "DetectionEval", "Matching", "evaluate_classification", "evaluate_detection_run", "evaluate_detections",
    "evaluate_trajectories", "load_predictions", "match_arrays", "match_dataset", "match_detections",
]
