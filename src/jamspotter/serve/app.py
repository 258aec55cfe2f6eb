"""`create_app`: the FastAPI service in front of one `Detector`.

Routes: `POST /v1/detect`, `POST /v1/ask`, `POST /v1/chat/completions` (OpenAI subset), `GET /v1/models`,
`GET /v1/contract` (the run contract, so clients ask what the model was trained on), `GET /healthz`
(liveness), `GET /readyz` (model loaded), `GET /metrics` (Prometheus), OpenAPI at `/docs`. Every `/v1`
route wants the bearer token when one is set. Every error is JSON `{"error": ...}`, including FastAPI's
validation errors, 404 and 405; no bad request stops the service.

Model work goes through one `Batcher` (dynamic batching for detect, one model user at a time), each
request bounded by `timeout_s` (504) and the queue by `max_queue` (503 + Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from jamspotter.errors import JamspotterError
from jamspotter.serve.auth import make_require_token
from jamspotter.serve.batching import Batcher, NotReady, QueueFull
from jamspotter.serve.limits import BodyLimitMiddleware, decode_base64, decode_image, error_response
from jamspotter.serve.metrics import Metrics, MetricsMiddleware
from jamspotter.serve.openai_api import ChatRequest, completion_body, generate_chat, prepare_chat
from jamspotter.serve.settings import ServeSettings

log = logging.getLogger("jamspotter.serve")
RETRY_AFTER_FULL = "1"  # seconds a client should wait after a 503 for a full queue
RETRY_AFTER_LOADING = "5"  # ... and while the model loads


# ---- request and response bodies (also what /docs shows) -------------------------------------------
class DetectBody(BaseModel):
    """JSON body of /v1/detect."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field(description="the image file's bytes, base64")
    classes: list[str] | None = Field(None, description="keep only these classes (names the model was trained on)")


class AskBody(BaseModel):
    """JSON body of /v1/ask."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field(description="the image file's bytes, base64")
    question: str = Field(min_length=1)
    max_crops: int | None = Field(None, ge=0, description="crop-tool calls at most (default and cap: the service's)")


class DetectionOut(BaseModel):
    """One box in original image pixels."""

    label: str
    bbox: list[float] = Field(description="[x1, y1, x2, y2], original pixels")
    jam_risk: bool | None
    score: float | None
    reason: str | None


class DetectResponse(BaseModel):
    """The answer of /v1/detect."""

    detections: list[DetectionOut]
    width: int
    height: int
    model: str
    text: str = Field(description="the model's raw answer")
    problems: list[str] = Field(description="what the parser had to repair or could not read")


def _body_doc(model: type[BaseModel], form: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI requestBody for a route that reads JSON or a multipart form itself."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()},
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
            "image": {"type": "string", "format": "binary"}, **form}}}}}}


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its `$defs` references replaced by the definitions (for openapi_extra)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


# ---- the app ------------------------------------------------------------------------------------------
def create_app(settings: ServeSettings, detector: Any | None = None) -> FastAPI:
    """The service for `settings`; loads the Detector in the background at startup unless `detector` is given.

    On `app.state`: `settings`, `detector` (None until loaded), `ready` (a threading.Event set once it is),
    `load_error` (a message when loading failed), `batcher` (`await batcher.detect(pil) -> Detections`),
    `metrics`, `require_token` (the auth dependency), `on_load_error` (called with the exception when loading
    fails; the CLI stops the server there) and `lifespans` (async context-manager factories taking the app,
    entered after the batcher starts and left before it stops: how the dashboard runs its frame loop).
    """
    metrics = Metrics()
    require_token = make_require_token(settings.token)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.batcher.start()
        if app.state.detector is None:
            _start_loading(app, asyncio.get_running_loop())
        try:
            async with contextlib.AsyncExitStack() as stack:
                for factory in list(app.state.lifespans):
                    await stack.enter_async_context(factory(app))
                yield
        finally:
            await app.state.batcher.stop()

    app = FastAPI(title="jamspotter", version=_version(), lifespan=lifespan,
                  summary="Find jam-causing material on recycling conveyor belts (Qwen-VL).")
    app.state.settings = settings
    app.state.detector = detector
    app.state.ready = threading.Event()
    app.state.load_error = None
    app.state.on_load_error = None
    app.state.lifespans = []
    app.state.metrics = metrics
    app.state.require_token = require_token
    app.state.batcher = Batcher(lambda: app.state.detector, max_batch=settings.max_batch,
                                max_wait_ms=settings.max_wait_ms, max_queue=settings.max_queue, metrics=metrics)
    if detector is not None:
        _mark_ready(app)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: counts the 413s too
    _add_error_handlers(app)
    _add_health_routes(app)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_token)])
    _add_v1_routes(v1, app)
    app.include_router(v1)

    from jamspotter.serve.dashboard import add_dashboard

    add_dashboard(app)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jamspotter")
    except PackageNotFoundError:
        return "0"


def _mark_ready(app: FastAPI) -> None:
    app.state.metrics.ready.set(1)
    app.state.ready.set()


def _start_loading(app: FastAPI, loop: asyncio.AbstractEventLoop) -> None:
    """Load the Detector in a daemon thread (so /healthz answers at once and /readyz says when it is done)."""
    from jamspotter.serve.loader import load_detector

    def publish(detector: Any) -> None:
        app.state.detector = detector
        _mark_ready(app)
        log.info("model ready: %s", app.state.settings.served_name)

    def load() -> None:
        try:
            detector = load_detector(app.state.settings)
        except BaseException as e:  # noqa: BLE001 - any failure is reported, never lost in the thread
            message = e.format_message() if isinstance(e, JamspotterError) else f"{type(e).__name__}: {e}"
            app.state.load_error = message
            if app.state.on_load_error is not None:
                app.state.on_load_error(e)
            else:
                log.error("cannot load the model: %s", message)
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (server stopped)
            loop.call_soon_threadsafe(publish, detector)

    threading.Thread(target=load, name="jamspotter-load-model", daemon=True).start()


# ---- errors -------------------------------------------------------------------------------------------
def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(422, _validation_message(exc.errors()))

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, exc: QueueFull) -> Response:
        return error_response(503, f"busy: {exc}; retry later", headers={"Retry-After": RETRY_AFTER_FULL})

    @app.exception_handler(NotReady)
    async def not_ready(request: Request, exc: NotReady) -> Response:
        error = request.app.state.load_error
        return error_response(503, f"model failed to load: {error}" if error else str(exc),
                              headers={"Retry-After": RETRY_AFTER_LOADING})

    @app.exception_handler(JamspotterError)
    async def user_error(request: Request, exc: JamspotterError) -> Response:
        return error_response(400, exc.format_message())

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error (see the service log)")


def _validation_message(errors: Any) -> str:
    """FastAPI/pydantic validation errors on one line: `body.field: message; ...`."""
    parts = []
    for err in list(errors)[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


# ---- health ---------------------------------------------------------------------------------------------
def _add_health_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict:
        """Liveness: the process answers (no auth)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> Response:
        """Readiness: 200 once the model is loaded, 503 while it loads or when loading failed."""
        state = request.app.state
        if state.detector is not None:
            return Response(json.dumps({"ready": True, "model": state.settings.served_name}),
                            media_type="application/json")
        error = f"model failed to load: {state.load_error}" if state.load_error else "model loading"
        return Response(json.dumps({"ready": False, "error": error}), status_code=503, media_type="application/json",
                        headers={"Retry-After": RETRY_AFTER_LOADING})

    @app.get("/metrics", tags=["health"])
    async def metrics_route(request: Request) -> Response:
        """Prometheus text exposition of the `jamspotter_*` metrics."""
        body, content_type = request.app.state.metrics.render()
        return Response(body, media_type=content_type)


# ---- /v1 ----------------------------------------------------------------------------------------------
def _detector(app: FastAPI) -> Any:
    detector = app.state.detector
    if detector is None:
        raise NotReady("the model is still loading")
    return detector


async def _answer(app: FastAPI, work: Awaitable[Any]) -> Any:
    """`work` bounded by the per-request timeout (504)."""
    timeout = app.state.settings.timeout_s
    try:
        return await asyncio.wait_for(work, timeout)
    except asyncio.TimeoutError:
        raise HTTPException(504, f"no answer within {timeout:g} s") from None


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _image_request(request: Request, body_model: type[BaseModel]) -> tuple[Any, dict[str, Any]]:
    """(decoded PIL image, the other fields) from multipart (`image` file), JSON (base64 `image`) or a raw image body.

    Wrong content types are 415, undecodable images 400, too large ones 413.
    """
    settings: ServeSettings = request.app.state.settings
    media = _media_type(request)
    fields: dict[str, Any]
    if media == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=32)
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise HTTPException(400, "multipart field 'image' (a file) is missing")
        part = (upload.content_type or "").split(";")[0].strip().lower()
        if part and not part.startswith("image/") and part != "application/octet-stream":
            raise HTTPException(415, f"the 'image' part is {part!r}, not an image")
        data = await upload.read()
        fields = {}
        for key in form:
            if key == "image":
                continue
            values = [v for v in form.getlist(key) if isinstance(v, str)]
            fields[key] = values if key == "classes" else (values[-1] if values else None)
        if "classes" in fields:
            fields["classes"] = _form_classes(fields["classes"])
    elif media == "application/json" or media.endswith("+json"):
        try:
            raw = json.loads(await request.body())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise HTTPException(400, "the body is not valid JSON") from None
        try:
            parsed = body_model.model_validate(raw)
        except ValidationError as e:
            raise RequestValidationError(e.errors()) from None
        fields = parsed.model_dump()
        data = decode_base64(fields.pop("image"))
    elif media.startswith("image/"):
        data, fields = await request.body(), dict(request.query_params)
        if "classes" in fields:
            fields["classes"] = _form_classes(request.query_params.getlist("classes"))
    else:
        raise HTTPException(415, f"content type {media or '(none)'!r}: send multipart/form-data with an 'image' "
                                 "file, application/json with a base64 'image', or the image itself")
    image = await asyncio.to_thread(decode_image, data, settings.max_image_pixels)
    return image, fields


def _form_classes(values: list[str]) -> list[str]:
    """Classes from form fields: repeated fields, a JSON list, or comma-separated names."""
    out: list[str] = []
    for value in values:
        text = value.strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError:
                raise HTTPException(400, "classes: not a JSON list") from None
            if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                raise HTTPException(400, "classes: a JSON list of names is expected")
            out += items
        else:
            out += [c.strip() for c in text.split(",") if c.strip()]
    return out


def _check_classes(classes: list[str] | None, detector: Any) -> set[str] | None:
    """The class filter as a set; names the run contract does not know are a 400 (the prompt never changes)."""
    if classes is None:
        return None
    known = list(detector.contract.classes)
    unknown = [c for c in classes if c not in known]
    if unknown:
        raise HTTPException(400, f"unknown classes {unknown}; this model answers: {', '.join(known)}")
    return set(classes)


def _add_v1_routes(v1: APIRouter, app: FastAPI) -> None:
    settings: ServeSettings = app.state.settings

    @v1.post("/detect", response_model=DetectResponse, tags=["detect"], openapi_extra=_body_doc(DetectBody, {
        "classes": {"type": "array", "items": {"type": "string"}}}))
    async def detect(request: Request) -> dict:
        """Boxes of what the model was trained to find, in original pixels.

        Send multipart/form-data with an `image` file, JSON `{"image": "<base64>", "classes": [...]}`, or the
        image bytes with an image/* content type. `classes` filters the answer; it never changes the question.
        """
        image, fields = await _image_request(request, DetectBody)
        wanted = _check_classes(fields.get("classes"), _detector(app))
        result = await _answer(app, app.state.batcher.detect(image))
        objects = [o for o in result.objects if wanted is None or o.label in wanted]
        app.state.metrics.count_detections(objects)
        return {"detections": [{"label": o.label, "bbox": list(o.bbox), "jam_risk": o.jam_risk, "score": o.score,
                                "reason": o.reason} for o in objects],
                "width": image.width, "height": image.height, "model": settings.served_name,
                "text": result.text, "problems": list(result.problems)}

    @v1.post("/ask", tags=["ask"], openapi_extra=_body_doc(AskBody, {
        "question": {"type": "string"}, "max_crops": {"type": "integer"}}))
    async def ask(request: Request) -> dict:
        """Think/answer about an image with the crop-tool loop: answer, thinking, crop boxes (original pixels)."""
        image, fields = await _image_request(request, AskBody)
        question = fields.get("question")
        if not isinstance(question, str) or not question.strip():
            raise HTTPException(400, "'question' is missing or empty")
        max_crops = _crops(fields.get("max_crops"), settings.max_crops)
        if not callable(getattr(_detector(app), "ask", None)):
            raise HTTPException(501, "this detector has no ask()")
        answer = await _answer(app, app.state.batcher.call(lambda d: d.ask(image, question, max_crops=max_crops)))
        return jsonable_encoder(dataclasses.asdict(answer) if dataclasses.is_dataclass(answer) else answer)

    @v1.post("/chat/completions", tags=["openai"], openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": _inline_refs(ChatRequest.model_json_schema())}}}})
    async def chat_completions(request: Request) -> dict:
        """OpenAI chat completions (subset): text and `image_url` data URIs; stream=false only."""
        if not (_media_type(request) == "application/json" or _media_type(request).endswith("+json")):
            raise HTTPException(415, "send the request as application/json")
        try:
            body = ChatRequest.model_validate_json(await request.body())
        except ValidationError as e:
            raise RequestValidationError(e.errors()) from None
        _detector(app)
        messages, images, max_new = await asyncio.to_thread(prepare_chat, body, settings.max_new_tokens,
                                                            settings.max_image_pixels)
        result = await _answer(app, app.state.batcher.call(
            lambda d: generate_chat(d, messages, images, max_new, body.temperature, body.top_p)))
        return completion_body(result, body.model or settings.served_name)

    @v1.get("/models", tags=["openai"])
    async def models() -> dict:
        """The one model served (OpenAI's list shape)."""
        return {"object": "list", "data": [{"id": settings.served_name, "object": "model", "created": 0,
                                            "owned_by": "jamspotter"}]}

    @v1.get("/contract", tags=["detect"])
    async def contract() -> dict:
        """The run contract the model answers by (family, pixel budget, classes, ...): what clients must ask."""
        return _detector(app).contract.model_dump(mode="json")


def _crops(value: Any, cap: int) -> int:
    """max_crops from a request: default and upper bound `cap`."""
    if value is None or value == "":
        return cap
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise HTTPException(400, "max_crops must be an integer") from None
    if not 0 <= n <= cap:
        raise HTTPException(400, f"max_crops must be between 0 and {cap}")
    return n
