"""Imaging conditions seen on real lines: lighting gradients and flicker, motion blur, noise, JPEG.

`sample_conditions` draws a `Conditions` from a generator; callers override any field by name
(`render_scene(..., belt_speed=2.0, noise=0)`); an unknown name is a `JamspotterError`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np

from jamspotter.errors import JamspotterError


@dataclass
class Conditions:
    """One scene's conditions; every field can be set by name."""

    clutter: float  # items per square metre of belt
    belt_speed: float  # m/s
    exposure: float  # shutter time in seconds: motion blur = speed * exposure
    brightness: float  # overall gain of the lamps
    gradient: float  # strength of the lighting gradient across the frame (0 = flat)
    gradient_angle: float  # direction of that gradient, radians
    flicker: float  # amplitude of frame-to-frame brightness flicker (mains lighting)
    noise: float  # camera noise, standard deviation in 0..255 units
    jpeg_quality: int  # JPEG quality used when the frame is saved (or round-tripped)
    polygons: bool = True  # also return the visible-mask outline of each object

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (rounded) for `Sample.meta`."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


FIELDS = tuple(f.name for f in fields(Conditions))
MAX_CLUTTER = 200.0  # items per square metre: at this density items already cover the belt several times over


def sample_conditions(rng: np.random.Generator, overrides: dict[str, Any] | None = None) -> Conditions:
    """Draw conditions from `rng` (always the same number of draws), then apply `overrides`."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise JamspotterError(f"unknown synth condition(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    c = Conditions(
        clutter=float(rng.uniform(4.0, 16.0)),
        belt_speed=float(rng.uniform(0.5, 3.0)),
        exposure=float(1.0 / rng.uniform(250, 2000)),
        brightness=float(rng.uniform(0.8, 1.25)),
        gradient=float(rng.uniform(0.0, 0.45)),
        gradient_angle=float(rng.uniform(0, 2 * np.pi)),
        flicker=float(rng.uniform(0.0, 0.12)),
        noise=float(rng.uniform(1.0, 7.0)),
        jpeg_quality=int(rng.integers(60, 96)),
    )
    for k, v in overrides.items():
        kind = type(getattr(c, k))
        try:
            value = float(v) if kind in (int, float) else v
            if kind in (int, float) and not math.isfinite(value):
                raise ValueError("not a finite number")
            if kind is int and value != int(value):
                raise ValueError("not a whole number")
            setattr(c, k, kind(value))
        except (TypeError, ValueError) as e:
            raise JamspotterError(f"synth condition {k}={v!r}: {e}") from None
    if (not 0 <= c.clutter <= MAX_CLUTTER or c.belt_speed < 0 or c.exposure < 0 or c.noise < 0
            or not 1 <= c.jpeg_quality <= 100):
        raise JamspotterError(f"synth conditions out of range (clutter 0..{MAX_CLUTTER:g} items/m2, belt_speed, "
                              f"exposure, noise >= 0, jpeg_quality 1..100): {c.as_dict()}")
    return c


def lighting_field(width: int, height: int, c: Conditions, rng: np.random.Generator) -> np.ndarray:
    """Per-pixel lamp gain (H, W, 3) float32: a linear gradient, a hot spot and a vignette."""
    h, w = max(2, height // 8), max(2, width // 8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xx / (w - 1) - 0.5, yy / (h - 1) - 0.5
    ramp = u * np.cos(c.gradient_angle) + v * np.sin(c.gradient_angle)
    cx, cy = rng.uniform(-0.4, 0.4, 2)
    spot = np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / rng.uniform(0.05, 0.3)) * rng.uniform(0.0, 0.25)
    vignette = 1.0 - 0.35 * (u * u + v * v)
    field = c.brightness * (1.0 + 2.0 * c.gradient * ramp + spot) * vignette
    field = cv2.resize(field.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(field, cv2.COLOR_GRAY2RGB)


@functools.lru_cache(maxsize=4)
def _noise_tile(width: int, height: int) -> np.ndarray:
    """A fixed Gaussian noise image slightly larger than the frame; frames read it at random offsets."""
    return np.random.default_rng(20240611).standard_normal((height + 32, width + 32, 3), dtype=np.float32)


def apply_camera(frame: np.ndarray, light: np.ndarray, gain: float, blur_px: float, noise: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Light, motion-blur (along the belt, i.e. along x), add sensor noise; float32 in, uint8 RGB out.

    `light` is the (H, W, 3) lamp field; `frame` is modified in place.
    """
    cv2.multiply(frame, light, dst=frame, scale=gain)
    k = int(round(blur_px))
    if k >= 2:
        frame = cv2.blur(frame, (k, 1))
    h, w = frame.shape[:2]
    ox, oy = (int(v) for v in rng.integers(0, 32, 2))  # drawn even without noise: same draws either way
    if noise > 0:
        cv2.scaleAdd(_noise_tile(w, h)[oy: oy + h, ox: ox + w], noise, frame, dst=frame)
    np.clip(frame, 0, 255, out=frame)
    return frame.astype(np.uint8)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG and decode again: the blocking and ringing a compressed camera stream shows."""
    return cv2.cvtColor(cv2.imdecode(encode_jpeg(image, quality), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def encode_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """RGB uint8 image -> JPEG bytes (as a uint8 array)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf
