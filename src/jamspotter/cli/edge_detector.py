"""`jamspotter edge train-detector | distill | detect`: the SSDlite box detector for the edge, and VLM distillation."""

from __future__ import annotations

from pathlib import Path

import typer

from jamspotter.cli.app import edge_app

EPOCHS = typer.Option(30, "--epochs", min=1)
BATCH = typer.Option(8, "--batch-size", min=1)
LR = typer.Option(2e-3, "--lr")
SIZE = typer.Option(320, "--image-size", min=64, help="Square network input (SSDlite320: 320).")
THRESHOLD = typer.Option(0.3, "--score-threshold", min=0.0, max=1.0, help="Operating point for boxes and P/R/F1.")
EXPORT = typer.Option(True, "--export/--no-export", help="Write detector.onnx (TorchScript if ONNX export fails).")
THREADS = typer.Option(None, "--threads", min=1, help="CPU threads for torch (1 is fastest on a busy shared CPU).")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace an earlier output in --out.")


def _threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _config(epochs: int, batch_size: int, lr: float, image_size: int, score_threshold: float, seed: int):  # noqa: ANN202
    import math

    from jamspotter.edge.detector import DetectorTrainConfig
    from jamspotter.errors import JamspotterError

    if not (math.isfinite(lr) and lr > 0):
        raise JamspotterError(f"--lr must be a finite number > 0, got {lr}")
    if not 0.0 <= score_threshold <= 1.0:  # also refuses NaN
        raise JamspotterError(f"--score-threshold must be in [0, 1], got {score_threshold}")
    return DetectorTrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size,
                               score_threshold=score_threshold, seed=seed)


def _echo_training(report: dict, out: Path) -> None:
    m = report.get("metrics")
    if m:
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        typer.echo(f"held-out ({report['n_val']} images): P {fmt(m['precision'])}  R {fmt(m['recall'])}  "
                   f"F1 {fmt(m['f1'])}  jam recall {fmt(m['jam_recall'])}  mAP50 {fmt(m['map50_all_scores'])}")
    exp = report.get("export", {})
    if "onnx" in exp:
        typer.echo(f"onnx: {out / exp['onnx']} (max |ORT - PyTorch| = {exp['max_abs_diff']:.1e})")
    elif exp:
        typer.echo(f"onnx export failed ({exp['onnx_error']}); wrote {out / exp['torchscript']}")
    typer.echo(f"{report['n_train']} train images, {len(report['classes'])} classes, {report['train_seconds']} s; "
               f"wrote {out}")


@edge_app.command("train-detector")
def train_detector_cmd(
    data: Path = typer.Option(..., "--data", help="Dataset folder with samples.jsonl (boxes), e.g. `data synth`."),
    out: Path = typer.Option(..., "--out", help="Output folder: detector.safetensors/.json/.onnx, metrics.json."),
    epochs: int = EPOCHS, batch_size: int = BATCH, lr: float = LR, image_size: int = SIZE,
    score_threshold: float = THRESHOLD, export: bool = EXPORT, seed: int = typer.Option(0, "--seed"),
    threads: int = THREADS, overwrite: bool = OVERWRITE,
) -> None:
    """Train the SSDlite320-MobileNetV3 box detector; selects on the val split (or a 20% hold-out of whole
    images), never on test."""
    from jamspotter.data.io import read_samples, samples_path
    from jamspotter.edge.detector import train_detector
    from jamspotter.outputs import output_dir

    _threads(threads)
    path = samples_path(data)
    with output_dir(out, "edge train-detector", overwrite=overwrite, inputs=[data]) as stage:
        report = train_detector(read_samples(path), path.parent, stage,
                                _config(epochs, batch_size, lr, image_size, score_threshold, seed), export=export)
    _echo_training(report, out)


@edge_app.command("distill")
def distill_cmd(
    teacher: str = typer.Option(..., "--teacher", help="Qwen-VL hub id or folder (the VLM that labels frames)."),
    frames: Path = typer.Option(..., "--frames", help="Folder of unlabelled frames."),
    out: Path = typer.Option(..., "--out", help="Output folder: pseudo_labels/, the detector, distill.json."),
    epochs: int = EPOCHS, batch_size: int = BATCH, lr: float = LR, image_size: int = SIZE,
    score_threshold: float = THRESHOLD, export: bool = EXPORT, seed: int = typer.Option(0, "--seed"),
    family: str = typer.Option("auto", "--family"),
    task: str = typer.Option("auto", "--task", help="auto | detect_jam | detect_all (what the teacher is asked)"),
    teacher_batch_size: int = typer.Option(4, "--teacher-batch-size", min=1),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", min=1),
    threads: int = THREADS, overwrite: bool = OVERWRITE,
) -> None:
    """Label frames with the VLM teacher, then train the edge detector on its boxes."""
    from jamspotter.edge.distill import distill
    from jamspotter.infer import Detector
    from jamspotter.outputs import check_output_dir, output_dir

    _threads(threads)
    inputs = [frames, teacher if Path(teacher).exists() else None]
    check_output_dir(out, overwrite=overwrite, inputs=inputs)  # before the teacher loads
    det = Detector(teacher, family=family, task=task, max_new_tokens=max_new_tokens)
    with output_dir(out, "edge distill", overwrite=overwrite, inputs=inputs) as stage:
        summary = distill(det, frames, stage, epochs=epochs, batch_size=teacher_batch_size, export=export,
                          config=_config(epochs, batch_size, lr, image_size, score_threshold, seed))
    typer.echo(f"teacher {summary['family']}: {summary['pseudo_boxes']} boxes on {summary['frames_with_boxes']} of "
               f"{summary['frames']} frames ({summary['answers_with_parse_problems']} answers with parse problems)")
    if "warning" in summary:
        typer.echo(f"warning: {summary['warning']}")
    _echo_training(summary["training"], out)


@edge_app.command("detect")
def detect_cmd(
    model: Path = typer.Argument(..., help="Detector folder (detector.onnx or detector.safetensors) or a .onnx file."),
    inputs: list[Path] = typer.Argument(..., help="Images, folders of images, or datasets (samples.jsonl)."),
    out: Path = typer.Option(..., "--out", help="Predictions JSONL (boxes with scores) for `eval detection --pred`."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    threads: int = THREADS,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
) -> None:
    """Boxes with scores from the edge detector (ONNX Runtime when an .onnx is there)."""
    from jamspotter.edge.detector import load_box_detector
    from jamspotter.errors import DataError
    from jamspotter.infer.inputs import collect_inputs, write_predictions
    from jamspotter.outputs import check_output_file

    _threads(threads)
    check_output_file(out, overwrite=overwrite, inputs=[model, *inputs])
    samples = collect_inputs(inputs)
    clips = [s.id for s in samples if s.image is None]
    if clips:
        raise DataError(f"the edge detector runs on images; {clips[0]} is a clip")
    det = load_box_detector(model)
    boxes = det.predict([s.image for s in samples], batch_size)
    preds = [s.model_copy(update={"objects": b, "qa": [], "label": None, "target": None})
             for s, b in zip(samples, boxes, strict=True)]
    write_predictions(out, preds)
    typer.echo(f"{len(preds)} images, {sum(len(b) for b in boxes)} boxes; wrote {out}")
