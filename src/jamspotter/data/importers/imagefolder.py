"""ImageFolder classification (`SRC/<label>/*.jpg`, or `SRC/<split>/<label>/*.jpg`) -> `Sample`s.

The class is the first folder below SRC (below the split folder when the first one is named
train/val/valid/validation/test). Images further down (`SRC/rope/batch-2/x.jpg`) belong to that class
too: sub-folders by date or camera are common and dropping them would lose data silently; this is also
what torchvision's `ImageFolder` does (it walks each class folder recursively, following symlinks).
Symlinked folders are followed (each real folder once). An image directly in SRC (or directly in a split
folder) has no class: it is an error (skipped and reported with --skip-invalid), never dropped quietly.

An optional `SRC/split.csv` with columns `path,label,split` (paths relative to SRC, as TrashNet
ships it) fixes the split; a listed label that disagrees with the folder is an error.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path

from jamspotter.data.importers._common import IMAGE_EXTS, EntryError, ImportContext, read_text, shown
from jamspotter.data.records import Sample
from jamspotter.errors import DataError

SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def read_split_csv(path: Path) -> dict[str, tuple[str, str, str]]:
    """`relative path -> (where, label, split)` from a `path,label,split` CSV."""
    rows: dict[str, tuple[str, str, str]] = {}
    try:
        reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
        missing = {"path", "label", "split"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{shown(path)}:1: missing column(s) {', '.join(sorted(missing))}")
        for lineno, row in enumerate(reader, 2):
            if not row.get("path"):
                raise DataError(f"{shown(path)}:{lineno}: empty path")
            rows[Path(row["path"]).as_posix()] = (f"{shown(path)}:{lineno}", row["label"] or "", row["split"] or "")
    except csv.Error as e:
        raise DataError(f"{shown(path)}: malformed CSV ({e})") from None
    return rows


def walk_images(root: Path) -> Iterator[Path]:
    """Image files below `root` (paths as seen through `root`), following symlinked folders, sorted.

    A folder reached twice (a symlink loop or two links to one folder) is walked once.
    """
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in IMAGE_EXTS:
                yield Path(folder) / name


def folder_label(rel: Path) -> tuple[str | None, str | None]:
    """`(class, split)` of an image path relative to SRC; class None when it lies in no class folder."""
    parts = rel.parts
    if len(parts) >= 3 and parts[0].lower() in SPLIT_DIRS:
        return parts[1], SPLIT_DIRS[parts[0].lower()]
    if len(parts) >= 2:
        return parts[0], None
    return None, None


def import_imagefolder(src: str | Path, ctx: ImportContext) -> list[Sample]:
    """One classification `Sample` per image; `label` = its class folder (see module docstring)."""
    root = Path(src)
    if not root.is_dir():
        raise DataError(f"{shown(root)}: not a folder")
    csv_rows = read_split_csv(root / "split.csv") if (root / "split.csv").is_file() else {}
    found: dict[str, tuple[str | None, str | None]] = {}  # rel path -> (label, split from folder)
    for image in walk_images(root):
        if image.is_file():
            rel = image.relative_to(root)
            found[rel.as_posix()] = folder_label(rel)
    if not any(label for label, _ in found.values()) and not csv_rows:
        raise DataError(f"{shown(root)}: no images in class folders (expected SRC/<label>/<image>)")

    samples: list[Sample] = []
    for rel in sorted(set(found) | set(csv_rows)):
        where, csv_label, csv_split = csv_rows.get(rel, (shown(root / rel), "", ""))
        with ctx.entry(where):
            label, split = found.get(rel, (csv_label, None))
            if rel in found and label is None:
                if not csv_label:
                    raise EntryError("image is not inside a class folder (expected SRC/<label>/<image>)")
                label = csv_label
            if csv_label and csv_label != label:
                raise EntryError(f"label {csv_label!r} disagrees with its folder {label!r}")
            if not label:
                raise EntryError("no label")
            image, w, h, flags = ctx.image(rel, root)
            samples.append(Sample(id=Path(rel).with_suffix("").as_posix(), image=image, width=w, height=h,
                                  label=label, split=csv_split or split, flags=flags,
                                  source=f"imagefolder:{root.name}"))
    return samples
