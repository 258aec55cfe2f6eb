"""Clip records (video path + fps + numeric target sequence) -> `Sample`s.

Shape (JSONL or one JSON list)::

    {"video": "clips/run-03.mp4", "fps": 10, "target": [[0.52, 0.01], [0.55, -0.02], ...],
     "kind": "trajectory", "names": ["velocity", "curvature"], "id": "run-03"}   # last three optional

`frames` (a list of image paths) may replace `video`. The clip's width/height come from the
stream header (PyAV) when the file exists.
"""

from __future__ import annotations

import math
from pathlib import Path

from jamspotter.data.importers._common import EntryError, ImportContext, import_records, unique_id
from jamspotter.data.records import Sample, Target


def video_size(path: Path) -> tuple[int, int] | None:
    """`(width, height)` of the first video stream from the container header; None if absent."""
    if not path.is_file():
        return None
    import av  # heavy-ish; only when a clip is really imported

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return stream.codec_context.width, stream.codec_context.height
    except (av.error.FFmpegError, IndexError) as e:
        raise EntryError(f"cannot read video {path} ({e})") from None


def _target(rec: dict) -> Target:
    values = rec["target"]
    if not isinstance(values, list) or not values:
        raise EntryError("'target' must be a non-empty list of [v, k, ...] steps")
    rows = [[float(v) for v in (step if isinstance(step, list) else [step])] for step in values]
    if len({len(r) for r in rows}) != 1:
        raise EntryError("'target' steps must all have the same length")
    if not all(math.isfinite(v) for r in rows for v in r):
        raise EntryError("'target' values must be finite numbers")
    names = rec.get("names")
    if names is not None and len(names) != len(rows[0]):
        raise EntryError(f"'names' has {len(names)} entries but each step has {len(rows[0])} values")
    return Target(kind=str(rec.get("kind", "trajectory")), values=rows, names=names)


def import_video(src: str | Path, ctx: ImportContext) -> list[Sample]:
    """Read clip records (shape in the module docstring)."""
    path = Path(src)

    def build(rec: dict, i: int, seen: set[str]) -> Sample:
        fps = float(rec["fps"])
        if not (math.isfinite(fps) and fps > 0):
            raise EntryError(f"fps must be a finite number > 0, got {rec['fps']!r}")
        target = _target(rec)
        w, h, flags = rec.get("width"), rec.get("height"), []
        video = frames = None
        if "video" in rec:
            video_ref = Path(str(rec["video"]))
            video_abs = video_ref if video_ref.is_absolute() else (ctx.images or path.parent) / video_ref
            size = video_size(video_abs)
            if size is None:
                if not ctx.allow_missing_images:
                    raise EntryError(f"video {video_abs} not found (use --allow-missing-images to keep it)")
                flags = ["missing_image"]
            else:
                w, h = size
            video = str(video_abs.absolute())
        elif "frames" in rec:
            frames = []
            for f in rec["frames"]:
                frame, w, h, fl = ctx.image(f, path.parent, w, h)
                frames.append(frame)
                flags = sorted(set(flags) | set(fl))
        else:
            raise EntryError("missing field 'video' (or 'frames')")
        base = str(rec.get("id") or Path(str(rec.get("video") or f"clip-{i:06d}")).with_suffix("").as_posix())
        return Sample(id=unique_id(base, seen), video=video, frames=frames, fps=fps, width=w, height=h,
                      target=target, flags=flags, source=f"video:{path.name}#{i}")

    return import_records(path, ctx, build)
