"""The run contract and the boundary bugs of issue 10 (one regression test per finding), plus training outputs.

Each test checks against an independent source: the text the collator really produced, ids of the rows
that reached the collator, the files on disk, hand-computed metrics.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from jamspotter.cli import app
from jamspotter.data.io import read_samples, write_samples
from jamspotter.data.records import BoxObject, Sample
from jamspotter.errors import JamspotterError
from jamspotter.formats.augment import augment_samples
from jamspotter.formats.contract import CONTRACT_FILE, RunContract, TaskMix
from jamspotter.models.tiny import build_tiny_model
from jamspotter.train.config import load_config
from jamspotter.train.data import Example, SFTCollator, example_to_row, expand_examples

runner = CliRunner()
COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (40, 200, 200), (200, 40, 200),
           (120, 120, 120), (240, 240, 240)]


def make_dataset(root: Path, n: int = 8, size: int = 56) -> Path:
    """`n` distinct images, each with a rope and a cardboard box."""
    root.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        Image.new("RGB", (size, size), COLOURS[i % len(COLOURS)]).save(root / f"img{i}.png")
        samples.append(Sample(id=f"img{i}", image=f"img{i}.png", width=size, height=size, objects=[
            BoxObject(label="rope", bbox=[2, 2, 20, 30], jam_risk=True),
            BoxObject(label="cardboard", bbox=[25, 25, 50, 50], jam_risk=False)]))
    write_samples(root / "samples.jsonl", samples)
    return root


@pytest.fixture(scope="module")
def tiny_q2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model("qwen2-vl", tmp_path_factory.mktemp("q2") / "m", real_tokenizer=False)


def write_config(path: Path, model: Path, data_dir: Path, out: Path, **sections: dict) -> Path:
    cfg = {"model": {"name": str(model), "dtype": "fp32"},
           "data": {"train": str(data_dir), "min_pixels": 3136, "max_pixels": 3136},
           "finetune": {"method": "full", "freeze_vision": True},
           "train": {"output_dir": str(out), "lr": 1e-3, "max_steps": 2, "batch_size": 2, "grad_accum": 1,
                     "gradient_checkpointing": False, "save_steps": 1, "logging_steps": 1, "cpu_threads": 1}}
    for key, extra in sections.items():
        cfg[key].update(extra)
    path.write_text(yaml.safe_dump(cfg))
    return path


def user_texts(texts: list[str]) -> list[str]:
    """The user turn of each chat-template text, without the image placeholder."""
    out = []
    for t in texts:
        m = re.search(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", t, re.S)
        assert m, t
        out.append(m.group(1).replace("<|vision_start|><|image_pad|><|vision_end|>", ""))
    return out


# ---- 1. splits ----------------------------------------------------------------------------------------
def test_split_then_train_never_sees_test_or_val_images(tmp_path: Path, tiny_q2: Path, monkeypatch) -> None:
    ds = make_dataset(tmp_path / "ds")
    aug = augment_samples(read_samples(ds / "samples.jsonl"), kinds=("count",), per_image=2, seed=0)
    write_samples(ds / "samples.jsonl", read_samples(ds / "samples.jsonl") + aug)
    r = runner.invoke(app, ["data", "split", str(ds), "--ratios", "0.5,0.25,0.25"])
    assert r.exit_code == 0, r.output
    samples = read_samples(ds / "samples.jsonl")
    by_image: dict[str, set[str]] = {}
    for s in samples:
        by_image.setdefault(s.image, set()).add(s.split)
    assert all(len(splits) == 1 for splits in by_image.values()), by_image  # augmented copies stay together
    test_ids = {s.id for s in samples if s.split == "test"}
    val_ids = {s.id for s in samples if s.split == "val"}
    assert test_ids and val_ids

    seen: list[str] = []
    original = SFTCollator.__call__

    def recording(self, rows):  # noqa: ANN001, ANN202 - the collator's own signature
        seen.extend(row["id"] for row in rows)
        return original(self, rows)

    monkeypatch.setattr(SFTCollator, "__call__", recording)
    from jamspotter.train.sft import run_sft

    cfg = write_config(tmp_path / "cfg.yaml", tiny_q2, ds, tmp_path / "run", train={"max_steps": 6})
    result = run_sft(load_config(cfg), log=lambda *_: None)
    assert seen and not set(seen) & test_ids
    # validation ran on the val split only; training batches never held val or test images
    assert result.metrics["val_samples"] == len(val_ids)
    train_rows = seen[: 2 * 6]
    assert not set(train_rows) & (test_ids | val_ids)

    from jamspotter.infer.inputs import collect_inputs

    assert {s.id for s in collect_inputs([ds], split="test")} == test_ids


# ---- 2. merge keeps the contract; merged and adapter answer alike ------------------------------------
def test_merge_copies_contract_and_merged_equals_adapter(tmp_path: Path, tiny_q2: Path) -> None:
    from jamspotter.infer import Detector

    ds = make_dataset(tmp_path / "ds", n=4)
    cfg = write_config(tmp_path / "cfg.yaml", tiny_q2, ds, tmp_path / "run",
                       data={"jam_only": True, "classes": ["rope", "hose", "cardboard"]},
                       finetune={"method": "lora", "lora_r": 4, "lora_alpha": 8})
    r = runner.invoke(app, ["train", "sft", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    final = tmp_path / "run" / "final"
    assert (final / "adapter_config.json").is_file()
    r = runner.invoke(app, ["train", "merge", str(final), "--out", str(tmp_path / "merged")])  # as the README
    assert r.exit_code == 0, r.output
    merged = tmp_path / "merged"
    assert json.loads((merged / CONTRACT_FILE).read_text()) == json.loads((final / CONTRACT_FILE).read_text())
    # every checkpoint carries it too, so `infer runs/x/checkpoint-N` asks the trained question
    checkpoint = tmp_path / "run" / "checkpoint-2" / CONTRACT_FILE
    assert json.loads(checkpoint.read_text()) == json.loads((final / CONTRACT_FILE).read_text())

    images = [tmp_path / "ds" / "img0.png", tmp_path / "ds" / "img1.png"]
    a = Detector(final, max_new_tokens=12, device="cpu")
    b = Detector(merged, max_new_tokens=12, device="cpu")
    assert a.prompt == b.prompt
    assert "jam-causing" in a.prompt and "rope" in a.prompt and "cardboard" not in a.prompt
    ra, rb = a.detect(images), b.detect(images)
    assert [x.text for x in ra] == [y.text for y in rb]


# ---- 3. the F1 callback scores what the model was asked -----------------------------------------------
def test_f1_of_a_perfect_jam_only_answer_is_one() -> None:
    from jamspotter.train.callbacks import detection_metrics

    gt = [Sample(id="a", width=100, height=100, objects=[BoxObject(label="rope", bbox=[0, 0, 10, 10]),
                                                          BoxObject(label="cardboard", bbox=[50, 50, 90, 90])])]
    pred = [Sample(id="a", width=100, height=100, objects=[BoxObject(label="rope", bbox=[0, 0, 10, 10])])]
    jam = RunContract(family="qwen3-vl", min_pixels=3136, max_pixels=12544, classes=["rope", "cardboard"],
                      jam_only=True)
    every = jam.model_copy(update={"jam_only": False})
    assert detection_metrics(gt, pred, jam)["f1"] == pytest.approx(1.0)
    assert detection_metrics(gt, pred, every)["f1"] == pytest.approx(2 / 3)  # P 1, R 1/2


# ---- 4. prompts never name what is in the picture ----------------------------------------------------
def test_collated_prompts_are_the_same_for_every_image(tmp_path: Path, tiny_q2: Path) -> None:
    from jamspotter.models import load_model
    from jamspotter.train.sft import build_contract

    Image.new("RGB", (56, 56)).save(tmp_path / "a.png")
    odd = Sample(id="odd", image="a.png", width=56, height=56,
                 objects=[BoxObject(label="Bottle cap", bbox=[1, 1, 9, 9]),
                          BoxObject(label="rope", bbox=[10, 10, 40, 20], reason="long, wraps screens")])
    plain = Sample(id="plain", image="a.png", width=56, height=56, objects=[BoxObject(label="rope", bbox=[1, 1, 9, 9])])
    empty = Sample(id="empty", image="a.png", width=56, height=56)
    _, processor = load_model(tiny_q2, min_pixels=3136, max_pixels=3136)
    for jam_only in (False, True):
        cfg = load_config(write_config(tmp_path / "c.yaml", tiny_q2, tmp_path, tmp_path / "r",
                                       data={"jam_only": jam_only}), check_files=False)
        contract = build_contract(cfg, "qwen2-vl", processor, [odd, plain, empty])
        assert contract.with_reason is jam_only  # one switch for the run, from the data
        collator = SFTCollator(processor, contract.format(processor))
        texts, _ = collator.conversations([example_to_row(Example(s, str(tmp_path))) for s in (odd, plain, empty)])
        prompts = user_texts(texts)
        assert prompts[0] == prompts[1] == prompts[2]
        assert ("Bottle cap" in prompts[0]) is not jam_only  # in the run's class list, not because one image has it
        assert "long, wraps screens" in texts[0] if jam_only else "long, wraps screens" not in texts[0]


def test_classification_prompt_lists_the_class_list_only() -> None:
    from jamspotter.formats import get_format

    fmt = get_format("qwen3-vl", classes=["cardboard", "glass"])
    [(prompt, target)] = fmt.render_turns(Sample(id="x", image="x.jpg", width=10, height=10, label="metal"))
    assert "metal" not in prompt and target == "metal"


# ---- 5. one task generator; count answers include 0; vqa off keeps one example per image --------------
def test_training_count_task_asks_absent_classes_and_vqa_off_does_not_duplicate(tmp_path: Path,
                                                                                tiny_q2: Path) -> None:
    from jamspotter.models import load_model

    samples = read_samples(make_dataset(tmp_path / "ds", n=3) / "samples.jsonl")
    classes = ["rope", "hose", "cardboard", "glass"]
    examples = expand_examples(samples, tmp_path / "ds", TaskMix(detection=0.0, count=1.0), classes, seed=0)
    assert len(examples) == 3 and all(e.sample.meta.get("task") == "count" for e in examples)
    _, processor = load_model(tiny_q2, min_pixels=3136, max_pixels=3136)
    contract = RunContract(family="qwen2-vl", min_pixels=3136, max_pixels=3136, classes=classes)
    texts, _ = SFTCollator(processor, contract.format(processor)).conversations(
        [example_to_row(e) for e in examples])
    for text in texts:
        answer = text.rsplit("<|im_start|>assistant\n", 1)[1].split("<|im_end|>")[0]
        counts = dict(line.split(": ") for line in answer.splitlines())
        assert counts["rope"] == "1" and counts["cardboard"] == "1"
        assert "0" in counts.values()  # at least one absent class is asked, answer 0

    # which classes a count question asks never depends on what the image holds
    import random

    from jamspotter.formats.augment import augment_sample

    empty = samples[0].model_copy(update={"objects": []})
    many = ["rope", "hose", "strap", "wire", "glass", "paper", "metal", "cardboard", "plastic", "trash"]
    q1 = augment_sample(samples[0], ["count"], 1, random.Random(5), many)[0].qa[0].question
    q2 = augment_sample(empty, ["count"], 1, random.Random(5), many)[0].qa[0].question
    assert q1 == q2

    aug = augment_samples(samples, per_image=4, seed=1)
    assert len(aug) == 12
    no_vqa = expand_examples(samples + aug, tmp_path / "ds", TaskMix(vqa=False), classes, seed=0)
    assert sorted(e.sample.id for e in no_vqa) == ["img0", "img1", "img2"]


# ---- 6. image and video budgets are separate; no deprecated call-time kwargs -------------------------
def test_image_budget_leaves_the_video_budget_alone(tmp_path: Path) -> None:
    from jamspotter.models.loading import load_processor

    model = build_tiny_model("qwen3-vl", tmp_path / "q3", real_tokenizer=False)
    saved = json.loads((model / "processor_config.json").read_text()) if (model / "processor_config.json").is_file() \
        else json.loads((model / "video_preprocessor_config.json").read_text())
    video_size = (saved.get("video_processor") or saved)["size"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        processor = load_processor(model, min_pixels=3136, max_pixels=12544)
        assert processor.image_processor.size["longest_edge"] == 12544
        assert processor.video_processor.size["longest_edge"] == video_size["longest_edge"]
        assert processor.video_processor.size["shortest_edge"] == video_size["shortest_edge"]
        own = load_processor(model, min_pixels=3136, max_pixels=12544, video_max_pixels=50176)
        assert own.video_processor.size["longest_edge"] == 50176
        import numpy as np

        clip = np.zeros((4, 112, 112, 3), dtype=np.uint8)
        out = own(text=["<|vision_start|><|video_pad|><|vision_end|>"], videos=[clip], return_tensors="pt",
                  do_sample_frames=False,
                  video_metadata=[{"fps": 10, "total_num_frames": 4, "frames_indices": [0, 1, 2, 3]}])
        t, h, w = out["video_grid_thw"][0].tolist()
        clip_pixels = h * w * 16 * 16 * len(clip)  # Qwen3-VL bounds the pixels of the whole clip
        assert 12544 < clip_pixels <= 50176  # the video budget, not the image one


# ---- 9. plain exceptions; nothing read from where the package happens to sit --------------------------
def test_errors_are_plain_and_reference_data_only_from_the_environment(monkeypatch, tmp_path: Path) -> None:
    from jamspotter.models.families import reference_data_dir

    assert all(not c.__module__.startswith(("click", "typer")) for c in JamspotterError.__mro__)
    monkeypatch.delenv("JAMSPOTTER_REFERENCE_DATA", raising=False)
    assert reference_data_dir() is None
    model = build_tiny_model("qwen2.5-vl", tmp_path / "m")  # no reference data: the small BPE, wherever we are
    assert json.loads((model / "config.json").read_text())["text_config"]["vocab_size"] < 5000


# ---- 10. packaged configs and docs name what exists ---------------------------------------------------
def test_packaged_configs_run_with_just_a_train_folder(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", n=1)
    from jamspotter.train.config import packaged_configs

    for name in packaged_configs():
        if name == "line":
            continue
        cfg = load_config(name, [f"data.train={ds}"], check_model=False)  # files are checked: no data/val
        assert cfg.data.train == str(ds) and cfg.data.eval is None


def _commands(group, prefix: str = "") -> set[str]:  # noqa: ANN001 - a click group
    import click

    out = set()
    for name, cmd in getattr(group, "commands", {}).items():
        out.add(f"{prefix}{name}")
        if isinstance(cmd, click.Group):
            out |= _commands(cmd, f"{prefix}{name} ")
    return out


def test_every_command_named_in_configs_and_docstrings_exists() -> None:
    import typer

    root = Path(__file__).resolve().parents[1] / "src" / "jamspotter"
    known = _commands(typer.main.get_command(app))
    groups = {c.split()[0] for c in known if " " in c}
    missing = []
    for path in [*root.rglob("*.py"), *root.rglob("*.yaml")]:
        # a command as written for a reader: in backticks, or opening a (comment or code) line
        pattern = r"(?:`|^[\s#]*(?:\$ )?)jamspotter ([a-z][a-z-]+)(?: ([a-z][a-z-]+))?"
        for m in re.finditer(pattern, path.read_text(encoding="utf-8"), re.M):
            first, second = m.group(1), m.group(2)
            name = f"{first} {second}" if first in groups and second else first
            if first in groups and not second:
                continue
            if name not in known and first not in ("json",):
                missing.append(f"{path.name}: jamspotter {name}")
    assert not missing, missing


def test_train_config_prints_each_fields_meaning() -> None:
    r = runner.invoke(app, ["train", "config", "--config", "tiny"])
    assert r.exit_code == 0 and "lora_r: 16  # LoRA rank" in r.output


# ---- issue 11: training output folders never mix runs ------------------------------------------------
def test_second_run_into_a_used_output_dir_is_refused_resume_checks_the_config(tmp_path: Path,
                                                                               tiny_q2: Path) -> None:
    ds = make_dataset(tmp_path / "ds", n=2)
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "cfg.yaml", tiny_q2, ds, run, train={"max_steps": 1})
    assert runner.invoke(app, ["train", "sft", "--config", str(cfg)]).exit_code == 0
    before = (run / "final" / "model.safetensors").stat().st_mtime_ns

    r = runner.invoke(app, ["train", "sft", "--config", str(cfg)])
    assert r.exit_code == 2 and "--resume" in r.output and "--overwrite" in r.output
    assert (run / "final" / "model.safetensors").stat().st_mtime_ns == before  # nothing was touched

    other = write_config(tmp_path / "other.yaml", tiny_q2, ds, run, train={"max_steps": 1},
                         finetune={"method": "lora", "lora_r": 4})
    r = runner.invoke(app, ["train", "sft", "--config", str(other), "--resume"])
    assert r.exit_code == 2 and "cannot --resume" in r.output and "method" in r.output

    r = runner.invoke(app, ["train", "sft", "--config", str(other), "--overwrite"])
    assert r.exit_code == 0, r.output
    assert (run / "final" / "adapter_config.json").is_file() and not (run / "final" / "model.safetensors").exists()
    assert not (run / "checkpoint-1" / "model.safetensors").exists()  # the old run's checkpoint went with it


def test_a_missing_local_model_folder_fails_at_once(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub

    from jamspotter.models.loading import check_hub_id

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    start = time.perf_counter()
    r = runner.invoke(app, ["infer", "runs/final", str(tmp_path), "--out", "p.jsonl"])
    assert r.exit_code == 2 and "runs/final: no such folder" in r.output
    assert time.perf_counter() - start < 5  # no model-hub retries
    # without a runs/ folder the name could be a hub id: one quick question to the hub decides
    calls = []

    def unreachable(self, repo_id, **kwargs):  # noqa: ANN001, ANN003, ANN202 - HfApi.model_info
        calls.append((repo_id, kwargs.get("timeout")))
        raise ConnectionError("no route to host")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    check_hub_id.cache_clear()
    start = time.perf_counter()
    r = runner.invoke(app, ["infer", "nothere/final", str(tmp_path), "--out", "p.jsonl"])
    assert r.exit_code == 2 and "nothere/final: no such local folder, and the model hub cannot be reached" in r.output
    assert calls == [("nothere/final", 10)] and time.perf_counter() - start < 5


def test_edge_splits_follow_the_one_split_rule() -> None:
    from jamspotter.edge.detector import split_samples

    split = [Sample(id=f"s{i}", image=f"{i}.png", split=name) for i, name in enumerate(["train", "val", "test"] * 3)]
    train, val = split_samples(split, 0.3, seed=0)
    assert {s.split for s in train} == {"train"} and {s.split for s in val} == {"val"}  # test is never used
    unsplit = [Sample(id=f"u{i}-{k}", image=f"{i}.png") for i in range(10) for k in range(3)]  # 3 copies per image
    train, val = split_samples(unsplit, 0.3, seed=0)
    assert val and not {s.image for s in train} & {s.image for s in val}


def test_eval_scores_one_split_and_what_the_run_was_asked(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", n=4)
    samples = read_samples(ds / "samples.jsonl")
    samples = [s.model_copy(update={"split": "test" if i < 2 else "train"}) for i, s in enumerate(samples)]
    write_samples(ds / "samples.jsonl", samples)
    # a jam-only model's perfect answers: the rope of every image, no cardboard
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps({"id": s.id, "objects": [{"label": "rope", "bbox": [2, 2, 20, 30]}]}) + "\n"
                            for s in samples))
    run = tmp_path / "model"
    run.mkdir()
    RunContract(family="qwen3-vl", min_pixels=3136, max_pixels=12544, classes=["rope", "cardboard"],
                jam_only=True).save(run)
    r = runner.invoke(app, ["eval", "detection", "--pred", str(pred), "--gt", str(ds), "--out", str(tmp_path / "a"),
                            "--split", "test", "--no-map"])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert (m["n_images"], m["n_gt"], m["recall"]) == (2, 4, 0.5)  # the 2 test images; cardboard counted as missed
    assert "unknown_prediction_id" not in json.dumps(m.get("warnings", {}))  # other splits' predictions set aside
    r = runner.invoke(app, ["eval", "detection", "--pred", str(pred), "--gt", str(ds), "--out", str(tmp_path / "b"),
                            "--split", "test", "--run", str(run), "--no-map"])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert (m["n_images"], m["n_gt"], m["recall"], m["precision"]) == (2, 2, 1.0, 1.0)  # scored on jam items


def test_resuming_a_finished_run_trains_nothing(tmp_path: Path, tiny_q2: Path) -> None:
    ds = make_dataset(tmp_path / "ds", n=5)  # 5 samples, batch 2: 3 steps an epoch, so step 4 is mid-epoch
    cfg = write_config(tmp_path / "cfg.yaml", tiny_q2, ds, tmp_path / "run", train={"max_steps": 4, "save_steps": 2})
    assert runner.invoke(app, ["train", "sft", "--config", str(cfg)]).exit_code == 0
    before = (tmp_path / "run" / "final" / "model.safetensors").stat().st_mtime_ns
    r = runner.invoke(app, ["train", "sft", "--config", str(cfg), "--resume"])
    assert r.exit_code == 0 and "done: 4 steps" in r.output, r.output
    assert not (tmp_path / "run" / "checkpoint-5").exists()
    assert (tmp_path / "run" / "final" / "model.safetensors").stat().st_mtime_ns == before


def test_overwrite_never_deletes_files_added_to_an_earlier_output(tmp_path: Path, tiny_q2: Path) -> None:
    ds = make_dataset(tmp_path / "ds", n=2)
    aug = tmp_path / "aug"
    assert runner.invoke(app, ["data", "augment", str(ds), "--per-image", "1", "--out", str(aug)]).exit_code == 0
    (aug / "NOTES.txt").write_text("mine")
    r = runner.invoke(app, ["data", "augment", str(ds), "--per-image", "1", "--out", str(aug), "--overwrite"])
    assert r.exit_code == 2 and "NOTES.txt" in r.output and (aug / "NOTES.txt").read_text() == "mine"

    cfg = write_config(tmp_path / "cfg.yaml", tiny_q2, ds, tmp_path / "run", train={"max_steps": 1})
    assert runner.invoke(app, ["train", "sft", "--config", str(cfg)]).exit_code == 0
    (tmp_path / "run" / "analysis.md").write_text("mine")
    r = runner.invoke(app, ["train", "sft", "--config", str(cfg), "--overwrite"])
    assert r.exit_code == 2 and "analysis.md" in r.output and (tmp_path / "run" / "analysis.md").is_file()
    (tmp_path / "run" / "analysis.md").unlink()  # once moved out, the run's own files are replaced whole
    assert runner.invoke(app, ["train", "sft", "--config", str(cfg), "--overwrite"]).exit_code == 0


def test_a_recommended_config_trains_with_just_a_train_folder(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", n=1)
    r = runner.invoke(app, ["train", "recommend", "--dataset-size", "500", "--gpu-memory", "24"])
    assert r.exit_code == 0
    (tmp_path / "rec.yaml").write_text(r.output)
    cfg = load_config(tmp_path / "rec.yaml", [f"data.train={ds}"], check_model=False)  # data/val does not exist
    assert cfg.data.eval is None


def test_explicit_classes_must_list_every_label_of_the_data(tmp_path: Path, tiny_q2: Path) -> None:
    ds = make_dataset(tmp_path / "ds", n=1)  # labels: rope, cardboard
    cfg = write_config(tmp_path / "cfg.yaml", tiny_q2, ds, tmp_path / "run", data={"classes": ["rope", "hose"]})
    r = runner.invoke(app, ["train", "sft", "--config", str(cfg)])
    assert r.exit_code == 2 and "data.classes does not list 'cardboard'" in r.output, r.output
    assert not (tmp_path / "run").exists()  # refused before anything was written or loaded


def test_every_stage_applies_the_one_jam_rule() -> None:
    import random

    from jamspotter.data.stats import dataset_stats
    from jamspotter.data.taxonomy import Taxonomy
    from jamspotter.evaluate import evaluate_detections
    from jamspotter.formats import get_format

    rng = random.Random(3)
    tax = Taxonomy({"weird": True, "rope": False})
    labels, flags = ["rope", "cardboard", "weird", "hose", "other"], [None, True, False]
    gt = [Sample(id=f"i{i}", width=100, height=100, objects=[
        BoxObject(label=rng.choice(labels), bbox=[k * 10, 0, k * 10 + 8, 8], jam_risk=rng.choice(flags))
        for k in range(5)]) for i in range(20)]
    # the rule stated once, by hand: an explicit taxonomy entry wins, then the box's flag, then the label
    by_hand = sum((o.label == "weird") if o.label in ("weird", "rope") else
                  (o.jam_risk if o.jam_risk is not None else o.label == "hose") for s in gt for o in s.objects)
    assert sum(tax.is_jam(o) for s in gt for o in s.objects) == by_hand
    assert evaluate_detections(gt, gt, taxonomy=tax)["jam_counts"]["gt"] == by_hand  # the vectorised evaluator
    assert dataset_stats(gt, tax)["jam_object_share"] == pytest.approx(by_hand / 100)
    fmt = get_format("qwen3-vl", taxonomy=tax, jam_only=True)
    assert sum(len(fmt.expected_objects(s.objects)) for s in gt) == by_hand


def test_one_unreadable_image_does_not_throw_away_the_run(tmp_path: Path, tiny_q2: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (56, 56), (90, 90, 90)).save(folder / "good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    r = runner.invoke(app, ["infer", str(tiny_q2), str(folder), "--out", str(tmp_path / "p.jsonl"),
                            "--max-new-tokens", "4"])
    assert r.exit_code == 0 and "1 unreadable image(s) skipped" in r.output, r.output
    rows = {json.loads(line)["id"]: json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()}
    assert set(rows) == {"good", "broken"} and rows["broken"]["objects"] == []
    assert rows["broken"]["parse_problems"][0].startswith("unreadable image") and "text" in rows["good"]
