"""The dataset's class list (`DIR/classes.json`), kept so exports keep ids and unused classes stable.

COCO ids and YOLO name order come from the source; labels not in the list are appended sorted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from jamspotter.data.io import write_json
from jamspotter.data.records import Sample
from jamspotter.errors import DataError

CLASSES_FILE = "classes.json"


def write_classes(out_dir: str | Path, classes: list[dict]) -> None:
    """Write `[{"id": int, "name": str}, ...]` to `DIR/classes.json` atomically."""
    write_json(Path(out_dir) / CLASSES_FILE, classes)


def read_classes(dataset_dir: str | Path) -> list[dict] | None:
    """The stored class list, or None when the dataset has none."""
    path = Path(dataset_dir) / CLASSES_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [{"id": int(c["id"]), "name": str(c["name"])} for c in data]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: malformed class list ({e})") from None


def labels_of(samples: Iterable[Sample], image_labels: bool = True) -> set[str]:
    """Every object label (and image label, if asked) used by the samples, clip frames included."""
    out: set[str] = set()
    for s in samples:
        out.update(o.label for o in s.objects)
        out.update(o.label for objs in (s.frame_objects or []) for o in objs)
        if image_labels and s.label is not None:
            out.add(s.label)
    return out


def class_list(samples: Iterable[Sample], classes: list[dict] | None = None, first_id: int = 1,
               image_labels: bool = False) -> list[dict]:
    """Known classes in their order, then unseen object labels sorted by name with the next free ids."""
    out = [dict(c) for c in (classes or [])]
    known = {c["name"] for c in out}
    next_id = max((c["id"] for c in out), default=first_id - 1) + 1
    for name in sorted(labels_of(samples, image_labels) - known):
        out.append({"id": next_id, "name": name})
        next_id += 1
    return out
