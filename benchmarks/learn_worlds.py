"""Benchmark: does a tiny Qwen2.5-VL, trained from scratch, generalise to unseen scenes of a synth world?

Renders a training set of `--world` (`jamspotter data synth --world`, seed `--seed`) and a held-out set
from a different seed (`--val-seed`, default seed + 1), trains `tiny:qwen2.5-vl` with the packaged
`tiny` SFT config (full fine-tuning, batch 8, 112x112, min/max pixels 3136/12544, detection task only,
the world's classes in the prompt) and records held-out detection F1@0.5 and mean IoU of the matches
every `--f1-steps` steps (the SFT F1 callback: `detection_f1.json`) and at the end, with wall times
and seeds. Results are merged into `--results` (one entry per world, images, steps, learning rate and
seeds; a rerun replaces its entry). The run folder (`OUT/run/final` is the trained model) is kept.

    .venv/bin/python benchmarks/learn_worlds.py --world shapes --n-train 1024 --steps 6000 \\
        --out /tmp/worlds/shapes-6000 --seed 1

Measured numbers and the command of each entry are in benchmarks/results/learn_worlds.json.
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

RESULTS = Path(__file__).resolve().parent / "results" / "learn_worlds.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world", default="shapes", help="synth world (jamspotter data synth --world)")
    p.add_argument("--n-train", type=int, default=1024, help="training images")
    p.add_argument("--n-val", type=int, default=64, help="held-out images (all of them scored for F1)")
    p.add_argument("--steps", type=int, default=6000, help="optimizer steps (batch 8)")
    p.add_argument("--f1-steps", type=int, default=1500, help="held-out F1 every this many steps")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine schedule)")
    p.add_argument("--size", default="112x112", help="image size WIDTHxHEIGHT")
    p.add_argument("--max-new-tokens", type=int, default=128, help="generation budget per held-out image")
    p.add_argument("--seed", type=int, default=1, help="seed of the training images and of training")
    p.add_argument("--val-seed", type=int, default=None, help="seed of the held-out images (default: seed + 1)")
    p.add_argument("--out", required=True, type=Path, help="work folder: train/, val/ and run/ (new or ours)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT when an earlier run of this script wrote it")
    p.add_argument("--results", type=Path, default=RESULTS, help="JSON file the entry is merged into")
    return p.parse_args(argv)


def render(folder: Path, world: str, n: int, size: tuple[int, int], seed: int) -> tuple[int, int, float]:
    """Write a dataset of `world` to `folder`; (images, objects, seconds)."""
    from jamspotter.synth import generate_dataset

    t0 = time.perf_counter()
    samples = generate_dataset(folder, n, size, seed=seed, world=world)
    return n, sum(len(s.objects) for s in samples), time.perf_counter() - t0


def train(args: argparse.Namespace, train_dir: Path, val_dir: Path, run_dir: Path, classes: tuple[str, ...]) -> Any:
    """Train the tiny model as configured by `args`; returns the SFTResult."""
    from jamspotter.train.config import load_config
    from jamspotter.train.sft import run_sft

    overrides = [
        f"data.train={train_dir}", f"data.eval={val_dir}", f"train.output_dir={run_dir}",
        f"train.max_steps={args.steps}", f"train.lr={args.lr}", f"train.seed={args.seed}",
        f"train.f1_steps={args.f1_steps}", f"train.f1_samples={args.n_val}",
        f"train.f1_max_new_tokens={args.max_new_tokens}", f"train.eval_steps={args.f1_steps}",
        f"train.save_steps={args.f1_steps}", "train.save_total_limit=1", "train.logging_steps=100",
        "data.vqa=false", "data.clips=false", "data.classes=" + json.dumps(list(classes)),
    ]
    cfg = load_config("tiny", overrides)
    return run_sft(cfg, overwrite=False)


def merge_result(path: Path, entry: dict[str, Any]) -> None:
    """Put `entry` into the results file, replacing an earlier entry of the same world, sizes, steps and seeds."""
    from jamspotter.data.io import atomic_write

    key = ("world", "n_train", "n_val", "size", "steps", "lr", "seeds")
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"runs": []}
    runs = [r for r in data.get("runs", []) if any(r.get(k) != entry[k] for k in key)]
    runs.append(entry)
    runs.sort(key=lambda r: (r["world"], r["n_train"], r["steps"], json.dumps(r["seeds"])))
    data = {"about": "held-out detection F1@0.5 of tiny:qwen2.5-vl trained from scratch on a synth world "
                     "(benchmarks/learn_worlds.py)", "runs": runs}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        fh.write(json.dumps(data, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run the measurement; prints the summary and returns the exit status."""
    args = parse_args(argv)
    from jamspotter.cli.synth import parse_size
    from jamspotter.errors import JamspotterError
    from jamspotter.outputs import prepare_dir, record_files
    from jamspotter.synth.worlds import get_world

    try:
        world = get_world(args.world)
        size = parse_size(args.size)
        val_seed = args.seed + 1 if args.val_seed is None else args.val_seed
        if val_seed == args.seed:
            raise JamspotterError("--val-seed must differ from --seed: the held-out scenes must be unseen")
        out = prepare_dir(args.out, "learn_worlds", overwrite=args.overwrite)
    except JamspotterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tr = render(out / "train", world.name, args.n_train, size, args.seed)
    va = render(out / "val", world.name, args.n_val, size, val_seed)
    print(f"{world.name}: {tr[0]} train images ({tr[1]} objects, {tr[2]:.1f} s), "
          f"{va[0]} held-out ({va[1]} objects, seed {val_seed})", flush=True)
    t0 = time.perf_counter()
    result = train(args, out / "train", out / "val", out / "run", world.classes)
    seconds = time.perf_counter() - t0
    record_files(out)
    history = json.loads((out / "run" / "detection_f1.json").read_text(encoding="utf-8"))
    final = result.metrics.get("detection") or (history[-1] if history else {})
    entry = {
        "world": world.name, "world_summary": world.summary, "classes": list(world.classes),
        "n_train": args.n_train, "n_val": args.n_val, "train_objects": tr[1], "val_objects": va[1],
        "size": args.size, "steps": args.steps, "lr": args.lr, "batch": 8,
        "seeds": {"train_images": args.seed, "val_images": val_seed, "training": args.seed},
        "final": {k: final.get(k) for k in ("step", "f1", "mean_iou", "precision", "recall", "jam_recall")},
        "history": history, "train_loss": result.train_loss, "eval_loss": result.metrics.get("eval_loss"),
        "train_seconds": round(seconds, 1), "synth_seconds": round(tr[2] + va[2], 1),
        "final_dir": str(result.final_dir),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "machine": machine(),  # CPU, load average (a shared machine's wall times), versions, commit
        "date": time.strftime("%Y-%m-%d"),
    }
    merge_result(args.results, entry)
    for h in history:
        print(f"step {h['step']}: held-out F1@0.5 {h['f1']}, mean IoU {h['mean_iou']}")
    print(f"{world.name}: final held-out F1@0.5 {final.get('f1')} (mean IoU {final.get('mean_iou')}) after "
          f"{args.steps} steps in {seconds:.0f} s; model: {result.final_dir}; results: {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
