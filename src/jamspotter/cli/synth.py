"""`jamspotter data synth`: render a synthetic labelled belt dataset (images, clips, samples.jsonl)."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from jamspotter.cli.app import data_app
from jamspotter.errors import JamspotterError


def parse_size(text: str) -> tuple[int, int]:
    """`640x480` -> (640, 480); anything else is a one-line user error."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise JamspotterError(f"--size: expected WIDTHxHEIGHT like 640x480, got {text!r}")
    return int(m.group(1)), int(m.group(2))


@data_app.command("synth")
def synth(
    out: Path = typer.Option(..., "--out", help="Output folder (images/, clips/, samples.jsonl)."),
    n: int = typer.Option(100, "--n", help="Number of images."),
    size: str = typer.Option("640x480", "--size", help="Frame size WIDTHxHEIGHT."),
    clips: int = typer.Option(0, "--clips", help="Number of mp4 clips (belt speed as numeric target)."),
    seconds: float = typer.Option(2.0, "--seconds", help="Clip length in seconds."),
    fps: int = typer.Option(10, "--fps", help="Clip frame rate."),
    jam_rate: float = typer.Option(0.3, "--jam-rate", help="Chance that an item is jam-causing (0..1)."),
    seed: int = typer.Option(0, "--seed", help="Seed: same seed, same dataset."),
    workers: int = typer.Option(1, "--workers", help="Render in this many processes."),
    clutter: float | None = typer.Option(None, "--clutter", help="Items per square metre of belt (default: varied)."),
    preview: bool = typer.Option(False, "--preview", help="Also write preview.png, a contact sheet with boxes."),
) -> None:
    """Render synthetic conveyor-belt images and clips with exact boxes."""
    from jamspotter.synth import generate_dataset, write_preview

    samples = generate_dataset(out, n, parse_size(size), seed=seed, jam_rate=jam_rate, clips=clips,
                               seconds=seconds, fps=fps, workers=workers, progress=True,
                               **({} if clutter is None else {"clutter": clutter}))
    n_obj = sum(len(s.objects) for s in samples)
    typer.echo(f"wrote {n} images ({n_obj} objects) and {clips} clips to {out}/samples.jsonl")
    if preview and n:
        typer.echo(f"preview: {write_preview(samples, out, Path(out) / 'preview.png')}")
