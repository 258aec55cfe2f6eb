"""Benchmark: QLoRA (4-bit NF4) training steps on a full-size Qwen2.5-VL-7B with random weights, on one CUDA GPU.

Records peak GPU memory and training samples/s of the shipped `qwen2.5-vl-7b-qlora` config, through
jamspotter's own code paths: the real 7B config (../shared/data/qwen_configs/Qwen2.5-VL-7B-Instruct) is
built with random bf16 weights on the GPU and saved as safetensors (bitsandbytes quantizes while
`from_pretrained` loads, not in `from_config`), then loaded back with `jamspotter.models.load_model(...,
quantization="4bit")` (NF4 + double quant, vision tower and lm_head kept unquantized), wrapped by
`jamspotter.models.apply_lora` (prepare_model_for_kbit_training + PEFT), and fed synthetic 640x480 belt
scenes (`jamspotter.synth.generate_dataset`) through the SFT collator (`jamspotter.train.data.SFTCollator`:
chat template, image tokens bounded by max_pixels, assistant-only labels). Each optimizer step is what
SFTTrainer does with that config: bf16 autocast, forward + backward over `--grad-accum` micro-batches with
gradient checkpointing, grad-norm clipping, fused AdamW. The first `--warmup` steps are not timed.
Random weights give the real shapes, hence real memory and speed; the loss means nothing. Note that PEFT's
prepare_model_for_kbit_training casts the unquantized bf16 parts (vision tower, embeddings, lm_head: ~1.8B
parameters) to fp32, which the memory figures include because that is what a QLoRA run here does.

Prints a table and writes it as JSON to benchmarks/results/qlora_gpu_<gpu>.json.

    .venv/bin/python benchmarks/bench_qlora_gpu.py [--steps 4] [--warmup 1] [--batch-size 1] [--grad-accum 4]
        [--size 640x480] [--ckpt-dir DIR] [--config-dir DIR] [--tokenizer-dir DIR] [--results-dir DIR]
    .venv/bin/python benchmarks/bench_qlora_gpu.py --dry-run   # CPU: the 7B on the meta device, LoRA, one batch

Without a CUDA GPU or without bitsandbytes it prints one line saying so and exits with code 2 (nothing
is measured, nothing is written). `--dry-run` needs neither: it builds the 7B architecture on the meta
device (no memory), wires LoRA as the QLoRA run would, collates one synthetic batch and prints parameter
and token counts, so everything except the GPU part can be checked on a laptop.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
CONFIG_NAME = "qwen2.5-vl-7b-qlora"
EXIT_UNAVAILABLE = 2  # no CUDA GPU / no bitsandbytes / no reference config: nothing measured


def shared_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """The real 7B config folder and Qwen's tokenizer folder (from the flags or $JAMSPOTTER_REFERENCE_DATA)."""
    from jamspotter.models.families import reference_data_dir

    shared = reference_data_dir()
    config_dir = Path(args.config_dir) if args.config_dir else (
        shared / "qwen_configs" / "Qwen2.5-VL-7B-Instruct" if shared else None)
    tok_dir = Path(args.tokenizer_dir) if args.tokenizer_dir else (shared / "qwen2_5_vl_tokenizer" if shared else None)
    for what, p in (("Qwen2.5-VL-7B config", config_dir), ("Qwen tokenizer", tok_dir)):
        if p is None or not (p / ("config.json" if "config" in what else "tokenizer.json")).is_file():
            unavailable(f"{what} not found ({p}); pass --config-dir/--tokenizer-dir or set JAMSPOTTER_REFERENCE_DATA")
    return config_dir, tok_dir


def unavailable(reason: str) -> None:
    """One line, exit code 2: this machine cannot run the benchmark (never a made-up number)."""
    print(f"bench_qlora_gpu: not run: {reason}")
    sys.exit(EXIT_UNAVAILABLE)


def run_config(args: argparse.Namespace) -> Any:
    """The shipped QLoRA config (pydantic-validated), with this benchmark's batch settings."""
    from jamspotter.train.config import load_config

    sets = [f"train.batch_size={args.batch_size}", f"train.grad_accum={args.grad_accum}"]
    if args.max_pixels:
        sets.append(f"data.max_pixels={args.max_pixels}")
    return load_config(CONFIG_NAME, sets, check_files=False, check_model=False)


def save_processor(tok_dir: Path, config_dir: Path, out: Path) -> None:
    """Qwen's real tokenizer + the 7B's image processor and chat template, saved as one processor folder."""
    from transformers import AutoImageProcessor, AutoTokenizer, AutoVideoProcessor, Qwen2_5_VLProcessor

    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    image_processor = AutoImageProcessor.from_pretrained(config_dir)
    template = json.loads((config_dir / "chat_template.json").read_text())["chat_template"]
    try:
        video_processor = AutoVideoProcessor.from_pretrained(config_dir)
    except (OSError, ValueError):
        from transformers import Qwen2VLVideoProcessor

        video_processor = Qwen2VLVideoProcessor()
    Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                        chat_template=template).save_pretrained(out)


def random_checkpoint(config_dir: Path, tok_dir: Path, out: Path) -> float:
    """Random bf16 weights of the real architecture as a safetensors checkpoint (kept and reused); seconds."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from jamspotter.data.io import write_json

    marker = out / "jamspotter_random.json"  # written last: a half-written checkpoint is rebuilt, never used
    if marker.is_file():
        return 0.0
    start = time.perf_counter()
    config = AutoConfig.from_pretrained(config_dir)
    torch.manual_seed(0)
    with torch.device("cuda"):  # random init of 8.3B parameters is minutes on a CPU, a second on a GPU
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    save_processor(tok_dir, config_dir, out)
    write_json(marker, {"config": str(config_dir), "tokenizer": str(tok_dir), "weights": "random bf16, seed 0"})
    del model
    torch.cuda.empty_cache()
    return time.perf_counter() - start


def belt_rows(n: int, size: tuple[int, int], root: Path) -> list[dict[str, Any]]:
    """`n` synthetic belt scenes as SFT dataset rows (what SFTTrainer hands the collator)."""
    from jamspotter.synth import generate_dataset
    from jamspotter.train.data import Example, example_to_row

    samples = generate_dataset(root, n, size=size, seed=0, jam_rate=0.5)
    return [example_to_row(Example(s, str(root))) for s in samples]


def collator_for(processor: Any, cfg: Any) -> Any:
    from jamspotter.formats import get_format
    from jamspotter.train.data import SFTCollator

    fmt = get_format("qwen2.5-vl", processor=processor, classes=cfg.data.classes)
    return SFTCollator(processor, fmt, jam_only=cfg.data.jam_only)


def lora(model: Any, cfg: Any) -> Any:
    from jamspotter.models import apply_lora

    ft = cfg.finetune
    return apply_lora(model, r=ft.lora_r, alpha=ft.lora_alpha, dropout=ft.lora_dropout, targets=ft.lora_targets,
                      freeze_vision=ft.freeze_vision, freeze_merger=ft.freeze_merger,
                      freeze_language=ft.freeze_language, gradient_checkpointing=cfg.train.gradient_checkpointing)


def dry_run(args: argparse.Namespace) -> None:
    """CPU check of everything but the GPU: 7B on meta, LoRA wiring, one collated batch."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from jamspotter.models import count_parameters, load_processor

    config_dir, tok_dir = shared_paths(args)
    cfg = run_config(args)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(config_dir), dtype=torch.bfloat16)
    total = sum(p.numel() for p in model.parameters())
    print(f"{type(model).__name__} from {config_dir}: {total / 1e9:.2f}B parameters (meta device)")
    trainable, _ = count_parameters(lora(model, cfg))
    print(f"LoRA r={cfg.finetune.lora_r} on {cfg.finetune.lora_targets}: {trainable / 1e6:.1f}M trainable")
    with tempfile.TemporaryDirectory() as tmp:
        save_processor(tok_dir, config_dir, Path(tmp) / "proc")
        processor = load_processor(Path(tmp) / "proc", min_pixels=cfg.data.min_pixels,
                                   max_pixels=cfg.data.max_pixels)
        rows = belt_rows(args.batch_size, args.size, Path(tmp) / "belt")
        batch = collator_for(processor, cfg)(rows)
    image_tokens = int((batch["input_ids"] == model.config.image_token_id).sum())
    print(f"batch of {args.batch_size} {args.size[0]}x{args.size[1]} belt scenes: input_ids "
          f"{tuple(batch['input_ids'].shape)}, {image_tokens} image tokens, pixel_values "
          f"{tuple(batch['pixel_values'].shape)}, {int((batch['labels'] != -100).sum())} label tokens")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Load 4-bit, wire LoRA, run warmup + timed optimizer steps; memory and speed figures."""
    import torch

    from jamspotter.models import count_parameters, load_model

    config_dir, tok_dir = shared_paths(args)
    cfg = run_config(args)
    ckpt = Path(args.ckpt_dir)
    build_s = random_checkpoint(config_dir, tok_dir, ckpt)

    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    model, processor = load_model(ckpt, family="qwen2.5-vl", quantization="4bit", dtype=cfg.model.dtype,
                                  attn=cfg.model.attn, min_pixels=cfg.data.min_pixels, max_pixels=cfg.data.max_pixels)
    model = lora(model, cfg)
    load_s = time.perf_counter() - t0
    loaded_gb = torch.cuda.memory_allocated() / 2**30
    load_peak_gb = torch.cuda.max_memory_allocated() / 2**30
    trainable, total = count_parameters(model)

    model.config.use_cache = False
    if cfg.train.gradient_checkpointing:  # as the Trainer does for SFTConfig(gradient_checkpointing=True)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay, fused=True)
    per_step = args.batch_size * args.grad_accum
    with tempfile.TemporaryDirectory() as tmp:
        rows = belt_rows(per_step, args.size, Path(tmp))
        collate = collator_for(processor, cfg)
        micro = [collate(rows[i:i + args.batch_size]) for i in range(0, per_step, args.batch_size)]
    micro = [{k: v.to("cuda") if hasattr(v, "to") else v for k, v in b.items()} for b in micro]
    seq_len = max(int(b["input_ids"].shape[1]) for b in micro)
    image_tokens = int((micro[0]["input_ids"] == model.config.image_token_id).sum()) // args.batch_size

    torch.cuda.reset_peak_memory_stats()
    losses, timed = [], 0.0
    from rich.progress import track

    for step in track(range(args.warmup + args.steps), description="qlora steps"):
        torch.cuda.synchronize()
        t = time.perf_counter()
        for b in micro:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(**b).loss / args.grad_accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.train.max_grad_norm)
        optim.step()
        optim.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= args.warmup:
            timed += time.perf_counter() - t
        losses.append(loss.detach().item() * args.grad_accum)
    gpu = torch.cuda.get_device_properties(0)
    return {
        "config": CONFIG_NAME, "model_config": str(config_dir), "gpu": gpu.name,
        "gpu_memory_gb": round(gpu.total_memory / 2**30, 1), "torch": torch.__version__,
        "versions": versions(), "python": platform.python_version(),
        "parameters_b": round(total / 1e9, 3), "trainable_m": round(trainable / 1e6, 2),
        "lora": {"r": cfg.finetune.lora_r, "alpha": cfg.finetune.lora_alpha, "targets": cfg.finetune.lora_targets},
        "image_size": f"{args.size[0]}x{args.size[1]}", "min_pixels": cfg.data.min_pixels,
        "max_pixels": cfg.data.max_pixels, "image_tokens_per_sample": image_tokens, "max_seq_len": seq_len,
        "batch_size": args.batch_size, "grad_accum": args.grad_accum,
        "gradient_checkpointing": cfg.train.gradient_checkpointing, "warmup_steps": args.warmup,
        "timed_steps": args.steps, "random_checkpoint_s": round(build_s, 1), "load_and_lora_s": round(load_s, 1),
        "memory_after_load_gb": round(loaded_gb, 2), "peak_memory_load_gb": round(load_peak_gb, 2),
        "peak_memory_train_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "peak_reserved_train_gb": round(torch.cuda.max_memory_reserved() / 2**30, 2),
        "s_per_step": round(timed / args.steps, 3), "samples_per_s": round(args.steps * per_step / timed, 3),
        "losses": [round(v, 4) for v in losses],
    }


def versions() -> dict[str, str]:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("transformers", "peft", "bitsandbytes", "accelerate")}


def report(res: dict[str, Any], results_dir: Path = RESULTS) -> Path:
    """Print the table; write the JSON beside the other results."""
    from rich.console import Console
    from rich.table import Table

    from jamspotter.data.io import write_json

    table = Table(title=f"QLoRA 4-bit, Qwen2.5-VL-7B architecture (random weights) on {res['gpu']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in ("parameters_b", "trainable_m", "image_size", "image_tokens_per_sample", "max_seq_len", "batch_size",
                "grad_accum", "memory_after_load_gb", "peak_memory_load_gb", "peak_memory_train_gb",
                "peak_reserved_train_gb", "s_per_step", "samples_per_s", "load_and_lora_s"):
        table.add_row(key, str(res[key]))
    Console().print(table)
    slug = "".join(c if c.isalnum() else "_" for c in res["gpu"].lower()).strip("_")
    path = results_dir / f"qlora_gpu_{slug}.json"
    results_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, res)
    print(f"wrote {path}")
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps first (CUDA/bnb warm-up)")
    p.add_argument("--batch-size", type=int, default=1, help="samples per micro-batch (the config's is 1)")
    p.add_argument("--grad-accum", type=int, default=4, help="micro-batches per optimizer step")
    p.add_argument("--size", default="640x480", help="belt image size WxH")
    p.add_argument("--max-pixels", type=int, default=None, help="override the config's max_pixels")
    p.add_argument("--ckpt-dir", default=str(Path(tempfile.gettempdir()) / "jamspotter-qwen2.5-vl-7b-random"),
                   help="where the random bf16 checkpoint (~17 GB) is written once and reused")
    p.add_argument("--config-dir", default=None, help="folder with the real Qwen2.5-VL-7B config.json")
    p.add_argument("--tokenizer-dir", default=None, help="folder with Qwen's tokenizer.json")
    p.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON goes (benchmarks/results)")
    p.add_argument("--dry-run", action="store_true", help="CPU check without a GPU: meta-device model, one batch")
    args = p.parse_args(argv)
    w, _, h = args.size.partition("x")
    args.size = (int(w), int(h))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.dry_run:
        dry_run(args)
        return
    import torch

    if not torch.cuda.is_available():
        unavailable("no CUDA GPU visible (QLoRA needs bitsandbytes on CUDA); try --dry-run for the CPU checks")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        unavailable("bitsandbytes is not installed (pip install bitsandbytes)")
    report(measure(args), args.results_dir)


if __name__ == "__main__":
    main()
