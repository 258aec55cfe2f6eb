"""jamspotter.infer: Detector on tiny random Qwen2-VL / Qwen2.5-VL (batched = one by one), clips, CLI -> evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jamspotter.data.records import BoxObject, Sample

FAMILIES = ("qwen2.5-vl", "qwen2-vl", "qwen3-vl")
SIZES = [(64, 64), (96, 64), (64, 120)]  # (width, height): three different model input sizes



@pytest.fixture(scope="session")
def tiny_vlms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from jamspotter.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("infer_models")
    return {f: build_tiny_model(f, root / f, real_tokenizer=False) for f in FAMILIES}


@pytest.fixture(scope="session")
def detectors(tiny_vlms: dict[str, Path]) -> dict:
    from jamspotter.infer import Detector

    return {f: Detector(p, max_new_tokens=16, device="cpu") for f, p in tiny_vlms.items()}


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in SIZES]


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_generation_equals_one_by_one(detectors: dict, family: str) -> None:
    det = detectors[family]
    assert det.family == family and det.tokenizer.padding_side == "left"
    images = _images()
    batched = det.detect(images, batch_size=3)
    single = [det.detect([im], batch_size=1)[0] for im in images]
    assert [r.text for r in batched] == [r.text for r in single]
    for res, im in zip(batched, images, strict=True):
        assert res.image_size == im.size
        # the processor's real input size agrees with the format's smart_resize (same min/max pixels)
        assert res.input_size == det.format.input_size(*im.size)
        factor = det.format.params.factor  # 28 for Qwen2/2.5-VL, 32 for Qwen3-VL
        assert res.input_size[0] % factor == 0 and res.input_size[1] % factor == 0
        for box in res.objects:  # whatever garbage came out, boxes are inside the original image
            x1, y1, x2, y2 = box.bbox
            assert 0 <= x1 <= x2 <= im.width and 0 <= y1 <= y2 <= im.height
            assert box.score is None
        if not res.objects:
            assert res.problems, "an answer without boxes must say why"


@pytest.mark.parametrize("family", FAMILIES)
def test_known_answer_comes_back_in_original_pixels(detectors: dict, family: str, monkeypatch) -> None:
    """Feed a known answer through generate: boxes rendered in model coordinates return in original pixels."""
    import torch

    det = detectors[family]
    image = Image.new("RGB", (200, 100), (90, 90, 90))
    truth = [BoxObject(label="rope", bbox=[20.0, 10.0, 120.0, 60.0])]
    answer = det.format.render_boxes(truth, image.size, det.format.input_size(*image.size)) + "<|im_end|>"
    ids = torch.tensor([det.tokenizer.encode(answer, add_special_tokens=False)])

    def fake_generate(input_ids, **kwargs):  # noqa: ANN001, ANN003, ANN202
        assert kwargs["do_sample"] is False
        return torch.cat([input_ids, ids.expand(len(input_ids), -1)], dim=1)

    monkeypatch.setattr(det.model, "generate", fake_generate)
    (res,) = det.detect([image])
    assert [b.label for b in res.objects] == ["rope"]
    assert np.allclose(res.objects[0].bbox, truth[0].bbox, atol=2.0)
    assert "<|im_end|>" not in res.text


def test_prompt_is_the_training_prompt(detectors: dict) -> None:
    det = detectors["qwen2.5-vl"]  # no jamspotter.json: task auto -> detect_all (training's default)
    sample = Sample(id="x", width=64, height=64)
    assert det.task == "detect_all"
    assert det.prompt == det.format.render_detection(sample)[0]
    assert "rope" in det.prompt and "cardboard" in det.prompt


def test_auto_task_follows_the_training_metadata(tiny_vlms: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    from jamspotter.formats import get_format
    from jamspotter.formats.contract import PROMPT_VERSION
    from jamspotter.infer import Detector

    model = shutil.copytree(tiny_vlms["qwen2-vl"], tmp_path / "finetuned")
    meta = {"family": "qwen2-vl", "classes": ["rope", "hose", "cardboard"], "jam_only": True,
            "min_pixels": 56 * 56, "max_pixels": 112 * 112, "prompt_version": PROMPT_VERSION}
    (model / "jamspotter.json").write_text(json.dumps(meta))
    det = Detector(model, max_new_tokens=4, device="cpu")
    assert det.task == "detect_jam" and det.format.classes == ("rope", "hose", "cardboard")
    assert (det.format.params.min_pixels, det.format.params.max_pixels) == (56 * 56, 112 * 112)
    trained = get_format("qwen2-vl", classes=meta["classes"], jam_only=True)
    assert det.prompt == trained.render_detection(Sample(id="x", width=64, height=64))[0]
    assert "cardboard" not in det.prompt and "rope, hose" in det.prompt
    (res,) = det.detect([Image.new("RGB", (400, 300))])
    assert res.input_size[0] * res.input_size[1] <= 112 * 112  # the recorded token budget was applied


def test_unreadable_inputs_are_data_errors(detectors: dict, tmp_path: Path) -> None:
    from jamspotter.errors import DataError

    det = detectors["qwen2-vl"]
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(DataError, match="bad.png"):
        det.detect([tmp_path / "bad.png"])
    with pytest.raises(DataError, match="201x1"):
        det.detect([Image.new("RGB", (201, 1))])  # aspect ratio over 200: the processor refuses it
    with pytest.raises(DataError, match="no image, video or frames"):
        det.detect_samples([Sample(id="empty")])


def test_detect_video_and_clip_samples(detectors: dict, tmp_path: Path) -> None:
    from jamspotter.synth.clip import write_mp4

    rng = np.random.default_rng(0)
    write_mp4(tmp_path / "clip.mp4", [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(4)], fps=10)
    clip = Sample(id="clip-0", video="clip.mp4", fps=10)
    det = detectors["qwen2-vl"]
    results = det.detect_video(tmp_path / "clip.mp4", every_n=2, batch_size=2)
    assert [r.frame for r in results] == [0, 2]
    assert all(r.image_size == (64, 48) for r in results)
    (pred,) = det.detect_samples([clip], tmp_path, every_n=2)
    assert pred.id == clip.id and len(pred.frame_objects) == 2 and pred.meta["frame_indices"] == [0, 2]


def test_cli_writes_predictions_that_evaluate_loads(tiny_vlms: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from jamspotter.cli import app
    from jamspotter.data.io import read_samples, write_samples
    from jamspotter.evaluate import evaluate_detections
    from jamspotter.evaluate.predictions import load_predictions

    data = tmp_path / "belt"
    (data / "images").mkdir(parents=True)
    for i, im in enumerate(_images()):
        im.save(data / "images" / f"b{i}.png")
    write_samples(data / "samples.jsonl", [
        Sample(id=f"b{i}", image=f"images/b{i}.png", width=w, height=h,
               objects=[BoxObject(label="rope", bbox=[4.0, 4.0, w / 2, h / 2])]) for i, (w, h) in enumerate(SIZES)])
    out = tmp_path / "preds.jsonl"
    res = CliRunner().invoke(app, ["infer", str(tiny_vlms["qwen2.5-vl"]), str(data), "--out", str(out),
                                   "--batch-size", "2", "--max-new-tokens", "8", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "3 inputs" in res.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    gt = read_samples(data)
    assert [d["id"] for d in lines] == [s.id for s in gt]
    assert all(isinstance(d["text"], str) and isinstance(d["objects"], list) for d in lines)
    preds = load_predictions(out, gt=gt, gt_root=data)
    metrics = evaluate_detections(gt, preds)
    assert {"precision", "recall", "f1", "jam_recall", "map"} <= set(metrics)
    assert preds[0].meta["text"] == lines[0]["text"]
    # the raw text re-parses through the evaluator's --raw path too
    assert len(load_predictions(out, gt=gt, gt_root=data, family="qwen2.5-vl", raw=True)) == 3


def test_cli_bad_input_is_one_line_error(tiny_vlms: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from jamspotter.cli import app

    out = tmp_path / "preds.jsonl"
    res = CliRunner().invoke(app, ["infer", str(tiny_vlms["qwen2-vl"]), str(tmp_path / "missing.jpg"),
                                   "--out", str(out)])
    assert res.exit_code == 2 and "no such file" in res.output
    assert not out.exists()
