"""ImageFolder classification (`SRC/<label>/*.jpg`, or `SRC/<split>/<label>/*.jpg`) -> `Sample`s.

An optional `SRC/split.csv` with columns `path,label,split` (paths relative to SRC, as TrashNet
ships it) fixes the split; a listed label that disagrees with the folder is an error.
"""

from __future__ import annotations

import csv
from pathlib import Path

from jamspotter.data.importers._common import IMAGE_EXTS, EntryError, ImportContext, shown
from jamspotter.data.records import Sample
from jamspotter.errors import DataError

SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def read_split_csv(path: Path) -> dict[str, tuple[str, str, str]]:
    """`relative path -> (where, label, split)` from a `path,label,split` CSV."""
    rows: dict[str, tuple[str, str, str]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"path", "label", "split"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{shown(path)}:1: missing column(s) {', '.join(sorted(missing))}")
        for lineno, row in enumerate(reader, 2):
            if not row.get("path"):
                raise DataError(f"{shown(path)}:{lineno}: empty path")
            rows[Path(row["path"]).as_posix()] = (f"{shown(path)}:{lineno}", row["label"] or "", row["split"] or "")
    return rows


def import_imagefolder(src: str | Path, ctx: ImportContext) -> list[Sample]:
    """One classification `Sample` per image; `label` = folder name, sizes from image headers."""
    root = Path(src)
    if not root.is_dir():
        raise DataError(f"{shown(root)}: not a folder")
    csv_rows = read_split_csv(root / "split.csv") if (root / "split.csv").is_file() else {}
    found: dict[str, tuple[str, str | None]] = {}  # rel path -> (label, split from folder)
    for image in sorted(root.rglob("*")):
        if image.suffix.lower() not in IMAGE_EXTS or not image.is_file():
            continue
        rel = image.relative_to(root)
        if len(rel.parts) == 3 and rel.parts[0].lower() in SPLIT_DIRS:
            found[rel.as_posix()] = (rel.parts[1], SPLIT_DIRS[rel.parts[0].lower()])
        elif len(rel.parts) == 2:
            found[rel.as_posix()] = (rel.parts[0], None)
    if not found and not csv_rows:
        raise DataError(f"{shown(root)}: no images in class folders (expected SRC/<label>/<image>)")

    samples: list[Sample] = []
    for rel in sorted(set(found) | set(csv_rows)):
        where, csv_label, csv_split = csv_rows.get(rel, (shown(root / rel), "", ""))
        with ctx.entry(where):
            label, split = found.get(rel, (csv_label, None))
            if csv_label and csv_label != label:
                raise EntryError(f"label {csv_label!r} disagrees with its folder {label!r}")
            if not label:
                raise EntryError("no label")
            image, w, h, flags = ctx.image(rel, root)
            samples.append(Sample(id=Path(rel).with_suffix("").as_posix(), image=image, width=w, height=h,
                                  label=label, split=csv_split or split, flags=flags,
                                  source=f"imagefolder:{root.name}"))
    return samples
