"""Belt stream runner: frames in belt order -> model -> CSV/JSONL log, jam-risk alerts, review queue.

Sources: a folder of images (natural sort order), a video clip (decoded with av, one frame every
`interval` seconds), or synthetic belt scenes (`jamspotter.synth.render_scene`, with ground truth).
Frames whose top confidence is below `review_below` are copied to the review folder with a
samples.jsonl, ready for labelling (an active-learning queue).
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from jamspotter.data.io import atomic_write, write_json, write_samples
from jamspotter.data.records import Sample
from jamspotter.data.taxonomy import Taxonomy
from jamspotter.errors import DataError
from jamspotter.line.protocol import FrameModel

SOURCES = ("folder", "clip", "synth")
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
CSV_FIELDS = ("frame", "time_s", "source", "label", "confidence", "top", "jam_risk", "alert", "review",
              "latency_ms", "gt_jam")


@dataclass
class Frame:
    """One frame of the belt: its index, belt time, pixels and where it came from."""

    index: int
    time_s: float
    image: np.ndarray  # H x W x 3 uint8 RGB
    source: str
    gt_jam: bool | None = None  # known for synthetic frames


def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def folder_frames(folder: Path, interval: float) -> Iterator[Frame]:
    """Images of a folder in natural order (frame2 before frame10), `interval` seconds apart."""
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS), key=_natural_key)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTS))})")
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                arr = np.asarray(im.convert("RGB"))
        except OSError as e:
            raise DataError(f"{f}: cannot read image ({e})") from None
        yield Frame(i, i * interval, arr, str(f))


def clip_frames(path: Path, interval: float) -> Iterator[Frame]:
    """Decode a clip with av; keep the first frame at or after every `interval` seconds (0 = every frame)."""
    import av

    try:
        container = av.open(str(path))
    except (OSError, av.error.FFmpegError) as e:
        raise DataError(f"{path}: cannot open clip ({e})") from None
    with container:
        stream = container.streams.video[0]
        next_t, index = 0.0, 0
        for k, frame in enumerate(container.decode(stream)):
            t = float(frame.time) if frame.time is not None else k / float(stream.average_rate or 25)
            if t + 1e-6 < next_t:
                continue
            yield Frame(index, t, frame.to_ndarray(format="rgb24"), f"{path}#{k}")
            index += 1
            next_t = t + interval if interval > 0 else t


def synth_frames(n: int, interval: float, seed: int = 0, size: tuple[int, int] = (640, 480),
                 jam_rate: float = 0.3, taxonomy: Taxonomy | None = None) -> Iterator[Frame]:
    """`n` synthetic belt scenes (seeds seed, seed+1, ...), with whether a jam-risk item is visible."""
    from jamspotter.synth import render_scene

    tax = taxonomy or Taxonomy()
    for i in range(n):
        image, objects = render_scene(size[0], size[1], seed=seed + i, jam_rate=jam_rate)
        gt = any(o.jam_risk if o.jam_risk is not None else tax.jam_risk(o.label) for o in objects)
        yield Frame(i, i * interval, image, f"synth:{seed + i}", gt)


@dataclass
class StreamConfig:
    """Thresholds of the runner."""

    threshold: float = 0.5  # alert when a jam-risk prediction is at least this confident
    review_below: float = 0.6  # frames with top confidence under this go to the review queue
    cooldown_s: float = 0.0  # a jam-risk frame this soon after the previous one is the same item: no new alert


@dataclass
class StreamSummary:
    """Counts and timings of one run."""

    frames: int = 0
    alerts: int = 0
    review: int = 0
    jam_risk_frames: int = 0
    labels: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    gt_frames: int = 0
    gt_jam_frames: int = 0
    alert_true: int = 0  # alerts on frames that really hold a jam-risk item (synthetic ground truth)

    def as_dict(self) -> dict:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        out = {"frames": self.frames, "alerts": self.alerts, "review": self.review,
               "jam_risk_frames": self.jam_risk_frames, "labels": dict(self.labels.most_common()),
               "latency_ms_mean": float(lat.mean()), "latency_ms_p95": float(np.percentile(lat, 95)),
               "frames_per_s": float(1000.0 / lat.mean()) if lat.mean() > 0 else None}
        if self.gt_frames:
            out["ground_truth"] = {"jam_frames": self.gt_jam_frames,
                                   "alert_precision": self.alert_true / self.alerts if self.alerts else None,
                                   "alert_recall": self.alert_true / self.gt_jam_frames if self.gt_jam_frames else None}
        return out


def run_stream(frames: Iterator[Frame], model: FrameModel, out_dir: str | Path, config: StreamConfig | None = None,
               review_dir: str | Path | None = None, on_alert=None) -> dict:  # noqa: ANN001 - callable(str)
    """Process frames in belt order; writes frames.csv, frames.jsonl, alerts.log, summary.json (+ review queue)."""
    cfg = config or StreamConfig()
    out_dir = Path(out_dir)
    review_dir = Path(review_dir) if review_dir is not None else None
    summary, queue, alert_lines = StreamSummary(), [], []
    last_jam_t = float("-inf")
    with atomic_write(out_dir / "frames.csv") as fcsv, atomic_write(out_dir / "frames.jsonl") as fjl:
        writer = csv.DictWriter(fcsv, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for fr in frames:
            t0 = time.perf_counter()
            pred = model.predict([fr.image])[0]
            latency = (time.perf_counter() - t0) * 1000.0
            jam = bool(pred.jam_risk and pred.confidence >= cfg.threshold)
            alert = jam and fr.time_s - last_jam_t >= cfg.cooldown_s
            if jam:
                last_jam_t = fr.time_s
            review = pred.confidence < cfg.review_below
            row = {"frame": fr.index, "time_s": round(fr.time_s, 4), "source": fr.source, "label": pred.label,
                   "confidence": round(pred.confidence, 6), "top": [[c, round(p, 6)] for c, p in pred.top],
                   "jam_risk": jam, "alert": alert, "review": review, "latency_ms": round(latency, 3),
                   "gt_jam": fr.gt_jam}
            if pred.detections:
                row["detections"] = [d.model_dump(exclude_defaults=True) for d in pred.detections]
            fjl.write(json.dumps(row) + "\n")
            writer.writerow({**{k: row[k] for k in CSV_FIELDS}, "top": json.dumps(row["top"])})
            fjl.flush()
            fcsv.flush()

            summary.frames += 1
            summary.labels[pred.label] += 1
            summary.latencies_ms.append(latency)
            summary.jam_risk_frames += jam
            if fr.gt_jam is not None:
                summary.gt_frames += 1
                summary.gt_jam_frames += fr.gt_jam
            if alert:
                summary.alerts += 1
                summary.alert_true += bool(fr.gt_jam)
                line = (f"ALERT frame {fr.index} t={fr.time_s:.2f}s jam risk: {pred.label} "
                        f"{pred.confidence:.2f} ({fr.source})")
                alert_lines.append(line)
                if on_alert is not None:
                    on_alert(line)
            if review and review_dir is not None:
                queue.append(_enqueue(review_dir, fr, pred))
            summary.review += review
    with atomic_write(out_dir / "alerts.log") as fh:
        fh.writelines(line + "\n" for line in alert_lines)
    if review_dir is not None:
        write_samples(review_dir / "samples.jsonl", queue)
    report = summary.as_dict()
    write_json(out_dir / "summary.json", report)
    return report


def _enqueue(review_dir: Path, fr: Frame, pred) -> Sample:  # noqa: ANN001 - FramePrediction
    """Save the frame for labelling; the Sample carries the model's guess in `meta`."""
    name = f"frame-{fr.index:06d}.png"
    with atomic_write(review_dir / "images" / name, "wb") as fh:
        Image.fromarray(fr.image).save(fh, format="PNG")
    h, w = fr.image.shape[:2]
    return Sample(id=f"review-{fr.index:06d}", image=f"images/{name}", width=w, height=h, source=fr.source,
                  meta={"predicted": pred.label, "confidence": pred.confidence, "top": pred.top,
                        "time_s": fr.time_s})
