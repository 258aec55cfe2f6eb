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
    sweep_params: list[str] = typer.Option(None, "--sweep", help="NAME=v1,v2,... : sweep a line or detector field "
                                           "(e.g. wraps_to_jam=5,10,20, tangler_scale=0.5,1,2); repeatable."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
) -> None:
    """Throughput, jams, downtime, tons recovered and cost with vs. without the detector."""
    from rich.console import Console
    from rich.table import Table

    from jamspotter.data.io import write_json
    from jamspotter.line.config import DetectorSpec, detector_from_metrics, load_line_config
    from jamspotter.line.twin import compare, plot_sweep, sweep

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

    sweeps = [("recall", [i / 10 for i in range(11)])] if sweep_recall else []
    for spec in sweep_params or []:
        name, _, values = spec.partition("=")
        try:
            sweeps.append((name.strip(), [float(v) for v in values.split(",") if v.strip()]))
        except ValueError:
            raise JamspotterError(f"--sweep {spec!r}: want NAME=v1,v2,... with numbers") from None
        if not sweeps[-1][1]:
            raise JamspotterError(f"--sweep {spec!r}: no values")
    for name, values in sweeps:
        rows = sweep(cfg, det, name, values, hours, seed, max(replications, 5))
        stem = f"{name}_sweep"
        write_json(out / f"{stem}.json", {"param": name, "hours": hours, "seed": seed,
                                          "replications": max(replications, 5), "detector": det.model_dump(),
                                          "rows": rows})
        plot_sweep(rows, str(out / f"{stem}.png"), name)
        console.print(f"{name} sweep: {out / (stem + '.json')}, {out / (stem + '.png')}")
    console.print(f"wrote {out / 'simulation.json'}")


@line_app.command("run")
def run_cmd(
    source: str = typer.Option(..., "--source", help="folder | clip | synth"),
    model: Path = typer.Option(..., "--model", help="Edge classifier (model.onnx or checkpoint folder), edge box "
                               "detector (folder with detector.json, or detector.onnx), or a Qwen-VL hub id / folder "
                               "(slow: a VLM call per frame)."),
    input_path: Path = typer.Option(None, "--input", help="Image folder (folder) or video file (clip)."),
    frames: int = typer.Option(50, "--frames", min=1, help="Number of synthetic frames (synth)."),
    interval: float = typer.Option(0.5, "--interval", min=0.0, help="Seconds of belt time between frames."),
    threshold: float = typer.Option(0.5, "--threshold", min=0.0, max=1.0, help="Alert confidence for jam risk."),
    review_below: float = typer.Option(0.6, "--review-below", min=0.0, max=1.0,
                                       help="Frames with top confidence below this go to the review queue."),
    review_dir: Path = typer.Option(None, "--review-dir", help="Active-learning queue (images + samples.jsonl)."),
    cooldown: float = typer.Option(0.0, "--cooldown", min=0.0,
                                  help="Jam-risk frames closer than this to the previous one raise no new alert."),
    seed: int = typer.Option(0, "--seed", help="First synthetic scene seed."),
    out: Path = typer.Option(..., "--out", help="Output folder (frames.csv, frames.jsonl, alerts.log, summary.json)."),
) -> None:
    """Run a model over belt frames in order: logs, jam-risk alerts, review queue."""
    import sys

    from jamspotter.line.stream import SOURCES, StreamConfig, clip_frames, folder_frames, run_stream, synth_frames

    if source not in SOURCES:
        raise JamspotterError(f"--source must be one of {', '.join(SOURCES)}, got {source!r}")
    if source in ("folder", "clip") and input_path is None:
        raise JamspotterError(f"--source {source} needs --input")
    if source == "folder" and not input_path.is_dir():
        raise JamspotterError(f"{input_path}: not a folder")
    if source == "clip" and not input_path.is_file():
        raise JamspotterError(f"{input_path}: no such clip")
    is_box_detector = (model / "detector.json").is_file() or model.name.startswith("detector.")
    is_classifier = model.suffix in (".onnx", ".safetensors") or (model / "model.safetensors").is_file()
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
              else synth_frames(frames, interval, seed))
    cfg = StreamConfig(threshold=threshold, review_below=review_below, cooldown_s=cooldown)
    report = run_stream(stream, clf, out, cfg, review_dir, on_alert=lambda line: print(line, file=sys.stderr))
    typer.echo(f"{report['frames']} frames, {report['alerts']} jam-risk alerts, {report['review']} for review, "
               f"{report['latency_ms_mean']:.1f} ms/frame; wrote {out}")
