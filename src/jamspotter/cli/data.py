"""`jamspotter data import|export|stats|split|validate`: thin wrappers over `jamspotter.data`."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from jamspotter.cli.app import data_app
from jamspotter.errors import DataError, JamspotterError

console = Console(soft_wrap=True)


class ImportKind(str, Enum):
    coco = "coco"
    yolo = "yolo"
    voc = "voc"
    imagefolder = "imagefolder"
    qna = "qna"
    detjson = "detjson"
    conversations = "conversations"
    messages = "messages"
    video = "video"


class ExportKind(str, Enum):
    coco = "coco"
    yolo = "yolo"
    conversations = "conversations"
    sharegpt = "sharegpt"
    qwen2_vl = "qwen2-vl"
    qwen2_5_vl = "qwen2.5-vl"
    qwen3_vl = "qwen3-vl"


class TrainerKind(str, Enum):
    plain = "plain"
    swift = "swift"
    llamafactory = "llamafactory"
    qwen_vl_finetune = "qwen-vl-finetune"
    u2 = "2u1"
    trl = "trl"


class SplitBy(str, Enum):
    label = "label"
    jam = "jam"


def _report_skipped(skipped: list[str] | tuple[str, ...], count: int | None = None, what: str = "entries") -> None:
    count = len(skipped) if count is None else count
    if count:
        console.print(f"skipped {count} {what}; first reasons:")
        for reason in list(skipped)[:5]:
            console.print(f"  - {reason}", markup=False)


@data_app.command("import")
def import_cmd(
    src: Path = typer.Argument(..., help="File or folder to import (COCO json, data.yaml, VOC folder, ...)."),
    from_: ImportKind = typer.Option(..., "--from", help="Source format."),
    out: Path = typer.Option(..., "--out", help="Dataset folder; writes OUT/samples.jsonl."),
    images: Path | None = typer.Option(None, "--images", help="Folder image paths are relative to."),
    allow_missing_images: bool = typer.Option(
        False, "--allow-missing-images", help="Keep records whose image is absent; flag them missing_image."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip bad entries; report them."),
    taxonomy: Path | None = typer.Option(None, "--taxonomy", help="YAML/JSON {label: true|false} jam-risk map."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT when it is an earlier jamspotter output."),
    family: str | None = typer.Option(
        None, "--family", help="Chat files: the model family whose box text they hold (boxes become original pixels)."),
    min_pixels: int | None = typer.Option(None, "--min-pixels", help="With --family: the pixel budget the boxes "
                                          "were written for (Qwen2.5-VL; default: the family's)."),
    max_pixels: int | None = typer.Option(None, "--max-pixels", help="With --family: see --min-pixels."),
    for_: TrainerKind = typer.Option(
        TrainerKind.plain, "--for", help="With --family: the trainer the file was written for (its resize "
        "pipeline decides what Qwen2.5-VL pixels mean; --min-pixels/--max-pixels then set its budget)."),
) -> None:
    """Import a labelled dataset into OUT/samples.jsonl (canonical Sample records).

    OUT must be new, empty, or (with --overwrite) an earlier jamspotter output; it is written whole or not at all.
    """
    from jamspotter.data.classes import write_classes
    from jamspotter.data.importers import import_dataset, relative_paths
    from jamspotter.data.io import write_samples
    from jamspotter.data.taxonomy import Taxonomy
    from jamspotter.outputs import check_output_dir, interrupts_as_exceptions, output_dir

    if (family or min_pixels is not None or max_pixels is not None) and from_ not in (ImportKind.conversations,
                                                                                     ImportKind.messages):
        raise JamspotterError("--family/--min-pixels/--max-pixels apply to --from conversations|messages only")
    if (min_pixels or max_pixels or for_ != TrainerKind.plain) and not family:
        raise JamspotterError("--min-pixels/--max-pixels/--for need --family (the family whose box text the file "
                              "holds)")
    if family:
        from jamspotter.formats import canonical_family

        family = canonical_family(family)
    check_output_dir(out, overwrite=overwrite, inputs=[src, images, taxonomy])  # before the (slow) import
    jam_map = Taxonomy.load(taxonomy)
    result = import_dataset(from_.value, src, images=images, allow_missing_images=allow_missing_images,
                            skip_invalid=skip_invalid, taxonomy=jam_map)
    if family:
        from jamspotter.data.importers.chat import apply_box_family

        result.samples, skipped = apply_box_family(result.samples, family, min_pixels=min_pixels,
                                                   max_pixels=max_pixels, skip_invalid=skip_invalid,
                                                   taxonomy=jam_map, trainer=for_.value)
        result.skipped += skipped
    if not result.samples:
        raise DataError(f"{src}: nothing to import" + (f" (skipped {len(result.skipped)})" if result.skipped else ""))
    with interrupts_as_exceptions(), output_dir(out, "data import", overwrite=overwrite,
                                                inputs=[src, images, taxonomy]) as stage:
        # media stay where they are: absolute paths (OUT is replaced whole, nothing below it survives)
        n = write_samples(stage / "samples.jsonl", relative_paths(result.samples, stage))
        if result.classes is not None:
            write_classes(stage, result.classes)
    objects = sum(len(s.objects) for s in result.samples)
    missing = sum("missing_image" in s.flags for s in result.samples)
    console.print(f"imported {n} samples, {objects} objects -> {out / 'samples.jsonl'}"
                  + (f" ({missing} with missing images, flagged)" if missing else ""))
    from jamspotter.data.importers.chat import BOX_FAMILY, UNKNOWN_FAMILY

    unknown = sum(s.meta.get(BOX_FAMILY) == UNKNOWN_FAMILY for s in result.samples)
    if unknown:
        console.print(f"{unknown} samples hold box text of a model family not given: chat exports refuse them; "
                      "import again with --family FAMILY (the family that wrote the file) to convert it")
    points = [s for s in result.samples if s.meta.get("points_as_text")]
    if points:
        console.print(f"{sum(s.meta['points_as_text'] for s in points)} points (objects.bbox with 2 numbers) in "
                      f"{len(points)} samples are not boxes: their numbers stay in the text as written, e.g. "
                      f"sample {points[0].id}", markup=False)
    _report_skipped(result.skipped)


def _load(dataset: Path, split: str | None = None) -> list:
    from jamspotter.data.io import read_samples, samples_path

    samples = read_samples(dataset)
    if split is not None:
        samples = [s for s in samples if s.split == split]
        if not samples:
            raise DataError(f"{samples_path(dataset)}: no samples with split {split!r}")
    return samples


@data_app.command("export")
def export_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder (or samples.jsonl)."),
    to: ExportKind = typer.Option(..., "--to", help="Target layout; qwen* = messages rendered for that family."),
    out: Path = typer.Option(..., "--out", help="Output file (coco, chat) or folder (yolo)."),
    family: str | None = typer.Option(None, help="Model family for conversations/sharegpt (default qwen2.5-vl)."),
    split: str | None = typer.Option(None, help="Export only this split."),
    copy_images: bool = typer.Option(False, "--copy-images", help="YOLO: copy images instead of symlinking them."),
    relative_paths: bool = typer.Option(False, "--relative-paths", help="Chat: paths relative to --out folder."),
    processor: str | None = typer.Option(
        None, "--processor", help="Chat: min/max pixels from this processor folder or config (the trainer's)."),
    min_pixels: int | None = typer.Option(None, "--min-pixels", help="Chat: image token budget the trainer uses."),
    max_pixels: int | None = typer.Option(None, "--max-pixels", help="Chat: image token budget the trainer uses."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT file, or an earlier "
                                   "jamspotter output folder (yolo)."),
    for_: TrainerKind = typer.Option(
        TrainerKind.plain, "--for", help="Chat: the trainer that will read the file (its layout, paths and resize "
        "pipeline; --min-pixels/--max-pixels then set its budget). See docs/trainers/."),
) -> None:
    """Export a dataset to COCO, YOLO or a chat training file (LLaVA conversations / messages).

    Qwen2.5-VL boxes are pixels of the RESIZED input, so a chat export must use the min/max pixels of the
    processor that will train on it (--processor, or --min-pixels/--max-pixels); the values used are printed.
    --for TRAINER writes that trainer's layout and reproduces its resize (two steps where it has two), with its
    default budget; the budget and the trainer flag that must match are printed.
    """
    from jamspotter.data.classes import CLASSES_FILE, read_classes
    from jamspotter.data.exporters import export_chat, export_coco, export_yolo
    from jamspotter.data.io import samples_path
    from jamspotter.outputs import check_output_dir, check_output_file, interrupts_as_exceptions

    samples_file = samples_path(dataset)
    root = samples_file.parent
    inputs = [samples_file, root / CLASSES_FILE, processor]
    if to is ExportKind.yolo:
        check_output_dir(out, overwrite=overwrite, inputs=inputs)
    else:
        check_output_file(out, overwrite=overwrite, inputs=inputs)
    samples = _load(dataset, split)
    if for_ is not TrainerKind.plain and to in (ExportKind.coco, ExportKind.yolo):
        raise JamspotterError("--for applies to chat exports only")
    if to is ExportKind.yolo:
        if family is not None:
            raise JamspotterError("--family applies to chat exports only")
        with interrupts_as_exceptions():  # SIGTERM, like Ctrl-C, removes the staging folder
            report = export_yolo(samples, out, root=root, classes=read_classes(root), copy_images=copy_images,
                                 overwrite=overwrite, inputs=inputs)
    elif to is ExportKind.coco:
        if family is not None:
            raise JamspotterError("--family applies to chat exports only")
        with interrupts_as_exceptions():
            report = export_coco(samples, out, root=root, classes=read_classes(root))
    else:
        if to in (ExportKind.conversations, ExportKind.sharegpt):
            family = family or "qwen2.5-vl"
        elif family is not None and family != to.value:
            raise JamspotterError(f"--to {to.value} already names the family; drop --family {family}")
        else:
            family = to.value
        from jamspotter.formats import get_format

        layout = "conversations" if to is ExportKind.conversations else "messages"
        if for_ is TrainerKind.plain:
            fmt = get_format(family, processor=processor, min_pixels=min_pixels, max_pixels=max_pixels)
            with interrupts_as_exceptions():
                report = export_chat(samples, fmt, out, layout=layout, root=root, relative_paths=relative_paths)
            console.print(f"{family}: boxes written for min_pixels={fmt.params.min_pixels}, "
                          f"max_pixels={fmt.params.max_pixels} (train with the same)")
        else:
            from jamspotter.data.trainers import get_trainer

            trainer = get_trainer(for_.value)
            fmt, budget = trainer.format(family, processor=processor, min_pixels=min_pixels, max_pixels=max_pixels)
            with interrupts_as_exceptions():
                report = export_chat(samples, fmt, out, root=root, relative_paths=relative_paths,
                                     trainer=trainer.name)
            console.print(f"{family} for {trainer.name}: boxes written for {budget}", markup=False)
            console.print("image paths: " + (f"relative to {out.parent}; {trainer.name} resolves them against "
                                             f"{trainer.paths}" if relative_paths else "absolute"), markup=False)
            if trainer.dataset_info:
                console.print(f"dataset_info.json entry {out.stem!r} -> {out.parent / 'dataset_info.json'}",
                              markup=False)
    console.print(f"wrote {report.written} records -> {report.path}")
    _report_skipped(report.reasons, report.skipped, "samples")


@data_app.command("stats")
def stats_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder (or samples.jsonl)."),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON instead of tables."),
) -> None:
    """Classes, boxes per image, box sizes and jam-risk share of a dataset."""
    from jamspotter.data.stats import dataset_stats, print_stats

    stats = dataset_stats(_load(dataset))
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
    else:
        print_stats(stats, console)


@data_app.command("split")
def split_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder (or samples.jsonl); rewritten in place."),
    ratios: str = typer.Option("0.8,0.1,0.1", help="train,val,test shares summing to 1."),
    seed: int = typer.Option(0, help="Seed; the same seed and data give the same split."),
    by: SplitBy = typer.Option(SplitBy.label, help="Stratify by image/dominant label or dominant jam class."),
) -> None:
    """Assign a deterministic stratified train/val/test split to every sample."""
    from collections import Counter

    from jamspotter.data.io import samples_path, write_samples
    from jamspotter.data.splits import assign_splits, parse_ratios

    try:
        parsed = parse_ratios(ratios)
    except ValueError as e:
        raise JamspotterError(f"--ratios: {e}") from None
    samples = assign_splits(_load(dataset), parsed, seed=seed, by=by.value)
    path = samples_path(dataset)
    write_samples(path, samples)
    counts = Counter(s.split for s in samples)
    console.print(f"split {len(samples)} samples by {by.value} (seed {seed}): "
                  + ", ".join(f"{k} {counts[k]}" for k in ("train", "val", "test") if counts[k]) + f" -> {path}")


@data_app.command("validate")
def validate_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder (or samples.jsonl)."),
    no_images: bool = typer.Option(False, "--no-images", help="Skip the image existence and size checks."),
    show: int = typer.Option(20, help="How many problems to list."),
) -> None:
    """Check boxes (ordered, inside the image), ids, and that images exist with the recorded size."""
    from jamspotter.data.io import samples_path
    from jamspotter.data.validate import validate_samples

    samples = _load(dataset)
    problems = validate_samples(samples, samples_path(dataset).parent, check_images=not no_images)
    for p in problems[:show]:
        console.print(f"  - {p}", markup=False)
    if problems:
        raise DataError(f"{samples_path(dataset)}: {len(problems)} problem(s) in {len(samples)} samples"
                        + (f"; first: {problems[0]}" if len(problems) > show else ""))
    console.print(f"{samples_path(dataset)}: {len(samples)} samples, no problems")
