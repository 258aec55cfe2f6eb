"""Image-classification datasets for the edge model: TrashNet (split.csv), ImageFolder, or a Sample JSONL.

All three become a list of `Item(path, label, split)`. A dataset without splits gets a stratified
80/10/10 split with a fixed seed, so train, val (model selection) and test (report) never overlap.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from jamspotter.data.io import iter_samples, samples_path
from jamspotter.errors import DataError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "val", "test")
# test-time views as flip dims of an NCHW batch: as is, horizontal, vertical, both
FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))


@dataclass(frozen=True)
class Item:
    """One labelled image."""

    path: Path
    label: str
    split: str


def _from_split_csv(root: Path) -> list[Item]:
    out = []
    with (root / "split.csv").open(encoding="utf-8", newline="") as fh:
        for lineno, row in enumerate(csv.DictReader(fh), 2):
            if not {"path", "label"} <= row.keys() or not row["path"] or not row["label"]:
                raise DataError(f"{root / 'split.csv'}:{lineno}: need columns path,label[,split]")
            split = (row.get("split") or "").strip()
            if split and split not in SPLITS:
                raise DataError(f"{root / 'split.csv'}:{lineno}: split must be one of {SPLITS}, got {split!r}")
            out.append(Item(root / row["path"], row["label"].strip(), split))
    return out


def _from_samples(path: Path) -> list[Item]:
    root = path.parent
    out = []
    for i, s in enumerate(iter_samples(path), 1):
        if s.label is None or s.image is None:
            raise DataError(f"{path}:{i}: sample {s.id!r} has no image-level `label` or no `image`")
        out.append(Item(s.image_path(root), s.label, s.split or ""))
    return out


def _from_image_folder(root: Path) -> list[Item]:
    """`root/<class>/*.jpg`, or `root/{train,val,test}/<class>/*.jpg`."""
    split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
    out = []
    for base in split_dirs or [root]:
        split = base.name if split_dirs else ""
        for cls_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            out += [Item(f, cls_dir.name, split) for f in sorted(cls_dir.rglob("*")) if f.suffix.lower() in IMAGE_EXTS]
    return out


def stratified_split(items: list[Item], seed: int = 0, fractions: tuple[float, float] = (0.8, 0.1)) -> list[Item]:
    """Give items without a split one: `fractions` train/val and the rest test, per class, through the
    project's one split rule (`data.splits.assign_splits`: stratified by label, one image one split)."""
    from jamspotter.data.records import Sample
    from jamspotter.data.splits import assign_splits

    ratios = (fractions[0], fractions[1], max(0.0, 1.0 - fractions[0] - fractions[1]))
    samples = [Sample(id=str(i), image=str(it.path), label=it.label) for i, it in enumerate(items)]
    return [Item(it.path, it.label, s.split or "train")
            for it, s in zip(items, assign_splits(samples, ratios, seed=seed, by="label"), strict=True)]


def load_items(data: str | Path, seed: int = 0) -> list[Item]:
    """Items of a TrashNet-style folder (split.csv), a samples.jsonl (or its folder), or an ImageFolder."""
    data = Path(data)
    if data.is_dir() and (data / "split.csv").is_file():
        items = _from_split_csv(data)
    elif samples_path(data).is_file():
        items = _from_samples(samples_path(data))
    elif data.is_dir():
        items = _from_image_folder(data)
    else:
        raise DataError(f"{data}: no such dataset (want a folder with split.csv, a samples.jsonl, or class folders)")
    if not items:
        raise DataError(f"{data}: no labelled images found")
    missing = [it.path for it in items if not it.path.is_file()]
    if missing:
        raise DataError(f"{data}: {len(missing)} image(s) missing, e.g. {missing[0]}")
    if any(not it.split for it in items):
        unsplit = stratified_split([it for it in items if not it.split], seed)
        items = [it for it in items if it.split] + unsplit
    return items


def class_names(items: list[Item]) -> list[str]:
    """Sorted class names (the index order of the model's outputs)."""
    return sorted({it.label for it in items})


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image as upright RGB (`jamspotter.data.images.open_rgb`); a broken or oversized file raises
    DataError naming it."""
    from jamspotter.data.images import open_rgb

    return open_rgb(path)


def pil_to_chw(im: Image.Image) -> torch.Tensor:
    """[0, 1] CHW float tensor, converted in numpy (torchvision's ToTensor costs ~50 ms on a busy CPU here)."""
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def to_tensor(im: Image.Image, size: int) -> torch.Tensor:
    """Resize to size x size and scale to [0, 1] CHW float (what every EdgeNet expects)."""
    return pil_to_chw(im.resize((size, size), Image.BILINEAR))


def train_transform(size: int):  # noqa: ANN201 - a torchvision Compose
    """Flip, rotation 15 deg, colour jitter 0.2, translation 10%, then resize to the model size."""
    from torchvision import transforms as T

    return T.Compose([
        T.Resize((size, size)),
        T.RandomHorizontalFlip(),
        T.RandomVerticalFlip(),  # items on a belt have no up
        T.RandomAffine(degrees=15, translate=(0.1, 0.1)),
        T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
        pil_to_chw,
    ])


class ImageDataset(torch.utils.data.Dataset):
    """(image tensor in [0, 1], class index) pairs; `transform` None means plain resize (eval)."""

    def __init__(self, items: list[Item], classes: list[str], size: int, transform=None) -> None:  # noqa: ANN001
        self.items, self.size, self.transform = items, size, transform
        self.index = {c: i for i, c in enumerate(classes)}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        it = self.items[i]
        im = load_rgb(it.path)
        x = self.transform(im) if self.transform is not None else to_tensor(im, self.size)
        return x, self.index[it.label]
