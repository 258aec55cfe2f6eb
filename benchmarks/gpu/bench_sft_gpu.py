"""Benchmark: SFT step time, throughput and peak memory on one CUDA GPU, jamspotter's path against plain TRL.

Each arm is one short SFTTrainer run in its own process on the real architecture of Qwen2.5-VL-7B or
Qwen3-VL-8B (random bf16 weights built from the real config, saved once per model and loaded by every arm
of that model; 4-bit arms quantize that same checkpoint at load with the same NF4 settings):

- `ours`: jamspotter's SFT path: the shipped `qwen2.5-vl-7b-qlora` config with this run's overrides,
  `train.sft.prepare_model` (our `load_model` + `apply_lora`), the run contract's format, our `SFTCollator`,
  `sft_args` -> SFTTrainer;
- `trl`: a plain TRL run: `from_pretrained` (+ BitsAndBytesConfig), `LoraConfig` via SFTTrainer's
  `peft_config`, a `messages` + `images` dataset and TRL's own vision collator.

Both arms see the same rows (synthetic belt scenes, the same prompt and answer text), the same pixel
budget (stored in the checkpoint's processor), LoRA rank/alpha/dropout/targets, batch, gradient
accumulation, learning rate and schedule. Measured per arm: the wall time between consecutive optimizer
steps (CUDA-synchronised, data loading included), median over the timed steps after `--warmup`; samples/s
and tokens/s (non-padding tokens) from that median; peak allocated and reserved GPU memory during training;
memory after loading; `parameters_b` counts real parameters (a 4-bit weight stores two values per byte:
its quant_state's shape is counted, not the packed storage) and is checked against the config's count.

Arm names are `MODEL-METHOD-GC-ATTN-IMPL`, e.g. `7b-qlora-gc-sdpa-ours` (MODEL 7b|8b, METHOD qlora|lora,
GC gc|nogc, ATTN sdpa|eager, IMPL ours|trl). `--arms default` runs the priority list DEFAULT_ARMS in order;
`--arms all` the whole matrix (32 arms) in priority order. An arm whose estimated time no longer fits in
`--budget-s` is skipped and reported as such; 4-bit arms are skipped where there is no CUDA GPU or no
bitsandbytes (after rehearsing everything before the model load). Random weights give real shapes, hence
real memory and speed; the loss means nothing.

    python benchmarks/gpu/bench_sft_gpu.py --reference .gpu_carry --out DIR [--arms default] [--budget-s 400]
        [--steps 10] [--warmup 2] [--batch-size 2] [--grad-accum 1] [--size 1280x720] [--max-pixels 802816]
    python benchmarks/gpu/bench_sft_gpu.py --tiny ...   # CPU rehearsal: scaled-down models of the same classes

Writes DIR/sft_gpu.json (after every arm, so a run cut short keeps what it measured) and DIR/sft_gpu.log
(every process's output), and prints a table of the arms and of the ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MODELS: dict[str, tuple[str, str]] = {  # key -> (config folder under qwen_configs/, family)
    "7b": ("Qwen2.5-VL-7B-Instruct", "qwen2.5-vl"),
    "8b": ("Qwen3-VL-8B-Instruct", "qwen3-vl"),
}
BASE_CONFIG = "qwen2.5-vl-7b-qlora"  # the shipped config `ours` starts from (then this run's overrides)
# Priority order (the issue's): QLoRA ours vs TRL on the 7B with gradient checkpointing (the headline),
# then LoRA bf16, then eager vs sdpa and checkpointing off, then Qwen3-VL-8B.
DEFAULT_ARMS = ("7b-qlora-gc-sdpa-ours", "7b-qlora-gc-sdpa-trl", "7b-lora-gc-sdpa-ours", "7b-lora-gc-sdpa-trl",
                "7b-qlora-gc-eager-ours", "7b-qlora-nogc-sdpa-ours", "8b-qlora-gc-sdpa-ours", "8b-qlora-gc-sdpa-trl")
FIRST_ARM_S = {"gpu": 120.0, "tiny": 0.0}  # guess for an arm of a model/method not timed yet in this run
BUILD_S = {"gpu": 90.0, "tiny": 0.0}  # guess for building a model's random checkpoint
RESULTS_NAME, LOG_NAME = "sft_gpu.json", "sft_gpu.log"


@dataclass(frozen=True)
class Arm:
    """One SFT run of the matrix."""

    model: str  # 7b | 8b
    method: str  # qlora | lora
    gc: bool  # gradient checkpointing
    attn: str  # sdpa | eager
    impl: str  # ours | trl

    @property
    def name(self) -> str:
        return f"{self.model}-{self.method}-{'gc' if self.gc else 'nogc'}-{self.attn}-{self.impl}"

    @classmethod
    def parse(cls, name: str) -> Arm:
        """`7b-qlora-gc-sdpa-ours` -> Arm; anything else raises ValueError naming what is allowed."""
        parts = name.strip().split("-")
        allowed = (tuple(MODELS), ("qlora", "lora"), ("gc", "nogc"), ("sdpa", "eager"), ("ours", "trl"))
        if len(parts) != 5 or any(p not in a for p, a in zip(parts, allowed, strict=True)):
            raise ValueError(f"arm {name!r}: expected MODEL-METHOD-GC-ATTN-IMPL from "
                             + " - ".join("|".join(a) for a in allowed))
        return cls(parts[0], parts[1], parts[2] == "gc", parts[3], parts[4])


def parse_arms(text: str) -> list[Arm]:
    """`default`, `all`, or a comma list of arm names (duplicates dropped, order kept)."""
    if text == "default":
        names = list(DEFAULT_ARMS)
    elif text == "all":
        rest = [f"{m}-{q}-{g}-{a}-{i}" for m, q, g, a, i in itertools.product(
            MODELS, ("qlora", "lora"), ("gc", "nogc"), ("sdpa", "eager"), ("ours", "trl"))]
        names = list(DEFAULT_ARMS) + [n for n in rest if n not in DEFAULT_ARMS]
    else:
        names = [n for n in text.split(",") if n.strip()]
    return [Arm.parse(n) for n in dict.fromkeys(names)]


# ----------------------------------------------------------------------------------------------------------
# Helpers shared by the processes


def real_parameter_count(model: Any) -> int:
    """Parameters of the base model as it was defined, LoRA adapters left out: a bitsandbytes 4-bit weight
    packs two values per byte (its storage has half the elements), so its quant_state's shape is counted."""
    total = 0
    for name, p in model.named_parameters():
        if ".lora_" in name:
            continue
        state = getattr(p, "quant_state", None)
        total += math.prod(state.shape) if state is not None and getattr(state, "shape", None) else p.numel()
    return total


def step_stats(ends: list[float], tokens: list[int], warmup: int, samples_per_step: int) -> dict[str, Any]:
    """Median step time over the steps after `warmup` from the step-end times, and the rates it gives.

    `ends[0]` is the start of training and `ends[i]` the end of step i, so step i took ends[i] - ends[i-1];
    `tokens[i-1]` is the number of non-padding tokens step i trained on.
    """
    times = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    timed = times[warmup:]
    if not timed:
        raise ValueError(f"no timed steps: {len(times)} steps ran, {warmup} of them warm-up")
    median = statistics.median(timed)
    timed_tokens = tokens[warmup:len(times)]
    mean_tokens = statistics.fmean(timed_tokens) if timed_tokens else float("nan")
    return {"step_s": [round(t, 4) for t in times], "median_step_s": round(median, 4),
            "min_step_s": round(min(timed), 4), "max_step_s": round(max(timed), 4), "timed_steps": len(timed),
            "samples_per_s": round(samples_per_step / median, 3), "tokens_per_step": round(mean_tokens, 1),
            "tokens_per_s": round(mean_tokens / median, 1)}


def log_line(log: Any, text: str) -> None:
    print(text, flush=True)
    log.write(text + "\n")
    log.flush()


# ----------------------------------------------------------------------------------------------------------
# Preflight and checkpoints (a subprocess: the orchestrator itself imports neither torch nor transformers)


CARRIED_DISTS = ("trl", "datasets", "pydantic", "transformers", "peft", "accelerate", "bitsandbytes")


def preflight() -> dict[str, Any]:
    """What this machine has: Python, torch/CUDA, the GPU, package versions, unmet requirements of the
    packages the benchmark needs, and whether bitsandbytes loads its CUDA library."""
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.version import Version

    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cpus": os.cpu_count(), "versions": {}, "unmet_requirements": []}
    for dist in CARRIED_DISTS + ("torch", "tokenizers", "huggingface_hub", "safetensors", "numpy", "pyarrow"):
        try:
            info["versions"][dist] = md.version(dist)
        except md.PackageNotFoundError:
            info["versions"][dist] = None
    for dist in CARRIED_DISTS:
        if info["versions"].get(dist) is None:
            continue
        for text in md.requires(dist) or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                have = md.version(req.name)
            except md.PackageNotFoundError:
                info["unmet_requirements"].append(f"{dist}: {req} (not installed)")
                continue
            if req.specifier and not req.specifier.contains(Version(have), prereleases=True):
                info["unmet_requirements"].append(f"{dist}: {req} (have {have})")
    import torch

    info["cuda"] = torch.cuda.is_available()
    info["torch_cuda"] = torch.version.cuda
    if info["cuda"]:
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["bf16"] = torch.cuda.is_bf16_supported()
    try:
        import bitsandbytes  # noqa: F401

        info["bitsandbytes"] = "ok"
    except Exception as e:  # ImportError, or a native library that fails to load
        info["bitsandbytes"] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    # every module the arms import, so a missing package shows here, not in the first arm
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import trl  # noqa: F401

    import jamspotter.synth  # noqa: F401
    import jamspotter.train.sft  # noqa: F401

    return info


def quantization_usable(info: dict[str, Any]) -> str | None:
    """None when 4-bit arms can run here, else why not."""
    if not info.get("cuda"):
        return "4-bit (bitsandbytes) needs a CUDA GPU; none is visible"
    if info.get("bitsandbytes") != "ok":
        return f"bitsandbytes does not load: {info.get('bitsandbytes')}"
    return None


def save_processor(family: str, config_dir: Path, tokenizer: Any, out: Path, *, min_pixels: int,
                   max_pixels: int) -> None:
    """The model's processor saved into `out`: `tokenizer`, the config folder's image processor with this
    run's pixel budget (as `size` and as min/max_pixels, the two spellings transformers reads), a video
    processor of the same patch geometry, and the config folder's chat template."""
    from transformers import (
        AutoImageProcessor,
        Qwen2_5_VLProcessor,
        Qwen2VLVideoProcessor,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    image_processor = AutoImageProcessor.from_pretrained(config_dir, size=size, min_pixels=min_pixels,
                                                         max_pixels=max_pixels)
    video_cls = Qwen3VLVideoProcessor if family == "qwen3-vl" else Qwen2VLVideoProcessor
    video_processor = video_cls(patch_size=image_processor.patch_size, merge_size=image_processor.merge_size,
                                temporal_patch_size=image_processor.temporal_patch_size,
                                image_mean=image_processor.image_mean, image_std=image_processor.image_std)
    template = json.loads((config_dir / "chat_template.json").read_text())["chat_template"]
    processor_cls = Qwen3VLProcessor if family == "qwen3-vl" else Qwen2_5_VLProcessor
    processor_cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                  chat_template=template).save_pretrained(out)


def build_checkpoint(model_key: str, reference: Path, out: Path, *, tiny: bool, min_pixels: int,
                     max_pixels: int) -> dict[str, Any]:
    """Random bf16 weights of the model's real config saved as a checkpoint with its processor (Qwen's real
    tokenizer, the config's image processor and chat template) whose image budget is this run's, so every
    arm reads the same one. `tiny` (the CPU rehearsal): `jamspotter.models.tiny`'s scaled-down model of the
    same class with its small tokenizer (a 152k-token vocabulary would dominate a CPU step); the image
    processor and chat template still come from the real config folder.

    Also counts the architecture's parameters on the meta device: each arm's `parameters_b` is checked
    against it. Reused when `out` already holds a finished one (its marker file is written last)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer

    from jamspotter.models.tiny import build_tiny_model, qwen_tokenizer

    marker = out / "bench_checkpoint.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    folder, family = MODELS[model_key]
    config_dir = reference / "qwen_configs" / folder
    start = time.perf_counter()
    real_tokenizer = qwen_tokenizer(reference, family)  # loaded in both modes: the carried files must work
    if tiny:
        build_tiny_model(family, out, real_tokenizer=False, seed=0)
        tokenizer, config = AutoTokenizer.from_pretrained(out), AutoConfig.from_pretrained(out)
    else:
        tokenizer, config = real_tokenizer, AutoConfig.from_pretrained(config_dir)
    with torch.device("meta"):
        parameters = sum(p.numel() for p in AutoModelForImageTextToText.from_config(config).parameters())
    if not tiny:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        torch.manual_seed(0)
        with torch.device(device):  # random init of 8B parameters takes seconds on the GPU, minutes on a CPU
            model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
        model.save_pretrained(out)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    save_processor(family, config_dir, tokenizer, out, min_pixels=min_pixels, max_pixels=max_pixels)
    info = {"model": model_key, "config": folder, "family": family, "tiny": tiny, "parameters": parameters,
            "min_pixels": min_pixels, "max_pixels": max_pixels, "seconds": round(time.perf_counter() - start, 1),
            "weights": "random, seed 0" + ("" if tiny else ", bf16")}
    marker.write_text(json.dumps(info))
    return info


def setup_process(args: argparse.Namespace) -> dict[str, Any]:
    """The `--setup` subprocess: preflight, then the asked-for models' checkpoints; `--build` alone: checkpoints."""
    info = preflight() if args.setup else {}
    info["checkpoints"] = {}
    for key in args.build:
        info["checkpoints"][key] = build_checkpoint(key, args.reference, args.work / f"ckpt-{key}", tiny=args.tiny,
                                                    min_pixels=args.min_pixels, max_pixels=args.max_pixels)
    return info


# ----------------------------------------------------------------------------------------------------------
# One arm (a subprocess)


class Skipped(Exception):
    """This arm cannot run here (said why); everything before the reason was rehearsed."""


def ours_config(arm: Arm, args: argparse.Namespace, ckpt: Path, family: str, out: Path) -> Any:
    """The shipped QLoRA config with this arm's model, method, attention, checkpointing and batch.

    bf16 weights and mixed precision on a GPU; fp32 on a CPU (the rehearsal), where the Trainer refuses bf16."""
    import torch

    from jamspotter.train.config import load_config

    bf16 = torch.cuda.is_available()
    sets = [f"model.name={ckpt}", f"model.family={family}", f"model.dtype={'bf16' if bf16 else 'fp32'}",
            f"model.attn={arm.attn}",
            f"data.train={args.work / 'belt'}", f"data.min_pixels={args.min_pixels}",
            f"data.max_pixels={args.max_pixels}", "data.count=0", "data.region=0",
            f"finetune.method={arm.method}", f"finetune.lora_r={args.lora_r}", f"finetune.lora_alpha={2 * args.lora_r}",
            f"train.output_dir={out}", f"train.batch_size={args.batch_size}", f"train.grad_accum={args.grad_accum}",
            f"train.max_steps={args.warmup + args.steps}", f"train.gradient_checkpointing={str(arm.gc).lower()}",
            "train.report_to=none", "train.logging_steps=1", "train.save_steps=1000000", "train.f1_steps=0",
            "train.eval_steps=0", f"train.bf16={str(bf16).lower()}", "train.dataloader_workers=0", "train.seed=0"]
    return load_config(BASE_CONFIG, sets, check_files=True, check_model=True)


class CountingCollator:
    """Wraps a collator and records, per batch, the non-padding tokens it produced (the trainer's input)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.tokens, self.image_tokens, self.seq_lens = inner, [], [], []
        self.image_token_id: int | None = None

    def __call__(self, rows: list[Any]) -> Any:
        batch = self.inner(rows)
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        self.tokens.append(int(mask.sum()) if mask is not None else int(ids.numel()))
        self.seq_lens.append(int(ids.shape[1]))
        if self.image_token_id is not None:
            self.image_tokens.append(int((ids == self.image_token_id).sum()))
        return batch


def step_timer() -> Any:
    """A TrainerCallback recording the (CUDA-synchronised) time at train start and at each step's end."""
    import torch
    from transformers import TrainerCallback

    def now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_train_begin(self, *_: Any, **__: Any) -> None:
            self.ends = [now()]

        def on_step_end(self, *_: Any, **__: Any) -> None:
            self.ends.append(now())

    return StepTimer()


def ours_trainer(arm: Arm, args: argparse.Namespace, ckpt: Path, family: str, out: Path) -> tuple[Any, Any]:
    """jamspotter's SFT path (as `train.sft.run_sft` wires it): (trainer, model)."""
    import datasets
    from trl import SFTTrainer

    from jamspotter.data.io import read_samples, samples_path
    from jamspotter.errors import JamspotterError
    from jamspotter.train.data import Example, SFTCollator, example_to_row
    from jamspotter.train.sft import build_contract, prepare_model, sft_args

    cfg = ours_config(arm, args, ckpt, family, out)
    samples = read_samples(samples_path(cfg.data.train))
    rows = [example_to_row(Example(s, str(args.work / "belt"))) for s in samples]
    try:  # our load_model refuses 4-bit without bitsandbytes or CUDA: that refusal is the skip reason
        model, processor, family = prepare_model(cfg)
    except JamspotterError as e:
        if cfg.quantization and args.quant_unusable:
            raise Skipped(f"{args.quant_unusable} (load_model: {e})") from None
        raise
    contract = build_contract(cfg, family, processor, samples)
    collator = SFTCollator(processor, contract.format(processor), clip_frames=contract.clip_frames)
    targs = sft_args(cfg, has_eval=False)
    targs.disable_tqdm = True  # the log is a file: no progress bars in it (both arms)
    trainer = SFTTrainer(model=model, args=targs, train_dataset=datasets.Dataset.from_list(rows),
                         processing_class=processor, data_collator=collator)
    return trainer, model


def trl_rows(args: argparse.Namespace, ckpt: Path, family: str, arm: Arm) -> list[dict[str, Any]]:
    """The same rows as `ours` (same samples, prompt and answer text, from the same run contract) in TRL's
    conversational vision format: `messages` + `images`."""
    from jamspotter.data.io import read_samples, samples_path
    from jamspotter.models import load_processor
    from jamspotter.train.sft import build_contract

    cfg = ours_config(arm, args, ckpt, family, args.work / "unused")
    samples = read_samples(samples_path(cfg.data.train))
    processor = load_processor(ckpt, min_pixels=args.min_pixels, max_pixels=args.max_pixels)
    fmt = build_contract(cfg, family, processor, samples).format(processor)
    rows = []
    for s in samples:
        messages: list[dict[str, Any]] = []
        for i, (user, answer) in enumerate(fmt.render_turns(s)):
            content = [{"type": "text", "text": user}]
            messages.append({"role": "user", "content": ([{"type": "image"}] if i == 0 else []) + content})
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        rows.append({"messages": messages, "images": [str(s.image_path(args.work / "belt"))]})
    return rows


def trl_trainer(arm: Arm, args: argparse.Namespace, ckpt: Path, family: str, out: Path) -> tuple[Any, Any]:
    """A plain TRL SFT run with the same settings: (trainer, model)."""
    import datasets
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    from jamspotter.models.loading import QUANT_SKIP_MODULES
    from jamspotter.models.lora import lora_target_regex

    cfg = ours_config(arm, args, ckpt, family, out)  # read only for the shared settings (LoRA, lr, schedule)
    ft, t = cfg.finetune, cfg.train
    ds = datasets.Dataset.from_list(trl_rows(args, ckpt, family, arm))
    ds = ds.cast_column("images", datasets.Sequence(datasets.Image()))
    quant = None
    if arm.method == "qlora":
        if args.quant_unusable:
            raise Skipped(args.quant_unusable)
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.bfloat16, llm_int8_skip_modules=QUANT_SKIP_MODULES)
    model = AutoModelForImageTextToText.from_pretrained(
        ckpt, dtype=torch.bfloat16 if t.bf16 else torch.float32, attn_implementation=arm.attn,
        quantization_config=quant, device_map={"": 0} if quant is not None else None)
    processor = AutoProcessor.from_pretrained(ckpt)
    peft_config = LoraConfig(r=ft.lora_r, lora_alpha=ft.lora_alpha, lora_dropout=ft.lora_dropout,
                             target_modules=lora_target_regex(ft.lora_targets, freeze_vision=ft.freeze_vision,
                                                              freeze_merger=ft.freeze_merger,
                                                              freeze_language=ft.freeze_language),
                             task_type="CAUSAL_LM")
    targs = SFTConfig(
        output_dir=str(out), per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.grad_accum,
        max_steps=t.max_steps, learning_rate=t.lr, lr_scheduler_type=t.scheduler, warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, bf16=bool(t.bf16), seed=t.seed,
        activation_checkpointing=arm.gc, activation_checkpointing_kwargs={"use_reentrant": False} if arm.gc else None,
        max_length=None, report_to="none", logging_steps=1, save_strategy="no", disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available())
    trainer = SFTTrainer(model=model, args=targs, train_dataset=ds, processing_class=processor,
                         peft_config=peft_config)
    return trainer, trainer.model


def run_arm(arm: Arm, args: argparse.Namespace) -> dict[str, Any]:
    """Build the arm's trainer, train warmup + steps, and measure."""
    import torch
    import transformers

    from jamspotter.models import count_parameters

    folder, family = MODELS[arm.model]
    ckpt = args.work / f"ckpt-{arm.model}"
    out = args.work / f"run-{arm.name}"
    transformers.set_seed(0)
    transformers.utils.logging.disable_progress_bar()  # the log is a file
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer, model = (ours_trainer if arm.impl == "ours" else trl_trainer)(arm, args, ckpt, family, out)
    load_s = time.perf_counter() - t0
    after_load = torch.cuda.memory_allocated() / 2**30 if cuda else None
    load_peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    counting = CountingCollator(trainer.data_collator)
    counting.image_token_id = int(model.config.image_token_id)
    trainer.data_collator = counting
    timer = step_timer()
    trainer.add_callback(timer)
    lora_modules = sum(1 for n, _ in model.named_modules() if n.endswith(".lora_A"))
    trainable, _ = count_parameters(model)
    parameters = real_parameter_count(model)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    per_step = args.batch_size * args.grad_accum
    tokens = [sum(counting.tokens[i:i + args.grad_accum]) for i in range(0, len(counting.tokens), args.grad_accum)]
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    res: dict[str, Any] = {
        **asdict(arm), "arm": arm.name, "status": "ok", "config": folder, "family": family,
        "parameters": parameters, "parameters_b": round(parameters / 1e9, 3), "trainable_m": round(trainable / 1e6, 3),
        "lora_modules": lora_modules, "load_s": round(load_s, 1),
        "image_tokens_per_sample": (counting.image_tokens[0] / args.batch_size) if counting.image_tokens else None,
        "max_seq_len": max(counting.seq_lens) if counting.seq_lens else None,
        "memory_after_load_gib": round(after_load, 2) if cuda else None,
        "peak_allocated_load_gib": round(load_peak, 2) if cuda else None,
        "peak_allocated_train_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "peak_reserved_train_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None,
        "losses": [round(v, 4) for v in losses], "finite_losses": all(math.isfinite(v) for v in losses),
        **step_stats(timer.ends, tokens, args.warmup, per_step),
    }
    return res


# ----------------------------------------------------------------------------------------------------------
# The orchestrator


def write_rows(work: Path, n: int, size: tuple[int, int]) -> Path:
    """`n` synthetic belt scenes (the rows every arm trains on), written once."""
    from jamspotter.synth import generate_dataset

    belt = work / "belt"
    if not (belt / "samples.jsonl").is_file():
        generate_dataset(belt, n, size=size, seed=0, jam_rate=0.5, workers=min(8, os.cpu_count() or 1))
    return belt


def child(args: argparse.Namespace, role: list[str], log: Any, timeout: float) -> tuple[dict[str, Any] | None, str]:
    """Run this script as a subprocess (`role`: --setup ... or --worker NAME ...); its JSON answer and a status."""
    answer = args.work / f"answer-{role[1] if role[0] == '--worker' else role[0].strip('-')}.json"
    answer.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, *role, "--answer", str(answer), *args.passthrough]
    log.write(f"\n$ {' '.join(cmd)}\n")
    log.flush()
    try:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        return None, f"timeout: stopped after {timeout:.0f} s (the run's budget)"
    if answer.is_file():
        return json.loads(answer.read_text()), "ok"
    return None, f"failed: exit code {proc.returncode} (see {LOG_NAME})"


def comparisons(arms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ratios between arms of this run that differ in one setting: ours/trl, eager/sdpa, nogc/gc."""
    ok = {a["arm"]: a for a in arms if a.get("status") == "ok"}
    out = []
    for name, a in ok.items():
        arm = Arm.parse(name)
        for label, other in (("ours / trl", Arm(arm.model, arm.method, arm.gc, arm.attn, "trl")),
                             ("eager / sdpa", Arm(arm.model, arm.method, arm.gc, "sdpa", arm.impl)),
                             ("nogc / gc", Arm(arm.model, arm.method, True, arm.attn, arm.impl))):
            b = ok.get(other.name)
            if b is None or other == arm:
                continue
            row = {"compare": label, "arm": name, "reference": other.name,
                   "samples_per_s_ratio": round(a["samples_per_s"] / b["samples_per_s"], 3),
                   "tokens_per_s_ratio": round(a["tokens_per_s"] / b["tokens_per_s"], 3)}
            if a.get("peak_allocated_train_gib") and b.get("peak_allocated_train_gib"):
                row["peak_allocated_ratio"] = round(a["peak_allocated_train_gib"] / b["peak_allocated_train_gib"], 3)
                row["peak_reserved_ratio"] = round(a["peak_reserved_train_gib"] / b["peak_reserved_train_gib"], 3)
            out.append(row)
    return out


def print_table(res: dict[str, Any]) -> None:
    cols = ("arm", "status", "median_step_s", "samples_per_s", "tokens_per_s", "peak_allocated_train_gib",
            "peak_reserved_train_gib", "parameters_b", "trainable_m", "wall_s")
    rows = [[str(a.get(c, "")) if a.get(c) is not None else "-" for c in cols] for a in res["arms"]]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    for a in res["arms"]:
        if a.get("status") != "ok":
            print(f"{a['arm']}: {a['status']}: {a.get('reason', '')}")
    for c in res["comparisons"]:
        extra = f", peak allocated x{c['peak_allocated_ratio']}" if "peak_allocated_ratio" in c else ""
        print(f"{c['compare']}: {c['arm']} vs {c['reference']}: samples/s x{c['samples_per_s_ratio']}, "
              f"tokens/s x{c['tokens_per_s_ratio']}{extra}")


def orchestrate(args: argparse.Namespace) -> int:
    """Preflight + checkpoints, then each arm in its own process within the budget; results after each."""
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    arms = parse_arms(args.arms)
    mode = "tiny" if args.tiny else "gpu"
    res: dict[str, Any] = {
        "benchmark": "sft_gpu", "mode": mode, "budget_s": args.budget_s,
        "settings": {k: v for k, v in vars(args).items() if k in (
            "steps", "warmup", "batch_size", "grad_accum", "size", "min_pixels", "max_pixels", "lora_r", "rows")},
        "lora": {"r": args.lora_r, "alpha": 2 * args.lora_r, "targets": "language (LANGUAGE_RE)", "dropout": 0.05},
        "arms_asked": [a.name for a in arms], "arms": [], "comparisons": []}
    res["settings"]["size"] = f"{args.size[0]}x{args.size[1]}"
    results = args.out / RESULTS_NAME

    def save() -> None:
        res["comparisons"] = comparisons(res["arms"])
        res["elapsed_s"] = round(time.perf_counter() - start, 1)
        tmp = results.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=2, allow_nan=False) + "\n")
        tmp.replace(results)

    with open(args.out / LOG_NAME, "a", encoding="utf-8") as log:
        log_line(log, f"sft_gpu: {len(arms)} arms, budget {args.budget_s:.0f} s, mode {mode}")
        write_rows(args.work, args.rows, args.size)
        left = args.budget_s - (time.perf_counter() - start)
        setup, status = child(args, ["--setup", "--build", arms[0].model], log, left)  # other models: when reached
        if setup is None:
            res["setup"] = {"status": status}
            save()
            log_line(log, f"sft_gpu: setup {status}")
            return 1
        res["machine"] = {k: v for k, v in setup.items() if k != "checkpoints"}
        res["checkpoints"] = setup["checkpoints"]
        if setup["unmet_requirements"]:
            log_line(log, "unmet requirements: " + "; ".join(setup["unmet_requirements"]))
        quant_unusable = quantization_usable(setup)
        log_line(log, f"setup {time.perf_counter() - start:.0f} s: {setup.get('gpu', 'no GPU')}, torch "
                      f"{setup['versions']['torch']}, 4-bit: {quant_unusable or 'ok'}")
        save()
        walls: dict[tuple[str, str], float] = {}
        for arm in arms:
            left = args.budget_s - (time.perf_counter() - start)
            entry: dict[str, Any] = {**asdict(arm), "arm": arm.name}
            estimate = walls.get((arm.model, arm.method), FIRST_ARM_S[mode])
            if arm.model not in res["checkpoints"] and left > BUILD_S[mode] + estimate:
                built, status = child(args, ["--build", arm.model], log, left)
                res["checkpoints"].update((built or {}).get("checkpoints", {}))
                left = args.budget_s - (time.perf_counter() - start)
                if built is None:
                    log_line(log, f"checkpoint {arm.model}: {status}")
            if arm.model not in res["checkpoints"]:
                entry.update(status="skipped", reason=f"budget: its checkpoint was not built ({left:.0f} s left, "
                                                      f"~{BUILD_S[mode] + estimate:.0f} s needed with one arm)")
            elif estimate > left:
                entry.update(status="skipped", reason=f"budget: an arm like it needs ~{estimate:.0f} s, "
                                                      f"{left:.0f} s of {args.budget_s:.0f} s left")
            else:
                t = time.perf_counter()
                extra = ["--quant-unusable", quant_unusable] if quant_unusable else []
                answer, status = child(args, ["--worker", arm.name, *extra], log, left)
                wall = time.perf_counter() - t
                entry.update(answer or {"status": status.split(":")[0], "reason": status})
                entry["wall_s"] = round(wall, 1)
                if entry["status"] == "ok":
                    walls[(arm.model, arm.method)] = max(wall, walls.get((arm.model, arm.method), 0.0))
                    config_count = res["checkpoints"][arm.model]["parameters"]  # counted on the meta device
                    entry["parameters_match_config"] = entry["parameters"] == config_count
            res["arms"].append(entry)
            save()
            log_line(log, f"{arm.name}: {entry['status']}" + (
                f" median step {entry['median_step_s']} s, {entry['samples_per_s']} samples/s, peak "
                f"{entry['peak_allocated_train_gib']} GiB" if entry["status"] == "ok" else f" ({entry.get('reason')})"))
        save()
    print_table(res)
    print(f"wrote {results}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", type=Path, required=True,
                   help="folder with qwen_configs/ and qwen2_5_vl_tokenizer/ (the carry, or ../shared/data)")
    p.add_argument("--out", type=Path, default=Path("sft_gpu_out"), help=f"where {RESULTS_NAME} and {LOG_NAME} go")
    p.add_argument("--work", type=Path, default=Path("/tmp/jamspotter-sft-bench"),
                   help="checkpoints (~17 GB per model on a GPU run), rows and trainer folders")
    p.add_argument("--arms", default="default", help="default, all, or a comma list such as 7b-qlora-gc-sdpa-ours")
    p.add_argument("--budget-s", type=float, default=400.0, help="wall seconds for the whole matrix")
    p.add_argument("--steps", type=int, default=10, help="timed optimizer steps per arm (after the warm-up)")
    p.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first")
    p.add_argument("--batch-size", type=int, default=2, help="samples per micro-batch")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--rows", type=int, default=16, help="synthetic belt scenes (the trainer loops over them)")
    p.add_argument("--size", default="1280x720", help="belt image size WxH")
    p.add_argument("--min-pixels", type=int, default=200704, help="image budget (the shipped QLoRA config's)")
    p.add_argument("--max-pixels", type=int, default=802816, help="image budget (the shipped QLoRA config's)")
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank (alpha = 2r)")
    p.add_argument("--tiny", action="store_true", help="CPU rehearsal: scaled-down models of the same classes")
    p.add_argument("--setup", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--build", default="", help=argparse.SUPPRESS)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--answer", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--quant-unusable", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    w, _, h = args.size.partition("x")
    args.size = (int(w), int(h))
    args.build = [b for b in args.build.split(",") if b]
    args.reference, args.out, args.work = args.reference.resolve(), args.out.resolve(), args.work.resolve()
    args.passthrough = [  # what a subprocess needs to see the same run
        "--reference", str(args.reference), "--out", str(args.out), "--work", str(args.work),
        "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
        "--grad-accum", str(args.grad_accum), "--rows", str(args.rows), "--size", f"{w}x{h}",
        "--min-pixels", str(args.min_pixels), "--max-pixels", str(args.max_pixels), "--lora-r", str(args.lora_r),
        *(["--tiny"] if args.tiny else [])]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.setup or args.build or args.worker:
        if args.setup or args.build:
            answer = setup_process(args)
        else:
            try:
                answer = run_arm(Arm.parse(args.worker), args)
            except Skipped as e:
                answer = {"status": "skipped", "reason": str(e)}
        args.answer.write_text(json.dumps(answer, allow_nan=False))
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
