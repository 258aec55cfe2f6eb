"""Per-family facts: model_type <-> family name, real config folders, special tokens.

One table so loading, the tiny builder, the trainer and the recommender agree on the same names.
"""

from __future__ import annotations

from pathlib import Path

from jamspotter.errors import JamspotterError

FAMILIES: tuple[str, ...] = ("qwen2-vl", "qwen2.5-vl", "qwen3-vl")

MODEL_TYPE_TO_FAMILY: dict[str, str] = {"qwen2_vl": "qwen2-vl", "qwen2_5_vl": "qwen2.5-vl", "qwen3_vl": "qwen3-vl"}

REFERENCE_DATA_ENV = "JAMSPOTTER_REFERENCE_DATA"

# The folder under $JAMSPOTTER_REFERENCE_DATA/qwen_configs/ each family is scaled down from (Apache-2.0 ones).
REFERENCE_CONFIG: dict[str, str] = {
    "qwen2-vl": "Qwen2-VL-2B-Instruct",
    "qwen2.5-vl": "Qwen2.5-VL-7B-Instruct",
    "qwen3-vl": "Qwen3-VL-4B-Instruct",
}

# Qwen's added tokens in id order, right after the 151,643 BPE tokens (see qwen_configs/TOKENS.md).
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
QWEN_TOOL_TOKENS: tuple[str, ...] = (
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
)
QWEN3_EXTRA_TOKENS: tuple[str, ...] = ("<tool_response>", "</tool_response>", "<think>", "</think>")

# Tokens the vision encoder owns: never trained on, never generated.
VISION_TOKENS: tuple[str, ...] = (
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)


def family_from_model_type(model_type: str) -> str:
    """`qwen2_5_vl` -> `qwen2.5-vl`; unknown types raise a one-line error."""
    try:
        return MODEL_TYPE_TO_FAMILY[model_type]
    except KeyError:
        raise JamspotterError(
            f"unsupported model_type {model_type!r}; jamspotter supports {', '.join(MODEL_TYPE_TO_FAMILY)}"
        ) from None


def check_family(family: str) -> str:
    """Return `family` if it is one of FAMILIES, else raise a one-line error."""
    if family not in FAMILIES:
        raise JamspotterError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    return family


def reference_data_dir() -> Path | None:
    """The folder named by $JAMSPOTTER_REFERENCE_DATA (real Qwen configs and tokenizer), when set and present.

    Only an explicit setting counts: where the package happens to be installed never changes which
    tokenizer a tiny model gets or what `train recommend` counts.
    """
    import os

    env = os.environ.get(REFERENCE_DATA_ENV)
    return Path(env) if env and Path(env).is_dir() else None
