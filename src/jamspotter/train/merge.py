"""Merge a LoRA adapter into its base model: bf16 safetensors + processor, loadable by transformers/vLLM."""

from __future__ import annotations

from pathlib import Path

from jamspotter.errors import JamspotterError
from jamspotter.formats.contract import RunContract
from jamspotter.outputs import check_output_dir, output_dir


def merge_adapter(adapter: str | Path, out: str | Path, *, base: str | None = None, dtype: str = "stored",
                  overwrite: bool = False) -> Path:
    """Load base (from adapter_config.json unless given), apply the adapter, merge, save to `out`.

    `dtype` "stored" keeps the dtype the base model is stored in (bf16 for the released Qwen-VL models),
    so the merged model answers as base + adapter do; bf16 / fp16 / fp32 choose one.
    A folder without adapter_config.json (a full fine-tune) is re-saved in `dtype` as it is. The run
    contract (jamspotter.json) goes along, so the merged model is asked exactly what the adapter was.
    `out` follows the output policy: a new folder, or one jamspotter wrote with `overwrite`.
    """
    from peft import PeftModel

    from jamspotter.models.loading import adapter_base, load_model, load_processor, resolve_dtype

    adapter, out = Path(adapter), Path(out)
    if not adapter.is_dir():
        raise JamspotterError(f"{adapter}: no such adapter folder")
    check_output_dir(out, overwrite=overwrite, inputs=[adapter])
    contract = RunContract.load(adapter)
    if (adapter / "adapter_config.json").is_file():
        base = base or adapter_base(adapter)
        dtype = stored_dtype(base) if dtype == "stored" else dtype
        model, processor = load_model(base, dtype=dtype)
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    elif (adapter / "config.json").is_file():
        dtype = stored_dtype(adapter) if dtype == "stored" else dtype
        model, processor = load_model(adapter, dtype=dtype)
    else:
        raise JamspotterError(f"{adapter}: neither a LoRA adapter nor a model folder")
    if (adapter / "preprocessor_config.json").is_file() or (adapter / "processor_config.json").is_file():
        processor = load_processor(adapter)  # the processor (pixel budget) the model was trained with
    model.to(resolve_dtype(dtype))
    with output_dir(out, "train merge", overwrite=overwrite, inputs=[adapter]) as stage:
        model.save_pretrained(str(stage))  # safetensors
        processor.save_pretrained(str(stage))
        if contract is not None:
            contract.save(stage)
    return out


def stored_dtype(name_or_path: str | Path) -> str:
    """bf16 / fp16 / fp32: the dtype a model's config says its weights are stored in (fp32 when it says none)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(str(name_or_path), trust_remote_code=False)
    stored = str(getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None) or "float32")
    return {"bfloat16": "bf16", "torch.bfloat16": "bf16", "float16": "fp16", "torch.float16": "fp16"}.get(stored,
                                                                                                       "fp32")
