"""`jamspotter edge ...`: train the edge CNN, export it to ONNX/TorchScript, predict with it."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from jamspotter.cli.app import edge_app
from jamspotter.errors import JamspotterError


@edge_app.command("train")
def train_cmd(
    data: Path = typer.Option(..., "--data", help="TrashNet-style folder (split.csv), ImageFolder, or samples.jsonl."),
    out: Path = typer.Option(..., "--out", help="Output folder (checkpoint, metrics.json, plots)."),
    epochs: int = typer.Option(15, "--epochs", min=1),
    arch: str = typer.Option("efficientnet-lite0", "--arch",
                             help="efficientnet-lite0 | resnet18 | mobilenet_v3_small | mobilenet_v3_large"),
    image_size: int = typer.Option(224, "--image-size", min=32),
    batch_size: int = typer.Option(32, "--batch-size", min=2),
    lr: float = typer.Option(1e-3, "--lr"),
    train_blocks: int = typer.Option(None, "--train-blocks",
                                     help="Trailing blocks to fine-tune (default per arch: 2 for Lite0)."),
    cache_views: int = typer.Option(3, "--cache-views", min=0,
                                    help="Augmented views per train image with cached stem features; 0 = live."),
    patience: int = typer.Option(None, "--patience", min=1,
                                 help="Stop after this many epochs without a better val accuracy (default: never)."),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine (per step, to 0 at --epochs) | plateau"),
    tta_flips: bool = typer.Option(True, "--tta-flips/--no-tta-flips",
                                   help="Score val/test as the mean over the image and its h, v and hv flips "
                                   "(edge predict, line run and the ONNX export take one pass; metrics.json "
                                   "gives both)."),
    stem_backend: str = typer.Option("onnxruntime", "--stem-backend", help="onnxruntime | torch"),
    pretrained: bool = typer.Option(True, "--pretrained/--random-init"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(None, "--threads", min=1,
                                help="PyTorch and ONNX Runtime threads (1 is fastest on a busy shared CPU)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier output in --out."),
) -> None:
    """Transfer-learn the edge classifier; writes model.safetensors + model.json, metrics and plots."""
    import torch

    from jamspotter.edge.train import EdgeTrainConfig, train_classifier
    from jamspotter.outputs import output_dir

    if not (math.isfinite(lr) and lr > 0):
        raise JamspotterError(f"--lr must be a finite number > 0, got {lr}")
    if threads:
        torch.set_num_threads(threads)

    cfg = EdgeTrainConfig(arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size,
                          train_blocks=train_blocks, cache_views=cache_views, patience=patience, seed=seed,
                          pretrained=pretrained, stem_backend=stem_backend, schedule=schedule, tta_flips=tta_flips)
    with output_dir(out, "edge train", overwrite=overwrite, inputs=[data]) as stage:
        report = train_classifier(data, stage, cfg)
    for split in ("val", "test"):
        m = report[split]
        if m:
            typer.echo(f"{split}: accuracy {m['accuracy']:.4f}  weighted P/R/F1 {m['precision']:.4f}/"
                       f"{m['recall']:.4f}/{m['f1']:.4f}  (n={m['n']})")
    if report["config"]["tta_flips"]:
        one = report["one_view_accuracy"]
        typer.echo("(accuracies above average 4 flips per image; one view: val "
                   f"{one['val']:.4f}" + (f", test {one['test']:.4f})" if one["test"] is not None else ")"))
    typer.echo(f"best epoch {report['best_epoch']}, {report['seconds']['total']:.0f} s; wrote {out}")


@edge_app.command("export")
def export_cmd(
    checkpoint: Path = typer.Argument(..., help="Checkpoint folder (model.safetensors + model.json)."),
    out: Path = typer.Option(None, "--out", help="Output folder (default: the checkpoint folder)."),
    opset: int = typer.Option(17, "--opset", min=17),
    int8: bool = typer.Option(False, "--int8", help="Also write model.int8.onnx (dynamic INT8 quantisation)."),
    torchscript: bool = typer.Option(False, "--torchscript", help="Also write model.ts (TorchScript)."),
    calibration: Path = typer.Option(None, "--int8-static", help="Folder of calibration images: also write "
                                     "model.int8-static.onnx (static QDQ INT8)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace earlier export files (or --out folder)."),
) -> None:
    """ONNX export (dynamic batch, checked, compared with PyTorch within 1e-4); TorchScript fallback.

    Beside the checkpoint (the default) the export files are added to its folder, and earlier ones are
    replaced only with --overwrite; another --out folder is written whole (the output policy).
    """
    from jamspotter.edge.export import export_checkpoint
    from jamspotter.errors import DataError
    from jamspotter.outputs import check_output_file, output_dir

    if not checkpoint.exists():
        raise DataError(f"{checkpoint}: no such checkpoint")
    ckpt_dir = checkpoint if checkpoint.is_dir() else checkpoint.parent
    kwargs = {"opset": opset, "int8": int8, "torchscript": torchscript, "calibration": calibration}
    if out is None or out.resolve() == ckpt_dir.resolve():
        target = ckpt_dir
        names = ["model.onnx", "export.json"] + (["model.int8.onnx"] if int8 else []) + (
            ["model.int8-static.onnx"] if calibration is not None else []) + (["model.ts"] if torchscript else [])
        for name in names:
            check_output_file(ckpt_dir / name, overwrite=overwrite)
        report = export_checkpoint(checkpoint, ckpt_dir, **kwargs)
    else:
        target = out
        with output_dir(out, "edge export", overwrite=overwrite, inputs=[checkpoint, calibration]) as stage:
            report = export_checkpoint(checkpoint, stage, **kwargs)
    if "onnx" in report:
        typer.echo(f"onnx: {target / report['onnx']} (opset {opset}, max |ORT - PyTorch| = "
                   f"{report['max_abs_diff']:.2e})")
    else:
        typer.echo(f"onnx export failed ({report['onnx_error']}); wrote TorchScript instead")
    if "int8" in report:
        typer.echo(f"int8: {target / report['int8']} (top-1 agreement with fp32 {report['int8_top1_agreement']:.2f})")
    if "int8_static" in report:
        typer.echo(f"int8 static: {target / report['int8_static']} (top-1 agreement with fp32 on "
                   f"{report['int8_static_calibration_images']} calibration images "
                   f"{report['int8_static_top1_agreement_on_calibration']:.2f})")
    if "torchscript" in report:
        typer.echo(f"torchscript: {target / report['torchscript']}")


@edge_app.command("predict")
def predict_cmd(
    model: Path = typer.Argument(..., help="model.onnx, or a checkpoint folder / model.safetensors."),
    images: list[Path] = typer.Argument(..., help="Image files."),
    top_k: int = typer.Option(3, "--top-k", min=1),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per image instead of text."),
) -> None:
    """Top-k classes with confidence for each image."""
    import json

    from jamspotter.edge.predict import EdgeClassifier

    clf = EdgeClassifier(model, top_k=top_k)
    for path, pred in zip(images, clf.predict(images), strict=True):
        if json_out:
            typer.echo(json.dumps({"image": str(path), "top": [{"label": c, "confidence": round(p, 6)}
                                                               for c, p in pred.top]}))
        else:
            typer.echo(f"{path}: " + ", ".join(f"{c} {p:.3f}" for c, p in pred.top))
