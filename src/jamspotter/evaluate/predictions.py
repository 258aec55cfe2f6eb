"""Read a predictions JSONL into `Sample`s for the evaluator.

One line per image or clip:
- detection: `{"id", "objects": [{"label", "bbox": [x1, y1, x2, y2], "score"?}]}`, or raw model text
  `{"id", "text"}` read with `--family` through `jamspotter.formats` (parse problems are carried in
  `meta["parse_problems"]` and counted in the report);
- classification: `{"id", "label", "score"?}`;
- trajectory: `{"id", "values": [[...], ...]}`.
Full `Sample` lines (e.g. written by `jamspotter infer`) work too; other top-level keys go to `meta`.
A malformed line, and any NaN/Infinity number in a line (a score, a box, a value), raises `DataError`
naming file and line: one non-finite score would otherwise rank first in COCOeval or crash it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from jamspotter.data.io import validation_message
from jamspotter.data.records import Sample
from jamspotter.errors import DataError

Task = Literal["detection", "classification", "trajectory"]
_FIELDS = set(Sample.model_fields)


class NonFiniteNumber(ValueError):
    """A NaN or Infinity literal (or a number too large for a float) in a JSON line."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumber(text)
    return value


def _no_constant(name: str) -> float:
    raise NonFiniteNumber(name)


def loads_finite(line: str) -> object:
    """`json.loads` that refuses NaN, Infinity, -Infinity and overflowing numbers such as 1e400."""
    return json.loads(line, parse_float=_finite_float, parse_constant=_no_constant)


def _image_size(sample: Sample | None, root: Path | None) -> tuple[int, int] | None:
    """(width, height) from the GT record, else from the image file header (as shown, EXIF-upright); None
    when unknown."""
    if sample is None:
        return None
    if sample.width and sample.height:
        return int(sample.width), int(sample.height)
    path = sample.image_path(root)
    if path is not None and path.is_file():
        from jamspotter.data.images import upright_size

        try:
            return upright_size(path)
        except DataError:
            return None
    return None


def _record(d: dict, task: Task) -> dict:
    """Move task shorthands into Sample fields and unknown keys into `meta`."""
    d = dict(d)
    meta = dict(d.pop("meta", None) or {})
    if task == "trajectory" and "values" in d:
        d["target"] = {"kind": "trajectory", "values": d.pop("values"), "names": d.pop("names", None)}
    if "score" in d:
        meta["score"] = d.pop("score")
    for key in [k for k in d if k not in _FIELDS]:
        meta[key] = d.pop(key)
    if isinstance(d.get("id"), int):
        d["id"] = str(d["id"])
    d["meta"] = meta
    return d


def load_predictions(
    path: str | Path,
    task: Task = "detection",
    gt: Sequence[Sample] | None = None,
    gt_root: str | Path | None = None,
    family: str | None = None,
    raw: bool = False,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> list[Sample]:
    """Predictions as `Sample`s (one per line). With `family`, lines carrying `text` are parsed as model output
    (always when `raw`); the image size comes from the matching `gt` record or its image file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    fmt = None
    if family is not None:
        from jamspotter.formats import get_format  # lazy: formats is only needed for raw model text

        fmt = get_format(family, min_pixels=min_pixels, max_pixels=max_pixels)
    gt_by_id = {g.id: g for g in gt or []}
    root = Path(gt_root) if gt_root is not None else None
    out: list[Sample] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                d = loads_finite(line)
            except NonFiniteNumber as e:
                raise DataError(f"{where}: non-finite number {e} (scores, boxes and values must be finite)") from None
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: malformed JSON ({e.msg})") from None
            except RecursionError:
                raise DataError(f"{where}: JSON nested too deeply") from None
            if not isinstance(d, dict) or not isinstance(d.get("id"), str | int):
                raise DataError(f"{where}: each line must be a JSON object with an \"id\"")
            use_text = "text" in d and (raw or "objects" not in d)
            if raw and "text" not in d:
                raise DataError(f"{where}: --raw expects a \"text\" field with the model output")
            if use_text and task != "detection":
                raise DataError(f"{where}: raw model text is only read for detection")
            if use_text and fmt is None:
                raise DataError(f"{where}: line holds raw model text; pass --family to parse it")
            if use_text:
                text = d.pop("text")
                if not isinstance(text, str):
                    raise DataError(f"{where}: text: must be a string")
                if "objects" in d:
                    d.setdefault("meta", {})["given_objects"] = d.pop("objects")
            try:
                sample = Sample.model_validate(_record(d, task))
            except ValidationError as e:
                raise DataError(f"{where}: {validation_message(e)}") from None
            if task == "classification" and sample.label is None and "label" not in d:
                raise DataError(f"{where}: classification predictions need a \"label\"")
            if task == "trajectory" and sample.target is None:
                raise DataError(f"{where}: trajectory predictions need \"values\"")
            if use_text:
                sample = _parse_text(sample, text, fmt, _image_size(gt_by_id.get(sample.id), root))
            out.append(sample)
    return out


def _parse_text(sample: Sample, text: str, fmt, size: tuple[int, int] | None) -> Sample:  # noqa: ANN001
    """Fill `objects` from model text; problems (and an unknown image size) go to `meta["parse_problems"]`."""
    meta = {**sample.meta, "text": text}
    if size is None:
        meta["parse_problems"] = ["image size unknown (no GT width/height or image file): text not parsed"]
        return sample.model_copy(update={"meta": meta})
    # The input size `jamspotter infer` recorded is what the model saw (Qwen2.5-VL writes pixels of it).
    recorded = sample.meta.get("input_size")
    input_size = tuple(recorded) if isinstance(recorded, list | tuple) and len(recorded) == 2 else None
    objects, problems = fmt.parse_detections(text, image_size=size, input_size=input_size)
    meta["parse_problems"] = list(problems)
    return sample.model_copy(update={"objects": list(objects), "meta": meta})
