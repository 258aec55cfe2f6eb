"""Distil a VLM into the edge detector: the teacher labels unlabelled frames, the SSDlite student learns them.

The pseudo-labels are an ordinary dataset (`OUT/pseudo_labels/samples.jsonl`, image paths relative to
it), so they can be reviewed, corrected and re-used. Metrics on the held-out frames measure agreement
with the teacher, not accuracy: evaluate the student on real labels for that.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jamspotter.data.io import write_json, write_samples
from jamspotter.data.records import Sample
from jamspotter.edge.detector import DetectorTrainConfig, class_list, train_detector
from jamspotter.errors import DataError
from jamspotter.infer.inputs import IMAGE_EXTS

PSEUDO_DIR = "pseudo_labels"


def list_frames(frames_dir: str | Path) -> list[Path]:
    """Image files under `frames_dir`, sorted (belt order when names carry the frame number)."""
    root = Path(frames_dir)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder of frames")
    frames = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not frames:
        raise DataError(f"{root}: no images in this folder")
    return frames


def pseudo_label(teacher: Any, frames_dir: str | Path, out_dir: str | Path, batch_size: int = 4,
                 progress: bool = True) -> list[Sample]:
    """Run the teacher (a `jamspotter.infer.Detector`) on every frame; write and return the pseudo-labelled samples."""
    root = Path(frames_dir)
    frames = list_frames(root)
    pseudo_dir = Path(out_dir) / PSEUDO_DIR
    pseudo_dir.mkdir(parents=True, exist_ok=True)
    results = teacher.detect(frames, batch_size=batch_size, progress=progress)
    samples = []
    for path, res in zip(frames, results, strict=True):
        w, h = res.image_size
        samples.append(Sample(
            id=path.relative_to(root).with_suffix("").as_posix(),
            image=os.path.relpath(path.resolve(), pseudo_dir.resolve()),
            width=w, height=h, objects=res.objects, source=f"teacher:{teacher.name_or_path}",
            meta={"text": res.text, "parse_problems": res.problems}))
    write_samples(pseudo_dir / "samples.jsonl", samples)
    return samples


def distill(teacher: Any, frames_dir: str | Path, out_dir: str | Path, epochs: int = 30,
            config: DetectorTrainConfig | None = None, batch_size: int = 4, export: bool = True,
            progress: bool = True) -> dict[str, Any]:
    """Pseudo-label `frames_dir` with `teacher`, then train the edge detector on them; returns the report.

    With no box from the teacher the student still trains (background only) over the classes the teacher
    was asked for, and the report says so: `pseudo_boxes` is the number to look at first.
    """
    cfg = config or DetectorTrainConfig()
    cfg.epochs = epochs
    samples = pseudo_label(teacher, frames_dir, out_dir, batch_size=batch_size, progress=progress)
    n_boxes = sum(len(s.objects) for s in samples)
    asked = teacher.format.asked_classes()
    classes = class_list(samples, fallback=asked)
    summary: dict[str, Any] = {
        "teacher": teacher.name_or_path, "family": teacher.family, "task": teacher.task, "frames": len(samples),
        "pseudo_boxes": n_boxes, "frames_with_boxes": sum(bool(s.objects) for s in samples),
        "answers_with_parse_problems": sum(bool(s.meta["parse_problems"]) for s in samples),
        "pseudo_labels": f"{PSEUDO_DIR}/samples.jsonl",  # relative to the output folder
        "note": "held-out metrics measure agreement with the teacher's pseudo-labels, not accuracy",
    }
    if n_boxes == 0:
        summary["warning"] = "the teacher found no boxes: the student learned background only"
    summary["training"] = train_detector(samples, Path(out_dir) / PSEUDO_DIR, out_dir, cfg, classes=classes,
                                         export=export, progress=progress)
    write_json(Path(out_dir) / "distill.json", summary)
    return summary
