"""jamspotter.synth: exact visible-extent labels, occlusion, determinism, clips, CLI."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from jamspotter.data.io import read_samples
from jamspotter.data.taxonomy import JAM_CLASSES, MATERIAL_CLASSES, Taxonomy
from jamspotter.errors import JamspotterError
from jamspotter.synth import build_scene, compose, generate_dataset, render_frame, render_scene
from jamspotter.synth.patch import ItemPatch, make_patch
from jamspotter.synth.scene import MIN_VISIBLE_FRACTION, Placed, min_visible_pixels


def mask_box(mask: np.ndarray) -> list[float]:
    """Bounding box of a full-frame bool mask in pixel-edge coordinates."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


@pytest.mark.parametrize("seed", range(6))
def test_boxes_are_tight_boxes_of_visible_masks(seed: int) -> None:
    w, h = 160, 120
    frame = render_frame(w, h, seed, jam_rate=0.5, clutter=14.0)
    assert frame.image.shape == (h, w, 3) and frame.image.dtype == np.uint8
    assert len(frame.objects) == len(frame.masks) > 0
    for obj, vm in zip(frame.objects, frame.masks, strict=True):
        full = vm.full(w, h)
        assert obj.bbox == mask_box(full)
        assert full.sum() >= min_visible_pixels(w, h)
        assert obj.label in JAM_CLASSES + MATERIAL_CLASSES
        assert obj.jam_risk == Taxonomy().jam_risk(obj.label)
        xs, ys = np.array(obj.polygon[0][0::2]), np.array(obj.polygon[0][1::2])
        x1, y1, x2, y2 = obj.bbox
        assert xs.min() >= x1 and xs.max() <= x2 - 1 and ys.min() >= y1 and ys.max() <= y2 - 1


def _square(size: int, alpha: float) -> ItemPatch:
    a = np.full((size, size), alpha, np.float32)
    return make_patch("test", "metal", np.full((size, size, 3), 200, np.float32), a, np.ones((size, size), bool), 0.0)


def _two_squares(top_alpha: float, top_xy: tuple[int, int]):
    scene = build_scene(160, 120, 1, clutter=0.0, noise=0.0, polygons=False)
    assert scene.items == []
    a, b = _square(40, 1.0), _square(40, top_alpha)
    scene.items = [Placed(a, 30, 40, 1600), Placed(b, top_xy[0], top_xy[1], 1600)]
    return compose(scene, 0, with_masks=True), scene


def test_opaque_item_on_top_cuts_the_box_of_the_one_below() -> None:
    frame, _ = _two_squares(1.0, (50, 40))
    boxes = [o.bbox for o in frame.objects]
    assert boxes == [[30.0, 40.0, 50.0, 80.0], [50.0, 40.0, 90.0, 80.0]]


def test_clear_film_on_top_leaves_the_item_below_visible() -> None:
    frame, _ = _two_squares(0.3, (50, 40))
    assert [o.bbox for o in frame.objects] == [[30.0, 40.0, 70.0, 80.0], [50.0, 40.0, 90.0, 80.0]]


def test_almost_hidden_items_are_dropped_and_rails_hide() -> None:
    frame, _ = _two_squares(1.0, (32, 40))  # covers all but a 2 px strip: 80 px < 20 % of 1600
    assert MIN_VISIBLE_FRACTION * 1600 > 2 * 40
    assert [o.bbox for o in frame.objects] == [[32.0, 40.0, 72.0, 80.0]]
    frame, scene = _two_squares(1.0, (90, 0))  # reaches under the top rail
    assert scene.belt.top > 0
    assert frame.objects[-1].bbox == [90.0, float(scene.belt.top), 130.0, 40.0]


def test_jam_rate_and_taxonomy_labels() -> None:
    for seed in range(3):
        _, objs = render_scene(160, 120, seed, jam_rate=0.0)
        assert not any(o.jam_risk for o in objs)
        _, objs = render_scene(160, 120, seed, jam_rate=1.0)
        assert objs and all(o.jam_risk for o in objs)
        assert {o.label for o in objs} <= {"plastic film", "rope", "hose", "strap", "wire"}


def test_render_scene_deterministic_and_seed_dependent() -> None:
    a, oa = render_scene(160, 120, 11)
    b, ob = render_scene(160, 120, 11)
    c, _ = render_scene(160, 120, 12)
    assert np.array_equal(a, b) and oa == ob
    assert not np.array_equal(a, c)


def test_bad_conditions_raise() -> None:
    with pytest.raises(JamspotterError, match="unknown synth condition"):
        render_scene(160, 120, 0, fog=1.0)
    with pytest.raises(JamspotterError):
        render_scene(160, 120, 0, jam_rate=1.5)
    with pytest.raises(JamspotterError):
        render_scene(8, 8, 0)


def test_dataset_is_byte_identical_by_seed(tmp_path) -> None:
    a = generate_dataset(tmp_path / "a", 3, size=(96, 72), seed=5)
    generate_dataset(tmp_path / "b", 3, size=(96, 72), seed=5)
    generate_dataset(tmp_path / "c", 3, size=(96, 72), seed=6)
    read = lambda d, f: (tmp_path / d / f).read_bytes()  # noqa: E731
    assert read("a", "samples.jsonl") == read("b", "samples.jsonl") != read("c", "samples.jsonl")
    for s in a:
        assert read("a", s.image) == read("b", s.image) != read("c", s.image)
    assert read_samples(tmp_path / "a") == a
    assert a[0].image == "images/belt-000000.jpg" and (a[0].width, a[0].height) == (96, 72)


def test_clip_moves_with_the_belt_and_carries_speed(tmp_path) -> None:
    import av

    samples = generate_dataset(tmp_path, 0, size=(128, 96), seed=2, clips=1, seconds=1.0, fps=6)
    (clip,) = samples
    assert clip.video == "clips/clip-0000.mp4" and clip.fps == 6.0
    with av.open(str(tmp_path / clip.video)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == len(clip.frame_objects) == len(clip.target.values) == 6
    assert frames[0].shape == (96, 128, 3)
    speeds = [v[0] for v in clip.target.values]
    assert clip.target.kind == "belt_speed" and clip.target.names == ["belt_speed_m_s"]
    assert all(0.1 <= v <= 4.0 for v in speeds) and len(set(speeds)) > 1
    shifts = clip.meta["shift_px"]
    assert shifts[0] == 0 and all(b > a for a, b in zip(shifts, shifts[1:], strict=False))
    moved = 0
    for k in range(len(shifts) - 1):  # a fully visible, unoccluded item moves exactly with the belt
        now = {o.attributes["track_id"]: o for o in clip.frame_objects[k]}
        for o in clip.frame_objects[k + 1]:
            p = now.get(o.attributes["track_id"])
            if p and p.attributes["visible"] == o.attributes["visible"] == 1.0:
                assert o.bbox[0] - p.bbox[0] == shifts[k + 1] - shifts[k]
                assert o.bbox[1] == p.bbox[1]
                moved += 1
    assert moved > 0


def test_cli_writes_dataset_and_preview(tmp_path) -> None:
    from jamspotter.cli import app

    r = CliRunner().invoke(app, ["data", "synth", "--n", "4", "--size", "96x72", "--out", str(tmp_path),
                                 "--seed", "1", "--preview"])
    assert r.exit_code == 0, r.output
    assert len(read_samples(tmp_path)) == 4
    assert (tmp_path / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = CliRunner().invoke(app, ["data", "synth", "--n", "1", "--size", "640by480", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "error: --size: expected WIDTHxHEIGHT" in r.output
    assert not (tmp_path / "x" / "samples.jsonl").exists()


def test_belt_texture_moves_with_the_items() -> None:
    scene = build_scene(160, 120, 3, travel=700)  # texture loop is 320 px: shifts below wrap around it
    for shift, d in [(0, 37), (300, 200), (650, 50)]:
        before, after = scene.belt.window(shift), scene.belt.window(shift + d)
        assert np.array_equal(after[:, d:], before[:, :-d])
        assert scene.belt.to_image_x(10, shift + d) - scene.belt.to_image_x(10, shift) == d


def test_preview_draws_boxes(tmp_path) -> None:
    import cv2

    from jamspotter.synth import write_preview

    samples = generate_dataset(tmp_path, 2, size=(160, 120), seed=3, jam_rate=1.0)
    path = write_preview(samples, tmp_path, tmp_path / "p.png", cols=2, tile_width=160)
    sheet = cv2.imread(str(path))
    assert sheet.shape == (4 + 124, 4 + 2 * 164, 3)
    red = (sheet[..., 2] > 200) & (sheet[..., 1] < 80) & (sheet[..., 0] < 80)  # jam boxes are red
    assert red.sum() > 50


@pytest.mark.parametrize("size", [(64, 48), (32, 32)])
def test_tiny_frames_with_short_straps_and_curves_render(tmp_path, size):
    # regression: smoothing kernels longer than a short strap/curve changed the point count and crashed
    samples = generate_dataset(tmp_path, 12, size, seed=0, jam_rate=1.0)
    assert len(samples) == 12 and all(s.width == size[0] for s in samples)
