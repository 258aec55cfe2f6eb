"""Belt stream runner: frames in belt order -> model -> CSV/JSONL log, jam-risk alerts, review queue.

Sources: a folder of images (natural sort order), a video clip (decoded with av, one frame every
`interval` seconds), synthetic belt scenes (`jamspotter.synth.render_scene`, with ground truth), or a
camera through OpenCV (`webcam_frames`). `open_source` reads the one-string form the service's
`--stream` takes.

One frame loop: `FrameLoop.process` scores a frame and decides its alert (threshold, cooldown) and review
flag; `run_frames` hands every `FrameResult` to a list of sinks. `run_stream` (`jamspotter line run`) is
that loop with file sinks; the service's operator dashboard (`jamspotter.serve.dashboard`) is the same loop
with SQLite alerts and a live view as sinks.

Nothing processed is lost: every log (frames.jsonl, frames.csv, alerts.log, the review queue's
samples.jsonl) gets one complete line per frame, flushed as the frame is done, so a Ctrl-C, SIGTERM
or SIGKILL leaves every frame processed before it on disk (a power cut may still lose the last few
lines the OS had not written). A frame that cannot be read is logged as an `error` entry and skipped.
A stop request (`stop_on_signals`) ends the run after the current frame; summary.json is written on
every exit that Python sees, saying whether the run completed.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from jamspotter.data.io import atomic_write, finite_json, write_json
from jamspotter.data.records import Sample
from jamspotter.data.taxonomy import Taxonomy
from jamspotter.detections import Detections
from jamspotter.errors import DataError
from jamspotter.line.protocol import FrameModel

SOURCES = ("folder", "clip", "synth", "webcam")
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
CSV_FIELDS = ("frame", "time_s", "source", "label", "confidence", "top", "jam_risk", "alert", "review",
              "latency_ms", "gt_jam", "error")
LOG_FILES = ("frames.jsonl", "frames.csv", "alerts.log")


@dataclass
class Frame:
    """One frame of the belt: its index, belt time, pixels and where it came from.

    A frame the source could not read has `image` None and says why in `error`.
    """

    index: int
    time_s: float
    image: np.ndarray | None  # H x W x 3 uint8 RGB
    source: str
    gt_jam: bool | None = None  # known for synthetic frames
    error: str | None = None


def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def folder_frames(folder: Path, interval: float) -> Iterator[Frame]:
    """Images of a folder in natural order (frame2 before frame10), `interval` seconds apart, read upright
    (EXIF) with Pillow's size guard; an unreadable or oversized image comes as a Frame with `error`."""
    from jamspotter.data.images import open_rgb

    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS), key=_natural_key)
    if not files:  # checked now, not at the first frame
        raise DataError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTS))})")

    def read() -> Iterator[Frame]:
        for i, f in enumerate(files):
            try:
                arr = np.asarray(open_rgb(f))
            except DataError as e:
                yield Frame(i, i * interval, None, str(f), error=e.format_message())
                continue
            yield Frame(i, i * interval, arr, str(f))

    return read()


def clip_frames(path: Path, interval: float) -> Iterator[Frame]:
    """Decode a clip with av; keep the first frame at or after every `interval` seconds (0 = every frame).

    The clip is opened now (an unreadable file is a DataError here); a frame that fails to decode later
    comes as a Frame with `error` and ends the stream.
    """
    import av

    try:
        container = av.open(str(path))
    except (OSError, av.error.FFmpegError) as e:
        raise DataError(f"{path}: cannot open clip ({e})") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: no video stream")

    def read() -> Iterator[Frame]:
        with container:
            stream = container.streams.video[0]
            next_t, index, k = 0.0, 0, -1
            decoded = container.decode(stream)
            while True:
                try:
                    frame = next(decoded)
                except StopIteration:
                    return
                except (av.error.FFmpegError, OSError, ValueError) as e:  # a damaged clip: log it, end the stream
                    yield Frame(index, next_t, None, f"{path}#{k + 1}",
                                error=f"{path}: cannot decode frame {k + 1} ({e})")
                    return
                k += 1
                t = float(frame.time) if frame.time is not None else k / float(stream.average_rate or 25)
                if t + 1e-6 < next_t:
                    continue
                yield Frame(index, t, frame.to_ndarray(format="rgb24"), f"{path}#{k}")
                index += 1
                next_t = t + interval if interval > 0 else t

    return read()


def synth_frames(n: int | None, interval: float, seed: int = 0, size: tuple[int, int] = (640, 480),
                 jam_rate: float = 0.3, taxonomy: Taxonomy | None = None) -> Iterator[Frame]:
    """`n` synthetic belt scenes (seeds seed, seed+1, ...; endless when `n` is None), with whether a jam-risk
    item is visible."""
    from jamspotter.synth import render_scene

    tax = taxonomy or Taxonomy()
    i = 0
    while n is None or i < n:
        image, objects = render_scene(size[0], size[1], seed=seed + i, jam_rate=jam_rate)
        gt = any(tax.is_jam(o) for o in objects)
        yield Frame(i, i * interval, image, f"synth:{seed + i}", gt)
        i += 1


def webcam_frames(device: str | int, interval: float, max_failures: int = 50) -> Iterator[Frame]:
    """Frames from a camera through `cv2.VideoCapture`: an index (0) or a device path (/dev/video0); anything
    else OpenCV opens (a file, an RTSP URL) works too. One frame every `interval` seconds of wall time
    (0 = every frame delivered); `time_s` is the wall time since the camera was opened.

    The device is opened now (one that cannot be opened is a DataError). A source that reports a frame count
    (a file) ends quietly at its end; a camera that fails `max_failures` reads in a row ends the stream with
    one Frame carrying the error.
    """
    import cv2

    target: str | int = int(device) if str(device).isdigit() else str(device)
    cap = cv2.VideoCapture(target)
    if not cap.isOpened():
        cap.release()
        raise DataError(f"{device}: cannot open camera (no such device, or it is in use)")
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the newest frame, not a queue of stale ones (where supported)
    is_file = cap.get(cv2.CAP_PROP_FRAME_COUNT) > 0

    def read() -> Iterator[Frame]:
        t0 = time.monotonic()
        next_t, index, failures = 0.0, 0, 0
        try:
            while True:
                ok, bgr = cap.read()
                t = time.monotonic() - t0
                if not ok or bgr is None:
                    if is_file:
                        return
                    failures += 1
                    if failures >= max_failures:
                        yield Frame(index, t, None, f"webcam:{device}",
                                    error=f"{device}: camera stopped delivering frames ({failures} failed reads)")
                        return
                    time.sleep(0.02)
                    continue
                failures = 0
                if t + 1e-6 < next_t:
                    continue
                yield Frame(index, t, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"webcam:{device}#{index}")
                index += 1
                next_t = t + interval if interval > 0 else t
        finally:
            cap.release()

    return read()


def open_source(spec: str, interval: float, seed: int = 0) -> Iterator[Frame]:
    """Frames from one source string: `synth` (endless synthetic belt), `webcam:N` / `webcam:/dev/videoN` /
    `/dev/videoN` (a camera), a folder of images, or a video clip. Checked now: a bad spec, an empty folder,
    an unreadable clip or a camera that will not open is a DataError."""
    if spec == "synth":
        return synth_frames(None, interval, seed)
    if spec.startswith("webcam:") or spec.startswith("/dev/video"):
        device = spec.removeprefix("webcam:")
        if not device:
            raise DataError(f"stream {spec!r}: name the camera, e.g. webcam:0 or /dev/video0")
        return webcam_frames(device, interval)
    path = Path(spec)
    if path.is_dir():
        return folder_frames(path, interval)
    if path.is_file():
        return clip_frames(path, interval)
    raise DataError(f"stream {spec!r}: not a folder, a clip, 'synth' or a camera (webcam:0, /dev/video0)")


@dataclass
class StreamConfig:
    """Thresholds of the runner."""

    threshold: float = 0.5  # alert when a jam-risk prediction is at least this confident
    review_below: float = 0.6  # frames with top confidence under this go to the review queue
    cooldown_s: float = 0.0  # a jam-risk frame this soon after the previous one is the same item: no new alert


@dataclass
class FrameResult:
    """What the frame loop decided for one frame; every sink of `run_frames` receives it."""

    frame: Frame
    pred: Detections | None = None  # None: the frame could not be read (`frame.error` says why)
    jam: bool = False  # a jam-risk verdict at or above the threshold
    alert: bool = False  # a new alert (a jam frame outside the cooldown of the previous one)
    review: bool = False  # confidence under `review_below`: worth a person's look
    latency_ms: float = 0.0  # time the model took for this frame

    def row(self) -> dict:
        """The frame's log record (frames.jsonl; frames.csv takes the CSV_FIELDS of it)."""
        fr, pred = self.frame, self.pred
        if pred is None:
            return {"frame": fr.index, "time_s": round(fr.time_s, 4), "source": fr.source, "error": fr.error}
        row = {"frame": fr.index, "time_s": round(fr.time_s, 4), "source": fr.source, "label": pred.label,
               "confidence": round(pred.confidence, 6), "top": [[c, round(p, 6)] for c, p in pred.top],
               "jam_risk": self.jam, "alert": self.alert, "review": self.review,
               "latency_ms": round(self.latency_ms, 3), "gt_jam": fr.gt_jam}
        if pred.objects:
            row["detections"] = [d.model_dump(exclude_defaults=True) for d in pred.objects]
        return row

    def alert_line(self) -> str:
        """The alert as one line of text (alerts.log, the console)."""
        fr, pred = self.frame, self.pred
        return (f"ALERT frame {fr.index} t={fr.time_s:.2f}s jam risk: {pred.label} "
                f"{pred.confidence:.2f} ({fr.source})")


Sink = Callable[[FrameResult], None]


@dataclass
class StreamSummary:
    """Counts and timings of one run."""

    frames: int = 0
    errors: int = 0  # frames the source could not read: logged and skipped
    alerts: int = 0
    review: int = 0
    jam_risk_frames: int = 0
    labels: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    gt_frames: int = 0
    gt_jam_frames: int = 0
    alert_true: int = 0  # alerts on frames that really hold a jam-risk item (synthetic ground truth)
    stopped_by: str | None = None  # the signal that ended the run early
    failed: str | None = None  # the error that ended the run early
    complete: bool = False

    def as_dict(self) -> dict:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        out = {"frames": self.frames, "errors": self.errors, "complete": self.complete,
               "stopped_by": self.stopped_by, "failed": self.failed, "alerts": self.alerts, "review": self.review,
               "jam_risk_frames": self.jam_risk_frames, "labels": dict(self.labels.most_common()),
               "latency_ms_mean": float(lat.mean()), "latency_ms_p95": float(np.percentile(lat, 95)),
               "frames_per_s": float(1000.0 / lat.mean()) if lat.mean() > 0 else None}
        if self.gt_frames:
            out["ground_truth"] = {"jam_frames": self.gt_jam_frames,
                                   "alert_precision": self.alert_true / self.alerts if self.alerts else None,
                                   "alert_recall": self.alert_true / self.gt_jam_frames if self.gt_jam_frames else None}
        return out

    def add(self, r: FrameResult) -> None:
        """Count one frame's result (a sink of `run_frames`)."""
        if r.pred is None:
            self.errors += 1
            return
        self.frames += 1
        self.labels[r.pred.label] += 1
        self.latencies_ms.append(r.latency_ms)
        self.jam_risk_frames += r.jam
        self.review += r.review
        if r.frame.gt_jam is not None:
            self.gt_frames += 1
            self.gt_jam_frames += r.frame.gt_jam
        if r.alert:
            self.alerts += 1
            self.alert_true += bool(r.frame.gt_jam)


class StopFlag:
    """Set by a signal handler or `set`; the runner checks it between frames and stops after the current one."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._event = threading.Event()

    def __bool__(self) -> bool:
        return self.signal is not None

    def set(self, reason: str) -> None:
        """Ask the run to stop (from any thread); `reason` is reported as `stopped_by`."""
        self.signal = reason
        self._event.set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking at once on `set`; True when a stop was asked."""
        return self._event.wait(seconds) or bool(self)


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[StopFlag]:
    """While inside, the first SIGINT/SIGTERM sets the yielded flag (the run stops after its current frame);
    a second one interrupts at once (KeyboardInterrupt). Previous handlers are restored on exit."""
    flag = StopFlag()
    previous = {}

    def handler(signum: int, _frame: object) -> None:
        if flag:
            raise KeyboardInterrupt
        flag.signal = signal.Signals(signum).name

    for sig in signals:
        previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _Log:
    """The append-only logs of one run, each line written whole and flushed at once."""

    def __init__(self, out_dir: Path, review_dir: Path | None) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.files: list[IO[str]] = []
        self.jsonl = self._open(out_dir / "frames.jsonl")
        self.csv_fh = self._open(out_dir / "frames.csv")
        self.csv = csv.DictWriter(self.csv_fh, fieldnames=CSV_FIELDS, lineterminator="\n")
        self.csv.writeheader()
        self.csv_fh.flush()
        self.alerts = self._open(out_dir / "alerts.log")
        self.review_dir = review_dir
        self.queue = None
        if review_dir is not None:
            (review_dir / "images").mkdir(parents=True, exist_ok=True)
            self.queue = self._open(review_dir / "samples.jsonl")

    def _open(self, path: Path) -> IO[str]:
        fh = path.open("w", encoding="utf-8", newline="")
        self.files.append(fh)
        return fh

    @staticmethod
    def _line(fh: IO[str], text: str) -> None:
        fh.write(text + "\n")
        fh.flush()

    def frame(self, row: dict) -> None:
        self._line(self.jsonl, json.dumps(finite_json(row), allow_nan=False))
        cells = {k: row.get(k) for k in CSV_FIELDS}
        if "top" in row:
            cells["top"] = json.dumps(row["top"])
        self.csv.writerow(cells)
        self.csv_fh.flush()

    def alert(self, line: str) -> None:
        self._line(self.alerts, line)

    def enqueue(self, fr: Frame, pred: Detections) -> None:
        """Save the frame for labelling (image first, so a listed image is always there), then list it."""
        name = f"frame-{fr.index:06d}.png"
        with atomic_write(self.review_dir / "images" / name, "wb", fsync=False) as fh:
            Image.fromarray(fr.image).save(fh, format="PNG")
        h, w = fr.image.shape[:2]
        sample = Sample(id=f"review-{fr.index:06d}", image=f"images/{name}", width=w, height=h, source=fr.source,
                        meta={"predicted": pred.label, "confidence": pred.confidence, "top": pred.top,
                              "time_s": fr.time_s})
        self._line(self.queue, sample.to_json())

    def write(self, r: FrameResult) -> None:
        """Log one frame's result (a sink of `run_frames`): its review image first, then its line, then its alert."""
        if r.pred is not None and r.review and self.queue is not None:
            self.enqueue(r.frame, r.pred)  # before the frame's log line: a logged review frame is always queued
        self.frame(r.row())
        if r.alert:
            self.alert(r.alert_line())

    def close(self) -> None:
        for fh in self.files:
            fh.close()


class FrameLoop:
    """One step of the frame loop: score a frame, decide jam risk (threshold), alert (cooldown) and review.

    Keeps the belt time of the last jam frame, so frames must come in belt order.
    """

    def __init__(self, model: FrameModel, config: StreamConfig | None = None) -> None:
        self.model = model
        self.config = config or StreamConfig()
        self.last_jam_t = float("-inf")

    def process(self, fr: Frame) -> FrameResult:
        """The frame's result; an unreadable frame (`fr.error`) gives a result without prediction."""
        if fr.error is not None:
            return FrameResult(fr)
        cfg = self.config
        t0 = time.perf_counter()
        pred = self.model.predict([fr.image])[0]
        latency = (time.perf_counter() - t0) * 1000.0
        jam = bool(pred.jam_risk and pred.confidence >= cfg.threshold)
        alert = jam and fr.time_s - self.last_jam_t >= cfg.cooldown_s
        if jam:
            self.last_jam_t = fr.time_s
        return FrameResult(fr, pred, jam=jam, alert=alert, review=pred.confidence < cfg.review_below,
                           latency_ms=latency)


def run_frames(frames: Iterable[Frame], loop: FrameLoop, sinks: Sequence[Sink], stop: StopFlag | None = None) -> bool:
    """Feed frames in order through `loop`, each result to every sink in turn. True when the frames ran out,
    False when `stop` was set (checked after each frame)."""
    for fr in frames:
        result = loop.process(fr)
        for sink in sinks:
            sink(result)
        if stop:
            return False
    return True


def run_stream(frames: Iterable[Frame], model: FrameModel, out_dir: str | Path, config: StreamConfig | None = None,
               review_dir: str | Path | None = None, on_alert: Callable[[str], None] | None = None,
               on_error: Callable[[str], None] | None = None, stop: StopFlag | None = None) -> dict:
    """Process frames in belt order; writes frames.jsonl, frames.csv, alerts.log (one flushed line per frame),
    the review queue, and summary.json (also when the run ends early: `complete` false, and `stopped_by`
    the signal or `failed` the error). Returns the summary.

    The log files start empty: give a new folder (see `jamspotter.outputs.prepare_dir`).
    """
    out_dir = Path(out_dir)
    review_dir = Path(review_dir) if review_dir is not None else None
    summary = StreamSummary()
    log = _Log(out_dir, review_dir)

    def tell(r: FrameResult) -> None:
        if r.pred is None:
            if on_error is not None:
                on_error(f"frame {r.frame.index} skipped: {r.frame.error}")
        elif r.alert and on_alert is not None:
            on_alert(r.alert_line())

    try:
        summary.complete = run_frames(frames, FrameLoop(model, config), [log.write, summary.add, tell], stop)
        if not summary.complete:
            summary.stopped_by = stop.signal
    except KeyboardInterrupt:
        summary.stopped_by = (stop.signal if stop else None) or "SIGINT"
        raise
    except Exception as e:
        summary.failed = " ".join(str(e).split()) or type(e).__name__
        raise
    finally:
        log.close()
        report = summary.as_dict()
        write_json(out_dir / "summary.json", report)
    return report
