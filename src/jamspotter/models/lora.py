"""Which parts of a Qwen-VL train: LoRA adapters (PEFT) or full weights, with freeze switches.

The three families share module names under transformers 5: `model.visual.blocks.*` (vision
tower), `model.visual.merger` (+ `deepstack_merger_list` on Qwen3-VL: the aligner) and
`model.language_model.layers.*` (the LLM). Targets are written as regexes over those names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from jamspotter.errors import JamspotterError

LANGUAGE_RE = r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
VISION_RE = (r"model\.visual\.blocks\.\d+\."
             r"(attn\.(qkv|proj)|mlp\.(fc1|fc2|gate_proj|up_proj|down_proj|linear_fc1|linear_fc2))")
MERGER_RE = r"model\.visual\.(merger|deepstack_merger_list\.\d+)\.(mlp\.\d+|linear_fc\d)"
PART_PREFIX = {"vision": "model.visual.blocks.",
               "merger": ("model.visual.merger", "model.visual.deepstack_merger_list"),
               "language": ("model.language_model.", "lm_head", "model.embed_tokens")}
TARGET_PRESETS = ("all-linear", "language", "language+vision")


def part_of(name: str) -> str | None:
    """`vision`, `merger`, `language` or None (e.g. patch embedding, which counts as vision)."""
    if name.startswith("model.visual."):
        return "merger" if name.startswith(PART_PREFIX["merger"]) else "vision"
    if name.startswith(PART_PREFIX["language"]):
        return "language"
    return None


def lora_target_regex(targets: str | Sequence[str], *, freeze_vision: bool, freeze_merger: bool,
                      freeze_language: bool) -> str:
    """A regex over module names; "all-linear" covers the unfrozen parts only, frozen parts get no adapters."""
    if isinstance(targets, str):
        if targets not in TARGET_PRESETS:
            raise JamspotterError(f"unknown lora targets {targets!r}; use {', '.join(TARGET_PRESETS)} or a list")
        parts = {"language": [LANGUAGE_RE], "language+vision": [LANGUAGE_RE, VISION_RE],
                 "all-linear": [LANGUAGE_RE, VISION_RE, MERGER_RE]}[targets]
        if targets == "language+vision" and freeze_vision:
            raise JamspotterError("lora targets language+vision need freeze_vision: false")
        parts = [p for p in parts if not ((p == VISION_RE and freeze_vision) or (p == MERGER_RE and freeze_merger)
                                          or (p == LANGUAGE_RE and freeze_language))]
    else:
        parts = [rf".*\.{re.escape(t)}" for t in targets]  # module-name suffixes such as q_proj
    if not parts:
        raise JamspotterError("LoRA has nothing to adapt: every targeted part is frozen")
    return "|".join(f"(?:{p})" for p in parts)


def apply_lora(model: Any, *, r: int = 16, alpha: int = 32, dropout: float = 0.05,
               targets: str | Sequence[str] = "language", freeze_vision: bool = True, freeze_merger: bool = False,
               freeze_language: bool = False, gradient_checkpointing: bool = False) -> Any:
    """Wrap `model` with LoRA adapters; an unfrozen merger without adapters trains fully (modules_to_save)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    regex = lora_target_regex(targets, freeze_vision=freeze_vision, freeze_merger=freeze_merger,
                              freeze_language=freeze_language)
    merger_adapted = isinstance(targets, str) and targets == "all-linear"
    modules_to_save = None
    if not freeze_merger and not merger_adapted:
        modules_to_save = [n for n, _ in model.named_modules()
                           if re.fullmatch(r"model\.visual\.(merger|deepstack_merger_list\.\d+)", n)]
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=linear_modules(model, regex),
                        modules_to_save=modules_to_save, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def linear_modules(model: Any, regex: str) -> list[str]:
    """Full names of the Linear layers (bitsandbytes ones included) whose name matches `regex`."""
    import torch

    pattern = re.compile(regex)
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and pattern.fullmatch(n)]
    if not names:
        raise JamspotterError("LoRA targets matched no Linear layer of this model")
    return names


def freeze_parts(model: Any, *, freeze_vision: bool, freeze_merger: bool, freeze_language: bool) -> Any:
    """For full fine-tuning: requires_grad=False on the frozen parts, True on the rest."""
    frozen = {"vision": freeze_vision, "merger": freeze_merger, "language": freeze_language}
    for name, p in model.named_parameters():
        part = part_of(name) or "vision"
        p.requires_grad_(not frozen[part])
    if all(frozen.values()):
        raise JamspotterError("full fine-tuning with every part frozen trains nothing")
    return model


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
