"""Pascal VOC XML -> `Sample`s.

SRC is one `.xml`, a folder of them, or a VOC year folder (`Annotations/`, `JPEGImages/`,
optional `ImageSets/Main/{train,val,test}.txt` for the split). Box corners are taken as written
(`xmin..xmax` in pixels, as labelImg/CVAT write them). `difficult`/`truncated` go to attributes.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

from jamspotter.data.importers._common import EntryError, ImportContext, read_text, shown, unique_id
from jamspotter.data.records import Sample
from jamspotter.errors import DataError


def _text(node: ET.Element, tag: str, required: bool = True) -> str | None:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if required:
            raise EntryError(f"missing <{tag}>")
        return None
    return child.text.strip()


def _number(node: ET.Element, tag: str) -> float:
    text = _text(node, tag)
    try:
        value = float(text)
    except ValueError:
        raise EntryError(f"<{tag}> is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise EntryError(f"<{tag}> is not a finite number: {text!r}")
    return value


def _splits(root: Path) -> dict[str, str]:
    """Image id -> split from `ImageSets/Main/{train,val,test}.txt` when present."""
    out: dict[str, str] = {}
    for split in ("train", "val", "test"):
        f = root / "ImageSets" / "Main" / f"{split}.txt"
        if f.is_file():
            for line in read_text(f).split("\n"):
                if line.strip():
                    out[line.split()[0]] = split
    return out


def import_voc(src: str | Path, ctx: ImportContext) -> list[Sample]:
    """Read VOC XML files into `Sample`s (images looked up in --images, JPEGImages/ or beside the XML)."""
    src = Path(src)
    if src.is_file():
        xml_files, root = [src], src.parent
    elif (src / "Annotations").is_dir():
        xml_files, root = sorted((src / "Annotations").glob("*.xml")), src
    elif src.is_dir():
        xml_files, root = sorted(src.glob("*.xml")), src
    else:
        raise DataError(f"{shown(src)}: no such file or folder")
    if not xml_files:
        raise DataError(f"{shown(src)}: no .xml annotation files found")
    image_dir = ctx.images or ((root / "JPEGImages") if (root / "JPEGImages").is_dir() else None)
    splits = _splits(root)
    samples: list[Sample] = []
    seen: set[str] = set()
    for xml in xml_files:
        with ctx.entry(shown(xml)):
            try:
                doc = ET.parse(xml).getroot()
            except ET.ParseError as e:
                raise EntryError(f"malformed XML (line {e.position[0]}: {e.msg})") from None
            except OSError as e:
                raise EntryError(f"cannot read ({e.strerror or e})") from None
            filename = _text(doc, "filename", required=False) or f"{xml.stem}.jpg"
            size = doc.find("size")
            w = int(_number(size, "width")) if size is not None and size.find("width") is not None else None
            h = int(_number(size, "height")) if size is not None and size.find("height") is not None else None
            if not w or not h:  # VOC files written without a size have 0 here
                w = h = None
            base = image_dir or xml.parent
            image, w, h, flags = ctx.image(base / filename, base, w, h)
            objects = []
            for k, obj in enumerate(doc.findall("object")):
                try:
                    bnd = obj.find("bndbox")
                    if bnd is None:
                        raise EntryError("missing <bndbox>")
                    box = [_number(bnd, t) for t in ("xmin", "ymin", "xmax", "ymax")]
                    attrs = {t: True for t in ("difficult", "truncated", "occluded") if _text(obj, t, False) == "1"}
                    objects.append(ctx.box(_text(obj, "name"), box, w, h, attributes=attrs))
                except EntryError as e:
                    raise EntryError(f"object {k + 1}: {e}") from None
            samples.append(Sample(id=unique_id(xml.stem, seen), image=image, width=w, height=h, objects=objects,
                                  split=splits.get(xml.stem), flags=flags, source=f"voc:{xml.name}"))
    return samples
