"""GRPO: a real TRL GRPOTrainer run on a tiny model with images, every reward and a crop tool call.

The policy is a tiny Qwen2.5-VL that SFT taught one scene: asked about the rope it thinks, calls the
crop tool on it and answers; asked for boxes it answers the two boxes. Sampling at a low temperature
keeps those answers, so the rollout really calls the tool and the crop really reaches the model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from jamspotter.cli import app
from jamspotter.errors import JamspotterError

sys.path.insert(0, str(Path(__file__).parent))
from memorised import SCENE, memorise  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def sft_qa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return memorise(tmp_path_factory.mktemp("grpo"), qa=True, steps=200)


def _grpo_set(tmp: Path, data: Path, **extra: Any) -> list[str]:
    sets = {"data.train": data, "train.output_dir": tmp / "run", "grpo.max_steps": 1, "grpo.batch_size": 6,
            "grpo.num_generations": 2, "grpo.temperature": 0.05, "grpo.max_completion_length": 200,
            "grpo.logging_steps": 1, "grpo.prompts": 3, "data.vqa": "true", "data.count": 1.0, "data.clips": "false",
            **extra}
    return [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]


def test_grpo_calls_the_crop_tool_and_the_crop_reaches_the_model(sft_qa: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import jamspotter.train.grpo as grpo

    outputs: list[dict[str, Any]] = []
    real_check = grpo.check_image_features

    def capture(output: dict[str, Any], *args: Any) -> None:
        outputs.append(output)
        real_check(output, *args)

    import jamspotter.formats.crop as crop_module

    crops: list[Any] = []
    real_crop_image = crop_module.crop_image

    def crop_image(image: Any, box: Any) -> Any:
        crops.append(real_crop_image(image, box))
        return crops[-1]

    monkeypatch.setattr(grpo, "check_image_features", capture)
    monkeypatch.setattr(crop_module, "crop_image", crop_image)
    data = sft_qa.parent.parent / "scene-qa"
    result = runner.invoke(app, ["train", "grpo", "--config", "tiny", "--from", str(sft_qa),
                                 *_grpo_set(tmp_path, data)])
    assert result.exit_code == 0, result.output

    # The rope is [14, 20, 70, 44] in a 112x112 image; Qwen2.5-VL writes pixels of the 112x112 input, so the
    # crop is the rope itself: 56 x 24 pixels.
    assert crops and all(c.size == (56, 24) for c in crops)
    # The training forward holds the crop's features: 56x24 is below min_pixels 3136, so smart_resize scales it
    # up to 112 x 56 (factor 28): a (1, 4, 8) patch grid next to the scene's (1, 8, 8).
    grids = [tuple(r) for out in outputs for r in out["image_grid_thw"].tolist()]
    assert (1, 8, 8) in grids and (1, 4, 8) in grids
    # ... and those features are the rope's pixels: the processor's patches of the scene cut by hand with PIL
    from PIL import Image

    from jamspotter.models.loading import load_processor

    scene = Image.open(data / "images" / "scene.png").convert("RGB")
    expected = load_processor(sft_qa, min_pixels=3136, max_pixels=12544).image_processor(
        images=[scene.crop((14, 20, 70, 44))], return_tensors="pt")["pixel_values"]
    out = next(o for o in outputs if [1, 4, 8] in o["image_grid_thw"].tolist())
    grid = out["image_grid_thw"].tolist()
    start = sum(t * h * w for t, h, w in grid[:grid.index([1, 4, 8])])
    assert out["pixel_values"][start:start + 32].float().allclose(expected.float(), atol=1e-5)
    metrics = json.loads((tmp_path / "run" / "grpo" / "metrics.json").read_text())
    last = metrics["last_log"]
    for name in ("detection_reward", "format_reward", "crop_reward", "count_reward"):
        assert last[f"rewards/{name}/mean"] is not None, name  # each task's reward scored its prompts
    assert "rewards/sequence_reward/mean" in last  # wired, with no clip prompt to score
    assert last["rewards/crop_reward/mean"] == 1.0  # the crop covers the rope and the answer is right
    # the tool is offered to every question (the rope question and the counting question, two rollouts each);
    # the model learnt to crop for the rope only
    assert last["crop/used_share"] == 0.5
    # what GRPO saved is read as SFT's: the contract with GRPO's provenance, an answer with boxes
    contract = json.loads((tmp_path / "run" / "grpo" / "final" / "jamspotter.json").read_text())
    assert contract["training"]["grpo"]["grpo"]["num_generations"] == 2
    res = runner.invoke(app, ["infer", str(tmp_path / "run" / "grpo" / "final"), str(data),
                              "--out", str(tmp_path / "preds.jsonl"), "--max-new-tokens", "80"])
    assert res.exit_code == 0, res.output
    pred = json.loads((tmp_path / "preds.jsonl").read_text().splitlines()[0])
    assert [o["bbox"] for o in pred["objects"]] == [SCENE["rope"][3], SCENE["cardboard"][3]]


def test_grpo_refuses_a_model_without_a_contract(tmp_path: Path, sft_qa: Path) -> None:
    data = sft_qa.parent.parent / "scene-qa"
    res = runner.invoke(app, ["train", "grpo", "--config", "tiny", "--from", str(tmp_path),
                              *_grpo_set(tmp_path, data)])
    assert res.exit_code == 2
    assert res.output.count("error:") == 1 and "no jamspotter.json" in res.output
    assert not (tmp_path / "run").exists()  # nothing claimed before the check


def test_image_guard_fails_loudly_where_trl_would_drop_images() -> None:
    import torch

    from jamspotter.train.grpo import check_image_features

    pad = 7
    ids = torch.tensor([[1, pad, pad, pad, pad, 2]])  # four image tokens
    out = {"prompt_ids": ids, "completion_ids": torch.tensor([[3]]), "prompt_mask": torch.ones_like(ids),
           "completion_mask": torch.ones(1, 1, dtype=torch.long), "pixel_values": torch.zeros(16, 4),
           "image_grid_thw": torch.tensor([[1, 4, 4]])}  # 16 patches / merge 2x2 = 4 features
    check_image_features(out, True, pad, 2)
    with pytest.raises(JamspotterError, match="4 image tokens but 2 image features"):
        check_image_features({**out, "image_grid_thw": torch.tensor([[1, 2, 4]])}, True, pad, 2)
    dropped = {k: v for k, v in out.items() if k not in ("pixel_values", "image_grid_thw")}
    with pytest.raises(JamspotterError, match="lost its images"):
        check_image_features(dropped, True, pad, 2)
    check_image_features(dropped, False, pad, 2)  # a text-only batch is fine


def test_grpo_config_needs_whole_groups(tmp_path: Path) -> None:
    from jamspotter.train.config import load_config

    with pytest.raises(JamspotterError, match="multiple of num_generations"):
        load_config("tiny", [f"data.train={tmp_path}", "grpo.batch_size=4", "grpo.num_generations=3"],
                    check_files=False)


def test_grpo_resumes_like_sft(sft_qa: Path, tmp_path: Path) -> None:
    data = sft_qa.parent.parent / "scene-qa"

    def run(steps: int, *flags: str) -> Any:
        sets = _grpo_set(tmp_path, data, **{"grpo.max_steps": steps, "grpo.save_steps": 1, "grpo.prompts": 1,
                                            "grpo.batch_size": 2})
        return runner.invoke(app, ["train", "grpo", "--config", "tiny", "--from", str(sft_qa), *sets, *flags])

    grpo_dir = tmp_path / "run" / "grpo"
    assert run(1).exit_code == 0
    done = run(1, "--resume")  # a finished run: nothing more to train, final/ untouched
    assert done.exit_code == 0 and "nothing to do" in done.output
    assert sorted(p.name for p in grpo_dir.glob("checkpoint-*")) == ["checkpoint-1"]
    more = run(2, "--resume")  # more steps for the same run: continues from checkpoint-1
    assert more.exit_code == 0, more.output
    assert "resuming from" in more.output and "done: 2 GRPO steps" in more.output
    other = runner.invoke(app, ["train", "grpo", "--config", "tiny", "--from", str(sft_qa), "--resume",
                                *_grpo_set(tmp_path, data, **{"grpo.num_generations": 3, "grpo.batch_size": 3})])
    assert other.exit_code == 2 and "other settings" in other.output  # another GRPO setup is not this run


def test_grpo_on_a_lora_run_keeps_its_adapter_and_merges_like_sft(tmp_path: Path) -> None:
    from jamspotter.synth import generate_dataset

    data = tmp_path / "belt"
    generate_dataset(data, 4, (112, 112), seed=3)
    run = tmp_path / "lora"
    common = ["--set", f"data.train={data}", "--set", f"train.output_dir={run}", "--set", "finetune.method=lora",
              "--set", "data.clips=false"]
    res = runner.invoke(app, ["train", "both", "--config", "tiny", *common, "--set", "train.max_steps=1",
                              "--set", "grpo.max_steps=1", "--set", "grpo.max_completion_length=16",
                              "--set", "grpo.batch_size=4", "--set", "grpo.num_generations=2"])
    assert res.exit_code == 0, res.output
    final = run / "grpo" / "final"
    adapter = json.loads((final / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"].endswith("base-tiny-qwen2.5-vl")  # SFT's adapter kept training
    merged = tmp_path / "merged"
    res = runner.invoke(app, ["train", "merge", str(final), "--out", str(merged)])
    assert res.exit_code == 0, res.output
    assert json.loads((merged / "jamspotter.json").read_text()) == json.loads((final / "jamspotter.json").read_text())
    for folder in (final, merged):
        res = runner.invoke(app, ["infer", str(folder), str(data), "--max-new-tokens", "8",
                                  "--out", str(tmp_path / f"{folder.name}.jsonl")])
        assert res.exit_code == 0, res.output
    texts = [[json.loads(line)["text"] for line in (tmp_path / f"{f.name}.jsonl").read_text().splitlines()]
             for f in (final, merged)]
    assert texts[0] == texts[1]  # the merged model answers as the adapter does
