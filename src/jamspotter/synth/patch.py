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
    """A drawn object, cropped to where it changes the image; all arrays share the patch's (h, w)."""

    kind: str  # what it is ("rope", "bottle", ...)
    label: str  # taxonomy class ("rope", "plastic", ...)
    alpha: np.ndarray  # float32 effective alpha (coverage * opacity)
    footprint: np.ndarray  # bool: pixels that belong to the object
    occluder: np.ndarray  # bool: pixels that hide what lies below
    keep: np.ndarray  # float32 (h, w, 3): share of what lies below that survives (shadow and alpha)
    premult: np.ndarray  # float32 (h, w, 3): alpha-premultiplied colour added on top

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the patch."""
        return self.alpha.shape  # type: ignore[return-value]


SHADOW_OFFSET = (3, 4)  # px right and down: light from the upper left
SHADOW_REACH = 4  # px the shadow blur spreads beyond its offset outline


def make_patch(kind: str, label: str, rgb: np.ndarray, alpha: np.ndarray, footprint: np.ndarray,
               shadow: float) -> ItemPatch:
    """Build an `ItemPatch`: crop to the object plus its shadow's reach, add the shadow, precompute compositing."""
    x, y, w, h = cv2.boundingRect((alpha > 0).view(np.uint8))
    if w == 0 or h == 0:  # nothing drawn: keep a 1x1 empty patch
        x, y, w, h = 0, 0, 1, 1
    r = SHADOW_REACH
    crop = (slice(max(0, y - r), min(alpha.shape[0], y + h + SHADOW_OFFSET[1] + r)),
            slice(max(0, x - r), min(alpha.shape[1], x + w + SHADOW_OFFSET[0] + r)))
    a, rgb = np.ascontiguousarray(alpha[crop]), rgb[crop]
    keep = 1.0 - drop_shadow(a, shadow)
    keep *= 1.0 - a
    premult = np.multiply(rgb, gray3(a), dtype=np.float32)
    return ItemPatch(kind=kind, label=label, alpha=a, footprint=footprint[crop], occluder=a >= OCCLUDE_ALPHA,
                     keep=gray3(keep), premult=premult)


class Canvas:
    """A local drawing surface: colour layer plus an anti-aliased coverage layer, with a margin."""

    def __init__(self, width: int, height: int, base_rgb: tuple[float, float, float], margin: int = 10) -> None:
        self.margin = margin
        self.w, self.h = int(width) + 2 * margin, int(height) + 2 * margin
        row = np.tile(np.asarray(base_rgb, np.float32), self.w)  # filled row by row (see `gray3`)
        self.rgb = np.broadcast_to(row, (self.h, self.w * 3)).reshape(self.h, self.w, 3).copy()
        self.cov = np.zeros((self.h, self.w), np.uint8)

    def offset(self, pts: np.ndarray) -> np.ndarray:
        """Local item coordinates -> canvas coordinates (adds the margin)."""
        return np.asarray(pts, np.float64) + self.margin

    def finish(self, kind: str, label: str, opacity: float | np.ndarray = 1.0, shadow: float = 0.35,
               blur_sigma: float = 0.0, rotate: float | None = None) -> ItemPatch:
        """Turn the layers into an `ItemPatch`, optionally rotated by `rotate` degrees about the centre.

        `opacity` may be a per-pixel map (film); `blur_sigma` softens the colour layer (lens blur).
        """
        cov = self.cov.astype(np.float32)
        cov *= 1.0 / 255.0
        rgb = self.rgb
        if blur_sigma > 0:
            k = 3 if blur_sigma < 0.8 else 5
            rgb = cv2.GaussianBlur(rgb, (k, k), blur_sigma)
        alpha = cov * opacity if np.isscalar(opacity) else cov * np.asarray(opacity, np.float32)
        np.clip(alpha, 0.0, 1.0, out=alpha)
        if rotate is not None:
            rgb, alpha, cov = _rotate((rgb, alpha, cov), rotate)
        return make_patch(kind, label, rgb, alpha.astype(np.float32), cov >= FOOTPRINT_ALPHA, shadow)


def drop_shadow(alpha: np.ndarray, strength: float, offset: tuple[int, int] = SHADOW_OFFSET) -> np.ndarray:
    """A soft shadow of `alpha` cast down-right (light from the upper left), scaled by `strength`."""
    sh = np.zeros_like(alpha)
    if strength <= 0:
        return sh
    dx, dy = offset
    h, w = alpha.shape
    sh[dy:, dx:] = alpha[: h - dy, : w - dx] * strength
    return cv2.blur(cv2.blur(sh, (5, 5)), (5, 5))  # two box passes (reach 4 px): a cheap, soft near-Gaussian


def _rotate(layers: tuple[np.ndarray, ...], angle_deg: float) -> list[np.ndarray]:
    """Rotate same-sized layers about their centre into a canvas big enough to hold them."""
    h, w = layers[0].shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(np.ceil(h * sin + w * cos)) + 2, int(np.ceil(h * cos + w * sin)) + 2
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    return [cv2.warpAffine(a, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0) for a in layers]


def gray3(a: np.ndarray) -> np.ndarray:
    """(h, w) -> (h, w, 3) float32 with three equal channels.

    Used instead of broadcasting `a[..., None]`: numpy loops a trailing axis of 3 very slowly,
    while same-shape arithmetic runs over whole contiguous rows.
    """
    return cv2.cvtColor(np.ascontiguousarray(a, np.float32), cv2.COLOR_GRAY2RGB)


def times_color(img: np.ndarray, color: np.ndarray | tuple[float, float, float],
                out: np.ndarray | None = None) -> np.ndarray:
    """`img` (h, w, 3) times a per-channel colour, as one row-wise product (fast, see `gray3`).

    `out`, when given, must be a C-contiguous float32 (h, w, 3) array; the product is written there.
    """
    h, w = img.shape[:2]
    row = np.tile(np.asarray(color, np.float32), w)[None, :]
    flat = np.ascontiguousarray(img, np.float32).reshape(h, w * 3)
    if out is None:
        return (flat * row).reshape(h, w, 3)
    np.multiply(flat, row, out=out.reshape(h, w * 3))
    return out


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
