"""Benchmark: detection throughput, batched `Detector` vs a plain one-image-at-a-time `model.generate` loop.

Both arms run the same model, processor (pixel budget), prompt, images (synthetic belt scenes of one size) and
generation settings: greedy, the same `max_new_tokens`, the vision pad tokens suppressed (a random model that
picked one would break its next forward pass). The reference is what a user writes first: chat template,
processor and `generate` for each image in turn, decoded. The Detector arm is `Detector.detect(images,
batch_size=B)` (left-padded batches, answers parsed into boxes) for each B of `--batches`. Checks that both arms
produce the same answer text for every image and says where not (batched matrix products may round
differently, and a random model's near-tied logits can then pick another token).

CPU (default): a tiny random Qwen2.5-VL (`jamspotter.models.tiny`), or `--model DIR` (any model folder).
GPU: `--device cuda --arch-config DIR` builds the architecture of a real config folder (e.g. Qwen2.5-VL-7B-Instruct
from qwen_configs) with random bf16 weights directly on the device, plus Qwen's tokenizer (`--tokenizer DIR`,
default: the config folder itself if it holds tokenizer.json, else `qwen2_5_vl_tokenizer/` two folders up, the
layout of ../shared/data), and reports images/s and peak allocated / reserved memory per batch size. The same
path runs on CPU with a small config folder (`--device cpu --arch-config DIR`), which is how it is rehearsed.

    .venv/bin/python benchmarks/bench_detect.py [--images 16] [--batches 1,4,8] [--max-new-tokens 32]
    .venv/bin/python benchmarks/bench_detect.py --device cuda --arch-config qwen_configs/Qwen2.5-VL-7B-Instruct \\
        --batches 1,4,16 --images 32 --max-new-tokens 64 --results-dir $OUT
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import Ratio, add_results_arg, ratio_table, write_results

from jamspotter.formats.contract import RunContract
from jamspotter.infer.detector import Detector, cut_at_stops, settle_contract
from jamspotter.models.families import QWEN3_EXTRA_TOKENS, VISION_TOKENS, family_from_model_type
from jamspotter.models.loading import load_model, load_processor
from jamspotter.models.tiny import build_tiny_model

CONFIG_FILES = ("config.json", "preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json",
                "chat_template.json", "chat_template.jinja", "generation_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt")


def tokenizer_dir(arch: Path, given: Path | None) -> Path:
    """The tokenizer folder for `--arch-config`: `given`, the config folder if it has one, or the sibling
    `qwen2_5_vl_tokenizer/` of the `qwen_configs/` folder holding it."""
    for cand in ([given] if given else [arch, arch.parent.parent / "qwen2_5_vl_tokenizer"]):
        if (cand / "tokenizer.json").is_file():
            return cand
    raise SystemExit(f"bench_detect: no tokenizer.json in {given or arch} or {arch.parent.parent}/"
                     "qwen2_5_vl_tokenizer; pass --tokenizer DIR")


def model_from_arch(arch: Path, tokenizer: Path, work: Path, device: str, dtype: str, min_pixels: int,
                    max_pixels: int) -> tuple[Any, Any, str]:
    """(model with random weights built on `device`, processor, family) from a config folder and a tokenizer.

    The config and processor files and the tokenizer are gathered into `work` (a model folder without
    weights), so the processor loads through `load_processor` as a trained model's would.
    """
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer, GenerationConfig

    work.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (tokenizer / name).is_file():
            shutil.copy(tokenizer / name, work / name)
    for name in CONFIG_FILES:  # after the tokenizer: the model's own chat template wins
        if (arch / name).is_file():
            shutil.copy(arch / name, work / name)
    config = AutoConfig.from_pretrained(arch)
    family = family_from_model_type(config.model_type)
    tok = AutoTokenizer.from_pretrained(work)
    if family == "qwen3-vl" and tok.convert_tokens_to_ids("<think>") in (None, tok.unk_token_id):
        tok.add_tokens(list(QWEN3_EXTRA_TOKENS))  # Qwen3-VL's ids 151665-151668 (see qwen_configs/TOKENS.md)
        tok.save_pretrained(work)
    processor = load_processor(work, min_pixels=min_pixels, max_pixels=max_pixels)
    torch_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the device: 8B random parameters never pass through host memory
        model = AutoModelForImageTextToText.from_config(config, dtype=torch_dtype)
    ids = [tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    model.generation_config = GenerationConfig(eos_token_id=ids, pad_token_id=ids[1], do_sample=False)
    return model.eval(), processor, family


def plain_loop(model: Any, processor: Any, prompt: str, images: list[Any], max_new_tokens: int,
               suppress: list[int]) -> list[str]:
    """The reference: one image at a time through chat template, processor, greedy `generate` and decode."""
    import torch

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    tok = processor.tokenizer
    answers = []
    for image in images:
        inputs = processor(text=[text], images=[image], return_tensors="pt").to(model.device)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                 suppress_tokens=suppress, pad_token_id=tok.pad_token_id)
        answers.append(tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=False))
    return answers


def load_images(folder: Path | None, n: int, size: tuple[int, int], scratch: Path) -> list[Any]:
    """`n` RGB images: the first of `folder` (sorted), or belt scenes of `size` rendered into `scratch`."""
    from PIL import Image

    if folder is not None:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
        if len(paths) < n:
            raise SystemExit(f"bench_detect: {folder} has {len(paths)} images, --images asks for {n}")
    else:
        from jamspotter.synth import generate_dataset

        paths = [s.image_path(scratch) for s in generate_dataset(scratch, n, size, seed=0)]
    return [Image.open(p).convert("RGB") for p in paths]


class Memory:
    """Peak CUDA memory (allocated, reserved) of one arm; None on CPU."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def reset(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> dict[str, float] | None:
        import torch

        if not self.cuda:
            return None
        torch.cuda.synchronize()
        return {"allocated": round(torch.cuda.max_memory_allocated() / 2**30, 3),
                "reserved": round(torch.cuda.max_memory_reserved() / 2**30, 3)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its table, write benchmarks/results/detect_<device>[_<arch>].json."""
    import torch
    import transformers

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--batches", default="1,4,8", help="Detector batch sizes, comma-separated")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=1, help="timed runs of each arm (best kept)")
    ap.add_argument("--size", default="640x480", help="scene size WxH")
    ap.add_argument("--images-dir", type=Path,
                    help="take the images (sorted *.jpg / *.png) from this folder instead of rendering belt scenes "
                         "(rendering needs OpenCV, which a bare GPU machine may not have)")
    ap.add_argument("--min-pixels", type=int, default=3136)
    ap.add_argument("--max-pixels", type=int, default=401408)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--dtype", default=None, choices=("bfloat16", "float16", "float32"),
                    help="weights for --arch-config (default: bfloat16 on cuda, float32 on cpu)")
    ap.add_argument("--arch-config", type=Path, help="a real config folder: its architecture, random weights")
    ap.add_argument("--tokenizer", type=Path, help="tokenizer folder for --arch-config")
    ap.add_argument("--model", type=Path, help="a model folder with weights (default: a tiny random Qwen2.5-VL)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU")
    add_results_arg(ap)
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    w, h = (int(v) for v in args.size.split("x"))
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("bench_detect: --device cuda but torch sees no CUDA device")
    if args.model and args.arch_config:
        raise SystemExit("bench_detect: --model and --arch-config exclude each other")
    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")

    with tempfile.TemporaryDirectory(prefix="bench_detect_") as tmp:
        t0 = time.perf_counter()
        if args.arch_config:
            tok_dir = tokenizer_dir(args.arch_config, args.tokenizer)
            model, processor, family = model_from_arch(args.arch_config, tok_dir, Path(tmp) / "model", args.device,
                                                       dtype, args.min_pixels, args.max_pixels)
            trained = None
            source = f"{args.arch_config.name} architecture, random {dtype} weights"
        else:
            folder = args.model or build_tiny_model("qwen2.5-vl", Path(tmp) / "model")
            model, processor = load_model(folder, dtype=dtype if args.dtype else "auto",
                                          min_pixels=args.min_pixels, max_pixels=args.max_pixels)
            model = model.to(args.device).eval()
            family, trained = model.jamspotter_family, RunContract.load(folder)
            source = str(args.model) if args.model else "tiny random qwen2.5-vl (jamspotter.models.tiny)"
        load_s = time.perf_counter() - t0
        contract = settle_contract(trained, family, processor, source)
        det = Detector.from_loaded(model, processor, contract, max_new_tokens=args.max_new_tokens, name=source)
        images = load_images(args.images_dir, args.images, (w, h), Path(tmp) / "scenes")

    tok = processor.tokenizer
    suppress = [tok.convert_tokens_to_ids(t) for t in VISION_TOKENS]
    stops = [t for t in ("<|im_end|>", tok.pad_token, "<|endoftext|>") if t]
    n_params = sum(p.numel() for p in model.parameters())
    mem = Memory(args.device)
    # warm-up, untimed: first calls pay for lazy initialisation (kernels, caches) in both arms
    plain_loop(model, processor, det.prompt, images[:1], args.max_new_tokens, suppress)
    det.detect(images[:min(len(images), max(batches))], batch_size=max(batches))

    loop_s, loop_answers, loop_mem = float("inf"), [], None
    det_s = dict.fromkeys(batches, float("inf"))
    det_answers: dict[int, list[str]] = {}
    det_mem: dict[int, Any] = {}
    for _ in range(args.repeat):
        mem.reset()
        t = time.perf_counter()
        raw = plain_loop(model, processor, det.prompt, images, args.max_new_tokens, suppress)
        loop_s = min(loop_s, time.perf_counter() - t)
        loop_answers, loop_mem = [cut_at_stops(a, stops).strip() for a in raw], mem.peak_gib()
        for b in batches:
            mem.reset()
            t = time.perf_counter()
            found = det.detect(images, batch_size=b)
            det_s[b] = min(det_s[b], time.perf_counter() - t)
            det_answers[b], det_mem[b] = [d.text for d in found], mem.peak_gib()

    n = len(images)
    loop_ips = n / loop_s
    same = {b: sum(a == r for a, r in zip(det_answers[b], loop_answers, strict=True)) for b in batches}
    what = f"images from {args.images_dir}" if args.images_dir else f"belt scenes {w}x{h}"
    print(f"{source} ({n_params / 1e9:.3g}B parameters, loaded in {load_s:.1f} s) on {args.device}, "
          f"{n} {what}, greedy, max_new_tokens {args.max_new_tokens}, "
          f"{torch.get_num_threads()} torch threads")
    print(f"  plain generate loop, one image at a time: {loop_ips:7.2f} images/s"
          + (f", peak {loop_mem['allocated']:.2f} GiB allocated / {loop_mem['reserved']:.2f} reserved"
             if loop_mem else ""))
    for b in batches:
        m = det_mem[b]
        print(f"  Detector.detect batch_size={b:<3}            {n / det_s[b]:7.2f} images/s"
              + (f", peak {m['allocated']:.2f} GiB allocated / {m['reserved']:.2f} reserved" if m else "")
              + f"; same answer as the loop for {same[b]}/{n} images")
        if same[b] < n:
            i = next(i for i, (a, r) in enumerate(zip(det_answers[b], loop_answers, strict=True)) if a != r)
            print(f"    first difference, image {i}: detector {det_answers[b][i][:80]!r} vs loop "
                  f"{loop_answers[i][:80]!r}")
    ratios = [Ratio(f"detect images/s, batch {b} vs one-by-one loop", n / det_s[b], loop_ips, "images/s",
                    "plain model.generate loop, batch 1") for b in batches]
    print(ratio_table(ratios))
    name = f"detect_{args.device.split(':')[0]}" + (f"_{args.arch_config.name}" if args.arch_config else "")
    settings = vars(args) | {"batches": batches, "dtype": dtype, "source": source, "family": family,
                             "parameters": n_params, "torch_threads": torch.get_num_threads(),
                             "pixel_budget": [contract.min_pixels, contract.max_pixels]}
    results = {"images_per_s_loop": loop_ips, "images_per_s_detector": {str(b): n / det_s[b] for b in batches},
               "seconds_loop": loop_s, "seconds_detector": {str(b): det_s[b] for b in batches},
               "peak_gib_loop": loop_mem, "peak_gib_detector": {str(b): det_mem[b] for b in batches},
               "load_seconds": load_s,
               "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}
    checks = {"same_answers": {str(b): f"{same[b]}/{n}" for b in batches},
              "all_same": all(v == n for v in same.values()),
              "answer_chars_loop": sum(len(a) for a in loop_answers)}
    path = write_results(name, script=__file__, argv=argv, settings=settings, results=results, ratios=ratios,
                         results_dir=args.results_dir, checks=checks)
    return {"path": path, "results": results, "checks": checks, "ratios": ratios}


if __name__ == "__main__":
    main()
