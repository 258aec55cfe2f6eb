"""Classification metrics (via `jamspotter.evaluate.evaluate_classification`) and the edge training plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jamspotter.data.io import atomic_write
from jamspotter.data.records import Sample


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict:
    """The evaluate module's classification metrics for class indices, plus flat keys used here:
    `n`, weighted `precision`/`recall`/`f1`, `classes` and `confusion_matrix` as a plain matrix."""
    from jamspotter.evaluate import evaluate_classification

    gt = [Sample(id=str(i), label=classes[t]) for i, t in enumerate(y_true)]
    pred = [Sample(id=str(i), label=classes[p]) for i, p in enumerate(y_pred)]
    ev = evaluate_classification(gt, pred)
    cm = ev.pop("confusion_matrix")
    weighted = ev["weighted"]
    return {**ev, "n": ev["n_images"], "accuracy": ev["accuracy"] or 0.0, "precision": weighted["precision"] or 0.0,
            "recall": weighted["recall"] or 0.0, "f1": weighted["f1"] or 0.0, "classes": cm["labels"],
            "confusion_matrix": cm["matrix"]}


def _save(fig, path: str | Path) -> None:  # noqa: ANN001 - a matplotlib Figure
    import matplotlib.pyplot as plt

    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def plot_confusion(metrics: dict, path: str | Path, title: str = "confusion matrix") -> None:
    """Row-normalised confusion matrix with counts, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(metrics["confusion_matrix"], dtype=float)
    classes = metrics["classes"]
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2, 1.1 * len(classes) + 1.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=f"{title} (accuracy {metrics['accuracy']:.3f})")
    fig.tight_layout()
    _save(fig, path)


def plot_curves(history: list[dict], path: str | Path) -> None:
    """Training loss and train/val accuracy per epoch, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [h["train_loss"] for h in history], marker="o", label="train")
    a.plot(ep, [h["val_loss"] for h in history], marker="o", label="val")
    a.set(xlabel="epoch", ylabel="cross-entropy", title="loss (train: class-weighted, label-smoothed)")
    a.legend()
    b.plot(ep, [h["train_acc"] for h in history], marker="o", label="train")
    b.plot(ep, [h["val_acc"] for h in history], marker="o", label="val")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    b.legend()
    fig.tight_layout()
    _save(fig, path)
