"""Worlds: a scale of synthetic scenes from plain shapes to full belts (`jamspotter data synth --world`).

From easiest to hardest (one line each; `WORLDS` holds the same lines):

- `shapes`: 1-2 solid axis-aligned rectangles on plain grey, never touching, three classes told by colour
  (rope red, plastic film blue, cardboard brown); PNG, so every pixel is exactly its colour.
- `shapes-textured`: the same three classes on the rendered belt (texture, rails, lighting, noise, JPEG),
  told by shape and colour: rope a thin shaded bar, film a translucent wrinkled sheet, cardboard a
  corrugated board with a dark rim; colours jittered, 1-2 per image, never touching.
- `simple-belt`: the belt renderer's own items (every kind and label) at twice the belt's scale, 1-3 per
  image, free to overlap (visible-extent boxes, almost-hidden items unlabelled); --jam-rate applies.
- `belt`: the full belt renderer (`generate_dataset`'s default): Poisson clutter, every option, clips.

Boxes are `[x1, y1, x2, y2]` in pixel-edge coordinates: a shape covering columns `x..x+w-1` has
`x1 = x`, `x2 = x + w`. Jam risk follows the taxonomy's one rule (`Taxonomy.jam_risk`). Each image
is rendered from its own seed alone, so a dataset does not depend on the number of workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from jamspotter.data.records import BoxObject, Sample
from jamspotter.data.taxonomy import DEFAULT_TAXONOMY
from jamspotter.errors import JamspotterError
from jamspotter.synth.belt import make_belt
from jamspotter.synth.conditions import Conditions, encode_jpeg, lighting_field, sample_conditions
from jamspotter.synth.items import JAM_KINDS, OTHER_KINDS, draw_item, pick_kind
from jamspotter.synth.patch import SHADOW_OFFSET, SHADOW_REACH, ItemPatch, gray3, make_patch
from jamspotter.synth.scene import Placed, Scene, compose

# The rectangles world: colours, background and side range (25..60 px at 112x112, scaled with the short side).
SHAPE_COLORS: dict[str, tuple[int, int, int]] = {
    "rope": (220, 60, 40), "plastic film": (60, 160, 230), "cardboard": (180, 140, 80),
}
SHAPE_CLASSES: tuple[str, ...] = tuple(SHAPE_COLORS)
BACKGROUND = (70, 70, 70)
SIDE_RANGE = (25 / 112, 60 / 112)  # rectangle sides as a share of the image's short side
ITEM_COUNTS = (1, 1, 2)  # items per image, drawn uniformly from this tuple: 1 twice as often as 2
GAP = 2  # px of background at least between two shapes' boxes
ATTEMPTS = 50  # placements tried per shape before it is left out (no room)
SIMPLE_BELT_ZOOM = 2.0  # simple-belt draws items at this many times the belt's pixels per metre
SIMPLE_BELT_ITEMS = (1, 3)  # items per simple-belt image, inclusive range
BELT_LABELS: tuple[str, ...] = tuple(dict.fromkeys(k.label for k in JAM_KINDS + OTHER_KINDS))

# data synth options that only some worlds use (every world takes --out, --n, --size, --seed, --workers, ...)
WORLD_OPTIONS = ("--clips", "--seconds", "--fps", "--clutter", "--jam-rate")


@dataclass(frozen=True)
class World:
    """One rung of the scale: its name, a one-line description, its labels and the options it takes."""

    name: str
    summary: str
    classes: tuple[str, ...]  # every label the world can draw, in prompt order
    options: tuple[str, ...]  # which of WORLD_OPTIONS apply
    ext: str  # image file type written by data synth


WORLDS: dict[str, World] = {w.name: w for w in (
    World("shapes", "1-2 solid rectangles on plain grey, never touching; rope red, plastic film blue, "
          "cardboard brown (PNG)", SHAPE_CLASSES, (), "png"),
    World("shapes-textured", "the same three classes on the rendered belt, told by shape and colour: rope a thin "
          "shaded bar, film a translucent wrinkled sheet, cardboard a corrugated board; jittered colours, 1-2, "
          "never touching", SHAPE_CLASSES, (), "jpg"),
    World("simple-belt", "the belt renderer's items (every kind) at twice the belt's scale, 1-3 per image, "
          "overlaps allowed (visible-extent boxes)", BELT_LABELS, ("--jam-rate",), "jpg"),
    World("belt", "the full belt renderer: Poisson clutter, lighting, occlusion, clips (the default)",
          BELT_LABELS, WORLD_OPTIONS, "jpg"),
)}


def get_world(name: str) -> World:
    """The world called `name`; a one-line JamspotterError naming the known worlds otherwise."""
    try:
        return WORLDS[name]
    except KeyError:
        raise JamspotterError(f"--world: unknown world {name!r}; known (plain to real): "
                              f"{', '.join(WORLDS)}") from None


def check_world_options(name: str, given: Iterable[str]) -> World:
    """The world, after refusing (one line naming the option) any option in `given` it does not use."""
    world = get_world(name)
    for opt in given:
        if opt in WORLD_OPTIONS and opt not in world.options:
            takers = ", ".join(w.name for w in WORLDS.values() if opt in w.options)
            raise JamspotterError(f"{opt} does not apply to --world {name} (only to: {takers})")
    return world


def side_range(width: int, height: int) -> tuple[int, int]:
    """(shortest, longest) rectangle side in px for an image: 25..60 at 112x112, scaled with the short side."""
    short = min(width, height)
    lo = max(4, int(round(SIDE_RANGE[0] * short)))
    return lo, max(lo, int(round(SIDE_RANGE[1] * short)))


def _apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """True when boxes (x1, y1, x2, y2) have at least GAP px between them on some axis."""
    return a[2] + GAP <= b[0] or b[2] + GAP <= a[0] or a[3] + GAP <= b[1] or b[3] + GAP <= a[1]


def place_boxes(rng: np.random.Generator, labels: list[str], area: tuple[int, int, int, int],
                size: Callable[[str], tuple[int, int]]) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Place one box per label inside `area` (x1, y1, x2, y2), GAP px apart; a label with no room is left out.

    `size(label)` draws a (width, height); sizes larger than the area are clipped to it.
    """
    ax1, ay1, ax2, ay2 = area
    placed: list[tuple[str, tuple[int, int, int, int]]] = []
    for label in labels:
        for _ in range(ATTEMPTS):
            w, h = size(label)
            w, h = min(w, ax2 - ax1), min(h, ay2 - ay1)
            x = int(rng.integers(ax1, ax2 - w + 1))
            y = int(rng.integers(ay1, ay2 - h + 1))
            box = (x, y, x + w, y + h)
            if all(_apart(box, b) for _, b in placed):
                placed.append((label, box))
                break
    return placed


def _draw_labels(rng: np.random.Generator) -> list[str]:
    n = ITEM_COUNTS[int(rng.integers(len(ITEM_COUNTS)))]
    return [SHAPE_CLASSES[int(rng.integers(len(SHAPE_CLASSES)))] for _ in range(n)]


def _box_object(label: str, box: tuple[int, int, int, int] | list[float], **attributes: object) -> BoxObject:
    return BoxObject(label=label, bbox=[float(v) for v in box], jam_risk=DEFAULT_TAXONOMY.jam_risk(label),
                     attributes=dict(attributes))


def render_shapes(width: int, height: int, seed: int) -> tuple[np.ndarray, list[BoxObject]]:
    """The `shapes` world: an (H, W, 3) uint8 RGB image and its boxes.

    Each rectangle fills exactly the pixels `x1..x2-1` x `y1..y2-1` of its box with its class colour;
    every other pixel is BACKGROUND.
    """
    rng = np.random.default_rng(int(seed))
    lo, hi = side_range(width, height)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = BACKGROUND
    objects = []

    def size(_: str) -> tuple[int, int]:
        return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))

    for label, (x1, y1, x2, y2) in place_boxes(rng, _draw_labels(rng), (0, 0, width, height), size):
        image[y1:y2, x1:x2] = SHAPE_COLORS[label]
        objects.append(_box_object(label, (x1, y1, x2, y2), kind="rectangle"))
    return image, objects


def _textured_size(rng: np.random.Generator, label: str, lo: int, hi: int) -> tuple[int, int]:
    """(width, height) of a textured shape: ropes are thin bars along either axis, the others boards."""
    if label != "rope":
        return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
    length = int(rng.integers(2 * lo, int(1.5 * hi) + 1))
    thick = int(rng.integers(max(3, lo // 5), max(4, lo // 3) + 1))
    return (length, thick) if rng.random() < 0.5 else (thick, length)


def _textured_patch(rng: np.random.Generator, label: str, w: int, h: int) -> ItemPatch:
    """An ItemPatch of a `w` x `h` textured shape (footprint exactly the rectangle), drawn with a margin."""
    m = SHADOW_REACH + max(SHADOW_OFFSET)
    base = np.clip(np.asarray(SHAPE_COLORS[label], np.float32) + rng.uniform(-25, 25, 3), 0, 255)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)  # a soft light gradient across the shape
    ramp = (np.cos(ang) * (xx / max(w - 1, 1) - 0.5) + np.sin(ang) * (yy / max(h - 1, 1) - 0.5))
    light = 1.0 + rng.uniform(0.1, 0.3) * ramp
    opacity = 1.0
    if label == "rope":  # a lit cylinder across its thickness, twisted strands along it
        along, across = (xx, yy) if w >= h else (yy, xx)
        thick = min(w, h)
        u = (across - (thick - 1) / 2) / max(thick / 2, 1.0)
        light *= 0.75 + 0.35 * np.sqrt(np.clip(1 - u * u, 0, 1))
        light *= 1.0 + 0.15 * np.sin(2 * np.pi * (along + across) / rng.uniform(3.0, 6.0))
    elif label == "plastic film":  # translucent, with low-frequency wrinkles and a few bright creases
        opacity = float(rng.uniform(0.6, 0.85))
        low = rng.standard_normal((max(2, h // 8), max(2, w // 8))).astype(np.float32)
        light *= 1.0 + 0.18 * cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
        for _ in range(int(rng.integers(1, 4))):
            x0, x1 = rng.uniform(0, w, 2)
            cv2.line(light, (int(x0), 0), (int(x1), h - 1), 1.35, 1, cv2.LINE_AA)
    else:  # cardboard: corrugation lines and a darker rim
        period = rng.uniform(2.5, 4.0)
        coord = xx if rng.random() < 0.5 else yy
        light *= 1.0 - 0.08 * (np.sin(2 * np.pi * coord / period) > 0)
        light[:2], light[-2:], light[:, :2], light[:, -2:] = 0.8, 0.8, 0.8, 0.8
    rgb = np.zeros((h + 2 * m, w + 2 * m, 3), np.float32)
    rgb[m: m + h, m: m + w] = np.clip(gray3(light) * base, 0, 255)
    alpha = np.zeros((h + 2 * m, w + 2 * m), np.float32)
    alpha[m: m + h, m: m + w] = opacity
    footprint = np.zeros(alpha.shape, bool)
    footprint[m: m + h, m: m + w] = True
    return make_patch(label, label, rgb, alpha, footprint, shadow=float(rng.uniform(0.2, 0.4)))


def _belt_scene(width: int, height: int, seed: int
                ) -> tuple[Scene, np.random.Generator, np.random.SeedSequence]:
    """A belt with conditions and lighting drawn from `seed` and no items: (scene, layout rng, items' seeds)."""
    s_cond, s_belt, s_layout, s_frames, s_items = np.random.SeedSequence(int(seed)).spawn(5)
    cond = sample_conditions(np.random.default_rng(s_cond), {"clutter": 0.0})
    rng_belt = np.random.default_rng(s_belt)
    belt = make_belt(width, height, rng_belt)
    light = lighting_field(width, height, cond, rng_belt)
    scene = Scene(width, height, int(seed), belt, [], cond, light, np.random.default_rng(s_frames))
    return scene, np.random.default_rng(s_layout), s_items


def _placed(patch: ItemPatch, x: int, y: int) -> Placed:
    return Placed(patch, x, y, int(np.count_nonzero(patch.footprint)))


def render_shapes_textured(width: int, height: int, seed: int) -> tuple[np.ndarray, list[BoxObject], Conditions]:
    """The `shapes-textured` world: image, boxes (exactly each shape's rectangle) and the scene's conditions."""
    scene, rng, s_items = _belt_scene(width, height, seed)
    rng_items = np.random.default_rng(s_items)
    lo, hi = side_range(width, scene.belt.bottom - scene.belt.top)
    area = (0, scene.belt.top, width, scene.belt.bottom)
    r = SHADOW_REACH  # a patch starts SHADOW_REACH px above and left of its shape
    for label, (x1, y1, x2, y2) in place_boxes(rng, _draw_labels(rng), area,
                                               lambda lab: _textured_size(rng, lab, lo, hi)):
        scene.items.append(_placed(_textured_patch(rng_items, label, x2 - x1, y2 - y1), x1 - r, y1 - r))
    frame = compose(scene, 0)
    for o in frame.objects:
        o.attributes = {"kind": o.attributes["kind"]}
    return frame.image, frame.objects, scene.conditions


def render_simple_belt(width: int, height: int, seed: int, jam_rate: float = 0.3
                       ) -> tuple[np.ndarray, list[BoxObject], Conditions]:
    """The `simple-belt` world: image, visible-extent boxes and the scene's conditions.

    Items are the belt's own kinds (`pick_kind` with `jam_rate`), drawn at SIMPLE_BELT_ZOOM times the
    belt's scale with their centres placed so that each lies in the frame where it fits.
    """
    scene, rng, s_items = _belt_scene(width, height, seed)
    belt = scene.belt
    n = int(rng.integers(SIMPLE_BELT_ITEMS[0], SIMPLE_BELT_ITEMS[1] + 1))
    kinds = [pick_kind(rng, jam_rate) for _ in range(n)]
    depth = rng.random(n) + np.array([-0.6 if k.name in ("cardboard", "paper") else 0.0 for k in kinds])
    seeds = s_items.spawn(n)
    for i in np.argsort(depth, kind="stable"):
        patch = draw_item(kinds[i], np.random.default_rng(seeds[i]), belt.ppm * SIMPLE_BELT_ZOOM)
        ph, pw = patch.shape
        cx = rng.uniform(min(pw / 2, width / 2), max(width - pw / 2, width / 2))
        cy = rng.uniform(min(belt.top + ph / 2, (belt.top + belt.bottom) / 2),
                         max(belt.bottom - ph / 2, (belt.top + belt.bottom) / 2))
        scene.items.append(_placed(patch, int(round(cx - pw / 2)), int(round(cy - ph / 2))))
    frame = compose(scene, 0)
    return frame.image, frame.objects, scene.conditions


def world_image_job(world: str, i: int, seed: int, width: int, height: int, jam_rate: float
                    ) -> tuple[str, str, bytes]:
    """Render image `i` of a non-belt world: (its Sample as a JSON line, its relative path, its file bytes)."""
    from jamspotter.synth.dataset import item_seed

    s = item_seed(seed, 0, i)
    w = get_world(world)
    meta: dict[str, object] = {"world": world, "seed": s}
    if world == "shapes":
        image, objects = render_shapes(width, height, s)
        ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError("PNG encoding failed")
        data = buf.tobytes()
    else:
        if world == "shapes-textured":
            image, objects, cond = render_shapes_textured(width, height, s)
        elif world == "simple-belt":
            image, objects, cond = render_simple_belt(width, height, s, jam_rate)
            meta["jam_rate"] = jam_rate
        else:
            raise JamspotterError(f"world {world!r} is rendered by generate_dataset's belt path")
        conditions = cond.as_dict()
        conditions.pop("clutter")
        meta["conditions"] = conditions
        data = encode_jpeg(image, cond.jpeg_quality).tobytes()
    rel = f"images/{world}-{i:06d}.{w.ext}"
    sample = Sample(id=f"{world}-{i:06d}", image=rel, width=width, height=height, objects=objects,
                    source=f"synth:{world}", meta=meta)
    return sample.to_json(), rel, data
