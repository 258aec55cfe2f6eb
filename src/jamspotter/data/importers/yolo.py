"""YOLO (Ultralytics layout) -> `Sample`s.

SRC is a `data.yaml` or a folder holding one. `train`/`val`/`test` name image folders (or `.txt`
lists of images) relative to `path:` (default: the yaml's folder); labels sit in the parallel
`labels/` folder, one `class cx cy w h` line per box, normalised to 0..1. Segmentation lines
(`class x y x y ...`) are read as polygons with their bounding box. Image sizes come from the headers,
upright (EXIF orientation applied), as Ultralytics reads them; values must be finite numbers.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from jamspotter.data.boxes import cxcywh_norm_to_xyxy
from jamspotter.data.importers._common import IMAGE_EXTS, EntryError, ImportContext, read_text, shown, unique_id
from jamspotter.data.records import BoxObject, Sample
from jamspotter.errors import DataError

SPLIT_KEYS = ("train", "val", "test")


def read_data_yaml(src: Path) -> tuple[Path, dict, list[str]]:
    """`(yaml path, parsed yaml, class names in id order)`."""
    path = src / "data.yaml" if src.is_dir() else src
    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise DataError(f"{shown(path)}{line}: malformed YAML ({getattr(e, 'problem', e)})") from None
    except RecursionError:
        raise DataError(f"{shown(path)}: YAML nested too deeply") from None
    if not isinstance(data, dict) or "names" not in data:
        raise DataError(f"{shown(path)}: no 'names' (class list) in data.yaml")
    names = data["names"]
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError, OverflowError):
            raise DataError(f"{shown(path)}: 'names' keys must be class ids") from None
        if ids != list(range(len(ids))):
            raise DataError(f"{shown(path)}: 'names' ids must be 0..{len(ids) - 1}")
        names = [names[k] if k in names else names[str(k)] for k in ids]
    if not isinstance(names, list):
        raise DataError(f"{shown(path)}: 'names' must be a list or an id -> name map")
    return path, data, [str(n) for n in names]


def _images_of(entry: Path) -> list[Path]:
    if entry.suffix == ".txt" and entry.is_file():
        lines = read_text(entry).splitlines()
        return [(entry.parent / ln.strip()) for ln in lines if ln.strip()]
    if entry.is_dir():
        return sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    raise DataError(f"{shown(entry)}: split folder or list not found")


def label_path(image: Path) -> Path:
    """Ultralytics rule: the last `images` folder in the path becomes `labels`, suffix `.txt`."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def parse_label_line(line: str, names: list[str], width: int, height: int) -> tuple[str, list[float], list | None]:
    """One label line -> `(class name, xyxy box in pixels, polygon or None)`."""
    parts = line.split()
    try:
        values = [float(v) for v in parts]
    except ValueError:
        raise EntryError(f"not numbers: {line.strip()!r}") from None
    if len(values) < 5 or (len(values) > 5 and (len(values) - 1) % 2):
        raise EntryError(f"expected 'class cx cy w h' (or a polygon), got {len(values)} values")
    if not all(math.isfinite(v) for v in values):
        raise EntryError(f"non-finite number (NaN or infinity) in {line.strip()!r}")
    cls = values[0]
    if cls != int(cls) or not 0 <= int(cls) < len(names):
        raise EntryError(f"unknown class id {parts[0]} (data.yaml has {len(names)} names)")
    if len(values) == 5:
        return names[int(cls)], cxcywh_norm_to_xyxy(values[1:], width, height), None
    xs, ys = [v * width for v in values[1::2]], [v * height for v in values[2::2]]
    polygon = [[c for xy in zip(xs, ys, strict=True) for c in xy]]
    return names[int(cls)], [min(xs), min(ys), max(xs), max(ys)], polygon


def import_yolo(src: str | Path, ctx: ImportContext) -> list[Sample]:
    """Read every split listed in data.yaml into `Sample`s with `split` set."""
    yaml_path, data, names = read_data_yaml(Path(src).absolute())
    root = Path(str(data.get("path") or yaml_path.parent))
    if not root.is_absolute():
        root = yaml_path.parent / root
    ctx.classes = [{"id": i, "name": n} for i, n in enumerate(names)]
    samples: list[Sample] = []
    seen: set[str] = set()
    for split in SPLIT_KEYS:
        entries = data.get(split)
        if not entries:
            continue
        for entry in entries if isinstance(entries, list) else [entries]:
            target = root / str(entry)
            if not target.exists() and str(entry).startswith("../"):  # Roboflow exports; Ultralytics retries too
                target = root / str(entry)[3:]
            for image in _images_of(target):
                labels = label_path(image)
                with ctx.entry(shown(labels)):
                    abs_image, w, h, flags = ctx.image(image, root)
                    if w is None or h is None:
                        raise EntryError("image size unknown (image missing): YOLO boxes need it")
                    objects: list[BoxObject] = []
                    lines = read_text(labels).splitlines() if labels.is_file() else []
                    for lineno, line in enumerate(lines, 1):
                        if not line.strip():
                            continue
                        try:
                            label, box, polygon = parse_label_line(line, names, w, h)
                            objects.append(ctx.box(label, box, w, h, polygon=polygon))
                        except EntryError as e:
                            raise DataError(f"{shown(labels)}:{lineno}: {e}") from None
                    base = image.relative_to(root).with_suffix("").as_posix() if image.is_relative_to(root) \
                        else image.stem
                    samples.append(Sample(id=unique_id(base, seen), image=abs_image, width=w, height=h,
                                          objects=objects, split=split, flags=flags,
                                          source=f"yolo:{yaml_path.name}:{split}"))
    return samples
