"""GRPO after SFT on TRL's GRPOTrainer: region rewards, the crop tool in rollouts, the run contract kept.

Read top to bottom: the SFT run's contract -> prompts (the text SFT rendered, from `train.data`) with
their reward columns -> the SFT model (its LoRA adapter keeps training; a merged or full model gets a
new adapter, or trains fully) -> GRPOTrainer with `jamspotter.train.rewards` and the crop tool as a TRL
environment -> final/ (adapter or model, processor, contract) that `infer`, `train merge` and `eval` read
exactly as they read SFT's.

The crop tool runs inside TRL's own multi-turn loop (`environment_factory`): the crop images reach the
model's next turn AND the training forward pass (a `rollout_func` would drop them from the latter).
Question-answer prompts (counting and region questions too) get the crop environment, detection prompts a
plain one (no tool schema), exactly as SFT rendered them. Clip prompts are left out: TRL's rollouts take images.
"""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jamspotter.data.io import write_json
from jamspotter.data.records import Sample
from jamspotter.errors import JamspotterError
from jamspotter.formats.base import Format
from jamspotter.formats.contract import RunContract
from jamspotter.formats.crop import CropTool
from jamspotter.formats.tasks import parse_counts
from jamspotter.outputs import prepare_dir, record_files
from jamspotter.progress import show_trainer_progress, tqdm_wanted
from jamspotter.train.config import SFTRunConfig, dump_config

PLAIN, CROP = "plain", "crop"  # the two environments a prompt is routed to
GRPO_FILE = "grpo.json"  # what a GRPO output folder was started from (resume must agree)


class CropEnvironment(CropTool):
    """TRL environment: `reset(**row)` points the crop tool at the row's image in the model's coordinates."""

    def __init__(self, fmt: Format, max_calls: int) -> None:
        super().__init__()
        self._fmt, self._max_calls = fmt, max_calls

    def reset(self, **row: Any) -> None:  # type: ignore[override]  # TRL passes the dataset row
        images = row.get("images") or [None]
        size = row.get("input_size")
        CropTool.reset(self, images[0], self._fmt, tuple(size) if size else None, self._max_calls)


class PlainEnvironment:
    """TRL environment without tools: detection prompts are rendered as SFT rendered them."""

    def reset(self, **row: Any) -> None:
        return None


@dataclass
class GRPOResult:
    """Where the GRPO weights went and what the rewards did."""

    output_dir: Path
    final_dir: Path
    global_step: int
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def task_of(sample: Sample) -> str | None:
    """The reward task of a training example: detect, count or qna; None for what GRPO does not train on
    (clips, image-level classes, numeric targets)."""
    from jamspotter.train.data import is_clip

    if is_clip(sample):
        return None
    if sample.task == "qa":
        return "count" if sample.meta.get("task") == "count" else "qna"
    return "detect" if sample.task == "detection" else None


def grpo_rows(samples: list[Sample], root: Path, fmt: Format, contract: RunContract, *, seed: int = 0,
              limit: int | None = None) -> tuple[list[dict[str, Any]], Counter]:
    """Dataset rows for GRPOTrainer: the SFT prompt (conversation without its last answer), its images, and
    the reward columns (task, gt in original pixels, image_size, input_size, family, answer, counts).
    Returns the rows and how many examples of each kind were left out."""
    from jamspotter.train.data import Example, build_conversation, expand_examples, uses_crop_tool

    rows: list[dict[str, Any]] = []
    skipped: Counter = Counter()
    seen: set[str] = set()
    for ex in expand_examples(samples, root, contract.tasks, contract.classes, seed=seed):
        s = ex.sample
        if s.id in seen:  # detection weights repeat an example; one prompt each is enough for GRPO
            continue
        seen.add(s.id)
        task = task_of(s)
        if task is None:
            skipped["clip" if s.image is None else s.task] += 1
            continue
        messages, images, _, _ = build_conversation(fmt, Example(s, ex.root), with_answer=False)
        w, h = images[0].size
        answer = s.qa[-1].answer if s.qa else ""
        counts = parse_counts(answer)[0] if task == "count" else {}
        rows.append({
            "id": s.id, "prompt": messages, "images": images, "task": task,
            "gt": [{"label": o.label, "bbox": [float(v) for v in o.bbox], "jam_risk": fmt.is_jam(o)}
                   for o in fmt.expected_objects(s.objects)],
            "image_size": [w, h], "input_size": list(fmt.input_size(w, h)), "family": contract.family,
            "answer": answer, "counts": json.dumps(counts), "environment": CROP if uses_crop_tool(s) else PLAIN,
        })
        if limit is not None and len(rows) >= limit:
            break
    return rows, skipped


def check_image_features(output: dict[str, Any], had_images: bool, image_pad_id: int, merge: int) -> None:
    """Fail loudly where TRL would silently train without the images.

    TRL drops every image of a batch when the image tokens in the ids disagree with `image_grid_thw`
    (e.g. a completion cut inside a tool response), and goes on training on text alone.
    """
    import torch

    grid = output.get("image_grid_thw")
    if not had_images:
        return
    if grid is None or "pixel_values" not in output:
        raise JamspotterError("GRPO batch lost its images: image tokens and image features disagreed, so TRL "
                              "dropped them (raise grpo.max_completion_length or lower grpo.rewards.max_crops)")
    ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
    mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1).bool()
    tokens = int(((ids == image_pad_id) & mask).sum())
    features = int((grid.prod(dim=-1) // (merge * merge)).sum())
    if tokens != features:
        raise JamspotterError(f"GRPO batch has {tokens} image tokens but {features} image features; the model "
                              "would see misplaced images (a completion cut inside an image?)")


def _trainer_class() -> type:
    from trl import GRPOTrainer

    class JamspotterGRPOTrainer(GRPOTrainer):
        """GRPOTrainer that checks every batch's images and logs how often rollouts used a crop."""

        def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
            had_images = any(x.get("images") for x in inputs)
            output = super()._generate_and_score_completions(inputs)
            tok = self.processing_class.tokenizer
            merge = getattr(self.processing_class.image_processor, "merge_size", 2)
            check_image_features(output, had_images, tok.convert_tokens_to_ids("<|image_pad|>"), merge)
            envs = [e for e in getattr(self, "environments", None) or [] if isinstance(e, CropTool)]
            if envs:
                mode = "train" if self.model.training else "eval"
                self._metrics[mode]["crop/used_share"].append(sum(e.used > 0 for e in envs) / len(envs))
                self._metrics[mode]["crop/calls_per_completion"].append(sum(len(e.calls) for e in envs) / len(envs))
            return output

    return JamspotterGRPOTrainer


def grpo_args(cfg: SFTRunConfig, out: Path, suppress: list[int]) -> Any:
    """TRL GRPOConfig from our config (the one place the two vocabularies meet)."""
    import torch
    from trl import GRPOConfig

    g, t = cfg.grpo, cfg.train
    bf16 = t.bf16 if t.bf16 is not None else bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    report = [t.report_to] if isinstance(t.report_to, str) else list(t.report_to)
    return GRPOConfig(
        output_dir=str(out), learning_rate=g.lr, max_steps=g.max_steps, per_device_train_batch_size=g.batch_size,
        gradient_accumulation_steps=g.grad_accum, num_generations=g.num_generations, beta=g.beta,
        temperature=g.temperature, max_completion_length=g.max_completion_length, loss_type=g.loss_type,
        max_tool_calling_iterations=g.rewards.max_crops, use_vllm=g.use_vllm, vllm_mode=g.vllm_mode,
        # the vision pads are never an answer: a sampled one breaks the next forward pass
        generation_kwargs={"suppress_tokens": suppress},
        bf16=bf16, seed=t.seed, data_seed=t.seed, lr_scheduler_type=t.scheduler, warmup_steps=t.warmup_ratio,
        max_grad_norm=t.max_grad_norm, save_strategy="steps", save_steps=g.save_steps,
        save_total_limit=t.save_total_limit, logging_steps=g.logging_steps,
        report_to="none" if report == ["none"] else report, remove_unused_columns=False,
        activation_checkpointing=t.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        dataloader_pin_memory=torch.cuda.is_available(), disable_tqdm=not tqdm_wanted(),
    )


def grpo_output(cfg: SFTRunConfig, out: Path | None = None) -> Path:
    """The GRPO folder: `out`, else grpo.output_dir, else <train.output_dir>/grpo."""
    return Path(out or cfg.grpo.output_dir or Path(cfg.train.output_dir) / "grpo")


def load_policy(cfg: SFTRunConfig, sft_dir: Path, contract: RunContract) -> tuple[Any, Any]:
    """The SFT model to optimise: a LoRA adapter keeps training; a full or merged model is wired as configured."""
    from jamspotter.models import apply_lora, freeze_parts, load_model

    model, processor = load_model(
        sft_dir, quantization=cfg.quantization, dtype=cfg.model.dtype, attn=cfg.model.attn,
        min_pixels=contract.min_pixels, max_pixels=contract.max_pixels,
        video_min_pixels=contract.video_min_pixels, video_max_pixels=contract.video_max_pixels,
        trainable_adapter=True)
    if model.jamspotter_family != contract.family:
        raise JamspotterError(f"{sft_dir}: jamspotter.json says {contract.family} but the model is a "
                              f"{model.jamspotter_family}")
    ft = cfg.finetune
    if hasattr(model, "peft_config"):
        return model, processor
    if ft.method == "full":
        freeze_parts(model, freeze_vision=ft.freeze_vision, freeze_merger=ft.freeze_merger,
                     freeze_language=ft.freeze_language)
        return model, processor
    family = model.jamspotter_family
    model = apply_lora(model, r=ft.lora_r, alpha=ft.lora_alpha, dropout=ft.lora_dropout, targets=ft.lora_targets,
                       freeze_vision=ft.freeze_vision, freeze_merger=ft.freeze_merger,
                       freeze_language=ft.freeze_language, gradient_checkpointing=cfg.train.gradient_checkpointing)
    model.jamspotter_family = family
    return model, processor


def grpo_identity(cfg: SFTRunConfig, sft_dir: Path) -> dict[str, Any]:
    """What a GRPO checkpoint must agree on to be resumed: the starting model and the GRPO settings (a resumed
    run may go on for more steps, and save or log at other intervals)."""
    settings = cfg.grpo.model_dump(exclude={"max_steps", "save_steps", "logging_steps", "output_dir"})
    return json.loads(json.dumps({"from": str(Path(sft_dir).resolve()), "grpo": settings,
                                  "method": cfg.finetune.method}))


def run_grpo(cfg: SFTRunConfig, sft_dir: str | Path, *, out: Path | None = None, resume: bool = False,
             overwrite: bool = False, log: Any = print) -> GRPOResult:
    """GRPO from the SFT model in `sft_dir` (its `final/`, a checkpoint or a merged folder) on `data.train`."""
    import datasets
    import transformers

    from jamspotter.models.families import VISION_TOKENS
    from jamspotter.train.checkpoints import CompleteMarkerCallback, latest_complete_checkpoint
    from jamspotter.train.rewards import reward_functions
    from jamspotter.train.sft import finished_run, split_samples

    start = time.time()
    sft_dir = Path(sft_dir)
    contract = RunContract.load(sft_dir) if sft_dir.is_dir() else None
    if contract is None:
        raise JamspotterError(f"{sft_dir}: no jamspotter.json; GRPO starts from a jamspotter SFT output "
                              "(runs/x/final, a checkpoint or a merged model)")
    out = grpo_output(cfg, out)
    if cfg.train.cpu_threads:
        import torch

        torch.set_num_threads(cfg.train.cpu_threads)
    transformers.set_seed(cfg.train.seed)
    train, root, _, _ = split_samples(cfg)  # validation and test samples never become prompts
    identity = grpo_identity(cfg, sft_dir)
    if resume and (out / GRPO_FILE).is_file():
        recorded = json.loads((out / GRPO_FILE).read_text(encoding="utf-8"))
        if recorded != identity:
            raise JamspotterError(f"{out} holds a GRPO run with other settings or another start model; "
                                  "use another grpo.output_dir or --overwrite")
    else:
        prepare_dir(out, "train grpo", overwrite=overwrite, inputs=[cfg.data.train, sft_dir],
                    option="--resume to continue that run or --overwrite")
        write_json(out / GRPO_FILE, identity)
        (out / "train_config.yaml").write_text(dump_config(cfg), encoding="utf-8")
    checkpoint = latest_complete_checkpoint(out) if resume else None
    if resume:
        log(f"resuming from {checkpoint}" if checkpoint else f"no complete checkpoint in {out}: starting fresh")
    done = finished_run(out, checkpoint, cfg.grpo.max_steps)
    if done is not None:  # the Trainer would take one more step past max_steps
        log(f"{checkpoint.name} already reached grpo.max_steps={cfg.grpo.max_steps} and final/ is saved: nothing to do")
        return GRPOResult(out, out / "final", done["global_step"], done, time.time() - start)

    model, processor = load_policy(cfg, checkpoint or sft_dir, contract)
    fmt = contract.format(processor)
    rows, skipped = grpo_rows(train, root, fmt, contract, seed=cfg.train.seed, limit=cfg.grpo.prompts)
    if not rows:
        raise JamspotterError(f"{cfg.data.train}: no image prompts for GRPO (clips and image-level classes are not "
                              "trained by GRPO)")
    if skipped:
        log("GRPO leaves out " + ", ".join(f"{n} {k} example(s)" for k, n in sorted(skipped.items())))
    tok = processor.tokenizer
    # A Qwen turn ends at <|im_end|>: TRL stops rollouts at the tokenizer's EOS and splices tool responses in
    # after it, so an EOS of <|endoftext|> would drop the newline the chat template (and SFT) puts there.
    tok.eos_token = "<|im_end|>"
    model.config.get_text_config().eos_token_id = tok.eos_token_id
    model.generation_config.eos_token_id = [tok.eos_token_id]
    model.generation_config.pad_token_id = tok.pad_token_id
    g = cfg.grpo
    funcs, reward_weights = reward_functions(g.rewards, fmt.taxonomy)
    args = grpo_args(cfg, out, [tok.convert_tokens_to_ids(t) for t in VISION_TOKENS])
    args.reward_weights = reward_weights
    environments = {PLAIN: PlainEnvironment, CROP: lambda: CropEnvironment(fmt, g.rewards.max_crops)}
    with warnings.catch_warnings():  # the crop tool is built on TRL's environment_factory, which TRL marks experimental
        warnings.filterwarnings("ignore", message="You are using 'environment_factory'", category=UserWarning)
        trainer = _trainer_class()(
            model=model, reward_funcs=funcs, args=args,
            train_dataset=datasets.Dataset.from_list(rows), processing_class=processor,
            environment_factory=environments, callbacks=[CompleteMarkerCallback(contract)])
    show_trainer_progress(trainer)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    final = out / "final"
    trainer.save_model(str(final))
    processor.save_pretrained(str(final))
    grpo_contract = contract.model_copy(update={"training": {**contract.training, "grpo": identity}})
    grpo_contract.save(final)
    logs = [h for h in trainer.state.log_history if any(k.startswith("rewards/") for k in h)]
    metrics: dict[str, Any] = {"global_step": trainer.state.global_step, "train_loss": result.training_loss,
                               "prompts": len(rows), "skipped": dict(skipped), "family": contract.family,
                               "first_log": logs[0] if logs else {}, "last_log": logs[-1] if logs else {}}
    write_json(out / "metrics.json", metrics)
    record_files(out)
    return GRPOResult(out, final, trainer.state.global_step, metrics, time.time() - start)
