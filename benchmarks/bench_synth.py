"""Benchmark: synthetic belt images per second at 640x480 (render + JPEG encode + write + labels).

Target: >= 50 images/s on the 2-core dev machine. Prints images/s of `generate_dataset` with one
process and with `--workers` processes, the time split of one image (scene layout and item drawing,
frame composition and labels, JPEG encode), and a reference measured in the same run: PIL encoding
a 640x480 numpy-noise image as JPEG, i.e. the cost of merely producing and writing such a file.
Other jobs on the machine make wall-clock figures noisy, so the single-process run also reports
CPU seconds per image (process time), i.e. what one free core would deliver.

    .venv/bin/python benchmarks/bench_synth.py [--n 200] [--workers 2] [--size 640x480] [--results-dir DIR]

Results: benchmarks/results/synth.json (through benchmarks/_results.py).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from _results import Ratio, add_results_arg, ratio_table, write_results
from PIL import Image

from jamspotter.synth import build_scene, compose, generate_dataset
from jamspotter.synth.conditions import encode_jpeg


def reference_ips(width: int, height: int, n: int) -> float:
    """Images/s of the reference: numpy noise image -> PIL JPEG (quality 90) into memory."""
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(n):
        img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(img).save(io.BytesIO(), format="JPEG", quality=90)
    return n / (time.perf_counter() - t0)


def split(width: int, height: int, n: int) -> dict[str, float]:
    """Mean milliseconds per image of the three stages."""
    t = {"layout+items": 0.0, "compose+labels": 0.0, "jpeg": 0.0}
    for i in range(n):
        t0 = time.perf_counter()
        scene = build_scene(width, height, 1000 + i)
        t1 = time.perf_counter()
        frame = compose(scene, 0)
        t2 = time.perf_counter()
        encode_jpeg(frame.image, scene.conditions.jpeg_quality)
        t3 = time.perf_counter()
        t["layout+items"] += t1 - t0
        t["compose+labels"] += t2 - t1
        t["jpeg"] += t3 - t2
    return {k: 1000 * v / n for k, v in t.items()}


def dataset_ips(width: int, height: int, n: int, workers: int) -> tuple[float, float, float]:
    """Images/s of generate_dataset (wall clock), images per CPU-second of this process, objects per image."""
    with tempfile.TemporaryDirectory() as d:
        t0, c0 = time.perf_counter(), time.process_time()
        samples = generate_dataset(d, n, (width, height), seed=123, workers=workers)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
    return n / dt, n / dc, sum(len(s.objects) for s in samples) / max(n, 1)


def main(argv: list[str] | None = None) -> Path:
    """Run the benchmark, print its table, write synth.json; returns the path written."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--ref-n", type=int, default=50, help="images for the JPEG-encode reference")
    ap.add_argument("--split-n", type=int, default=30, help="images for the per-stage time split")
    add_results_arg(ap)
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))

    cv2.setNumThreads(1)  # as generate_dataset does: parallel over images, not inside OpenCV calls
    build_scene(w, h, 0)  # warm caches (noise tile) and imports
    ref = reference_ips(w, h, args.ref_n)
    print(f"reference (numpy noise -> PIL JPEG, {w}x{h}): {ref:7.1f} images/s")
    parts = split(w, h, args.split_n)
    print("one image, ms: " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
    ips1, cpu1, objs = dataset_ips(w, h, args.n, 1)
    print(f"generate_dataset, 1 process:  {ips1:7.1f} images/s  ({objs:.1f} objects/image)"
          f"  = {ips1 / ref:.2f} x reference  (target 50: {'met' if ips1 >= 50 else 'not met'})")
    print(f"  CPU time: {1000 / cpu1:.1f} ms/image = {cpu1:.1f} images per CPU-second"
          f" (x{args.workers} cores free: ~{cpu1 * args.workers:.0f} images/s)")
    reference = f"numpy noise -> PIL JPEG {w}x{h}"
    ratios = [Ratio("generate_dataset images/s, 1 process", ips1, ref, "images/s", reference)]
    results = {"reference_images_per_s": ref, "split_ms": parts, "images_per_s_1_process": ips1,
               "images_per_cpu_s": cpu1, "objects_per_image": objs}
    if args.workers > 1:
        ipsn, _, _ = dataset_ips(w, h, args.n, args.workers)
        print(f"generate_dataset, {args.workers} processes: {ipsn:7.1f} images/s"
              f"  = {ipsn / ref:.2f} x reference  (target 50: {'met' if ipsn >= 50 else 'not met'})")
        ratios += [Ratio(f"generate_dataset images/s, {args.workers} processes", ipsn, ref, "images/s", reference),
                   Ratio(f"{args.workers} processes vs 1 process", ipsn, ips1, "images/s",
                         "generate_dataset, 1 process")]
        results[f"images_per_s_{args.workers}_processes"] = ipsn
    print(ratio_table(ratios))
    return write_results("synth", script=__file__, argv=argv, settings=vars(args), results=results, ratios=ratios,
                         results_dir=args.results_dir,
                         checks={"target_50_images_per_s_met": max(ips1, results.get(
                             f"images_per_s_{args.workers}_processes", 0.0)) >= 50})


if __name__ == "__main__":
    main()
