"""`jamspotter eval detection|classification|trajectory`: score predictions against ground truth, write a report."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from jamspotter.cli.app import eval_app


class MapBackend(str, Enum):
    """`--map-backend` choices: the names of `jamspotter.evaluate.coco.MAP_BACKENDS` (not imported: numpy)."""

    auto = "auto"
    faster = "faster"
    pycocotools = "pycocotools"


PRED = typer.Option(..., "--pred", help="Predictions JSONL (one line per image/clip id).")
GT = typer.Option(..., "--gt", help="Ground-truth dataset folder (with samples.jsonl) or a samples JSONL file.")
OUT = typer.Option(..., "--out", help="Report folder: metrics.json, summary.md, plots (and gallery.html).")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace an earlier report in --out.")
SPLIT = typer.Option(None, "--split", help="Score only this split of the ground truth (train | val | test).")


def _load_gt(gt: Path, split: str | None = None):  # noqa: ANN202 - (samples, root, ids of the other splits)
    from jamspotter.data.io import read_samples, samples_path
    from jamspotter.data.splits import select_split
    from jamspotter.errors import DataError

    path = samples_path(gt)
    everything = read_samples(path)
    samples = select_split(everything, split)
    if split is not None and not samples:
        raise DataError(f"{path}: no samples in split {split!r}")
    return samples, path.parent, {s.id for s in everything} - {s.id for s in samples}


def _this_split(preds: list, other_ids: set[str]) -> list:
    """Predictions minus those for images of the other splits (ids unknown to the dataset stay: they are warned)."""
    return [p for p in preds if p.id not in other_ids]


def _report_dir(out: Path, task: str, overwrite: bool, pred: Path, gt: Path):  # noqa: ANN202 - context manager
    """The output policy for a report folder: written whole into a staging folder, swapped in on success,
    never into (or around) the predictions or the ground truth as given."""
    from jamspotter.outputs import output_dir

    return output_dir(out, f"eval {task}", overwrite=overwrite, inputs=[pred, gt])


def _print(task: str, metrics: dict, out: Path) -> None:
    """The headline numbers as a rich table, then where the report is."""
    from rich.console import Console
    from rich.table import Table

    from jamspotter.evaluate.report import headline

    table = Table(title=f"{task} evaluation")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in headline(task, metrics):
        table.add_row(name, value)
    console = Console()
    console.print(table)
    console.print(f"report: {out / 'summary.md'}")


@eval_app.command("detection")
def detection(
    pred: Path = PRED,
    gt: Path = GT,
    out: Path = OUT,
    iou: float = typer.Option(0.5, "--iou", min=0.0, max=1.0, help="IoU threshold for P/R/F1 (0.5 always too)."),
    run: Path | None = typer.Option(
        None, "--run", help="The model folder the predictions came from: its run contract (jamspotter.json) gives "
                            "the family and pixel budget for raw text, and a jam-only model is scored on jam items."),
    split: str | None = SPLIT,
    family: str | None = typer.Option(None, "--family", help="Model family of raw text lines ({id, text})."),
    raw: bool = typer.Option(False, "--raw", help="Every line is raw model text (needs --run or --family)."),
    min_pixels: int | None = typer.Option(None, "--min-pixels", help="Processor min_pixels used at inference."),
    max_pixels: int | None = typer.Option(None, "--max-pixels", help="Processor max_pixels used at inference."),
    taxonomy: Path | None = typer.Option(None, "--taxonomy", help="YAML/JSON {label: jam_risk} overrides."),
    gallery: int = typer.Option(50, "--gallery", min=0, help="At most this many images in gallery.html."),
    coco_map: bool = typer.Option(True, "--map/--no-map", help="COCO mAP@[.5:.95] and mAP@.5 (COCOeval)."),
    map_backend: MapBackend = typer.Option(
        MapBackend.auto, "--map-backend",
        help="COCOeval implementation: faster (faster-coco-eval, C++), pycocotools (reference), "
             "auto = faster when installed."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Precision/recall/F1, mean IoU, jam-class recall and COCO mAP of predicted boxes."""
    from rich.console import Console

    from jamspotter.data.taxonomy import Taxonomy
    from jamspotter.errors import JamspotterError
    from jamspotter.evaluate.detection import evaluate_detection_run
    from jamspotter.evaluate.predictions import load_predictions
    from jamspotter.evaluate.report import write_detection_report

    if not 0.0 <= iou <= 1.0:  # also refuses NaN
        raise JamspotterError(f"--iou must be in [0, 1], got {iou}")
    contract = None
    if run is not None:
        from jamspotter.formats.contract import RunContract

        contract = RunContract.load(run)
        if contract is None:
            raise JamspotterError(f"{run}: no jamspotter.json (a model trained by `jamspotter train`)")
        if family is not None and family != contract.family:
            raise JamspotterError(f"--family {family} disagrees with {run}/jamspotter.json ({contract.family})")
    if raw and family is None and contract is None:
        raise JamspotterError("--raw needs --run MODEL_DIR or --family (qwen2-vl, qwen2.5-vl or qwen3-vl)")
    with _report_dir(out, "detection", overwrite, pred, gt) as stage:
        samples, root, others = _load_gt(gt, split)
        if contract is not None:  # what the model was asked for: every item, or the jam-causing ones
            samples = [contract.expected_sample(s) for s in samples]
            family = contract.family
            min_pixels = min_pixels or contract.min_pixels
            max_pixels = max_pixels or contract.max_pixels
        preds = _this_split(load_predictions(pred, "detection", samples, root, family, raw, min_pixels, max_pixels),
                            others)
        what = " and running COCOeval" if coco_map else ""
        with Console(stderr=True).status(f"matching {len(samples)} images{what} ..."):
            # one jam rule: --taxonomy, else the run's own (what its jam-only prompt and targets used)
            tax = Taxonomy.load(taxonomy) if taxonomy or contract is None else Taxonomy(contract.taxonomy)
            ev = evaluate_detection_run(samples, preds, iou, tax, coco=coco_map,
                                        map_backend=map_backend.value)
            metrics = write_detection_report(ev, stage, root, gallery)
    _print("detection", metrics, out)


@eval_app.command("classification")
def classification(pred: Path = PRED, gt: Path = GT, out: Path = OUT, split: str | None = SPLIT,
                   overwrite: bool = OVERWRITE) -> None:
    """Accuracy, per-class and weighted precision/recall/F1 and the confusion matrix of image labels."""
    from jamspotter.evaluate.classification import evaluate_classification
    from jamspotter.evaluate.predictions import load_predictions
    from jamspotter.evaluate.report import write_classification_report

    with _report_dir(out, "classification", overwrite, pred, gt) as stage:
        samples, _, others = _load_gt(gt, split)
        metrics = write_classification_report(
            evaluate_classification(samples, _this_split(load_predictions(pred, "classification"), others)), stage)
    _print("classification", metrics, out)


@eval_app.command("trajectory")
def trajectory(pred: Path = PRED, gt: Path = GT, out: Path = OUT, split: str | None = SPLIT,
               overwrite: bool = OVERWRITE) -> None:
    """MSE and MAE per component of clip targets, with a plot of predicted vs true sequences."""
    from jamspotter.evaluate.predictions import load_predictions
    from jamspotter.evaluate.report import write_trajectory_report
    from jamspotter.evaluate.trajectory import evaluate_trajectories

    with _report_dir(out, "trajectory", overwrite, pred, gt) as stage:
        samples, _, others = _load_gt(gt, split)
        preds = _this_split(load_predictions(pred, "trajectory"), others)
        metrics = write_trajectory_report(evaluate_trajectories(samples, preds), samples, preds, stage)
    _print("trajectory", metrics, out)
