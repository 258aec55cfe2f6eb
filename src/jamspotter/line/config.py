"""Line configuration for the digital twin: pydantic models that map 1:1 to the YAML in configs/line.yaml.

Every default cites its row in docs/line-parameters.md or says ASSUMPTION (an unknown
that `jamspotter line simulate --sweep ...` explores). A user's file only needs the values it changes:
it is merged over the packaged configs/line.yaml (mappings key by key, lists such as `items` replaced
whole). Every value must be finite and lie in a plausible range (the bounds below are wide: they catch
unit slips such as minutes given in seconds, not unusual lines); counts are whole numbers and the
cleaning-time quantiles are ordered min <= median <= p90 <= max.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from jamspotter.data.io import read_mapping, validation_message
from jamspotter.errors import DataError


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)



class ItemClass(_Config):
    """One tangler class that reaches the camera after presort: how many per ton, how likely it wraps."""

    label: str = Field(min_length=1)
    per_ton: float = Field(ge=0, le=1000)  # items per ton of infeed that escape presort (ASSUMPTION, swept)
    jam_prob: float = Field(ge=0, le=1)  # chance one item wraps on each screen it passes (ASSUMPTION)
    mass_g: float = Field(default=30.0, gt=0, le=1e6)


class DetectorSpec(_Config):
    """A detector over the belt: box-level recall/precision on jam classes and decision latency."""

    recall: float = Field(ge=0, le=1)
    precision: float = Field(default=1.0, gt=0, le=1)
    latency_s: float = Field(default=0.2, ge=0, le=3600)  # frame -> pick decision; ASSUMPTION


class LineConfig(_Config):
    """A medium single-stream MRF line with disc screens, a camera + picker before the screens."""

    throughput_tph: float = Field(default=20.0, gt=0, le=1000)  # row "throughput, medium line"
    belt_speed_mps: float = Field(default=0.3, ge=0.01, le=10)  # row "picking-belt speed"
    shift_hours_per_day: float = Field(default=16.0, gt=0, le=24)  # row "downtime share from wrapping" (16-h day)
    items: list[ItemClass] = Field(default_factory=list)
    screens: int = Field(default=3, ge=1, le=100)  # ASSUMPTION: OCC, news and container screens in series
    wraps_to_jam: int = Field(default=10, ge=1, le=100_000)  # ASSUMPTION: wraps a screen tolerates before it stops
    restart_min: float = Field(default=5.0, ge=0, le=1440)  # ASSUMPTION: lockout-tagout and restart per stop
    clear_median_min: float = Field(default=30.0, gt=0, le=1440)  # row "cleaning per stop" (30 min)
    clear_p90_min: float = Field(default=45.0, gt=0, le=1440)  # row "cleaning per stop" (20-45)
    clear_min_min: float = Field(default=20.0, ge=0, le=1440)  # row "cleaning per stop" (20-45)
    clear_max_min: float = Field(default=120.0, gt=0, le=1440)  # row "cleaning per stop" (tail to 120)
    crew: int = Field(default=3, ge=1, le=1000)  # row "crew per cleaning" (ASSUMPTION there)
    camera_to_picker_m: float = Field(default=2.0, gt=0, le=1000)  # ASSUMPTION
    pick_zone_m: float = Field(default=1.0, gt=0, le=1000)  # ASSUMPTION: belt length the picker can reach
    pick_rate_per_min: float = Field(default=60.0, gt=0, le=10_000)  # row "robotic sorter pick rate"
    false_pick_mass_g: float = Field(default=100.0, gt=0, le=1e6)  # ASSUMPTION: good item removed per false flag
    residue_share: float = Field(default=0.13, ge=0, le=1)  # row "residue"
    downtime_cost_per_h: float = Field(default=4000.0, ge=0, le=1e7)  # row "downtime cost"
    labour_per_h: float = Field(default=18.0, ge=0, le=1e5)  # row "labour"
    disposal_per_t: float = Field(default=57.0, ge=0, le=1e6)  # row "residue disposal"
    commodity_value_per_t: float = Field(default=100.0, ge=0, le=1e6)  # ASSUMPTION: blend of row "commodity prices"
    detector_cost_per_h: float = Field(default=0.0, ge=0, le=1e7)  # ASSUMPTION: camera + picker amortisation
    detector: DetectorSpec | None = None  # default detector when no --detector-metrics is given

    @field_validator("items")
    @classmethod
    def _unique_labels(cls, v: list[ItemClass]) -> list[ItemClass]:
        labels = [i.label for i in v]
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate item labels in {labels}")
        return v

    @model_validator(mode="after")
    def _ordered_cleaning_times(self) -> LineConfig:
        q = [("clear_min_min", self.clear_min_min), ("clear_median_min", self.clear_median_min),
             ("clear_p90_min", self.clear_p90_min), ("clear_max_min", self.clear_max_min)]
        for (a, va), (b, vb) in zip(q, q[1:], strict=False):
            if va > vb:
                raise ValueError(f"cleaning times must satisfy clear_min_min <= clear_median_min <= clear_p90_min "
                                 f"<= clear_max_min, got {a}={va:g} > {b}={vb:g}")
        return self

    @property
    def tanglers_per_hour(self) -> float:
        """Tanglers reaching the camera per hour of running line."""
        return self.throughput_tph * sum(i.per_ton for i in self.items)


def default_config_path() -> Path:
    """The packaged configs/line.yaml."""
    return Path(str(resources.files("jamspotter") / "configs" / "line.yaml"))


def merge_settings(base: dict, override: dict) -> dict:
    """`override` over `base`: mappings merged key by key (recursively), anything else (lists too) replaced."""
    out = dict(base)
    for key, value in override.items():
        out[key] = (merge_settings(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict)
                    else value)
    return out


def load_line_config(path: str | Path | None = None) -> LineConfig:
    """Read a line YAML merged over the packaged default (None -> the default alone); bad fields raise
    DataError naming file and field."""
    default = read_mapping(default_config_path(), "line settings")
    path = Path(path) if path is not None else default_config_path()
    settings = merge_settings(default, read_mapping(path, "line settings")) if path != default_config_path() \
        else default
    try:
        return LineConfig.model_validate(settings)
    except ValidationError as e:
        raise DataError(f"{path}: {validation_message(e)}") from None


def detector_from_metrics(path: str | Path, latency_s: float = 0.2) -> DetectorSpec:
    """A DetectorSpec from `jamspotter eval` metrics.json: `jam_recall`/`jam_precision` (jam-causing boxes found
    whatever jam class they were called: what the picker removes), else `recall`/`precision`."""
    path = Path(path)
    data = read_mapping(path, "detector metrics")

    def pick(*keys: str) -> float:
        for k in keys:
            v = data.get(k)
            if isinstance(v, int | float) and not isinstance(v, bool):
                return float(v)
        raise DataError(f"{path}: no numeric {' or '.join(keys)} field")

    recall = pick("jam_recall", "recall")
    if data.get("jam_precision") is None and data.get("precision") is None and data.get("fp") == 0:
        precision = 1.0  # undefined because the detector flagged nothing: it makes no false picks either
    else:
        precision = pick("jam_precision", "precision")
    if not 0 <= recall <= 1 or not 0 <= precision <= 1:
        raise DataError(f"{path}: recall/precision must lie in [0, 1], got {recall}, {precision}")
    # precision 0 means every flag is wrong; keep it tiny but positive so false-flag rates stay finite
    return DetectorSpec(recall=recall, precision=max(precision, 1e-3), latency_s=latency_s)
