"""Per-class detection JSON -> `Sample`s.

Shape (one JSON list, or JSONL with one object a line)::

    {"image_path": "imgs/0001.jpg", "object": {"rope": [[x1, y1, x2, y2], ...], "plastic film": [...]}}

Boxes are xyxy in original image pixels; `width`/`height` are optional (read from the image header).
"""

from __future__ import annotations

from pathlib import Path

from jamspotter.data.importers._common import (
    EntryError,
    ImportContext,
    first_key,
    import_records,
    unique_id,
)
from jamspotter.data.records import Sample


def import_detjson(src: str | Path, ctx: ImportContext) -> list[Sample]:
    """Read per-class detection records (shape in the module docstring)."""
    path = Path(src)

    def build(rec: dict, i: int, seen: set[str]) -> Sample:
        image_ref = first_key(rec, "image_path", "image")
        image, w, h, flags = ctx.image(image_ref, path.parent, rec.get("width"), rec.get("height"))
        groups = first_key(rec, "object", "objects")
        if not isinstance(groups, dict):
            raise EntryError("'object' must map class -> list of [x1, y1, x2, y2]")
        objects = []
        for label, boxes in groups.items():
            if not isinstance(boxes, list):
                raise EntryError(f"object {label!r}: expected a list of boxes")
            for k, box in enumerate(boxes):
                try:
                    objects.append(ctx.box(str(label), box, w, h))
                except (EntryError, ValueError, TypeError) as e:
                    raise EntryError(f"object {label!r}[{k}]: {e}") from None
        base = str(rec.get("id") or Path(str(image_ref)).with_suffix("").as_posix())
        return Sample(id=unique_id(base, seen), image=image, width=w, height=h, objects=objects,
                      flags=flags, source=f"detjson:{path.name}#{i}")

    return import_records(path, ctx, build)
