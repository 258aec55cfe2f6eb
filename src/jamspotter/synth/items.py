"""The item catalogue: which kinds exist, their taxonomy label, how often they appear, how to draw them.

Labels are the taxonomy's class names (`jamspotter.data.taxonomy`), so `Taxonomy().jam_risk(label)`
decides jam risk: a can is "metal", a PET bottle "plastic", a bag "plastic film".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from jamspotter.synth import flexible, rigid
from jamspotter.synth.patch import ItemPatch


@dataclass(frozen=True)
class Kind:
    """One kind of item on the belt."""

    name: str
    label: str
    weight: float  # relative frequency within its group (jam-causing or not)
    draw: Callable[[np.random.Generator, float], ItemPatch]


JAM_KINDS: tuple[Kind, ...] = (
    Kind("film", "plastic film", 0.32, flexible.draw_film),
    Kind("rope", "rope", 0.24, lambda r, p: flexible.draw_cord(r, p, "rope")),
    Kind("hose", "hose", 0.14, lambda r, p: flexible.draw_cord(r, p, "hose")),
    Kind("strap", "strap", 0.15, lambda r, p: flexible.draw_cord(r, p, "strap")),
    Kind("wire", "wire", 0.15, lambda r, p: flexible.draw_cord(r, p, "wire")),
)
OTHER_KINDS: tuple[Kind, ...] = (
    Kind("bottle", "plastic", 0.2, lambda r, p: rigid.draw_bottle(r, p, glass=False)),
    Kind("glass bottle", "glass", 0.08, lambda r, p: rigid.draw_bottle(r, p, glass=True)),
    Kind("can", "metal", 0.16, rigid.draw_can),
    Kind("cardboard", "cardboard", 0.2, rigid.draw_cardboard),
    Kind("paper", "paper", 0.16, rigid.draw_paper),
    Kind("tub", "plastic", 0.12, rigid.draw_tub),
    Kind("shard", "glass", 0.08, rigid.draw_shard),
)
KINDS: dict[str, Kind] = {k.name: k for k in JAM_KINDS + OTHER_KINDS}


def pick_kind(rng: np.random.Generator, jam_rate: float) -> Kind:
    """A jam-causing kind with probability `jam_rate`, otherwise an ordinary item, by weight."""
    group = JAM_KINDS if rng.random() < jam_rate else OTHER_KINDS
    w = np.array([k.weight for k in group])
    return group[int(rng.choice(len(group), p=w / w.sum()))]


def draw_item(kind: str | Kind, rng: np.random.Generator, ppm: float) -> ItemPatch:
    """Draw one item of `kind` at `ppm` pixels per metre; the patch's label is the taxonomy class."""
    k = KINDS[kind] if isinstance(kind, str) else kind
    patch = k.draw(rng, ppm)
    patch.kind, patch.label = k.name, k.label
    return patch
