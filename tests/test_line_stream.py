"""Stream runner: belt order, alerts with threshold and cooldown, review queue, sources, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from jamspotter.data.io import read_samples
from jamspotter.detections import Detections
from jamspotter.line.protocol import FrameModel
from jamspotter.line.stream import Frame, StreamConfig, clip_frames, folder_frames, run_stream


class RedIsRope:
    """A fake model: red frames are rope (jam risk), confidence = red share; others are paper."""

    def predict(self, frames):
        out = []
        for f in frames:
            red = float(f[..., 0].mean() / 255)
            label, conf = ("rope", red) if red >= 0.5 else ("paper", 1 - red)
            out.append(Detections(label=label, confidence=conf, top=[(label, conf)], jam_risk=label == "rope"))
        return out


def _frames(reds: list[int]) -> list[Frame]:
    return [Frame(i, i * 0.5, np.full((8, 8, 3), (r, 0, 0), np.uint8), f"f{i}", gt_jam=r >= 128)
            for i, r in enumerate(reds)]


def test_alerts_review_queue_and_logs(tmp_path):
    assert isinstance(RedIsRope(), FrameModel)
    reds = [0, 250, 240, 0, 140, 120, 255]  # rope at 1, 2, 4 (weak), 6
    alerts = []
    report = run_stream(iter(_frames(reds)), RedIsRope(), tmp_path / "out",
                        StreamConfig(threshold=0.9, review_below=0.6, cooldown_s=0.0), tmp_path / "review",
                        on_alert=alerts.append)
    assert report["frames"] == 7 and report["alerts"] == 3 and len(alerts) == 3
    assert all(a.startswith("ALERT frame") for a in alerts)
    assert report["ground_truth"]["alert_precision"] == 1.0 and report["ground_truth"]["alert_recall"] == 0.75
    rows = [json.loads(line) for line in (tmp_path / "out" / "frames.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in rows] == list(range(7))
    assert [r["alert"] for r in rows] == [False, True, True, False, False, False, True]
    with (tmp_path / "out" / "frames.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 7
    # frames 4 (rope 0.55) and 5 (paper 0.53) are unsure -> review queue with the model's guess
    queue = read_samples(tmp_path / "review")
    assert [s.id for s in queue] == ["review-000004", "review-000005"]
    assert queue[0].meta["predicted"] == "rope" and (tmp_path / "review" / queue[0].image).is_file()
    assert len((tmp_path / "out" / "alerts.log").read_text().splitlines()) == 3


def test_cooldown_merges_consecutive_alerts(tmp_path):
    report = run_stream(iter(_frames([255, 255, 255, 0, 255])), RedIsRope(), tmp_path,
                        StreamConfig(threshold=0.5, cooldown_s=1.0))
    assert report["jam_risk_frames"] == 4 and report["alerts"] == 2  # t=0 (0-1.0 s is one item) and t=2.0


def test_folder_order_is_natural(tmp_path):
    for i in (10, 2, 1):
        Image.new("RGB", (4, 4), (i, 0, 0)).save(tmp_path / f"frame{i}.png")
    frames = list(folder_frames(tmp_path, 0.25))
    assert [Path(f.source).name for f in frames] == ["frame1.png", "frame2.png", "frame10.png"]
    assert [f.time_s for f in frames] == [0.0, 0.25, 0.5]


def test_clip_frames_sampled_by_interval(tmp_path):
    from jamspotter.synth import write_mp4

    path = tmp_path / "belt.mp4"
    write_mp4(path, [np.full((32, 32, 3), i * 20, np.uint8) for i in range(10)], fps=10)
    frames = list(clip_frames(path, 0.3))
    assert [round(f.time_s, 1) for f in frames] == [0.0, 0.3, 0.6, 0.9]
    assert frames[0].image.shape == (32, 32, 3) and [f.index for f in frames] == [0, 1, 2, 3]


@pytest.fixture(scope="module")
def edge_checkpoint(tmp_path_factory) -> Path:
    from jamspotter.edge.checkpoint import save_checkpoint
    from jamspotter.edge.models import build_model

    out = tmp_path_factory.mktemp("ckpt")
    model = build_model("mobilenet_v3_small", 2, pretrained=False, image_size=32)
    save_checkpoint(model, {"arch": "mobilenet_v3_small", "classes": ["paper", "plastic film"], "image_size": 32,
                            "train_blocks": 3}, out)
    return out


def test_run_cli_on_folder_and_synth(tmp_path, edge_checkpoint):
    from jamspotter.cli import app

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (40, 30), (60 * i, 90, 30)).save(folder / f"{i}.jpg")
    runner = CliRunner()
    res = runner.invoke(app, ["line", "run", "--source", "folder", "--input", str(folder), "--model",
                              str(edge_checkpoint), "--threshold", "0.0", "--review-below", "1.0",
                              "--review-dir", str(tmp_path / "q"), "--out", str(tmp_path / "o1")])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "o1" / "summary.json").read_text())
    assert summary["frames"] == 4 and summary["review"] == 4 and len(read_samples(tmp_path / "q")) == 4
    # threshold 0: every "plastic film" top-1 frame is a jam-risk alert
    rows = [json.loads(x) for x in (tmp_path / "o1" / "frames.jsonl").read_text().splitlines()]
    assert summary["alerts"] == sum(r["label"] == "plastic film" for r in rows)

    res = runner.invoke(app, ["line", "run", "--source", "synth", "--frames", "2", "--model", str(edge_checkpoint),
                              "--out", str(tmp_path / "o2")])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "o2" / "summary.json").read_text())
    assert summary["frames"] == 2 and "ground_truth" in summary

    res = runner.invoke(app, ["line", "run", "--source", "folder", "--model", str(edge_checkpoint),
                              "--out", str(tmp_path / "o3")])
    assert res.exit_code == 2 and "needs --input" in res.output


def test_vlm_adapter_maps_detections_to_frame_predictions(tmp_path):
    from jamspotter.data.records import BoxObject
    from jamspotter.detections import Detections
    from jamspotter.line.adapters import CLEAR, DetectorFrameModel

    answers = [
        Detections([BoxObject(label="rope", bbox=[0, 0, 4, 4]), BoxObject(label="paper", bbox=[1, 1, 2, 2])]),
        Detections([BoxObject(label="paper", bbox=[1, 1, 2, 2])]),
        Detections([BoxObject(label="plastic bag", bbox=[0, 0, 3, 3], score=0.7)],
                   problems=["1 unclosed '{' (truncated output?): incomplete items dropped"]),
    ]

    class FakeDetector:
        def detect(self, images, batch_size=1):
            return [answers.pop(0) for _ in images]

    model = DetectorFrameModel(FakeDetector())
    assert isinstance(model, FrameModel)
    report = run_stream(iter(_frames([0, 0, 0])), model, tmp_path / "o", StreamConfig(threshold=0.5, review_below=0.5),
                        tmp_path / "q")
    rows = [json.loads(x) for x in (tmp_path / "o" / "frames.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == ["rope", CLEAR, "plastic bag"]
    assert [r["alert"] for r in rows] == [True, False, False]  # frame 2: answer cut off -> confidence 0
    assert len(rows[0]["detections"]) == 2 and report["review"] == 1


def test_box_detector_adapter_and_cli(tmp_path):
    from jamspotter.cli import app
    from jamspotter.data.records import BoxObject
    from jamspotter.edge.detector import EdgeBoxDetector
    from jamspotter.line.adapters import CLEAR, BoxDetectorFrameModel

    class FakeBoxes:
        def predict(self, images):
            return [[BoxObject(label="paper", bbox=[0, 0, 2, 2], score=0.9)],
                    [BoxObject(label="wire", bbox=[0, 0, 2, 2], score=0.6, jam_risk=True),
                     BoxObject(label="hose", bbox=[1, 1, 3, 3], score=0.8)]][: len(images)]

    preds = BoxDetectorFrameModel(FakeBoxes()).predict([np.zeros((4, 4, 3), np.uint8)] * 2)
    assert (preds[0].label, preds[0].jam_risk, preds[0].confidence) == (CLEAR, False, 1.0)
    assert (preds[1].label, preds[1].confidence, len(preds[1].objects)) == ("hose", 0.8, 2)
    assert preds[1].top == [("hose", 0.8), ("wire", 0.6)]

    EdgeBoxDetector(["paper", "rope"], image_size=64).save(tmp_path / "det")  # random init: any boxes will do
    res = CliRunner().invoke(app, ["line", "run", "--source", "synth", "--frames", "2", "--model",
                                   str(tmp_path / "det"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (tmp_path / "o" / "frames.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["label"] in (CLEAR, "rope") for r in rows)
