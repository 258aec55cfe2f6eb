"""Importers: labelling-tool exports and training files -> canonical `Sample`s.

`import_dataset(kind, src, ...)` is the one entry point; each kind lives in its own module.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jamspotter.data.importers._common import ImportContext
from jamspotter.data.importers.chat import import_conversations, import_messages
from jamspotter.data.importers.coco import import_coco
from jamspotter.data.importers.detjson import import_detjson
from jamspotter.data.importers.imagefolder import import_imagefolder
from jamspotter.data.importers.qna import CROP_CALL_RE, import_qna, parse_crop_calls, split_think_answer
from jamspotter.data.importers.video import import_video
from jamspotter.data.importers.voc import import_voc
from jamspotter.data.importers.yolo import import_yolo
from jamspotter.data.records import Sample
from jamspotter.data.taxonomy import Taxonomy
from jamspotter.errors import DataError

IMPORTERS: dict[str, Callable[[Path, ImportContext], list[Sample]]] = {
    "coco": import_coco,
    "yolo": import_yolo,
    "voc": import_voc,
    "imagefolder": import_imagefolder,
    "qna": import_qna,
    "detjson": import_detjson,
    "conversations": import_conversations,
    "messages": import_messages,
    "video": import_video,
}


@dataclass
class ImportResult:
    """The imported samples and one line per skipped entry (only with `skip_invalid`)."""

    samples: list[Sample]
    skipped: list[str] = field(default_factory=list)
    classes: list[dict] | None = None  # `[{"id", "name"}]` from the source (COCO categories, YOLO names)


def relative_paths(samples: list[Sample], out_dir: str | Path) -> list[Sample]:
    """Store media paths relative to `out_dir` when they lie below it, else absolute."""
    out = Path(os.path.abspath(out_dir))

    def rel(p: str | None) -> str | None:
        if p is None:
            return None
        ap = Path(os.path.abspath(p))
        return ap.relative_to(out).as_posix() if ap.is_relative_to(out) else str(ap)

    return [s.model_copy(update={"image": rel(s.image), "video": rel(s.video),
                                 "frames": [rel(f) for f in s.frames] if s.frames is not None else None})
            for s in samples]


def import_dataset(kind: str, src: str | Path, *, images: str | Path | None = None,
                   allow_missing_images: bool = False, skip_invalid: bool = False,
                   taxonomy: Taxonomy | None = None) -> ImportResult:
    """Import `src` of the given kind; bad input raises `DataError` (one line) unless skipped."""
    if kind not in IMPORTERS:
        raise DataError(f"unknown import kind {kind!r}; choose from {', '.join(IMPORTERS)}")
    src = Path(src)
    if not src.exists():
        raise DataError(f"{src}: no such file or folder")
    ctx = ImportContext(allow_missing_images=allow_missing_images, skip_invalid=skip_invalid,
                        taxonomy=taxonomy or Taxonomy(), images=Path(images) if images else None)
    samples = IMPORTERS[kind](src, ctx)
    return ImportResult(samples=samples, skipped=ctx.skipped, classes=ctx.classes)


__all__ = ["CROP_CALL_RE", "IMPORTERS", "ImportContext", "ImportResult", "import_dataset", "parse_crop_calls",
           "relative_paths", "split_think_answer"]
