"""Resume after SIGKILL from the newest complete checkpoint; merge the resulting LoRA adapter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from PIL import Image

from jamspotter.data.io import write_samples
from jamspotter.data.records import BoxObject, Sample
from jamspotter.models.tiny import build_tiny_model
from jamspotter.train.checkpoints import COMPLETE_MARKER, latest_complete_checkpoint
from jamspotter.train.config import load_config
from jamspotter.train.merge import merge_adapter
from jamspotter.train.sft import run_sft

MAX_STEPS = 12



def _setup(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    samples = []
    for i in range(4):
        Image.new("RGB", (56, 56), (100 + 30 * i, 128, 128)).save(data / f"{i}.png")
        samples.append(Sample(id=str(i), image=f"{i}.png", width=56, height=56,
                              objects=[BoxObject(label="rope", bbox=[4 * i, 5, 30 + 4 * i, 40])]))
    write_samples(data / "samples.jsonl", samples)
    model = build_tiny_model("qwen2-vl", tmp_path / "model", real_tokenizer=False)
    cfg = {
        "model": {"name": str(model), "dtype": "fp32"},
        "data": {"train": str(data), "min_pixels": 3136, "max_pixels": 3136, "classes": ["rope"]},
        "finetune": {"method": "lora", "lora_r": 4, "lora_alpha": 8, "lora_targets": "language"},
        "train": {"output_dir": str(tmp_path / "run"), "lr": 1e-3, "max_steps": MAX_STEPS, "batch_size": 2,
                  "grad_accum": 1, "gradient_checkpointing": False, "save_steps": 3, "save_total_limit": None,
                  "logging_steps": 1, "cpu_threads": 1},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_sigkill_then_resume_ends_at_same_step_and_merges(tmp_path: Path) -> None:
    cfg_path = _setup(tmp_path)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "jamspotter.train", "sft", "--config", str(cfg_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (run / "checkpoint-3" / COMPLETE_MARKER).exists():
        time.sleep(0.1)
    assert proc.poll() is None, "training ended before it could be killed"
    assert (run / "checkpoint-3" / COMPLETE_MARKER).exists()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "final").exists()

    # A checkpoint folder that was being written when the process died must never be picked.
    (run / "checkpoint-999").mkdir()
    (run / "checkpoint-999" / "trainer_state.json").write_text("{")
    resumed_from = latest_complete_checkpoint(run)
    assert resumed_from is not None and resumed_from.name != "checkpoint-999"

    messages: list[str] = []
    result = run_sft(load_config(cfg_path), resume=True, log=messages.append)
    assert any(f"resuming from {resumed_from}" in m for m in messages)
    assert result.global_step == MAX_STEPS
    state = json.loads((run / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == MAX_STEPS
    logged_steps = [e["step"] for e in state["log_history"] if "loss" in e]
    assert logged_steps[-1] == MAX_STEPS and int(resumed_from.name.split("-")[1]) + 1 in logged_steps

    merged = merge_adapter(result.final_dir, tmp_path / "merged")
    from jamspotter.models import load_model

    model, processor = load_model(merged)
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    assert (merged / "model.safetensors").is_file() and processor.tokenizer is not None
    assert not any("lora" in n for n, _ in model.named_parameters())
