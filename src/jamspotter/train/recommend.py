"""`train recommend`: a starting config from dataset size, GPU memory and model, with the reasoning.

Parameter counts come from the real configs (built on the meta device, no weights); the memory
model is deliberately simple and printed, so a user can see why a choice was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from jamspotter.errors import JamspotterError
from jamspotter.models.families import REFERENCE_CONFIG, reference_data_dir

# Published sizes (qwen_configs/README.md), used when no reference data folder ($JAMSPOTTER_REFERENCE_DATA) is set.
KNOWN_PARAMS: dict[str, tuple[str, float, float, int, int]] = {
    # name: (family, total params B, vision params B, hidden, layers)
    "Qwen2-VL-2B-Instruct": ("qwen2-vl", 2.21, 0.67, 1536, 28),
    "Qwen2-VL-7B-Instruct": ("qwen2-vl", 8.29, 0.68, 3584, 28),
    "Qwen2.5-VL-3B-Instruct": ("qwen2.5-vl", 3.75, 0.67, 2048, 36),
    "Qwen2.5-VL-7B-Instruct": ("qwen2.5-vl", 8.29, 0.68, 3584, 28),
    "Qwen3-VL-4B-Instruct": ("qwen3-vl", 4.44, 0.42, 2560, 36),
    "Qwen3-VL-8B-Instruct": ("qwen3-vl", 8.77, 0.58, 4096, 36),
}


@dataclass
class ModelSize:
    """What the recommender needs to know about a model."""

    name: str
    family: str
    params: float  # total, billions
    vision_params: float  # vision tower + merger, billions
    hidden: int
    layers: int


def model_size(model: str) -> ModelSize:
    """Sizes of a released model (hub id or folder name): counted from its real config when available."""
    key = Path(model).name
    if key not in KNOWN_PARAMS:
        raise JamspotterError(f"unknown model {model!r}; known: {', '.join(KNOWN_PARAMS)}")
    family, params, vision, hidden, layers = KNOWN_PARAMS[key]
    shared = reference_data_dir()
    folder = shared / "qwen_configs" / key if shared is not None else None
    if folder is not None and (folder / "config.json").is_file():
        params, vision, hidden, layers = _count(folder)
    return ModelSize(f"Qwen/{key}", family, params, vision, hidden, layers)


def _count(folder: Path) -> tuple[float, float, int, int]:
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    cfg = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(cfg)
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for n, p in model.named_parameters() if n.startswith("model.visual."))
    text = cfg.text_config
    return total / 1e9, vision / 1e9, text.hidden_size, text.num_hidden_layers


def activation_gb(size: ModelSize, tokens: int, batch: int, checkpointing: bool) -> float:
    """Rough activation memory: with checkpointing ~ one bf16 hidden state per layer plus one full layer."""
    per_layer_full = tokens * batch * size.hidden * 2 * 16  # attention + MLP intermediates, bf16
    if checkpointing:
        total = tokens * batch * size.hidden * 2 * size.layers + per_layer_full
    else:
        total = per_layer_full * size.layers
    return total / 1e9


def weights_gb(size: ModelSize, method: str) -> float:
    """Weights + gradients + optimizer states for a method (bf16 weights, fp32 AdamW states)."""
    lang = size.params - size.vision_params
    if method == "full":
        # bf16 weights + bf16 grads + fp32 master/m/v for the trainable (language + merger) part
        return size.params * 2 + lang * (2 + 12)
    if method == "lora":
        return size.params * 2 + 0.3
    return lang * 0.56 + size.vision_params * 2 + 0.3  # NF4 + double quant ~4.5 bits/param


def recommend(dataset_size: int, gpu_memory: float, model: str = "Qwen2.5-VL-7B-Instruct") -> tuple[dict, list[str]]:
    """(config dict, reasons). Chooses method, rank, lr, batch/accumulation, epochs and pixel budget."""
    if dataset_size <= 0:
        raise JamspotterError("--dataset-size must be positive")
    if gpu_memory <= 0:
        raise JamspotterError("--gpu-memory must be positive (GB)")
    size = model_size(model)
    reasons = [f"{size.name}: {size.params:.2f}B parameters ({size.vision_params:.2f}B vision), "
               f"{size.layers} layers x {size.hidden}"]
    # CUDA context, allocator fragmentation, kernel workspaces and the loss chunks are not modelled: keep 25% spare.
    usable = (gpu_memory - 1.0) * 0.75
    factor = 1024 if size.family == "qwen3-vl" else 784  # pixels per image token
    choice = None
    for method in ("full", "lora", "qlora"):
        # Box precision needs pixels: give up image tokens only as the last resort (QLoRA).
        budgets = ((1280, 2), (1280, 1)) + (((768, 1), (512, 1)) if method == "qlora" else ())
        for tokens, batch in budgets:
            need = weights_gb(size, method) + activation_gb(size, tokens, batch, checkpointing=True)
            if need <= usable:
                choice = (method, tokens, batch, need)
                break
        if choice:
            break
        least = weights_gb(size, method) + activation_gb(size, budgets[-1][0], 1, checkpointing=True)
        reasons.append(f"{method}: needs ~{least:.1f} GB at {budgets[-1][0]} tokens, more than the {usable:.1f} GB "
                       "planned (25% kept spare)")
    if choice is None:
        raise JamspotterError(f"{size.name} does not fit in {gpu_memory} GB even with QLoRA; pick a smaller model")
    method, tokens, batch, need = choice
    if method == "full" and dataset_size < 2000:
        lora_need = weights_gb(size, "lora") + activation_gb(size, tokens, batch, True)
        if lora_need <= usable:
            method, need = "lora", lora_need
            reasons.append(f"full fine-tuning would fit, but {dataset_size} samples are too few: LoRA overfits less")
    reasons.append(f"{method}: ~{need:.1f} GB of {gpu_memory} GB at batch {batch} with ~{tokens} tokens per sample "
                   "(gradient checkpointing on)")
    image_tokens = tokens - 256  # prompt and answer take ~256 tokens
    max_pixels = image_tokens * factor
    reasons.append(f"max_pixels {max_pixels}: ~{image_tokens} image tokens ({factor} pixels per token)")
    rank = 8 if dataset_size < 1000 else 16 if dataset_size < 10000 else 32
    lr = 1e-5 if method == "full" else (2e-4 if rank <= 16 else 1e-4)
    epochs = 5 if dataset_size < 500 else 3 if dataset_size < 5000 else 2 if dataset_size < 50000 else 1
    accum = max(1, 16 // batch)
    steps = dataset_size * epochs // (batch * accum)
    what = "all weights" if method == "full" else f"rank {rank}"
    reasons.append(f"{what} for {dataset_size} samples; lr {lr:g}; {epochs} epochs -> ~{steps} optimizer steps "
                   f"at effective batch {batch * accum}")
    cfg: dict[str, Any] = {
        "model": {"name": size.name, "family": size.family, "dtype": "bf16"},
        # eval null: validation is the dataset's own split=val samples (`jamspotter data split` makes them)
        "data": {"train": "data/train", "eval": None, "min_pixels": min(256 * factor, max_pixels),
                 "max_pixels": max_pixels},
        "finetune": {"method": method, "lora_r": rank, "lora_alpha": 2 * rank, "lora_targets": "language",
                     "freeze_vision": True, "freeze_merger": method == "qlora"},
        "train": {"output_dir": f"runs/{Path(size.name).name.lower()}-{method}", "lr": lr, "epochs": epochs,
                  "batch_size": batch, "grad_accum": accum, "gradient_checkpointing": True, "bf16": True,
                  "eval_steps": max(50, steps // 10), "save_steps": max(50, steps // 10),
                  "f1_steps": max(100, steps // 5)},
    }
    if method == "full":
        cfg["finetune"] = {"method": "full", "freeze_vision": True, "freeze_merger": False}
    cfg["grpo"] = recommend_grpo(dataset_size, gpu_memory, method, batch, reasons)
    return cfg, reasons


def recommend_grpo(dataset_size: int, gpu_memory: float, method: str, batch: int, reasons: list[str]) -> dict:
    """The GRPO section after that SFT: group size, batch layout, lr, KL and lengths, with reasons appended."""
    generations = 8 if gpu_memory >= 40 else 4  # DeepSeekMath/VLM-R1 use 8; 4 keeps rollout KV caches small
    accum = max(1, 2 * generations // batch)  # two prompts' groups per optimizer step, `batch` sequences at a time
    steps = min(1000, max(100, dataset_size * 2 // (batch * accum // generations)))
    lr = 1e-6 if method == "full" else 1e-5
    # With LoRA the reference model is the base with the adapter switched off (no copy); full fine-tuning would
    # need a second bf16 copy for the KL term, so it goes without on small GPUs.
    beta = 0.0 if method == "full" and gpu_memory < 80 else 0.04
    reasons.append(f"GRPO: {generations} completions per prompt, {batch} sequence(s) per forward x {accum} "
                   f"accumulation = {batch * accum // generations} prompt(s) per step; lr {lr:g} (RL moves a tuned "
                   f"model: ~1/20 of SFT's); beta {beta:g}" + (" (no reference copy for full fine-tuning)"
                                                               if beta == 0 else " (KL against the adapter-off model)"))
    seen = steps * (batch * accum // generations) / dataset_size
    reasons.append(f"GRPO: {steps} steps (each prompt seen ~{seen:.1f} times; at most 1000 to bound rollout cost; "
                   "watch the reward curves to stop earlier); completions up to 512 tokens hold a think, two crop "
                   "calls and a box list")
    return {"max_steps": steps, "lr": lr, "batch_size": batch, "grad_accum": accum, "num_generations": generations,
            "beta": beta, "temperature": 1.0, "max_completion_length": 512, "loss_type": "dapo",
            "rewards": {"max_crops": 2}}


def recommend_yaml(dataset_size: int, gpu_memory: float, model: str = "Qwen2.5-VL-7B-Instruct") -> str:
    """The recommendation as YAML with the reasoning as leading comments."""
    cfg, reasons = recommend(dataset_size, gpu_memory, model)
    head = "\n".join(f"# {r}" for r in [f"recommended for {dataset_size} samples on a {gpu_memory:g} GB GPU", *reasons])
    return head + "\n" + yaml.safe_dump(cfg, sort_keys=False)


__all__ = ["REFERENCE_CONFIG", "recommend", "recommend_grpo", "recommend_yaml", "model_size"]
