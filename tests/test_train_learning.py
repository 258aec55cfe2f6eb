"""The learning test: a tiny random Qwen-VL trained on 8 belt images reproduces their boxes (real, not mocked).

Greedy generation -> formats parser -> jamspotter.evaluate F1@0.5 on the 8 training images. This
checks the chat template, the assistant-only label mask and the coordinate convention end to end.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from jamspotter.data.io import write_samples
from jamspotter.data.records import BoxObject, Sample
from jamspotter.models.tiny import build_tiny_model
from jamspotter.train.config import load_config
from jamspotter.train.sft import run_sft

LABELS = ["rope", "plastic film", "hose", "strap"]
COLOURS = [(200, 40, 40), (40, 190, 60), (40, 60, 220), (230, 200, 30)]


@pytest.fixture(autouse=True, scope="module")
def _one_cpu_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; several stall badly on a shared, busy CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def belt_images(root: Path, n: int = 8, size: int = 112, seed: int = 0) -> Path:
    """n belt-grey images with one coloured item each; exact boxes in samples.jsonl."""
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        im = Image.new("RGB", (size, size), (128, 128, 128))
        w, h = rng.randint(30, 60), rng.randint(30, 60)
        x, y = rng.randint(0, size - w), rng.randint(0, size - h)
        ImageDraw.Draw(im).rectangle([x, y, x + w - 1, y + h - 1], fill=COLOURS[i % 4])
        im.save(root / f"belt-{i}.png")
        samples.append(Sample(id=f"belt-{i}", image=f"belt-{i}.png", width=size, height=size,
                              objects=[BoxObject(label=LABELS[i % 4], bbox=[x, y, x + w, y + h])]))
    write_samples(root / "samples.jsonl", samples)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen2-vl", "qwen3-vl"])
def test_tiny_model_learns_the_boxes(tmp_path: Path, family: str) -> None:
    data = belt_images(tmp_path / "data" if (tmp_path / "data").mkdir() is None else tmp_path)
    model = build_tiny_model(family, tmp_path / "model", real_tokenizer=False)
    steps = 160
    cfg = load_config(None, [
        f"model.name={model}", f"data.train={data}", f"data.eval={data}", "data.min_pixels=3136",
        "data.max_pixels=12544", f"data.classes={LABELS}", "finetune.method=full", "finetune.freeze_vision=false",
        f"train.output_dir={tmp_path / 'run'}", "train.lr=4e-3", f"train.max_steps={steps}", "train.batch_size=8",
        "train.grad_accum=1", "train.gradient_checkpointing=false", "train.warmup_ratio=0.05",
        "train.logging_steps=40", "train.cpu_threads=1", f"train.save_steps={steps}", f"train.eval_steps={steps * 10}",
        f"train.f1_steps={steps}", "train.f1_samples=8", "train.f1_max_new_tokens=48",
    ])
    start = time.time()
    result = run_sft(cfg)
    det = result.metrics["detection"]
    print(f"{family}: F1@0.5 {det['f1']} mean IoU {det['mean_iou']} in {time.time() - start:.0f} s")
    assert result.global_step == steps
    assert det["f1"] >= 0.9, det
    assert (result.final_dir / "model.safetensors").is_file()
