"""The belt: a long strip of rubber texture (grain, wear lanes, splices, dirt) between two fixed side rails.

The belt runs left to right in the image. A frame shows a window of the strip; advancing the belt
by `d` pixels moves the window, so the texture, its dirt and every item on it move together while
the rails stay put. Strip column `u` appears at image column `x = u - (length - width) + d`.
The texture itself is a loop (like the real belt) of `period` px, so long clips stay cheap; the
loop's joint sits under a splice.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from jamspotter.synth.patch import gray3, times_color

BELT_WIDTH_M = 0.8  # metres of belt visible between the rails: sets the pixels-per-metre scale
RAIL_COLORS = [(150, 152, 155), (120, 122, 126), (40, 90, 160), (60, 120, 70), (215, 170, 40), (200, 95, 35)]


@dataclass
class Belt:
    """Texture strip (belt rows only) plus the fixed rails of the frame."""

    width: int
    height: int
    length: int  # strip length in pixels (>= width): how far items can be from the first frame
    top: int  # first belt row (rows above are the top rail)
    bottom: int  # one past the last belt row (rows from here are the bottom rail)
    texture: np.ndarray  # float32 (bottom - top, period): brightness of one loop of the belt surface
    tint: np.ndarray  # float32 (3,): rubber colour; a pixel is texture * tint
    rail_top: np.ndarray  # float32 (top, width, 3)
    rail_bottom: np.ndarray  # float32 (height - bottom, width, 3)

    @property
    def ppm(self) -> float:
        """Pixels per metre on the belt."""
        return (self.bottom - self.top) / BELT_WIDTH_M

    def window(self, shift: int) -> np.ndarray:
        """Belt texture columns seen at belt advance `shift` px (may be a view: copy before drawing)."""
        period = self.texture.shape[1]
        x0 = (self.length - self.width - int(shift)) % period
        if x0 + self.width <= period:
            return self.texture[:, x0: x0 + self.width]
        return np.concatenate([self.texture[:, x0:], self.texture[:, : x0 + self.width - period]], axis=1)

    def to_image_x(self, u: float, shift: int) -> float:
        """Image column of strip column `u` at belt advance `shift`."""
        return u - (self.length - self.width) + shift


def make_belt(width: int, height: int, rng: np.random.Generator, moving: bool = False) -> Belt:
    """Draw a belt for a `width` x `height` frame; a `moving` belt gets a texture loop of twice the width.

    The returned belt's `length` is `width`; a clip sets it to `width + travel` before laying out items.
    """
    rail = max(3, int(round(height * rng.uniform(0.06, 0.1))))
    top, bottom = rail, height - rail
    bh = bottom - top
    ppm = bh / BELT_WIDTH_M
    gray = rng.uniform(38, 72)
    tint = np.array([1.0, 1.0, 1.0]) + rng.normal(0, 0.04, 3)

    # Half-resolution modulation: large blotches, fine grain and dirt, blown up once.
    period = 2 * width if moving else width
    hh, hw = max(2, bh // 2), max(2, period // 2)
    mod = rng.standard_normal((hh, hw), dtype=np.float32) * 0.05
    low = rng.standard_normal((max(2, hh // 12), max(2, hw // 12)), dtype=np.float32)
    mod += cv2.resize(low, (hw, hh), interpolation=cv2.INTER_CUBIC) * 0.07
    n_dirt = rng.poisson(rng.uniform(0.5, 4.0) * hh * hw / 2500)
    if n_dirt:  # specks and smears of grime, a few light scraps of dust and paper
        c = rng.uniform([0, 0], [hw, hh], (n_dirt, 2)).astype(np.int32)
        ax = rng.uniform(0.3, 1.0, (n_dirt, 2)) * rng.exponential(1.2, (n_dirt, 1)) * ppm / 250
        ax[:, 0] *= rng.uniform(1.0, 4.0, n_dirt)  # smeared along the running direction
        val = rng.choice([-0.3, -0.2, -0.12, 0.15, 0.3], n_dirt, p=[0.3, 0.3, 0.2, 0.15, 0.05])
        for (x, y), (a, b), v, ang in zip(c, ax, val, rng.normal(0, 12, n_dirt), strict=True):
            cv2.ellipse(mod, (int(x), int(y)), (int(a) + 1, int(b) + 1), float(ang), 0, 360, float(v), -1)
    mod = cv2.GaussianBlur(mod, (0, 0), 0.8)
    mod = cv2.resize(mod, (period, bh), interpolation=cv2.INTER_LINEAR)

    # Wear lanes along the running direction: a smooth profile across the belt.
    prof = np.convolve(rng.standard_normal(bh + 20), np.ones(9) / 9, "same")[10: 10 + bh] * 0.05
    for _ in range(int(rng.integers(0, 4))):
        c, w = rng.uniform(0, bh), rng.uniform(0.02, 0.12) * bh
        prof += rng.uniform(0.05, 0.18) * np.exp(-(((np.arange(bh) - c) / w) ** 2))
    mod += prof.astype(np.float32)[:, None]

    # Splices: zig-zag finger joints across the belt every metre or two.
    spacing = rng.uniform(0.9, 2.2) * ppm
    joints = np.arange(rng.uniform(0, spacing), period, spacing) if period == width else [2.0]
    for u in joints:
        teeth = np.arange(0, bh + 8, max(4.0, 0.03 * ppm))
        xs = u + np.where(np.arange(len(teeth)) % 2 == 0, 0, max(3.0, 0.02 * ppm))
        pts = np.stack([xs, teeth], 1).round().astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(mod, [pts], False, -0.3, max(1, int(0.004 * ppm)), cv2.LINE_AA)

    mod += 1.0
    np.clip(mod, 0.0, None, out=mod)
    color = np.clip(gray * tint, 0, 255).astype(np.float32)
    return Belt(width, height, width, top, bottom, mod, color, *_rails(width, height, top, bottom, rng))


def _rails(width: int, height: int, top: int, bottom: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Side rails (skirt boards): painted steel with shading, a rubber skirt line and bolts; (top, bottom) rows."""
    color = (np.array(RAIL_COLORS[int(rng.integers(len(RAIL_COLORS)))]) + rng.normal(0, 8, 3)).astype(np.float32)
    step = max(12, int(width / rng.uniform(5, 10)))
    phase = int(rng.integers(0, step))
    out = []
    for n, is_top in ((top, True), (height - bottom, False)):
        # brighter towards the top face of the profile, darker at the belt edge
        ramp = np.linspace(1.15, 0.7, n, dtype=np.float32)
        if not is_top:
            ramp = ramp[::-1]
        scratches = cv2.resize(rng.standard_normal((n, max(2, width // 8)), dtype=np.float32), (width, n))
        rail = times_color(gray3(ramp[:, None] * (1.0 + 0.04 * scratches)), color)
        skirt = max(1, n // 6)  # black rubber skirt where the rail meets the belt
        if is_top:
            rail[n - skirt:] = 22.0
        else:
            rail[:skirt] = 22.0
        yc = n // 2
        for x in range(phase, width, step):
            cv2.circle(rail, (x, yc), max(1, n // 6), (90.0, 90.0, 92.0), -1, cv2.LINE_AA)
            cv2.circle(rail, (x - max(1, n // 16), yc - max(1, n // 16)), max(1, n // 14), (200.0, 200.0, 200.0),
                       -1, cv2.LINE_AA)
        out.append(np.ascontiguousarray(rail, np.float32))
    return out[0], out[1]
