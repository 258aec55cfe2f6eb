"""Batched detection equals one-by-one detection, boxes included, for all three families.

tests/test_infer.py checks that tiny random models write the same TEXT batched (left padding) as alone;
random text holds no boxes, so here each model is made to answer about the image a row really holds
(tests/forcing.py: the real `generate` runs on the padded batch, the reply is chosen from that row's
patch grid). Batched, in batches of 2 + 1, and one by one must then give the same boxes, each read
against its own image's input size. Expected boxes are worked out by hand:

input sizes (smart_resize): factor 28 (Qwen2/2.5-VL, min 3136 px): 64x64 -> 56x56, 100x64 -> 112x56
(100/28 = 3.6 -> 4), 64x120 -> 56x112 (120/28 = 4.3 -> 4). Qwen3-VL (factor 32, min 65536 px, scaled up:
beta = sqrt(65536 / area), side -> ceil(side * beta / 32) * 32): 64x64 -> 256x256, 100x64 -> 320x224
(beta 3.2), 64x120 -> 192x352 (beta 2.92).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from forcing import scripted_generate
from PIL import Image

FAMILIES = ("qwen2-vl", "qwen2.5-vl", "qwen3-vl")
SIZES = [(64, 64), (100, 64), (64, 120)]  # (width, height)
LABELS = ["rope", "hose", "cardboard"]  # what the model "sees" in each image
INPUT = {  # family -> the model input size of each image (width, height)
    "qwen2-vl": [(56, 56), (112, 56), (56, 112)],
    "qwen2.5-vl": [(56, 56), (112, 56), (56, 112)],
    "qwen3-vl": [(256, 256), (320, 224), (192, 352)],
}
PATCH = {"qwen2-vl": 14, "qwen2.5-vl": 14, "qwen3-vl": 16}
# 0-1000 [250, 500, 750, 1000] -> x 1/4..3/4 of the width, y 1/2..1 of the height
RELATIVE = [[16, 32, 48, 64], [25, 32, 75, 64], [16, 60, 48, 120]]
# Qwen2.5-VL pixels [14, 14, 28, 42] of the input: x * w / input_w, y * h / input_h
# 64x64 / 56x56: [16, 16, 32, 48]; 100x64 / 112x56: [12.5, 16, 25, 48]; 64x120 / 56x112: [16, 15, 32, 45]
EXPECTED = {"qwen2-vl": RELATIVE, "qwen3-vl": RELATIVE,
            "qwen2.5-vl": [[16, 16, 32, 48], [12.5, 16, 25, 48], [16, 15, 32, 45]]}


def answer_text(family: str, label: str) -> str:
    if family == "qwen2-vl":
        return f"<|object_ref_start|>{label}<|object_ref_end|><|box_start|>(250,500),(750,1000)<|box_end|>"
    box = [14, 14, 28, 42] if family == "qwen2.5-vl" else [250, 500, 750, 1000]
    return f'[{{"bbox_2d": {box}, "label": "{label}"}}]'


@pytest.fixture(scope="module")
def batch_detectors(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from jamspotter.infer import Detector
    from jamspotter.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("batch_models")
    return {f: Detector(build_tiny_model(f, root / f, real_tokenizer=False), max_new_tokens=48, device="cpu")
            for f in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_boxes_equal_one_by_one(batch_detectors: dict, family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    det = batch_detectors[family]
    patch = PATCH[family]
    by_grid = {(1, h // patch, w // patch): answer_text(family, label)
               for (w, h), label in zip(INPUT[family], LABELS, strict=True)}
    assert len(by_grid) == 3  # each image has its own grid, so each row's reply names the image it holds

    def reply(kwargs: dict) -> list[str]:
        return [by_grid[tuple(g)] for g in kwargs["image_grid_thw"].tolist()]

    calls: list[dict] = []
    monkeypatch.setattr(det.model, "generate", scripted_generate(det.model.generate, det.tokenizer, [reply], calls))
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in SIZES]

    batched = det.detect(images, batch_size=3)
    pairs = det.detect(images, batch_size=2)
    single = [det.detect([im], batch_size=1)[0] for im in images]
    assert [len(c["input_ids"]) for c in calls] == [3, 2, 1, 1, 1, 1]
    first = calls[0]["attention_mask"]
    assert (first[:, 0] == 0).any() and (first[:, -1] == 1).all()  # rows of different lengths, padded on the left

    for run in (batched, pairs):
        assert [r.text for r in run] == [r.text for r in single]
        assert [r.objects for r in run] == [r.objects for r in single]
        assert [r.input_size for r in run] == [r.input_size for r in single] == INPUT[family]
    for res, label, box, im in zip(single, LABELS, EXPECTED[family], images, strict=True):
        assert res.image_size == im.size and res.problems == []
        assert [o.label for o in res.objects] == [label]
        assert np.allclose(res.objects[0].bbox, box, atol=1e-6), (res.objects[0].bbox, box)


def test_batched_clip_frames_equal_one_by_one(batch_detectors: dict, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """detect_video batches frames too: same answers and frame indices whatever the batch size."""
    from jamspotter.synth.clip import write_mp4

    det = batch_detectors["qwen2.5-vl"]
    monkeypatch.setattr(det.model, "generate",
                        scripted_generate(det.model.generate, det.tokenizer, [answer_text("qwen2.5-vl", "rope")]))
    rng = np.random.default_rng(0)
    write_mp4(tmp_path / "clip.mp4", [rng.integers(0, 255, (64, 100, 3), dtype=np.uint8) for _ in range(5)], fps=10)
    batched = det.detect_video(tmp_path / "clip.mp4", batch_size=4)
    single = det.detect_video(tmp_path / "clip.mp4", batch_size=1)
    assert [r.frame for r in batched] == [r.frame for r in single] == [0, 1, 2, 3, 4]
    assert [r.objects for r in batched] == [r.objects for r in single]
    assert np.allclose(batched[4].objects[0].bbox, [12.5, 16, 25, 48])
