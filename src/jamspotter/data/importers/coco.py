"""COCO detection JSON -> `Sample`s (one per image, boxes xywh -> xyxy, polygons kept).

RLE segmentations (crowd masks) keep no polygon; the box is still imported. Numbers must be finite
(bbox, segmentation, area). Two images or two categories with the same id make the file ambiguous
(which image do its annotations belong to, which name does the id mean): that is an error, never a merge.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from jamspotter.data.boxes import xywh_to_xyxy
from jamspotter.data.importers._common import (
    EntryError,
    ImportContext,
    finite,
    load_json,
    require_dict,
    shown,
    unique_id,
)
from jamspotter.data.records import Sample
from jamspotter.errors import DataError


def _polygon(seg: object) -> list[list[float]] | None:
    """COCO polygon list `[[x, y, x, y, ...], ...]`; None for RLE or empty segmentation."""
    if not isinstance(seg, list) or not seg or not all(isinstance(p, list) for p in seg):
        return None
    polys = [finite(p, "segmentation") for p in seg if len(p) >= 6 and len(p) % 2 == 0]
    return polys or None


def _check_area(ann: dict) -> None:
    area = ann.get("area")
    if area is not None and (isinstance(area, bool) or not isinstance(area, int | float) or not math.isfinite(area)
                             or area < 0):
        raise EntryError(f"area must be a finite number >= 0, got {area!r}")


def _unique_image_ids(name: str, images: list) -> None:
    """Refuse a second image with an id already used: its annotations could belong to either."""
    first: dict[object, int] = {}
    for i, img in enumerate(images):
        key = img.get("id") if isinstance(img, dict) else None
        if key is None or not _hashable(key):  # an unhashable id: reported where the entry is read
            continue
        if key not in first:
            first[key] = i
            continue
        raise DataError(f"{name}: duplicate image id {key!r} (images[{first[key]}] and images[{i}]); "
                        "image ids must be unique")


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _category_id(value: object) -> int:
    cid = int(value)  # type: ignore[call-overload]  # bad types end as one-line entry errors
    if isinstance(value, float) and cid != value:
        raise EntryError(f"category id must be a whole number, got {value!r}")
    return cid


def import_coco(src: str | Path, ctx: ImportContext) -> list[Sample]:
    """Read a COCO `instances.json`; image paths are relative to `--images` or the JSON's folder."""
    path = Path(src)
    name = shown(path)
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{name}: not a COCO file (no 'images' list)")
    for what in ("categories", "annotations"):
        if not isinstance(data.get(what) or [], list):
            raise DataError(f"{name}: '{what}' must be a list")
    _unique_image_ids(name, data["images"])
    categories: dict[int, str] = {}
    first_cat: dict[int, int] = {}
    for i, cat in enumerate(data.get("categories") or []):
        parsed = None
        with ctx.entry(f"{name}:categories[{i}]"):
            parsed = _category_id(require_dict(cat)["id"]), str(cat["name"])
        if parsed is None:
            continue
        cid, cname = parsed
        if cid in categories:  # never skippable: every annotation with this id would be ambiguous
            raise DataError(f"{name}: duplicate category id {cid} (categories[{first_cat[cid]}] "
                            f"{categories[cid]!r} and categories[{i}] {cname!r}); category ids must be unique")
        categories[cid], first_cat[cid] = cname, i

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
                    _check_area(ann)
                    objects.append(ctx.box(categories[cat], xywh_to_xyxy(finite(ann["bbox"], "bbox")), w, h,
                                           polygon=_polygon(ann.get("segmentation")),
                                           iscrowd=bool(ann.get("iscrowd", 0))))
                except KeyError as e:
                    raise EntryError(f"{where}: missing field {e}") from None
                except (EntryError, TypeError, ValueError) as e:
                    raise EntryError(f"{where}: {e}") from None
            samples.append(Sample(
                # a jamspotter export keeps the sample id, so predictions still pair after a round trip
                id=unique_id(str(img.get("jamspotter_id") or Path(str(img["file_name"])).with_suffix("").as_posix()),
                             seen),
                image=image, width=w, height=h, objects=objects, flags=flags,
                source=f"coco:{path.name}#{img['id']}",
            ))
    # Annotations that point at no image are a broken file, not something to drop quietly.
    image_ids = {img.get("id") for img in data["images"] if isinstance(img, dict) and _hashable(img.get("id"))}
    for img_id, anns in by_image.items():
        if img_id not in image_ids:
            with ctx.entry(f"{name}:annotations[{anns[0][0]}]"):
                raise EntryError(f"image_id {img_id!r} is not in 'images'")
    return samples
