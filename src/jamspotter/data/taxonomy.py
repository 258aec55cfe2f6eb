"""Which labels are jam-causing (they wrap around disc screens) and which are ordinary materials.

Labels from labelling tools vary ("Rope & strings", "rope/cord", "plastic_film"); `canonical_label`
folds them onto our names and `Taxonomy.jam_risk` answers the one question that matters on a line.
Users override the mapping with a YAML/JSON file `{label: true|false}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jamspotter.data.io import read_mapping
from jamspotter.errors import DataError

JAM_CLASSES: tuple[str, ...] = (
    "plastic film", "rope", "hose", "strap", "wire", "tangler", "flexible packaging", "long linear item",
)
MATERIAL_CLASSES: tuple[str, ...] = ("cardboard", "glass", "metal", "paper", "plastic", "trash")

# Normalised alias -> canonical class. Keys are lower-case, words separated by single spaces.
ALIASES: dict[str, str] = {
    "film": "plastic film", "plastic bag": "plastic film", "bag": "plastic film", "plastic wrap": "plastic film",
    "garbage bag": "plastic film", "single use carrier bag": "plastic film", "carrier bag": "plastic film",
    "other plastic wrapper": "flexible packaging", "polypropylene bag": "flexible packaging",
    "crisp packet": "flexible packaging", "plastic bag wrapper": "flexible packaging",
    "six pack rings": "tangler", "rope strings": "rope", "rope cord": "rope", "cord": "rope", "string": "rope",
    "strings": "rope", "twine": "rope", "cable": "wire", "wires": "wire", "hoses": "hose", "tube": "hose",
    "straps": "strap", "strapping": "strap", "band": "strap", "tanglers": "tangler", "textile": "tangler",
    "cloth": "tangler", "chain": "long linear item", "tape": "long linear item", "videotape": "long linear item",
    "cardboard box": "cardboard", "corrugated carton": "cardboard", "glass bottle": "glass",
    "broken glass": "glass", "can": "metal", "drink can": "metal", "food can": "metal", "scrap metal": "metal",
    "normal paper": "paper", "magazine paper": "paper", "bottle": "plastic", "plastic bottle": "plastic",
    "clear plastic bottle": "plastic", "other plastic": "plastic", "rigid plastic": "plastic",
}


def normalise(label: str) -> str:
    """Lower-case, punctuation to spaces, single spaces: `Rope & strings` -> `rope strings`."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", label.lower()).split())


def canonical_label(label: str) -> str | None:
    """Our class name for a label, or None when it is not one we know."""
    key = normalise(label)
    for name in JAM_CLASSES + MATERIAL_CLASSES:
        if key == normalise(name):
            return name
    return ALIASES.get(key)


@dataclass
class Taxonomy:
    """Label -> jam_risk map; `overrides` (by exact or normalised label) win over the defaults."""

    overrides: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._over = {normalise(k): bool(v) for k, v in self.overrides.items()}

    def is_jam(self, obj: Any) -> bool:
        """The jam rule for one labelled object (every stage uses it): a label this taxonomy names explicitly
        wins; else the object's own `jam_risk` flag (importers store one); else the label's default."""
        key = normalise(obj.label)
        if key in self._over:
            return self._over[key]
        return obj.jam_risk if obj.jam_risk is not None else canonical_label(obj.label) in JAM_CLASSES

    def jam_risk(self, label: str) -> bool:
        """True for jam-causing material (film, rope, hose, strap, wire, tanglers ...)."""
        key = normalise(label)
        if key in self._over:
            return self._over[key]
        return canonical_label(label) in JAM_CLASSES

    @classmethod
    def load(cls, path: str | Path | None) -> Taxonomy:
        """Read a `{label: bool}` YAML or JSON file; None gives the defaults."""
        if path is None:
            return cls()
        data = read_mapping(path, "taxonomy")
        if not isinstance(data, Mapping) or not all(isinstance(v, bool) for v in data.values()):
            raise DataError(f"{path}: taxonomy must map label -> true/false")
        return cls(dict(data))


DEFAULT_TAXONOMY = Taxonomy()
