"""Drawn detections: box pixels where the boxes are, warning vs calm colours, captions, clips as mp4, infer --draw.

Pixel positions are worked out by hand: a box [x1, y1, x2, y2] (pixel edges) is outlined inside those edges,
so columns x1 .. x1 + t - 1 and x2 - t .. x2 - 1 hold the outline of width t = max(1, round(longest side / 400)).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from forcing import scripted_generate
from PIL import Image
from typer.testing import CliRunner

from jamspotter.data.records import BoxObject
from jamspotter.detections import Detections
from jamspotter.infer.draw import CAPTION_BACKGROUND, JAM_COLOR, MATERIAL_COLOR, draw_detections, write_clip

GREY = (90, 90, 90)


def pixel(image: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.asarray(image)[y, x])


def test_the_colours_are_a_warning_and_a_calm_one() -> None:
    r, g, b = JAM_COLOR
    assert r >= 200 and b <= 80 and g <= 140  # red to orange
    r, g, b = MATERIAL_COLOR
    assert b >= 200 and r <= 80  # blue


def test_boxes_are_drawn_on_their_edges_in_their_colours() -> None:
    image = Image.new("RGB", (200, 150), GREY)
    rope = BoxObject(label="rope", bbox=[20, 40, 100, 120])  # jam-causing by the default taxonomy
    card = BoxObject(label="cardboard", bbox=[120, 30, 180, 100])
    drawn = draw_detections(image, [rope, card])
    assert drawn is not image and pixel(image, 20, 80) == GREY  # the input is left as it was
    # 200 px wide: t = max(1, round(0.5)) = 1
    for x, y in [(20, 80), (99, 80), (60, 119)]:  # left, right, bottom edge of the rope
        assert pixel(drawn, x, y) == JAM_COLOR, (x, y)
    for x, y in [(120, 65), (179, 65), (150, 99)]:  # left, right, bottom edge of the cardboard
        assert pixel(drawn, x, y) == MATERIAL_COLOR, (x, y)
    for x, y in [(19, 80), (21, 80), (100, 80), (60, 118), (60, 121), (119, 65), (121, 65), (10, 140), (190, 5)]:
        assert pixel(drawn, x, y) == GREY, (x, y)  # just outside, just inside, far away
    # labels sit on a filled tag right above the box: the row above the top edge, at the left edge
    assert pixel(drawn, 20, 39) == JAM_COLOR and pixel(drawn, 120, 29) == MATERIAL_COLOR


def test_jam_flag_and_line_width_follow_the_box_and_the_image() -> None:
    image = Image.new("RGB", (1280, 720), GREY)
    # t = round(1280 / 400) = 3; an explicit jam_risk flag wins over the label's default
    flagged = BoxObject(label="cardboard", bbox=[100, 200, 500, 600], jam_risk=True, score=0.9)
    drawn = draw_detections(image, Detections(objects=[flagged], image_size=(1280, 720)))
    assert [pixel(drawn, x, 400) for x in (99, 100, 102, 103)] == [GREY, JAM_COLOR, JAM_COLOR, GREY]
    assert [pixel(drawn, x, 400) for x in (496, 497, 499, 500)] == [GREY, JAM_COLOR, JAM_COLOR, GREY]


def test_reasons_are_captions_under_the_box() -> None:
    image = Image.new("RGB", (400, 300), GREY)
    box = BoxObject(label="rope", bbox=[50, 60, 250, 160], reason="long and thin: wraps around the screens")
    drawn = np.asarray(draw_detections(image, [box]))
    under = drawn[160:190, 50:250].reshape(-1, 3)  # the rows right under the box
    assert (under == CAPTION_BACKGROUND).all(axis=1).sum() > 100
    assert (under == 255).all(axis=1).sum() > 20  # white caption text on it
    inside = drawn[65:155, 55:245].reshape(-1, 3)
    assert (inside == GREY).all()  # the box itself is not filled


def test_a_box_at_the_image_edge_keeps_its_label_inside() -> None:
    image = Image.new("RGB", (120, 80), GREY)
    drawn = draw_detections(image, [BoxObject(label="plastic_film", bbox=[0, 0, 120, 80], reason="x" * 200)])
    assert drawn.size == (120, 80)
    assert pixel(drawn, 0, 40) == JAM_COLOR and pixel(drawn, 119, 40) == JAM_COLOR
    assert pixel(drawn, 1, 1) == JAM_COLOR  # the tag moved inside, at the top left


def test_clip_is_an_mp4_with_every_frame(tmp_path: Path) -> None:
    import av

    frames = [Image.new("RGB", (65, 49), (10 * i, 100, 100)) for i in range(5)]  # odd sides: padded to even
    assert write_clip(tmp_path / "clip.mp4", iter(frames), fps=5) == 5
    with av.open(str(tmp_path / "clip.mp4")) as container:
        stream = container.streams.video[0]
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert stream.average_rate == 5
    assert len(decoded) == 5 and decoded[0].shape == (50, 66, 3)
    assert write_clip(tmp_path / "none.mp4", iter([]), fps=5) == 0 and not (tmp_path / "none.mp4").exists()


# ---- jamspotter infer --draw on a tiny Qwen2-VL model forced to answer one rope box ---------------------------
# 0-1000 on a 200x120 image: (100,250),(500,750) -> x 20, 100; y 30, 90.
ROPE = "<|object_ref_start|>rope<|object_ref_end|><|box_start|>(100,250),(500,750)<|box_end|>"


@pytest.fixture(scope="module")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from jamspotter.models.tiny import build_tiny_model

    return build_tiny_model("qwen2-vl", tmp_path_factory.mktemp("draw_model") / "qwen2-vl", real_tokenizer=False)


def force_rope(monkeypatch: pytest.MonkeyPatch, model: Path) -> None:
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration

    real = Qwen2VLForConditionalGeneration.generate
    monkeypatch.setattr(Qwen2VLForConditionalGeneration, "generate",
                        scripted_generate(real, AutoTokenizer.from_pretrained(model), [ROPE]))


def inputs_folder(tmp_path: Path) -> Path:
    from jamspotter.synth.clip import write_mp4

    folder = tmp_path / "belt"
    for sub in ("a", "b"):
        (folder / sub).mkdir(parents=True)
        Image.new("RGB", (200, 120), GREY).save(folder / sub / "frame.png")  # the same stem twice
    Image.new("RGB", (200, 120), GREY).save(folder / "a" / "photo.jpg")
    (folder / "b" / "broken.png").write_text("not an image")  # recorded as unreadable, not drawn
    write_mp4(folder / "clip.mp4", [np.full((120, 200, 3), 90, dtype=np.uint8)] * 5, fps=10)
    return folder


def test_infer_draw_writes_images_and_clips(tiny_qwen2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import av

    from jamspotter.cli import app

    force_rope(monkeypatch, tiny_qwen2)
    folder, out, drawn = inputs_folder(tmp_path), tmp_path / "preds.jsonl", tmp_path / "drawn"
    args = ["infer", str(tiny_qwen2), str(folder), "--out", str(out), "--draw", str(drawn), "--every-n", "2",
            "--max-new-tokens", "48", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "drew 4 files" in result.stdout and "1 unreadable image" in result.stderr
    assert sorted(p.name for p in drawn.iterdir() if p.name != ".jamspotter-output") == \
        ["clip.mp4", "frame-2.png", "frame.png", "photo.jpg"]
    preds = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["id"] for p in preds] == ["a/frame", "a/photo", "b/broken", "b/frame", "clip"]
    assert np.allclose(preds[1]["objects"][0]["bbox"], [20, 30, 100, 90])
    for name in ("frame.png", "frame-2.png"):  # lossless: the exact pixels of the hand-computed box
        image = Image.open(drawn / name)
        assert image.size == (200, 120)
        assert pixel(image, 20, 60) == JAM_COLOR and pixel(image, 99, 60) == JAM_COLOR
        assert pixel(image, 19, 60) == GREY and pixel(image, 21, 60) == GREY and pixel(image, 150, 100) == GREY
    photo = np.asarray(Image.open(drawn / "photo.jpg")).astype(int)  # JPEG: close to the colour
    assert np.abs(photo[60, 20] - JAM_COLOR).max() < 40 and np.abs(photo[60, 60] - GREY).max() < 12
    with av.open(str(drawn / "clip.mp4")) as container:
        rate = container.streams.video[0].average_rate
        frames = [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(video=0)]
    assert rate == 5 and len(frames) == 3  # 10 fps every 2nd frame: frames 0, 2, 4 at 5 fps
    assert frames[0].shape == (120, 200, 3)
    assert np.abs(frames[0][60, 60] - GREY).max() < 12  # the inside of the box is the belt
    r, g, b = frames[0][60, 20]  # the outline survived H.264 (4:2:0 halves its colour resolution)
    assert r > 150 and r - b > 80 and np.abs(frames[0][60, 18] - GREY).max() < 12


def test_infer_draw_follows_the_output_policy(tiny_qwen2: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from jamspotter.cli import app

    force_rope(monkeypatch, tiny_qwen2)
    Image.new("RGB", (200, 120), GREY).save(tmp_path / "one.png")
    out, drawn = tmp_path / "preds.jsonl", tmp_path / "drawn"
    base = ["infer", str(tiny_qwen2), str(tmp_path / "one.png"), "--max-new-tokens", "48", "--device", "cpu"]

    def one_error(result) -> str:  # noqa: ANN001
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        return lines[0]

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert "did not write" in one_error(CliRunner().invoke(app, [*base, "--out", str(out), "--draw", str(foreign)]))
    assert (foreign / "notes.txt").read_text() == "keep me" and not out.exists()
    inside = one_error(CliRunner().invoke(app, [*base, "--out", str(drawn / "p.jsonl"), "--draw", str(drawn)]))
    assert "inside" in inside and not drawn.exists()

    assert CliRunner().invoke(app, [*base, "--out", str(out), "--draw", str(drawn)]).exit_code == 0
    assert "--overwrite" in one_error(CliRunner().invoke(app, [*base, "--out", str(tmp_path / "p2.jsonl"),
                                                                "--draw", str(drawn)]))
    result = CliRunner().invoke(app, [*base, "--out", str(out), "--draw", str(drawn), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in drawn.iterdir()) == [".jamspotter-output", "one.png"]
