"""`jamspotter ask MODEL IMAGE "question"`: a think/answer reply about one image, zooming in with the crop tool."""

from __future__ import annotations

from pathlib import Path

import typer

from jamspotter.cli.app import app


@app.command("ask")
def ask_cmd(
    model: str = typer.Argument(..., help="Hub id or local folder of a Qwen2/2.5/3-VL model (merged or full)."),
    image: Path = typer.Argument(..., help="The image to ask about."),
    question: str = typer.Argument(..., help="The question. A region may be given as <bbox>[x1, y1, x2, y2]</bbox> "
                                             "in original pixels."),
    max_crops: int = typer.Option(3, "--max-crops", min=0, help="Crop images the model may ask for."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole answer as one JSON object."),
    family: str = typer.Option("auto", "--family", help="auto | qwen2-vl | qwen2.5-vl | qwen3-vl"),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", min=1, help="Per turn (each crop starts a turn)."),
    min_pixels: int = typer.Option(None, "--min-pixels", help="Override the processor's image token budget."),
    max_pixels: int = typer.Option(None, "--max-pixels"),
    dtype: str = typer.Option("auto", "--dtype", help="auto | bf16 | fp16 | fp32"),
    quantization: str = typer.Option(None, "--quantization", help="4bit | 8bit (bitsandbytes, CUDA)"),
    device: str = typer.Option(None, "--device", help="cuda, cpu, cuda:1 ... (default: cuda when available)"),
) -> None:
    """Ask a question about one image; prints the answer, the thinking and the crops (original pixels)."""
    import dataclasses
    import json

    from jamspotter.errors import JamspotterError
    from jamspotter.infer import Detector, to_pil
    from jamspotter.models.loading import check_model_source

    if not question.strip():
        raise JamspotterError("the question is empty")
    check_model_source(model)  # a mistyped folder or an unreadable image fails before the model loads
    picture = to_pil(image)
    detector = Detector(model, family=family, quantization=quantization, dtype=dtype, device=device,
                        min_pixels=min_pixels, max_pixels=max_pixels, max_new_tokens=max_new_tokens)
    answer = detector.ask(picture, question, max_crops=max_crops)
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(answer), ensure_ascii=False))
        return
    typer.echo(f"answer: {answer.answer}")
    if answer.think:
        typer.echo(f"think: {answer.think}")
    for i, box in enumerate(answer.crops, 1):
        typer.echo(f"crop {i}: [" + ", ".join(f"{v:g}" for v in box) + "]")
    for problem in answer.problems:
        typer.echo(f"problem: {problem}", err=True)
