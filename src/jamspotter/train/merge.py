"""Merge a LoRA adapter into its base model: bf16 safetensors + processor, loadable by transformers/vLLM."""

from __future__ import annotations

import json
from pathlib import Path

from jamspotter.errors import JamspotterError


def merge_adapter(adapter: str | Path, out: str | Path, *, base: str | None = None, dtype: str = "bf16") -> Path:
    """Load base (from adapter_config.json unless given), apply the adapter, merge, save to `out`.

    A folder without adapter_config.json (a full fine-tune) is re-saved in `dtype` as it is.
    """
    import torch
    from peft import PeftModel

    from jamspotter.models.loading import load_model, load_processor

    adapter, out = Path(adapter), Path(out)
    if not adapter.is_dir():
        raise JamspotterError(f"{adapter}: no such adapter folder")
    adapter_cfg = adapter / "adapter_config.json"
    if adapter_cfg.is_file():
        base = base or json.loads(adapter_cfg.read_text())["base_model_name_or_path"]
        if not base:
            raise JamspotterError(f"{adapter_cfg}: no base_model_name_or_path; pass --base")
        model, processor = load_model(base, dtype=dtype)
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    elif (adapter / "config.json").is_file():
        model, processor = load_model(adapter, dtype=dtype)
    else:
        raise JamspotterError(f"{adapter}: neither a LoRA adapter nor a model folder")
    if (adapter / "preprocessor_config.json").is_file() or (adapter / "processor_config.json").is_file():
        processor = load_processor(adapter)  # the processor (pixel budget) the model was trained with
    model.to(torch.bfloat16 if dtype == "bf16" else model.dtype)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))  # safetensors
    processor.save_pretrained(str(out))
    return out
