"""Tiny random models of the REAL Qwen-VL classes, for offline tests and CPU demos.

Each is the real config of its family (from $JAMSPOTTER_REFERENCE_DATA/qwen_configs/ when set, else
the transformers default config of the class) scaled down: same structure, 2 layers, narrow widths,
mrope_section summing to head_dim/2, token ids taken from the tokenizer that is saved beside it. The
tokenizer is Qwen's real one when that folder is set (or on request), else a small byte-level BPE
trained on the fly with Qwen's special tokens, so tests run anywhere and the vocabulary stays small.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jamspotter.models.families import (
    QWEN3_EXTRA_TOKENS,
    QWEN_SPECIAL_TOKENS,
    QWEN_TOOL_TOKENS,
    REFERENCE_CONFIG,
    check_family,
    reference_data_dir,
)

# Short forms of the real templates (used when no reference data folder is set). Both render images
# and videos in any message's content list, which the crop-call samples rely on.
_QWEN25_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_QWEN3_TEMPLATE = (
    "{%- for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{%- if message['content'] is string %}{{ message['content'] }}"
    "{%- else %}{%- for content in message['content'] %}"
    "{%- if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif 'text' in content %}{{ content['text'] }}{%- endif %}{%- endfor %}{%- endif %}"
    "<|im_end|>\n{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)

# Text the fallback BPE is trained on: what the prompts and targets of all three families contain.
_CORPUS = [
    "You are a helpful assistant.",
    "Locate every jam-causing object on the conveyor belt and output the bbox coordinates in JSON format.",
    "Detect all objects on the belt. Report bbox_2d and label for each one. How many are there?",
    'Is there plastic film, rope, hose, strap, wire, cable, tangler, textile, bag, net, cardboard, paper, '
    'glass, metal, can, bottle, container, trash, plastic, other on the image? Answer yes or no.',
    '```json\n[\n\t{"bbox_2d": [12, 345, 678, 90], "label": "plastic_film"},\n\t{"bbox_2d": [1, 2, 3, 4], '
    '"label": "rope"}\n]\n```',
    "<|object_ref_start|>rope<|object_ref_end|><|box_start|>(12,345),(678,999)<|box_end|>",
    '<tool_call>\n{"name": "crop", "arguments": {"bbox_2d": [10, 20, 30, 40]}}\n</tool_call>',
    "<think>The object is long and thin, so it may wrap around a screen.</think><answer>yes</answer>",
    "The belt speed is 2.5 m/s; trajectory velocity curvature point_2d frame time seconds.",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 0.5 , . : ; ( ) [ ] { } \" ' - _ / \n \t",
]


def _fallback_tokenizer(family: str, vocab_size: int = 600) -> Any:
    """A small byte-level BPE with Qwen's pre-tokenizer and special tokens, wrapped as `Qwen2Tokenizer`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(_CORPUS * 4, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    tok = Qwen2Tokenizer(vocab=state["vocab"], merges=merges, unk_token=None)
    tok.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS[1:])})
    tok.add_special_tokens({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})  # as Qwen's own tokenizer
    extra = QWEN_TOOL_TOKENS + (QWEN3_EXTRA_TOKENS if family == "qwen3-vl" else ())
    tok.add_tokens(list(extra))
    return tok


def qwen_tokenizer(shared: Path, family: str) -> Any:
    """Qwen's real tokenizer from `shared/qwen2_5_vl_tokenizer` (one for the three generations); Qwen3-VL adds
    its extra tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(shared / "qwen2_5_vl_tokenizer")
    if family == "qwen3-vl":
        tok.add_tokens(list(QWEN3_EXTRA_TOKENS))
    return tok


def _chat_template(shared: Path | None, family: str) -> str:
    if shared is not None:
        path = shared / "qwen_configs" / REFERENCE_CONFIG[family] / "chat_template.json"
        if path.is_file():
            return json.loads(path.read_text())["chat_template"]
    return _QWEN3_TEMPLATE if family == "qwen3-vl" else _QWEN25_TEMPLATE


def _base_config(shared: Path | None, family: str) -> Any:
    from transformers import AutoConfig, Qwen2_5_VLConfig, Qwen2VLConfig, Qwen3VLConfig

    if shared is not None and (shared / "qwen_configs" / REFERENCE_CONFIG[family]).is_dir():
        return AutoConfig.from_pretrained(shared / "qwen_configs" / REFERENCE_CONFIG[family])
    return {"qwen2-vl": Qwen2VLConfig, "qwen2.5-vl": Qwen2_5_VLConfig, "qwen3-vl": Qwen3VLConfig}[family]()


def tiny_config(family: str, tokenizer: Any, *, hidden_size: int = 64, layers: int = 2,
                shared: Path | None = None) -> Any:
    """The family's real config scaled down; token ids and vocabulary taken from `tokenizer`."""
    check_family(family)
    cfg = _base_config(shared, family)
    text, vision = cfg.text_config, cfg.vision_config
    heads, head_dim = 4, hidden_size // 4
    text.hidden_size, text.intermediate_size = hidden_size, 2 * hidden_size
    text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads = layers, heads, 2
    text.max_window_layers = layers
    if hasattr(text, "layer_types") and text.layer_types is not None:
        text.layer_types = ["full_attention"] * layers
    if family == "qwen3-vl":
        text.head_dim = head_dim
    # mrope splits head_dim/2 rotary frequencies between (t, h, w); keep the real proportions.
    half = head_dim // 2
    section = [half // 4, (half - half // 4) // 2] if family != "qwen3-vl" else [half // 2, half // 4]
    section.append(half - sum(section))
    rope = dict(text.rope_parameters or {})
    rope["mrope_section"] = section
    text.rope_parameters = rope

    vision.depth, vision.num_heads = 2, 2
    if family == "qwen2-vl":
        vision.embed_dim, vision.mlp_ratio, vision.hidden_size = 32, 2, hidden_size
    else:
        vision.hidden_size, vision.intermediate_size, vision.out_hidden_size = 32, 64, hidden_size
    if family == "qwen2.5-vl":
        vision.fullatt_block_indexes = [1]
    if family == "qwen3-vl":
        vision.deepstack_visual_indexes = [0]

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    cfg.image_token_id, cfg.video_token_id = ids["<|image_pad|>"], ids["<|video_pad|>"]
    cfg.vision_start_token_id, cfg.vision_end_token_id = ids["<|vision_start|>"], ids["<|vision_end|>"]
    if hasattr(cfg, "vision_token_id"):
        cfg.vision_token_id = ids["<|vision_pad|>"]
    text.bos_token_id, text.eos_token_id, text.pad_token_id = ids["<|endoftext|>"], ids["<|im_end|>"], ids[
        "<|endoftext|>"]
    n = len(tokenizer)
    text.vocab_size = max(text.vocab_size, n) if n > 150_000 else -(-n // 64) * 64
    return cfg


def _processor(family: str, tokenizer: Any, shared: Path | None) -> Any:
    from transformers import (
        AutoImageProcessor,
        AutoVideoProcessor,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    ref = shared / "qwen_configs" / REFERENCE_CONFIG[family] if shared is not None else None
    if ref is not None and (ref / "preprocessor_config.json").is_file():
        image_processor = AutoImageProcessor.from_pretrained(ref)
        video_processor = (
            AutoVideoProcessor.from_pretrained(ref) if (ref / "video_preprocessor_config.json").is_file() else None
        )
    else:
        qwen3 = family == "qwen3-vl"
        mean = [0.5] * 3 if qwen3 else [0.48145466, 0.4578275, 0.40821073]
        std = [0.5] * 3 if qwen3 else [0.26862954, 0.26130258, 0.27577711]
        patch = 16 if qwen3 else 14
        image_processor = Qwen2VLImageProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2,
                                                image_mean=mean, image_std=std)
        video_processor = None
    if video_processor is None:
        vp_cls = Qwen3VLVideoProcessor if family == "qwen3-vl" else Qwen2VLVideoProcessor
        video_processor = vp_cls(patch_size=image_processor.patch_size, merge_size=2, temporal_patch_size=2,
                                 image_mean=image_processor.image_mean, image_std=image_processor.image_std)
    cls = {"qwen2-vl": Qwen2VLProcessor, "qwen2.5-vl": Qwen2_5_VLProcessor, "qwen3-vl": Qwen3VLProcessor}[family]
    return cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
               chat_template=_chat_template(shared, family))


def build_tiny_model(family: str, out_dir: str | Path, *, real_tokenizer: bool | None = None,
                     hidden_size: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Build, randomly initialise and save a tiny model of `family`'s real class plus its processor.

    real_tokenizer: None -> Qwen's real tokenizer when $JAMSPOTTER_REFERENCE_DATA has it, else the small BPE.
    Returns `out_dir`, loadable with `jamspotter.models.load_model` (or any `from_pretrained`).
    """
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    check_family(family)
    shared = reference_data_dir()
    has_real = shared is not None and (shared / "qwen2_5_vl_tokenizer" / "tokenizer.json").is_file()
    if real_tokenizer and not has_real:
        raise FileNotFoundError(
            "Qwen's tokenizer ($JAMSPOTTER_REFERENCE_DATA/qwen2_5_vl_tokenizer) is not available here")
    use_real = has_real if real_tokenizer is None else real_tokenizer
    tokenizer = qwen_tokenizer(shared, family) if use_real else _fallback_tokenizer(family)
    tokenizer.padding_side = "left"  # batched generation
    config = tiny_config(family, tokenizer, hidden_size=hidden_size, layers=layers, shared=shared)
    config.dtype = "float32"

    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    im_end, eot = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    model.generation_config = GenerationConfig(eos_token_id=[im_end, eot], pad_token_id=eot, do_sample=False)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    _processor(family, tokenizer, shared).save_pretrained(out)
    return out
