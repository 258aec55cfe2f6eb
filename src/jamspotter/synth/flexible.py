"""Jam-causing items: rope, wire, hose, strap (smooth curves) and plastic film (crumpled translucent sheets).

Curves come from a smoothed random curvature process (they bend, and sometimes coil); each is drawn
in chunks so a later chunk crossing an earlier one shows its outline, like a real loop of rope.
Sizes are in metres, turned into pixels by `ppm` (pixels per metre of belt).
"""

from __future__ import annotations

import cv2
import numpy as np

from jamspotter.synth.patch import Canvas, ItemPatch, jitter_color, shade, to_int_pts, to_int_segments

SHIFT = 4  # fractional bits for sub-pixel cv2 drawing

ROPE_COLORS = [(40, 90, 200), (230, 200, 40), (235, 120, 30), (60, 150, 70), (225, 225, 215), (190, 160, 110),
               (200, 40, 40), (30, 30, 30)]
WIRE_COLORS = [(190, 110, 60), (30, 30, 30), (150, 150, 155), (190, 30, 30), (40, 60, 170), (220, 210, 60)]
HOSE_COLORS = [(40, 120, 50), (25, 25, 28), (180, 40, 30), (220, 190, 40), (60, 90, 160), (200, 200, 195)]
STRAP_COLORS = [(235, 200, 40), (40, 80, 180), (25, 25, 25), (230, 230, 225), (60, 150, 80), (210, 70, 40)]
FILM_COLORS = [((225, 230, 235), (0.30, 0.45)), ((240, 240, 238), (0.60, 0.85)), ((28, 28, 32), (0.85, 0.95)),
               ((70, 110, 190), (0.55, 0.8)), ((225, 140, 170), (0.55, 0.8)), ((80, 160, 90), (0.55, 0.8)),
               ((235, 215, 80), (0.55, 0.8))]


def random_curve(rng: np.random.Generator, length_px: float, turn: float, coil_prob: float = 0.3) -> np.ndarray:
    """Points (N, 2) of a smooth random curve of about `length_px`; `turn` is the curvature scale (rad/px)."""
    step = 2.0
    n = max(12, int(length_px / step))
    k = rng.normal(0.0, turn, n)
    width = max(3, n // 8)
    kernel = np.exp(-0.5 * (np.arange(-2 * width, 2 * width + 1) / width) ** 2)
    k = np.convolve(k, kernel / kernel.sum() * np.sqrt(width) * 1.5, mode="same")
    if rng.random() < coil_prob:  # a loop or two: constant curvature over a stretch
        start = int(rng.integers(0, n // 2))
        stop = min(n, start + int(rng.integers(n // 4, n // 2 + 1)))
        radius = rng.uniform(0.04, 0.12) * length_px + 6.0
        k[start:stop] += np.sign(rng.standard_normal()) / radius
    theta = rng.uniform(0, 2 * np.pi) + np.cumsum(k * step)
    pts = np.cumsum(np.stack([np.cos(theta), np.sin(theta)], 1) * step, 0)
    return pts


def _normals(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit tangents and normals of a polyline (central differences)."""
    t = np.gradient(pts, axis=0)
    t /= np.linalg.norm(t, axis=1, keepdims=True) + 1e-9
    return t, np.stack([-t[:, 1], t[:, 0]], 1)


def _resample(pts: np.ndarray, spacing: float) -> np.ndarray:
    """Points every `spacing` px of arc length along a polyline."""
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    q = np.arange(0.0, s[-1], max(spacing, 0.5))
    return np.stack([np.interp(q, s, pts[:, 0]), np.interp(q, s, pts[:, 1])], 1)


def _canvas_for(pts: np.ndarray, pad: float, base: tuple[float, float, float]) -> tuple[Canvas, np.ndarray]:
    """A canvas that holds the curve with `pad` px around it; returns it and the shifted points."""
    lo = pts.min(0) - pad
    pts = pts - lo
    hi = pts.max(0) + pad
    cv = Canvas(int(np.ceil(hi[0])) + 1, int(np.ceil(hi[1])) + 1, base)
    return cv, cv.offset(pts)


def _polyline(img: np.ndarray, pts: np.ndarray, color: object, thickness: float, aa: bool = True) -> None:
    cv2.polylines(img, [to_int_pts(pts, SHIFT)], False, color, max(1, int(round(thickness))),
                  cv2.LINE_AA if aa else cv2.LINE_8, SHIFT)


def draw_cord(rng: np.random.Generator, ppm: float, kind: str) -> ItemPatch:
    """Rope, wire, hose or strap: a thick smooth curve with the texture of what it is."""
    spec = {  # thickness m, length m, curvature scale rad/m, coil probability, colours
        "rope": ((0.006, 0.016), (0.35, 1.2), 8.0, 0.35, ROPE_COLORS),
        "wire": ((0.002, 0.006), (0.3, 1.0), 12.0, 0.5, WIRE_COLORS),
        "hose": ((0.016, 0.035), (0.3, 1.0), 3.0, 0.15, HOSE_COLORS),
        "strap": ((0.009, 0.019), (0.4, 1.3), 3.0, 0.3, STRAP_COLORS),
    }[kind]
    (t0, t1), (l0, l1), turn, coil, colors = spec
    thick = max(1.5 if kind == "wire" else 2.5, rng.uniform(t0, t1) * ppm)
    length = rng.uniform(l0, l1) * ppm
    pts = random_curve(rng, length, turn / ppm, coil)
    color = jitter_color(rng, colors[int(rng.integers(len(colors)))], 15)
    cv, pts = _canvas_for(pts, thick + 4, color)
    outline = 1.0 + thick * 0.12
    _polyline(cv.cov, pts, 255, thick + outline)
    chunks = np.array_split(np.arange(len(pts)), int(rng.integers(3, 9)))
    light = np.array([-0.6, -0.8])  # light from the upper left
    tang, norm = _normals(pts)
    side = np.sign(norm @ light)[:, None]  # which normal faces the light
    dark, lighter = shade(color, 0.45), shade(color, 1.45)
    for idx in chunks:
        idx = np.arange(max(0, idx[0] - 1), idx[-1] + 1)
        p, n, s = pts[idx], norm[idx], side[idx]
        _polyline(cv.rgb, p, dark, thick + outline, aa=False)
        if kind == "hose":  # cylinder shading: concentric bands shifted toward the light
            for j in range(5):
                f = j / 4
                _polyline(cv.rgb, p + n * s * thick * 0.18 * f, shade(color, 0.55 + 0.55 * f), thick * (1 - 0.8 * f))
            _polyline(cv.rgb, p + n * s * thick * 0.25, shade(color, 1.9) if np.mean(color) < 100 else (250, 250, 250),
                      max(1.0, thick * 0.1))
        elif kind == "strap":  # flat band: darker edges, embossed centre lines
            _polyline(cv.rgb, p, color, thick - outline, aa=False)
            for off in (-0.22, 0.22):
                _polyline(cv.rgb, p + n * thick * off, shade(color, 0.8), max(1.0, thick * 0.08))
        else:  # rope and wire: round, with a highlight on the lit side
            _polyline(cv.rgb, p, color, thick, aa=False)
            _polyline(cv.rgb, p + n * s * thick * 0.22, lighter, max(1.0, thick * 0.22))
        if kind == "rope" and thick >= 3:  # twisted strands: diagonal stripes across the rope
            q = _resample(p, thick * 0.7)
            if len(q) > 2:
                tq, nq = _normals(q)
                r = thick * 0.55
                a, b = q - nq * r - tq * r * 0.7, q + nq * r + tq * r * 0.7
                cv2.polylines(cv.rgb, to_int_segments(a, b, SHIFT), False, shade(color, 0.6),
                              max(1, int(thick * 0.18)), cv2.LINE_AA, SHIFT)
    label = kind
    return cv.finish(kind, label, opacity=1.0, shadow=0.4 if kind == "hose" else 0.3,
                     blur_sigma=0.6 if thick > 4 else 0.0)


def _blob_polygon(rng: np.random.Generator, rx: float, ry: float, n: int, rough: float) -> np.ndarray:
    """A crumpled closed outline: a star-shaped polygon with smoothly noisy radius."""
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    noise = rng.normal(0, rough, n)
    noise = (noise + np.roll(noise, 1) + np.roll(noise, -1)) / 2
    spikes = rng.random(n) < 0.25  # pinched corners of a crumpled sheet
    r = 1.0 + noise + spikes * rng.uniform(0.1, 0.4, n)
    return np.stack([np.cos(ang) * rx * r, np.sin(ang) * ry * r], 1)


def draw_film(rng: np.random.Generator, ppm: float) -> ItemPatch:
    """Plastic film or a bag: translucent crumpled sheet with creases and specular highlights."""
    size = rng.uniform(0.14, 0.45) * ppm
    rx, ry = size * rng.uniform(0.6, 1.0), size * rng.uniform(0.35, 0.8)
    poly = _blob_polygon(rng, rx, ry, int(rng.integers(14, 28)), 0.18)
    rot = rng.uniform(0, np.pi)
    poly = poly @ np.array([[np.cos(rot), np.sin(rot)], [-np.sin(rot), np.cos(rot)]])
    base, (o0, o1) = FILM_COLORS[int(rng.integers(len(FILM_COLORS)))]
    base = jitter_color(rng, base, 10)
    cv, poly = _canvas_for(poly, 6, base)
    h, w = cv.h, cv.w
    cv2.fillPoly(cv.cov, [to_int_pts(poly, SHIFT)], 255, cv2.LINE_AA, SHIFT)
    bag = rng.random() < 0.4
    if bag:  # handles of a carrier bag
        c = poly.mean(0)
        for sgn in (-1, 1):
            ctr = (c + np.array([sgn * rx * 0.35, -ry * 0.95])) * (1 << SHIFT)
            axes = (int(rx * 0.18 * (1 << SHIFT)), int(ry * 0.35 * (1 << SHIFT)))
            cv2.ellipse(cv.cov, (int(ctr[0]), int(ctr[1])), axes, 0, 180, 360, 255,
                        max(2, int(size * 0.04)), cv2.LINE_AA, SHIFT)
    # crumple shading: low-resolution noise blown up, then creases as thin light and dark lines
    g = rng.normal(0, 1, (max(2, h // 12), max(2, w // 12))).astype(np.float32)
    g = cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    cv.rgb *= (1.0 + 0.16 * np.clip(g, -2.5, 2.5))[..., None]
    for _ in range(int(rng.integers(4, 10))):
        p = rng.uniform([0, 0], [w, h], (int(rng.integers(2, 4)), 2))
        col = shade(base, 1.35) if rng.random() < 0.5 else shade(base, 0.7)
        _polyline(cv.rgb, p, col, max(1.0, size * 0.012))
    opacity = np.full((h, w), rng.uniform(o0, o1), np.float32)
    spec = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(2, 6))):  # specular highlights: bright streaks that reflect the lamps
        ctr = rng.uniform([w * 0.2, h * 0.2], [w * 0.8, h * 0.8])
        axes = (int(rng.uniform(0.05, 0.18) * size) + 1, int(rng.uniform(0.015, 0.05) * size) + 1)
        cv2.ellipse(spec, (int(ctr[0]), int(ctr[1])), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    spec = cv2.GaussianBlur(spec, (0, 0), max(1.0, size * 0.02))
    cv.rgb += (spec * 255.0)[..., None] * 0.9
    opacity = np.clip(opacity + spec * 0.6, 0, 1)
    edge = np.zeros((h, w), np.uint8)  # folded edges catch more light and look denser
    cv2.polylines(edge, [to_int_pts(poly, SHIFT)], True, 255, max(1, int(size * 0.015)), cv2.LINE_AA, SHIFT)
    opacity = np.clip(opacity + edge.astype(np.float32) / 255.0 * 0.2, 0, 1)
    cv.rgb += (edge.astype(np.float32) / 255.0 * 25.0)[..., None]
    return cv.finish("film", "plastic film", opacity=opacity, shadow=0.18, blur_sigma=0.5)
