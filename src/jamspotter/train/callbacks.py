"""Detection F1 during training: greedy generate on a held-out slice -> parse -> evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from jamspotter.data.io import write_json
from jamspotter.data.records import Sample


def predict_detections(model: Any, processor: Any, contract: Any, samples: list[Sample], root: str | Path, *,
                       max_new_tokens: int = 256, batch_size: int = 4) -> tuple[list[Sample], list[str]]:
    """Predicted samples (same ids, objects = parsed boxes in original pixels) and the raw texts.

    Runs through `jamspotter.infer.Detector` with the run's contract, so the F1 seen during training is what
    `jamspotter infer` gets from the saved model: the same prompt, greedy batched generation and parser.
    """
    from jamspotter.infer import Detector

    detector = Detector.from_loaded(model, processor, contract, max_new_tokens=max_new_tokens)
    was_training = model.training
    model.eval()
    try:
        preds = detector.detect_samples(samples, root, batch_size=batch_size)
    finally:
        if was_training:
            model.train()
    return preds, [p.meta.get("text", "") for p in preds]


def detection_metrics(gt: list[Sample], pred: list[Sample], contract: Any) -> dict[str, Any]:
    """jamspotter.evaluate.evaluate_detections at IoU 0.5 against what the model was asked for.

    A jam-only model is scored on the jam-causing ground truth only: the material boxes are not in its answer.
    """
    from jamspotter.evaluate import evaluate_detections

    return evaluate_detections([contract.expected_sample(s) for s in gt], pred, iou_threshold=0.5)


class DetectionF1Callback(TrainerCallback):
    """Every `every` steps: detection precision/recall/F1@0.5 on a held-out slice, logged and saved."""

    def __init__(self, processor: Any, contract: Any, samples: list[Sample], root: str | Path, *, every: int,
                 max_new_tokens: int = 256, out_dir: str | Path | None = None) -> None:
        self.processor, self.contract, self.samples, self.root = processor, contract, samples, root
        self.every, self.max_new_tokens = every, max_new_tokens
        self.out_dir = Path(out_dir) if out_dir else None
        self.history: list[dict[str, Any]] = []

    def run(self, model: Any, step: int) -> dict[str, Any]:
        """Evaluate now; returns the summary dict."""
        preds, _ = predict_detections(model, self.processor, self.contract, self.samples, self.root,
                                      max_new_tokens=self.max_new_tokens)
        m = detection_metrics(self.samples, preds, self.contract)
        summary = {"step": step, **{k: m.get(k) for k in ("precision", "recall", "f1", "mean_iou", "jam_recall")}}
        self.history.append(summary)
        if self.out_dir is not None:
            write_json(self.out_dir / "detection_f1.json", self.history)
        return summary

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.every and state.global_step % self.every == 0 and state.is_world_process_zero and model is not None:
            summary = self.run(model, state.global_step)
            state.log_history.append({f"eval_det_{k}": v for k, v in summary.items() if k != "step"}
                                     | {"step": state.global_step})
            print(f"step {state.global_step}: detection f1@0.5 = {summary['f1']}")
