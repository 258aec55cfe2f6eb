"""Scenes: items laid out on a belt, composed into frames with exact visible-extent labels.

Labels follow what a camera sees. Items are composited in depth order; an item's *visible mask* is
its footprint minus the pixels hidden by later (higher) items' opaque parts and by the side rails.
Its box is the bounding box of that mask in pixel-edge coordinates: a mask spanning columns
`x0..x1` gives `bbox[0] = x0`, `bbox[2] = x1 + 1`. Items that end up almost hidden are drawn but not
labelled (see `MIN_VISIBLE_FRACTION` and `min_visible_pixels`). Masks are taken before motion blur,
lighting and noise, which move no object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from jamspotter.data.records import BoxObject
from jamspotter.data.taxonomy import Taxonomy
from jamspotter.errors import JamspotterError
from jamspotter.synth.belt import Belt, make_belt
from jamspotter.synth.conditions import (
    Conditions,
    apply_camera,
    jpeg_roundtrip,
    lighting_field,
    sample_conditions,
)
from jamspotter.synth.items import draw_item, pick_kind
from jamspotter.synth.patch import ItemPatch, gray3, times_color

MIN_VISIBLE_FRACTION = 0.2  # drop a label when less than this share of its in-frame footprint is visible
RAIL = np.iinfo(np.int16).max  # owner id of rail pixels: they hide everything
TAXONOMY = Taxonomy()


def min_visible_pixels(width: int, height: int) -> int:
    """Smallest visible area (px) that still gets a label: 1e-4 of the frame, at least 12 px."""
    return max(12, int(round(1e-4 * width * height)))


@dataclass
class Placed:
    """An item on the belt: its patch, top-left at strip column `u` and image row `y`."""

    patch: ItemPatch
    u: int
    y: int
    area: int  # footprint pixels of the whole patch


@dataclass
class Scene:
    """Everything needed to render any frame of one scene."""

    width: int
    height: int
    seed: int
    belt: Belt
    items: list[Placed]
    conditions: Conditions
    light: np.ndarray
    rng: np.random.Generator  # per-frame draws (flicker, noise offsets), consumed in frame order


@dataclass
class VisibleMask:
    """The visible pixels of one object: `mask` (bool) with its top-left corner at (x0, y0) in the image."""

    x0: int
    y0: int
    mask: np.ndarray

    def full(self, width: int, height: int) -> np.ndarray:
        """The mask as a full-frame bool image."""
        out = np.zeros((height, width), bool)
        h, w = self.mask.shape
        out[self.y0: self.y0 + h, self.x0: self.x0 + w] = self.mask
        return out


@dataclass
class Frame:
    """A rendered frame: RGB image, labels, and the visible mask of each label (same order)."""

    image: np.ndarray
    objects: list[BoxObject]
    masks: list[VisibleMask] = field(default_factory=list)


def _seeds(seed: int) -> list[np.random.SeedSequence]:
    """Independent streams: conditions, belt, layout, frames, items."""
    return np.random.SeedSequence(int(seed)).spawn(5)


def build_scene(width: int, height: int, seed: int, jam_rate: float = 0.3,
                travel: int | Callable[[Conditions, float], int] = 0, **conditions: Any) -> Scene:
    """Lay out a scene covering `travel` px of belt advance (0 for a still image).

    `travel` may be a function of the scene's conditions and pixels per metre (a clip plans its
    speed profile from them); items are then laid out over `width + travel` px of belt.
    """
    if width < 32 or height < 32:
        raise JamspotterError(f"synth image size must be at least 32x32, got {width}x{height}")
    if not 0.0 <= jam_rate <= 1.0:
        raise JamspotterError(f"jam_rate must be between 0 and 1, got {jam_rate}")
    s_cond, s_belt, s_layout, s_frames, s_items = _seeds(seed)
    cond = sample_conditions(np.random.default_rng(s_cond), conditions)
    rng_belt = np.random.default_rng(s_belt)
    belt = make_belt(width, height, rng_belt, moving=callable(travel) or travel > 0)
    length = belt.length = width + int(travel(cond, belt.ppm) if callable(travel) else travel)
    light = lighting_field(width, height, cond, rng_belt)
    rng = np.random.default_rng(s_layout)
    area_m2 = (length / belt.ppm) * ((belt.bottom - belt.top) / belt.ppm)
    n = int(rng.poisson(cond.clutter * area_m2))
    kinds = [pick_kind(rng, jam_rate) for _ in range(n)]
    # flat things (cardboard, paper) tend to lie underneath; otherwise the order is random
    depth = rng.random(n) + np.array([-0.6 if k.name in ("cardboard", "paper") else 0.0 for k in kinds])
    centres = rng.uniform([0, belt.top], [length, belt.bottom], (n, 2))
    items, item_seeds = [], s_items.spawn(n)
    for i in np.argsort(depth, kind="stable"):
        patch = draw_item(kinds[i], np.random.default_rng(item_seeds[i]), belt.ppm)
        ph, pw = patch.shape
        cu, cy = centres[i]
        area = int(np.count_nonzero(patch.footprint))
        items.append(Placed(patch, int(round(cu - pw / 2)), int(round(cy - ph / 2)), area))
    return Scene(width, height, int(seed), belt, items, cond, light, np.random.default_rng(s_frames))


def compose(scene: Scene, shift: int = 0, speed: float | None = None, with_masks: bool = False) -> Frame:
    """Render the frame at belt advance `shift` px; `speed` (m/s) sets this frame's motion blur."""
    w, h, belt = scene.width, scene.height, scene.belt
    canvas = np.empty((h, w, 3), np.float32)
    times_color(gray3(belt.window(shift)), belt.tint, out=canvas[belt.top: belt.bottom])
    canvas[: belt.top] = belt.rail_top  # items may reach under the rails; rails are pasted again on top
    canvas[belt.bottom:] = belt.rail_bottom
    owner = np.full((h, w), -1, np.int16)
    drawn: list[tuple[int, int, int, np.ndarray]] = []
    for idx, it in enumerate(scene.items):
        p = it.patch
        ph, pw = p.shape
        x0, y0 = int(belt.to_image_x(it.u, shift)), it.y
        fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + pw, w), min(y0 + ph, h)
        if fx0 >= fx1 or fy0 >= fy1:
            continue
        sub = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
        roi = canvas[fy0:fy1, fx0:fx1]
        roi *= p.keep[sub]
        roi += p.premult[sub]
        np.copyto(owner[fy0:fy1, fx0:fx1], idx, where=p.occluder[sub])
        drawn.append((idx, fx0, fy0, p.footprint[sub]))
    canvas[: belt.top] = belt.rail_top
    canvas[belt.bottom:] = belt.rail_bottom
    owner[: belt.top] = RAIL
    owner[belt.bottom:] = RAIL

    c, rng = scene.conditions, scene.rng
    gain = 1.0 + c.flicker * float(rng.uniform(-1, 1))
    v = c.belt_speed if speed is None else speed
    image = apply_camera(canvas, scene.light, gain, v * c.exposure * belt.ppm, c.noise, rng)

    objects, masks = [], []
    min_px = min_visible_pixels(w, h)
    for idx, fx0, fy0, foot in drawn:
        fh, fw = foot.shape
        vis = owner[fy0: fy0 + fh, fx0: fx0 + fw] <= idx
        vis &= foot
        n_vis = int(np.count_nonzero(vis))
        n_in = scene.items[idx].area if foot.shape == scene.items[idx].patch.shape else int(np.count_nonzero(foot))
        if n_vis < min_px or n_vis < MIN_VISIBLE_FRACTION * n_in:
            continue
        cols, rows = np.flatnonzero(vis.any(0)), np.flatnonzero(vis.any(1))
        bbox = [float(fx0 + cols[0]), float(fy0 + rows[0]), float(fx0 + cols[-1] + 1), float(fy0 + rows[-1] + 1)]
        item = scene.items[idx]
        label = item.patch.label
        objects.append(BoxObject(
            label=label, bbox=bbox, jam_risk=TAXONOMY.jam_risk(label),
            polygon=_outline(vis, fx0, fy0) if c.polygons else None,
            attributes={"kind": item.patch.kind, "track_id": idx, "visible": round(n_vis / max(item.area, 1), 3)},
        ))
        if with_masks:
            masks.append(VisibleMask(fx0, fy0, vis))
    return Frame(image, objects, masks)


def _outline(vis: np.ndarray, x0: int, y0: int) -> list[list[float]] | None:
    """COCO-style polygons tracing the visible mask (boundary pixel centres, simplified by 0.7 px)."""
    contours, _ = cv2.findContours(vis.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for cnt in contours:
        cnt = cv2.approxPolyDP(cnt, 0.7, True).reshape(-1, 2)
        if len(cnt) >= 3:
            polys.append((cnt + (x0, y0)).astype(float).ravel().tolist())
    return polys or None


def render_frame(width: int, height: int, seed: int, jam_rate: float = 0.3, **conditions: Any) -> Frame:
    """Like `render_scene`, but returns a `Frame` that also holds each object's visible mask."""
    jpeg = conditions.get("jpeg_quality")
    scene = build_scene(width, height, seed, jam_rate, **conditions)
    frame = compose(scene, 0, with_masks=True)
    if jpeg is not None:
        frame.image = jpeg_roundtrip(frame.image, int(jpeg))
    return frame


def render_scene(width: int, height: int, seed: int, jam_rate: float = 0.3, **conditions: Any
                 ) -> tuple[np.ndarray, list[BoxObject]]:
    """One belt image (H x W x 3 uint8 RGB) and its exact visible-extent boxes.

    `jam_rate` is the chance that each item is jam-causing. Conditions (see `Conditions`) are drawn
    from the seed unless given, e.g. `noise=0, belt_speed=2.0`; passing `jpeg_quality` also applies
    a JPEG round trip to the returned pixels.
    """
    frame = render_frame(width, height, seed, jam_rate, **conditions)
    return frame.image, frame.objects
