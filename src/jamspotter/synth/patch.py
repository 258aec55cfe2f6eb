"""`ItemPatch`: one object drawn in its own small canvas (colour, coverage, occluding part, shadow).

Items are drawn once, in local coordinates, and pasted into frames at any belt offset; a clip only
moves patches, it never redraws them. Coverage is anti-aliased (0..1); the object's *footprint* is
`coverage >= 0.5`, and the part that hides what lies below is where `coverage * opacity >= 0.5`
(so clear film lets the objects under it stay visible and labelled).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

OCCLUDE_ALPHA = 0.5  # effective alpha from which an object hides what lies under it
FOOTPRINT_ALPHA = 0.5  # coverage from which a pixel belongs to an object


@dataclass
class ItemPatch:
    """A drawn object: `rgb` (h, w, 3) float32 0..255, `alpha` (h, w) float32 0..1 and masks."""

    kind: str  # what it is ("rope", "bottle", ...)
    label: str  # taxonomy class ("rope", "plastic", ...)
    rgb: np.ndarray
    alpha: np.ndarray  # effective alpha used for compositing (coverage * opacity)
    footprint: np.ndarray  # bool: pixels that belong to the object
    occluder: np.ndarray  # bool: pixels that hide what lies below
    shadow: np.ndarray  # float32 0..1 darkening of what lies below (drop shadow)
    shadow_strength: float = 0.35

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the patch."""
        return self.alpha.shape  # type: ignore[return-value]


class Canvas:
    """A local drawing surface: colour layer plus an anti-aliased coverage layer, with a margin."""

    def __init__(self, width: int, height: int, base_rgb: tuple[float, float, float], margin: int = 10) -> None:
        self.margin = margin
        self.w, self.h = int(width) + 2 * margin, int(height) + 2 * margin
        self.rgb = np.empty((self.h, self.w, 3), np.float32)
        self.rgb[:] = np.asarray(base_rgb, np.float32)
        self.cov = np.zeros((self.h, self.w), np.uint8)

    def offset(self, pts: np.ndarray) -> np.ndarray:
        """Local item coordinates -> canvas coordinates (adds the margin)."""
        return np.asarray(pts, np.float64) + self.margin

    def finish(self, kind: str, label: str, opacity: float | np.ndarray = 1.0, shadow: float = 0.35,
               blur_sigma: float = 0.0) -> ItemPatch:
        """Turn the layers into an `ItemPatch`; `opacity` may be a per-pixel map (film)."""
        cov = self.cov.astype(np.float32) * (1.0 / 255.0)
        rgb = self.rgb
        if blur_sigma > 0:
            rgb = cv2.GaussianBlur(rgb, (0, 0), blur_sigma)
        alpha = np.clip(cov * np.asarray(opacity, np.float32), 0.0, 1.0).astype(np.float32)
        return ItemPatch(
            kind=kind, label=label, rgb=np.clip(rgb, 0, 255).astype(np.float32), alpha=alpha,
            footprint=cov >= FOOTPRINT_ALPHA, occluder=alpha >= OCCLUDE_ALPHA,
            shadow=drop_shadow(alpha, shadow), shadow_strength=shadow,
        )


def drop_shadow(alpha: np.ndarray, strength: float, offset: tuple[int, int] = (3, 4)) -> np.ndarray:
    """A soft shadow of `alpha` cast down-right (light from the upper left), scaled by `strength`."""
    sh = np.zeros_like(alpha)
    if strength <= 0:
        return sh
    dx, dy = offset
    h, w = alpha.shape
    sh[dy:, dx:] = alpha[: h - dy, : w - dx]
    return (cv2.GaussianBlur(sh, (0, 0), 2.5) * strength).astype(np.float32)


def rotate_patch(patch: ItemPatch, angle_deg: float) -> ItemPatch:
    """Rotate a patch about its centre into a canvas big enough to hold it (masks recomputed)."""
    h, w = patch.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(np.ceil(h * sin + w * cos)) + 2, int(np.ceil(h * cos + w * sin)) + 2
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    warp = lambda a: cv2.warpAffine(a, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0)  # noqa: E731
    alpha = warp(patch.alpha)
    cov = warp(patch.footprint.astype(np.float32))
    return ItemPatch(
        kind=patch.kind, label=patch.label, rgb=warp(patch.rgb), alpha=alpha, footprint=cov >= FOOTPRINT_ALPHA,
        occluder=alpha >= OCCLUDE_ALPHA, shadow=drop_shadow(alpha, patch.shadow_strength),
        shadow_strength=patch.shadow_strength,
    )


def to_int_pts(pts: np.ndarray, shift: int = 4) -> np.ndarray:
    """Float points -> int32 fixed-point points for cv2 drawing with `shift` fractional bits."""
    return np.round(np.asarray(pts) * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)


def to_int_segments(a: np.ndarray, b: np.ndarray, shift: int = 4) -> list[np.ndarray]:
    """Many line segments `a[i] -> b[i]` as a list of fixed-point polylines for one cv2.polylines call."""
    seg = np.round(np.stack([a, b], 1) * (1 << shift)).astype(np.int32)
    return list(seg.reshape(-1, 2, 1, 2))


def shade(rgb: tuple[float, float, float] | np.ndarray, k: float) -> tuple[float, float, float]:
    """Scale a colour by `k` (darker < 1 < lighter), clipped to 0..255."""
    c = np.clip(np.asarray(rgb, np.float64) * k, 0, 255)
    return (float(c[0]), float(c[1]), float(c[2]))


def jitter_color(rng: np.random.Generator, rgb: tuple[float, float, float], amount: float = 18.0
                 ) -> tuple[float, float, float]:
    """A colour near `rgb` (per-channel uniform jitter)."""
    c = np.clip(np.asarray(rgb, np.float64) + rng.uniform(-amount, amount, 3), 0, 255)
    return (float(c[0]), float(c[1]), float(c[2]))
