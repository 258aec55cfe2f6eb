"""The HTTP service against a real uvicorn server on 127.0.0.1 (a free port), with a model that really answers.

`tests/memorised.py` trains a tiny Qwen2.5-VL on one 112x112 scene; it always answers a rope box
[14, 20, 70, 44] and a cardboard box [40, 62, 100, 104] (pixels of the 112x112 input = original pixels).
Those hand-known boxes are the truth the answers are checked against. Slow detectors are stand-ins with
the Detector's `detect` signature, so the queue and the timeout can be driven deterministically.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import shutil
import struct
import threading
import time
import zlib
from pathlib import Path

import httpx
import pytest
from memorised import memorised_model
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from jamspotter.cli import app as cli_app
from jamspotter.data.records import BoxObject
from jamspotter.detections import Detections
from jamspotter.formats.contract import untrained_contract
from jamspotter.serve import ServeSettings, create_app, running_server

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROPE, CARDBOARD = [14.0, 20.0, 70.0, 44.0], [40.0, 62.0, 100.0, 104.0]
DETECTION_KEYS = {"label", "bbox", "jam_risk", "score", "reason"}
ANSWER_KEYS = {"detections", "width", "height", "model", "text", "problems"}


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int = 40000, height: int = 40000) -> bytes:
    """A few hundred bytes of PNG that claims width x height pixels (1 bit grey): a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
            + chunk(b"IEND", b""))


def assert_error(response: httpx.Response, status: int) -> str:
    """The response is `status` with the service's one error shape; returns the message."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    return body["error"]


def boxes(answer: dict) -> dict[str, list[float]]:
    return {d["label"]: [round(v, 3) for v in d["bbox"]] for d in answer["detections"]}


# ---- the real service, once per module --------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return memorised_model(tmp_path_factory, "qwen2.5-vl")


@pytest.fixture(scope="module")
def scene(model_dir: Path) -> bytes:
    return (model_dir.parents[1] / "scene" / "images" / "scene.png").read_bytes()


@pytest.fixture(scope="module")
def detector(model_dir: Path):
    from jamspotter.infer import Detector

    return Detector(model_dir, max_new_tokens=96)


@pytest.fixture(scope="module")
def service(model_dir: Path, detector):
    settings = ServeSettings(model=str(model_dir), token=TOKEN, max_body_bytes=200_000, max_image_pixels=1_000_000,
                             max_batch=8, max_wait_ms=20, max_queue=128, timeout_s=60, max_new_tokens=96,
                             max_crops=2)
    app = create_app(settings, detector=detector)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def test_detect_multipart_json_and_raw_answer_the_scene_boxes(service: httpx.Client, scene: bytes,
                                                               model_dir: Path) -> None:
    multipart = service.post("/v1/detect", files={"image": ("scene.png", scene, "image/png")}, headers=AUTH)
    as_json = service.post("/v1/detect", json={"image": base64.b64encode(scene).decode()}, headers=AUTH)
    raw = service.post("/v1/detect", content=scene, headers={**AUTH, "content-type": "image/png"})
    for response in (multipart, as_json, raw):
        assert response.status_code == 200, response.text
        answer = response.json()
        assert set(answer) == ANSWER_KEYS
        assert all(set(d) == DETECTION_KEYS for d in answer["detections"])
        assert boxes(answer) == {"rope": ROPE, "cardboard": CARDBOARD}
        jam = {d["label"]: d["jam_risk"] for d in answer["detections"]}
        assert jam == {"rope": True, "cardboard": False}
        assert (answer["width"], answer["height"]) == (112, 112)
        assert answer["model"] == str(model_dir) and '"bbox_2d": [14, 20, 70, 44]' in answer["text"]
        assert answer["problems"] == []
    # classes filter the answer (the question never changes); names the model does not know are refused
    only_rope = service.post("/v1/detect", json={"image": base64.b64encode(scene).decode(), "classes": ["rope"]},
                             headers=AUTH)
    assert boxes(only_rope.json()) == {"rope": ROPE}
    form = service.post("/v1/detect", files={"image": ("s.png", scene, "image/png")}, data={"classes": "cardboard"},
                        headers=AUTH)
    assert boxes(form.json()) == {"cardboard": CARDBOARD}
    unknown = service.post("/v1/detect", json={"image": base64.b64encode(scene).decode(), "classes": ["unicorn"]},
                           headers=AUTH)
    assert "unicorn" in assert_error(unknown, 400)


def test_bad_requests_are_json_errors_and_the_service_keeps_serving(service: httpx.Client, scene: bytes) -> None:
    def valid() -> None:
        ok = service.post("/v1/detect", files={"image": ("scene.png", scene, "image/png")}, headers=AUTH)
        assert ok.status_code == 200 and boxes(ok.json()) == {"rope": ROPE, "cardboard": CARDBOARD}

    big = png_bytes(Image.effect_noise((300, 300), 64).convert("RGB"))  # noise: over the 200 kB body limit
    assert len(big) > 200_000
    truncated = scene[: len(scene) // 2]
    too_many_pixels = png_bytes(Image.new("RGB", (1100, 1000), (9, 9, 9)))  # small file, 1.1 M pixels > 1 M

    def chunks():  # no Content-Length: the streamed size is what is checked
        for _ in range(30):
            yield b"\0" * 10_000

    cases = [
        (413, dict(files={"image": ("big.png", big, "image/png")})),
        (413, dict(content=chunks(), headers={"content-type": "image/png"})),
        (415, dict(files={"image": ("notes.txt", b"hello", "text/plain")})),
        (415, dict(content=b"hello", headers={"content-type": "text/plain"})),
        (400, dict(files={"image": ("fake.png", b"not an image at all", "image/png")})),
        (400, dict(files={"image": ("half.png", truncated, "image/png")})),
        (400, dict(json={"image": "%%% not base64 %%%"})),
        (400, dict(files={"picture": ("scene.png", scene, "image/png")})),
        (413, dict(files={"image": ("bomb.png", bomb_png(), "image/png")})),
        (413, dict(json={"image": base64.b64encode(bomb_png(9000, 9000)).decode()})),
        (413, dict(files={"image": ("wide.png", too_many_pixels, "image/png")})),
        (422, dict(json={"img": "x"})),
        (400, dict(content=b"{not json", headers={"content-type": "application/json"})),
    ]
    for status, kwargs in cases:
        headers = {**AUTH, **kwargs.pop("headers", {})}
        assert_error(service.post("/v1/detect", headers=headers, **kwargs), status)
        valid()
    # the token: missing, wrong, or in the query of a POST (only GETs may carry it there) -> 401 JSON
    for headers, params in (({}, {}), ({"Authorization": "Bearer wrong"}, {}), ({}, {"token": TOKEN}),
                            ({"Authorization": TOKEN}, {})):
        response = service.post("/v1/detect", files={"image": ("s.png", scene, "image/png")}, headers=headers,
                                params=params)
        assert_error(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
        valid()
    assert service.get("/v1/contract", params={"token": TOKEN}).status_code == 200  # GET: ?token= is accepted
    assert_error(service.get("/v1/contract", params={"token": "wrong"}), 401)
    assert_error(service.get("/v1/nothing-here", headers=AUTH), 404)
    assert_error(service.get("/v1/detect", headers=AUTH), 405)
    valid()


def test_fifty_concurrent_requests_are_all_answered_in_batches(service: httpx.Client, scene: bytes) -> None:
    before = _metric(service, "jamspotter_batch_size", "count")

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=str(service.base_url), timeout=60, headers=AUTH) as client:
            return await asyncio.gather(*(
                client.post("/v1/detect", files={"image": (f"{i}.png", scene, "image/png")}) for i in range(50)))

    start = time.monotonic()
    responses = asyncio.run(fire())
    assert time.monotonic() - start < 60
    assert [r.status_code for r in responses] == [200] * 50
    assert all(boxes(r.json()) == {"rope": ROPE, "cardboard": CARDBOARD} for r in responses)
    batches = _metric(service, "jamspotter_batch_size", "count") - before
    assert 1 <= batches < 50  # several images per model call
    text = service.get("/metrics").text
    assert _sample(text, "jamspotter_batch_size_bucket", le="1.0") < _sample(text, "jamspotter_batch_size_count")


def _sample(text: str, name: str, **labels: str) -> float:
    """A sample's value from Prometheus exposition text (parsed by prometheus_client's own parser)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"{name} {labels} not in /metrics")


def _metric(client: httpx.Client, name: str, part: str) -> float:
    return _sample(client.get("/metrics").text, f"{name}_{part}")


def test_health_ready_docs_and_metrics(service: httpx.Client, scene: bytes) -> None:
    service.post("/v1/detect", files={"image": ("scene.png", scene, "image/png")}, headers=AUTH)
    assert service.get("/healthz").json() == {"status": "ok"}  # no token needed
    ready = service.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    docs = service.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = service.get("/openapi.json").json()
    assert {"/v1/detect", "/v1/ask", "/v1/chat/completions", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    metrics = service.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert _sample(text, "jamspotter_requests_total", route="/v1/detect", status="200") >= 1
    assert _sample(text, "jamspotter_detections_total", label="rope", jam_risk="true") >= 1
    assert _sample(text, "jamspotter_queue_depth") == 0
    assert _sample(text, "jamspotter_model_ready") == 1
    assert _sample(text, "jamspotter_request_seconds_count", route="/v1/detect") >= 1


def test_chat_completions_takes_a_raw_openai_request(service: httpx.Client, scene: bytes, detector) -> None:
    uri = "data:image/png;base64," + base64.b64encode(scene).decode()
    request = {"model": "anything", "stream": False, "temperature": 0, "max_tokens": 96, "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri, "detail": "auto"}},
                                     {"type": "text", "text": detector.prompt}]}]}
    response = service.post("/v1/chat/completions", json=request, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "anything"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    text = choice["message"]["content"]
    items = json.loads(text.split("```json", 1)[1].split("```", 1)[0])
    assert {i["label"]: i["bbox_2d"] for i in items} == {"rope": [14, 20, 70, 44], "cardboard": [40, 62, 100, 104]}
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    for bad, status in ((dict(stream=True), 400), (dict(n=2), 400), (dict(max_tokens=10_000), 400),
                        (dict(messages=[{"role": "user", "content": [
                            {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]), 400),
                        (dict(messages=[]), 422)):
        assert_error(service.post("/v1/chat/completions", json={**request, **bad}, headers=AUTH), status)
    models = service.get("/v1/models", headers=AUTH).json()
    assert models["object"] == "list" and len(models["data"]) == 1


def test_ask_answers_as_the_detector_does(service: httpx.Client, scene: bytes, detector) -> None:
    import dataclasses

    question = "Is there anything on the belt that could wrap around a screen?"
    response = service.post("/v1/ask", json={"image": base64.b64encode(scene).decode(), "question": question,
                                              "max_crops": 1}, headers=AUTH)
    assert response.status_code == 200, response.text
    expected = dataclasses.asdict(detector.ask(Image.open(io.BytesIO(scene)).convert("RGB"), question, max_crops=1))
    assert response.json() == json.loads(json.dumps(expected))
    assert set(response.json()) == {"answer", "think", "crops", "crops_used", "text", "problems"}
    form = service.post("/v1/ask", files={"image": ("s.png", scene, "image/png")}, data={"question": question},
                        headers=AUTH)
    assert form.status_code == 200
    assert_error(service.post("/v1/ask", json={"image": base64.b64encode(scene).decode(), "question": question,
                                               "max_crops": 3}, headers=AUTH), 400)  # over the service's cap (2)
    # a region that is not a box is the request's fault: 400 naming it, and the service keeps serving
    bad = service.post("/v1/ask", json={"image": base64.b64encode(scene).decode(),
                                        "question": "Is <bbox>[1e400, 0, 5, 5]</bbox> a rope?"}, headers=AUTH)
    assert_error(bad, 400)
    assert "is not a box" in bad.json()["error"]
    assert service.post("/v1/ask", files={"image": ("s.png", scene, "image/png")}, data={"question": question},
                        headers=AUTH).status_code == 200


# ---- queue, timeout and loading, with stand-in detectors ---------------------------------------------
class SlowDetector:
    """`detect` that waits for `gate` (or `delay` seconds) and answers one rope box per image."""

    contract = untrained_contract("qwen2.5-vl", 3136, 12845056)

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.gate, self.calls = delay, threading.Event(), []

    def detect(self, images: list, batch_size: int = 4) -> list[Detections]:
        self.calls.append(len(images))
        if self.delay:
            time.sleep(self.delay)
        else:
            self.gate.wait(30)
        return [Detections([BoxObject(label="rope", bbox=[1, 2, 3, 4], jam_risk=True)], im.size, im.size, "", [])
                for im in images]


def test_full_queue_is_503_with_retry_after(scene: bytes) -> None:
    slow = SlowDetector(delay=0.6)
    app = create_app(ServeSettings(model="slow", max_queue=2, max_batch=1, max_wait_ms=0), detector=slow)
    with running_server(app) as url:
        async def fire() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                return await asyncio.gather(*(
                    client.post("/v1/detect", files={"image": ("s.png", scene, "image/png")}) for _ in range(8)))

        responses = asyncio.run(fire())
        codes = sorted(r.status_code for r in responses)
        assert 503 in codes and 200 in codes and set(codes) == {200, 503}, codes
        for r in responses:
            if r.status_code == 503:
                assert "busy" in assert_error(r, 503)
                assert int(r.headers["retry-after"]) >= 1
        assert httpx.post(f"{url}/v1/detect", files={"image": ("s.png", scene, "image/png")}, timeout=30).json()[
            "detections"][0]["label"] == "rope"


def test_slow_answer_is_504_and_the_service_keeps_serving(scene: bytes) -> None:
    slow = SlowDetector()
    app = create_app(ServeSettings(model="slow", timeout_s=0.3), detector=slow)
    with running_server(app) as url:
        assert "no answer within" in assert_error(
            httpx.post(f"{url}/v1/detect", files={"image": ("s.png", scene, "image/png")}, timeout=30), 504)
        slow.gate.set()
        ok = httpx.post(f"{url}/v1/detect", files={"image": ("s.png", scene, "image/png")}, timeout=30)
        assert ok.status_code == 200 and ok.json()["detections"][0]["bbox"] == [1, 2, 3, 4]


def test_an_image_the_model_refuses_fails_alone_and_its_batch_mates_are_answered(scene: bytes) -> None:
    from jamspotter.errors import DataError

    class Picky(SlowDetector):
        def detect(self, images: list, batch_size: int = 4) -> list[Detections]:
            self.calls.append(len(images))
            if any(im.width == 13 for im in images):
                raise DataError("cannot prepare images (13x13): refused")
            return super().detect(images, batch_size)

    picky = Picky(delay=0.05)
    app = create_app(ServeSettings(model="picky", max_batch=8, max_wait_ms=500), detector=picky)
    odd = png_bytes(Image.new("RGB", (13, 13)))
    with running_server(app) as url:
        async def fire() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                return await asyncio.gather(*(
                    client.post("/v1/detect", files={"image": ("i.png", odd if i == 1 else scene, "image/png")})
                    for i in range(4)))

        codes = [r.status_code for r in asyncio.run(fire())]
    assert codes == [200, 400, 200, 200]
    assert max(picky.calls) > 1 and picky.calls.count(1) >= 4  # batched first, then one by one


def test_a_model_that_fails_to_load_leaves_readyz_false_with_the_reason(tmp_path: Path, scene: bytes) -> None:
    app = create_app(ServeSettings(model=str(tmp_path / "no-such-model")))
    with running_server(app) as url:
        deadline = time.monotonic() + 30
        while app.state.load_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503 and ready.json()["ready"] is False
        assert "no-such-model" in ready.json()["error"]
        assert httpx.get(f"{url}/healthz").status_code == 200
        response = httpx.post(f"{url}/v1/detect", files={"image": ("s.png", scene, "image/png")})
        assert "model failed to load" in assert_error(response, 503)
        assert response.headers["retry-after"]


def test_the_server_stops_at_once_with_a_dashboard_page_open() -> None:
    """An open event stream (a dashboard tab) must not hold the exit until uvicorn's graceful timeout (5 s)."""
    app = create_app(ServeSettings(model="slow"), detector=SlowDetector(delay=0.01))
    opened = threading.Event()

    def listen(url: str) -> None:
        with contextlib.suppress(httpx.HTTPError), httpx.stream("GET", f"{url}/v1/stream/events", timeout=30) as r:
            opened.set()
            for _ in r.iter_lines():
                pass

    with running_server(app) as url:
        listener = threading.Thread(target=listen, args=(url,), daemon=True)
        listener.start()
        assert opened.wait(10)
        start = time.monotonic()
    assert time.monotonic() - start < 2.0
    listener.join(5)
    assert not listener.is_alive()


# ---- loading choices and the CLI ---------------------------------------------------------------------
def test_adapter_must_be_trained_on_the_model(tmp_path: Path, model_dir: Path) -> None:
    from jamspotter.errors import JamspotterError
    from jamspotter.serve.loader import weights_to_load

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(model_dir)}))
    assert weights_to_load(ServeSettings(model=str(model_dir), adapter=str(adapter))) == str(adapter)
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    with pytest.raises(JamspotterError, match="was trained on"):
        weights_to_load(ServeSettings(model=str(other), adapter=str(adapter)))
    with pytest.raises(JamspotterError, match="not a LoRA adapter folder"):
        weights_to_load(ServeSettings(model=str(model_dir), adapter=str(other)))


@pytest.mark.parametrize("args, message", [
    (["--model", "/no/such/model"], "no such folder"),
    (["--model", "MODEL", "--set", "nonsense=1"], "nonsense"),
    (["--model", "MODEL", "--max-batch", "0"], "--max-batch"),
    (["--model", "MODEL", "--log-level", "loud"], "--log-level"),
    (["--model", "MODEL", "--port", "PORT"], "cannot listen"),
])
def test_serve_cli_errors_are_one_line(args: list[str], message: str, model_dir: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = [str(model_dir) if a == "MODEL" else str(busy.getsockname()[1]) if a == "PORT" else a for a in args]
        result = CliRunner().invoke(cli_app, ["serve", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output


def test_serve_cli_stops_with_one_error_line_when_the_model_cannot_load(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    result = CliRunner().invoke(cli_app, ["serve", "--model", str(tmp_path), "--port", "0", "--log-level", "error"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if "error" in line.lower()]
    assert errors == ["error: cannot load the model: unsupported model_type 'llama'; jamspotter supports qwen2_vl, "
                      "qwen2_5_vl, qwen3_vl"], result.output


def test_loopback_addresses() -> None:
    from jamspotter.serve.server import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.3.2.1", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.10", "example.com"]))


def test_jamspotter_serve_command_serves_the_model(model_dir: Path, scene: bytes,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`jamspotter serve` as typed (token from JAMSPOTTER_TOKEN), in a thread; stopped as Ctrl-C would stop it."""
    import socket

    import jamspotter.serve.server as server_module

    servers = []
    make_server = server_module.make_server

    def keep(*args, **kwargs):
        servers.append(make_server(*args, **kwargs))
        return servers[-1]

    monkeypatch.setattr(server_module, "make_server", keep)
    monkeypatch.setenv("JAMSPOTTER_TOKEN", TOKEN)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = []
    thread = threading.Thread(target=lambda: results.append(CliRunner().invoke(cli_app, [
        "serve", "--model", str(model_dir), "--port", str(port), "--max-new-tokens", "96", "--log-level", "warning"])))
    thread.start()
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
        while time.monotonic() < deadline and thread.is_alive():
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert thread.is_alive(), results[0].output if results else ""
        assert_error(httpx.post(f"{url}/v1/detect", files={"image": ("s.png", scene, "image/png")}), 401)
        answer = httpx.post(f"{url}/v1/detect", files={"image": ("s.png", scene, "image/png")}, headers=AUTH,
                            timeout=60)
        assert answer.status_code == 200 and boxes(answer.json()) == {"rope": ROPE, "cardboard": CARDBOARD}
    finally:
        for server in servers:
            server.should_exit = True
        thread.join(30)
    assert results and results[0].exit_code == 0, results[0].output if results else "still running"
    assert f"serving on http://127.0.0.1:{port}" in results[0].output
