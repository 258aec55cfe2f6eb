"""Non-jam items: bottles (plastic, glass), cans, cardboard, paper, rigid plastic tubs, glass shards.

Round bodies (bottles, cans) are drawn upright from a width profile with cylinder shading, then
rotated; flat items are irregular polygons with their surface texture (corrugation, print, creases).
"""

from __future__ import annotations

import cv2
import numpy as np

from jamspotter.synth.patch import Canvas, ItemPatch, gray3, jitter_color, shade, to_int_pts, to_int_segments

SHIFT = 4
PLASTIC_BOTTLE = [((200, 215, 228), (0.55, 0.75)), ((150, 190, 225), (0.6, 0.8)), ((95, 170, 115), (0.6, 0.8)),
                  ((236, 236, 230), (1.0, 1.0)), ((230, 120, 40), (1.0, 1.0))]
GLASS = [((40, 110, 50), (0.85, 0.95)), ((105, 60, 22), (0.85, 0.95)), ((200, 218, 212), (0.7, 0.85))]
VIVID = [(200, 30, 35), (30, 70, 170), (240, 240, 240), (20, 20, 20), (230, 190, 30), (40, 140, 60), (120, 40, 140)]


def _cylinder_shade(w: int, cx: float, half: float) -> np.ndarray:
    """Per-column brightness of a lit cylinder lying along y (highlight left of centre)."""
    u = (np.arange(w, dtype=np.float32) - cx) / max(half, 1.0)
    body = 0.55 + 0.5 * np.sqrt(np.clip(1.0 - u * u, 0.0, 1.0))
    spec = 0.7 * np.exp(-(((u + 0.45) / 0.12) ** 2))
    return (body + spec).astype(np.float32)


def _profile_body(cv: Canvas, ys: np.ndarray, widths: np.ndarray, cx: float) -> np.ndarray:
    """Fill the outline given by widths along y; returns the polygon (canvas coordinates)."""
    left = np.stack([cx - widths / 2, ys], 1)
    right = np.stack([cx + widths / 2, ys], 1)[::-1]
    poly = cv.offset(np.concatenate([left, right]))
    cv2.fillPoly(cv.cov, [to_int_pts(poly, SHIFT)], 255, cv2.LINE_AA, SHIFT)
    return poly


def _band(cv: Canvas, y0: float, y1: float, color: tuple[float, float, float]) -> None:
    """Paint a horizontal band (a label, a rim) across the colour layer."""
    m = cv.margin
    cv.rgb[int(m + y0): int(m + y1)] = np.asarray(color, np.float32)


def draw_bottle(rng: np.random.Generator, ppm: float, glass: bool) -> ItemPatch:
    """A plastic or glass bottle lying on the belt, maybe crushed (plastic)."""
    length = rng.uniform(0.18, 0.32) * ppm
    width = length * rng.uniform(0.28, 0.38)
    base, (o0, o1) = (GLASS if glass else PLASTIC_BOTTLE)[int(rng.integers(3 if glass else 5))]
    base = jitter_color(rng, base, 10)
    cv = Canvas(int(width * 1.3) + 2, int(length) + 2, base)
    ys = np.linspace(0, length, 40)
    f = ys / length
    shoulder = np.clip((f - 0.12) / 0.22, 0, 1)
    widths = width * (0.34 + 0.66 * (3 * shoulder**2 - 2 * shoulder**3))
    widths[f < 0.07] = width * 0.42  # cap
    if not glass and rng.random() < 0.4:  # crushed PET: dents along the body
        dent = 1.0 - np.clip(np.convolve(rng.random(40) ** 3, np.ones(5) / 5, "same"), 0, 0.6) * (f > 0.3)
        widths = widths * dent
    cx = width * 0.65 + 1
    _profile_body(cv, ys, widths, cx)
    if not glass or rng.random() < 0.5:
        _band(cv, 0.45 * length, 0.72 * length, jitter_color(rng, VIVID[int(rng.integers(len(VIVID)))], 20))
    if not glass:
        _band(cv, 0, 0.07 * length, jitter_color(rng, VIVID[int(rng.integers(len(VIVID)))], 20))
    cv.rgb.reshape(cv.h, -1)[:] *= np.repeat(_cylinder_shade(cv.w, cx + cv.margin, width / 2), 3)[None, :]
    return cv.finish("glass bottle" if glass else "bottle", "glass" if glass else "plastic",
                     opacity=rng.uniform(o0, o1), shadow=0.35, blur_sigma=0.7, rotate=rng.uniform(0, 360))


def draw_can(rng: np.random.Generator, ppm: float) -> ItemPatch:
    """A drink or food can lying on its side: metallic print, bright rims, sometimes crushed."""
    tall = rng.random() < 0.3
    width = rng.uniform(0.055, 0.075) * ppm
    length = width * (2.4 if tall else 1.75) * rng.uniform(0.95, 1.05)
    food = rng.random() < 0.25
    print_col = jitter_color(rng, (200, 200, 205) if food else VIVID[int(rng.integers(len(VIVID)))], 20)
    cv = Canvas(int(width * 1.4) + 2, int(length) + 2, print_col)
    ys = np.linspace(0, length, 30)
    widths = np.full_like(ys, width)
    if rng.random() < 0.35:  # crushed: a pinched waist
        widths *= 1.0 - 0.45 * np.exp(-(((ys / length) - rng.uniform(0.3, 0.7)) / 0.15) ** 2)
    cx = width * 0.7 + 1
    _profile_body(cv, ys, widths, cx)
    rim = jitter_color(rng, (205, 205, 210), 10)
    _band(cv, 0, 0.06 * length, rim)
    _band(cv, 0.94 * length, length + 2, rim)
    if food:
        _band(cv, 0.12 * length, 0.88 * length, jitter_color(rng, VIVID[int(rng.integers(len(VIVID)))], 20))
    elif rng.random() < 0.6:
        _band(cv, 0.4 * length, 0.55 * length, jitter_color(rng, (215, 215, 220), 10))
    cv.rgb.reshape(cv.h, -1)[:] *= np.repeat(_cylinder_shade(cv.w, cx + cv.margin, width / 2), 3)[None, :]
    return cv.finish("can", "metal", opacity=1.0, shadow=0.35, blur_sigma=0.6, rotate=rng.uniform(0, 360))


def _quad(rng: np.random.Generator, w: float, h: float, jitter: float) -> np.ndarray:
    """A rotated, corner-jittered rectangle centred on the origin."""
    pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h]], np.float64) / 2
    pts += rng.normal(0, jitter * min(w, h), pts.shape)
    a = rng.uniform(0, np.pi)
    return pts @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])


def _flat(poly: np.ndarray, base: tuple[float, float, float], pad: float = 4) -> tuple[Canvas, np.ndarray]:
    lo = poly.min(0) - pad
    poly = poly - lo
    hi = poly.max(0) + pad
    cv = Canvas(int(np.ceil(hi[0])) + 1, int(np.ceil(hi[1])) + 1, base)
    poly = cv.offset(poly)
    cv2.fillPoly(cv.cov, [to_int_pts(poly, SHIFT)], 255, cv2.LINE_AA, SHIFT)
    return cv, poly


def _crumple(rng: np.random.Generator, cv: Canvas, strength: float, cell: int = 10) -> None:
    """Multiply the colour layer by blown-up noise: a crumpled or dented surface."""
    g = rng.normal(0, 1, (max(2, cv.h // cell), max(2, cv.w // cell))).astype(np.float32)
    g = cv2.resize(g, (cv.w, cv.h), interpolation=cv2.INTER_LINEAR)
    cv.rgb *= gray3(1.0 + strength * np.clip(g, -2.5, 2.5))


def draw_cardboard(rng: np.random.Generator, ppm: float) -> ItemPatch:
    """A flattened cardboard piece: corrugation lines, tape, a fold, a little print."""
    w, h = rng.uniform(0.12, 0.45) * ppm, rng.uniform(0.1, 0.35) * ppm
    base = jitter_color(rng, (165, 125, 80), 18)
    cv, poly = _flat(_quad(rng, w, h, 0.06), base)
    a = rng.uniform(0, np.pi)
    d = np.array([np.cos(a), np.sin(a)])
    n = np.array([-d[1], d[0]])
    step = max(2.5, 0.004 * ppm)
    span = np.hypot(cv.w, cv.h)
    c = np.array([cv.w / 2, cv.h / 2])
    offs = np.arange(-span / 2, span / 2, step)
    mid = c + offs[:, None] * n
    cv2.polylines(cv.rgb, to_int_segments(mid - d * span, mid + d * span, SHIFT), False, shade(base, 0.88), 1,
                  cv2.LINE_AA, SHIFT)
    if rng.random() < 0.5:  # packing tape along the piece
        o = rng.uniform(-0.2, 0.2) * span
        tape = np.stack([c + n * o - d * span, c + n * o + d * span])
        cv2.polylines(cv.rgb, [to_int_pts(tape, SHIFT)], False, jitter_color(rng, (190, 160, 110), 15),
                      max(2, int(0.04 * ppm)), cv2.LINE_AA, SHIFT)
    if rng.random() < 0.6:  # a fold: one side a little darker
        o = rng.uniform(-0.25, 0.25) * span
        yy, xx = np.ogrid[0: cv.h, 0: cv.w]
        side = (xx - c[0]) * n[0] + (yy - c[1]) * n[1] > o
        cv.rgb *= gray3(np.where(side, 0.85, 1.0))
    if rng.random() < 0.5:  # printed marks
        for _ in range(int(rng.integers(1, 4))):
            p = rng.uniform([0.2 * cv.w, 0.2 * cv.h], [0.8 * cv.w, 0.8 * cv.h])
            s = rng.uniform(0.02, 0.06) * ppm
            cv2.rectangle(cv.rgb, (int(p[0]), int(p[1])), (int(p[0] + s * 2), int(p[1] + s * 0.5)), (60, 45, 35), -1)
    cv2.polylines(cv.rgb, [to_int_pts(poly, SHIFT)], True, shade(base, 0.7), 1, cv2.LINE_AA, SHIFT)
    return cv.finish("cardboard", "cardboard", opacity=1.0, shadow=0.35, blur_sigma=0.5)


def draw_paper(rng: np.random.Generator, ppm: float) -> ItemPatch:
    """A sheet of paper or newsprint: off-white, lines of print, crumpled or flat."""
    w, h = rng.uniform(0.1, 0.3) * ppm, rng.uniform(0.08, 0.25) * ppm
    base = jitter_color(rng, [(238, 236, 228), (215, 210, 195), (245, 245, 245)][int(rng.integers(3))], 8)
    crumpled = rng.random() < 0.4
    poly = _quad(rng, w, h, 0.1 if crumpled else 0.03)
    cv, poly = _flat(poly, base)
    line_h = max(2.0, 0.006 * ppm)
    ys = np.arange(cv.h * 0.15, cv.h * 0.85, line_h * 2.2)
    # print: words as short dashes along each line (a fixed number of draws per line)
    words = rng.uniform(2, 8, (len(ys), 24)) * line_h
    starts = cv.w * 0.12 + np.cumsum(words + line_h, 1) - words - line_h
    keep = starts < cv.w * 0.85
    if keep.any():
        y = np.broadcast_to(ys[:, None], starts.shape)[keep]
        x0, x1 = starts[keep], np.minimum(starts + words, cv.w * 0.85)[keep]
        cv2.polylines(cv.rgb, to_int_segments(np.stack([x0, y], 1), np.stack([x1, y], 1), SHIFT), False,
                      (110, 110, 115), max(1, int(line_h * 0.5)), cv2.LINE_AA, SHIFT)
    if rng.random() < 0.4:  # a picture block
        x0, y0 = int(cv.w * rng.uniform(0.15, 0.5)), int(cv.h * rng.uniform(0.15, 0.5))
        cv2.rectangle(cv.rgb, (x0, y0), (x0 + int(cv.w * 0.3), y0 + int(cv.h * 0.25)),
                      jitter_color(rng, VIVID[int(rng.integers(len(VIVID)))], 30), -1)
    _crumple(rng, cv, 0.12 if crumpled else 0.03, cell=6 if crumpled else 20)
    return cv.finish("paper", "paper", opacity=1.0, shadow=0.25, blur_sigma=0.6)


def _rounded_rect(w: float, h: float, r: float) -> np.ndarray:
    """Outline of a rounded rectangle centred on the origin."""
    pts = []
    for cx, cy, a0 in ((w / 2 - r, -h / 2 + r, -90), (w / 2 - r, h / 2 - r, 0), (-w / 2 + r, h / 2 - r, 90),
                       (-w / 2 + r, -h / 2 + r, 180)):
        a = np.deg2rad(np.linspace(a0, a0 + 90, 8))
        pts.append(np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1))
    return np.concatenate(pts)


def draw_tub(rng: np.random.Generator, ppm: float) -> ItemPatch:
    """A rigid plastic tub or tray seen from above: rim, darker inside, a reflection."""
    w, h = rng.uniform(0.08, 0.25) * ppm, rng.uniform(0.07, 0.2) * ppm
    base = jitter_color(rng, VIVID[int(rng.integers(len(VIVID)))], 20)
    outline = _rounded_rect(w, h, min(w, h) * rng.uniform(0.1, 0.3))
    a = rng.uniform(0, np.pi)
    outline = outline @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    if rng.random() < 0.3:  # squashed
        outline = outline * (1 + rng.normal(0, 0.06, outline.shape))
    cv, poly = _flat(outline, base)
    c = poly.mean(0)
    inner = c + (poly - c) * 0.8
    cv2.fillPoly(cv.rgb, [to_int_pts(inner, SHIFT)], shade(base, 0.78), cv2.LINE_AA, SHIFT)
    cv2.polylines(cv.rgb, [to_int_pts(inner, SHIFT)], True, shade(base, 1.3), max(1, int(0.006 * ppm)),
                  cv2.LINE_AA, SHIFT)
    glint = c + (poly - c) * 0.55 + np.array([-0.15 * w, -0.1 * h])
    cv2.polylines(cv.rgb, [to_int_pts(glint[: len(glint) // 4], SHIFT)], False, (245, 245, 245),
                  max(1, int(0.005 * ppm)), cv2.LINE_AA, SHIFT)
    return cv.finish("tub", "plastic", opacity=1.0, shadow=0.35, blur_sigma=0.6)


def draw_shard(rng: np.random.Generator, ppm: float) -> ItemPatch:
    """A broken piece of glass: an irregular translucent polygon with bright edges."""
    size = rng.uniform(0.04, 0.12) * ppm
    n = int(rng.integers(4, 8))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = size * rng.uniform(0.4, 1.0, n)
    poly = np.stack([np.cos(ang) * r, np.sin(ang) * r * rng.uniform(0.4, 1.0)], 1)
    base, (o0, o1) = GLASS[int(rng.integers(3))]
    cv, poly = _flat(poly, jitter_color(rng, base, 10))
    cv2.polylines(cv.rgb, [to_int_pts(poly, SHIFT)], True, (235, 240, 240), max(1, int(size * 0.06)),
                  cv2.LINE_AA, SHIFT)
    return cv.finish("shard", "glass", opacity=rng.uniform(o0, o1), shadow=0.2, blur_sigma=0.4)
