"""`jamspotter infer MODEL INPUTS... --out preds.jsonl`: run a Qwen-VL detector, write predictions JSONL."""

from __future__ import annotations

from pathlib import Path

import typer

from jamspotter.cli.app import app
from jamspotter.errors import JamspotterError


@app.command("infer")
def infer_cmd(
    model: str = typer.Argument(..., help="Hub id or local folder of a Qwen2/2.5/3-VL model (merged or full); "
                                "with --backend openai, the model name the server serves."),
    inputs: list[Path] = typer.Argument(..., help="Images, videos, folders of them, or datasets (samples.jsonl)."),
    out: Path = typer.Option(..., "--out", help="Predictions JSONL (what `jamspotter eval detection --pred` reads)."),
    family: str = typer.Option("auto", "--family", help="auto | qwen2-vl | qwen2.5-vl | qwen3-vl"),
    task: str = typer.Option("auto", "--task", help="auto (what the model was trained on) | detect_jam | detect_all"),
    batch_size: int = typer.Option(4, "--batch-size", min=1),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", min=1),
    min_pixels: int = typer.Option(None, "--min-pixels", help="Override the processor's image token budget."),
    max_pixels: int = typer.Option(None, "--max-pixels"),
    every_n: int = typer.Option(1, "--every-n", min=1, help="Videos: run on every n-th frame."),
    dtype: str = typer.Option("auto", "--dtype", help="auto | bf16 | fp16 | fp32"),
    quantization: str = typer.Option(None, "--quantization", help="4bit | 8bit (bitsandbytes, CUDA)"),
    device: str = typer.Option(None, "--device", help="cuda, cpu, cuda:1 ... (default: cuda when available)"),
    backend: str = typer.Option("transformers", "--backend", help="transformers (in this process) | openai (an "
                                "OpenAI-compatible server: jamspotter serve, vllm serve) | vllm (vLLM's engine, "
                                "the optional vllm extra)"),
    url: str = typer.Option(None, "--url", help="--backend openai: the server, e.g. http://127.0.0.1:8000"),
    api_key: str = typer.Option(None, "--api-key", envvar="JAMSPOTTER_TOKEN",
                                help="--backend openai: the server's bearer token (or env JAMSPOTTER_TOKEN)."),
    contract: Path = typer.Option(None, "--contract", help="--backend openai: the served model's jamspotter.json, "
                                  "for a server that does not publish it (vLLM)."),
    split: str = typer.Option(None, "--split", help="Datasets: run on this split only (train | val | test)."),
    draw: Path = typer.Option(None, "--draw", help="Also draw the boxes into this folder: an image per image, "
                                                   "an mp4 per clip."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file (and --draw folder)."),
) -> None:
    """Detect jam-causing material; boxes in original pixels plus the raw model text per image."""
    import time

    from jamspotter.infer.backends import BACKENDS, load_backend
    from jamspotter.infer.detector import UNREADABLE
    from jamspotter.infer.inputs import collect_inputs, write_predictions
    from jamspotter.models.loading import check_model_source
    from jamspotter.outputs import check_output_file

    if backend not in BACKENDS:
        raise JamspotterError(f"--backend {backend!r}: use {', '.join(BACKENDS)}")
    if backend != "openai":
        check_model_source(model)  # a mistyped local folder fails now, not after reading the inputs
    check_output_file(out, overwrite=overwrite, inputs=inputs)
    if draw is not None:
        check_draw_dir(draw, out, overwrite=overwrite, inputs=inputs)
    samples = collect_inputs(inputs, split=split)
    detector = load_backend(backend, model, url=url, api_key=api_key, contract=contract, family=family, task=task,
                            max_new_tokens=max_new_tokens, quantization=quantization, dtype=dtype, device=device,
                            min_pixels=min_pixels, max_pixels=max_pixels)
    start = time.perf_counter()
    preds = detector.detect_samples(samples, batch_size=batch_size, progress=True, every_n=every_n)
    seconds = time.perf_counter() - start
    drawn = ""
    if draw is None:
        write_predictions(out, preds)
    else:
        from jamspotter.infer.draw import draw_predictions
        from jamspotter.outputs import output_dir

        with output_dir(draw, "infer --draw", overwrite=overwrite, inputs=inputs) as stage:
            files = draw_predictions(preds, stage, every_n=every_n, taxonomy=detector.format.taxonomy)
            write_predictions(out, preds)  # inside: a failed drawing leaves neither output half-written
        drawn = f"; drew {len(files)} files into {draw}"
    boxes = sum(len(p.objects) + sum(len(f) for f in p.frame_objects or []) for p in preds)
    # one answer per image, one per decoded frame of a clip
    answers = [pp for p in preds for pp in (p.meta["parse_problems"] if p.frame_objects is not None
                                            else [p.meta["parse_problems"]])]
    unreadable = sum(any(str(x).startswith(UNREADABLE) for x in pp) for pp in answers)
    if unreadable:
        typer.echo(f"warning: {unreadable} unreadable image(s) skipped: no boxes, the reason in their "
                   "parse_problems", err=True)
    typer.echo(f"{detector.family}: {len(preds)} inputs, {len(answers)} answers, {boxes} boxes, "
               f"{sum(map(bool, answers))} answers with parse problems, {seconds:.1f} s; wrote {out}{drawn}")


def check_draw_dir(draw: Path, out: Path, *, overwrite: bool, inputs: list[Path]) -> None:
    """The --draw folder may be written (the output policy) and does not hold, or is, the --out file."""
    from jamspotter.errors import OutputError
    from jamspotter.outputs import check_output_dir

    folder, target = draw.expanduser().resolve(), out.expanduser().resolve()
    if folder == target or folder in target.parents:
        raise OutputError(f"--out {out} must not be the --draw folder or lie inside it")
    check_output_dir(draw, overwrite=overwrite, inputs=inputs)
