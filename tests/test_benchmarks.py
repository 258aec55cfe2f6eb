"""Smoke tests of the CPU benchmarks at their smallest settings: each runs, prints, and writes its JSON.

The benchmarks are imported in this process (importing transformers and trl again in a subprocess per
benchmark would cost more than running them). What they compare against is measured in the same run, so
the tests check what the figures must satisfy whatever the machine: every ratio positive and finite, the
machine description present, and the benchmarks' own cross-checks against their references (the same
model inputs as TRL's collator, the same answers as a plain generate loop, the same TP count as the
pure-Python matcher).
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def bench(name: str) -> Any:
    """A benchmark script imported as a module (its folder on sys.path, as when run as a script)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


def written(path: Path, name: str) -> dict[str, Any]:
    """The result file `name`.json, checked for the fields every result carries."""
    assert path == path.parent / f"{name}.json" and path.is_file()
    data = json.loads(path.read_text())
    assert data["benchmark"] == name
    m = data["machine"]
    assert m["cpu_count"] >= 1 and m["cpu_model"] and m["python"] and len(m["load_average_start"]) == 3
    assert m["versions"]["torch"] and m["versions"]["transformers"] and m["versions"]["trl"]
    assert "commit" in m["git"] and data["date"]
    assert data["command"].startswith(".venv/bin/python benchmarks/bench_") and "--results-dir" in data["command"]
    assert data["ratios"], "a benchmark must report at least one ratio"
    for r in data["ratios"]:
        assert math.isfinite(r["speedup"]) and r["speedup"] > 0, r
        assert r["ours"] > 0 and r["reference"] > 0, r
    return data


def test_ratio_reads_as_speedup_for_rates_and_times(tmp_path: Path) -> None:
    results = bench("_results")
    assert results.Ratio("rate", 30.0, 10.0, "images/s", "ref").speedup == pytest.approx(3.0)
    assert results.Ratio("time", 2.0, 10.0, "ms", "ref", higher_is_better=False).speedup == pytest.approx(5.0)
    with pytest.raises(ValueError, match="broken"):
        results.write_results("bad", script="bench_bad.py", argv=[], settings={}, results={},
                              ratios=[results.Ratio("x", 0.0, 1.0, "s", "r")], results_dir=tmp_path)
    assert not (tmp_path / "bad.json").exists()


def test_bench_collate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = bench("bench_collate").main(["--rows", "4", "--batch", "2", "--repeat", "1", "--size", "96x64",
                                       "--results-dir", str(tmp_path)])
    data = written(out["path"], "collate")
    checks = data["checks"]
    assert all(checks["same_inputs"].values()), checks  # TRL's collator is the independent check
    assert checks["labels_are_input_ids"] and checks["answers_end_with_im_end"]
    assert 0 < checks["supervised_tokens_ours"] < checks["supervised_tokens_trl"]
    assert "ours vs reference" in capsys.readouterr().out


def test_bench_detect_cpu(tmp_path: Path) -> None:
    out = bench("bench_detect").main(["--images", "2", "--batches", "1,2", "--max-new-tokens", "4",
                                      "--size", "96x64", "--results-dir", str(tmp_path)])
    data = written(out["path"], "detect_cpu")
    assert data["checks"]["all_same"], data["checks"]  # fp32, same model: batched answers = the plain loop's
    assert set(data["results"]["images_per_s_detector"]) == {"1", "2"}


def test_bench_detect_arch_config_path(tmp_path: Path) -> None:
    """The GPU arm's path (a config folder -> random weights on the device, images from a folder) rehearsed on
    CPU in bfloat16."""
    from jamspotter.models.tiny import build_tiny_model
    from jamspotter.synth import generate_dataset

    arch = build_tiny_model("qwen2.5-vl", tmp_path / "arch")
    for weights in arch.glob("*.safetensors"):
        weights.unlink()  # a config folder has no weights
    generate_dataset(tmp_path / "scenes", 2, (96, 64), seed=3)
    out = bench("bench_detect").main(["--images", "2", "--batches", "2", "--max-new-tokens", "3",
                                      "--images-dir", str(tmp_path / "scenes" / "images"), "--arch-config", str(arch),
                                      "--dtype", "bfloat16", "--results-dir", str(tmp_path / "res")])
    data = written(out["path"], "detect_cpu_arch")
    assert data["settings"]["dtype"] == "bfloat16" and data["settings"]["parameters"] > 0
    assert data["results"]["peak_gib_detector"] == {"2": None}  # peak memory is reported on CUDA only


def test_bench_synth(tmp_path: Path) -> None:
    path = bench("bench_synth").main(["--n", "3", "--workers", "1", "--size", "160x120", "--ref-n", "3",
                                      "--split-n", "1", "--results-dir", str(tmp_path)])
    data = written(path, "synth")
    assert data["results"]["objects_per_image"] >= 0


def test_bench_eval(tmp_path: Path) -> None:
    path = bench("bench_eval").main(["--images", "40", "--ref-images", "10", "--repeat", "1",
                                     "--results-dir", str(tmp_path)])
    data = written(path, "eval")
    tp_checks = {k: v for k, v in data["checks"].items() if k.startswith("tp_same")}
    assert len(tp_checks) == 3 and all(tp_checks.values())  # pure-Python matching finds the same TPs


def test_bench_edge_latency(tmp_path: Path) -> None:
    path = bench("bench_edge_latency").main(["--iters", "3", "--warmup", "1", "--threads", "1",
                                             "--results-dir", str(tmp_path)])
    data = written(path, "edge_latency")
    assert data["checks"]["max_abs_diff_ort_vs_pytorch"] < 1e-3


def test_bench_detect_finds_the_tokenizer_beside_qwen_configs(tmp_path: Path) -> None:
    """`--arch-config .../qwen_configs/NAME` takes Qwen's tokenizer from `.../qwen2_5_vl_tokenizer` (the layout
    of ../shared/data and of the GPU carry) unless the config folder holds one or `--tokenizer` names one."""
    find = bench("bench_detect").tokenizer_dir
    arch, beside, given = (tmp_path / "qwen_configs" / "Qwen2.5-VL-7B-Instruct", tmp_path / "qwen2_5_vl_tokenizer",
                           tmp_path / "tok")
    for d in (arch, beside, given):
        d.mkdir(parents=True)
    with pytest.raises(SystemExit, match="no tokenizer.json"):
        find(arch, None)
    (beside / "tokenizer.json").write_text("{}")
    assert find(arch, None) == beside
    (arch / "tokenizer.json").write_text("{}")
    assert find(arch, None) == arch
    with pytest.raises(SystemExit, match="pass --tokenizer"):
        find(arch, given)
    (given / "tokenizer.json").write_text("{}")
    assert find(arch, given) == given
