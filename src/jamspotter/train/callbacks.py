"""Detection F1 during training: greedy generate on a held-out slice -> parse -> evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from jamspotter.data.io import write_json
from jamspotter.data.records import Sample
from jamspotter.models.families import VISION_TOKENS
from jamspotter.train.data import Example, SFTCollator, example_to_row


def generate_texts(model: Any, processor: Any, fmt: Any, samples: list[Sample], root: str | Path, *,
                   max_new_tokens: int = 256, batch_size: int = 4) -> list[str]:
    """Greedy answers to each sample's first prompt (left-padded batches)."""
    import torch

    collator = SFTCollator(processor, fmt)
    texts_out: list[str] = []
    was_training = model.training
    model.eval()
    tok = processor.tokenizer
    tok.padding_side = "left"
    # A sampled vision token would ask the model for image features it does not have: never emit one.
    banned = [[tok.convert_tokens_to_ids(t)] for t in VISION_TOKENS]
    try:
        for i in range(0, len(samples), batch_size):
            rows = [example_to_row(Example(s, str(root))) for s in samples[i:i + batch_size]]
            texts, media = collator.conversations(rows, with_answer=False)
            inputs = processor(text=texts, padding=True, return_tensors="pt", **media).to(model.device)
            with torch.no_grad():
                out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id, bad_words_ids=banned)
            new = out[:, inputs["input_ids"].shape[1]:]
            texts_out += tok.batch_decode(new, skip_special_tokens=False)
    finally:
        if was_training:
            model.train()
    return [_strip_end(t, tok) for t in texts_out]


def _strip_end(text: str, tok: Any) -> str:
    """Cut at the end-of-turn token and drop padding."""
    for stop in ("<|im_end|>", tok.pad_token or "<|endoftext|>"):
        text = text.split(stop, 1)[0]
    return text


def predict_detections(model: Any, processor: Any, fmt: Any, samples: list[Sample], root: str | Path,
                       **kwargs: Any) -> tuple[list[Sample], list[str]]:
    """Predicted samples (same ids, objects = parsed boxes in original pixels) and the raw texts."""
    texts = generate_texts(model, processor, fmt, samples, root, **kwargs)
    preds = []
    for s, text in zip(samples, texts, strict=True):
        boxes, _problems = fmt.parse_detections(text, fmt.image_size_of(s))
        preds.append(s.model_copy(update={"objects": boxes, "qa": [], "label": None}))
    return preds, texts


def detection_metrics(gt: list[Sample], pred: list[Sample]) -> dict[str, Any]:
    """jamspotter.evaluate.evaluate_detections at IoU 0.5 (the project's single matcher)."""
    from jamspotter.evaluate import evaluate_detections

    return evaluate_detections(gt, pred, iou_threshold=0.5)


class DetectionF1Callback(TrainerCallback):
    """Every `every` steps: detection precision/recall/F1@0.5 on a held-out slice, logged and saved."""

    def __init__(self, processor: Any, fmt: Any, samples: list[Sample], root: str | Path, *, every: int,
                 max_new_tokens: int = 256, out_dir: str | Path | None = None) -> None:
        self.processor, self.fmt, self.samples, self.root = processor, fmt, samples, root
        self.every, self.max_new_tokens = every, max_new_tokens
        self.out_dir = Path(out_dir) if out_dir else None
        self.history: list[dict[str, Any]] = []

    def run(self, model: Any, step: int) -> dict[str, Any]:
        """Evaluate now; returns the summary dict."""
        preds, _ = predict_detections(model, self.processor, self.fmt, self.samples, self.root,
                                      max_new_tokens=self.max_new_tokens)
        m = detection_metrics(self.samples, preds)
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
