"""COCO detection JSON -> `Sample`s (one per image, boxes xywh -> xyxy, polygons kept).

RLE segmentations (crowd masks) keep no polygon; the box is still imported.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from jamspotter.data.boxes import xywh_to_xyxy
from jamspotter.data.importers._common import EntryError, ImportContext, load_json, require_dict, shown, unique_id
from jamspotter.data.records import Sample
from jamspotter.errors import DataError


def _polygon(seg: object) -> list[list[float]] | None:
    """COCO polygon list `[[x, y, x, y, ...], ...]`; None for RLE or empty segmentation."""
    if not isinstance(seg, list) or not seg or not all(isinstance(p, list) for p in seg):
        return None
    polys = [[float(v) for v in p] for p in seg if len(p) >= 6 and len(p) % 2 == 0]
    return polys or None


def import_coco(src: str | Path, ctx: ImportContext) -> list[Sample]:
    """Read a COCO `instances.json`; image paths are relative to `--images` or the JSON's folder."""
    path = Path(src)
    name = shown(path)
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{name}: not a COCO file (no 'images' list)")
    categories: dict[int, str] = {}
    for i, cat in enumerate(data.get("categories") or []):
        with ctx.entry(f"{name}:categories[{i}]"):
            categories[int(require_dict(cat)["id"])] = str(cat["name"])

    ctx.classes = [{"id": k, "name": v} for k, v in sorted(categories.items())]
    by_image: dict[object, list[tuple[int, dict]]] = defaultdict(list)
    for i, ann in enumerate(data.get("annotations") or []):
        with ctx.entry(f"{name}:annotations[{i}]"):
            by_image[require_dict(ann)["image_id"]].append((i, ann))

    samples: list[Sample] = []
    seen: set[str] = set()
    for i, img in enumerate(data["images"]):
        with ctx.entry(f"{name}:images[{i}]"):
            img = require_dict(img)
            w, h = img.get("width"), img.get("height")
            image, w, h, flags = ctx.image(img["file_name"], path.parent, w, h)
            objects = []
            for j, ann in by_image.get(img["id"], []):
                where = f"annotations[{j}] (id {ann.get('id')})"
                cat = ann.get("category_id")
                if cat not in categories:
                    raise EntryError(f"{where}: unknown category_id {cat!r}")
                try:
                    objects.append(ctx.box(categories[cat], xywh_to_xyxy(ann["bbox"]), w, h,
                                           polygon=_polygon(ann.get("segmentation")),
                                           iscrowd=bool(ann.get("iscrowd", 0))))
                except KeyError as e:
                    raise EntryError(f"{where}: missing field {e}") from None
                except (EntryError, TypeError, ValueError) as e:
                    raise EntryError(f"{where}: {e}") from None
            samples.append(Sample(
                id=unique_id(Path(str(img["file_name"])).with_suffix("").as_posix(), seen),
                image=image, width=w, height=h, objects=objects, flags=flags,
                source=f"coco:{path.name}#{img['id']}",
            ))
    # Annotations that point at no image are a broken file, not something to drop quietly.
    image_ids = {img.get("id") for img in data["images"] if isinstance(img, dict)}
    for img_id, anns in by_image.items():
        if img_id not in image_ids:
            with ctx.entry(f"{name}:annotations[{anns[0][0]}]"):
                raise EntryError(f"image_id {img_id!r} is not in 'images'")
    return samples
