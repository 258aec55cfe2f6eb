"""jamspotter.models: tiny real-class models, loading, family checks, LoRA wiring."""

from __future__ import annotations

from pathlib import Path

import pytest

from jamspotter.errors import JamspotterError
from jamspotter.models import FAMILIES, apply_lora, count_parameters, detect_family, freeze_parts, load_model
from jamspotter.models.tiny import build_tiny_model

CLASSES = {"qwen2-vl": "Qwen2VLForConditionalGeneration", "qwen2.5-vl": "Qwen2_5_VLForConditionalGeneration",
           "qwen3-vl": "Qwen3VLForConditionalGeneration"}



@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny model per family with the small fallback tokenizer (no shared data needed)."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {f: build_tiny_model(f, root / f, real_tokenizer=False) for f in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_model_is_the_real_class_and_generates(tiny_models: dict[str, Path], family: str) -> None:
    from PIL import Image

    model, processor = load_model(tiny_models[family], max_pixels=56 * 56 * 4)
    assert type(model).__name__ == CLASSES[family]
    assert detect_family(tiny_models[family]) == family
    assert (tiny_models[family] / "model.safetensors").is_file()
    tok, cfg = processor.tokenizer, model.config
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    text_cfg = cfg.text_config
    head_dim = getattr(text_cfg, "head_dim", None) or text_cfg.hidden_size // text_cfg.num_attention_heads
    assert sum(text_cfg.rope_parameters["mrope_section"]) == head_dim // 2
    assert text_cfg.vocab_size >= len(tok)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find rope."}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[Image.new("RGB", (112, 112), (90, 90, 90))], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_real_tokenizer_ids_match_qwen(shared_data: Path, tmp_path: Path) -> None:
    """With Qwen's tokenizer the tiny Qwen3-VL uses the released ids (image pad 151655, <think> 151667)."""
    out = build_tiny_model("qwen3-vl", tmp_path / "q3", real_tokenizer=True)
    model, processor = load_model(out)
    tok = processor.tokenizer
    assert tok.convert_tokens_to_ids("<|image_pad|>") == 151655 == model.config.image_token_id
    assert tok.convert_tokens_to_ids("<think>") == 151667
    assert model.config.text_config.vocab_size == 151936


def test_family_mismatch_and_quantization_errors(tiny_models: dict[str, Path]) -> None:
    with pytest.raises(JamspotterError, match="is a qwen2-vl model"):
        load_model(tiny_models["qwen2-vl"], family="qwen3-vl")
    with pytest.raises(JamspotterError, match="unknown model family"):
        load_model(tiny_models["qwen2-vl"], family="llava")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(JamspotterError, match="bitsandbytes|CUDA"):
            load_model(tiny_models["qwen2.5-vl"], quantization="4bit")


def test_quantization_keeps_vision_and_head_unquantized(tiny_models: dict[str, Path]) -> None:
    """The skip list must match the real module names, or bitsandbytes would quantize the vision tower."""
    from transformers.quantizers.quantizers_utils import should_convert_module

    from jamspotter.models.loading import QUANT_SKIP_MODULES

    model, _ = load_model(tiny_models["qwen2.5-vl"])
    import torch

    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    converted = [n for n in linear if should_convert_module(n, QUANT_SKIP_MODULES)]
    assert converted and all(n.startswith("model.language_model.") for n in converted)
    assert not any(n.startswith("model.visual.") or n == "lm_head" for n in converted)


def test_lora_targets_and_freezing(tiny_models: dict[str, Path]) -> None:
    model, _ = load_model(tiny_models["qwen2.5-vl"])
    peft_model = apply_lora(model, r=4, alpha=8, targets="language", freeze_vision=True, freeze_merger=False)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("language_model" in n and "lora_A" in n for n in trainable)
    assert not any(".visual.blocks." in n for n in trainable)  # frozen vision tower
    assert any(".visual.merger." in n and "lora" not in n for n in trainable)  # merger trains fully
    assert not any("lm_head" in n for n in trainable)

    model, _ = load_model(tiny_models["qwen3-vl"])
    peft_model = apply_lora(model, r=4, targets="all-linear", freeze_vision=False, freeze_merger=True)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any(".visual.blocks." in n and "lora_B" in n for n in trainable)
    assert not any("merger" in n for n in trainable)

    model, _ = load_model(tiny_models["qwen2-vl"])
    freeze_parts(model, freeze_vision=True, freeze_merger=True, freeze_language=False)
    trainable, total = count_parameters(model)
    assert 0 < trainable < total
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("model.visual."))
    with pytest.raises(JamspotterError):
        apply_lora(load_model(tiny_models["qwen2-vl"])[0], targets="language+vision", freeze_vision=True)
