"""Load a Qwen-VL model + processor by hub id or local path, optionally quantized (QLoRA).

The same code path serves hub ids, local checkpoints and the tiny test models. Nothing here
runs remote code: the three families are native transformers classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from jamspotter.errors import JamspotterError
from jamspotter.models.families import check_family, family_from_model_type

Quantization = Literal["4bit", "8bit"] | None
# Kept in bf16 under bitsandbytes: transformers 5 matches these from the start of module names.
QUANT_SKIP_MODULES = ["model.visual", "lm_head"]


def detect_family(name_or_path: str | Path) -> str:
    """Read the config (local or cached hub) and map its model_type to a family name."""
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(str(name_or_path), trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise JamspotterError(f"cannot read a model config from {name_or_path}: {str(e).splitlines()[0]}") from None
    return family_from_model_type(cfg.model_type)


def resolve_dtype(dtype: str) -> Any:
    """"auto" -> bf16 on a GPU that supports it, else fp32; or a torch dtype name."""
    import torch

    if dtype == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
                "fp32": torch.float32, "float32": torch.float32}[dtype]
    except KeyError:
        raise JamspotterError(f"unknown dtype {dtype!r}; use auto, bf16, fp16 or fp32") from None


def quantization_config(quantization: Quantization, compute_dtype: Any) -> Any:
    """bitsandbytes config: NF4 + double quantization for 4-bit (QLoRA), LLM.int8 for 8-bit.

    The vision tower and the LM head stay unquantized: they are small and quantizing the patch
    embedding hurts box accuracy more than it saves memory.
    """
    if quantization is None:
        return None
    if quantization not in ("4bit", "8bit"):
        raise JamspotterError(f"unknown quantization {quantization!r}; use 4bit, 8bit or none")
    import torch

    try:
        import bitsandbytes  # noqa: F401 - only checks that the optional dependency is there
    except ImportError:
        raise JamspotterError(
            f"{quantization} quantization needs bitsandbytes: pip install 'jamspotter[qlora]'"
        ) from None
    if not torch.cuda.is_available():
        raise JamspotterError(f"{quantization} quantization (bitsandbytes) needs a CUDA GPU; none is visible")
    from transformers import BitsAndBytesConfig

    skip = list(QUANT_SKIP_MODULES)
    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype, llm_int8_skip_modules=skip,
        )
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)


def load_processor(name_or_path: str | Path, *, min_pixels: int | None = None, max_pixels: int | None = None) -> Any:
    """AutoProcessor with optional min/max pixels (the image token budget) and left padding."""
    from transformers import AutoProcessor

    kwargs: dict[str, Any] = {}
    if min_pixels is not None or max_pixels is not None:
        # transformers 5 reads the budget from `size` (shortest_edge = min pixels, longest_edge = max pixels).
        probe = AutoProcessor.from_pretrained(str(name_or_path), trust_remote_code=False)
        size = dict(probe.image_processor.size or {})
        if min_pixels is not None:
            size["shortest_edge"] = min_pixels
        if max_pixels is not None:
            size["longest_edge"] = max_pixels
            if min_pixels is None and size.get("shortest_edge", 0) > max_pixels:
                size["shortest_edge"] = max_pixels  # only a smaller budget was asked for
        kwargs["size"] = size
        # Released Qwen2/2.5-VL configs spell the budget min_pixels/max_pixels, which the image processor
        # applies over `size`; pass them too or the asked-for budget is silently ignored.
        kwargs["min_pixels"], kwargs["max_pixels"] = size["shortest_edge"], size["longest_edge"]
    processor = AutoProcessor.from_pretrained(str(name_or_path), trust_remote_code=False, **kwargs)
    processor.tokenizer.padding_side = "left"
    return processor


def load_model(
    name_or_path: str | Path,
    family: str = "auto",
    quantization: Quantization = None,
    dtype: str = "auto",
    attn: str | None = None,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    device_map: Any = None,
) -> tuple[Any, Any]:
    """Load `(model, processor)` through AutoModelForImageTextToText / AutoProcessor.

    family: "auto" reads config.model_type; an explicit family that disagrees with the config is an error.
    quantization: None, "4bit" (NF4 + double quant, for QLoRA) or "8bit"; needs bitsandbytes and CUDA.
    attn: attention implementation ("sdpa", "flash_attention_2", "eager"); None lets transformers choose.
    """
    from transformers import AutoModelForImageTextToText

    detected = detect_family(name_or_path)
    if family != "auto" and check_family(family) != detected:
        raise JamspotterError(f"{name_or_path} is a {detected} model, but family {family!r} was asked for")
    torch_dtype = resolve_dtype(dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": False}
    qcfg = quantization_config(quantization, torch_dtype)
    if qcfg is not None:
        kwargs["quantization_config"] = qcfg
        kwargs["device_map"] = device_map if device_map is not None else _local_device_map()
    elif device_map is not None:
        kwargs["device_map"] = device_map
    if attn is not None:
        kwargs["attn_implementation"] = attn
    model = AutoModelForImageTextToText.from_pretrained(str(name_or_path), **kwargs)
    processor = load_processor(name_or_path, min_pixels=min_pixels, max_pixels=max_pixels)
    model.jamspotter_family = detected  # so callers need not re-read the config
    return model, processor


def _local_device_map() -> dict[str, int]:
    """Put a quantized model whole on this process's GPU (one copy per rank under DDP)."""
    import os

    return {"": int(os.environ.get("LOCAL_RANK", 0))}
