"""Learning check: does GRPO raise the mean detection reward over its SFT start, on the training prompts
AND on held-out scenes?

Starts from a deliberately short SFT run of a tiny Qwen2.5-VL on a synth world (`--sft`: a `final/`
folder, e.g. from `benchmarks/learn_worlds.py --steps 1500`), scores greedy answers with the GRPO
`detection_reward` (the same function GRPO optimises) on `--n-score` training images and on the
held-out set, runs `jamspotter train grpo` for `--steps` steps on the training images, and scores the
GRPO model the same way. Prints both pairs and merges an entry (numbers, seeds, times, settings) into
benchmarks/results/grpo_learning.json.

    .venv/bin/python benchmarks/grpo_learning.py --sft /tmp/worlds/shapes-1500/run/final \\
        --train /tmp/worlds/shapes-1500/train --val /tmp/worlds/shapes-1500/val --out /tmp/grpo-learn
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from _results import machine

RESULTS = Path(__file__).resolve().parent / "results" / "grpo_learning.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sft", type=Path, required=True, help="the SFT model folder (with jamspotter.json)")
    p.add_argument("--train", type=Path, required=True, help="training dataset (GRPO prompts)")
    p.add_argument("--val", type=Path, required=True, help="held-out dataset (never a prompt)")
    p.add_argument("--out", type=Path, required=True, help="GRPO run folder (new, or ours with --overwrite)")
    p.add_argument("--steps", type=int, default=200, help="GRPO optimizer steps")
    p.add_argument("--lr", type=float, default=5e-5, help="GRPO learning rate (full fine-tuning of the tiny model)")
    p.add_argument("--generations", type=int, default=8, help="completions per prompt")
    p.add_argument("--batch", type=int, default=16, help="completions per step (a multiple of --generations)")
    p.add_argument("--beta", type=float, default=0.0, help="KL weight (0: no reference model)")
    p.add_argument("--temperature", type=float, default=1.0, help="rollout sampling temperature")
    p.add_argument("--max-new-tokens", type=int, default=128, help="completion / greedy answer budget")
    p.add_argument("--n-score", type=int, default=64, help="training images scored before and after")
    p.add_argument("--seed", type=int, default=0, help="seed of GRPO (sampling, data order)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier GRPO run in OUT")
    p.add_argument("--results", type=Path, default=RESULTS, help="JSON file the entry is merged into")
    return p.parse_args(argv)


def mean_reward(model: Path, dataset: Path, n: int | None, max_new_tokens: int) -> dict[str, float]:
    """Greedy answers of `model` on the first `n` images of `dataset`, scored by GRPO's detection_reward."""
    from jamspotter.data.io import read_samples, samples_path
    from jamspotter.infer import Detector
    from jamspotter.train.rewards import detection_reward

    detector = Detector(model, max_new_tokens=max_new_tokens, device="cpu")
    samples = [s for s in read_samples(samples_path(dataset)) if s.image is not None][:n]
    root = samples_path(dataset).parent
    results = detector.detect([s.image_path(root) for s in samples], batch_size=8)
    fmt = detector.format
    gt = [[{"label": o.label, "bbox": o.bbox, "jam_risk": fmt.is_jam(o)} for o in fmt.expected_objects(s.objects)]
          for s in samples]
    rewards = detection_reward([r.text for r in results], gt=gt, image_size=[list(r.image_size) for r in results],
                               family=[detector.family] * len(results),
                               input_size=[list(r.input_size) for r in results], taxonomy=fmt.taxonomy)
    scored = [r for r in rewards if r is not None]
    return {"mean_detection_reward": round(sum(scored) / max(1, len(scored)), 4), "images": len(scored)}


def run_grpo(args: argparse.Namespace) -> dict[str, Any]:
    """`jamspotter train grpo` on the training images with this script's settings; returns its metrics."""
    from typer.testing import CliRunner

    from jamspotter.cli import app

    sets = {"data.train": args.train, "train.output_dir": args.out, "grpo.output_dir": args.out,
            "grpo.max_steps": args.steps, "grpo.lr": args.lr, "grpo.num_generations": args.generations,
            "grpo.batch_size": args.batch, "grpo.beta": args.beta, "grpo.temperature": args.temperature,
            "grpo.max_completion_length": args.max_new_tokens, "grpo.save_steps": max(args.steps, 1),
            "grpo.logging_steps": 10, "train.seed": args.seed, "data.vqa": "false", "data.clips": "false"}
    cmd = ["train", "grpo", "--config", "tiny", "--from", str(args.sft),
           *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]] + (["--overwrite"] if args.overwrite else [])
    print("$ jamspotter " + shlex.join(cmd), flush=True)
    result = CliRunner().invoke(app, cmd)
    print(result.output[-2000:], flush=True)
    if result.exit_code != 0:
        raise SystemExit(f"train grpo failed: {result.output.strip().splitlines()[-1:]}")
    return json.loads((args.out / "metrics.json").read_text()) | {"command": "jamspotter " + shlex.join(cmd)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    before = {"train": mean_reward(args.sft, args.train, args.n_score, args.max_new_tokens),
              "held_out": mean_reward(args.sft, args.val, None, args.max_new_tokens)}
    print(f"SFT start: {before}", flush=True)
    t1 = time.perf_counter()
    metrics = run_grpo(args)
    grpo_seconds = time.perf_counter() - t1
    after = {"train": mean_reward(args.out / "final", args.train, args.n_score, args.max_new_tokens),
             "held_out": mean_reward(args.out / "final", args.val, None, args.max_new_tokens)}
    print(f"after GRPO: {after}", flush=True)
    sft_contract = json.loads((args.sft / "jamspotter.json").read_text())
    entry = {"sft": str(args.sft), "sft_training": sft_contract.get("training", {}), "before": before,
             "after": after, "grpo_steps": metrics["global_step"], "grpo_seconds": round(grpo_seconds, 1),
             "total_seconds": round(time.perf_counter() - t0, 1), "settings": {
                 k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "results"},
             "first_log": metrics.get("first_log"), "last_log": metrics.get("last_log"),
             "command": metrics["command"], "machine": machine(),
             "date": time.strftime("%Y-%m-%d")}
    entries = json.loads(args.results.read_text()) if args.results.is_file() else []
    entries = [e for e in entries if e.get("settings") != entry["settings"]] + [entry]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(entries, indent=2) + "\n")
    moved = {k: round(after[k]["mean_detection_reward"] - before[k]["mean_detection_reward"], 4) for k in before}
    print(f"mean detection reward change: train {moved['train']:+}, held-out {moved['held_out']:+}; "
          f"GRPO {grpo_seconds:.0f} s; wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
