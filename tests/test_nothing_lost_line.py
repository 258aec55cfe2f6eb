"""Issue 11 on the line and edge side: stream logs that survive interrupts, bad frames logged and skipped,
the output policy for run/review/simulate/edge outputs, validated twin parameters, file modes."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from jamspotter.cli import app
from jamspotter.detections import Detections
from jamspotter.line.stream import Frame, StreamConfig, run_stream

runner = CliRunner()


def one_error_line(r, text: str) -> bool:
    lines = [x for x in r.output.splitlines() if x.strip()]
    return r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0]


def bomb_png(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A tiny PNG file whose header declares `width` x `height` pixels (CRC fixed, so readers trust it)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    struct.pack_into(">II", data, 16, width, height)  # IHDR data starts at byte 16
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


class Shade:
    """A fake model: a bright frame is rope (jam risk) with confidence = brightness; a dark one is paper."""

    def predict(self, frames):
        out = []
        for f in frames:
            v = float(f.mean() / 255)
            label, conf = ("rope", v) if v >= 0.5 else ("paper", 1 - v)
            out.append(Detections(label=label, confidence=conf, top=[(label, conf)], jam_risk=label == "rope"))
        return out


def frame(i: int, value: int) -> Frame:
    return Frame(i, i * 0.5, np.full((8, 8, 3), value, np.uint8), f"f{i}")


def lines(path: Path) -> list[dict]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "a line was left half-written"
    return [json.loads(x) for x in text.splitlines()]


@pytest.fixture(scope="module")
def edge_checkpoint(tmp_path_factory) -> Path:
    from jamspotter.edge.checkpoint import save_checkpoint
    from jamspotter.edge.models import build_model

    out = tmp_path_factory.mktemp("ckpt") / "ckpt"
    model = build_model("mobilenet_v3_small", 2, pretrained=False, image_size=32)
    save_checkpoint(model, {"arch": "mobilenet_v3_small", "classes": ["paper", "plastic film"], "image_size": 32,
                            "train_blocks": 3}, out)
    return out


def image_folder(root: Path, n: int, size: int = 16) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (size, size), (37 * i % 256, 90, 30)).save(root / f"{i}.png")
    return root


# -- finding 4: logs on disk after an interrupt, bad frames, review queue -------------------------------------

def test_ctrl_c_keeps_every_frame_logged_before_it(tmp_path):
    def belt():
        yield from (frame(0, 250), frame(1, 140), frame(2, 10))
        raise KeyboardInterrupt  # Ctrl-C while the source fetches frame 3

    with pytest.raises(KeyboardInterrupt):
        run_stream(belt(), Shade(), tmp_path / "o", StreamConfig(threshold=0.9, review_below=0.6), tmp_path / "q")
    rows = lines(tmp_path / "o" / "frames.jsonl")
    assert [r["frame"] for r in rows] == [0, 1, 2] and [r["alert"] for r in rows] == [True, False, False]
    assert len((tmp_path / "o" / "frames.csv").read_text().splitlines()) == 1 + 3
    assert (tmp_path / "o" / "alerts.log").read_text().startswith("ALERT frame 0")
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert (summary["frames"], summary["complete"], summary["stopped_by"]) == (3, False, "SIGINT")
    queue = lines(tmp_path / "q" / "samples.jsonl")  # frame 1 (rope 0.55) is unsure
    assert [q["id"] for q in queue] == ["review-000001"] and (tmp_path / "q" / queue[0]["image"]).is_file()


def test_sigterm_stops_cleanly_after_the_current_frame(tmp_path):
    from jamspotter.line.stream import stop_on_signals

    def belt():
        for i in range(6):
            if i == 2:
                os.kill(os.getpid(), signal.SIGTERM)  # e.g. the pod is being shut down
            yield frame(i, 10)

    with stop_on_signals() as stop:
        report = run_stream(belt(), Shade(), tmp_path / "o", stop=stop)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored
    assert (report["frames"], report["complete"], report["stopped_by"]) == (3, False, "SIGTERM")
    assert [r["frame"] for r in lines(tmp_path / "o" / "frames.jsonl")] == [0, 1, 2]
    assert json.loads((tmp_path / "o" / "summary.json").read_text()) == report


def test_unreadable_and_oversized_frames_are_logged_and_skipped(tmp_path, edge_checkpoint):
    folder = image_folder(tmp_path / "frames", 3)
    (folder / "1a.png").write_bytes(b"not a png at all")
    bomb_png(folder / "1b.png")
    r = runner.invoke(app, ["line", "run", "--source", "folder", "--input", str(folder), "--model",
                            str(edge_checkpoint), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    rows = lines(tmp_path / "o" / "frames.jsonl")
    assert [Path(x["source"]).name for x in rows] == ["0.png", "1.png", "1a.png", "1b.png", "2.png"]
    assert [x["frame"] for x in rows] == [0, 1, 2, 3, 4]
    assert "cannot read image" in rows[2]["error"] and "too large" in rows[3]["error"]
    assert all("error" not in x and x["label"] in ("paper", "plastic film") for x in rows[:2] + rows[4:])
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert (summary["frames"], summary["errors"], summary["complete"]) == (3, 2, True)
    assert "warning: frame 2 skipped" in r.output and "2 unreadable frame(s) skipped" in r.output


def test_only_bad_frames_is_one_error_line(tmp_path, edge_checkpoint):
    folder = tmp_path / "frames"
    folder.mkdir()
    bomb_png(folder / "0.png")
    r = runner.invoke(app, ["line", "run", "--source", "folder", "--input", str(folder), "--model",
                            str(edge_checkpoint), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and r.output.splitlines()[-1].startswith("error: no frame could be read")
    assert "too large" in lines(tmp_path / "o" / "frames.jsonl")[0]["error"]


def test_edge_predict_on_a_huge_png_is_one_line(tmp_path, edge_checkpoint):
    r = runner.invoke(app, ["edge", "predict", str(edge_checkpoint), str(bomb_png(tmp_path / "big.png"))])
    assert one_error_line(r, "big.png: image too large"), r.output


def test_reused_out_and_review_dir_need_overwrite(tmp_path, edge_checkpoint):
    folder = image_folder(tmp_path / "frames", 3)

    def run(out: str, review: str, *extra: str):
        return runner.invoke(app, ["line", "run", "--source", "folder", "--input", str(folder), "--model",
                                   str(edge_checkpoint), "--review-below", "1.0", "--out", str(tmp_path / out),
                                   "--review-dir", str(tmp_path / review), *extra])

    assert run("o1", "q").exit_code == 0
    queue = (tmp_path / "q" / "samples.jsonl").read_text()
    assert len(queue.splitlines()) == 3
    r = run("o2", "q")  # a new run must not replace the queue someone may be labelling
    assert one_error_line(r, "pass --overwrite"), r.output
    assert (tmp_path / "q" / "samples.jsonl").read_text() == queue and not (tmp_path / "o2").exists()
    assert one_error_line(run("o1", "q2"), "pass --overwrite") and not (tmp_path / "q2").exists()
    assert one_error_line(run("o3", "o3/q"), "own input") or one_error_line(run("o3", "o3/q"), "o3")
    (tmp_path / "q" / "images" / "added.png").write_bytes(b"x")  # a file someone put in the queue since
    assert one_error_line(run("o1", "q", "--overwrite"), "added.png")
    assert (tmp_path / "q" / "images" / "added.png").read_bytes() == b"x"
    (tmp_path / "q" / "images" / "added.png").unlink()
    r = run("o1", "q", "--overwrite")
    assert r.exit_code == 0, r.output
    assert len(lines(tmp_path / "q" / "samples.jsonl")) == 3
    foreign = tmp_path / "labelled"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep")
    assert one_error_line(run("o4", "labelled", "--overwrite"), "did not write")
    assert (foreign / "mine.txt").read_text() == "keep"


def test_a_cosmetic_parser_note_keeps_the_frame_score(tmp_path):
    from jamspotter.detections import Detections
    from jamspotter.formats import get_format
    from jamspotter.line.adapters import DetectorFrameModel

    fmt = get_format("qwen2.5-vl")
    answers = ['[{"bbox": [10, 10, 60, 60], "label": "rope"}]',  # 'bbox' instead of 'bbox_2d': a note only
               '[{"bbox_2d": [60, 60, 10, 10], "label": "rope"}]',  # corners swapped: fixed, nothing lost
               '[{"bbox_2d": [10, 10, 60, 60], "label": "paper"}, {"bbox_2d": [1, 2, 3',  # cut off: a rope lost?
               "I cannot tell what is on this belt"]  # nothing read

    class FakeDetector:
        def detect(self, images, batch_size=1):
            out = []
            for _ in images:
                boxes, problems = fmt.parse_detections(answers.pop(0), (100, 100))
                out.append(Detections(boxes, problems=problems))
            return out

    preds = DetectorFrameModel(FakeDetector()).predict([np.zeros((100, 100, 3), np.uint8)] * 4)
    assert [(p.label, p.confidence) for p in preds] == [("rope", 1.0), ("rope", 1.0), ("clear", 0.0), ("clear", 0.0)]


# -- finding 5: the digital twin's parameters -----------------------------------------------------------------

def test_partial_config_is_merged_over_the_packaged_defaults(tmp_path):
    from jamspotter.line.config import load_line_config

    p = tmp_path / "line.yaml"
    p.write_text("wraps_to_jam: 5\ndetector: {recall: 0.9}\n")
    cfg = load_line_config(p)
    assert [i.label for i in cfg.items] == ["plastic film", "rope", "hose", "strap", "wire"]  # configs/line.yaml
    assert (cfg.wraps_to_jam, cfg.screens, cfg.detector.recall, cfg.detector.precision) == (5, 3, 0.9, 0.7)
    r = runner.invoke(app, ["line", "simulate", "--config", str(p), "--hours", "160", "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "s" / "simulation.json").read_text())
    assert report["without_detector"]["jams"] > 0 and report["difference"]["cost_total"] < 0


@pytest.mark.parametrize(("text", "field"), [
    ("restart_min: 1.0e12\n", "restart_min"),
    ("belt_speed_mps: 1.0e-9\n", "belt_speed_mps"),
    ("clear_max_min: 25\n", "clear_max_min"),  # below the 30-minute median
    ("clear_min_min: 40\n", "clear_min_min"),  # above it
    ("screens: 2.7\n", "screens"),
    ("detector: {latency_s: .nan}\n", "latency_s"),
])
def test_absurd_line_values_are_refused(tmp_path, text, field):
    p = tmp_path / "line.yaml"
    p.write_text(text)
    r = runner.invoke(app, ["line", "simulate", "--config", str(p), "--out", str(tmp_path / "s")])
    assert one_error_line(r, field), r.output
    assert not (tmp_path / "s").exists()


def test_sweep_values_are_checked_before_any_run(tmp_path):
    out = tmp_path / "s"
    for spec, field in (("screens=2.7,2", "screens"), ("wraps_to_jam=5,0", "wraps_to_jam"),
                        ("restart_min=5,1e12", "restart_min"), ("tangler_scale=1,nan", "tangler_scale")):
        r = runner.invoke(app, ["line", "simulate", "--hours", "16", "--sweep", spec, "--out", str(out)])
        assert one_error_line(r, field), (spec, r.output)
        assert not out.exists()  # not even simulation.json
    r = runner.invoke(app, ["line", "simulate", "--hours", "16", "--sweep", "screens=2,4", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = json.loads((out / "screens_sweep.json").read_text())["rows"]
    assert [x["screens"] for x in rows] == [2, 4]
    assert rows[0]["baseline_jams_per_day"] != rows[1]["baseline_jams_per_day"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("args", "text"), [
    (["--hours", "inf"], "--hours"), (["--hours", "nan"], "--hours"), (["--hours", "1e300"], "--hours"),
    (["--seed", "-1"], "--seed"), (["--latency", "nan"], "--latency"), (["--replications", "0"], "--replications"),
])
def test_simulate_arguments_are_one_line_errors(tmp_path, args, text):
    r = runner.invoke(app, ["line", "simulate", *args, "--out", str(tmp_path / "s")])
    assert one_error_line(r, text), r.output
    assert not (tmp_path / "s").exists()


def test_simulate_output_follows_the_policy(tmp_path):
    out = tmp_path / "s"
    r = runner.invoke(app, ["line", "simulate", "--hours", "8", "--sweep-recall", "--out", str(out)])
    assert r.exit_code == 0 and (out / "recall_sweep.json").is_file()
    assert one_error_line(runner.invoke(app, ["line", "simulate", "--hours", "8", "--out", str(out)]), "--overwrite")
    assert runner.invoke(app, ["line", "simulate", "--hours", "8", "--out", str(out), "--overwrite"]).exit_code == 0
    # the earlier run's sweep is gone with it (no stale files); only what this run wrote is there
    assert not (out / "recall_sweep.json").exists() and (out / "simulation.json").is_file()


# -- output policy and file modes of the edge commands ---------------------------------------------------------

def test_edge_outputs_follow_the_policy(tmp_path):
    from jamspotter.edge.detector import EdgeBoxDetector

    EdgeBoxDetector(["paper", "rope"], image_size=64).save(tmp_path / "det")
    img = tmp_path / "a.png"
    Image.new("RGB", (40, 30), (120, 90, 30)).save(img)
    preds = tmp_path / "preds.jsonl"
    detect = ["edge", "detect", str(tmp_path / "det"), str(img), "--out", str(preds)]
    assert runner.invoke(app, detect).exit_code == 0
    first = preds.read_text()
    assert one_error_line(runner.invoke(app, detect), "pass --overwrite") and preds.read_text() == first
    assert runner.invoke(app, [*detect, "--overwrite"]).exit_code == 0
    assert one_error_line(runner.invoke(app, ["edge", "detect", str(tmp_path / "det"), str(img), "--out",
                                              str(tmp_path / "det" / "detector.json"), "--overwrite"]), "own input")
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "a.txt").write_text("keep")
    for cmd in (["edge", "train", "--data", str(tmp_path / "x"), "--out", str(foreign)],
                ["edge", "train-detector", "--data", str(tmp_path / "x"), "--out", str(foreign)]):
        assert one_error_line(runner.invoke(app, cmd), "did not write"), cmd
    assert (foreign / "a.txt").read_text() == "keep"
    assert one_error_line(runner.invoke(app, ["edge", "train", "--data", str(tmp_path / "x"), "--out",
                                              str(tmp_path / "new"), "--lr", "nan"]), "--lr")


@pytest.mark.parametrize(("option", "value"), [("--threshold", "nan"), ("--review-below", "nan"),
                                               ("--interval", "inf"), ("--cooldown", "nan")])
def test_line_run_numbers_are_checked(tmp_path, option, value):
    r = runner.invoke(app, ["line", "run", "--source", "synth", "--frames", "1", "--model", "none", option, value,
                            "--out", str(tmp_path / "o")])
    assert one_error_line(r, option), r.output
    assert not (tmp_path / "o").exists()


def test_line_and_edge_files_honour_the_umask(tmp_path, edge_checkpoint, umask_027):
    folder = image_folder(tmp_path / "frames", 2)
    r = runner.invoke(app, ["line", "run", "--source", "folder", "--input", str(folder), "--model",
                            str(edge_checkpoint), "--review-below", "1.0", "--review-dir", str(tmp_path / "q"),
                            "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["line", "simulate", "--hours", "8", "--sweep", "screens=2,3", "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["edge", "export", str(edge_checkpoint), "--out", str(tmp_path / "x")])
    assert r.exit_code == 0, r.output
    for out in ("o", "q", "s", "x"):
        assert modes(tmp_path / out) == {("dir", 0o750), ("file", 0o640)}, (out, modes(tmp_path / out))
    assert (tmp_path / "x" / "model.onnx").is_file() and (tmp_path / "q" / "images").is_dir()


def test_edge_export_beside_the_checkpoint_needs_overwrite_to_replace(tmp_path, edge_checkpoint):
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(edge_checkpoint, ckpt)
    assert runner.invoke(app, ["edge", "export", str(ckpt)]).exit_code == 0
    onnx = (ckpt / "model.onnx").read_bytes()
    assert one_error_line(runner.invoke(app, ["edge", "export", str(ckpt)]), "pass --overwrite")
    assert (ckpt / "model.onnx").read_bytes() == onnx
    r = runner.invoke(app, ["edge", "export", str(ckpt), "--overwrite"])
    assert r.exit_code == 0 and str(ckpt / "model.onnx") in r.output
    assert json.loads((ckpt / "export.json").read_text())["onnx"] == "model.onnx"


# -- property: a run killed at any moment leaves a consistent log ----------------------------------------------

@pytest.fixture(scope="module")
def kill_folder(tmp_path_factory) -> Path:
    folder = image_folder(tmp_path_factory.mktemp("kill") / "frames", 150)
    (folder / "7a.png").write_bytes(b"broken")  # one unreadable frame in the middle
    return folder


# `jamspotter line run` in a child process, with a fake VLM (a few ms a frame) in place of a real one, so the
# run starts in well under a second and no model weights are needed.
FAKE_RUN = """
import sys, time
import jamspotter.line.adapters as adapters
from jamspotter.detections import Detections

class Fake:
    def predict(self, frames):
        time.sleep(0.005)
        v = float(frames[0].mean()) / 255
        return [Detections(label="rope" if v > 0.25 else "paper", confidence=v, top=[("rope", v)], jam_risk=v > 0.25)]

adapters.load_vlm_frame_model = lambda name, **kw: Fake()
from jamspotter.cli import main
main()
"""


@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(delay=st.floats(0.0, 1.0), sig=st.sampled_from([signal.SIGINT, signal.SIGTERM, signal.SIGKILL]))
def test_a_killed_run_leaves_a_consistent_log(tmp_path_factory, kill_folder, delay, sig):
    work = tmp_path_factory.mktemp("run")
    out, queue = work / "o", work / "q"
    cmd = [sys.executable, "-c", FAKE_RUN, "line", "run", "--source", "folder", "--input", str(kill_folder),
           "--model", "fake-vlm", "--review-below", "0.3", "--review-dir", str(queue), "--interval", "0.1",
           "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = out / "frames.jsonl"
    deadline = time.monotonic() + 60
    while not (log.is_file() and log.stat().st_size) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    rows = lines(log)  # every line complete and valid JSON
    n = len(rows)
    assert n >= 1 and [r["frame"] for r in rows] == list(range(n))  # belt order, no duplicates, no gaps
    assert [r["time_s"] for r in rows] == [round(0.1 * i, 4) for i in range(n)]
    assert all(Path(r["source"]).name == "7a.png" for r in rows if "error" in r)
    csv_rows = len((out / "frames.csv").read_text().splitlines()) - 1
    queued = lines(queue / "samples.jsonl")
    assert all((queue / q["image"]).is_file() for q in queued)  # every listed image is there
    review_ids = [f"review-{r['frame']:06d}" for r in rows if r.get("review")]
    if sig == signal.SIGKILL and proc.returncode == -signal.SIGKILL:
        # killed between two writes at worst: the CSV trails the JSONL log, the queue leads it, by one frame
        assert csv_rows in (n, n - 1)
        assert [q["id"] for q in queued][:len(review_ids)] == review_ids and len(queued) <= len(review_ids) + 1
        return
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] + summary["errors"] == n == csv_rows  # the count equals what was processed
    assert [q["id"] for q in queued] == review_ids
    if summary["complete"]:  # the signal came after the last frame
        assert n == 151 and proc.returncode in (0, -sig, 128 + sig)
    else:
        assert proc.returncode == 128 + sig, err.decode()
        assert summary["stopped_by"] == signal.Signals(sig).name and b"Traceback" not in err


def test_a_qwen_folder_with_model_safetensors_runs_as_a_vlm(tmp_path, monkeypatch):
    import jamspotter.line.adapters as adapters

    vlm = tmp_path / "vlm"
    vlm.mkdir()
    (vlm / "config.json").write_text("{}")
    (vlm / "model.safetensors").write_bytes(b"")  # save_pretrained writes this name too
    loaded = []

    def fake(name: str, **kwargs):
        loaded.append(name)
        return Shade()

    monkeypatch.setattr(adapters, "load_vlm_frame_model", fake)
    r = runner.invoke(app, ["line", "run", "--source", "synth", "--frames", "1", "--model", str(vlm),
                            "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert loaded == [str(vlm)]
