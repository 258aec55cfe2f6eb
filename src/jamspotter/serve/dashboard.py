"""Operator dashboard: the live belt with boxes drawn, jam-risk alerts kept in SQLite, acknowledge, counts per class.

`add_dashboard(app)` (called by `create_app`) mounts the page at `/` and its API under `/v1`; when
`settings.stream` names a source (a folder, a clip, `synth`, a camera) it runs the line's frame loop
(`jamspotter.line.stream.FrameLoop`, the same one `jamspotter line run` uses) in a background thread
for the life of the app. Each frame goes through the service's batcher, so the stream and API requests
share one model user; the loop's sinks here store alerts (`jamspotter.serve.alerts`) and publish the
latest frame. Frames are paced to their stream time (`stream_interval` apart); a model slower than
that makes the stream run behind, never skip.

Live view: server-sent events (`GET /v1/stream/events`). The flow is one-way (server to page), SSE is
plain HTTP (proxies, the service's body limits and metrics see ordinary requests), the browser's
EventSource reconnects by itself, and a GET can carry the bearer token as `?token=` where EventSource
cannot send headers. A websocket would add a second protocol for no return traffic; MJPEG would carry
pictures but not the detections, counts and alert changes that travel in the same events. A stream
ends by itself after `SSE_LIFETIME_S` (the page reconnects at once) so a stopping server never waits on
an open page for long.

Routes; all `/v1` routes want the service's bearer token when one is set (the page and its static
files hold no data and are open):
- `GET /` the page; `/dashboard/*` its script and style sheet
- `GET /v1/stream` stream status (source, running, frames, errors, last error, counts)
- `GET /v1/stream/events` SSE: `frame` (frame as a JPEG data URI, detections, counts), `status`
- `GET /v1/stream/frame.jpg` the latest frame with its boxes
- `GET /v1/counts?minutes=N` detections per class over the last N minutes
- `GET /v1/alerts?unacked=1&limit=50&before=ID`, `GET /v1/alerts/{id}`, `GET /v1/alerts/{id}/thumbnail.jpg`
- `POST /v1/alerts/{id}/ack`, `POST /v1/alerts/ack?up_to=ID` (all, or all up to the newest one seen)
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import io
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as FastPath
from fastapi.responses import FileResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from PIL import Image

from jamspotter.data.taxonomy import Taxonomy
from jamspotter.detections import Detections
from jamspotter.errors import JamspotterError
from jamspotter.line.adapters import DetectorFrameModel
from jamspotter.line.stream import Frame, FrameLoop, FrameResult, StopFlag, StreamConfig, open_source, run_frames
from jamspotter.serve.alerts import MAX_LIMIT, AlertStore

log = logging.getLogger("jamspotter.serve")
STATIC = Path(__file__).parent / "static"
SQLITE_MAX = 2**63 - 1  # the largest SQLite INTEGER: an alert id past it is a 422, not a crash
DEFAULT_DB = Path("jamspotter-alerts.db")  # with --stream and no --db: beside where the service was started
SSE_LIFETIME_S = 15.0  # an event stream ends after this; EventSource reconnects (after SSE_RETRY_MS)
SSE_RETRY_MS = 500
SSE_POLL_S = 0.1
STATUS_EVERY_S = 2.0
LIVE_SIDE = (640, 1280)  # the live frame's longer side is scaled into this range (small frames up, large down)
THUMB_SIDE = 320


# ---- drawing ------------------------------------------------------------------------------------------
def draw_frame(image: np.ndarray, det: Detections, taxonomy: Taxonomy,
               side: tuple[int, int] = LIVE_SIDE) -> Image.Image:
    """The frame scaled so its longer side lies in `side` (small frames up, so labels stay readable), with its
    boxes drawn by `jamspotter.infer.draw` (jam-causing items in the warning colour, on top)."""
    from jamspotter.infer.draw import draw_detections

    frame = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    longer = max(frame.size)
    scale = min(max(1.0, side[0] / longer), side[1] / longer) if longer else 1.0
    if scale != 1.0:
        frame = frame.resize((max(1, round(frame.width * scale)), max(1, round(frame.height * scale))),
                             Image.Resampling.BILINEAR)
    boxes = [b.model_copy(update={"bbox": [v * scale for v in b.bbox]}) for b in det.objects]
    return draw_detections(frame, boxes, taxonomy=taxonomy)


def jpeg(image: Image.Image, max_side: int | None = None, quality: int = 85) -> bytes:
    """JPEG bytes of `image`, shrunk to `max_side` when given; full-resolution colour (no chroma subsampling),
    so thin coloured box lines stay their colour."""
    if max_side is not None and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


# ---- the model, seen from the stream thread -------------------------------------------------------------
class BatcherDetector:
    """`detect(images, batch_size)` for the stream thread: each frame joins the service's batcher on the event
    loop, so stream frames and API requests share one model user. A full queue is retried until `stop`."""

    def __init__(self, batcher: Any, loop: asyncio.AbstractEventLoop, timeout_s: float, stop: StopFlag) -> None:
        self.batcher, self.loop, self.timeout_s, self.stop = batcher, loop, timeout_s, stop

    def detect(self, images: Iterable[np.ndarray], batch_size: int = 1) -> list[Detections]:
        from jamspotter.serve.batching import QueueFull

        results = []
        for image in images:
            pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
            while True:
                future = asyncio.run_coroutine_threadsafe(self.batcher.detect(pil), self.loop)
                try:
                    results.append(future.result(self.timeout_s))
                    break
                except QueueFull:
                    if self.stop.wait(0.25):
                        raise
                except concurrent.futures.TimeoutError:
                    future.cancel()
                    raise JamspotterError(f"the model gave no answer within {self.timeout_s:g} s") from None
        return results


def _paced(frames: Iterator[Frame], stop: StopFlag) -> Iterator[Frame]:
    """`frames` released at their stream times (`time_s` after the first), until `stop`."""
    start: float | None = None
    for fr in frames:
        if start is None:
            start = time.monotonic() - fr.time_s
        delay = start + fr.time_s - time.monotonic()
        if (delay > 0 and stop.wait(delay)) or stop:
            return
        yield fr


# ---- the dashboard's state --------------------------------------------------------------------------------
class Dashboard:
    """The stream, the alert store and what the page shows: latest frame, counts, status (thread-safe)."""

    def __init__(self, settings: Any, store: AlertStore | None, frames: Iterator[Frame] | None) -> None:
        self.settings = settings
        self.store = store
        self.frames = frames
        self.minutes = float(settings.alert_minutes)
        self.taxonomy = Taxonomy()
        self.stop = StopFlag()
        self._lock = threading.Lock()
        self._seen: deque[tuple[float, str, bool]] = deque()  # (unix time, label, jam) per box
        self.seq = 0  # bumped by every published frame
        self.alerts_version = 0  # bumped by every alert added or acknowledged through this service
        self.latest: dict | None = None  # the last frame event without its picture
        self.latest_jpeg: bytes | None = None
        self.state = {"source": settings.stream, "running": False, "ended": False, "frames": 0, "errors": 0,
                      "alerts": 0, "last_error": None, "started": None}
        self.thread: threading.Thread | None = None

    # -- the sink of the frame loop --
    def consume(self, r: FrameResult) -> None:
        """One frame's result: its alert (with thumbnail) into SQLite, then the frame with its boxes, its
        detections and the counts as the latest view."""
        now = time.time()
        if r.pred is None:
            with self._lock:
                self.state["errors"] += 1
                self.state["last_error"] = r.frame.error
            return
        drawn = draw_frame(r.frame.image, r.pred, self.taxonomy)
        alert_id = None
        if r.alert and self.store is not None:
            box = self._riskiest(r.pred)
            alert_id = self.store.add(
                r.pred.label or "?", confidence=r.pred.confidence, reason=box.reason if box else None,
                bbox=box.bbox if box else None, frame=r.frame.index, time_s=r.frame.time_s, source=r.frame.source,
                thumbnail=jpeg(drawn, THUMB_SIDE), when=now).id
        h, w = r.frame.image.shape[:2]
        jams = [self.taxonomy.is_jam(b) for b in r.pred.objects]  # the one jam rule, once per box
        event = {"frame": r.frame.index, "time": now, "time_s": r.frame.time_s, "source": r.frame.source,
                 "width": w, "height": h, "label": r.pred.label, "confidence": r.pred.confidence, "jam": r.jam,
                 "alert": r.alert, "alert_id": alert_id, "review": r.review, "latency_ms": round(r.latency_ms, 1),
                 "problems": list(r.pred.problems),
                 "detections": [{"label": b.label, "bbox": [round(v, 1) for v in b.bbox],
                                 "jam_risk": jam, "score": b.score, "reason": b.reason}
                                for b, jam in zip(r.pred.objects, jams, strict=True)]}
        picture = jpeg(drawn)
        with self._lock:
            self._seen.extend((now, b.label, jam) for b, jam in zip(r.pred.objects, jams, strict=True))
            self.state["frames"] += 1
            event["frames"] = self.state["frames"]
            self.latest, self.latest_jpeg = event, picture
            self.seq += 1
            if alert_id is not None:
                self.state["alerts"] += 1
                self.alerts_version += 1

    @staticmethod
    def _riskiest(pred: Detections) -> Any:
        boxes = [b for b in pred.objects if b.label == pred.label]
        return max(boxes, key=lambda b: b.score if b.score is not None else 1.0) if boxes else None

    # -- what the routes read --
    def counts(self, minutes: float | None = None) -> list[dict]:
        """Detections per class over the last `minutes` (default: the service's window), jam classes first."""
        window = (self.minutes if minutes is None else minutes) * 60.0
        now = time.time()
        with self._lock:
            while self._seen and self._seen[0][0] < now - self.minutes * 60.0:
                self._seen.popleft()  # older than the default window: nobody asks for them
            seen = [s for s in self._seen if s[0] >= now - window]
        totals: dict[str, list] = {}
        for _, label, jam in seen:
            entry = totals.setdefault(label, [0, jam])
            entry[0] += 1
        return [{"label": label, "count": n, "jam_risk": jam}
                for label, (n, jam) in sorted(totals.items(), key=lambda kv: (not kv[1][1], -kv[1][0], kv[0]))]

    def status(self) -> dict:
        """The stream's state, the counts and the number of open alerts."""
        with self._lock:
            state = dict(self.state)
            version = self.alerts_version
        return {**state, "interval": self.settings.stream_interval, "minutes": self.minutes,
                "counts": self.counts(), "unacked": self.store.unacked_count() if self.store else 0,
                "alerts_version": version}

    def frame_event(self) -> tuple[int, dict | None]:
        """(seq, the latest frame event with its picture as a data URI) or (seq, None) before the first frame."""
        with self._lock:
            seq, event, picture = self.seq, self.latest, self.latest_jpeg
        if event is None or picture is None:
            return seq, None
        return seq, {**event, "image": "data:image/jpeg;base64," + base64.b64encode(picture).decode("ascii")}

    def alerts_changed(self) -> None:
        with self._lock:
            self.alerts_version += 1

    # -- the stream thread --
    def start(self, app: FastAPI, loop: asyncio.AbstractEventLoop) -> None:
        """Run the frame loop in a daemon thread (when there is a stream)."""
        if self.frames is None:
            return
        with self._lock:
            self.state.update(running=True, started=time.time())
        self.thread = threading.Thread(target=self._run, args=(app, loop), name="jamspotter-stream", daemon=True)
        self.thread.start()

    async def close(self, join_s: float = 10.0) -> None:
        """Stop the frame loop after its current frame; the event loop keeps serving the batcher meanwhile."""
        self.stop.set("shutdown")
        if self.thread is not None:
            await asyncio.to_thread(self.thread.join, join_s)
            if self.thread.is_alive():
                log.warning("the stream thread did not stop within %g s; leaving it", join_s)

    def _run(self, app: FastAPI, loop: asyncio.AbstractEventLoop) -> None:
        try:
            detector = self._wait_for_model(app)
            if detector is None:
                return
            self.taxonomy = Taxonomy(getattr(getattr(detector, "contract", None), "taxonomy", None) or {})
            s = self.settings
            model = DetectorFrameModel(BatcherDetector(app.state.batcher, loop, s.timeout_s, self.stop), self.taxonomy)
            frame_loop = FrameLoop(model, StreamConfig(threshold=s.alert_threshold, cooldown_s=s.alert_cooldown))
            frames = _paced(self.frames, self.stop)
            while not self.stop:
                try:
                    run_frames(frames, frame_loop, [self.consume], self.stop)
                    break  # the source ran out, or stop
                except Exception as e:  # a frame the model (or the store) failed on: shown, then the next frame
                    if self.stop:
                        break
                    message = e.format_message() if isinstance(e, JamspotterError) else f"{type(e).__name__}: {e}"
                    log.warning("stream frame failed: %s", message)
                    with self._lock:
                        self.state["errors"] += 1
                        self.state["last_error"] = message
                    self.stop.wait(1.0)
            with self._lock:
                self.state["ended"] = not self.stop
        finally:
            with self._lock:
                self.state["running"] = False

    def _wait_for_model(self, app: FastAPI) -> Any:
        """The loaded detector, or None when loading failed or the app stops first."""
        while not app.state.ready.is_set():
            if app.state.load_error:
                with self._lock:
                    self.state["last_error"] = f"model failed to load: {app.state.load_error}"
                return None
            if self.stop.wait(0.2):
                return None
        return app.state.detector


# ---- mounting -------------------------------------------------------------------------------------------
def begin_shutdown(app: FastAPI) -> None:
    """Stop the stream after its current frame and end the open event streams at once. For the server's exit
    handler: uvicorn waits for open responses before it shuts the app down, and an open page's event stream
    would otherwise hold it until `SSE_LIFETIME_S` or the graceful-shutdown timeout."""
    dash = getattr(app.state, "dashboard", None)
    if dash is not None:
        dash.stop.set("shutdown")


def add_dashboard(app: FastAPI) -> None:
    """Mount the page and the dashboard API; open the alert database and the stream source now (a bad
    `--stream` or `--db` is a one-line JamspotterError before the server starts)."""
    settings = app.state.settings
    db = settings.db if settings.db is not None else (DEFAULT_DB if settings.stream else None)
    store = AlertStore(db) if db is not None else None
    frames = open_source(settings.stream, settings.stream_interval) if settings.stream else None
    dash = Dashboard(settings, store, frames)
    app.state.dashboard = dash

    @contextlib.asynccontextmanager
    async def run_stream(app: FastAPI) -> AsyncIterator[None]:
        dash.start(app, asyncio.get_running_loop())
        try:
            yield
        finally:
            await dash.close()

    app.state.lifespans.append(run_stream)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "dashboard.html", headers={"Cache-Control": "no-cache"})

    app.mount("/dashboard", StaticFiles(directory=STATIC), name="dashboard")
    api = APIRouter(prefix="/v1", dependencies=[Depends(app.state.require_token)], tags=["dashboard"])
    _add_stream_routes(api, dash)
    _add_alert_routes(api, dash)
    app.include_router(api)


def _add_stream_routes(api: APIRouter, dash: Dashboard) -> None:
    @api.get("/stream")
    async def stream_status() -> dict:
        """The stream's source and state, detections per class over the window, open alerts."""
        return await asyncio.to_thread(dash.status)

    @api.get("/stream/frame.jpg", responses={200: {"content": {"image/jpeg": {}}}})
    async def latest_frame() -> Response:
        """The latest frame with its boxes (404 before the first)."""
        picture = dash.latest_jpeg
        if picture is None:
            raise HTTPException(404, "no frame yet")
        return Response(picture, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @api.get("/counts")
    async def counts(minutes: float | None = Query(None, gt=0, le=1440)) -> dict:
        """Detections per class over the last `minutes` (default: the service's window)."""
        window = dash.minutes if minutes is None else min(minutes, dash.minutes)
        return {"minutes": window, "counts": dash.counts(window)}

    @api.get("/stream/events", response_class=EventSourceResponse)
    async def events(request: Request) -> AsyncIterator[ServerSentEvent]:
        """Server-sent events: `frame` for every new frame (picture as a data URI, detections, counts, open
        alerts), `status` every few seconds and whenever the alerts change."""
        sent_seq, sent_version, sent_status = -1, -1, 0.0
        ends = time.monotonic() + SSE_LIFETIME_S
        yield ServerSentEvent(comment="jamspotter dashboard", retry=SSE_RETRY_MS)
        while time.monotonic() < ends and not dash.stop and not await request.is_disconnected():
            seq, event = dash.frame_event()
            if event is not None and seq != sent_seq:
                sent_seq = seq
                yield ServerSentEvent(event="frame", id=str(seq), data={**event, "counts": dash.counts(),
                                                                        "alerts_version": dash.alerts_version})
            if dash.alerts_version != sent_version or time.monotonic() - sent_status >= STATUS_EVERY_S:
                status = await asyncio.to_thread(dash.status)
                sent_version, sent_status = status["alerts_version"], time.monotonic()
                yield ServerSentEvent(event="status", data=status)
            await asyncio.sleep(SSE_POLL_S)


def _store(dash: Dashboard) -> AlertStore:
    if dash.store is None:
        raise HTTPException(404, "no alert database (start the service with --stream or --db)")
    return dash.store


def _add_alert_routes(api: APIRouter, dash: Dashboard) -> None:
    @api.get("/alerts")
    async def alerts(unacked: bool = False, limit: int = Query(50, ge=1, le=MAX_LIMIT),
                     before: int | None = Query(None, ge=1, le=SQLITE_MAX)) -> dict:
        """Alerts newest first (only open ones with `unacked=1`; `before=ID` pages back), and how many are open."""
        if dash.store is None:
            return {"alerts": [], "unacked": 0}
        found, open_ = await asyncio.to_thread(
            lambda: (dash.store.alerts(unacked=unacked, limit=limit, before=before), dash.store.unacked_count()))
        return {"alerts": [_alert_json(a) for a in found], "unacked": open_}

    @api.get("/alerts/{alert_id}")
    async def alert(alert_id: int = FastPath(ge=1, le=SQLITE_MAX)) -> dict:
        """One alert (404 when there is none)."""
        found = await asyncio.to_thread(_store(dash).get, alert_id)
        if found is None:
            raise HTTPException(404, f"no alert {alert_id}")
        return _alert_json(found)

    @api.get("/alerts/{alert_id}/thumbnail.jpg", responses={200: {"content": {"image/jpeg": {}}}})
    async def thumbnail(alert_id: int = FastPath(ge=1, le=SQLITE_MAX)) -> Response:
        """The alert's frame with its boxes, small (JPEG)."""
        data = await asyncio.to_thread(_store(dash).thumbnail, alert_id)
        if data is None:
            raise HTTPException(404, f"no thumbnail for alert {alert_id}")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    @api.post("/alerts/ack")
    async def ack_all(up_to: int | None = Query(None, ge=1, le=SQLITE_MAX)) -> dict:
        """Acknowledge every open alert (only those with id <= `up_to` when given); says how many."""
        n = await asyncio.to_thread(_store(dash).ack_all, up_to)
        dash.alerts_changed()
        return {"acked": n}

    @api.post("/alerts/{alert_id}/ack")
    async def ack(alert_id: int = FastPath(ge=1, le=SQLITE_MAX)) -> dict:
        """Acknowledge one alert; answers the alert (404 when there is none)."""
        found = await asyncio.to_thread(_store(dash).ack, alert_id)
        if found is None:
            raise HTTPException(404, f"no alert {alert_id}")
        dash.alerts_changed()
        return _alert_json(found)


def _alert_json(alert: Any) -> dict:
    out = alert.as_dict()
    out["thumbnail"] = f"/v1/alerts/{alert.id}/thumbnail.jpg" if alert.has_thumbnail else None
    return out
