"""Exporters: `Sample`s -> COCO JSON, a YOLO folder, and chat training files.

Chat files never contain box text written here: a format object (`jamspotter.formats.get_format`)
renders each sample's turns, and we only add the `<image>`/`<video>` placeholder and the layout
(LLaVA / qwen-vl-finetune `conversations`, or `messages` + `images` as LLaMA-Factory's sharegpt
format and ms-swift read it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import yaml

from jamspotter.data.boxes import box_area, xyxy_to_cxcywh_norm, xyxy_to_xywh
from jamspotter.data.classes import class_list
from jamspotter.data.importers._common import unique_id
from jamspotter.data.io import atomic_write, write_json
from jamspotter.data.records import Sample
from jamspotter.errors import DataError, OutputError
from jamspotter.outputs import output_dir

CHAT_LAYOUTS = ("conversations", "messages")


class TurnRenderer(Protocol):
    """What chat exporters need from a format: `(user, assistant)` text pairs for a sample."""

    def render_turns(self, sample: Sample) -> list[tuple[str, str]]: ...


@dataclass
class ExportReport:
    """What an export wrote and what it left out (with the first reasons)."""

    path: Path
    written: int
    skipped: int = 0
    reasons: tuple[str, ...] = ()


def media_path(path: Path | None, out_dir: Path | None) -> str | None:
    """A media path as written into an export: relative to `out_dir` when below it, else absolute."""
    if path is None:
        return None
    ap = Path(os.path.abspath(path))
    if out_dir is None:
        return str(ap)
    out = Path(os.path.abspath(out_dir))
    return ap.relative_to(out).as_posix() if ap.is_relative_to(out) else str(ap)


def polygon_area(polygons: Sequence[Sequence[float]]) -> float:
    """Total shoelace area of COCO polygons `[[x, y, x, y, ...], ...]`."""
    total = 0.0
    for p in polygons:
        xs, ys = p[0::2], p[1::2]
        total += abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs)))) / 2
    return total


def coco_dict(samples: Sequence[Sample], root: str | Path | None, out_dir: str | Path,
              classes: list[dict] | None = None) -> dict:
    """The COCO document: categories stable (given ids first, then new labels sorted), boxes xywh."""
    cats = class_list(samples, classes)
    cat_id = {c["name"]: c["id"] for c in cats}
    images, annotations = [], []
    for i, s in enumerate(samples, 1):
        if s.image is None:  # clips: COCO holds images only
            continue
        if s.width is None or s.height is None:
            raise DataError(f"sample {s.id}: COCO needs width and height")
        images.append({"id": i, "file_name": media_path(s.image_path(root), Path(out_dir)) or s.id,
                       "width": s.width, "height": s.height, "jamspotter_id": s.id})
        for o in s.objects:
            ann = {"id": len(annotations) + 1, "image_id": i, "category_id": cat_id[o.label],
                   "bbox": xyxy_to_xywh(o.bbox), "iscrowd": int(o.iscrowd),
                   "area": polygon_area(o.polygon) if o.polygon else box_area(o.bbox)}
            if o.polygon:
                ann["segmentation"] = o.polygon
            if o.score is not None:
                ann["score"] = o.score
            annotations.append(ann)
    return {"info": {"description": "exported by jamspotter"}, "images": images, "annotations": annotations,
            "categories": [{"id": c["id"], "name": c["name"], "supercategory": c["name"]} for c in cats]}


def export_coco(samples: Sequence[Sample], out: str | Path, root: str | Path | None = None,
                classes: list[dict] | None = None) -> ExportReport:
    """Write a COCO detection JSON (readable by pycocotools) atomically."""
    out = Path(out)
    doc = coco_dict(samples, root, out.parent, classes)
    write_json(out, doc, indent=None)
    clips = [f"{s.id}: a clip, not an image" for s in samples if s.image is None]
    return ExportReport(out, len(doc["images"]), len(clips), tuple(clips[:5]))


def _safe_name(sample_id: str, seen: set[str]) -> str:
    """A file-system-safe, unique file stem for a sample id."""
    return unique_id(re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id.replace("/", "__")) or "sample", seen)


def _fmt(v: float) -> str:
    # 10 decimals keep boxes within 1e-6 px for images up to ~10^4 px on a side
    return f"{v:.10f}".rstrip("0").rstrip(".") if v != 0 else "0"


def export_yolo(samples: Sequence[Sample], out_dir: str | Path, root: str | Path | None = None,
                classes: list[dict] | None = None, copy_images: bool = False, overwrite: bool = False,
                inputs: Iterable[str | Path | None] = ()) -> ExportReport:
    """Write `images/<split>/` (symlinks, or copies), `labels/<split>/*.txt` and `data.yaml`.

    Names keep the given class order (ids 0..n-1), new labels appended sorted. Samples without an
    existing image file (clips, missing images) are skipped and reported. The folder follows the output
    policy (`jamspotter.outputs.output_dir`): a new or empty folder, or an earlier jamspotter output with
    `overwrite`; it is built beside `out_dir` and swapped in whole, so a failure leaves the old one as
    it was. An `out_dir` holding the images it would link to, or any of `inputs`, is refused.
    """
    out_dir = Path(out_dir)
    names = [c["name"] for c in class_list(samples, classes, first_id=0)]
    index = {n: i for i, n in enumerate(names)}
    out_abs = Path(os.path.abspath(out_dir))
    for s in samples:
        src = s.image_path(root)
        if src is not None and (Path(os.path.abspath(src)).is_relative_to(out_abs)
                                or Path(os.path.realpath(src)).is_relative_to(out_abs.resolve())):
            raise OutputError(f"{out_dir}: holds the image of sample {s.id} ({src}); exporting there would remove "
                              "it; choose another folder")
    seen: set[str] = set()
    splits: set[str] = set()
    skipped: list[str] = []
    with output_dir(out_dir, "data export --to yolo", overwrite=overwrite, inputs=inputs) as tmp:
        for s in samples:
            src = s.image_path(root)
            if src is None or not src.is_file():  # YOLO finds labels through images: no image, no sample
                skipped.append(f"{s.id}: " + ("a clip, not an image" if src is None else "image not found"))
                continue
            if s.width is None or s.height is None:
                raise DataError(f"sample {s.id}: YOLO needs width and height")
            split = s.split or "train"
            splits.add(split)
            name = _safe_name(s.id, seen)
            (tmp / "images" / split).mkdir(parents=True, exist_ok=True)
            (tmp / "labels" / split).mkdir(parents=True, exist_ok=True)
            dst = tmp / "images" / split / f"{name}{src.suffix}"
            if copy_images:
                shutil.copyfile(src, dst)  # a new file: modes from the umask, not the source's
            else:
                os.symlink(os.path.abspath(src), dst)
            lines = [f"{index[o.label]} " + " ".join(_fmt(v) for v in xyxy_to_cxcywh_norm(o.bbox, s.width, s.height))
                     for o in s.objects]
            (tmp / "labels" / split / f"{name}.txt").write_text("".join(f"{ln}\n" for ln in lines), encoding="utf-8")
        if not splits:
            raise DataError("no sample has an existing image file: nothing to export to YOLO")
        data = {"path": str(out_abs), **{k: f"images/{k}" for k in sorted(splits)},
                "nc": len(names), "names": dict(enumerate(names))}
        with atomic_write(tmp / "data.yaml") as fh:
            yaml.safe_dump(data, fh, sort_keys=False, allow_unicode=True)
    return ExportReport(out_dir, len(samples) - len(skipped), len(skipped), tuple(skipped[:5]))


def chat_record(sample: Sample, fmt: TurnRenderer, layout: str, root: str | Path | None,
                out_dir: Path | None) -> dict | str:
    """One chat training record, or the reason the sample cannot become one.

    Media paths are absolute, or relative to `out_dir` (when given and the file lies below it). An image
    sample's further images (`meta["images"]`) follow the first in the record's image list, one
    `<image>` placeholder each, in the turn `meta["image_turns"]` names (else the first turn); a
    `meta["system"]` prompt is the first turn (`system` role).
    """
    if layout not in CHAT_LAYOUTS:
        raise ValueError(f"layout must be one of {CHAT_LAYOUTS}")
    if sample.video is not None:
        kind, media = "video", [media_path(sample.resolve(sample.video, root), out_dir)]
    elif sample.image is not None:
        extra = [media_path(sample.resolve(str(p), root), out_dir) for p in sample.meta.get("images", [])]
        kind, media = "image", [media_path(sample.image_path(root), out_dir), *extra]
    else:
        return "no image or video (frame-list clips are not supported by chat files)"
    turns = fmt.render_turns(sample)
    if not turns:
        return "the format rendered no turns"
    placeholder = f"<{kind}>\n" if layout == "conversations" else f"<{kind}>"
    at = sample.meta.get("image_turns") if kind == "image" else None
    if not isinstance(at, list) or len(at) != len(media) or not all(isinstance(t, int) and 0 <= t < len(turns)
                                                                      for t in at):
        at = [0] * len(media)
    system = sample.meta.get("system")
    if layout == "conversations":
        conv = [{"from": "system", "value": str(system)}] if system else []
        for k, (user, assistant) in enumerate(turns):
            conv += [{"from": "human", "value": placeholder * at.count(k) + user},
                     {"from": "gpt", "value": assistant}]
        return {"id": sample.id, kind: media[0] if len(media) == 1 else media, "conversations": conv}
    messages = [{"role": "system", "content": str(system)}] if system else []
    for k, (user, assistant) in enumerate(turns):
        messages += [{"role": "user", "content": placeholder * at.count(k) + user},
                     {"role": "assistant", "content": assistant}]
    return {"messages": messages, f"{kind}s": media}


def check_box_family(samples: Sequence[Sample], family: str) -> None:
    """Raise `DataError` when a sample's turns hold box text of another (or an unknown) model family.

    Chat importers mark such samples `meta["box_family"]`; rendering them for `family` would copy the
    numbers unchanged into a family that reads them in other coordinates.
    """
    from jamspotter.data.importers.chat import BOX_FAMILY, UNKNOWN_FAMILY

    bad = [s for s in samples if s.meta.get(BOX_FAMILY) not in (None, family)]
    if bad:
        written_by = bad[0].meta[BOX_FAMILY]
        what = "an unknown model family" if written_by == UNKNOWN_FAMILY else written_by
        more = f" ({len(bad) - 1} more samples like it)" if len(bad) > 1 else ""
        raise DataError(f"sample {bad[0].id}: its turns hold box coordinates written for {what}, which a {family} "
                        f"export would copy unchanged{more}; re-import the chat file with --family FAMILY "
                        "(the family whose box text it holds)")


def export_chat(samples: Sequence[Sample], fmt: TurnRenderer, out: str | Path, layout: str = "messages",
                root: str | Path | None = None, relative_paths: bool = False,
                trainer: str | None = None) -> ExportReport:
    """Write chat records: JSONL when `out` ends in `.jsonl`, else one JSON list (a record a line).

    Media paths are absolute by default, which LLaMA-Factory, ms-swift and qwen-vl-finetune all open
    as they are; `relative_paths` writes them relative to the output file's folder (set that folder as
    the tool's media/data root then). Samples holding another family's box text are refused
    (`check_box_family`) before anything is written. `trainer` (see `jamspotter.data.trainers`) picks that
    toolkit's record layout instead of `layout` (give it a format from `Trainer.format`, so boxes follow
    its resize); for `llamafactory` a `dataset_info.json` entry named after `out`'s stem is added to (or
    creates) the `dataset_info.json` beside `out`.
    """
    from jamspotter.data.trainers import dataset_info_entry, get_trainer

    spec = get_trainer(trainer) if trainer is not None else None
    check_box_family(samples, getattr(fmt, "family", ""))
    out = Path(out)
    if spec is not None and spec.json_list and out.suffix == ".jsonl":
        raise OutputError(f"{out}: {spec.name} reads one JSON list (json.load), not JSONL; name the file .json")
    info_path, info = out.parent / "dataset_info.json", None
    if spec is not None and spec.dataset_info:
        info = {}
        if info_path.exists() and not info_path.is_file():  # checked before the data file is written
            raise OutputError(f"{info_path}: not a file; LLaMA-Factory's dataset_info.json must be one")
        if info_path.is_file():
            from jamspotter.data.io import read_mapping

            info = dict(read_mapping(info_path, "LLaMA-Factory dataset_info.json"))
    records, reasons = [], []
    out_dir = out.parent if relative_paths else None
    for s in samples:
        rec = spec.record(s, fmt, root, out_dir) if spec is not None else chat_record(s, fmt, layout, root, out_dir)
        if isinstance(rec, str):
            reasons.append(f"{s.id}: {rec}")
        else:
            records.append(rec)
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    with atomic_write(out) as fh:
        if out.suffix == ".jsonl":
            fh.writelines(f"{ln}\n" for ln in lines)
        else:
            fh.write("[\n" + ",\n".join(lines) + "\n]\n")
    if info is not None:
        kinds = tuple(k for k in ("images", "videos") if any(k in r for r in records)) or ("images",)
        info[out.stem] = dataset_info_entry(out.name, kinds)
        write_json(info_path, info, indent=2)
    return ExportReport(out, len(records), len(reasons), tuple(reasons[:5]))
