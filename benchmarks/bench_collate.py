"""Benchmark: SFT batches per second, our collator vs TRL's default vision-language collation, same rows.

Both arms start from the same synthetic belt scenes on disk (`jamspotter.synth`), the same processor with the
same pixel budget, and the same batch size, and do what a Trainer's DataLoader does for one batch: fetch the
rows from a `datasets.Dataset` (`__getitems__`) and call the collator.

- ours: rows as `train sft` stores them (`example_to_row`), `jamspotter.train.data.SFTCollator`: decode the
  image (EXIF-upright RGB), render prompt and target through the run contract's format, chat template,
  processor, assistant-only labels.
- reference: TRL's `DataCollatorForVisionLanguageModeling` (what `SFTTrainer` uses for "messages" + "images"
  rows) on rows holding the same prompt and answer text as plain strings and the image in an `Image()` column
  (decoded by `datasets` when the rows are fetched); labels on every non-pad token (TRL's default).

Checks that both produce the same input_ids, attention mask, image grid and pixel values, and that our labels
are the input ids exactly on the assistant answers. The arms take turns batch by batch; reported: samples/s of
each arm's best pass (the least disturbed by other load; all passes kept in the JSON) and samples per CPU-second
over all passes (process time, which other jobs on the machine disturb less than wall time), and the median over
batches of TRL's time / ours for the same batch (timed back to back, so the most robust to load bursts).

    .venv/bin/python benchmarks/bench_collate.py [--rows 64] [--batch 8] [--repeat 3] [--size 640x480]
        [--max-pixels 401408] [--threads 1] [--model DIR] [--results-dir benchmarks/results]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _results import Ratio, add_results_arg, ratio_table, write_results

from jamspotter.data.records import Sample
from jamspotter.formats import resize_params
from jamspotter.formats.contract import RunContract, dataset_classes
from jamspotter.models.loading import detect_family, load_processor
from jamspotter.models.tiny import build_tiny_model
from jamspotter.synth import generate_dataset
from jamspotter.train.data import IGNORE_INDEX, Example, SFTCollator, example_to_row

Batch = dict[str, Any]


def build_rows(samples: list[Sample], root: Path, fmt: Any) -> tuple[Any, Any]:
    """(our dataset, TRL's dataset) over the same samples: our rows, and messages + Image() rows with the
    same prompt and answer text (rendered once, as a `dataset.map` would)."""
    import datasets

    ours = datasets.Dataset.from_list([example_to_row(Example(s, str(root))) for s in samples])
    trl_rows = []
    for s in samples:
        ((user, answer),) = fmt.render_turns(s)  # detection scenes: one turn
        trl_rows.append({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
                         "images": [str(s.image_path(root))]})
    trl = datasets.Dataset.from_list(trl_rows).cast_column("images", datasets.Sequence(datasets.Image()))
    return ours, trl


def timed_passes(arms: dict[str, tuple[Any, Callable[[list[dict[str, Any]]], Batch]]], batch: int,
                 repeat: int) -> tuple[dict[str, list[float]], dict[str, float], dict[str, list[float]]]:
    """Wall seconds of each pass, CPU seconds of all passes, and wall seconds of every batch, per arm, to fetch
    and collate every row.

    The arms take turns batch by batch (first arm alternating), so a burst of other load hits both alike.
    """
    wall = {k: [0.0] * repeat for k in arms}
    cpu = dict.fromkeys(arms, 0.0)
    per_batch: dict[str, list[float]] = {k: [] for k in arms}
    n = len(next(iter(arms.values()))[0])
    order = list(arms)
    for r in range(repeat):
        for b, i in enumerate(range(0, n, batch)):
            idx = list(range(i, min(i + batch, n)))
            for name in order if (r + b) % 2 == 0 else order[::-1]:
                ds, collate = arms[name]
                t0, c0 = time.perf_counter(), time.process_time()
                collate(ds.__getitems__(idx))
                dt = time.perf_counter() - t0
                cpu[name] += time.process_time() - c0
                wall[name][r] += dt
                per_batch[name].append(dt)
    return wall, cpu, per_batch


def compare(ours: Batch, ref: Batch, tokenizer: Any) -> dict[str, Any]:
    """Whether both batches hold the same model inputs, and whether our labels are exactly the answers."""
    import torch

    same = {k: bool(torch.equal(ours[k], ref[k])) for k in ("input_ids", "attention_mask", "image_grid_thw")}
    same["pixel_values"] = bool(torch.allclose(ours["pixel_values"], ref["pixel_values"]))
    supervised = ours["labels"] != IGNORE_INDEX
    labels_are_ids = bool(torch.equal(ours["labels"][supervised], ours["input_ids"][supervised]))
    # the supervised text of each row must be exactly its assistant answer + <|im_end|>
    answers = [tokenizer.decode(row[mask]) for row, mask in zip(ours["input_ids"], supervised, strict=True)]
    return {"same_inputs": same, "labels_are_input_ids": labels_are_ids, "answers_end_with_im_end":
            all(a.endswith("<|im_end|>") for a in answers),
            "supervised_tokens_ours": int(supervised.sum()),
            "supervised_tokens_trl": int((ref["labels"] != IGNORE_INDEX).sum()),
            "tokens": int(ours["attention_mask"].sum())}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its table, write benchmarks/results/collate.json; returns what was written."""
    import datasets
    import torch
    import transformers
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=64, help="synthetic scenes (rows) per pass")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3, help="timed passes per arm (alternating)")
    ap.add_argument("--size", default="640x480", help="scene size WxH")
    ap.add_argument("--min-pixels", type=int, default=3136)
    ap.add_argument("--max-pixels", type=int, default=401408, help="image pixel budget (512 image tokens)")
    ap.add_argument("--family", default="qwen2.5-vl", choices=("qwen2-vl", "qwen2.5-vl", "qwen3-vl"),
                    help="family of the tiny model (a --model folder's own family is read from its config)")
    ap.add_argument("--model", type=Path, help="model folder whose processor to use (default: a tiny one)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (a DataLoader worker uses 1; on a shared 2-core machine two "
                         "spinning OpenMP threads ran the image processor several times slower)")
    add_results_arg(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))

    with tempfile.TemporaryDirectory(prefix="bench_collate_") as tmp:
        model_dir = args.model or build_tiny_model(args.family, Path(tmp) / "model")
        processor = load_processor(model_dir, min_pixels=args.min_pixels, max_pixels=args.max_pixels)
        samples = generate_dataset(Path(tmp) / "scenes", args.rows, (w, h), seed=0)
        params = resize_params(processor)
        family = detect_family(model_dir) if args.model else args.family
        contract = RunContract(family=family, min_pixels=params.min_pixels, max_pixels=params.max_pixels,
                               classes=dataset_classes(samples))
        fmt = contract.format(processor)
        ours_ds, trl_ds = build_rows(samples, Path(tmp) / "scenes", fmt)
        ours = SFTCollator(processor, fmt)
        trl = DataCollatorForVisionLanguageModeling(processor)

        first = list(range(min(args.batch, args.rows)))
        checks = compare(ours(ours_ds.__getitems__(first)), trl(trl_ds.__getitems__(first)), processor.tokenizer)
        wall, cpu, per_batch = timed_passes({"ours": (ours_ds, ours), "trl": (trl_ds, trl)}, args.batch, args.repeat)

    passes = {k: [args.rows / t for t in v] for k, v in wall.items()}
    per_cpu_s = {k: args.rows * args.repeat / v for k, v in cpu.items()}
    best = {k: max(v) for k, v in passes.items()}
    # each batch timed back to back in both arms: the median of these paired ratios shrugs off load bursts
    paired = statistics.median(t / o for o, t in zip(per_batch["ours"], per_batch["trl"], strict=True))
    print(f"{args.rows} rows of {w}x{h} belt scenes, batch {args.batch}, {type(processor).__name__}, pixel budget "
          f"{params.min_pixels}..{params.max_pixels}, vocabulary {len(processor.tokenizer)}, "
          f"{torch.get_num_threads()} torch threads; {checks['tokens'] / len(first):.0f} tokens/row")
    for k, v in passes.items():
        print(f"  {k:<5} samples/s per pass: " + ", ".join(f"{x:.1f}" for x in v))
    same = all(checks["same_inputs"].values())
    print(f"same model inputs from both: {'yes' if same else 'NO: ' + str(checks['same_inputs'])}; "
          f"our labels = the answers only: {checks['labels_are_input_ids'] and checks['answers_end_with_im_end']} "
          f"({checks['supervised_tokens_ours']} supervised tokens vs TRL's {checks['supervised_tokens_trl']})")
    ref = "TRL DataCollatorForVisionLanguageModeling"
    ratios = [Ratio("collate samples/s (best pass): ours vs TRL", best["ours"], best["trl"], "samples/s", ref),
              Ratio("collate samples per CPU-second: ours vs TRL", per_cpu_s["ours"], per_cpu_s["trl"],
                    "samples/cpu-s", ref),
              Ratio("collate batch time, median of paired ratios", 1.0, paired, "x ours", ref,
                    higher_is_better=False)]
    print(ratio_table(ratios))
    if paired < 1:
        print(f"NOTE: per batch, ours took {1 / paired:.3f}x TRL's time on this run (median over batches)")
    settings = vars(args) | {"model": str(args.model) if args.model else f"tiny:{family}", "family": family,
                             "min_pixels_effective": params.min_pixels, "max_pixels_effective": params.max_pixels,
                             "vocabulary": len(processor.tokenizer), "torch_threads": torch.get_num_threads()}
    results = {"samples_per_s_best": best, "samples_per_s_median": {k: statistics.median(v)
                                                                     for k, v in passes.items()},
               "samples_per_s_passes": passes, "samples_per_cpu_s": per_cpu_s,
               "median_paired_batch_time_ratio_trl_over_ours": paired}
    path = write_results("collate", script=__file__, argv=argv, settings=settings, results=results, ratios=ratios,
                         results_dir=args.results_dir, checks=checks)
    return {"path": path, "results": results, "checks": checks, "ratios": ratios}


if __name__ == "__main__":
    main()
