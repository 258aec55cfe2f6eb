"""Batch-1 latency of the edge classifier: ONNX Runtime vs PyTorch eager on the same threads.

Target: EfficientNet-Lite0 at 224 px under 10 ms per frame with ONNX Runtime on 2 CPU threads.
Reports median and p90 over `--iters` runs after warm-up, the ORT/PyTorch speed ratio measured in this
same run, and (with --int8) the dynamically quantised ONNX model. The load average is printed because
a shared machine inflates every figure.

    python benchmarks/bench_edge_latency.py [--arch efficientnet-lite0] [--size 224] [--threads 2] [--int8]
        [--onnx runs/trashnet-lite0/model.int8-static.onnx] [--results-dir DIR]

Needs no trained model: the architecture is built (ImageNet weights for Lite0, shipped in a package) and
exported on the fly; latency does not depend on what the weights learned. Results:
benchmarks/results/edge_latency.json (through benchmarks/_results.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _results import Ratio, add_results_arg, ratio_table, write_results

from jamspotter.edge.export import export_onnx, max_abs_diff, ort_run, ort_session, quantize_int8
from jamspotter.edge.models import ARCHS, build_model


def timed(fn, iters: int, warmup: int) -> list[float]:  # noqa: ANN001
    """Milliseconds per call of `fn` over `iters` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def describe(name: str, ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=10)
    return f"{name:<22} median {statistics.median(ms):7.2f} ms   p90 {q[-1]:7.2f} ms   min {min(ms):7.2f} ms"


def main(argv: list[str] | None = None) -> Path:
    """Run the benchmark, print its table, write edge_latency.json; returns the path written."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="efficientnet-lite0", choices=ARCHS)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--int8", action="store_true", help="also time the INT8 dynamically quantised model")
    ap.add_argument("--onnx", type=Path, action="append", default=[],
                    help="also time this exported model (e.g. runs/trashnet-lite0/model.int8-static.onnx)")
    add_results_arg(ap)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    model = build_model(args.arch, args.classes, pretrained=args.arch == "efficientnet-lite0",
                        image_size=args.size).eval()
    x = torch.rand(1, 3, args.size, args.size)
    print(f"{args.arch} @ {args.size}px, batch 1, {args.threads} threads, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx", x)
        session = ort_session(path, threads=args.threads)
        diff = max_abs_diff(model, session, x)
        print(f"max |ORT - PyTorch| = {diff:.2e}")
        with torch.inference_mode():
            eager = timed(lambda: model(x), args.iters, args.warmup)
        xn = x.numpy()
        ort = timed(lambda: ort_run(session, xn), args.iters, args.warmup)
        print(describe("PyTorch eager", eager))
        print(describe("ONNX Runtime fp32", ort))
        ratio = statistics.median(eager) / statistics.median(ort)
        summary = {"pytorch_eager": eager, "ort_fp32": ort}
        ratios = [Ratio("ORT fp32 vs PyTorch eager, median ms", statistics.median(ort), statistics.median(eager),
                        "ms", "PyTorch eager, same threads", higher_is_better=False)]
        print(f"ORT speed-up over PyTorch eager: {ratio:.2f}x  (median ORT {statistics.median(ort):.2f} ms; "
              f"target <= 10 ms: {'met' if statistics.median(ort) <= 10 else 'NOT met'})")
        if args.int8:
            q = ort_session(quantize_int8(path, Path(tmp) / "model.int8.onnx"), threads=args.threads)
            q_ms = timed(lambda: ort_run(q, xn), args.iters, args.warmup)
            print(describe("ONNX Runtime int8", q_ms))
            print(f"INT8 vs fp32 ORT: {statistics.median(ort) / statistics.median(q_ms):.2f}x")
            summary["ort_int8_dynamic"] = q_ms
            ratios.append(Ratio("ORT int8 (dynamic) vs ORT fp32, median ms", statistics.median(q_ms),
                                statistics.median(ort), "ms", "ONNX Runtime fp32", higher_is_better=False))
        for extra in args.onnx:
            s = ort_session(extra, threads=args.threads)
            e_ms = timed(lambda s=s: ort_run(s, xn), args.iters, args.warmup)
            print(describe(extra.name, e_ms))
            print(f"{extra.name} vs fp32 ORT: {statistics.median(ort) / statistics.median(e_ms):.2f}x")
            summary[extra.name] = e_ms
            ratios.append(Ratio(f"{extra.name} vs ORT fp32, median ms", statistics.median(e_ms),
                                statistics.median(ort), "ms", "ONNX Runtime fp32", higher_is_better=False))
    print(ratio_table(ratios))
    results = {name: {"median_ms": statistics.median(ms), "p90_ms": statistics.quantiles(ms, n=10)[-1],
                      "min_ms": min(ms)} for name, ms in summary.items()}
    return write_results("edge_latency", script=__file__, argv=argv, settings=vars(args), results=results,
                         ratios=ratios, results_dir=args.results_dir,
                         checks={"max_abs_diff_ort_vs_pytorch": diff,
                                 "target_10ms_met": statistics.median(ort) <= 10})


if __name__ == "__main__":
    main()
