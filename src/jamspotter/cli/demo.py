"""`jamspotter demo`: the whole pipeline on synthetic belts, as the same CLI commands a user would type.

Each step is printed as its command line and run through the real CLI, so the demo doubles as a
tutorial: synthesise labelled belt images -> validate, stats, export training text -> fine-tune a
tiny random Qwen2.5-VL on CPU -> detect -> evaluate -> digital twin of the line with those metrics.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import typer
from rich.console import Console

from jamspotter.cli.app import app

console = Console(soft_wrap=True)


def _run(args: list[str]) -> None:
    """Print and run one `jamspotter ...` command in-process (errors propagate)."""
    console.rule(f"[bold]$ jamspotter {shlex.join(args)}", align="left")
    command = typer.main.get_command(app)
    command.main(args=args, prog_name="jamspotter", standalone_mode=False)


def demo_steps(out: Path, quick: bool = False) -> list[list[str]]:
    """The demo's command lines; `quick` shrinks data and training for tests."""
    belt, tiny, run = out / "belt", out / "tiny_belt", out / "runs" / "tiny"
    n_belt = "6" if quick else "24"
    steps = [
        ["data", "synth", "--n", n_belt, "--size", "640x480", "--clips", "1", "--seconds", "1", "--fps", "5",
         "--seed", "0", "--preview", "--out", str(belt)],
        ["data", "validate", str(belt)],
        ["data", "stats", str(belt)],
        ["data", "export", "--to", "qwen2.5-vl", str(belt), "--out", str(out / "belt_qwen2.5-vl.jsonl")],
        ["data", "export", "--to", "coco", str(belt), "--out", str(out / "belt_coco.json")],
        # A tiny random model memorising 8 small scenes: proves template, label mask and coordinates
        # end to end in one to two minutes on a CPU. Real runs use a released checkpoint (see configs/).
        ["data", "synth", "--n", "8", "--size", "112x112", "--jam-rate", "0.5", "--clutter", "2", "--seed", "1",
         "--out", str(tiny)],
        ["train", "sft", "--config", "tiny", "--set", f"data.train={tiny}", "--set", f"train.output_dir={run}"]
        + (["--set", "train.max_steps=10"] if quick else []),
        ["infer", str(run / "final"), str(tiny), "--out", str(out / "preds.jsonl"),
         "--max-new-tokens", "32" if quick else "256"],
        ["eval", "detection", "--pred", str(out / "preds.jsonl"), "--gt", str(tiny), "--out", str(out / "report")],
        # ten 16-hour days, five seeds: jams are rare events, one shift alone gives a jumpy recall sweep
        ["line", "simulate", "--detector-metrics", str(out / "report" / "metrics.json"),
         "--hours", "16" if quick else "160", "--replications", "1" if quick else "5",
         "--sweep-recall", "--out", str(out / "twin")],
    ]
    return steps


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("demo_out"), help="Folder for everything the demo writes."),
    quick: bool = typer.Option(False, help="Smaller data and 10 training steps (for tests)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier demo's folder."),
) -> None:
    """Run the whole pipeline on synthetic belts: data -> SFT -> detect -> evaluate -> line twin."""
    from jamspotter.outputs import prepare_dir, record_files

    start = time.time()
    prepare_dir(out, "demo", overwrite=overwrite)  # the demo's steps then write into new folders inside it
    for args in demo_steps(out, quick=quick):
        _run(args)
    record_files(out)
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    console.rule("[bold green]demo finished", align="left")
    console.print(
        f"in {time.time() - start:.0f} s. Tiny model on its 8 training scenes: "
        f"F1@0.5 = {metrics.get('f1')}, jam recall = {metrics.get('jam_recall')} (memorisation check, not a "
        "real detector).\n"
        f"  belt dataset + preview: {out / 'belt'} (preview.png)\n"
        f"  Qwen2.5-VL training file: {out / 'belt_qwen2.5-vl.jsonl'}\n"
        f"  fine-tuned model: {out / 'runs' / 'tiny' / 'final'}\n"
        f"  evaluation report: {out / 'report'} (summary.md, gallery.html)\n"
        f"  digital twin: {out / 'twin'}"
    )
