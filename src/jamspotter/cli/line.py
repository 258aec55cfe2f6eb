"""`jamspotter line ...`: the digital twin (`simulate`) and the belt stream runner (`run`)."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from jamspotter.cli.app import line_app
from jamspotter.errors import JamspotterError


def _finite(name: str, value: float | None, low: float, high: float) -> None:
    """One-line error unless `value` (when given) is a finite number in [low, high]."""
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        raise JamspotterError(f"{name} must be a finite number in [{low:g}, {high:g}], got {value}")


def parse_sweeps(specs: list[str], sweep_recall: bool) -> list[tuple[str, list[float]]]:
    """`NAME=v1,v2,...` specs (and the recall sweep) as (name, values); malformed specs are one-line errors."""
    sweeps = [("recall", [i / 10 for i in range(11)])] if sweep_recall else []
    for spec in specs:
        name, _, values = spec.partition("=")
        try:
            parsed = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise JamspotterError(f"--sweep {spec!r}: want NAME=v1,v2,... with numbers") from None
        if not name.strip() or not parsed:
            raise JamspotterError(f"--sweep {spec!r}: want NAME=v1,v2,... with at least one value")
        sweeps.append((name.strip(), parsed))
    return sweeps


@line_app.command("simulate")
def simulate_cmd(
    config: Path = typer.Option(None, "--config", help="Line YAML with the values to change (merged over the "
                                "packaged configs/line.yaml)."),
    detector_metrics: Path = typer.Option(None, "--detector-metrics",
                                          help="metrics.json from `jamspotter eval` (jam_recall/jam_precision: "
                                               "jam-causing boxes found whatever jam class they are called)."),
    latency: float = typer.Option(None, "--latency", help="Detector decision latency in seconds (overrides)."),
    hours: float = typer.Option(16.0, "--hours", help="Scheduled hours to simulate."),
    seed: int = typer.Option(0, "--seed", help="First random seed (>= 0)."),
    replications: int = typer.Option(1, "--replications", help="Runs (seeds seed..seed+R-1) to average."),
    sweep_recall: bool = typer.Option(False, "--sweep-recall", help="Also sweep recall 0..1 (JSON + PNG)."),
    sweep_params: list[str] = typer.Option(None, "--sweep", help="NAME=v1,v2,... : sweep a line or detector field "
                                           "(e.g. wraps_to_jam=5,10,20, tangler_scale=0.5,1,2); repeatable."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier simulation in --out."),
) -> None:
    """Throughput, jams, downtime, tons recovered and cost with vs. without the detector."""
    from rich.console import Console
    from rich.table import Table

    from jamspotter.data.io import write_json
    from jamspotter.line.config import DetectorSpec, detector_from_metrics, load_line_config
    from jamspotter.line.twin import MAX_HOURS, check_run, compare, plot_sweep, sweep, sweep_settings
    from jamspotter.outputs import check_output_dir, output_dir

    # Every argument is checked before the first run, so a mistake never costs a simulation or a half report.
    _finite("--hours", hours, 0.01, MAX_HOURS)
    _finite("--latency", latency, 0.0, 3600.0)
    if seed < 0:
        raise JamspotterError(f"--seed must be >= 0, got {seed}")
    if not 1 <= replications <= 1000:
        raise JamspotterError(f"--replications must lie in 1..1000, got {replications}")
    sweeps = parse_sweeps(sweep_params or [], sweep_recall)
    inputs = [config, detector_metrics]
    check_output_dir(out, overwrite=overwrite, inputs=inputs)
    cfg = load_line_config(config)
    if detector_metrics is not None:
        det = detector_from_metrics(detector_metrics, latency if latency is not None else 0.2)
    elif cfg.detector is not None:
        det = cfg.detector
    else:
        raise JamspotterError("no detector: give --detector-metrics or a `detector:` entry in the line config")
    if latency is not None:
        det = DetectorSpec(recall=det.recall, precision=det.precision, latency_s=latency)
    check_run(cfg, det, hours, seed + replications - 1)
    sweep_reps = max(replications, 5)
    for name, values in sweeps:
        sweep_settings(cfg, det, name, values, hours, seed + sweep_reps - 1)

    console = Console()
    with output_dir(out, "line simulate", overwrite=overwrite, inputs=inputs) as stage:
        report = compare(cfg, det, hours, seed, replications)
        report = {"hours": hours, "seed": seed, "replications": replications, "detector": det.model_dump(),
                  "config": cfg.model_dump(), **report}
        write_json(stage / "simulation.json", report)

        table = Table(title=f"line over {hours:g} h ({replications} run(s), detector recall {det.recall:.2f}, "
                            f"precision {det.precision:.2f})")
        for col in ("metric", "without detector", "with detector", "difference"):
            table.add_column(col, justify="right" if col != "metric" else "left")
        for key in ("throughput_tph", "jams", "jams_per_day", "downtime_h", "downtime_share", "tons_processed",
                    "tons_recovered", "tanglers_picked", "false_picks", "cost_total", "cost_per_day"):
            a, b, d = (report[k][key] for k in ("without_detector", "with_detector", "difference"))
            table.add_row(key, f"{a:,.2f}", f"{b:,.2f}", f"{d:+,.2f}")
        console.print(table)

        for name, values in sweeps:
            rows = sweep(cfg, det, name, values, hours, seed, sweep_reps)
            stem = f"{name}_sweep"
            write_json(stage / f"{stem}.json", {"param": name, "hours": hours, "seed": seed,
                                                "replications": sweep_reps, "detector": det.model_dump(),
                                                "rows": rows})
            plot_sweep(rows, str(stage / f"{stem}.png"), name)
            console.print(f"{name} sweep: {out / (stem + '.json')}, {out / (stem + '.png')}")
    console.print(f"wrote {out / 'simulation.json'}")


@line_app.command("run")
def run_cmd(
    source: str = typer.Option(..., "--source", help="folder | clip | synth | webcam (runs until Ctrl-C)"),
    model: Path = typer.Option(..., "--model", help="Edge classifier (model.onnx or checkpoint folder), edge box "
                               "detector (folder with detector.json, or detector.onnx), or a Qwen-VL hub id / folder "
                               "(slow: a VLM call per frame)."),
    input_path: Path = typer.Option(None, "--input", help="Image folder (folder), video file (clip), or camera "
                                    "index or device (webcam: 0, /dev/video0)."),
    frames: int = typer.Option(50, "--frames", min=1, help="Number of synthetic frames (synth)."),
    interval: float = typer.Option(0.5, "--interval", help="Seconds of belt time between frames (>= 0)."),
    threshold: float = typer.Option(0.5, "--threshold", help="Alert confidence for jam risk (0..1)."),
    review_below: float = typer.Option(0.6, "--review-below",
                                       help="Frames with top confidence below this (0..1) go to the review queue."),
    review_dir: Path = typer.Option(None, "--review-dir", help="Active-learning queue (images + samples.jsonl); "
                                    "a new folder, or an earlier queue with --overwrite."),
    cooldown: float = typer.Option(0.0, "--cooldown",
                                  help="Jam-risk frames closer than this (s) to the previous one raise no new alert."),
    seed: int = typer.Option(0, "--seed", min=0, help="First synthetic scene seed."),
    out: Path = typer.Option(..., "--out", help="Output folder (frames.jsonl, frames.csv, alerts.log, summary.json)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier run's --out and --review-dir."),
) -> None:
    """Run a model over belt frames in order: logs, jam-risk alerts, review queue.

    Every frame is logged as it is done; Ctrl-C or SIGTERM stops after the current frame and writes the
    summary (exit 130 / 143); an unreadable frame is logged as an error and skipped.
    """
    import signal
    import sys

    from jamspotter.line.stream import (
        SOURCES,
        StreamConfig,
        clip_frames,
        folder_frames,
        run_stream,
        stop_on_signals,
        synth_frames,
        webcam_frames,
    )
    from jamspotter.outputs import check_not_input, check_output_dir, prepare_dir, record_files

    if source not in SOURCES:
        raise JamspotterError(f"--source must be one of {', '.join(SOURCES)}, got {source!r}")
    if source in ("folder", "clip", "webcam") and input_path is None:
        raise JamspotterError(f"--source {source} needs --input")
    if source == "folder" and not input_path.is_dir():
        raise JamspotterError(f"{input_path}: not a folder")
    if source == "clip" and not input_path.is_file():
        raise JamspotterError(f"{input_path}: no such clip")
    _finite("--interval", interval, 0.0, 86400.0)
    _finite("--threshold", threshold, 0.0, 1.0)
    _finite("--review-below", review_below, 0.0, 1.0)
    _finite("--cooldown", cooldown, 0.0, 86400.0)
    inputs = [input_path if source != "webcam" else None, model if model.exists() else None]
    check_output_dir(out, overwrite=overwrite, inputs=inputs)
    if review_dir is not None:
        check_output_dir(review_dir, overwrite=overwrite, inputs=inputs, option="--overwrite")
        check_not_input(review_dir, [out])  # two different folders, neither inside the other
    is_box_detector = (model / "detector.json").is_file() or model.name.startswith("detector.")
    # an edge checkpoint folder holds model.json (a Qwen-VL folder also holds a model.safetensors, never model.json)
    is_classifier = model.suffix in (".onnx", ".safetensors") or (model / "model.json").is_file()
    if is_box_detector:  # the edge SSDlite detector (`jamspotter edge train-detector`)
        from jamspotter.line.adapters import load_box_frame_model

        clf = load_box_frame_model(str(model))
    elif is_classifier:
        from jamspotter.edge.predict import EdgeClassifier

        clf = EdgeClassifier(model)
    else:  # a Qwen-VL hub id or folder, through jamspotter.infer.Detector
        from jamspotter.line.adapters import load_vlm_frame_model

        clf = load_vlm_frame_model(str(model))
    stream = (folder_frames(input_path, interval) if source == "folder"
              else clip_frames(input_path, interval) if source == "clip"
              else webcam_frames(str(input_path), interval) if source == "webcam"
              else synth_frames(frames, interval, seed))
    cfg = StreamConfig(threshold=threshold, review_below=review_below, cooldown_s=cooldown)
    prepare_dir(out, "line run", overwrite=overwrite, inputs=inputs)
    if review_dir is not None:
        prepare_dir(review_dir, "line run review queue", overwrite=overwrite, inputs=inputs)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        with stop_on_signals() as stop:
            report = run_stream(stream, clf, out, cfg, review_dir, on_alert=say,
                                on_error=lambda line: say(f"warning: {line}"), stop=stop)
    except KeyboardInterrupt:
        say(f"interrupted; every frame done so far is logged in {out} (summary.json)")
        raise typer.Exit(128 + signal.SIGINT) from None
    finally:  # what the run wrote is its own; files added later are never removed by --overwrite
        for folder in (out, review_dir):
            if folder is not None:
                record_files(folder)
    errors = f", {report['errors']} unreadable frame(s) skipped" if report["errors"] else ""
    typer.echo(f"{report['frames']} frames, {report['alerts']} jam-risk alerts, {report['review']} for review"
               f"{errors}, {report['latency_ms_mean']:.1f} ms/frame; wrote {out}")
    if report["stopped_by"]:
        say(f"stopped by {report['stopped_by']} after frame {report['frames'] + report['errors'] - 1}; "
            f"summary in {out / 'summary.json'}")
        raise typer.Exit(128 + int(signal.Signals[report["stopped_by"]]))
    if report["frames"] == 0:
        raise JamspotterError(f"no frame could be read ({report['errors']} errors, listed in {out / 'frames.jsonl'})")
