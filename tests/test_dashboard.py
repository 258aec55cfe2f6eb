"""Operator dashboard: one frame loop for `line run` and the dashboard, stream sources, the alert API and its
auth, the live frame with boxes, server-sent events from a real server, restart keeps alerts."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from jamspotter.data.records import BoxObject
from jamspotter.detections import Detections
from jamspotter.errors import DataError, JamspotterError
from jamspotter.line.adapters import DetectorFrameModel
from jamspotter.line.stream import (
    Frame,
    FrameLoop,
    StreamConfig,
    folder_frames,
    open_source,
    run_frames,
    run_stream,
    webcam_frames,
)
from jamspotter.serve.alerts import AlertStore
from jamspotter.serve.app import create_app
from jamspotter.serve.server import running_server
from jamspotter.serve.settings import ServeSettings

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GREY, RED = (70, 70, 70), (230, 30, 30)


class RedIsRope:
    """A stand-in Detector: one `rope` box around the red pixels of each image (none without), fails on demand."""

    contract = None

    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.calls = 0
        self.fail_on = fail_on or set()

    def detect(self, images: list[Any], batch_size: int = 1) -> list[Detections]:
        out = []
        for im in images:
            self.calls += 1
            if self.calls in self.fail_on:
                raise RuntimeError("GPU fell off the bus")
            a = np.asarray(im)
            ys, xs = np.nonzero((a[..., 0] > 200) & (a[..., 1] < 100))
            boxes = [BoxObject(label="rope", bbox=[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1],
                               reason="long and thin")] if len(xs) else []
            out.append(Detections(boxes, image_size=(a.shape[1], a.shape[0])))
        return out


def belt_image(rope: tuple[int, int, int, int] | None, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """Grey frame, with a red rectangle [x1, y1, x2, y2) when `rope` is given."""
    a = np.full((size[1], size[0], 3), GREY, np.uint8)
    if rope is not None:
        x1, y1, x2, y2 = rope
        a[y1:y2, x1:x2] = RED
    return Image.fromarray(a)


ROPE = (10, 8, 40, 20)
PATTERN = [None, ROPE, ROPE, None, ROPE]  # frames 1, 2 and 4 hold a rope


def belt_folder(root: Path, pattern: list = PATTERN) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, rope in enumerate(pattern):
        belt_image(rope).save(root / f"frame{i}.png")
    return root


def settings(tmp_path: Path, **kw: Any) -> ServeSettings:
    base = {"model": "stand-in", "token": TOKEN, "db": tmp_path / "alerts.db", "stream_interval": 0.01,
            "alert_cooldown": 0.0}
    return ServeSettings(**{**base, **kw})


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def stream_done(client: TestClient) -> dict:
    return wait_for(lambda: (s := client.get("/v1/stream", headers=AUTH).json())["ended"] and s,
                    what="the stream to end")


# ---- one frame loop ----------------------------------------------------------------------------------------
def test_line_run_and_dashboard_alert_on_the_same_frames(tmp_path: Path) -> None:
    """The file runner and the dashboard are sinks of one FrameLoop: same frames, same alerts (hand-counted)."""
    folder = belt_folder(tmp_path / "belt")
    cfg = StreamConfig(threshold=0.5, cooldown_s=0.015)  # frames 10 ms apart: frame 2 is frame 1's rope again
    report = run_stream(folder_frames(folder, 0.01), DetectorFrameModel(RedIsRope()), tmp_path / "run", cfg)
    logged = [json.loads(x) for x in (tmp_path / "run" / "frames.jsonl").read_text().splitlines()]
    assert [r["alert"] for r in logged] == [False, True, False, False, True] and report["alerts"] == 2

    app = create_app(settings(tmp_path, stream=str(folder), alert_cooldown=0.015), detector=RedIsRope())
    with TestClient(app) as client:
        stream_done(client)
        alerts = client.get("/v1/alerts", headers=AUTH).json()["alerts"]
    assert [a["frame"] for a in alerts] == [4, 1]  # newest first
    assert all(a["label"] == "rope" and a["reason"] == "long and thin" for a in alerts)
    assert alerts[0]["bbox"] == [10.0, 8.0, 40.0, 20.0]


def test_frame_loop_sinks_see_every_frame_and_stop_ends_after_the_current_one() -> None:
    from jamspotter.line.stream import StopFlag

    frames = [Frame(i, i * 1.0, np.asarray(belt_image(ROPE if i % 2 else None)), f"f{i}") for i in range(6)]
    frames.insert(2, Frame(9, 1.5, None, "bad", error="cannot read"))
    seen: list = []
    stop = StopFlag()

    def sink(r: Any) -> None:
        seen.append((r.frame.index, r.pred is not None and r.alert))
        if r.frame.index == 3:
            stop.set("test")

    done = run_frames(iter(frames), FrameLoop(DetectorFrameModel(RedIsRope()), StreamConfig(cooldown_s=1.5)),
                      [sink], stop)
    # rope at t=1 alerts, t=3 is 2 s later: alerts again; the unreadable frame passes with no prediction
    assert not done and seen == [(0, False), (1, True), (9, False), (2, False), (3, True)]


# ---- sources ------------------------------------------------------------------------------------------------
def test_open_source_reads_each_kind_and_refuses_bad_ones(tmp_path: Path) -> None:
    from jamspotter.synth import write_mp4

    folder = belt_folder(tmp_path / "belt")
    assert [f.source.rsplit("/", 1)[-1] for f in open_source(str(folder), 0.5)] == [f"frame{i}.png" for i in range(5)]
    clip = tmp_path / "belt.mp4"
    write_mp4(clip, [np.full((32, 32, 3), 20 * i, np.uint8) for i in range(6)], fps=10)
    assert len(list(open_source(str(clip), 0.0))) == 6
    synth = open_source("synth", 0.5)
    first = [next(synth) for _ in range(3)]
    assert [f.time_s for f in first] == [0.0, 0.5, 1.0] and first[0].image.shape == (480, 640, 3)
    (tmp_path / "empty").mkdir()
    for spec, message in [("nowhere", "not a folder, a clip"), (str(tmp_path / "empty"), "no images"),
                          ("webcam:", "name the camera"), ("webcam:/dev/video99", "cannot open camera")]:
        with pytest.raises(DataError, match=message):
            open_source(spec, 0.5)


def test_webcam_source_reads_through_opencv(tmp_path: Path) -> None:
    """OpenCV opens a file like a camera: every frame comes, in order, as RGB, and the source ends at its end."""
    from jamspotter.synth import write_mp4

    clip = tmp_path / "cam.mp4"
    colours = [(200, 20, 20), (20, 200, 20), (20, 20, 200)]
    write_mp4(clip, [np.full((32, 32, 3), c, np.uint8) for c in colours], fps=10)
    frames = list(webcam_frames(str(clip), 0.0))
    assert [f.index for f in frames] == [0, 1, 2]
    means = [tuple(int(v) for v in f.image.reshape(-1, 3).mean(0)) for f in frames]
    for got, want in zip(means, colours, strict=True):  # RGB, not OpenCV's BGR (codec error allowed)
        assert all(abs(g - w) < 25 for g, w in zip(got, want, strict=True)), (got, want)


def test_line_run_reads_a_webcam_source(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from jamspotter.cli import app
    from jamspotter.edge.checkpoint import save_checkpoint
    from jamspotter.edge.models import build_model
    from jamspotter.synth import write_mp4

    model = tmp_path / "ckpt"
    save_checkpoint(build_model("mobilenet_v3_small", 2, pretrained=False, image_size=32),
                    {"arch": "mobilenet_v3_small", "classes": ["paper", "plastic film"], "image_size": 32,
                     "train_blocks": 3}, model)
    runner = CliRunner()
    r = runner.invoke(app, ["line", "run", "--source", "webcam", "--input", "/dev/video99", "--model", str(model),
                            "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and r.output.strip().splitlines()[-1].startswith("error: /dev/video99: cannot open camera")
    assert not (tmp_path / "o").exists()
    clip = tmp_path / "cam.mp4"  # OpenCV opens a file like a camera
    write_mp4(clip, [np.full((32, 32, 3), 30 * i, np.uint8) for i in range(4)], fps=10)
    r = runner.invoke(app, ["line", "run", "--source", "webcam", "--input", str(clip), "--interval", "0",
                            "--model", str(model), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "o" / "frames.jsonl").read_text().splitlines()]
    assert [x["source"] for x in rows] == [f"webcam:{clip}#{i}" for i in range(4)]


def test_bad_stream_or_db_fails_before_the_server_starts(tmp_path: Path) -> None:
    with pytest.raises(JamspotterError, match="not a folder, a clip"):
        create_app(settings(tmp_path, stream=str(tmp_path / "missing")), detector=RedIsRope())
    model = tmp_path / "weights.bin"
    model.write_bytes(b"\0" * 64)
    with pytest.raises(JamspotterError, match="weights.bin"):
        create_app(settings(tmp_path, stream="synth", db=model), detector=RedIsRope())
    assert model.read_bytes() == b"\0" * 64


# ---- routes --------------------------------------------------------------------------------------------------
def test_alert_routes_ack_and_auth(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path, stream=str(belt_folder(tmp_path / "belt"))), detector=RedIsRope())
    with TestClient(app) as client:
        status = stream_done(client)
        assert (status["frames"], status["alerts"], status["unacked"], status["errors"]) == (5, 3, 3, 0)
        assert status["counts"] == [{"label": "rope", "count": 3, "jam_risk": True}]

        # auth: header or ?token= on GET; nothing without; ?token= is not enough for a POST
        for path in ("/v1/alerts", "/v1/stream", "/v1/counts", "/v1/stream/frame.jpg", "/v1/alerts/1/thumbnail.jpg"):
            r = client.get(path)
            assert r.status_code == 401 and r.json() == {"error": "missing bearer token"}, path
            assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
            assert client.get(path, params={"token": TOKEN}).status_code == 200, path
        assert client.post("/v1/alerts/1/ack", params={"token": TOKEN}).status_code == 401
        assert client.post("/v1/alerts/ack").status_code == 401
        page = client.get("/")  # the page and its files hold no data: open
        assert page.status_code == 200 and "dashboard/dashboard.js" in page.text
        assert client.get("/dashboard/dashboard.js").status_code == 200
        assert client.get("/dashboard/dashboard.css").status_code == 200

        alerts = client.get("/v1/alerts", headers=AUTH).json()
        assert alerts["unacked"] == 3 and [a["frame"] for a in alerts["alerts"]] == [4, 2, 1]
        first = alerts["alerts"][-1]
        assert first["thumbnail"] == f"/v1/alerts/{first['id']}/thumbnail.jpg" and not first["acked"]
        thumb = Image.open(io.BytesIO(client.get(first["thumbnail"], headers=AUTH).content))
        assert thumb.format == "JPEG" and max(thumb.size) <= 320

        r = client.post(f"/v1/alerts/{first['id']}/ack", headers=AUTH)
        assert r.status_code == 200 and r.json()["acked"] and r.json()["id"] == first["id"]
        assert client.post("/v1/alerts/999/ack", headers=AUTH).json() == {"error": "no alert 999"}
        assert client.get("/v1/alerts/999", headers=AUTH).status_code == 404
        assert [a["frame"] for a in client.get("/v1/alerts?unacked=1", headers=AUTH).json()["alerts"]] == [4, 2]
        assert client.get("/v1/alerts?limit=1", headers=AUTH).json()["alerts"][0]["frame"] == 4
        assert client.get("/v1/alerts?limit=0", headers=AUTH).status_code == 422
        huge = 10**23  # past SQLite's INTEGER: a validation error, not a 500 from the database driver
        for r in (client.post(f"/v1/alerts/{huge}/ack", headers=AUTH), client.get(f"/v1/alerts/{huge}", headers=AUTH),
                  client.get(f"/v1/alerts/{huge}/thumbnail.jpg", headers=AUTH),
                  client.post(f"/v1/alerts/ack?up_to={huge}", headers=AUTH)):
            assert r.status_code == 422 and "error" in r.json()

        middle = alerts["alerts"][1]["id"]
        assert client.post(f"/v1/alerts/ack?up_to={middle}", headers=AUTH).json() == {"acked": 1}
        assert client.post("/v1/alerts/ack", headers=AUTH).json() == {"acked": 1}
        assert client.get("/v1/alerts?unacked=1", headers=AUTH).json() == {"alerts": [], "unacked": 0}
        assert client.get("/v1/counts?minutes=5", headers=AUTH).json()["counts"][0]["count"] == 3


def test_live_frame_shows_the_rope_box_in_the_warning_colour(tmp_path: Path) -> None:
    from jamspotter.infer.draw import JAM_COLOR
    from jamspotter.serve.dashboard import LIVE_SIDE

    app = create_app(settings(tmp_path, stream=str(belt_folder(tmp_path / "belt", [ROPE]))), detector=RedIsRope())
    with TestClient(app) as client:
        stream_done(client)
        frame = np.asarray(Image.open(io.BytesIO(client.get("/v1/stream/frame.jpg", headers=AUTH).content)))
    scale = LIVE_SIDE[0] / 64  # a small frame is scaled up to the live view's smallest side
    assert frame.shape[:2] == (round(48 * scale), round(64 * scale))
    x1, y1, x2, y2 = (round(v * scale) for v in ROPE)
    ymid = (y1 + y2) // 2
    assert np.abs(frame[ymid, x1].astype(int) - JAM_COLOR).max() < 40  # the box's left edge
    assert np.abs(frame[ymid, x1 - 8].astype(int) - GREY).max() < 20  # belt just outside it
    assert np.abs(frame[ymid, (x1 + x2) // 2].astype(int) - RED).max() < 40  # the rope inside, not painted over


def test_a_model_failure_is_shown_and_the_stream_goes_on(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path, stream=str(belt_folder(tmp_path / "belt"))),
                     detector=RedIsRope(fail_on={2}))
    with TestClient(app) as client:
        status = stream_done(client)
    assert status["frames"] == 4 and status["errors"] == 1 and "GPU fell off the bus" in status["last_error"]


def test_a_restart_keeps_unacknowledged_alerts(tmp_path: Path) -> None:
    s = settings(tmp_path, stream=str(belt_folder(tmp_path / "belt")))
    with TestClient(create_app(s, detector=RedIsRope())) as client:
        stream_done(client)
        client.post("/v1/alerts/1/ack", headers=AUTH)
    after = settings(tmp_path, stream=None)  # the same --db, no stream: the alerts are still there
    with TestClient(create_app(after, detector=RedIsRope())) as client:
        body = client.get("/v1/alerts?unacked=1", headers=AUTH).json()
        status = client.get("/v1/stream", headers=AUTH).json()
    assert body["unacked"] == 2 and [a["frame"] for a in body["alerts"]] == [4, 2]
    assert (status["running"], status["frames"], status["source"]) == (False, 0, None)
    assert [a.acked for a in AlertStore(tmp_path / "alerts.db").alerts()] == [False, False, True]


def test_no_stream_and_no_db_means_no_alerts_and_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with TestClient(create_app(settings(tmp_path, db=None, token=None), detector=RedIsRope())) as client:
        assert client.get("/v1/alerts").json() == {"alerts": [], "unacked": 0}
        assert client.post("/v1/alerts/1/ack").status_code == 404
    assert list(tmp_path.iterdir()) == []


def test_shutdown_stops_an_endless_stream(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path, stream="synth", stream_interval=0.0), detector=RedIsRope())
    with TestClient(app) as client:
        wait_for(lambda: client.get("/v1/stream", headers=AUTH).json()["frames"] >= 2, what="two frames")
    thread = app.state.dashboard.thread
    assert thread is not None and not thread.is_alive()


# ---- a real server: server-sent events ---------------------------------------------------------------------
def read_event(lines: Iterator[str], name: str) -> dict:
    """The data of the next SSE event called `name` in a stream's `lines`."""
    event = None
    for line in lines:
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and event == name:
            return json.loads(line.split(":", 1)[1])
        elif not line:
            event = None
    raise AssertionError(f"no {name} event")


def test_server_sent_events_carry_the_frame_with_its_boxes(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path, stream=str(belt_folder(tmp_path / "belt", [ROPE]))), detector=RedIsRope())
    with running_server(app) as url, httpx.Client(base_url=url, timeout=20) as http:
        with http.stream("GET", "/v1/stream/events") as r:
            assert r.status_code == 401
        with http.stream("GET", "/v1/stream/events", params={"token": TOKEN}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            frame = read_event(r.iter_lines(), "frame")
    assert frame["detections"] == [{"label": "rope", "bbox": [10.0, 8.0, 40.0, 20.0], "jam_risk": True,
                                    "score": None, "reason": "long and thin"}]
    assert (frame["frame"], frame["jam"], frame["alert"], frame["alert_id"]) == (0, True, True, 1)
    assert frame["counts"] == [{"label": "rope", "count": 1, "jam_risk": True}]
    assert frame["image"].startswith("data:image/jpeg;base64,")


def test_begin_shutdown_ends_open_event_streams_at_once(tmp_path: Path) -> None:
    from jamspotter.serve.dashboard import SSE_LIFETIME_S, begin_shutdown

    app = create_app(settings(tmp_path, stream="synth", stream_interval=0.2, token=None), detector=RedIsRope())
    with running_server(app) as url, httpx.Client(base_url=url, timeout=20) as http:
        with http.stream("GET", "/v1/stream/events") as r:
            lines = r.iter_lines()
            read_event(lines, "frame")
            t0 = time.monotonic()
            begin_shutdown(app)
            for _ in lines:  # drains what was sent, then the stream ends
                pass
            assert time.monotonic() - t0 < min(2.0, SSE_LIFETIME_S)
        thread = app.state.dashboard.thread
        thread.join(10)
        assert not thread.is_alive() and not app.state.dashboard.status()["ended"]  # stopped, not run out
