"""Discrete-event digital twin (simpy) of an MRF line: tanglers, a camera + picker, disc screens that wrap.

Only the items that matter are simulated one by one: tanglers that escaped presort, and the good items a
detector flags by mistake. The rest of the flow is mass (t/h while the line runs). Each random quantity
has its own RNG stream, and every tangler draws its detection and wrap numbers on arrival whether or not
they are used, so runs that differ only in the detector see the same belt (common random numbers):
recall 0 reproduces the no-detector run exactly, and sweeps compare like with like.

Simplification: only the infeed stops during a stop; items already between camera and screens finish
their few seconds of travel.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field

import numpy as np
import simpy
from pydantic import ValidationError

from jamspotter.data.io import validation_message
from jamspotter.errors import DataError
from jamspotter.line.config import DetectorSpec, ItemClass, LineConfig

STREAMS = ("arrivals", "wraps", "clearing", "detector", "false_flags")


@dataclass
class SimResult:
    """Totals of one run over `hours` of scheduled time."""

    hours: float
    uptime_h: float = 0.0
    downtime_h: float = 0.0
    clearing_h: float = 0.0
    jams: int = 0
    wraps: int = 0
    tanglers: int = 0
    tanglers_flagged: int = 0
    tanglers_picked: int = 0
    tanglers_to_screens: int = 0
    false_flags: int = 0
    false_picks: int = 0
    tons_processed: float = 0.0
    tons_recovered: float = 0.0
    costs: dict[str, float] = field(default_factory=dict)
    jam_times_h: list[float] = field(default_factory=list)

    @property
    def cost_total(self) -> float:
        """Sum of all cost lines (downtime, crew, disposal, false-pick loss, detector)."""
        return sum(self.costs.values())

    def summary(self, shift_hours_per_day: float) -> dict[str, float]:
        """Headline figures, with per-day rates for a `shift_hours_per_day` operating day."""
        per_day = shift_hours_per_day / self.hours
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("costs", "jam_times_h")}
        out.update({f"cost_{k}": v for k, v in self.costs.items()})
        out["cost_total"] = self.cost_total
        out["throughput_tph"] = self.tons_processed / self.hours
        out["jams_per_day"] = self.jams * per_day
        out["downtime_h_per_day"] = self.downtime_h * per_day
        out["downtime_share"] = self.downtime_h / self.hours
        out["cost_per_day"] = self.cost_total * per_day
        out["tons_recovered_per_day"] = self.tons_recovered * per_day
        return out


class LineTwin:
    """One run of the line. Build it, call `run(hours)`, read `result`."""

    def __init__(self, config: LineConfig, detector: DetectorSpec | None, seed: int) -> None:
        self.cfg, self.det = config, detector
        self.env = simpy.Environment()
        self.rng = dict(zip(STREAMS, (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)),
                            strict=True))
        self.picker = simpy.Resource(self.env, capacity=1)
        self.screen_wraps = [0] * config.screens
        self.up = True
        self._stopped = self.env.event()  # triggered when the line stops
        self._restarted = self.env.event()  # triggered when it runs again
        self.result = SimResult(hours=0.0)
        self._horizon = 0.0
        self._pick_s = 60.0 / config.pick_rate_per_min
        self._travel_s = config.camera_to_picker_m / config.belt_speed_mps
        self._window_s = config.pick_zone_m / config.belt_speed_mps

    # -- running time: waits that pause while the line is stopped ------------------------------
    def _run_for(self, seconds: float) -> Generator:
        remaining = seconds
        while remaining > 1e-9:
            if not self.up:
                yield self._restarted
            start = self.env.now
            yield self.env.timeout(remaining) | self._stopped
            remaining -= self.env.now - start

    # -- processes ------------------------------------------------------------------------------
    def _infeed(self) -> Generator:
        rate_h = self.cfg.tanglers_per_hour
        if rate_h <= 0:
            return
        probs = np.array([i.per_ton for i in self.cfg.items]) / sum(i.per_ton for i in self.cfg.items)
        arrivals = self.rng["arrivals"]
        while True:
            yield from self._run_for(arrivals.exponential(3600.0 / rate_h))
            item = self.cfg.items[int(arrivals.choice(len(probs), p=probs))]
            wrap_draws = self.rng["wraps"].random(self.cfg.screens)  # drawn for every item (common numbers)
            det_draw = self.rng["detector"].random()
            self.env.process(self._tangler(item.jam_prob, wrap_draws, det_draw))

    def _try_pick(self) -> Generator:
        """Wait until the item reaches the pick zone; True if the picker gets it before it leaves."""
        if self.det is None or self.det.latency_s > self._travel_s:
            return False
        yield self.env.timeout(self._travel_s)
        req = self.picker.request()
        got = yield req | self.env.timeout(self._window_s)
        if req not in got:
            req.cancel()
            return False
        yield self.env.timeout(self._pick_s)
        self.picker.release(req)
        return True

    def _tangler(self, jam_prob: float, wrap_draws: np.ndarray, det_draw: float) -> Generator:
        r = self.result
        r.tanglers += 1
        if self.det is not None and det_draw < self.det.recall:
            r.tanglers_flagged += 1
            if (yield from self._try_pick()):
                r.tanglers_picked += 1
                return
        r.tanglers_to_screens += 1
        for screen, draw in enumerate(wrap_draws):
            if draw < jam_prob:
                r.wraps += 1
                self.screen_wraps[screen] += 1
                if self.up and self.screen_wraps[screen] >= self.cfg.wraps_to_jam:
                    self.env.process(self._stop())
                return

    def _false_flags(self) -> Generator:
        """Good items flagged by mistake: precision P gives (1-P)/P false flags per true flag."""
        det = self.det
        rate_h = det.recall * self.cfg.tanglers_per_hour * (1 - det.precision) / det.precision if det else 0.0
        if rate_h <= 0:
            return
        while True:
            yield from self._run_for(self.rng["false_flags"].exponential(3600.0 / rate_h))
            self.result.false_flags += 1
            self.env.process(self._false_pick())

    def _false_pick(self) -> Generator:
        if (yield from self._try_pick()):
            self.result.false_picks += 1

    def _stop(self) -> Generator:
        """Stop the line, lock out, clear every screen at its wrap limit, restart."""
        cfg, r = self.cfg, self.result
        self.up = False
        self._stopped.succeed()
        self._stopped = self.env.event()
        sigma = max(math.log(cfg.clear_p90_min / cfg.clear_median_min), 0.0) / 1.2816  # lognormal p90
        while any(w >= cfg.wraps_to_jam for w in self.screen_wraps):
            screen = next(i for i, w in enumerate(self.screen_wraps) if w >= cfg.wraps_to_jam)
            clear_min = float(np.clip(self.rng["clearing"].lognormal(math.log(cfg.clear_median_min), sigma),
                                      cfg.clear_min_min, cfg.clear_max_min))
            start = self.env.now
            r.jams += 1
            r.jam_times_h.append(start / 3600.0)
            yield self.env.timeout((cfg.restart_min + clear_min) * 60.0)
            self.screen_wraps[screen] = 0
            r.clearing_h += max(0.0, min(start + clear_min * 60.0, self._horizon) - start) / 3600.0
            r.downtime_h += max(0.0, min(self.env.now, self._horizon) - start) / 3600.0
        self.up = True
        self._restarted.succeed()
        self._restarted = self.env.event()

    # -- run --------------------------------------------------------------------------------------
    def run(self, hours: float) -> SimResult:
        """Simulate `hours` of scheduled time and fill in throughput, recovery and costs."""
        cfg = self.cfg
        self._horizon = hours * 3600.0
        self.result = r = SimResult(hours=hours)
        self.env.process(self._infeed())
        self.env.process(self._false_flags())
        self.env.run(until=self._horizon)
        r.uptime_h = hours - r.downtime_h
        r.tons_processed = cfg.throughput_tph * r.uptime_h
        false_t = r.false_picks * cfg.false_pick_mass_g / 1e6
        r.tons_recovered = r.tons_processed * (1 - cfg.residue_share) - false_t
        r.costs = {
            "downtime": r.downtime_h * cfg.downtime_cost_per_h,
            "crew": r.clearing_h * cfg.crew * cfg.labour_per_h,
            "disposal": (r.tons_processed * cfg.residue_share + false_t) * cfg.disposal_per_t,
            "false_picks": false_t * cfg.commodity_value_per_t,
            "detector": hours * cfg.detector_cost_per_h if self.det is not None else 0.0,
        }
        return r


MAX_HOURS = 24 * 365 * 100  # a century of scheduled time
MAX_ITEMS_PER_RUN = 2_000_000  # tanglers + false flags one run may simulate (about a minute of simpy time)


def check_run(config: LineConfig, detector: DetectorSpec | None, hours: float, seed: int = 0) -> None:
    """Raise DataError unless one run can finish: finite hours in (0, MAX_HOURS], seed >= 0, and at most
    MAX_ITEMS_PER_RUN simulated items expected (rates times hours)."""
    if not isinstance(hours, int | float) or not math.isfinite(hours) or not 0 < hours <= MAX_HOURS:
        raise DataError(f"hours must be a finite number in (0, {MAX_HOURS}], got {hours}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"seed must be a whole number >= 0, got {seed}")
    rate = config.tanglers_per_hour
    if detector is not None:
        rate += detector.recall * config.tanglers_per_hour * (1 - detector.precision) / detector.precision
    if rate * hours > MAX_ITEMS_PER_RUN:
        raise DataError(f"one run would simulate about {rate * hours:,.0f} items (limit {MAX_ITEMS_PER_RUN:,}): "
                        "fewer hours or lower tangler rates")


def simulate(config: LineConfig, detector: DetectorSpec | None, hours: float, seed: int = 0) -> SimResult:
    """One run of the twin; deterministic for a given (config, detector, hours, seed). Checked by `check_run`."""
    check_run(config, detector, hours, seed)
    return LineTwin(config, detector, seed).run(hours)


def mean_summary(results: Iterable[SimResult], shift_hours_per_day: float) -> dict[str, float]:
    """Average the summaries of replicated runs."""
    rows = [r.summary(shift_hours_per_day) for r in results]
    return {k: float(np.mean([row[k] for row in rows])) for k in rows[0]}


def compare(config: LineConfig, detector: DetectorSpec, hours: float, seed: int = 0,
            replications: int = 1) -> dict[str, dict[str, float]]:
    """The line with vs. without the detector over the same belts (seeds seed..seed+replications-1)."""
    seeds = range(seed, seed + replications)
    base = mean_summary((simulate(config, None, hours, s) for s in seeds), config.shift_hours_per_day)
    det = mean_summary((simulate(config, detector, hours, s) for s in seeds), config.shift_hours_per_day)
    delta = {k: det[k] - base[k] for k in base}
    return {"without_detector": base, "with_detector": det, "difference": delta}


DETECTOR_FIELDS = ("recall", "precision", "latency_s")


def is_count(name: str) -> bool:
    """True for the LineConfig fields that count things (screens, wraps_to_jam, crew): whole numbers only."""
    field = LineConfig.model_fields.get(name)
    return field is not None and field.annotation is int


def with_param(config: LineConfig, detector: DetectorSpec, name: str, value: float
               ) -> tuple[LineConfig, DetectorSpec]:
    """Config and detector with one parameter changed: a LineConfig field, a detector field, or
    `tangler_scale` (multiplies every item's per_ton). Every result is validated like a config file:
    ranges, whole numbers for counts (2.7 screens is an error, never rounded), finite values."""
    if name not in (*DETECTOR_FIELDS, "tangler_scale", *LineConfig.model_fields) or name in ("items", "detector"):
        raise DataError(f"cannot sweep {name!r}: use a numeric line field, {', '.join(DETECTOR_FIELDS)} "
                        "or tangler_scale")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DataError(f"sweep {name}={value}: not a finite number")
    try:
        if name in DETECTOR_FIELDS:
            return config, DetectorSpec.model_validate({**detector.model_dump(), name: value})
        if name == "tangler_scale":
            if value < 0:
                raise DataError(f"sweep tangler_scale={value}: must be >= 0")
            items = [ItemClass.model_validate({**i.model_dump(), "per_ton": i.per_ton * value}) for i in config.items]
            return config.model_copy(update={"items": items}), detector
        if is_count(name):
            if value != int(value):
                raise DataError(f"sweep {name}={value:g}: {name} is a count, give whole numbers")
            value = int(value)
        return LineConfig.model_validate({**config.model_dump(), name: value}), detector
    except ValidationError as e:
        raise DataError(f"sweep {name}={value:g}: {validation_message(e)}") from None


def sweep_settings(config: LineConfig, detector: DetectorSpec, name: str, values: Iterable[float], hours: float,
                   seed: int = 0) -> list[tuple[float, LineConfig, DetectorSpec]]:
    """`(value, config, detector)` for every value, all validated (`with_param`, `check_run`) before any run."""
    out = []
    for value in values:
        cfg, det = with_param(config, detector, name, value)
        check_run(cfg, None, hours, seed)
        check_run(cfg, det, hours, seed)
        out.append((int(value) if is_count(name) else float(value), cfg, det))
    return out


def sweep(config: LineConfig, detector: DetectorSpec, name: str, values: Iterable[float], hours: float,
          seed: int = 0, replications: int = 10) -> list[dict[str, float]]:
    """Per value of one parameter: jams, downtime and cost per day without and with the detector, and savings."""
    seeds = list(range(seed, seed + replications))
    rows = []
    for value, cfg, det in sweep_settings(config, detector, name, values, hours, seed):
        base = mean_summary((simulate(cfg, None, hours, s) for s in seeds), cfg.shift_hours_per_day)
        m = mean_summary((simulate(cfg, det, hours, s) for s in seeds), cfg.shift_hours_per_day)
        rows.append({name: value, "recall": det.recall, "precision": det.precision,
                     "baseline_jams_per_day": base["jams_per_day"], "jams_per_day": m["jams_per_day"],
                     "baseline_downtime_h_per_day": base["downtime_h_per_day"],
                     "downtime_h_per_day": m["downtime_h_per_day"], "baseline_cost_per_day": base["cost_per_day"],
                     "cost_per_day": m["cost_per_day"], "savings_per_day": base["cost_per_day"] - m["cost_per_day"],
                     "tons_recovered_per_day": m["tons_recovered_per_day"], "false_picks": m["false_picks"]})
    return rows


def sweep_recall(config: LineConfig, detector: DetectorSpec, hours: float, recalls: Iterable[float],
                 seed: int = 0, replications: int = 10) -> list[dict[str, float]]:
    """Jams, downtime and savings per day as recall varies (precision and latency held at `detector`'s)."""
    return sweep(config, detector, "recall", recalls, hours, seed, replications)


def plot_sweep(rows: list[dict[str, float]], path: str, param: str = "recall") -> None:
    """Two panels against the swept parameter: jams/day (with and without detector) and savings/day (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jamspotter.data.io import atomic_write

    x = [r[param] for r in rows]
    label = "detector recall on jam classes" if param == "recall" else param
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(x, [r["jams_per_day"] for r in rows], marker="o", label="with detector")
    a.plot(x, [r["baseline_jams_per_day"] for r in rows], ls="--", c="grey", label="no detector")
    a.legend()
    a.set(xlabel=label, ylabel="wrap stops per day", title="Jams")
    b.plot(x, [r["savings_per_day"] for r in rows], marker="o", c="tab:green")
    b.axhline(0, c="grey", lw=0.8)
    b.set(xlabel=label, ylabel="$ saved per day", title="Savings vs. no detector")
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)
