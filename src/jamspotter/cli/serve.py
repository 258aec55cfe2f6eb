"""`jamspotter serve --model M`: the HTTP service (and the operator dashboard) under uvicorn."""

from __future__ import annotations

from pathlib import Path

import typer

from jamspotter.cli.app import app
from jamspotter.errors import JamspotterError

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
OPTION_NAMES = {"timeout_s": "--timeout", "max_body_bytes": "--max-body-mb"}  # settings fields named otherwise


def parse_sets(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` pairs (repeatable `--set`) as a dict; malformed ones are one-line errors."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise JamspotterError(f"--set {pair!r}: want KEY=VALUE (a ServeSettings field)")
        out[key.strip()] = value
    return out


@app.command("serve")
def serve_cmd(
    model: str = typer.Option(..., "--model", help="Hub id, local folder, or tiny:<family> (a tiny random model, "
                              "to try the service offline)."),
    adapter: str = typer.Option(None, "--adapter", help="A LoRA adapter folder trained on --model."),
    family: str = typer.Option("auto", "--family", help="auto | qwen2-vl | qwen2.5-vl | qwen3-vl"),
    task: str = typer.Option("auto", "--task", help="auto (what the model was trained on) | detect_jam | detect_all"),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    token: str = typer.Option(None, "--token", envvar="JAMSPOTTER_TOKEN",
                              help="Bearer token every /v1 route and the dashboard API require (or env "
                                   "JAMSPOTTER_TOKEN). Without one the routes are open."),
    stream: str = typer.Option(None, "--stream", help="Frames for the dashboard: a folder, an mp4 clip, synth, or "
                               "a webcam (webcam:0, /dev/video0)."),
    db: Path = typer.Option(None, "--db", help="SQLite file of the dashboard's alerts, kept across restarts "
                                 "(with --stream, default ./jamspotter-alerts.db)."),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="Images per model call at most."),
    max_wait_ms: float = typer.Option(10.0, "--max-wait-ms", min=0, help="How long a batch waits for more images."),
    max_queue: int = typer.Option(64, "--max-queue", min=1, help="Requests waiting at most; more get 503."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds before a request gets 504."),
    max_body_mb: float = typer.Option(20.0, "--max-body-mb", help="Largest request body in MiB (413 above)."),
    max_image_pixels: int = typer.Option(40_000_000, "--max-image-pixels", min=1, help="Largest image (413 above)."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", min=1),
    max_crops: int = typer.Option(3, "--max-crops", min=0, help="Crop-tool calls an /v1/ask answer may make."),
    dtype: str = typer.Option("auto", "--dtype", help="auto | bf16 | fp16 | fp32"),
    device: str = typer.Option(None, "--device", help="cuda, cpu, cuda:1 ... (default: cuda when available)"),
    quantization: str = typer.Option(None, "--quantization", help="4bit | 8bit (bitsandbytes, CUDA)"),
    sets: list[str] = typer.Option(None, "--set", help="KEY=VALUE for any other setting (e.g. a dashboard "
                                   "option); repeatable."),
    log_level: str = typer.Option("info", "--log-level", help="critical | error | warning | info | debug"),
) -> None:
    """Serve a detector over HTTP: /v1/detect, /v1/ask, /v1/chat/completions, /healthz, /readyz, /metrics, /docs."""
    import logging

    from pydantic import ValidationError

    from jamspotter.serve import ServeSettings, create_app
    from jamspotter.serve.loader import weights_to_load
    from jamspotter.serve.server import bind_socket, is_loopback, make_server

    values = dict(model=model, adapter=adapter, family=family, task=task, host=host, port=port, token=token or None,
                  stream=stream, db=db, max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue,
                  timeout_s=timeout, max_body_bytes=int(max_body_mb * 1024 * 1024), max_image_pixels=max_image_pixels,
                  max_new_tokens=max_new_tokens, max_crops=max_crops, dtype=dtype, device=device,
                  quantization=quantization)
    options = {key: OPTION_NAMES.get(key, "--" + key.replace("_", "-")) for key in values}
    extra = parse_sets(sets or [])
    values.update(extra)
    try:
        settings = ServeSettings(**values)
    except ValidationError as e:
        first = e.errors()[0]
        field = str(first["loc"][0]) if first.get("loc") else ""
        where = f"--set {field}" if field in extra or field not in options else options[field]
        raise JamspotterError(f"{where}: {first['msg']}") from None
    from jamspotter.infer.detector import check_task
    from jamspotter.models.loading import resolve_dtype

    check_task(settings.task)
    if settings.family != "auto":
        from jamspotter.formats import canonical_family

        canonical_family(settings.family)  # before the port is taken
    if log_level not in LOG_LEVELS:
        raise JamspotterError(f"--log-level {log_level!r}: use {', '.join(LOG_LEVELS)}")
    resolve_dtype(settings.dtype)
    weights_to_load(settings)  # a missing folder or a mismatched adapter fails now, before the port is taken
    if not is_loopback(settings.host) and settings.token is None:
        typer.echo(f"warning: listening on {settings.host} without a token: anyone who can reach this port can "
                   "use the model (set --token or JAMSPOTTER_TOKEN)", err=True)
    sock = bind_socket(settings.host, settings.port)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    logger = logging.getLogger("jamspotter")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if log_level == "trace" else log_level.upper())

    service = create_app(settings)
    server = make_server(service, settings.host, sock.getsockname()[1], log_level=log_level)
    failures: list[BaseException] = []

    def stop(error: BaseException) -> None:
        failures.append(error)
        server.should_exit = True

    service.state.on_load_error = stop
    typer.echo(f"loading {settings.served_name}; serving on http://{settings.host}:{sock.getsockname()[1]} "
               "(/readyz says when the model is ready)", err=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        logger.removeHandler(handler)
    if failures:
        raise JamspotterError(f"cannot load the model: {service.state.load_error}")
