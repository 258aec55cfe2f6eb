"""The learning test: a tiny random Qwen-VL trained on 8 synthetic belt scenes reproduces their boxes (not mocked).

The scenes come from the belt renderer (`jamspotter.synth.generate_dataset`: belt texture, lighting,
noise, blur, JPEG; 0-3 objects each at this clutter). Greedy generation -> formats parser ->
jamspotter.evaluate F1@0.5 on the 8 training images. This checks the chat template, the assistant-only
label mask and the coordinate convention (absolute pixels for Qwen2.5-VL, 0-1000 for Qwen2-VL / Qwen3-VL)
end to end.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jamspotter.models.tiny import build_tiny_model
from jamspotter.synth import generate_dataset
from jamspotter.train.config import load_config
from jamspotter.train.sft import run_sft

# 8 rendered 112x112 belt scenes; clutter 1.5 items/m^2 gives 0-3 objects per image (~1.4 on average).
SCENES = {"n": 8, "size": (112, 112), "seed": 0, "jam_rate": 0.5, "clutter": 1.5}
STEPS, LR = 240, 4e-3  # full fine-tuning, batch 8 (all scenes every step); ~20 s per family on 2 idle cores



def belt_scenes(root: Path) -> tuple[Path, list[str]]:
    """Render the scenes into `root`; returns the folder and the labels present (the prompt's class list)."""
    samples = generate_dataset(root, **SCENES)
    assert sum(len(s.objects) for s in samples) >= 8, "the scenes must hold enough boxes to test anything"
    return root, sorted({o.label for s in samples for o in s.objects})


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen2-vl", "qwen3-vl"])
def test_tiny_model_learns_the_boxes(tmp_path: Path, family: str) -> None:
    data, classes = belt_scenes(tmp_path / "data")
    model = build_tiny_model(family, tmp_path / "model", real_tokenizer=False)
    cfg = load_config(None, [
        f"model.name={model}", f"data.train={data}", f"data.eval={data}", "data.min_pixels=3136",
        "data.max_pixels=12544", f"data.classes={classes}", "finetune.method=full", "finetune.freeze_vision=false",
        f"train.output_dir={tmp_path / 'run'}", f"train.lr={LR}", f"train.max_steps={STEPS}", "train.batch_size=8",
        "train.grad_accum=1", "train.gradient_checkpointing=false", "train.warmup_ratio=0.05",
        "train.logging_steps=40", "train.cpu_threads=2", f"train.save_steps={STEPS}", f"train.eval_steps={STEPS * 10}",
        # 3 boxes in Qwen2.5-VL JSON are ~105 tokens: a shorter budget would cut answers, not test learning
        f"train.f1_steps={STEPS}", "train.f1_samples=8", "train.f1_max_new_tokens=160",
    ])
    start = time.time()
    result = run_sft(cfg)
    det = result.metrics["detection"]
    print(f"{family}: F1@0.5 {det['f1']} mean IoU {det['mean_iou']} in {time.time() - start:.0f} s")
    assert result.global_step == STEPS
    assert det["f1"] >= 0.9, det
    assert (result.final_dir / "model.safetensors").is_file()
