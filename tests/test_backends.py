"""The OpenAI-compatible backend against a real `jamspotter serve` app on 127.0.0.1: same detections as in process.

Models: the memorised tiny Qwen2.5-VL and Qwen3-VL (tests/memorised.py: they always answer a rope box
[14, 20, 70, 44] and a cardboard box [40, 62, 100, 104] on the 112x112 scene), and a random tiny Qwen2-VL
that the service builds itself from `tiny:qwen2-vl` (its noise text must come back byte for byte).
A vLLM-like server (no run contract) is a small stand-in app that answers fixed text.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from memorised import memorised_model
from PIL import Image
from typer.testing import CliRunner

from jamspotter.cli import app as cli_app
from jamspotter.errors import JamspotterError
from jamspotter.infer.backends import OpenAIBackend, load_backend
from jamspotter.serve import ServeSettings, create_app, running_server

TOKEN = "backend-token"
ROPE, CARDBOARD = [14.0, 20.0, 70.0, 44.0], [40.0, 62.0, 100.0, 104.0]


def scene_of(model_dir: Path) -> Path:
    return model_dir.parents[1] / "scene" / "images" / "scene.png"


def same(local: list, remote: list) -> None:
    """Two lists of Detections agree on everything a detector reports."""
    assert len(local) == len(remote)
    for a, b in zip(local, remote, strict=True):
        assert (a.objects, a.text, a.problems, a.image_size, a.input_size) == \
               (b.objects, b.text, b.problems, b.image_size, b.input_size)


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
def test_openai_backend_returns_the_detectors_detections(family: str,
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    from jamspotter.infer import Detector

    model_dir = memorised_model(tmp_path_factory, family)
    detector = Detector(model_dir, max_new_tokens=96)
    scene = scene_of(model_dir)
    # the scene as a file, stretched (another input size: Qwen2.5-VL pixels must be rescaled), and grey
    images = [scene, Image.open(scene).convert("RGB").resize((200, 150)), Image.new("RGB", (90, 120), (70, 70, 70))]
    local = detector.detect(images, batch_size=3)
    app = create_app(ServeSettings(model=str(model_dir), token=TOKEN, max_new_tokens=96), detector=detector)
    with running_server(app) as url:
        backend = OpenAIBackend(url + "/v1", api_key=TOKEN, max_new_tokens=96)
        assert backend.family == family and backend.contract == detector.contract
        assert backend.prompt == detector.prompt and backend.model == str(model_dir)
        remote = backend.detect(images, batch_size=3)
        backend.close()
    same(local, remote)
    # Qwen3-VL writes 0-1000 integers: a 112-pixel side comes back within half a unit (0.056 px)
    found = {o.label: o.bbox for o in remote[0].objects}
    assert found == {"rope": pytest.approx(ROPE, abs=0.06), "cardboard": pytest.approx(CARDBOARD, abs=0.06)}


def test_backend_against_a_service_that_builds_tiny_qwen2_vl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    import threading

    import jamspotter.serve.loader as loader
    from jamspotter.infer import Detector

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    gate, load = threading.Event(), loader.load_detector
    monkeypatch.setattr(loader, "load_detector", lambda settings: gate.wait(30) and load(settings))
    app = create_app(ServeSettings(model="tiny:qwen2-vl", max_new_tokens=12))
    scene = scene_of(memorised_model(tmp_path_factory, "qwen2.5-vl"))
    images = [Image.open(scene).convert("RGB"), Image.new("RGB", (150, 100), (200, 30, 30))]
    with running_server(app) as url:
        loading = httpx.get(f"{url}/readyz")  # the service answers while the model is still loading
        assert loading.status_code == 503 and loading.json()["ready"] is False
        early = httpx.post(f"{url}/v1/detect", files={"image": ("s.png", scene.read_bytes(), "image/png")})
        assert early.status_code == 503 and early.json() == {"error": "the model is still loading"}
        assert early.headers["retry-after"]
        gate.set()
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline and app.state.load_error is None, app.state.load_error
            time.sleep(0.1)
        backend = OpenAIBackend(url, max_new_tokens=12)
        remote = backend.detect(images, batch_size=2)
        assert backend.model == "tiny:qwen2-vl" and backend.family == "qwen2-vl"
    built = tmp_path / "cache" / "jamspotter" / "tiny-qwen2-vl"
    assert (built / "config.json").is_file()
    local = Detector(built, max_new_tokens=12).detect(images, batch_size=1)
    same(local, remote)
    assert any("answer cut at max_new_tokens=12" in p for r in remote for p in r.problems)


def test_infer_cli_with_the_openai_backend_writes_the_scene_boxes(tmp_path: Path,
                                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    from jamspotter.infer import Detector

    model_dir = memorised_model(tmp_path_factory, "qwen2.5-vl")
    app = create_app(ServeSettings(model=str(model_dir), token=TOKEN, max_new_tokens=96),
                     detector=Detector(model_dir, max_new_tokens=96))
    out = tmp_path / "preds.jsonl"
    with running_server(app) as url:
        result = CliRunner().invoke(cli_app, [
            "infer", "served-model", str(model_dir.parents[1] / "scene"), "--out", str(out), "--backend", "openai",
            "--url", url, "--api-key", TOKEN, "--max-new-tokens", "96"])
        assert result.exit_code == 0, result.output
        no_key = CliRunner().invoke(cli_app, ["infer", "m", str(scene_of(model_dir)), "--out", str(tmp_path / "x"),
                                              "--backend", "openai", "--url", url], env={"JAMSPOTTER_TOKEN": ""})
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["id"] == "scene"
    assert {o["label"]: o["bbox"] for o in record["objects"]} == {"rope": ROPE, "cardboard": CARDBOARD}
    assert no_key.exit_code == 2 and "HTTP 401" in no_key.output and "--api-key" in no_key.output


def _vllm_like(answer: str) -> FastAPI:
    """A server with OpenAI's routes and no run contract, answering `answer` to every chat request."""
    app = FastAPI()
    seen: list[dict] = []

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": "Qwen/Qwen2.5-VL-7B-Instruct", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(body: dict) -> dict:
        seen.append(body)
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                             "finish_reason": "stop"}]}

    app.state.seen = seen
    return app


def test_a_server_without_a_contract_needs_the_family() -> None:
    answer = '```json\n[{"bbox_2d": [280, 140, 560, 280], "label": "rope"}]\n```'
    app = _vllm_like(answer)
    with running_server(app) as url:
        with pytest.raises(JamspotterError, match="--family"):
            OpenAIBackend(url)
        backend = OpenAIBackend(url, family="qwen2.5-vl")
        [result] = backend.detect([Image.new("RGB", (1120, 560))])
    # 1120x560 is its own smart_resize (multiples of 28, within the default budget): pixels come back as sent
    assert [(o.label, o.bbox) for o in result.objects] == [("rope", [280.0, 140.0, 560.0, 280.0])]
    sent = app.state.seen[0]
    assert sent["model"] == "Qwen/Qwen2.5-VL-7B-Instruct" and sent["temperature"] == 0 and sent["stream"] is False
    image_part, text_part = sent["messages"][0]["content"]
    assert image_part["image_url"]["url"].startswith("data:image/png;base64,")
    assert text_part["text"] == backend.prompt


def test_backend_errors_are_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(JamspotterError, match="cannot reach the server"):
        OpenAIBackend(f"http://127.0.0.1:{closed}", family="qwen2.5-vl")
    with pytest.raises(JamspotterError, match="needs --url"):
        load_backend("openai", "m")
    with pytest.raises(JamspotterError, match="--quantization applies to the transformers backend"):
        load_backend("openai", "m", url="http://127.0.0.1:1", quantization="4bit")
    with pytest.raises(JamspotterError, match="unknown backend"):
        load_backend("onnx", "m")
    with pytest.raises(JamspotterError, match="--url and --contract apply to --backend openai"):
        load_backend("transformers", "m", url="http://127.0.0.1:1")
    with pytest.raises(JamspotterError, match="http"):
        OpenAIBackend("127.0.0.1:8000")
    with pytest.raises(JamspotterError, match="no jamspotter.json"):
        OpenAIBackend("http://127.0.0.1:1", contract=tmp_path)
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(JamspotterError, match="pip install 'jamspotter\\[vllm\\]'"):
            load_backend("vllm", str(tmp_path))
