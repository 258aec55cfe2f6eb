"""Supervised fine-tuning of a Qwen-VL on `Sample`s with TRL's SFTTrainer.

Read top to bottom: load config -> samples -> model (+LoRA/QLoRA/full) -> collator -> SFTTrainer
-> train (or resume) -> save the adapter/model with its processor and a summary. Our collator
builds the labels (assistant-only, see train/data.py), so TRL's dataset preparation is skipped;
`max_length=None` and no packing, because cutting or packing image tokens breaks M-RoPE.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jamspotter.data.io import atomic_write, read_samples, samples_path, write_json
from jamspotter.data.records import Sample
from jamspotter.errors import JamspotterError
from jamspotter.formats.contract import RunContract, TaskMix, dataset_classes, taxonomy_overrides
from jamspotter.outputs import record_files
from jamspotter.progress import show_trainer_progress, tqdm_wanted
from jamspotter.train.checkpoints import CompleteMarkerCallback, latest_complete_checkpoint
from jamspotter.train.config import SFTRunConfig, dump_config
from jamspotter.train.data import Example, SFTCollator, example_to_row, expand_examples


@dataclass
class SFTResult:
    """Where the trained weights went and what they scored."""

    output_dir: Path
    final_dir: Path
    global_step: int
    train_loss: float | None
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    is_main: bool = True  # False on the other ranks of a multi-process run: they report nothing


def split_samples(cfg: SFTRunConfig) -> tuple[list[Sample], Path, list[Sample], Path]:
    """(train samples, train root, validation samples, their root): test samples are never returned.

    Training takes `split == "train"` and unsplit samples of `data.train`. Validation takes the `val`
    samples of `data.eval` (all of it when it is unsplit), else the `val` samples of `data.train`, else
    (with `eval_fraction`) a seeded hold-out of whole groups (an image with its augmented copies).
    """
    from jamspotter.data.splits import holdout, select_split

    train_path = samples_path(cfg.data.train)
    everything = read_samples(train_path)
    train = select_split(everything, "train")
    if not train:
        raise JamspotterError(f"{train_path}: no training samples (split train, or unsplit)")
    if cfg.data.eval is not None:
        eval_path = samples_path(cfg.data.eval)
        pool = read_samples(eval_path)
        held = select_split(pool, "val") if any(s.split is not None for s in pool) else pool
        return train, train_path.parent, held, eval_path.parent
    held = select_split(everything, "val")
    if not held and cfg.data.eval_fraction > 0 and len(train) > 1:
        train, held = holdout(train, cfg.data.eval_fraction, cfg.train.seed)
    return train, train_path.parent, held, train_path.parent


def check_classes(cfg: SFTRunConfig, samples: list[Sample]) -> None:
    """An explicit `data.classes` must list every label of the data: a target naming a class the prompt
    does not list would teach the model to answer off the list."""
    if not cfg.data.classes:
        return
    unlisted = sorted(set(dataset_classes(samples, cfg.data.classes)) - set(cfg.data.classes))
    if unlisted:
        more = f" and {len(unlisted) - 5} more" if len(unlisted) > 5 else ""
        raise JamspotterError(f"data.classes does not list {', '.join(map(repr, unlisted[:5]))}{more}, which the "
                              "training data labels; add them, or relabel the data")


def build_contract(cfg: SFTRunConfig, family: str, processor: Any, samples: list[Sample]) -> RunContract:
    """Decide, once, what this run teaches the model to answer (saved as jamspotter.json beside the weights)."""
    from jamspotter.data.exporters import check_box_family
    from jamspotter.formats import resize_params

    check_box_family(samples, family)  # chat imports holding another family's box numbers are refused
    d = cfg.data
    params = resize_params(processor)  # the processor actually loaded, with the configured budget
    video_processor = getattr(processor, "video_processor", None)
    video = resize_params(video_processor) if video_processor is not None else None
    with_reason = d.with_reason if d.with_reason is not None else (
        d.jam_only and any(o.reason for s in samples for o in s.objects))
    return RunContract(
        family=family, min_pixels=params.min_pixels, max_pixels=params.max_pixels,
        video_min_pixels=video.min_pixels if video else None, video_max_pixels=video.max_pixels if video else None,
        clip_frames=d.clip_frames, classes=d.classes or dataset_classes(samples), jam_only=d.jam_only,
        taxonomy=taxonomy_overrides(samples), with_reason=with_reason,
        tasks=TaskMix(detection=d.detection, count=d.count, region=d.region, vqa=d.vqa, clips=d.clips),
        training=run_identity(cfg),
    )


def run_identity(cfg: SFTRunConfig) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed by this config: model, method, LoRA shape, pixels, data."""
    ft, d = cfg.finetune, cfg.data
    return json.loads(json.dumps({
        "method": ft.method, "model": cfg.model.name, "family": cfg.model.family,
        "lora": None if ft.method == "full" else {"r": ft.lora_r, "alpha": ft.lora_alpha, "targets": ft.lora_targets},
        "min_pixels": d.min_pixels, "max_pixels": d.max_pixels,
        "video_min_pixels": d.video_min_pixels, "video_max_pixels": d.video_max_pixels,
        "data": str(samples_path(d.train).resolve()), "jam_only": d.jam_only,
    }))


RUN_FILE = "run.json"  # run_identity of the run that owns an output folder


def prepare_output(cfg: SFTRunConfig, *, resume: bool, overwrite: bool) -> Path:
    """Check and claim `train.output_dir` before anything is loaded (main process only).

    A folder holding another run is refused unless `resume` (its recorded identity must match this
    config) or `overwrite` (replaces it whole, only when jamspotter wrote it).
    """
    from jamspotter.outputs import is_empty_dir, prepare_dir, write_marker

    out = Path(cfg.train.output_dir)
    if resume and overwrite:
        raise JamspotterError("--resume and --overwrite contradict each other: choose one")
    if resume and out.is_dir() and not is_empty_dir(out):
        recorded_path = out / RUN_FILE
        if not recorded_path.is_file():
            raise JamspotterError(f"{out}: no {RUN_FILE}, so not a jamspotter training run; cannot --resume it")
        recorded = json.loads(recorded_path.read_text(encoding="utf-8"))
        now = run_identity(cfg)
        keys = [*now, *(k for k in recorded if k not in now)]  # in run_identity's order: model, method first
        diff = [k for k in keys if recorded.get(k) != now.get(k)]
        if diff:
            k = diff[0]
            more = f" (+{len(diff) - 1} more)" if len(diff) > 1 else ""
            raise JamspotterError(f"{out}: cannot --resume: the checkpoint's {k} is {recorded.get(k)!r} but this "
                                  f"config has {now.get(k)!r}{more}")
        write_marker(out, "train sft")  # being written again: its new checkpoints are the run's own
        return out
    prepare_dir(out, "train sft", overwrite=overwrite, inputs=[cfg.data.train, cfg.data.eval],
                option="--resume to continue that run or --overwrite")
    write_json(out / RUN_FILE, run_identity(cfg))
    return out


def resolve_model_name(cfg: SFTRunConfig) -> str:
    """`tiny:<family>` builds (once) a tiny random model of that family under output_dir; else the name as is."""
    name = cfg.model.name
    if not name.startswith("tiny:"):
        return name
    from jamspotter.models.tiny import build_tiny_model

    family = name.removeprefix("tiny:")
    folder = (Path(cfg.train.output_dir) / f"base-tiny-{family}").resolve()
    if not (folder / "config.json").is_file():
        build_tiny_model(family, folder, seed=cfg.train.seed, real_tokenizer=False)  # small vocab: fast on CPU
    return str(folder)


def prepare_model(cfg: SFTRunConfig, weights_from: Path | None = None) -> tuple[Any, Any, str]:
    """Load the base model and processor, then wire LoRA / QLoRA / full training as configured.

    `weights_from`: a full fine-tuning checkpoint to load instead of the base. The Trainer's own resume
    loads its state dict without the Qwen-VL key renaming (transformers issue #43701: every key is
    reported missing and the weights silently stay the base's); from_pretrained renames them.
    """
    from jamspotter.models import apply_lora, freeze_parts, load_model

    model, processor = load_model(
        str(weights_from) if weights_from else resolve_model_name(cfg), family=cfg.model.family,
        quantization=cfg.quantization, dtype=cfg.model.dtype, attn=cfg.model.attn, min_pixels=cfg.data.min_pixels,
        max_pixels=cfg.data.max_pixels, video_min_pixels=cfg.data.video_min_pixels,
        video_max_pixels=cfg.data.video_max_pixels,
    )
    family = model.jamspotter_family
    ft = cfg.finetune
    if ft.method == "full":
        freeze_parts(model, freeze_vision=ft.freeze_vision, freeze_merger=ft.freeze_merger,
                     freeze_language=ft.freeze_language)
    else:
        model = apply_lora(model, r=ft.lora_r, alpha=ft.lora_alpha, dropout=ft.lora_dropout,
                           targets=ft.lora_targets, freeze_vision=ft.freeze_vision, freeze_merger=ft.freeze_merger,
                           freeze_language=ft.freeze_language,
                           gradient_checkpointing=cfg.train.gradient_checkpointing)
    return model, processor, family


def distributed_state() -> Any:
    """accelerate's process state; sets up torch.distributed when launched by torchrun / accelerate launch.

    Without CUDA it asks for the CPU (gloo) backend: otherwise accelerate sees no GPU, reports a
    single process, and each rank would train its own full copy of the data and write the same files.
    """
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def sft_args(cfg: SFTRunConfig, has_eval: bool) -> Any:
    """TRL SFTConfig from our config (the one place the two vocabularies meet)."""
    import torch
    from trl import SFTConfig

    t = cfg.train
    bf16 = t.bf16 if t.bf16 is not None else bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    # Several processes without GPUs (torchrun / accelerate launch on CPU): DDP over gloo.
    multi_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    eval_strategy = "no" if not has_eval else ("steps" if t.eval_steps else "epoch")
    report = [t.report_to] if isinstance(t.report_to, str) else list(t.report_to)
    return SFTConfig(
        output_dir=t.output_dir, learning_rate=t.lr, lr_scheduler_type=t.scheduler, warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, num_train_epochs=t.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, activation_checkpointing=t.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        dataloader_pin_memory=torch.cuda.is_available(),
        bf16=bf16, seed=t.seed, data_seed=t.seed, eval_strategy=eval_strategy, eval_steps=t.eval_steps or None,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=t.save_total_limit,
        logging_steps=t.logging_steps, report_to="none" if report == ["none"] else report,
        dataloader_num_workers=t.dataloader_workers,
        # Our collator renders, tokenizes and labels: TRL must neither prepare, truncate nor pack.
        max_length=None, packing=False, padding_free=False, remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True}, assistant_only_loss=False, completion_only_loss=False,
        label_names=["labels"], disable_tqdm=not tqdm_wanted(),
        **({"use_cpu": True, "ddp_backend": "gloo"} if multi_cpu else {}),
    )


def finished_run(out: Path, checkpoint: Path | None, max_steps: int) -> dict[str, Any] | None:
    """The run's metrics when `checkpoint` is at `max_steps` and its final model and metrics were saved, else None."""
    metrics_path = out / "metrics.json"
    if checkpoint is None or max_steps <= 0 or not (out / "final").is_dir() or not metrics_path.is_file():
        return None
    step = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8")).get("global_step", 0)
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    return metrics if step >= max_steps and metrics.get("global_step") == step else None


def run_sft(cfg: SFTRunConfig, *, resume: bool = False, overwrite: bool = False, log: Any = print) -> SFTResult:
    """Train as configured; `resume` continues from the newest complete checkpoint in output_dir.

    The run contract (`jamspotter.json`) is decided once from the config, the processor and the training
    samples; the collator, the F1 callback and the saved model all use it.

    Under torchrun / accelerate launch every rank runs this; only the main process writes files
    (the Trainer's checkpoints follow the same rule) and logs, the others train and evaluate.
    """
    import datasets
    import transformers
    from trl import SFTTrainer

    from jamspotter.train.callbacks import DetectionF1Callback

    start = time.time()
    state = distributed_state()  # before threads: accelerate may set them for CPU processes
    if cfg.train.cpu_threads:
        import torch

        torch.set_num_threads(cfg.train.cpu_threads)
    transformers.set_seed(cfg.train.seed)
    main = state.is_main_process
    if not main:
        log = _quiet
    out = Path(cfg.train.output_dir)
    train, train_root, held_out, eval_root = split_samples(cfg)  # data errors surface before anything is written
    check_classes(cfg, train + held_out)
    if main:
        prepare_output(cfg, resume=resume, overwrite=overwrite)
        with atomic_write(out / "train_config.yaml") as fh:
            fh.write(dump_config(cfg))
    state.wait_for_everyone()  # the other ranks start once the folder is claimed

    checkpoint = latest_complete_checkpoint(out) if resume else None
    if resume:
        log(f"resuming from {checkpoint}" if checkpoint else f"no complete checkpoint in {out}: starting fresh")
    done = finished_run(out, checkpoint, cfg.train.max_steps)
    if done is not None:  # the Trainer would take one more step past max_steps when resumed mid-epoch
        log(f"{checkpoint.name} already reached max_steps={cfg.train.max_steps} and final/ is saved: nothing to do")
        if main:
            record_files(out)
        return SFTResult(out, out / "final", done["global_step"], done.get("train_loss"), done, time.time() - start,
                         is_main=main)
    full_weights = checkpoint if checkpoint and cfg.finetune.method == "full" else None
    with state.main_process_first():  # a `tiny:` base is built once, by rank 0, before any rank loads it
        resolve_model_name(cfg)
    model, processor, family = prepare_model(cfg, weights_from=full_weights)
    contract = build_contract(cfg, family, processor, train + held_out)
    fmt = contract.format(processor)
    examples = expand_examples(train, train_root, contract.tasks, contract.classes, seed=cfg.train.seed)
    train_ds = datasets.Dataset.from_list([example_to_row(e) for e in examples])
    eval_ds = (datasets.Dataset.from_list([example_to_row(Example(s, str(eval_root))) for s in held_out])
               if held_out else None)
    collator = SFTCollator(processor, fmt, clip_frames=contract.clip_frames)
    callbacks: list[Any] = [CompleteMarkerCallback(contract)]
    f1_slice = [s for s in held_out if s.image is not None][: cfg.train.f1_samples]
    zero3 = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
    if cfg.train.f1_steps and f1_slice and zero3:
        log("detection F1 callback off under ZeRO-3 (generation on one rank would wait for the others' shards)")
    elif cfg.train.f1_steps and f1_slice:
        callbacks.append(DetectionF1Callback(processor, contract, f1_slice, eval_root, every=cfg.train.f1_steps,
                                             max_new_tokens=cfg.train.f1_max_new_tokens, out_dir=out))
    trainer = SFTTrainer(model=model, args=sft_args(cfg, eval_ds is not None), train_dataset=train_ds,
                         eval_dataset=eval_ds, processing_class=processor, data_collator=collator, callbacks=callbacks)
    show_trainer_progress(trainer)

    if full_weights:
        log("full fine-tuning: weights loaded from the checkpoint (ignore the Trainer's missing-keys warning)")
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    final = out / "final"
    trainer.save_model(str(final))  # every rank calls it (ZeRO-3 gathers shards); the main one writes
    if main:
        processor.save_pretrained(str(final))
        contract.save(final)  # what every later stage asks the model
    metrics: dict[str, Any] = {"train_loss": result.training_loss, "global_step": trainer.state.global_step,
                               "family": family, "method": cfg.finetune.method, "examples": len(examples),
                               "train_samples": len(train), "val_samples": len(held_out),
                               "processes": state.num_processes}
    if eval_ds is not None:
        metrics.update(trainer.evaluate())  # a collective: every rank evaluates its shard
    f1 = [c for c in callbacks if isinstance(c, DetectionF1Callback)]
    if f1 and main:  # generation on one rank needs no collective (not under ZeRO-3, where it is off)
        last = f1[0].history[-1] if f1[0].history else {}
        step = trainer.state.global_step
        metrics["detection"] = last if last.get("step") == step else f1[0].run(trainer.model, step)
    if main:
        write_json(out / "metrics.json", metrics)
        record_files(out)  # the run's files; anything added to the folder later is never removed by --overwrite
    log(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}))
    return SFTResult(out, final, trainer.state.global_step, result.training_loss, metrics, time.time() - start,
                     is_main=main)


def _quiet(*_: Any, **__: Any) -> None:
    """The log of non-main ranks: one summary per run, not one per process."""
