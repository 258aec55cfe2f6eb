"""jamspotter.train: labels, config validation, recommender, k8s manifest, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from jamspotter.cli import app
from jamspotter.data.io import write_samples
from jamspotter.data.records import BoxObject, Crop, QATurn, Sample
from jamspotter.errors import JamspotterError
from jamspotter.models.tiny import build_tiny_model
from jamspotter.train.config import load_config, packaged_configs
from jamspotter.train.data import IGNORE_INDEX, Example, SFTCollator, example_to_row

runner = CliRunner()



@pytest.fixture(scope="session")
def tiny_q25(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2.5-VL with Qwen's real tokenizer when available (the label test wants real ids)."""
    return build_tiny_model("qwen2.5-vl", tmp_path_factory.mktemp("q25") / "m")


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    Image.new("RGB", (112, 112), (128, 128, 128)).save(tmp_path / "a.png")
    write_samples(tmp_path / "samples.jsonl", [
        Sample(id="a", image="a.png", width=112, height=112, objects=[BoxObject(label="rope", bbox=[10, 20, 50, 60])]),
    ])
    return tmp_path


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
def test_only_assistant_tokens_and_im_end_carry_loss(tiny_q25: Path, tmp_path: Path, family: str) -> None:
    from jamspotter.formats import get_format
    from jamspotter.models import load_model

    model_dir = tiny_q25 if family == "qwen2.5-vl" else build_tiny_model(family, tmp_path / "m", real_tokenizer=False)
    _, processor = load_model(model_dir, min_pixels=3136, max_pixels=112 * 112)
    fmt = get_format(family, processor=processor)
    Image.new("RGB", (112, 112), (90, 90, 90)).save(tmp_path / "a.png")
    det = Sample(id="d", image="a.png", width=112, height=112, objects=[BoxObject(label="rope", bbox=[10, 20, 50, 60])])
    vqa = Sample(id="q", image="a.png", width=112, height=112, qa=[
        QATurn(question="Is there rope?", answer="yes", think="look <crop> here", crops=[Crop(bbox=[10, 20, 50, 60])]),
        QATurn(question="And film?", answer="no")])
    batch = SFTCollator(processor, fmt)([example_to_row(Example(s, str(tmp_path))) for s in (det, vqa)])
    tok = processor.tokenizer
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    for row, sample in enumerate((det, vqa)):
        ids, labels = batch["input_ids"][row], batch["labels"][row]
        kept = labels != IGNORE_INDEX
        assert (labels[kept] == ids[kept]).all()
        assert not (ids[kept] == image_pad).any()  # crops inside the answer never carry loss
        # a crop call ends its assistant message: "...</tool_call>" + <|im_end|>, then the tool's crop image
        expected = "".join(a.replace("</tool_call>", "</tool_call><|im_end|>") + "<|im_end|>"
                           for _, a in fmt.render_turns(sample))
        assert tok.decode(ids[kept]) == expected  # assistant text + <|im_end|>, nothing of the prompt
        prompt_text = fmt.render_turns(sample)[0][0]
        assert prompt_text not in tok.decode(ids[kept])
        full = tok.decode(ids[batch["attention_mask"][row] == 1])
        # the crop tool is offered (its schema in the system turn) to question-answer samples only
        assert ('"name": "crop"' in full) == bool(sample.qa)
    full = tok.decode(batch["input_ids"][1])
    assert "</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n<|vision_start|><|image_pad|>" in full
    n_images = (batch["input_ids"][1] == tok.convert_tokens_to_ids("<|vision_start|>")).sum()
    assert n_images == 2  # the belt image and one crop, in the tool's response
    assert ((batch["labels"] != IGNORE_INDEX) & (batch["attention_mask"] == 0)).sum() == 0


def test_config_errors_are_one_line_and_early(dataset: Path, tiny_q25: Path, tmp_path: Path) -> None:
    base = [f"model.name={tiny_q25}", f"data.train={dataset}"]
    cfg = load_config(None, [*base, "train.lr=1e-3", "finetune.lora_targets=all-linear"])
    assert cfg.train.lr == 1e-3 and cfg.finetune.lora_targets == "all-linear"
    with pytest.raises(JamspotterError, match=r"train\.lrr: unknown key"):
        load_config(None, [*base, "train.lrr=1"])
    with pytest.raises(JamspotterError, match=r"train\.lr: Input should be greater than 0"):
        load_config(None, [*base, "train.lr=-1e-4"])
    with pytest.raises(JamspotterError, match=r"data\.train: .*no such samples file"):
        load_config(None, [f"model.name={tiny_q25}", f"data.train={tmp_path / 'missing'}"])
    with pytest.raises(JamspotterError, match="model.family is qwen3-vl but .* is a qwen2.5-vl model"):
        load_config(None, [*base, "model.family=qwen3-vl"])
    with pytest.raises(JamspotterError, match="freeze_vision"):
        load_config(None, [*base, "finetune.lora_targets=language+vision"])
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(yaml.safe_dump({"model": {"name": str(tiny_q25)}, "data": {"train": str(dataset)},
                                         "train": {"epochs": 1}, "extra": 1}))
    result = runner.invoke(app, ["train", "sft", "--config", str(yaml_file)])
    assert result.exit_code == 2
    assert "extra: unknown key" in result.output and len(result.output.strip().splitlines()) == 1


def test_packaged_configs_validate() -> None:
    names = [n for n in packaged_configs() if n != "line"]
    assert {"tiny", "qwen2.5-vl-7b-qlora", "qwen2-vl-2b-lora", "qwen3-vl-4b-lora", "qwen3-vl-4b-full"} <= set(names)
    for name in names:
        cfg = load_config(name, check_files=False, check_model=False)
        assert cfg.train.lr > 0
    assert load_config("qwen2.5-vl-7b-qlora", check_files=False, check_model=False).quantization == "4bit"
    result = runner.invoke(app, ["train", "config"])
    assert result.exit_code == 0 and "finetune.lora_r" in result.output


def test_recommend_and_k8s(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "recommend", "--dataset-size", "3000", "--gpu-memory", "24",
                                 "--model", "Qwen/Qwen2.5-VL-7B-Instruct"])
    assert result.exit_code == 0, result.output
    cfg = yaml.safe_load(result.output)
    assert cfg["finetune"]["method"] == "qlora"  # 7B bf16 weights alone take 16.6 GB of a 24 GB card
    assert "# qlora:" in result.output
    big = yaml.safe_load(runner.invoke(app, ["train", "recommend", "--dataset-size", "20000", "--gpu-memory", "80",
                                             "--model", "Qwen2-VL-2B-Instruct"]).output)
    assert big["finetune"]["method"] == "full"
    out = tmp_path / "job.yaml"
    result = runner.invoke(app, ["train", "k8s", "--config", "qwen2.5-vl-7b-qlora", "--gpus", "2", "--pvc", "belts",
                                 "--image", "ghcr.io/x/jamspotter:1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    config_map, job = list(yaml.safe_load_all(out.read_text()))
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert "--nproc_per_node=2" in container["command"] and "--resume" in container["command"]
    assert yaml.safe_load(config_map["data"]["train.yaml"])["finetune"]["method"] == "qlora"


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
def test_clip_samples_become_video_inputs(tmp_path: Path, family: str) -> None:
    """Clips go in as av-decoded (or file) frames with metadata; only the sequence answer carries loss."""
    import numpy as np

    from jamspotter.data.records import Target
    from jamspotter.formats import get_format
    from jamspotter.models import load_model
    from jamspotter.synth import write_mp4

    write_mp4(tmp_path / "c.mp4", [np.full((64, 64, 3), 20 * i, np.uint8) for i in range(10)], fps=10)
    frames = []
    for i in range(4):
        Image.new("RGB", (64, 64), (40 * i, 90, 90)).save(tmp_path / f"f{i}.png")
        frames.append(f"f{i}.png")
    target = Target(kind="trajectory", values=[[1.0, 0.1], [1.2, 0.0]], names=["velocity", "curvature"])
    clips = [Sample(id="v", video="c.mp4", fps=10, width=64, height=64, target=target),
             Sample(id="f", frames=frames, fps=10, width=64, height=64, target=target)]
    model, processor = load_model(build_tiny_model(family, tmp_path / "m", real_tokenizer=False),
                                  min_pixels=3136, max_pixels=64 * 64)
    fmt = get_format(family, processor=processor)
    batch = SFTCollator(processor, fmt, clip_frames=4)([example_to_row(Example(s, str(tmp_path))) for s in clips])
    assert batch["video_grid_thw"].shape[0] == 2 and "pixel_values_videos" in batch
    kept = batch["labels"][0] != IGNORE_INDEX
    assert processor.tokenizer.decode(batch["input_ids"][0][kept]) == fmt.render_turns(clips[0])[0][1] + "<|im_end|>"
    loss = model(**batch).loss
    assert loss.isfinite()


def test_cli_sft_on_a_tiny_qwen3(dataset: Path, tmp_path: Path) -> None:
    """`train sft --config tiny` with `tiny:qwen3-vl`: trains, saves weights + processor + summary."""
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "sft", "--config", "tiny", "--set", "model.name=tiny:qwen3-vl",
                                 "--set", f"data.train={dataset}", "--set", f"train.output_dir={run}",
                                 "--set", "train.max_steps=2", "--set", "train.save_steps=1"])
    assert result.exit_code == 0, result.output
    assert "done: 2 steps" in result.output
    final = run / "final"
    assert (final / "model.safetensors").is_file() and (final / "processor_config.json").is_file()
    info = json.loads((final / "jamspotter.json").read_text())
    assert info["family"] == "qwen3-vl" and info["max_pixels"] == 12544
    assert json.loads((run / "metrics.json").read_text())["global_step"] == 2


def test_dataset_classes_lists_every_label_once_for_all_prompts():
    from jamspotter.data.records import BoxObject, Sample
    from jamspotter.data.taxonomy import JAM_CLASSES, MATERIAL_CLASSES
    from jamspotter.formats import get_format
    from jamspotter.formats.contract import dataset_classes

    samples = [Sample(id="a", width=100, height=100, objects=[BoxObject(label="Bottle cap", bbox=[1, 1, 9, 9])]),
               Sample(id="b", width=100, height=100, objects=[BoxObject(label="rope", bbox=[1, 1, 9, 9])])]
    classes = dataset_classes(samples)
    assert classes == [*JAM_CLASSES, *MATERIAL_CLASSES, "Bottle cap"]
    fmt = get_format("qwen2.5-vl", classes=classes)
    # the prompt no longer depends on which labels one image holds
    assert fmt.render_detection(samples[0])[0] == fmt.render_detection(samples[1])[0]


def test_jam_only_prompt_is_the_same_with_or_without_reasoned_items():
    # the "add a reason" instruction is one switch for the dataset: per image it would reveal jam items
    from jamspotter.data.records import BoxObject, Sample
    from jamspotter.formats import get_format

    with_jam = Sample(id="a", width=100, height=100,
                      objects=[BoxObject(label="rope", bbox=[1, 1, 50, 9], reason="long cord, will wrap")])
    empty = Sample(id="b", width=100, height=100, objects=[])
    for with_reason in (False, True):
        fmt = get_format("qwen2.5-vl", jam_only=True, with_reason=with_reason)
        (p1, a1), = fmt.render_turns(with_jam)
        (p2, _), = fmt.render_turns(empty)
        assert p1 == p2
        assert ("will wrap" in a1) is with_reason
