"""The one place benchmarks write `benchmarks/results/<name>.json`, and print their ratio tables.

Every result file carries the machine it was measured on (CPU model and count, load average at the start
and at the end of the run, python, platform, the versions of torch / transformers / trl and friends), the
date, the git commit (and whether the tree had uncommitted changes), the exact command line, the settings,
the raw figures and the ratios. A ratio is always ours against a reference measured in the same run, and
always reads "x times faster than the reference" (> 1: ours is faster), whatever the unit.

Benchmarks import this as `from _results import ...` (Python puts a script's folder on sys.path).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jamspotter.data.io import atomic_write

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "transformers", "trl", "numpy", "pillow", "onnxruntime", "pycocotools", "faster-coco-eval",
            "opencv-python-headless", "jamspotter")
_START_LOAD = os.getloadavg()  # when the benchmark script imported this module, i.e. about when it started


@dataclass(frozen=True)
class Ratio:
    """Ours against a reference measured in the same run, in one unit.

    `higher_is_better`: True for rates (images/s), False for times (ms, s). `speedup` is > 1 when ours is faster.
    """

    name: str
    ours: float
    reference: float
    unit: str
    reference_name: str
    higher_is_better: bool = True

    @property
    def speedup(self) -> float:
        """How many times faster ours is than the reference (a rate ratio or the inverse time ratio)."""
        if self.higher_is_better:
            return self.ours / self.reference
        return self.reference / self.ours


def add_results_arg(parser: argparse.ArgumentParser) -> None:
    """Add `--results-dir` (default benchmarks/results) to a benchmark's argument parser."""
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                        help="folder the <name>.json result goes to (default: benchmarks/results)")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git() -> dict[str, Any]:
    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    status = run("status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks")
    return {"commit": run("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU, load, python, platform, package versions, git state."""
    gpu = None
    if "torch" in sys.modules:  # only report a GPU when the benchmark already imported torch
        import torch

        if torch.cuda.is_available():
            gpu = {"name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
                   "cuda": torch.version.cuda}
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "gpu": gpu,
        "load_average_start": [round(v, 2) for v in _START_LOAD],
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": _versions(),
        "git": _git(),
    }


def ratio_table(ratios: Sequence[Ratio]) -> str:
    """A plain-text table: one row per ratio, ours and the reference in their unit, and the speed-up."""
    head = f"{'measure':<48} {'ours':>12} {'reference':>12}  {'unit':<10} {'ours vs reference':>18}"
    lines = [head, "-" * len(head)]
    for r in ratios:
        lines.append(f"{r.name:<48} {r.ours:>12.4g} {r.reference:>12.4g}  {r.unit:<10} "
                     f"{r.speedup:>16.2f}x   (reference: {r.reference_name})")
    return "\n".join(lines)


def write_results(name: str, *, script: str, argv: Sequence[str] | None, settings: dict[str, Any],
                  results: dict[str, Any], ratios: Sequence[Ratio], results_dir: Path | None = None,
                  checks: dict[str, Any] | None = None) -> Path:
    """Write `<results_dir>/<name>.json` atomically (machine, date, command, settings, results, ratios, checks).

    The command is the one that reproduces the figures: `script` (the benchmark's `__file__`) with `argv`
    (the arguments its `main` parsed; None: this process's own command-line arguments).

    Every ratio must be a positive finite number: a zero or NaN ratio means a broken measurement, and
    is refused (ValueError) rather than written. Returns the path written.
    """
    import math

    for r in ratios:
        if not (math.isfinite(r.speedup) and r.speedup > 0):
            raise ValueError(f"{name}: ratio {r.name!r} is {r.speedup!r}; a measurement is broken")
    folder = Path(results_dir) if results_dir is not None else RESULTS_DIR
    data = {
        "benchmark": name,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join([".venv/bin/python", f"benchmarks/{Path(script).name}",
                               *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in settings.items()},
        "results": results,
        "ratios": [asdict(r) | {"speedup": round(r.speedup, 4)} for r in ratios],
        "checks": checks or {},
    }
    path = folder / f"{name}.json"
    with atomic_write(path) as fh:
        fh.write(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")
    return path
