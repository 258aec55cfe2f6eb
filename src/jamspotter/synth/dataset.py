"""`generate_dataset`: write synthetic belt images, mp4 clips and `samples.jsonl`; `write_preview` contact sheets.

Every image and clip has its own seed derived from `(seed, index)`, so the output does not depend
on the number of worker processes and the same seed gives byte-identical `samples.jsonl` and images.
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from jamspotter.data.io import atomic_write, write_samples
from jamspotter.data.records import Sample, Target
from jamspotter.errors import JamspotterError
from jamspotter.synth.clip import render_clip, write_mp4
from jamspotter.synth.conditions import encode_jpeg
from jamspotter.synth.scene import build_scene, compose

JAM_COLOR, OTHER_COLOR = (235, 40, 40), (40, 200, 230)  # preview box colours (RGB)


def item_seed(seed: int, stream: int, index: int) -> int:
    """Seed of image (`stream` 0) or clip (`stream` 1) number `index` of a dataset with `seed`."""
    return int(np.random.SeedSequence([int(seed), stream, index]).generate_state(1)[0])


def _image_job(out_dir: str, i: int, seed: int, width: int, height: int, jam_rate: float,
               conditions: dict[str, Any]) -> tuple[str, str, bytes]:
    """Render image `i`; returns its Sample as a JSON line, its relative path and its JPEG bytes."""
    s = item_seed(seed, 0, i)
    scene = build_scene(width, height, s, jam_rate, **conditions)
    frame = compose(scene, 0)
    rel = f"images/belt-{i:06d}.jpg"
    sample = Sample(
        id=f"belt-{i:06d}", image=rel, width=width, height=height, objects=frame.objects, source="synth",
        meta={"seed": s, "jam_rate": jam_rate, "conditions": scene.conditions.as_dict()},
    )
    return sample.to_json(), rel, encode_jpeg(frame.image, scene.conditions.jpeg_quality).tobytes()


def _write_file(path: Path, data: bytes) -> None:
    with atomic_write(path, "wb", fsync=False) as fh:
        fh.write(data)


def _clip_job(out_dir: str, k: int, seed: int, width: int, height: int, jam_rate: float, seconds: float,
              fps: int, conditions: dict[str, Any]) -> tuple[str, None, None]:
    """Render and write clip `k` as mp4; returns its Sample as a JSON line."""
    s = item_seed(seed, 1, k)
    clip = render_clip(width, height, s, seconds=seconds, fps=fps, jam_rate=jam_rate, **conditions)
    rel = f"clips/clip-{k:04d}.mp4"
    write_mp4(Path(out_dir) / rel, clip.frames, fps)
    return Sample(
        id=f"clip-{k:04d}", video=rel, fps=float(fps), width=width, height=height,
        frame_objects=clip.frame_objects, source="synth",
        target=Target(kind="belt_speed", values=[[v] for v in clip.speeds], names=["belt_speed_m_s"]),
        meta={"seed": s, "jam_rate": jam_rate, "shift_px": clip.shifts, "conditions": clip.conditions.as_dict()},
    ).to_json(), None, None


def _check(n: int, size: tuple[int, int], jam_rate: float, clips: int, seconds: float, fps: int) -> None:
    w, h = size
    if n < 0 or clips < 0:
        raise JamspotterError(f"n and clips must be >= 0, got n={n}, clips={clips}")
    if w < 32 or h < 32:
        raise JamspotterError(f"size must be at least 32x32, got {w}x{h}")
    if not 0.0 <= jam_rate <= 1.0:
        raise JamspotterError(f"jam rate must be between 0 and 1, got {jam_rate}")
    if clips and (seconds <= 0 or fps <= 0 or w % 2 or h % 2):
        raise JamspotterError(f"clips need seconds > 0, fps > 0 and an even size, got {seconds}s, {fps} fps, {w}x{h}")


def generate_dataset(out_dir: str | Path, n: int, size: tuple[int, int] = (640, 480), seed: int = 0,
                     jam_rate: float = 0.3, clips: int = 0, seconds: float = 2.0, fps: int = 10,
                     workers: int = 1, progress: bool = False, **conditions: Any) -> list[Sample]:
    """Write `n` images to `out_dir/images/`, `clips` mp4 clips to `out_dir/clips/`, and `samples.jsonl`.

    Returns the samples (images first, then clips). `workers` > 1 renders in processes; the result
    is the same. `progress` shows a progress bar. `conditions` fix scene conditions for every image
    and clip (e.g. `clutter=2.0` items per square metre), as in `render_scene`.
    """
    width, height = (int(v) for v in size)
    _check(n, (width, height), jam_rate, clips, seconds, fps)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(_image_job, (str(out), i, seed, width, height, jam_rate, conditions)) for i in range(n)]
    jobs += [(_clip_job, (str(out), k, seed, width, height, jam_rate, seconds, int(fps), conditions))
             for k in range(clips)]
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # parallel over images, not inside OpenCV calls on small patches: less overhead
    lines = []
    # image files are written (atomically, with fsync) by a thread while the next images render
    with ThreadPoolExecutor(max_workers=2) as writer:
        try:
            writes: deque = deque()
            for line, rel, data in _run(jobs, workers, progress):
                lines.append(line)
                if rel is not None:
                    writes.append(writer.submit(_write_file, out / rel, data))
                while len(writes) > 32:  # bound the JPEG bytes waiting in memory
                    writes.popleft().result()
            for w in writes:
                w.result()
        finally:
            cv2.setNumThreads(threads)
    samples = [Sample.model_validate_json(line) for line in lines]
    write_samples(out / "samples.jsonl", samples)
    return samples


def _run(jobs: list, workers: int, progress: bool) -> Iterator[tuple]:
    """Run jobs in order (in `workers` processes when > 1), optionally under a progress bar."""
    from rich.progress import track

    if workers > 1 and len(jobs) > 1:
        n_proc = min(workers, os.cpu_count() or 1)
        # one OpenCV thread per process: the processes already use the cores
        with ProcessPoolExecutor(max_workers=n_proc, initializer=cv2.setNumThreads, initargs=(1,)) as pool:
            futures = [pool.submit(fn, *args) for fn, args in jobs]
            results = (f.result() for f in futures)
            yield from (track(results, total=len(jobs), description="synth") if progress else results)
        return
    results = (fn(*args) for fn, args in jobs)
    yield from (track(results, total=len(jobs), description="synth") if progress else results)


def draw_boxes(image: np.ndarray, sample_objects: Sequence, scale: float = 1.0) -> np.ndarray:
    """A copy of `image` with boxes and labels drawn (red: jam-causing, cyan: other material)."""
    img = np.ascontiguousarray(image).copy()
    th = max(1, int(round(img.shape[0] / 240)))
    for o in sample_objects:
        x1, y1, x2, y2 = (int(round(v * scale)) for v in o.bbox)
        col = JAM_COLOR if o.jam_risk else OTHER_COLOR
        cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), col, th)
        fs = 0.35 * th
        (tw, tht), _ = cv2.getTextSize(o.label, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
        ty = max(y1, tht + 3)
        cv2.rectangle(img, (x1, ty - tht - 3), (x1 + tw + 2, ty), col, -1)
        cv2.putText(img, o.label, (x1 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, fs, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def write_preview(samples: Sequence[Sample], root: str | Path, path: str | Path, max_images: int = 12,
                  cols: int = 4, tile_width: int = 320, colors: int | None = None) -> Path:
    """Contact sheet PNG of the first image samples with their boxes; `colors` quantises (smaller file)."""
    root = Path(root)
    tiles = []
    for s in samples:
        if s.image is None or len(tiles) >= max_images:
            continue
        img = cv2.cvtColor(cv2.imread(str(s.image_path(root)), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        scale = tile_width / img.shape[1]
        img = cv2.resize(img, (tile_width, int(round(img.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        tiles.append(draw_boxes(img, s.objects, scale))
    if not tiles:
        raise JamspotterError("preview: no image samples to show")
    th = max(t.shape[0] for t in tiles)
    rows = -(-len(tiles) // cols)
    ncols = min(cols, len(tiles))
    sheet = np.full((rows * (th + 4) + 4, ncols * (tile_width + 4) + 4, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = 4 + r * (th + 4), 4 + c * (tile_width + 4)
        sheet[y: y + t.shape[0], x: x + t.shape[1]] = t
    pil = Image.fromarray(sheet)
    if colors:
        pil = pil.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())
    return path
