"""A tiny model that really answers with boxes: trained (full fine-tuning, a few seconds on CPU) on one scene.

Random tiny models emit noise, so tests that need a model which returns a box and an alert (the service,
the dashboard, the OpenAI backend) train one here through the project's own `train sft`. With one training
scene the model learns to ignore the image and always answers that scene's boxes: enough to drive the
whole path (prompt -> generate -> parse -> draw/alert) with real model output, nothing forced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# One red rectangle ("rope", jam-causing) and one brown one ("cardboard") on grey, 112x112.
SCENE = {"rope": (220, 60, 40, [14, 20, 70, 44]), "cardboard": (180, 140, 80, [40, 62, 100, 104])}
SIZE = (112, 112)


QUESTION = "Is there a rope on the belt?"
THINK = "A long red strand lies near the top. <crop> It is a rope."  # <crop>: where the crop tool is called


def write_scene(folder: Path, qa: bool = False) -> Path:
    """The training scene as a dataset (samples.jsonl + images/scene.png); returns the folder.

    `qa` adds a question about the same image whose answer calls the crop tool on the rope (think/answer).
    """
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    image = Image.new("RGB", SIZE, (70, 70, 70))
    draw = ImageDraw.Draw(image)
    objects = []
    for label, (r, g, b, box) in SCENE.items():
        x1, y1, x2, y2 = box
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=(r, g, b))
        objects.append({"label": label, "bbox": [float(v) for v in box]})
    image.save(folder / "images" / "scene.png")
    sample = {"id": "scene", "image": "images/scene.png", "width": SIZE[0], "height": SIZE[1], "objects": objects}
    rows = [sample]
    if qa:
        turn = {"question": QUESTION, "think": THINK, "answer": "yes", "crops": [{"bbox": SCENE["rope"][3]}]}
        rows.append({**sample, "id": "scene-qa", "qa": [turn]})
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def memorise(root: Path, family: str = "qwen2.5-vl", steps: int = 150, qa: bool = False) -> Path:
    """Train a tiny `family` model on the one scene; returns its `final/` folder (with jamspotter.json).

    With `qa` it also learns the question that calls the crop tool (and counting questions)."""
    from typer.testing import CliRunner

    from jamspotter.cli import app

    data = write_scene(root / ("scene-qa" if qa else "scene"), qa=qa)
    run = root / f"run-{family}{'-qa' if qa else ''}"
    result = CliRunner().invoke(app, [
        "train", "sft", "--config", "tiny", "--set", f"model.name=tiny:{family}", "--set", f"data.train={data}",
        "--set", f"train.output_dir={run}", "--set", f"train.max_steps={steps}", "--set", "train.batch_size=1",
        "--set", "train.save_steps=100000", "--set", f"data.vqa={str(qa).lower()}", "--set", "data.clips=false",
        "--set", f"data.count={1.0 if qa else 0.0}", "--set", "train.lr=5e-3"])
    assert result.exit_code == 0, result.output
    return run / "final"


def memorised_model(tmp_path_factory: Any, family: str) -> Path:
    """The memorised model of `family`, trained once per test session and shared by the test files that need it."""
    import shutil

    root = tmp_path_factory.getbasetemp() / f"memorised-{family}"
    final = root / f"run-{family}" / "final"
    if not (final / "config.json").is_file():
        shutil.rmtree(root, ignore_errors=True)
        memorise(root, family)
    return final
