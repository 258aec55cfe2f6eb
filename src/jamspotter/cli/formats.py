"""`jamspotter data augment` and `jamspotter parse`: thin wrappers over `jamspotter.formats`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from jamspotter.cli.app import app, data_app
from jamspotter.errors import JamspotterError


@data_app.command("augment")
def augment(
    data_dir: Path = typer.Argument(..., help="Dataset folder (with samples.jsonl) or a samples JSONL file."),
    kinds: str = typer.Option("count,full,partial,none", help="Comma list of: count, full, partial, none."),
    per_image: int = typer.Option(4, "--per-image", min=1, help="Augmented samples per image."),
    seed: int = typer.Option(0, help="Random seed (same seed, same output)."),
    out: Path | None = typer.Option(None, help="Output folder (default: DATA_DIR-augmented)."),
    only_new: bool = typer.Option(False, "--only-new", help="Write only the augmented samples, not the originals."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT when it is an earlier jamspotter output."),
) -> None:
    """Add counting and region-check questions (full / partial with visible % / none) built from the boxes."""
    from jamspotter.data.io import read_samples, samples_path, write_samples
    from jamspotter.formats.augment import KINDS, augment_samples
    from jamspotter.outputs import check_output_dir, interrupts_as_exceptions, output_dir

    src = samples_path(data_dir)
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
    bad = [k for k in kind_list if k not in KINDS]
    if bad or not kind_list:
        raise JamspotterError(f"--kinds: unknown {', '.join(bad) or '(empty)'}; choose from {', '.join(KINDS)}")
    out_dir = out or src.parent.with_name(src.parent.name + "-augmented")
    check_output_dir(out_dir, overwrite=overwrite, inputs=[src])
    samples = read_samples(src)
    new = augment_samples(samples, kind_list, per_image, seed)
    rebased = [_rebase(s, src.parent, out_dir) for s in ([] if only_new else samples) + new]
    with interrupts_as_exceptions(), output_dir(out_dir, "data augment", overwrite=overwrite, inputs=[src]) as stage:
        n = write_samples(stage / "samples.jsonl", rebased)
    by_kind: dict[str, int] = {}
    for s in new:
        by_kind[s.meta["task"]] = by_kind.get(s.meta["task"], 0) + 1
    skipped = sum(1 for s in samples if s.image is None or not s.width or not s.height)
    typer.echo(f"wrote {n} samples to {out_dir / 'samples.jsonl'}: {len(new)} augmented "
               f"({', '.join(f'{k} {v}' for k, v in sorted(by_kind.items())) or 'none'})"
               + (f"; skipped {skipped} clips or samples without an image size" if skipped else ""))


def _rebase(sample, src_root: Path, dst_root: Path):  # noqa: ANN001, ANN202 - Sample in, Sample out
    """Keep relative image/video/frame paths valid when the JSONL moves to another folder."""
    def move(p: str | None) -> str | None:
        if p is None or Path(p).is_absolute():
            return p
        return os.path.relpath((src_root / p).resolve(), dst_root.resolve())

    update = {"image": move(sample.image), "video": move(sample.video)}
    if sample.frames:
        update["frames"] = [move(f) for f in sample.frames]
    return sample.model_copy(update=update)


@app.command("parse")
def parse(
    family: str = typer.Option(..., help="Model family: qwen2-vl, qwen2.5-vl or qwen3-vl."),
    image_size: tuple[int, int] = typer.Option(..., help="Original image WIDTH HEIGHT."),
    input_size: tuple[int, int] | None = typer.Option(None, help="Model input WIDTH HEIGHT (Qwen2.5-VL pixels)."),
    processor: Path | None = typer.Option(None, help="Processor folder (preprocessor_config.json) to compute it."),
) -> None:
    """Read model text on stdin; print its boxes as JSON in original-image pixels (problems on stderr too)."""
    from jamspotter.formats import get_format

    fmt = get_format(family, processor=processor)
    text = sys.stdin.read()
    objects, problems = fmt.parse_detections(text, image_size, input_size)
    try:
        used_input: tuple[int, int] | None = input_size or fmt.input_size(*image_size)
    except ValueError:  # an impossible size; parse_detections already reported it
        used_input = None
    result = {"family": fmt.family, "image_size": list(image_size),
              "input_size": list(used_input) if used_input else None,
              "objects": [o.model_dump(exclude_defaults=True) for o in objects], "problems": problems}
    typer.echo(json.dumps(result))
    for p in problems:
        typer.echo(f"problem: {p}", err=True)
