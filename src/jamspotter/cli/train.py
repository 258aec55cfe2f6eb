"""`jamspotter train sft|grpo|both|config|recommend|merge|k8s|tiny-model`: thin wrappers over `jamspotter.train`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from jamspotter.cli.app import train_app

if TYPE_CHECKING:
    from jamspotter.train.grpo import GRPOResult

SET_HELP = "override a config field, e.g. --set train.lr=1e-4 (repeatable)"


@train_app.command("sft")
def sft(
    config: str = typer.Option(..., "--config", "-c", help="YAML config file or packaged name (tiny, ...)"),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest complete checkpoint (same config)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier run in train.output_dir"),
) -> None:
    """Supervised fine-tuning (LoRA, QLoRA or full) of a Qwen-VL on the train split of a samples.jsonl."""
    from jamspotter.train.config import load_config

    cfg = load_config(config, set_)  # every check happens before a model is loaded
    from jamspotter.train.sft import run_sft

    result = run_sft(cfg, resume=resume, overwrite=overwrite, log=typer.echo)
    if not result.is_main:
        return
    det = result.metrics.get("detection") or {}
    typer.echo(f"done: {result.global_step} steps in {result.seconds:.0f} s; train loss {result.train_loss:.4f}"
               + (f"; eval loss {result.metrics['eval_loss']:.4f}" if "eval_loss" in result.metrics else "")
               + (f"; detection F1@0.5 {det.get('f1')}" if det else ""))
    typer.echo(f"weights: {result.final_dir}  metrics: {result.output_dir / 'metrics.json'}")


@train_app.command("grpo")
def grpo(
    config: str = typer.Option(..., "--config", "-c", help="YAML config file or packaged name (its grpo: section)"),
    from_: Path = typer.Option(..., "--from", help="the SFT model: runs/x/final, a checkpoint or a merged folder"),
    out: Path = typer.Option(None, "--out", help="GRPO folder (default: grpo.output_dir or <train.output_dir>/grpo)"),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest complete GRPO checkpoint"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier GRPO run in the folder"),
) -> None:
    """Reinforcement fine-tuning (GRPO) of an SFT model with region rewards and the crop tool.

    Prompts are the SFT run's (its jamspotter.json decides classes, pixel budget and tool-call syntax);
    a LoRA adapter keeps training, so `train merge` and `infer` take GRPO's final/ as they take SFT's.
    """
    from jamspotter.train.config import load_config

    cfg = load_config(config, set_)
    from jamspotter.train.grpo import run_grpo

    result = run_grpo(cfg, from_, out=out, resume=resume, overwrite=overwrite, log=typer.echo)
    _grpo_summary(result)


@train_app.command("both")
def both(
    config: str = typer.Option(..., "--config", "-c", help="YAML config file or packaged name"),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    resume: bool = typer.Option(False, "--resume", help="continue whichever stage was interrupted"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier run in train.output_dir"),
) -> None:
    """SFT then GRPO in one run folder: <train.output_dir>/final (SFT) and <train.output_dir>/grpo/final."""
    from jamspotter.train.config import load_config

    cfg = load_config(config, set_)
    from jamspotter.outputs import record_files
    from jamspotter.train.grpo import grpo_output, run_grpo
    from jamspotter.train.sft import run_sft

    sft_result = run_sft(cfg, resume=resume, overwrite=overwrite, log=typer.echo)
    if not sft_result.is_main:
        return
    typer.echo(f"SFT done: {sft_result.global_step} steps; now GRPO from {sft_result.final_dir}")
    grpo_dir = grpo_output(cfg)
    result = run_grpo(cfg, sft_result.final_dir, out=grpo_dir, resume=resume and grpo_dir.is_dir(),
                      overwrite=overwrite, log=typer.echo)
    record_files(sft_result.output_dir)  # the GRPO folder is part of this run
    _grpo_summary(result)


def _grpo_summary(result: GRPOResult) -> None:
    last = result.metrics.get("last_log", {})
    rewards = {k.split("/")[1]: round(v, 4) for k, v in last.items()
               if k.startswith("rewards/") and k.endswith("/mean") and v is not None}
    typer.echo(f"done: {result.global_step} GRPO steps in {result.seconds:.0f} s; last mean rewards {rewards}")
    typer.echo(f"weights: {result.final_dir}  metrics: {result.output_dir / 'metrics.json'}")


@train_app.command("config")
def show_config(
    config: str = typer.Option(None, "--config", "-c", help="validate and print this config (else: list fields)"),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Print every config field with its default and meaning, or a validated config as YAML."""
    from jamspotter.train.config import describe_fields, dump_config, load_config, packaged_configs

    if config is None:
        for key, default, doc in describe_fields():
            typer.echo(f"{key:28s} {default:>12s}  {doc}")
        typer.echo(f"packaged configs: {', '.join(packaged_configs())}")
        return
    cfg = load_config(config, set_, check_files=False, check_model=False)
    typer.echo(dump_config(cfg, with_docs=True), nl=False)


@train_app.command("recommend")
def recommend(
    dataset_size: int = typer.Option(..., "--dataset-size", help="number of training images"),
    gpu_memory: float = typer.Option(..., "--gpu-memory", help="memory of one GPU in GB"),
    model: str = typer.Option("Qwen2.5-VL-7B-Instruct", "--model", help="released model (hub id or name)"),
) -> None:
    """Print a starting config (method, rank, lr, batch, pixels) as YAML, with the reasoning as comments."""
    from jamspotter.train.recommend import recommend_yaml

    typer.echo(recommend_yaml(dataset_size, gpu_memory, model), nl=False)


@train_app.command("merge")
def merge(
    adapter: Path = typer.Argument(..., help="LoRA adapter folder (e.g. runs/x/final)"),
    out: Path = typer.Option(..., "--out", help="folder for the merged bf16 model"),
    base: str = typer.Option(None, "--base", help="base model (default: from adapter_config.json)"),
    dtype: str = typer.Option("stored", "--dtype",
                              help="stored (the base model's own dtype) | bf16 | fp16 | fp32 (merged weights)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier merge in OUT"),
) -> None:
    """Merge a LoRA adapter into its base: safetensors + processor + run contract (transformers/vLLM loadable).

    The merged weights keep the base model's stored dtype (bf16 for released Qwen-VL checkpoints), so
    `infer MERGED` answers as `infer ADAPTER` does on the same machine.
    """
    from jamspotter.train.merge import merge_adapter

    typer.echo(f"merged model: {merge_adapter(adapter, out, base=base, dtype=dtype, overwrite=overwrite)}")


@train_app.command("k8s")
def k8s(
    config: str = typer.Option(..., "--config", "-c", help="training config to run"),
    gpus: int = typer.Option(1, "--gpus", help="GPUs for the pod (torchrun processes)"),
    pvc: str = typer.Option(..., "--pvc", help="PersistentVolumeClaim holding data and runs"),
    image: str = typer.Option(..., "--image", help="container image with jamspotter installed"),
    name: str = typer.Option("jamspotter-sft", "--name", help="Job name"),
    cpus: int = typer.Option(8, "--cpus"),
    memory: int = typer.Option(64, "--memory", help="pod memory in GiB"),
    gpu_product: str = typer.Option(None, "--gpu-product", help="e.g. NVIDIA-A100-SXM4-80GB (node affinity)"),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    out: Path = typer.Option(None, "--out", help="write the manifest here (default: stdout)"),
) -> None:
    """Write a Kubernetes Job (+ ConfigMap) that runs this training; apply it with kubectl."""
    from jamspotter.data.io import atomic_write
    from jamspotter.train.k8s import job_from_config

    text = job_from_config(config, name=name, gpus=gpus, pvc=pvc, image=image, cpus=cpus, memory_gb=memory,
                           overrides=set_, gpu_product=gpu_product)
    if out is None:
        typer.echo(text, nl=False)
        return
    with atomic_write(out) as fh:
        fh.write(text)
    typer.echo(f"wrote {out}; run: kubectl apply -f {out}")


@train_app.command("tiny-model")
def tiny_model(
    family: str = typer.Argument(..., help="qwen2-vl, qwen2.5-vl or qwen3-vl"),
    out: Path = typer.Argument(..., help="output folder"),
    real_tokenizer: bool = typer.Option(None, "--real-tokenizer/--small-tokenizer",
                                        help="Qwen's tokenizer (shared data) or a small BPE; default: real if found"),
) -> None:
    """Build a tiny random model of the family's real class (for offline tests and CPU demos)."""
    from jamspotter.models.families import check_family
    from jamspotter.models.tiny import build_tiny_model

    typer.echo(f"tiny {family} model: {build_tiny_model(check_family(family), out, real_tokenizer=real_tokenizer)}")
