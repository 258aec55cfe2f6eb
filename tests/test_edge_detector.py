"""Edge box detector (SSDlite320-MobileNetV3): training on synthetic belts, predict in pixels, ONNX, distillation."""

from __future__ import annotations

import json
import math
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jamspotter.data.records import BoxObject

SIZE = 128  # network input for the tests (SSDlite's default is 320; smaller keeps CPU tests fast)



@pytest.fixture(scope="module")
def belt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthetic 160x120 belt images with exact boxes; one marked val so evaluation runs."""
    from jamspotter.data.io import read_samples, write_samples
    from jamspotter.synth import generate_dataset

    root = tmp_path_factory.mktemp("belt")
    generate_dataset(root, 4, size=(160, 120), seed=0)
    samples = read_samples(root)
    samples[-1] = samples[-1].model_copy(update={"split": "val"})
    write_samples(root / "samples.jsonl", samples)
    return root


def _detector(classes: list[str]):  # noqa: ANN202
    from jamspotter.edge.detector import EdgeBoxDetector

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return EdgeBoxDetector(classes, image_size=SIZE, score_threshold=0.01)


def test_loss_is_finite_and_decreases_on_a_fixed_batch(belt: Path) -> None:
    from jamspotter.data.io import read_samples
    from jamspotter.edge.detector import class_list, load_batch

    samples = read_samples(belt)
    torch.manual_seed(0)
    det = _detector(class_list(samples))
    images, targets = load_batch(det, samples[:2], belt, random.Random(0))
    assert all(t.shape == (3, SIZE, SIZE) for t in images) and sum(len(t["boxes"]) for t in targets) > 0
    opt = torch.optim.AdamW(det.model.parameters(), lr=2e-3)
    losses = []
    for _ in range(3):
        loss = det.loss(images, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], losses


def test_targets_scale_to_the_network_frame_and_flip() -> None:
    det = _detector(["rope", "hose"])
    objs = [BoxObject(label="rope", bbox=[16, 12, 80, 60]), BoxObject(label="can", bbox=[0, 0, 10, 10]),
            BoxObject(label="hose", bbox=[5, 5, 5.2, 50])]  # unknown class and a sub-pixel box are dropped
    t = det.targets(objs, (160, 120), flip=False)
    assert t["labels"].tolist() == [1]
    assert torch.allclose(t["boxes"], torch.tensor([[12.8, 12.8, 64.0, 64.0]]))
    flipped = det.targets(objs, (160, 120), flip=True)
    assert torch.allclose(flipped["boxes"], torch.tensor([[SIZE - 64.0, 12.8, SIZE - 12.8, 64.0]]))


def test_predict_returns_boxes_in_image_pixels() -> None:
    det = _detector(["rope", "hose"])
    rng = np.random.default_rng(0)
    wide = Image.fromarray(rng.integers(0, 255, (60, 320, 3), dtype=np.uint8))
    tall = rng.integers(0, 255, (200, 50, 3), dtype=np.uint8)
    preds = det.predict([wide, tall])
    assert len(preds) == 2 and preds[0] and preds[1]  # threshold 0.01 keeps the untrained model's boxes
    for boxes, (w, h) in zip(preds, [(320, 60), (50, 200)], strict=True):
        for b in boxes:
            x1, y1, x2, y2 = b.bbox
            assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
            assert b.label in ("rope", "hose") and 0 < b.score <= 1 and b.jam_risk is True
    assert max(b.bbox[2] for b in preds[0]) > SIZE  # really scaled back beyond the network frame


def test_train_detector_cli_evaluates_exports_onnx_and_detects(belt: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from jamspotter.cli import app
    from jamspotter.data.io import read_samples
    from jamspotter.edge.detector import EdgeBoxDetector, OnnxBoxDetector
    from jamspotter.evaluate.predictions import load_predictions

    out = tmp_path / "det"
    res = CliRunner().invoke(app, ["edge", "train-detector", "--data", str(belt), "--out", str(out), "--epochs", "1",
                                   "--batch-size", "4", "--image-size", str(SIZE), "--score-threshold", "0.05"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["n_train"] == 3 and report["n_val"] == 1 and math.isfinite(report["final_loss"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"precision", "recall", "f1", "jam_recall", "map50", "all_scores"} <= set(metrics)
    assert report["export"]["max_abs_diff"] < 1e-4 and (out / "detector.onnx").is_file()

    images = [s.image_path(belt) for s in read_samples(belt)[:2]]
    torch_boxes = EdgeBoxDetector.load(out).predict(images)
    ort_boxes = OnnxBoxDetector(out).predict(images)
    assert [len(b) for b in torch_boxes] == [len(b) for b in ort_boxes]
    # an untrained model ties many scores, so compare each image's boxes as sorted sets
    for a, b in zip(torch_boxes, ort_boxes, strict=True):
        key = lambda o: (o.label, o.bbox)  # noqa: E731
        assert np.allclose([o.bbox for o in sorted(a, key=key)], [o.bbox for o in sorted(b, key=key)], atol=1e-2)

    preds = tmp_path / "edge_preds.jsonl"
    res = CliRunner().invoke(app, ["edge", "detect", str(out), str(belt), "--out", str(preds)])
    assert res.exit_code == 0, res.output
    gt = read_samples(belt)
    loaded = load_predictions(preds, gt=gt, gt_root=belt)
    assert [p.id for p in loaded] == [g.id for g in gt]
    assert all(o.score is not None for p in loaded for o in p.objects)


def test_distill_with_a_tiny_vlm_teacher(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from jamspotter.cli import app
    from jamspotter.data.io import read_samples
    from jamspotter.models.tiny import build_tiny_model

    teacher = build_tiny_model("qwen2-vl", tmp_path / "teacher", real_tokenizer=False)
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(frames / f"frame_{i:03d}.png")
    out = tmp_path / "student"
    res = CliRunner().invoke(app, ["edge", "distill", "--teacher", str(teacher), "--frames", str(frames),
                                   "--out", str(out), "--epochs", "1", "--image-size", str(SIZE), "--no-export",
                                   "--max-new-tokens", "8", "--task", "detect_all"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "distill.json").read_text())
    assert summary["frames"] == 3 and "boxes on" in res.output
    pseudo = read_samples(out / "pseudo_labels")
    assert [s.id for s in pseudo] == ["frame_000", "frame_001", "frame_002"]
    assert all(s.image_path(out / "pseudo_labels").is_file() for s in pseudo)
    assert summary["pseudo_boxes"] == sum(len(s.objects) for s in pseudo)
    assert (out / "detector.safetensors").is_file() and summary["training"]["classes"]


def test_checkpoint_reloads_the_same_architecture(tmp_path: Path) -> None:
    """The full-tail backbone (used with ImageNet weights) reloads as itself, with identical outputs."""
    from jamspotter.edge.detector import EdgeBoxDetector

    det = _detector(["rope"])
    full = EdgeBoxDetector(["rope"], image_size=SIZE, reduced_tail=False)
    full.save(tmp_path)
    again = EdgeBoxDetector.load(tmp_path)
    assert again.model.jamspotter_reduced_tail is False
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(full.raw.eval()(x), again.raw.eval()(x))
    assert sum(p.numel() for p in full.model.parameters()) > sum(p.numel() for p in det.model.parameters())
