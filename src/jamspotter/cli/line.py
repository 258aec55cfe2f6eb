"""`jamspotter line ...`: the digital twin (`simulate`) and the belt stream runner (`run`)."""

from __future__ import annotations

from pathlib import Path

import typer

from jamspotter.cli.app import line_app
from jamspotter.errors import JamspotterError


@line_app.command("simulate")
def simulate_cmd(
    config: Path = typer.Option(None, "--config", help="Line YAML (default: the packaged configs/line.yaml)."),
    detector_metrics: Path = typer.Option(None, "--detector-metrics",
                                          help="metrics.json from `jamspotter eval` (jam_recall/jam_precision)."),
    latency: float = typer.Option(None, "--latency", help="Detector decision latency in seconds (overrides)."),
    hours: float = typer.Option(16.0, "--hours", min=0.01, help="Scheduled hours to simulate."),
    seed: int = typer.Option(0, "--seed"),
    replications: int = typer.Option(1, "--replications", min=1, help="Runs (seeds seed..seed+R-1) to average."),
    sweep_recall: bool = typer.Option(False, "--sweep-recall", help="Also sweep recall 0..1 (JSON + PNG)."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
) -> None:
    """Throughput, jams, downtime, tons recovered and cost with vs. without the detector."""
    from rich.console import Console
    from rich.table import Table

    from jamspotter.data.io import write_json
    from jamspotter.line.config import DetectorSpec, detector_from_metrics, load_line_config
    from jamspotter.line.twin import compare, plot_sweep
    from jamspotter.line.twin import sweep_recall as run_sweep

    cfg = load_line_config(config)
    if detector_metrics is not None:
        det = detector_from_metrics(detector_metrics, latency if latency is not None else 0.2)
    elif cfg.detector is not None:
        det = cfg.detector
    else:
        raise JamspotterError("no detector: give --detector-metrics or a `detector:` entry in the line config")
    if latency is not None:
        det = DetectorSpec(recall=det.recall, precision=det.precision, latency_s=latency)

    report = compare(cfg, det, hours, seed, replications)
    report = {"hours": hours, "seed": seed, "replications": replications, "detector": det.model_dump(),
              "config": cfg.model_dump(), **report}
    write_json(out / "simulation.json", report)

    table = Table(title=f"line over {hours:g} h ({replications} run(s), detector recall {det.recall:.2f}, "
                        f"precision {det.precision:.2f})")
    for col in ("metric", "without detector", "with detector", "difference"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    for key in ("throughput_tph", "jams", "jams_per_day", "downtime_h", "downtime_share", "tons_processed",
                "tons_recovered", "tanglers_picked", "false_picks", "cost_total", "cost_per_day"):
        a, b, d = (report[k][key] for k in ("without_detector", "with_detector", "difference"))
        table.add_row(key, f"{a:,.2f}", f"{b:,.2f}", f"{d:+,.2f}")
    console = Console()
    console.print(table)

    if sweep_recall:
        recalls = [i / 10 for i in range(11)]
        rows = run_sweep(cfg, det, hours, recalls, seed, max(replications, 5))
        write_json(out / "recall_sweep.json", {"hours": hours, "seed": seed, "detector": det.model_dump(),
                                              "baseline": report["without_detector"], "rows": rows})
        plot_sweep(rows, str(out / "recall_sweep.png"), report["without_detector"]["jams_per_day"])
        console.print(f"recall sweep: {out / 'recall_sweep.json'}, {out / 'recall_sweep.png'}")
    console.print(f"wrote {out / 'simulation.json'}")
