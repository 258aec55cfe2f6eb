"""The SFT training config: one YAML file, validated by pydantic, overridable with `--set a.b=value`.

Every field carries its documentation (`jamspotter train config` prints them). Validation
(`load_config`) happens before any model is loaded, so a typo costs a second, not a model load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jamspotter.errors import JamspotterError
from jamspotter.train.rewards import RewardWeights

PACKAGED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Section):
    """Which model to fine-tune and how to load it."""

    name: str = Field(description="hub id or local folder of the base model (e.g. Qwen/Qwen2.5-VL-7B-Instruct)")
    family: Literal["auto", "qwen2-vl", "qwen2.5-vl", "qwen3-vl"] = Field(
        "auto", description="model generation; 'auto' reads config.model_type, anything else must agree with it")
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="weights/compute dtype; auto = bf16 on a bf16 GPU, else fp32")
    attn: Literal["sdpa", "eager", "flash_attention_2"] | None = Field(
        None, description="attention implementation; null lets transformers choose (sdpa)")


class DataConfig(_Section):
    """Where the samples are and what the model sees of them."""

    train: str = Field(description="training samples: a samples.jsonl file or a folder holding one")
    eval: str | None = Field(
        None, description="validation samples (its split=val ones when it is split); null: train's split=val samples")
    eval_fraction: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="when no validation samples exist, hold out this fraction of the unsplit train samples "
                    "(grouped by image, by seed)")
    min_pixels: int = Field(3136, gt=0, description="smallest image area after smart_resize (bounds image tokens)")
    max_pixels: int = Field(
        401408, gt=0, description="largest image area after smart_resize; tokens ~= pixels / 784 (patch 14) or / 1024")
    detection: float = Field(1.0, ge=0.0, description="weight of plain box-detection examples per image with objects")
    count: float = Field(
        0.0, ge=0.0, description="probability of adding a counting example per image (absent classes answer 0)")
    region: float = Field(
        0.0, ge=0.0, description="probability of adding a region check (fully/partially inside) per image")
    vqa: bool = Field(
        True, description="train on `qa` turns (think/answer with crop tool calls) when samples have them")
    clips: bool = Field(True, description="train on clips (video/frames) when samples have them")
    video_min_pixels: int | None = Field(
        None, gt=0, description="smallest frame area of clips after smart_resize (null: the processor's own)")
    video_max_pixels: int | None = Field(
        None, gt=0, description="largest frame area of clips (null: the processor's own); tokens ~ frames/2 x this")
    clip_frames: int = Field(8, ge=2, description="frames sampled from a clip (even; decoded with av)")
    classes: list[str] | None = Field(
        None, description="class names every detection prompt lists (null: the taxonomy's + every label in the data)")
    jam_only: bool = Field(False, description="detection asks for and targets list only jam-causing items")
    with_reason: bool | None = Field(
        None, description="jam-only answers give a one-line reason per item (null: when the training data has reasons)")

    @model_validator(mode="after")
    def _pixels(self) -> DataConfig:
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels {self.min_pixels} is larger than max_pixels {self.max_pixels}")
        if (self.video_min_pixels or 0) > (self.video_max_pixels or float("inf")):
            raise ValueError(f"video_min_pixels {self.video_min_pixels} is larger than video_max_pixels "
                             f"{self.video_max_pixels}")
        if self.with_reason and not self.jam_only:
            raise ValueError("with_reason applies to jam-only answers; set jam_only: true")
        return self


class FinetuneConfig(_Section):
    """What trains: LoRA adapters, QLoRA (4-bit base + LoRA) or every weight."""

    method: Literal["lora", "qlora", "full"] = Field("lora", description="lora, qlora (4-bit NF4 base) or full")
    lora_r: int = Field(16, gt=0, description="LoRA rank")
    lora_alpha: int = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha / r)")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout on the LoRA input")
    lora_targets: Literal["all-linear", "language", "language+vision"] | list[str] = Field(
        "language", description="all-linear (every unfrozen part), language only, language+vision, or module names")
    freeze_vision: bool = Field(True, description="keep the vision tower (ViT blocks, patch embed) frozen")
    freeze_merger: bool = Field(
        False, description="keep the merger/aligner frozen; unfrozen it trains fully (LoRA: modules_to_save)")
    freeze_language: bool = Field(False, description="keep the language model frozen")


class TrainConfig(_Section):
    """Optimisation, checkpoints and logging (maps onto TRL's SFTConfig)."""

    output_dir: str = Field("runs/sft", description="checkpoints, the final adapter/model and logs go here")
    lr: float = Field(2e-4, gt=0.0, description="peak learning rate")
    scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "cosine", description="learning-rate schedule after warmup")
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0, description="fraction of steps spent warming up")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0.0, description="gradient clipping norm")
    epochs: float = Field(3.0, gt=0.0, description="passes over the training set")
    max_steps: int = Field(-1, description="stop after this many optimizer steps (-1: use epochs)")
    batch_size: int = Field(1, gt=0, description="samples per device per step")
    grad_accum: int = Field(8, gt=0, description="gradient accumulation steps (effective batch = batch*accum*gpus)")
    gradient_checkpointing: bool = Field(True, description="recompute activations to save memory (slower)")
    bf16: bool | None = Field(None, description="bf16 mixed precision; null = on when the GPU supports it")
    seed: int = Field(0, description="seed for data order, dropout and initialisation of adapters")
    eval_steps: int = Field(0, ge=0, description="validation loss every N steps (0: at the end of each epoch)")
    f1_steps: int = Field(0, ge=0, description="detection F1 on the held-out slice every N steps (0: off)")
    f1_samples: int = Field(16, ge=1, description="size of the held-out slice for detection F1")
    f1_max_new_tokens: int = Field(256, gt=0, description="generation budget per image for the F1 callback")
    save_steps: int = Field(200, gt=0, description="save a checkpoint every N steps")
    save_total_limit: int | None = Field(3, description="keep at most this many checkpoints (null: all)")
    logging_steps: int = Field(10, gt=0, description="log loss/lr every N steps")
    report_to: Literal["none", "tensorboard", "wandb"] | list[Literal["tensorboard", "wandb"]] = Field(
        "none", description="where to log: none, tensorboard, wandb (or a list)")
    cpu_threads: int | None = Field(
        None, ge=1, description="torch CPU threads (1 is fastest for tiny models on a busy machine; null: default)")
    dataloader_workers: int = Field(0, ge=0, description="data loader processes (images decode in them)")


class GRPOSection(_Section):
    """Reinforcement fine-tuning after SFT (TRL's GRPOTrainer) with region rewards and the crop tool."""

    output_dir: str | None = Field(None, description="GRPO checkpoints and final/ (null: <train.output_dir>/grpo)")
    max_steps: int = Field(200, gt=0, description="optimizer steps of GRPO")
    lr: float = Field(1e-5, gt=0.0, description="peak learning rate (RL steps are noisy: far below SFT's)")
    batch_size: int = Field(
        4, gt=0, description="completions per device per step; a multiple of num_generations (whole groups)")
    grad_accum: int = Field(1, gt=0, description="gradient accumulation steps")
    num_generations: int = Field(4, ge=2, description="completions sampled per prompt (the group GRPO compares)")
    beta: float = Field(0.04, ge=0.0, description="KL penalty towards the SFT model (0: no reference copy)")
    temperature: float = Field(1.0, gt=0.0, description="sampling temperature of rollouts")
    max_completion_length: int = Field(256, gt=0, description="tokens per completion, tool responses included")
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = Field(
        "dapo", description="TRL loss normalisation (dapo: token-level, no length bias)")
    rewards: RewardWeights = Field(
        default_factory=RewardWeights,
        description="weights of the reward functions, the jam weight and the crop calls allowed per completion")
    prompts: int | None = Field(None, gt=0, description="use at most this many training prompts (null: all)")
    use_vllm: bool = Field(False, description="generate rollouts with vLLM (needs `pip install vllm`, a GPU)")
    vllm_mode: Literal["colocate", "server"] = Field(
        "colocate", description="vLLM in the training process (colocate) or a `trl vllm-serve` server")
    save_steps: int = Field(100, gt=0, description="save a checkpoint every N steps")
    logging_steps: int = Field(5, gt=0, description="log rewards, KL, lengths and tool use every N steps")

    @model_validator(mode="after")
    def _groups(self) -> GRPOSection:
        if (self.batch_size * self.grad_accum) % self.num_generations:
            raise ValueError(f"batch_size x grad_accum ({self.batch_size * self.grad_accum}) must be a multiple of "
                             f"num_generations ({self.num_generations})")
        return self


class SFTRunConfig(_Section):
    """A complete SFT run."""

    model: ModelConfig
    data: DataConfig
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    grpo: GRPOSection = Field(default_factory=GRPOSection)

    @model_validator(mode="after")
    def _consistent(self) -> SFTRunConfig:
        ft = self.finetune
        if ft.method == "full" and ft.freeze_vision and ft.freeze_merger and ft.freeze_language:
            raise ValueError("finetune: full fine-tuning with every part frozen trains nothing")
        if ft.lora_targets == "language+vision" and ft.freeze_vision and ft.method != "full":
            raise ValueError("finetune: lora_targets language+vision needs freeze_vision: false")
        return self

    @property
    def quantization(self) -> str | None:
        """4bit for QLoRA, else None."""
        return "4bit" if self.finetune.method == "qlora" else None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings (value parsed as YAML) to a nested dict."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise JamspotterError(f"--set {item!r}: expected key=value, e.g. train.lr=1e-4")
        node = raw
        parts = key.strip().split(".")
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise JamspotterError(f"--set {item!r}: {p} is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
    return raw


def resolve_config_path(path: str | Path) -> Path:
    """A file path, or the name of a packaged config (`tiny`, `qwen2.5-vl-7b-qlora`, ...)."""
    p = Path(path)
    if p.is_file():
        return p
    packaged = PACKAGED_CONFIGS / f"{p.name.removesuffix('.yaml')}.yaml"
    if packaged.is_file():
        return packaged
    raise JamspotterError(f"{path}: no such config file (packaged ones: {', '.join(packaged_configs())})")


def packaged_configs() -> list[str]:
    """Names of the example configs shipped in jamspotter/configs/."""
    return sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml"))


def _one_line(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    msg = first.get("msg", "invalid")
    if first.get("type") == "extra_forbidden":
        msg = "unknown key"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {loc + ': ' if loc else ''}{msg}{more}"


def load_config(path: str | Path | None, overrides: list[str] | None = None, *, check_files: bool = True,
                check_model: bool = True) -> SFTRunConfig:
    """Read, override and validate a config; files and the model family are checked too. One-line errors."""
    raw: dict[str, Any] = {}
    source = "config"
    if path is not None:
        p = resolve_config_path(path)
        source = str(p)
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise JamspotterError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise JamspotterError(f"{p}: expected a mapping of sections (model, data, finetune, train)")
    raw = apply_overrides(raw, overrides or [])
    try:
        cfg = SFTRunConfig.model_validate(raw)
    except ValidationError as e:
        overridden = {o.partition("=")[0].strip() for o in overrides or []}
        first = ".".join(str(p) for p in e.errors()[0].get("loc", ()))
        raise JamspotterError(_one_line(e, "--set" if first in overridden else source)) from None
    if check_files:
        check_data_files(cfg, source)
    if check_model:
        check_model_family(cfg, source)
    return cfg


def check_data_files(cfg: SFTRunConfig, source: str = "config") -> None:
    """data.train / data.eval must exist (a samples.jsonl or a folder with one)."""
    from jamspotter.data.io import samples_path

    for key in ("train", "eval"):
        value = getattr(cfg.data, key)
        if value is not None and not samples_path(value).is_file():
            raise JamspotterError(f"{source}: data.{key}: {value}: no such samples file")


def check_model_family(cfg: SFTRunConfig, source: str = "config") -> None:
    """A local model folder must match `model.family`; hub ids are checked at load time."""
    from jamspotter.models.loading import detect_family

    if cfg.model.name.startswith("tiny:"):
        from jamspotter.models.families import check_family

        tiny = check_family(cfg.model.name.removeprefix("tiny:"))
        if cfg.model.family not in ("auto", tiny):
            raise JamspotterError(f"{source}: model.family is {cfg.model.family} but the model is a tiny {tiny}")
        return
    local = Path(cfg.model.name)
    if cfg.model.family == "auto" or not (local / "config.json").is_file():
        return
    found = detect_family(local)
    if found != cfg.model.family:
        raise JamspotterError(f"{source}: model.family is {cfg.model.family} but {local} is a {found} model")


def describe_fields(model: type[BaseModel] = SFTRunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, description) for every field, for docs and `train config`."""
    rows = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows += describe_fields(ann, f"{prefix}{name}.")
        else:
            default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
            rows.append((f"{prefix}{name}", default, field.description or ""))
    return rows


def dump_config(cfg: SFTRunConfig, with_docs: bool = False) -> str:
    """The config as YAML (what a run actually used; saved beside its checkpoints).

    `with_docs` adds each field's meaning as a trailing comment (what `train config --config X` prints).
    """
    text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    if not with_docs:
        return text
    docs = {key: doc for key, _, doc in describe_fields()}
    lines, path = [], []
    for line in text.splitlines():
        indent = (len(line) - len(line.lstrip(" "))) // 2
        key = line.strip().split(":", 1)[0]
        if line.strip() and not line.lstrip().startswith("-") and ":" in line:
            path = path[:indent] + [key]
            doc = docs.get(".".join(path))
            if doc:
                line = f"{line}  # {doc}"
        lines.append(line)
    return "\n".join(lines) + "\n"
