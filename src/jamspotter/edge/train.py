"""Transfer learning for the edge classifier: frozen stem, trainable tail (last blocks + new head).

The frozen stem costs most of the compute, so by default it runs ONCE per image and view: `cache_views`
augmented views of every training image (flip, rotation 15 deg, colour jitter 0.2, translation 10%) and one
clean view of every val/test image are pushed through the stem and kept in memory (fp16); the tail then
trains for many epochs on those features, each epoch drawing one view per image. `cache_views=0` runs
the stem on freshly augmented images every epoch instead (slower, unlimited augmentation).
Adam with a per-step cosine schedule (or ReduceLROnPlateau on val accuracy), class-weighted cross-entropy
with label smoothing; the epoch with the best val accuracy is kept (optionally early stopping after
`patience` epochs without a better one: off by default, since under the cosine schedule val accuracy
keeps climbing until the learning rate reaches 0). `tta_flips` scores val and test as the mean softmax
over the image and its horizontal, vertical and double flips (their stem features are cached too), so
model selection sees the same predictor that is reported.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from jamspotter.data.io import write_json
from jamspotter.edge.checkpoint import save_checkpoint
from jamspotter.edge.data import FLIPS, ImageDataset, Item, class_names, load_items, train_transform
from jamspotter.edge.metrics import classification_metrics, plot_confusion, plot_curves
from jamspotter.edge.models import DEFAULT_TRAIN_BLOCKS, EdgeNet, build_model
from jamspotter.errors import DataError
from jamspotter.progress import tqdm_wanted


@dataclass
class EdgeTrainConfig:
    """Everything a training run depends on (saved into metrics.json)."""

    arch: str = "efficientnet-lite0"
    epochs: int = 15
    schedule: str = "cosine"  # "cosine": per-step cosine decay to 0 over `epochs`; "plateau": x0.3 when val stalls
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    image_size: int = 224
    train_blocks: int | None = None  # trailing blocks to fine-tune; None = the arch's default
    cache_views: int = 3  # augmented views per training image whose stem features are computed once
    patience: int | None = None  # early stopping after this many epochs without a better val accuracy; None: never
    seed: int = 0
    pretrained: bool = True
    workers: int = 0
    stem_backend: str = "onnxruntime"  # run the frozen stem with ONNX Runtime (~9x faster on CPU here) or "torch"
    tta_flips: bool = True  # score val/test as the mean over the image and its h, v and hv flips

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise DataError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.stem_backend not in ("onnxruntime", "torch"):
            raise DataError(f"stem_backend must be 'onnxruntime' or 'torch', got {self.stem_backend!r}")


SCHEDULES = ("cosine", "plateau")


def _loader(items: list[Item], classes: list[str], cfg: EdgeTrainConfig, augment: bool, shuffle: bool):  # noqa: ANN202
    ds = ImageDataset(items, classes, cfg.image_size, train_transform(cfg.image_size) if augment else None)
    return torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=shuffle, num_workers=cfg.workers)


@torch.no_grad()
def stem_features(stem: Callable, loader, desc: str,  # noqa: ANN001 - a DataLoader
                  flips: tuple[tuple[int, ...], ...] = ((),)) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the frozen stem over a loader, once per flip in `flips` (dims of the NCHW batch, () = as is);
    returns (fp16 features V x N x ..., labels N), V = len(flips)."""
    feats: list[list[torch.Tensor]] = [[] for _ in flips]
    labels = []
    for x, y in tqdm(loader, desc=desc, leave=False, disable=not tqdm_wanted()):
        for out, dims in zip(feats, flips, strict=True):
            out.append(stem(torch.flip(x, dims) if dims else x).half())
        labels.append(y)
    return torch.stack([torch.cat(f) for f in feats]), torch.cat(labels)


@torch.no_grad()
def predict_features(tail: nn.Module, feats: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Class probabilities for cached stem features V x N x ... (eval mode): the mean softmax over the V
    views of each image (V = 1: plain softmax)."""
    tail.eval()
    probs = [torch.cat([tail(view[i:i + batch_size].float()).softmax(1) for i in range(0, len(view), batch_size)])
             for view in feats]
    return torch.stack(probs).mean(0)


def make_stem_runner(model: EdgeNet, cfg: EdgeTrainConfig, workdir: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The frozen stem as a function: ONNX Runtime when asked and it works, else PyTorch (no grad)."""
    if cfg.stem_backend == "onnxruntime":
        from jamspotter.edge.export import OrtModule

        try:
            return OrtModule(model.stem, torch.rand(2, 3, cfg.image_size, cfg.image_size), workdir)
        except Exception as e:  # noqa: BLE001 - any export/runtime failure: fall back to PyTorch
            warnings.warn(f"ONNX Runtime stem unavailable ({e}); using PyTorch", stacklevel=2)

    @torch.no_grad()
    def run(x: torch.Tensor) -> torch.Tensor:
        return model.stem(x)

    return run


def _accuracy(tail: nn.Module, feats: torch.Tensor, labels: torch.Tensor) -> float:
    return round(float((predict_features(tail, feats, 128).argmax(1) == labels).double().mean()), 6)


def class_weights(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse-frequency weights (mean 1 over samples) so rare classes such as `trash` count."""
    counts = torch.bincount(labels, minlength=n).float().clamp(min=1)
    return counts.sum() / (n * counts)


def train_classifier(data: str | Path, out_dir: str | Path, cfg: EdgeTrainConfig | None = None) -> dict:
    """Train on `data` (TrashNet folder, ImageFolder or samples.jsonl); write checkpoint, metrics and plots."""
    cfg = cfg or EdgeTrainConfig()
    out_dir = Path(out_dir)
    t0, c0 = time.perf_counter(), time.process_time()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    items = load_items(data, cfg.seed)
    classes = class_names(items)
    split = {s: [it for it in items if it.split == s] for s in ("train", "val", "test")}
    if not split["train"] or not split["val"]:
        raise DataError(f"{data}: need non-empty train and val splits (got {len(split['train'])}, {len(split['val'])})")
    if len(classes) < 2:
        raise DataError(f"{data}: need at least 2 classes, found {classes}")

    model = build_model(cfg.arch, len(classes), pretrained=cfg.pretrained, image_size=cfg.image_size,
                        train_blocks=cfg.train_blocks)
    model.freeze_stem()
    with tempfile.TemporaryDirectory(prefix="jamspotter-stem-") as workdir:  # ORT keeps the model in memory
        stem = make_stem_runner(model, cfg, workdir)

    # Frozen stem runs once: val/test clean (and flipped for TTA), train as `cache_views` augmented views.
    flips = FLIPS if cfg.tta_flips else ((),)
    val_f, val_y = stem_features(stem, _loader(split["val"], classes, cfg, False, False), "stem: val", flips)
    test_f, test_y = (stem_features(stem, _loader(split["test"], classes, cfg, False, False), "stem: test", flips)
                      if split["test"] else (None, None))
    train_y = torch.tensor([classes.index(it.label) for it in split["train"]])
    views = [stem_features(stem, _loader(split["train"], classes, cfg, True, False), f"stem: train view {v + 1}")[0][0]
             for v in range(cfg.cache_views)]
    views = torch.stack(views) if views else None  # V x N x C x H x W, fp16
    t_cache, c_cache = time.perf_counter() - t0, time.process_time() - c0

    params = [p for p in model.tail.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # a 1-image last batch is skipped (BatchNorm), so it is no step of the schedule either
    steps_per_epoch = len(train_y) // cfg.batch_size + (len(train_y) % cfg.batch_size >= 2)
    total_steps = max(1, steps_per_epoch * cfg.epochs)
    sched = (torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps)
                                                                                   / total_steps)))
             if cfg.schedule == "cosine" else
             torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.3, patience=1))
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(train_y, len(classes)), label_smoothing=cfg.label_smoothing)
    live_loader = None if views is not None else _loader(split["train"], classes, cfg, True, True)

    def train_batches():
        if live_loader is not None:
            for x, y in live_loader:
                if len(y) < 2:  # BatchNorm in the tail needs 2+ samples
                    continue
                yield stem(x), y
            return
        n = len(train_y)
        pick = torch.from_numpy(rng.integers(len(views), size=n))  # one cached view per image this epoch
        order = torch.from_numpy(rng.permutation(n))
        for i in range(0, n, cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            if len(idx) < 2:  # BatchNorm in the tail needs 2+ samples
                continue
            yield views[pick[idx], idx].float(), train_y[idx]

    history: list[dict] = []
    best = {"val_acc": -1.0, "val_loss": float("inf"), "epoch": 0, "state": None}
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"train {cfg.arch}", disable=not tqdm_wanted())  # terminal only
    for epoch in bar:
        model.tail.train()
        tot, correct, loss_sum = 0, 0, 0.0
        for f, y in train_batches():
            logits = model.tail(f)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if cfg.schedule == "cosine":
                sched.step()
            tot += len(y)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += loss.item() * len(y)
        val_p = predict_features(model.tail, val_f, cfg.batch_size * 4)
        val_acc = float((val_p.argmax(1) == val_y).float().mean())
        val_loss = float(nn.functional.nll_loss(val_p.clamp_min(1e-12).log(), val_y))
        if cfg.schedule == "plateau":
            sched.step(val_acc)
        history.append({"epoch": epoch, "train_loss": loss_sum / max(tot, 1), "train_acc": correct / max(tot, 1),
                        "val_loss": val_loss, "val_acc": val_acc, "lr": opt.param_groups[0]["lr"]})
        bar.set_postfix(val_acc=f"{val_acc:.3f}", loss=f"{loss_sum / max(tot, 1):.3f}")
        if val_acc > best["val_acc"] or (val_acc == best["val_acc"] and val_loss < best["val_loss"]):
            best = {"val_acc": val_acc, "val_loss": val_loss, "epoch": epoch,
                    "state": copy.deepcopy(model.tail.state_dict())}
        elif cfg.patience is not None and epoch - best["epoch"] >= cfg.patience:
            tqdm.write(f"early stop at epoch {epoch}: best val accuracy {best['val_acc']:.4f} at epoch {best['epoch']}")
            break
    model.tail.load_state_dict(best["state"])
    model.eval()
    t_train, c_train = time.perf_counter() - t0 - t_cache, time.process_time() - c0 - c_cache

    val_metrics = classification_metrics(val_y.tolist(), predict_features(model.tail, val_f, 128).argmax(1).tolist(),
                                         classes)
    test_metrics = (classification_metrics(test_y.tolist(),
                                           predict_features(model.tail, test_f, 128).argmax(1).tolist(), classes)
                    if test_f is not None else None)
    # what the exported model (one view per image) scores, whether or not flips were averaged above
    one_view = {"val": _accuracy(model.tail, val_f[:1], val_y),
                "test": _accuracy(model.tail, test_f[:1], test_y) if test_f is not None else None}
    meta = {"arch": cfg.arch, "classes": classes, "image_size": cfg.image_size,
            "train_blocks": cfg.train_blocks if cfg.train_blocks is not None else DEFAULT_TRAIN_BLOCKS[cfg.arch],
            "tta_flips": cfg.tta_flips,  # the accuracies below average the h/v/hv flips; one view scores differently
            "input": "RGB float32 NCHW in [0, 1], resized to image_size x image_size (normalisation is inside)",
            "best_epoch": best["epoch"], "val_accuracy": val_metrics["accuracy"],
            "test_accuracy": test_metrics["accuracy"] if test_metrics else None,
            "one_view_test_accuracy": one_view["test"]}
    save_checkpoint(model, meta, out_dir)
    report = {"config": asdict(cfg), "data": str(data), "classes": classes,
              "counts": {s: len(v) for s, v in split.items()}, "best_epoch": best["epoch"],
              "val": val_metrics, "test": test_metrics, "history": history,
              "one_view_accuracy": one_view,
              "seconds": {"stem_cache": round(t_cache, 1), "train": round(t_train, 1),
                          "total": round(time.perf_counter() - t0, 1)},
              # process CPU time (all threads): steadier than wall time on a shared machine
              "cpu_seconds": {"stem_cache": round(c_cache, 1), "train": round(c_train, 1),
                              "total": round(time.process_time() - c0, 1)}}
    write_json(out_dir / "metrics.json", report)
    shown = test_metrics or val_metrics
    plot_confusion(shown, out_dir / "confusion_matrix.png", "test" if test_metrics else "val")
    plot_curves(history, out_dir / "training_curves.png")
    return report
