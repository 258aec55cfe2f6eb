"""`generate_dataset`: write synthetic belt images, mp4 clips and `samples.jsonl`; `write_preview` contact sheets.

Every image and clip has its own seed derived from `(seed, index)`, so the output does not depend
on the number of worker processes and the same seed gives byte-identical `samples.jsonl` and images.
Worker processes die with the process that started them (also on SIGKILL, on Linux).
"""

from __future__ import annotations

import contextlib
import io
import math
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from jamspotter.data.io import atomic_write, write_samples
from jamspotter.data.records import Sample, Target
from jamspotter.errors import JamspotterError
from jamspotter.synth.clip import MAX_SPEED, render_clip, write_mp4
from jamspotter.synth.conditions import MAX_CLUTTER, encode_jpeg
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


# Limits of one `generate_dataset` call (documented in its docstring and `jamspotter data synth --help`).
MAX_SIDE = 4096  # px per image side
MAX_IMAGES, MAX_CLIPS = 1_000_000, 100_000
MAX_SECONDS, MAX_FPS = 600.0, 120
MAX_SEED = 2**63 - 1
MEMORY_BUDGET = 2 * 1024**3  # bytes: a clip's frames in memory, and a scene's item layers (estimated)
ITEM_BYTES = 3.0  # bytes of item layers per (item/m2 of clutter x frame pixel): measured ~2.2, with margin
DEFAULT_MAX_CLUTTER = 16.0  # the top of the clutter range drawn when --clutter is not given


def scene_bytes(width: int, height: int, clutter: float, seconds: float = 0.0) -> float:
    """Estimated memory of one scene's item layers; a clip lays items out over the belt it travels.

    Item count grows with clutter and belt length, each item's pixels with the frame's scale, so the
    estimate is `clutter x width x height x (1 + travel / width)` times ITEM_BYTES, with the belt at
    its top speed. (Measured: ~2.2 bytes per unit at 640x480 and 2048x2048.)
    """
    ppm = height / 0.8  # the belt (without the rails) is 0.8 m and at most the frame height
    travel = seconds * MAX_SPEED * ppm
    return ITEM_BYTES * clutter * width * height * (1.0 + travel / width)


def check_args(n: int, size: tuple[int, int], jam_rate: float, clips: int = 0, seconds: float = 2.0,
               fps: int = 10, seed: int = 0, clutter: float | None = None) -> None:
    """Raise JamspotterError (one line naming the option) unless every argument is within the limits."""
    w, h = size
    if not 0 <= n <= MAX_IMAGES:
        raise JamspotterError(f"--n must be 0..{MAX_IMAGES}, got {n}")
    if not 0 <= clips <= MAX_CLIPS:
        raise JamspotterError(f"--clips must be 0..{MAX_CLIPS}, got {clips}")
    if not (32 <= w <= MAX_SIDE and 32 <= h <= MAX_SIDE):
        raise JamspotterError(f"--size must be 32..{MAX_SIDE} px a side, got {w}x{h}")
    if not (math.isfinite(jam_rate) and 0.0 <= jam_rate <= 1.0):
        raise JamspotterError(f"--jam-rate must be between 0 and 1, got {jam_rate}")
    if not 0 <= seed <= MAX_SEED:
        raise JamspotterError(f"--seed must be 0..2^63-1, got {seed}")
    if clutter is not None and not (math.isfinite(clutter) and 0 <= clutter <= MAX_CLUTTER):
        raise JamspotterError(f"--clutter must be 0..{MAX_CLUTTER:g} items per square metre, got {clutter}")
    load = clutter if clutter is not None else DEFAULT_MAX_CLUTTER
    if n and scene_bytes(w, h, load) > MEMORY_BUDGET:
        raise JamspotterError(f"--clutter {load:g} at --size {w}x{h} needs about "
                              f"{scene_bytes(w, h, load) / 1024**3:.1f} GiB per image (limit "
                              f"{MEMORY_BUDGET / 1024**3:.0f} GiB); lower --clutter or --size")
    if not clips:
        return
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
        raise JamspotterError(f"--seconds must be > 0 and <= {MAX_SECONDS:g}, got {seconds}")
    if not 1 <= fps <= MAX_FPS:
        raise JamspotterError(f"--fps must be 1..{MAX_FPS}, got {fps}")
    if w % 2 or h % 2:
        raise JamspotterError(f"clips need an even --size (yuv420p video), got {w}x{h}")
    frames = max(1, round(seconds * fps))
    if frames * w * h * 3 > MEMORY_BUDGET:
        raise JamspotterError(f"a clip of {frames} frames at {w}x{h} needs {frames * w * h * 3 / 1024**3:.1f} GiB "
                              f"(limit {MEMORY_BUDGET / 1024**3:.0f} GiB); lower --seconds, --fps or --size")
    if scene_bytes(w, h, load, seconds) > MEMORY_BUDGET:
        raise JamspotterError(f"a {seconds:g} s clip at --size {w}x{h} with --clutter {load:g} lays out about "
                              f"{scene_bytes(w, h, load, seconds) / 1024**3:.1f} GiB of items (limit "
                              f"{MEMORY_BUDGET / 1024**3:.0f} GiB); lower --seconds, --clutter or --size")


def generate_dataset(out_dir: str | Path, n: int, size: tuple[int, int] = (640, 480), seed: int = 0,
                     jam_rate: float = 0.3, clips: int = 0, seconds: float = 2.0, fps: int = 10,
                     workers: int = 1, progress: bool = False, world: str = "belt", **conditions: Any
                     ) -> list[Sample]:
    """Write `n` images to `out_dir/images/`, `clips` mp4 clips to `out_dir/clips/`, and `samples.jsonl`.

    Returns the samples (images first, then clips). `workers` > 1 renders in processes; the result
    is the same. `progress` shows a progress bar. `conditions` fix scene conditions for every image
    and clip (e.g. `clutter=2.0` items per square metre), as in `render_scene`.
    `world` picks a rung of `jamspotter.synth.worlds.WORLDS` (plain shapes to full belts); every world
    but `belt` draws still images only (no clips, no conditions) and only `simple-belt` uses `jam_rate`.

    Limits (JamspotterError otherwise): n <= 1e6, clips <= 1e5, sides 32..4096 px, 0 <= seed < 2^63,
    jam_rate 0..1, clutter 0..200; clips: 0 < seconds <= 600, fps 1..120, an even size, and at most
    2 GiB for a clip's frames and for a scene's items (estimated by `scene_bytes`).
    `out_dir` is written in place: callers that must not leave a partial folder write into a
    staging folder (`jamspotter.outputs.output_dir`), as `jamspotter data synth` does.
    """
    width, height = (int(v) for v in size)
    check_args(n, (width, height), jam_rate, clips, seconds, fps, seed, conditions.get("clutter"))
    if world != "belt":
        from jamspotter.synth.worlds import check_world_options, world_image_job

        check_world_options(world, ["--clips"] * bool(clips) + ["--clutter"] * ("clutter" in conditions))
        if conditions:
            raise JamspotterError(f"synth conditions ({', '.join(sorted(conditions))}) apply to --world belt only")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if world != "belt":
        jobs = [(world_image_job, (world, i, seed, width, height, jam_rate)) for i in range(n)]
    else:
        jobs = [(_image_job, (str(out), i, seed, width, height, jam_rate, conditions)) for i in range(n)]
        jobs += [(_clip_job, (str(out), k, seed, width, height, jam_rate, seconds, int(fps), conditions))
                 for k in range(clips)]
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # parallel over images, not inside OpenCV calls on small patches: less overhead
    lines = []
    # image files are written (each atomically) by a thread while the next images render;
    # the workers stop (closing the generator) before the writer drains its queue on any error
    with ThreadPoolExecutor(max_workers=2) as writer, contextlib.ExitStack() as stack:
        try:
            writes: deque = deque()
            for line, rel, data in stack.enter_context(contextlib.closing(_run(jobs, workers, progress))):
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


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (PR_SET_PDEATHSIG); exit if it already has.

    A no-op on other systems.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        with contextlib.suppress(AttributeError, OSError):
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _worker_init(parent: int) -> None:
    """A render worker: dies with its parent; leaves Ctrl-C to the parent, which stops the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # Pool.terminate() stops us with SIGTERM
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    die_with_parent(parent)
    cv2.setNumThreads(1)  # one OpenCV thread per process: the processes already use the cores


def _call(job: tuple) -> tuple:
    fn, args = job
    return fn(*args)


def _run(jobs: list, workers: int, progress: bool) -> Iterator[tuple]:
    """Run jobs in order (in `workers` processes when > 1), optionally under a progress bar.

    Any exception in the caller (Ctrl-C, SIGTERM turned into KeyboardInterrupt) terminates the workers.
    """
    from jamspotter.progress import track

    if workers > 1 and len(jobs) > 1:
        n_proc = min(workers, os.cpu_count() or 1, len(jobs))
        pool = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None).Pool(
            n_proc, initializer=_worker_init, initargs=(os.getpid(),))
        try:
            results = pool.imap(_call, jobs, chunksize=1)
            yield from (track(results, total=len(jobs), description="synth") if progress else results)
            pool.close()
        finally:
            pool.terminate()
            pool.join()
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
