"""Data-parallel SFT for real: two gloo processes under torchrun on CPU, then `--resume` under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from jamspotter.data.io import write_samples
from jamspotter.data.records import BoxObject, Sample
from jamspotter.train.checkpoints import COMPLETE_MARKER

MAX_STEPS = 4
N_SAMPLES = 4


def _gloo_available() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_gloo_available()


pytestmark = pytest.mark.skipif(not _gloo_available(), reason="torch.distributed with the gloo backend is unavailable")


def _data(root: Path) -> Path:
    root.mkdir()
    samples = []
    for i in range(N_SAMPLES):
        Image.new("RGB", (56, 56), (90 + 40 * i, 128, 128)).save(root / f"{i}.png")
        samples.append(Sample(id=str(i), image=f"{i}.png", width=56, height=56,
                              objects=[BoxObject(label="rope", bbox=[4 * i, 5, 30 + 4 * i, 40])]))
    write_samples(root / "samples.jsonl", samples)
    return root


def _torchrun(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`torchrun --nproc_per_node=2 -m jamspotter.train sft` on the tiny config; one sample per rank per step."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "jamspotter.train", "sft", "--config", "tiny", "--set", f"data.train={data}",
           "--set", f"train.output_dir={out}", "--set", f"train.max_steps={MAX_STEPS}", "--set", "train.batch_size=1",
           "--set", "train.save_steps=2", "--set", "train.logging_steps=1", "--set", "data.min_pixels=3136",
           "--set", "data.max_pixels=3136", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)


def test_torchrun_two_processes_train_save_once_and_resume(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from jamspotter.models import load_model

    data = _data(tmp_path / "data")
    out = tmp_path / "run"
    proc = _torchrun(data, out)
    assert proc.returncode == 0, proc.stderr[-3000:]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == MAX_STEPS and metrics["processes"] == 2
    state = json.loads((out / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == MAX_STEPS
    # Two ranks x one sample per step = half an epoch per step (one process alone would make it a quarter).
    assert state["epoch"] == pytest.approx(MAX_STEPS * 2 / N_SAMPLES)
    for step in (2, MAX_STEPS):
        ckpt = out / f"checkpoint-{step}"
        assert (ckpt / COMPLETE_MARKER).is_file()
        assert (ckpt / "rng_state_0.pth").is_file() and (ckpt / "rng_state_1.pth").is_file()
    assert not list(out.rglob("*.tmp")), "a temp file of an atomic write was left behind"
    assert json.loads((out / "final" / "jamspotter.json").read_text())["family"] == "qwen2.5-vl"
    model, _ = load_model(str(out / "final"), dtype="fp32")
    assert model.jamspotter_family == "qwen2.5-vl"
    first = load_file(out / "final" / "model.safetensors")

    # Pretend the run died after checkpoint-2 and resume it under torchrun: it must end at the same step
    # with the same weights (full fine-tuning weights come back from the checkpoint, not from the base).
    for path in (out / f"checkpoint-{MAX_STEPS}" / COMPLETE_MARKER, out / "metrics.json"):
        path.unlink()
    for f in (out / "final").iterdir():
        f.unlink()
    (out / "final").rmdir()
    proc = _torchrun(data, out, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming from {out / 'checkpoint-2'}" in proc.stdout
    assert json.loads((out / "metrics.json").read_text())["global_step"] == MAX_STEPS
    again = load_file(out / "final" / "model.safetensors")
    assert first.keys() == again.keys()
    assert all(torch.allclose(first[k], again[k], atol=1e-6) for k in first)
