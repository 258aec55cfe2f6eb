"""`jamspotter data synth`: render a synthetic labelled belt dataset (images, clips, samples.jsonl).

`--world` picks a rung of a scale from plain shapes to full belts (`jamspotter.synth.worlds`).

The folder is written whole or not at all (`jamspotter.outputs.output_dir`): Ctrl-C, SIGTERM or an
error leave an earlier dataset there exactly as it was.
"""

from __future__ import annotations

import re
from pathlib import Path

import typer

from jamspotter.cli.app import data_app
from jamspotter.errors import JamspotterError


def parse_size(text: str) -> tuple[int, int]:
    """`640x480` -> (640, 480); anything else is a one-line user error."""
    m = re.fullmatch(r"\s*(\d{1,9})\s*[xX]\s*(\d{1,9})\s*", text)
    if not m:
        raise JamspotterError(f"--size: expected WIDTHxHEIGHT like 640x480, got {text!r}")
    return int(m.group(1)), int(m.group(2))


@data_app.command("synth")
def synth(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Output folder (images/, clips/, samples.jsonl)."),
    n: int = typer.Option(100, "--n", help="Number of images (0..1000000)."),
    size: str = typer.Option("640x480", "--size", help="Frame size WIDTHxHEIGHT, 32..4096 px a side."),
    clips: int = typer.Option(0, "--clips", help="Number of mp4 clips (belt speed as numeric target)."),
    seconds: float = typer.Option(2.0, "--seconds", help="Clip length in seconds (at most 600)."),
    fps: int = typer.Option(10, "--fps", help="Clip frame rate (1..120)."),
    jam_rate: float = typer.Option(0.3, "--jam-rate", help="Chance that an item is jam-causing (0..1)."),
    seed: int = typer.Option(0, "--seed", help="Seed (0..2^63-1): same seed, same dataset."),
    workers: int = typer.Option(1, "--workers", help="Render in this many processes."),
    clutter: float | None = typer.Option(
        None, "--clutter", help="Items per square metre of belt, 0..200 (default: varied, 4..16)."),
    preview: bool = typer.Option(False, "--preview", help="Also write preview.png, a contact sheet with boxes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT when it is an earlier jamspotter output."),
    world: str = typer.Option(
        "belt", "--world",
        help="Scene world, plain to real: shapes, shapes-textured, simple-belt, belt (the default)."),
) -> None:
    """Render synthetic conveyor-belt images and clips with exact boxes.

    --world picks how hard the scenes are (options a world does not use are refused):
    shapes: 1-2 solid rectangles on plain grey, rope red, plastic film blue, cardboard brown (PNG);
    shapes-textured: the same three classes on the rendered belt, told by shape and colour;
    simple-belt: the belt's own items at twice the scale, 1-3 per image (--jam-rate applies);
    belt: the full renderer with every option below.

    OUT must be new, empty, or (with --overwrite) an earlier jamspotter output; it is replaced whole on
    success and left untouched on an error or interrupt. A clip's frames and a scene's items must each
    fit in about 2 GiB of memory (long clips at large sizes and high clutter are refused up front).
    """
    from jamspotter.outputs import check_output_dir, interrupts_as_exceptions, output_dir
    from jamspotter.synth import generate_dataset, write_preview
    from jamspotter.synth.dataset import check_args
    from jamspotter.synth.worlds import check_world_options

    # options set on the command line (by name: Typer may run on its own copy of click's ParameterSource)
    given = [p.opts[0] for p in ctx.command.params
             if p.name and getattr(ctx.get_parameter_source(p.name), "name", "DEFAULT") != "DEFAULT"]
    check_world_options(world, given)
    if workers < 1:
        raise JamspotterError(f"--workers must be >= 1, got {workers}")
    width_height = parse_size(size)
    check_args(n, width_height, jam_rate, clips, seconds, fps, seed, clutter)
    check_output_dir(out, overwrite=overwrite)
    with interrupts_as_exceptions(), output_dir(out, "data synth", overwrite=overwrite) as stage:
        samples = generate_dataset(stage, n, width_height, seed=seed, jam_rate=jam_rate, clips=clips,
                                   seconds=seconds, fps=fps, workers=workers, progress=True, world=world,
                                   **({} if clutter is None else {"clutter": clutter}))
        if preview and n:
            write_preview(samples, stage, stage / "preview.png")
    n_obj = sum(len(s.objects) for s in samples)
    typer.echo(f"wrote {n} images ({n_obj} objects) and {clips} clips to {out}/samples.jsonl")
    if preview and n:
        typer.echo(f"preview: {Path(out) / 'preview.png'}")
