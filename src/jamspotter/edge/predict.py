"""Run an exported edge classifier (ONNX Runtime) or a safetensors checkpoint (PyTorch) on images or frames."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from jamspotter.data.taxonomy import Taxonomy
from jamspotter.detections import Detections
from jamspotter.edge.data import FLIPS, load_rgb, to_tensor
from jamspotter.errors import DataError


def _as_pil(frame: Image.Image | np.ndarray | str | Path) -> Image.Image:
    if isinstance(frame, Image.Image):
        return frame.convert("RGB")
    if isinstance(frame, np.ndarray):
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise DataError(f"frame must be H x W x 3 RGB, got shape {frame.shape}")
        return Image.fromarray(frame.astype(np.uint8, copy=False))
    return load_rgb(frame)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z -= z.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True)


class EdgeClassifier:
    """An edge classifier from `model.onnx` (ONNX Runtime) or a checkpoint folder / .safetensors (PyTorch).

    `flips=True` averages the softmax over each image and its horizontal, vertical and double flips (the
    test-time augmentation `edge train --tta-flips` scores val/test with): 4x the compute per frame.
    """

    def __init__(self, path: str | Path, threads: int | None = None, taxonomy: Taxonomy | None = None,
                 top_k: int = 3, flips: bool = False) -> None:
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: no such model")
        self.path, self.top_k, self.taxonomy, self.flips = path, top_k, taxonomy or Taxonomy(), flips
        if path.suffix == ".onnx":
            from jamspotter.edge.export import ort_run, ort_session, read_onnx_metadata

            session = ort_session(path, threads)
            meta = read_onnx_metadata(session)
            if "classes" not in meta or "image_size" not in meta:
                from jamspotter.edge.checkpoint import read_meta

                meta = read_meta(path)  # the model.json beside it
            self._run = lambda x: ort_run(session, x)
            self.backend = "onnxruntime"
        else:
            from jamspotter.edge.checkpoint import load_checkpoint

            model, meta = load_checkpoint(path)

            @torch.no_grad()
            def run(x: np.ndarray) -> np.ndarray:
                return model(torch.from_numpy(x)).numpy()

            self._run = run
            self.backend = "torch"
        self.classes: list[str] = list(meta["classes"])
        self.image_size: int = int(meta["image_size"])
        self.meta = meta

    def probabilities(self, frames: Sequence[Image.Image | np.ndarray | str | Path]) -> np.ndarray:
        """Softmax probabilities, one row per frame (N x classes)."""
        if not frames:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        views = FLIPS if self.flips else ((),)
        chunks = []
        for i in range(0, len(frames), 32):  # bounded memory for long image lists
            x = torch.stack([to_tensor(_as_pil(f), self.image_size) for f in frames[i:i + 32]]).numpy()
            chunks.append(np.mean([_softmax(self._run(np.ascontiguousarray(np.flip(x, dims) if dims else x)))
                                   for dims in views], axis=0))
        return np.concatenate(chunks).astype(np.float32)

    def predict(self, frames: Sequence[Image.Image | np.ndarray | str | Path]) -> list[Detections]:
        """Top class, confidence and top-k per frame (the FrameModel protocol of jamspotter.line)."""
        out = []
        for row in self.probabilities(frames):
            order = np.argsort(-row)[: self.top_k]
            top = [(self.classes[i], float(row[i])) for i in order]
            out.append(Detections(label=top[0][0], confidence=top[0][1], top=top,
                                       jam_risk=self.taxonomy.jam_risk(top[0][0])))
        return out
