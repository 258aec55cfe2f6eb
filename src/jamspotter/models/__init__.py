"""jamspotter.models: load Qwen-VL models (hub id or path, optional 4/8-bit), LoRA wiring, tiny test models."""

from jamspotter.models.families import FAMILIES, family_from_model_type
from jamspotter.models.loading import detect_family, load_model, load_processor
from jamspotter.models.lora import apply_lora, count_parameters, freeze_parts

__all__ = [
    "FAMILIES",
    "apply_lora",
    "count_parameters",
    "detect_family",
    "family_from_model_type",
    "freeze_parts",
    "load_model",
    "load_processor",
]
