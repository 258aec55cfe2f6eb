"""`jamspotter demo`: the whole pipeline on synthetic belts, as the same CLI commands a user would type.

Each step is printed as its command line and run through the real CLI, so the demo doubles as a
tutorial: synthesise labelled belt images -> validate, stats, export training text -> SFT then GRPO of a
tiny random Qwen2.5-VL on CPU -> detect on training and held-out scenes -> evaluate -> one request to the
service -> digital twin of the line -> (with --trashnet) the edge classifier. `index.html` ties it together.
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
    console.print(f"$ jamspotter {shlex.join(args)}", style="bold", markup=False, highlight=False)
    command = typer.main.get_command(app)
    command.main(args=args, prog_name="jamspotter", standalone_mode=False)


def _serve_once(final: Path, image: Path, max_new_tokens: int, out: Path) -> None:
    """POST one image to the service's /v1/detect in process (no port) and save the answer as detect.json."""
    from fastapi.testclient import TestClient

    from jamspotter.data.io import write_json
    from jamspotter.errors import JamspotterError
    from jamspotter.infer import Detector
    from jamspotter.serve.app import create_app
    from jamspotter.serve.settings import ServeSettings

    console.print(f"POST /v1/detect {image.name} (the service, in process)", style="bold", markup=False)
    settings = ServeSettings(model=str(final), max_new_tokens=max_new_tokens)
    app_ = create_app(settings, detector=Detector(final, max_new_tokens=max_new_tokens))
    with TestClient(app_) as client:
        r = client.post("/v1/detect", files={"image": (image.name, image.read_bytes(), "image/jpeg")})
    if r.status_code != 200:
        raise JamspotterError(f"the service answered {r.status_code}: {r.text[:200]}")
    body = r.json()
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "detect.json", body)
    console.print(f"{len(body['detections'])} detection(s); answer saved to {out / 'detect.json'}")


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("demo_out"), help="Folder for everything the demo writes."),
    quick: bool = typer.Option(False, help="Smaller data and fewer training steps (for tests)."),
    trashnet: Path | None = typer.Option(None, "--trashnet", help="A TrashNet folder (split.csv): also train the "
                                         "edge classifier on a small subset of it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier demo's folder."),
) -> None:
    """Run the whole pipeline on synthetic belts and write index.html: data -> SFT -> GRPO -> detect -> evaluate ->
    service -> line twin (-> edge classifier)."""
    from jamspotter import demo as plan
    from jamspotter.errors import DataError
    from jamspotter.outputs import prepare_dir, record_files
    from jamspotter.progress import shared_progress

    items: list | None = None
    if trashnet is not None:
        if not trashnet.is_dir():
            raise DataError(f"--trashnet {trashnet}: no such folder")
        items = plan.trashnet_items(trashnet)  # a folder without labelled images fails here, before the pipeline
    start = time.time()
    prepare_dir(out, "demo", overwrite=overwrite, inputs=[trashnet] if trashnet else [])
    steps = plan.demo_steps(out, quick=quick, trashnet=trashnet)
    with shared_progress(console, len(steps), "demo") as (progress, task):
        for step in steps:
            progress.update(task, description=step.title)
            console.rule(f"[bold]{step.title}", align="left")
            if step.action == "cli":
                _run(step.args)
            elif step.action == "service":
                image = min((out / plan.HELDOUT_SCENES / "images").glob("*.jpg"))
                _serve_once(out / plan.GRPO_FINAL, image, plan.answer_tokens(quick), out / plan.SERVICE)
            else:
                n = plan.trashnet_subset(items, out / plan.EDGE_DATA)
                console.print(f"{n} images named in {out / plan.EDGE_DATA / 'split.csv'}")
            progress.advance(task)
        progress.update(task, description="demo finished")
    index = plan.write_index(out, steps, time.time() - start)
    record_files(out)
    held = json.loads((out / plan.REPORT_HELDOUT / "metrics.json").read_text())
    seen = json.loads((out / plan.REPORT_TRAIN / "metrics.json").read_text())
    console.rule("[bold green]demo finished", align="left")
    console.print(
        f"in {time.time() - start:.0f} s. Open {index} in a browser.\n"
        f"Tiny random model: F1@0.5 {seen.get('f1')} on its 8 training scenes (memorisation check), "
        f"{held.get('f1')} on held-out scenes (it has learnt nothing general; a real model needs a GPU)."
        + ("" if trashnet else f"\n{plan.EDGE_SKIPPED}"))
