"""Jam-causing items: rope, wire, hose, strap (smooth curves) and plastic film (crumpled translucent sheets).

Curves come from a smoothed random curvature process (they bend, and sometimes coil); each is drawn
in chunks so a later chunk crossing an earlier one shows its outline, like a real loop of rope.
Sizes are in metres, turned into pixels by `ppm` (pixels per metre of belt).
"""

from __future__ import annotations

import cv2
import numpy as np

from jamspotter.synth.patch import (
    Canvas,
    ItemPatch,
    gray3,
    jitter_color,
    shade,
    times_color,
    to_int_pts,
    to_int_segments,
)

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
    width = min(max(3, n // 8), (n - 1) // 4)  # kernel no longer than the curve: 'same' keeps n points
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


def _polyline(img: np.ndarray, pts: np.ndarray, color: object, thickness: float, aa: bool = True,
              closed: bool = False) -> None:
    cv2.polylines(img, [to_int_pts(pts, SHIFT)], closed, color, max(1, int(round(thickness))),
                  cv2.LINE_AA if aa else cv2.LINE_8, SHIFT)


def draw_cord(rng: np.random.Generator, ppm: float, kind: str) -> ItemPatch:
    """Rope, wire, hose or strap: a thick smooth curve with the texture of what it is."""
    spec = {  # thickness m, length m, curvature scale rad/m, coil probability, colours
        "rope": ((0.006, 0.016), (0.35, 1.2), 8.0, 0.35, ROPE_COLORS),
        "wire": ((0.002, 0.006), (0.3, 1.0), 12.0, 0.5, WIRE_COLORS),
        "hose": ((0.016, 0.035), (0.3, 1.0), 3.0, 0.0, HOSE_COLORS),
        "strap": ((0.012, 0.025), (0.4, 1.3), 3.0, 0.3, STRAP_COLORS),
    }[kind]
    (t0, t1), (l0, l1), turn, coil, colors = spec
    thick = max(1.5 if kind == "wire" else 2.5, rng.uniform(t0, t1) * ppm)
    length = rng.uniform(l0, l1) * ppm
    pts = random_curve(rng, length, turn / ppm, coil)
    color = jitter_color(rng, colors[int(rng.integers(len(colors)))], 15)
    cv, pts = _canvas_for(pts, thick + 4, color)
    tang, norm = _normals(pts)
    side = np.tanh(3.0 * (norm @ LIGHT))[:, None] * norm  # the normal that faces the light (smoothly)
    if kind == "hose":
        _hose(cv, pts, side, thick, color)
    elif kind == "strap":
        _strap(cv, rng, pts, norm, thick, color)
    else:
        _round_cord(cv, rng, pts, side, thick, color, twisted=kind == "rope" and thick >= 3)
    return cv.finish(kind, kind, opacity=1.0, shadow=0.4 if kind == "hose" else 0.3,
                     blur_sigma=0.6 if thick > 4 else 0.0)


LIGHT = np.array([-0.6, -0.8])  # light comes from the upper left


def _round_cord(cv: Canvas, rng: np.random.Generator, pts: np.ndarray, lit: np.ndarray, thick: float,
                color: tuple[float, float, float], twisted: bool) -> None:
    """Rope or wire, drawn in chunks: a chunk that crosses an earlier one shows its dark outline."""
    outline = 1.0 + thick * 0.12
    _polyline(cv.cov, pts, 255, thick + outline)
    trim = int(np.ceil((thick + outline) / 4.0)) + 1  # curve points (2 px apart) under a round line cap
    for i, idx in enumerate(np.array_split(np.arange(len(pts)), int(rng.integers(3, 9)))):
        p = pts[max(0, idx[0] - 1): idx[-1] + 1]
        # outline and body start past the joint; details reach back over it to repair the cap
        _polyline(cv.rgb, p[trim:] if i and len(p) > trim + 1 else p, shade(color, 0.45), thick + outline, aa=False)
        _polyline(cv.rgb, p, color, thick, aa=False)
        lo = max(0, idx[0] - 2 * trim)
        q, ql = pts[lo: idx[-1] + 1], lit[lo: idx[-1] + 1]
        _polyline(cv.rgb, q + ql * thick * 0.22, shade(color, 1.45), max(1.0, thick * 0.22))
        if twisted:  # twisted strands: diagonal stripes across the rope
            r = _resample(q, thick * 0.7)
            if len(r) > 2:
                tq, nq = _normals(r)
                h = thick * 0.55
                cv2.polylines(cv.rgb, to_int_segments(r - nq * h - tq * h * 0.7, r + nq * h + tq * h * 0.7, SHIFT),
                              False, shade(color, 0.6), max(1, int(thick * 0.18)), cv2.LINE_AA, SHIFT)


def _hose(cv: Canvas, pts: np.ndarray, lit: np.ndarray, thick: float, color: tuple[float, float, float]) -> None:
    """A hose: a tube with cylinder shading (concentric bands shifted toward the light) and a glint."""
    outline = 1.0 + thick * 0.08
    _polyline(cv.cov, pts, 255, thick + outline)
    _polyline(cv.rgb, pts, shade(color, 0.4), thick + outline, aa=False)
    for j in range(6):
        f = j / 5
        _polyline(cv.rgb, pts + lit * thick * 0.2 * f, shade(color, 0.55 + 0.6 * f), thick * (1 - 0.8 * f))
    glint = shade(color, 2.2) if np.mean(color) < 100 else (250.0, 250.0, 250.0)
    _polyline(cv.rgb, pts + lit * thick * 0.27, glint, max(1.0, thick * 0.1))


def _strap(cv: Canvas, rng: np.random.Generator, pts: np.ndarray, norm: np.ndarray, width: float,
           color: tuple[float, float, float]) -> None:
    """A strapping band: a flat ribbon whose apparent width and brightness change as it twists."""
    n = len(pts)
    m = min(15, n)  # a kernel longer than the strap would make 'same' return m points, not n
    twist = np.cumsum(np.convolve(rng.normal(0, 0.08, n), np.ones(m) / m, "same")) + rng.uniform(0, np.pi)
    face = np.abs(np.cos(twist))
    half = (width / 2 * (0.2 + 0.8 * face))[:, None]
    left, right = pts + norm * half, pts - norm * half
    quads = np.stack([left[:-1], left[1:], right[1:], right[:-1]], 1)  # (n-1, 4, 2)
    shade_k = 0.7 + 0.45 * face[:-1]
    cv2.fillPoly(cv.cov, list(np.round(quads * (1 << SHIFT)).astype(np.int32)), 255, cv2.LINE_AA, SHIFT)
    edge = shade(color, 0.55)
    for idx in np.array_split(np.arange(n - 1), int(rng.integers(2, 6))):  # chunks: crossings show edges
        bins = np.digitize(shade_k[idx], [0.8, 0.9, 1.0, 1.1])
        for b in np.unique(bins):
            qs = quads[idx[bins == b]]
            cv2.fillPoly(cv.rgb, list(np.round(qs * (1 << SHIFT)).astype(np.int32)),
                         shade(color, float(np.mean(shade_k[idx[bins == b]]))), cv2.LINE_8, SHIFT)
        sl = slice(idx[0], idx[-1] + 2)
        for e in (left[sl], right[sl]):
            _polyline(cv.rgb, e, edge, 1.0)
        _polyline(cv.rgb, pts[sl], shade(color, 0.85), 1.0)  # embossed centre line


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
    # Shading maps at half resolution (film is smooth): facets from creases, glints, bright folded edges.
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    h4, w4 = (h + 3) // 4, (w + 3) // 4  # the facets are smoother still: quarter resolution
    yy, xx = np.mgrid[0:h4, 0:w4].astype(np.float32) * 2.0  # in half-resolution pixels
    facets = np.zeros((h4, w4), np.float32)
    light = np.zeros((h2, w2), np.float32)  # additive brightness, 0..1
    creases = rng.uniform([0, 0], [w2, h2], (int(rng.integers(5, 11)), 2))
    angles = rng.uniform(0, np.pi, len(creases))
    for (cx, cy), a in zip(creases, angles, strict=True):
        # each crease splits the sheet into a lighter and a darker side
        facets += np.clip((xx - cx) * -np.sin(a) + (yy - cy) * np.cos(a), -1.0, 1.0) * np.float32(
            rng.uniform(0.03, 0.09))
        d, c = np.array([np.cos(a), np.sin(a)]), np.array([cx, cy])
        _polyline(light, np.stack([c - d * size, c + d * size]), 0.06, 1.0)
        if rng.random() < 0.5:  # a glint along part of the crease: light caught by the fold
            dd = d * rng.uniform(0.04, 0.15) * size
            _polyline(light, np.stack([c - dd, c + dd]), 0.8, max(1.0, size * rng.uniform(0.005, 0.015)))
    g = rng.normal(0, 1, (max(2, int(h / size * 5)), max(2, int(w / size * 5)))).astype(np.float32)
    facets += cv2.resize(g, (w4, h4), interpolation=cv2.INTER_CUBIC) * 0.04
    facets = cv2.resize(facets, (w2, h2), interpolation=cv2.INTER_LINEAR)
    light = cv2.GaussianBlur(light, (0, 0), max(0.7, size * 0.006))
    edge = np.zeros((h2, w2), np.float32)  # folded edges catch more light and look denser
    _polyline(edge, poly * 0.5, 1.0, max(1.0, size * 0.008), closed=True)
    opacity = np.clip(rng.uniform(o0, o1) + light * 0.6 + facets + edge * 0.2, 0, 1)
    gain = 1.0 + facets
    add = light * 255.0 + edge * 25.0
    opacity, gain, add = (cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in (opacity, gain, add))
    cv.rgb = times_color(gray3(gain), base) + gray3(add)
    return cv.finish("film", "plastic film", opacity=opacity, shadow=0.18, blur_sigma=0.5)
