"""Load a Qwen-VL model + processor by hub id or local path, optionally quantized (QLoRA).

The same code path serves hub ids, local checkpoints and the tiny test models. Nothing here
runs remote code: the three families are native transformers classes.
"""

from __future__ import annotations

import functools
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

    name_or_path = check_model_source(name_or_path)
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


def _budget(size: Any, lo: int | None, hi: int | None) -> dict[str, int]:
    """A processor's `size` dict with the asked-for pixel bounds (shortest_edge/longest_edge are pixel COUNTS)."""
    out = {k: int(v) for k, v in dict(size or {}).items() if k in ("shortest_edge", "longest_edge") and v}
    if lo is not None:
        out["shortest_edge"] = int(lo)
    if hi is not None:
        out["longest_edge"] = int(hi)
        if lo is None and out.get("shortest_edge", 0) > hi:
            out["shortest_edge"] = int(hi)  # only a smaller budget was asked for
    return out


def load_processor(name_or_path: str | Path, *, min_pixels: int | None = None, max_pixels: int | None = None,
                   video_min_pixels: int | None = None, video_max_pixels: int | None = None) -> Any:
    """AutoProcessor with the image and the video pixel budgets set separately, left padding, and a chat
    template that renders the crop tool (`jamspotter.models.chat.use_tool_template`).

    Each budget goes to its own sub-processor as `size={"shortest_edge", "longest_edge"}` (the form
    transformers 5.23 reads); a budget given to AutoProcessor itself would reach the video processor too
    and be passed again, deprecated, at every call. Released Qwen2/2.5-VL configs also spell the budget
    `min_pixels`/`max_pixels`, which the image processor applies over `size`, so those are set as well.
    """
    from transformers import AutoImageProcessor, AutoProcessor, AutoVideoProcessor

    path = str(check_model_source(name_or_path))
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=False)
    for name, auto, lo, hi in (("image_processor", AutoImageProcessor, min_pixels, max_pixels),
                               ("video_processor", AutoVideoProcessor, video_min_pixels, video_max_pixels)):
        if lo is None and hi is None:
            continue
        loaded = getattr(processor, name, None)
        stored = loaded.size if loaded is not None else auto.from_pretrained(path, trust_remote_code=False).size
        size = _budget(stored, lo, hi)
        # set after loading: given to AutoProcessor.from_pretrained they would end up in save_pretrained
        setattr(processor, name, auto.from_pretrained(path, trust_remote_code=False, size=size,
                                                      min_pixels=size["shortest_edge"],
                                                      max_pixels=size["longest_edge"]))
    processor.tokenizer.padding_side = "left"
    video = getattr(processor, "video_processor", None)
    if video is not None and hasattr(video, "cap_pixels_per_frame") and video.cap_pixels_per_frame is None:
        video.cap_pixels_per_frame = True  # the reference (qwen-vl-utils) per-frame cap, transformers' next default
    from jamspotter.models.chat import use_tool_template

    return use_tool_template(processor)


def check_model_source(name_or_path: str | Path) -> str | Path:
    """A name that looks local must be a model folder; anything else is left to the hub as an `org/name` id.

    Local: it exists, starts with `.`, `/` or `~`, has more than one `/`, or its parent folder exists here
    (`runs/final` beside a `runs/` folder). Caught here so a mistyped run folder fails at once with one
    line instead of retrying the model hub.
    """
    text = str(name_or_path)
    local = Path(text).expanduser()
    looks_local = (local.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1
                   or text.endswith(("/", "\\")) or "\\" in text or local.parent.is_dir())
    if looks_local and not any((local / f).is_file() for f in MODEL_FILES):
        what = "no such folder" if not local.exists() else f"not a model folder (none of {', '.join(MODEL_FILES)})"
        raise JamspotterError(f"{text}: {what}")
    if not looks_local:
        check_hub_id(text)
    return local if looks_local else text


@functools.lru_cache(maxsize=32)
def check_hub_id(repo_id: str) -> None:
    """A name that is no local folder must be a model the hub has (or its cache holds): asked once, quickly.

    Without this, a mistyped local path (`runs/final` with no `runs/` here) waits through the hub
    client's retries before failing; one metadata request answers at once. Offline mode
    (HF_HUB_OFFLINE=1) and cached models skip the request.
    """
    import os

    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RepositoryNotFoundError

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return
    try:
        if any(isinstance(try_to_load_from_cache(repo_id, f), str) for f in ("config.json", "adapter_config.json")):
            return
        HfApi().model_info(repo_id, timeout=10)
    except HFValidationError:
        raise JamspotterError(f"{repo_id}: no such local folder, and not a valid hub id") from None
    except RepositoryNotFoundError:
        raise JamspotterError(f"{repo_id}: no such local folder, and no such model on the hub") from None
    except HfHubHTTPError:
        return  # gated, private or a hub hiccup: from_pretrained (with the user's token) says what is wrong
    except Exception as e:  # the hub cannot be reached (DNS, connection refused, timeout)
        raise JamspotterError(f"{repo_id}: no such local folder, and the model hub cannot be reached to fetch it "
                              f"({type(e).__name__}: {' '.join(str(e).split())})") from None


MODEL_FILES = ("config.json", "adapter_config.json", "processor_config.json", "preprocessor_config.json")


def adapter_base(folder: str | Path) -> str | None:
    """The base model a local LoRA adapter folder was trained on (adapter_config.json), else None."""
    folder = Path(folder)
    cfg = folder / "adapter_config.json"
    if not folder.is_dir() or (folder / "config.json").is_file() or not cfg.is_file():
        return None
    import json

    base = json.loads(cfg.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise JamspotterError(f"{cfg}: no base_model_name_or_path (train merge takes --base)")
    return str(base)


def ignore_peer_deprecations() -> None:
    """Silence the one deprecation PEFT and TRL trigger on every model we train: they still read
    `is_gradient_checkpointing`, which transformers 5 renamed; a user can do nothing about it."""
    import warnings

    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def load_model(
    name_or_path: str | Path,
    family: str = "auto",
    quantization: Quantization = None,
    dtype: str = "auto",
    attn: str | None = None,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    video_min_pixels: int | None = None,
    video_max_pixels: int | None = None,
    device_map: Any = None,
    trainable_adapter: bool = False,
) -> tuple[Any, Any]:
    """Load `(model, processor)` through AutoModelForImageTextToText / AutoProcessor.

    family: "auto" reads config.model_type; an explicit family that disagrees with the config is an error.
    quantization: None, "4bit" (NF4 + double quant, for QLoRA) or "8bit"; needs bitsandbytes and CUDA.
    attn: attention implementation ("sdpa", "flash_attention_2", "eager"); None lets transformers choose.
    A LoRA adapter folder (what `train sft` saves for LoRA/QLoRA) loads its base with the adapter applied,
    and the processor saved beside the adapter (the pixel budget it was trained with); `trainable_adapter`
    keeps that adapter trainable (GRPO continues the SFT adapter).
    """
    from transformers import AutoModelForImageTextToText

    ignore_peer_deprecations()

    name_or_path = check_model_source(name_or_path)
    base = adapter_base(name_or_path)
    detected = detect_family(base or name_or_path)
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
    model = AutoModelForImageTextToText.from_pretrained(str(base or name_or_path), **kwargs)
    if base is not None:
        from peft import PeftModel

        if trainable_adapter and qcfg is not None:  # QLoRA goes on training: the k-bit base gets what SFT gave it
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
        model = PeftModel.from_pretrained(model, str(name_or_path), is_trainable=trainable_adapter)
    processor = load_processor(name_or_path, min_pixels=min_pixels, max_pixels=max_pixels,
                               video_min_pixels=video_min_pixels, video_max_pixels=video_max_pixels)
    model.jamspotter_family = detected  # so callers need not re-read the config
    return model, processor


def _local_device_map() -> dict[str, int]:
    """Put a quantized model whole on this process's GPU (one copy per rank under DDP)."""
    import os

    return {"": int(os.environ.get("LOCAL_RANK", 0))}
