"""What `jamspotter infer` runs on: image files, folders of images, clips and Sample datasets, as `Sample`s.

Every path is made absolute so one list can mix datasets with loose files; dataset samples keep
their ids (so `jamspotter eval detection` pairs predictions with the ground truth), loose files
get their file name without extension (their path relative to the folder given, for folders).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jamspotter.data.io import read_samples
from jamspotter.data.records import Sample
from jamspotter.errors import DataError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def _absolute(sample: Sample, root: Path) -> Sample:
    """The sample with image/video/frames resolved against `root`, content fields cleared for prediction."""
    return sample.model_copy(update={
        "image": str(sample.image_path(root).resolve()) if sample.image else None,
        "video": str(sample.resolve(sample.video, root).resolve()) if sample.video else None,
        "frames": [str(sample.resolve(f, root).resolve()) for f in sample.frames] if sample.frames else None,
    })


def _loose(path: Path, sample_id: str) -> Sample:
    kind = "video" if path.suffix.lower() in VIDEO_EXTS else "image"
    return Sample(id=sample_id, **{kind: str(path.resolve())})


def collect_inputs(paths: Sequence[str | Path], split: str | None = None) -> list[Sample]:
    """Samples to run on, in the order given (folders sorted); unknown or missing paths are a DataError.

    `split` keeps only that split of datasets (`test` for a report; unsplit samples count as `train`);
    loose images and clips have no split and are refused with it.
    """
    from jamspotter.data.splits import select_split

    out: list[Sample] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and (path / "samples.jsonl").is_file() or path.suffix == ".jsonl":
            root = path if path.is_dir() else path.parent
            chosen = select_split(read_samples(path), split)
            if split is not None and not chosen:
                raise DataError(f"{path}: no samples in split {split!r} (run `jamspotter data split` first)")
            out += [_absolute(s, root) for s in chosen]
        elif split is not None:
            raise DataError(f"{path}: --split applies to datasets (samples.jsonl), not to loose images or clips")
        elif path.is_dir():
            media = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS + VIDEO_EXTS)
            if not media:
                raise DataError(f"{path}: no images or videos in this folder")
            out += [_loose(p, p.relative_to(path).with_suffix("").as_posix()) for p in media]
        elif path.is_file() and path.suffix.lower() in IMAGE_EXTS + VIDEO_EXTS:
            out.append(_loose(path, path.stem))
        elif path.exists():
            raise DataError(f"{path}: not an image, a video, a samples.jsonl or a folder")
        else:
            raise DataError(f"{path}: no such file or folder")
    seen: set[str] = set()
    for s in out:
        if s.id in seen:
            raise DataError(f"two inputs share the id {s.id!r}; give them in separate runs or a samples.jsonl")
        seen.add(s.id)
    return out


def prediction_record(sample: Sample) -> dict:
    """One predictions-JSONL object: the Sample fields, with the raw text and parse problems at the top level
    (so `jamspotter eval detection --pred` reads the boxes, and `--raw --family` can re-parse the text)."""
    import json

    record = json.loads(sample.to_json())
    record["objects"] = record.get("objects", [])  # explicit: no boxes is an answer, not a missing field
    meta = record.pop("meta", {})
    for key in ("text", "parse_problems"):
        if key in meta:
            record[key] = meta.pop(key)
    if meta:
        record["meta"] = meta
    return record


def write_predictions(path: str | Path, predictions: Sequence[Sample]) -> int:
    """Write predictions JSONL atomically (nothing is left half-written); returns the line count."""
    import json

    from jamspotter.data.io import atomic_write

    with atomic_write(path) as fh:
        for s in predictions:
            fh.write(json.dumps(prediction_record(s), ensure_ascii=False) + "\n")
    return len(predictions)
