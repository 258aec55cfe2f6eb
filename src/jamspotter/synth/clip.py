"""Clips: one scene advancing with the belt, its speed drifting within the clip, written as mp4.

Speed is the clip's regression target (`Target(kind="belt_speed")`, one value per frame, m/s). The
belt advance between frames is the trapezoid integral of the speed, rounded to whole pixels, and
each frame's motion blur follows its own speed, so the speed can be read from the pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jamspotter.data.io import atomic_write
from jamspotter.data.records import BoxObject
from jamspotter.errors import JamspotterError
from jamspotter.synth.conditions import Conditions
from jamspotter.synth.scene import build_scene, compose

MIN_SPEED, MAX_SPEED = 0.1, 4.0  # m/s, bounds of the drifting speed


@dataclass
class Clip:
    """Rendered frames (RGB uint8), per-frame labels, per-frame belt speed (m/s) and shifts (px)."""

    frames: list[np.ndarray]
    frame_objects: list[list[BoxObject]]
    speeds: list[float]
    shifts: list[int]
    fps: int
    conditions: Conditions


def speed_profile(base: float, n: int, fps: int, rng: np.random.Generator) -> np.ndarray:
    """Per-frame speed: a linear drift plus a slow wobble around `base` m/s, kept in bounds."""
    t = np.arange(n) / fps
    dur = max(t[-1], 1e-6) if n > 1 else 1.0
    drift = rng.uniform(-0.35, 0.35) * t / dur
    wobble = rng.uniform(0.0, 0.12) * np.sin(2 * np.pi * t / rng.uniform(0.8, 4.0) + rng.uniform(0, 2 * np.pi))
    return np.clip(base * (1.0 + drift + wobble), MIN_SPEED, MAX_SPEED)


def render_clip(width: int, height: int, seed: int, seconds: float = 2.0, fps: int = 10, jam_rate: float = 0.3,
                **conditions: Any) -> Clip:
    """Render a clip of `seconds` at `fps`: the same scene, moving with the belt."""
    if not (math.isfinite(seconds) and seconds > 0) or fps <= 0:
        raise JamspotterError(f"clip needs seconds > 0 and fps > 0, got seconds={seconds}, fps={fps}")
    n = max(1, int(round(seconds * fps)))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7]))
    plan: dict[str, np.ndarray] = {}

    def travel(cond: Conditions, ppm: float) -> int:
        speeds = speed_profile(cond.belt_speed, n, fps, rng)
        step_px = (speeds[1:] + speeds[:-1]) / 2 / fps * ppm
        plan["speeds"], plan["shifts"] = speeds, np.concatenate([[0], np.round(np.cumsum(step_px))]).astype(int)
        return int(plan["shifts"][-1])

    scene = build_scene(width, height, seed, jam_rate, travel=travel, **conditions)
    speeds, shifts = plan["speeds"], plan["shifts"]
    frames, objects = [], []
    for s, v in zip(shifts, speeds, strict=True):
        f = compose(scene, int(s), speed=float(v))
        frames.append(f.image)
        objects.append(f.objects)
    return Clip(frames, objects, [round(float(v), 4) for v in speeds], [int(s) for s in shifts], fps, scene.conditions)


def write_mp4(path: str | Path, frames: list[np.ndarray], fps: int, crf: int = 23) -> None:
    """Encode RGB frames as H.264 (yuv420p) mp4, falling back to MPEG-4 Part 2; written atomically."""
    h, w = frames[0].shape[:2]
    if w % 2 or h % 2:
        raise JamspotterError(f"{path}: clip size must be even for yuv420p video, got {w}x{h}")
    import av  # here, not at module import: still-image paths (the GPU SFT benchmark) run without av

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with atomic_write(path, "wb") as fh, av.open(fh, "w", format="mp4") as out:
        stream = out.add_stream(codec, rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "veryfast"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
