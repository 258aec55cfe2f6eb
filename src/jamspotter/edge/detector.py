"""The edge box detector: torchvision SSDlite320-MobileNetV3-Large trained on `Sample` datasets, ONNX export.

Images are resized to a fixed square (320 by default, aspect not kept, exactly as torchvision's SSDlite
transform does) so the network has one input shape; boxes are scaled back to ORIGINAL pixels. The same
`decode` (torchvision's anchors, box coder and per-class NMS) turns the raw head outputs of PyTorch and of
ONNX Runtime into `BoxObject`s, so both backends give the same boxes. The ONNX graph holds the network
only (input `image` [B, 3, S, S] in 0..1, output `head` [B, anchors, 4 + classes]): NMS stays outside,
where it runs with dynamic box counts on any runtime.

No pretrained weights can be downloaded here: the backbone starts from ImageNet weights only when
torchvision already has them in its local cache, else from random init (with a warning).
"""

from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from jamspotter.data.io import atomic_write, write_json
from jamspotter.data.records import BoxObject, Sample
from jamspotter.data.taxonomy import DEFAULT_TAXONOMY
from jamspotter.errors import DataError, JamspotterError

ARCH = "ssdlite320_mobilenet_v3_large"
WEIGHTS, META, ONNX, TORCHSCRIPT = "detector.safetensors", "detector.json", "detector.onnx", "detector.ts"
MIN_BOX_PX = 1.0  # boxes thinner than this in the network frame are dropped: SSD's box coder takes log(w)


@dataclass
class DetectorTrainConfig:
    """Training settings of the edge detector (CLI flags map 1:1 onto these fields)."""

    epochs: int = 30
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    image_size: int = 320
    score_threshold: float = 0.3  # operating point for predictions and P/R/F1
    val_fraction: float = 0.2  # used when the samples carry no split at all
    hflip: bool = True
    pretrained_backbone: bool = True  # only used when the weights are already cached locally
    seed: int = 0


def _cached_backbone_weights() -> Any:
    """torchvision's MobileNetV3-Large ImageNet weights if the file is already in the torch hub cache, else None."""
    from torchvision.models import MobileNet_V3_Large_Weights

    weights = MobileNet_V3_Large_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    return weights if cached.is_file() else None


def build_ssdlite(num_classes: int, *, pretrained_backbone: bool = False, score_threshold: float = 0.3,
                  reduced_tail: bool | None = None) -> nn.Module:
    """SSDlite320-MobileNetV3-Large with `num_classes` object classes (+ background), never downloading.

    Built like torchvision's `ssdlite320_mobilenet_v3_large`, except that the backbone's reduced tail
    (torchvision uses it only without ImageNet weights) is an explicit choice, so a checkpoint reloads
    into the same architecture whether or not the ImageNet file is on the machine that loads it.
    """
    from functools import partial

    from torchvision.models import mobilenet_v3_large
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD
    from torchvision.models.detection.ssdlite import SSDLiteHead, _mobilenet_extractor, _normal_init

    weights = _cached_backbone_weights() if pretrained_backbone else None
    if pretrained_backbone and weights is None:
        warnings.warn("MobileNetV3 ImageNet weights are not in the local torch cache and cannot be downloaded: "
                      "the edge detector starts from random init (train longer)", stacklevel=2)
    if reduced_tail is None:
        reduced_tail = weights is None
    norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    backbone = mobilenet_v3_large(weights=weights, norm_layer=norm_layer, reduced_tail=reduced_tail)
    if weights is None:
        _normal_init(backbone)
    backbone = _mobilenet_extractor(backbone, 6, norm_layer)
    size = (320, 320)  # only sizes the head; the anchors follow the feature maps of the real input size
    anchors = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    out_channels = det_utils.retrieve_out_channels(backbone, size)
    head = SSDLiteHead(out_channels, anchors.num_anchors_per_location(), num_classes + 1, norm_layer)
    model = SSD(backbone, anchors, size, num_classes + 1, head=head, score_thresh=min(score_threshold, 0.01),
                nms_thresh=0.55, detections_per_img=100, topk_candidates=300,
                image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    model.jamspotter_reduced_tail = reduced_tail
    model.jamspotter_backbone = "imagenet" if weights is not None else "random"
    return model


class RawHead(nn.Module):
    """Network only, for export: image [B, 3, S, S] in 0..1 -> [B, anchors, 4 box deltas + class logits]."""

    def __init__(self, ssd: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = ssd.backbone, ssd.head
        self.register_buffer("mean", torch.tensor(ssd.transform.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(ssd.transform.image_std).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = list(self.backbone((image - self.mean) / self.std).values())
        out = self.head(features)
        return torch.cat([out["bbox_regression"], out["cls_logits"]], dim=-1)


def to_tensor(image: Any) -> torch.Tensor:
    """A PIL image, path or H x W x 3 uint8 array as a float [3, H, W] tensor in 0..1."""
    from jamspotter.infer.detector import to_pil  # one image reader for the VLM and the edge models

    array = np.asarray(to_pil(image), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def resize_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """[3, H, W] -> [3, size, size] bilinear, the same call torchvision's detection transform makes."""
    return F.interpolate(image[None], size=(size, size), mode="bilinear", align_corners=False)[0]


class EdgeBoxDetector:
    """SSDlite box detector over a fixed class list; `predict` returns boxes in each image's own pixels."""

    def __init__(self, classes: Sequence[str], image_size: int = 320, score_threshold: float = 0.3,
                 pretrained_backbone: bool = False, reduced_tail: bool | None = None) -> None:
        if not classes:
            raise JamspotterError("the edge detector needs at least one class")
        self.classes, self.image_size, self.score_threshold = list(classes), int(image_size), float(score_threshold)
        self.model = build_ssdlite(len(self.classes), pretrained_backbone=pretrained_backbone,
                                   score_threshold=score_threshold, reduced_tail=reduced_tail)
        self.raw = RawHead(self.model)
        self._anchors: torch.Tensor | None = None

    # ---- inference ---------------------------------------------------------------------------------
    def anchors(self) -> torch.Tensor:
        """Default boxes of the fixed input size, in network pixels (computed once)."""
        if self._anchors is None:
            from torchvision.models.detection.image_list import ImageList

            x = torch.zeros(1, 3, self.image_size, self.image_size)
            was_training = self.model.training
            self.model.eval()
            with torch.no_grad():
                features = list(self.model.backbone(x).values())
            self.model.train(was_training)
            sizes = [(self.image_size, self.image_size)]
            self._anchors = self.model.anchor_generator(ImageList(x, sizes), features)[0]
        return self._anchors

    def preprocess(self, images: Sequence[Any]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """A [B, 3, S, S] batch in 0..1 and each image's original (width, height)."""
        tensors = [to_tensor(im) for im in images]
        sizes = [(int(t.shape[2]), int(t.shape[1])) for t in tensors]
        return torch.stack([resize_square(t, self.image_size) for t in tensors]), sizes

    def decode(self, head: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[list[BoxObject]]:
        """Raw head outputs -> boxes (score >= threshold) in original pixels, via torchvision's postprocess."""
        head = torch.as_tensor(head, dtype=torch.float32)
        anchors = self.anchors()
        outputs = {"bbox_regression": head[..., :4], "cls_logits": head[..., 4:]}
        square = [(self.image_size, self.image_size)] * len(head)
        dets = self.model.postprocess_detections(outputs, [anchors] * len(head), square)
        result = []
        for det, (w, h) in zip(dets, sizes, strict=True):
            scale = torch.tensor([w, h, w, h], dtype=torch.float32) / self.image_size
            keep = det["scores"] >= self.score_threshold
            boxes, scores, labels = det["boxes"][keep] * scale, det["scores"][keep], det["labels"][keep]
            result.append([
                BoxObject(label=self.classes[int(lab) - 1], bbox=[round(float(v), 2) for v in box],
                          score=round(float(s), 4), jam_risk=DEFAULT_TAXONOMY.jam_risk(self.classes[int(lab) - 1]))
                for box, s, lab in zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True)])
        return result

    @torch.no_grad()
    def predict(self, images: Sequence[Any], batch_size: int = 16) -> list[list[BoxObject]]:
        """Boxes per image (PIL, paths or RGB arrays of any size), in that image's pixels, best score first."""
        self.model.eval()
        out: list[list[BoxObject]] = []
        for i in range(0, len(images), batch_size):
            x, sizes = self.preprocess(images[i:i + batch_size])
            out += self.decode(self.raw(x), sizes)
        return out

    def predict_samples(self, samples: Sequence[Sample], root: str | Path | None, batch_size: int = 16) -> list[Sample]:
        """Predictions as `Sample`s (same ids; objects = boxes with scores) for `evaluate_detections`."""
        boxes = self.predict([s.image_path(root) for s in samples], batch_size)
        return [s.model_copy(update={"objects": b, "qa": [], "label": None, "target": None})
                for s, b in zip(samples, boxes, strict=True)]

    # ---- training ----------------------------------------------------------------------------------
    def targets(self, objects: Sequence[BoxObject], size: tuple[int, int], flip: bool) -> dict[str, torch.Tensor]:
        """Boxes of the known classes scaled to the network frame (mirrored when `flip`), degenerate ones dropped."""
        w, h = size
        sx, sy = self.image_size / w, self.image_size / h
        boxes, labels = [], []
        for o in objects:
            if o.label not in self.classes:
                continue
            x1, y1, x2, y2 = o.bbox
            x1, x2 = max(x1, 0.0) * sx, min(x2, w) * sx
            y1, y2 = max(y1, 0.0) * sy, min(y2, h) * sy
            if flip:
                x1, x2 = self.image_size - x2, self.image_size - x1
            if x2 - x1 >= MIN_BOX_PX and y2 - y1 >= MIN_BOX_PX:
                boxes.append([x1, y1, x2, y2])
                labels.append(self.classes.index(o.label) + 1)
        return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor(labels, dtype=torch.int64)}

    def loss(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """SSD loss (box regression + hard-negative-mined classification) on square 0..1 images."""
        self.model.train()
        losses = self.model(images, targets)
        return losses["bbox_regression"] + losses["classification"]

    # ---- persistence -------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {"arch": ARCH, "classes": self.classes, "image_size": self.image_size,
                "score_threshold": self.score_threshold, "reduced_tail": self.model.jamspotter_reduced_tail,
                "backbone_init": self.model.jamspotter_backbone,
                "input": "RGB 0..1, resized to image_size x image_size",
                "output": "head [B, anchors, 4 box deltas + 1 background + classes logits]"}

    def save(self, out_dir: str | Path) -> Path:
        """detector.safetensors + detector.json in `out_dir` (both written atomically)."""
        from safetensors.torch import save

        out_dir = Path(out_dir)
        state = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
        with atomic_write(out_dir / WEIGHTS, "wb") as fh:
            fh.write(save(state))
        write_json(out_dir / META, self.meta())
        return out_dir / WEIGHTS

    @classmethod
    def load(cls, path: str | Path) -> EdgeBoxDetector:
        """Rebuild from a folder (or its detector.safetensors / detector.json)."""
        from safetensors.torch import load_file

        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        meta = read_detector_meta(folder)
        det = cls(meta["classes"], meta["image_size"], meta.get("score_threshold", 0.3),
                  reduced_tail=meta.get("reduced_tail", True))
        try:
            det.model.load_state_dict(load_file(str(folder / WEIGHTS)))
        except Exception as e:  # safetensors, OS and shape errors all mean "not this model"
            raise DataError(f"{folder / WEIGHTS}: cannot load edge detector weights ({e})") from None
        det.model.eval()
        return det


def read_detector_meta(folder: str | Path) -> dict[str, Any]:
    """detector.json of an exported or trained edge detector; a missing field is a DataError."""
    from jamspotter.edge.checkpoint import read_meta_file

    path = Path(folder) / META
    meta = read_meta_file(path, "edge detector")
    if meta["arch"] != ARCH:
        raise DataError(f"{path}: arch {meta['arch']!r} is not {ARCH}")
    return meta


class OnnxBoxDetector:
    """The exported detector on ONNX Runtime; the same preprocessing and `decode` as `EdgeBoxDetector`."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        from jamspotter.edge.export import ort_session

        path = Path(path)
        onnx_path = path / ONNX if path.is_dir() else path
        meta = read_detector_meta(onnx_path.parent)
        # an untrained skeleton supplies torchvision's anchors, box coder and NMS (no weights needed)
        self.decoder = EdgeBoxDetector(meta["classes"], meta["image_size"], meta.get("score_threshold", 0.3),
                                       reduced_tail=meta.get("reduced_tail", True))
        self.classes, self.session = self.decoder.classes, ort_session(onnx_path, threads)

    def predict(self, images: Sequence[Any], batch_size: int = 16) -> list[list[BoxObject]]:
        """Boxes per image in that image's pixels."""
        from jamspotter.edge.export import ort_run

        out: list[list[BoxObject]] = []
        for i in range(0, len(images), batch_size):
            x, sizes = self.decoder.preprocess(images[i:i + batch_size])
            out += self.decoder.decode(torch.from_numpy(ort_run(self.session, x.numpy())), sizes)
        return out


def load_box_detector(path: str | Path) -> EdgeBoxDetector | OnnxBoxDetector:
    """A `.onnx` file -> ONNX Runtime; a folder with detector.onnx -> ONNX Runtime; else the PyTorch weights."""
    path = Path(path)
    if path.suffix == ".onnx" or (path.is_dir() and (path / ONNX).is_file()):
        return OnnxBoxDetector(path)
    return EdgeBoxDetector.load(path)


def export_detector(det: EdgeBoxDetector, out_dir: str | Path, opset: int = 17) -> dict[str, Any]:
    """ONNX (dynamic batch, onnx.checker, compared with PyTorch on 2 images); TorchScript if ONNX export fails.
    File names in the result are relative to `out_dir`."""
    from jamspotter.edge.export import export_onnx, export_torchscript, max_abs_diff, ort_session

    out_dir = Path(out_dir)
    det.model.eval()
    example = torch.rand(2, 3, det.image_size, det.image_size, generator=torch.Generator().manual_seed(0))
    write_json(out_dir / META, det.meta())
    try:
        path = export_onnx(det.raw, out_dir / ONNX, example, opset=opset, input_name="image", output_name="head")
        diff = max_abs_diff(det.raw, ort_session(path), example)
        return {"onnx": path.name, "opset": opset, "max_abs_diff": diff}
    except Exception as e:  # noqa: BLE001 - any exporter failure falls back to TorchScript, with the reason
        path = export_torchscript(det.raw, out_dir / TORCHSCRIPT, example)
        return {"torchscript": path.name, "onnx_error": f"{type(e).__name__}: {e}"}


# ---- training on Sample datasets ------------------------------------------------------------------

def split_samples(samples: Sequence[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(train, val): the samples' own train/val splits when they carry any (test is never used here),
    else a seeded hold-out of whole groups (an image with its augmented copies), as `data.splits` defines."""
    from jamspotter.data.splits import holdout, select_split

    if any(s.split for s in samples):
        return select_split(samples, "train"), select_split(samples, "val")
    if len(samples) < 5:
        return list(samples), []
    return holdout(samples, val_fraction, seed)


def class_list(samples: Sequence[Sample], fallback: Sequence[str] = ()) -> list[str]:
    """Sorted labels present in the samples, else `fallback` (a detector needs at least one class)."""
    labels = sorted({o.label for s in samples for o in s.objects})
    return labels or list(fallback)


def load_batch(det: EdgeBoxDetector, samples: Sequence[Sample], root: str | Path, rng: random.Random | None
                ) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Square image tensors and their targets; random horizontal flips and brightness when `rng` is given."""
    images, targets = [], []
    for s in samples:
        path = s.image_path(root)
        if path is None or not Path(path).is_file():
            raise DataError(f"sample {s.id}: image {s.image!r} not found under {root}")
        t = to_tensor(path)
        size = (int(t.shape[2]), int(t.shape[1]))
        flip = rng is not None and rng.random() < 0.5
        t = resize_square(t, det.image_size)
        if flip:
            t = t.flip(-1)
        if rng is not None:
            t = (t * rng.uniform(0.8, 1.2)).clamp_(0, 1)
        images.append(t)
        targets.append(det.targets(s.objects, size, flip))
    return images, targets


def train_detector(samples: Sequence[Sample], root: str | Path, out_dir: str | Path,
                   config: DetectorTrainConfig | None = None, classes: Sequence[str] | None = None,
                   export: bool = True, progress: bool = True) -> dict[str, Any]:
    """Train on image samples with boxes, evaluate on the held-out part, save, export; returns the report.

    Writes detector.safetensors + detector.json, metrics.json (`evaluate_detections` on the held-out images
    at the score threshold, plus mAP over all scores >= 0.01), history.json, and detector.onnx.
    """
    from jamspotter.evaluate import evaluate_detections

    cfg = config or DetectorTrainConfig()
    images = [s for s in samples if s.image is not None]
    if not images:
        raise DataError("no image samples to train the edge detector on")
    train, val = split_samples(images, cfg.val_fraction, cfg.seed)
    classes = list(classes) if classes else class_list(train)
    if not classes:
        raise DataError("the training samples carry no boxes; give `classes` to train a background-only detector")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    det = EdgeBoxDetector(classes, cfg.image_size, cfg.score_threshold, pretrained_backbone=cfg.pretrained_backbone)
    params = [p for p in det.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = min(100, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: min(1.0, (step + 1) / max(1, warmup)) * 0.5 * (1 + math.cos(math.pi * step / total)))
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    epochs: Any = range(cfg.epochs)
    if progress:
        from jamspotter.progress import track

        epochs = track(epochs, description="edge detector")
    for epoch in epochs:
        order = list(train)
        rng.shuffle(order)
        losses = []
        for i in range(0, len(order), cfg.batch_size):
            batch_images, batch_targets = load_batch(det, order[i:i + cfg.batch_size], root,
                                                      rng if cfg.hflip else None)
            loss = det.loss(batch_images, batch_targets)
            if not torch.isfinite(loss):
                raise JamspotterError(f"edge detector loss became {loss.item()} at epoch {epoch + 1}; lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": sched.get_last_lr()[0]})
        if progress:
            print(f"epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]['loss']:.4f}")
    train_s = time.perf_counter() - start
    det.model.eval()
    out_dir = Path(out_dir)
    det.save(out_dir)
    report: dict[str, Any] = {"classes": classes, "n_train": len(train), "n_val": len(val), "config": asdict(cfg),
                              "train_seconds": round(train_s, 1),
                              "final_loss": history[-1]["loss"] if history else None}
    if val:
        metrics = evaluate_detections(val, det.predict_samples(val, root))
        threshold = det.score_threshold
        det.score_threshold = 0.01  # mAP ranks by score: give it the whole curve, not just the operating point
        low = evaluate_detections(val, det.predict_samples(val, root))
        det.score_threshold = threshold
        metrics["all_scores"] = {"score_threshold": 0.01, "map": low.get("map"), "map50": low.get("map50"),
                                 "recall": low.get("recall")}
        metrics["score_threshold"] = threshold
        write_json(out_dir / "metrics.json", metrics)
        report["metrics"] = {k: metrics.get(k) for k in ("precision", "recall", "f1", "jam_recall", "map50", "map")}
        report["metrics"]["map50_all_scores"] = metrics["all_scores"]["map50"]
    write_json(out_dir / "history.json", history)
    if export:
        report["export"] = export_detector(det, out_dir)
    write_json(out_dir / "report.json", report)
    return report
