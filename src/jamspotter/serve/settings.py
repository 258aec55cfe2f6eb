"""`ServeSettings`: everything `jamspotter serve` is started with, one validated object the app reads.

The CLI fills it from options (and `JAMSPOTTER_TOKEN`); tests build it directly. Limits are per request:
a body over `max_body_bytes` is a 413, an image over `max_image_pixels` a 413, a full queue a 503.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

MiB = 1024 * 1024


class ServeSettings(BaseModel):
    """The model to serve, where to listen, the bearer token, the limits and the batching knobs."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    # ---- the model ------------------------------------------------------------------------------
    model: str = Field(description="hub id, local folder, or tiny:<family> (a tiny random model, offline)")
    adapter: str | None = Field(None, description="a LoRA adapter folder trained on `model`")
    family: str = Field("auto", description="auto | qwen2-vl | qwen2.5-vl | qwen3-vl")
    task: str = Field("auto", description="auto (what the model was trained on) | detect_jam | detect_all")
    dtype: str = "auto"
    device: str | None = None
    quantization: str | None = None
    max_new_tokens: int = Field(512, ge=1, le=32768, description="longest answer (detect, ask, chat default)")
    max_crops: int = Field(3, ge=0, le=16, description="crop-tool calls an /v1/ask answer may make at most")

    # ---- where and who --------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    token: str | None = Field(None, description="bearer token for /v1 routes and the dashboard API; None = open")

    # ---- limits ---------------------------------------------------------------------------------
    max_body_bytes: int = Field(20 * MiB, ge=1, description="request bodies above this are refused (413)")
    max_image_pixels: int = Field(40_000_000, ge=1, description="images with more pixels are refused (413)")
    max_batch: int = Field(8, ge=1, le=256, description="images per model call at most (dynamic batching)")
    max_wait_ms: float = Field(10.0, ge=0, description="how long a batch waits for more images after its first")
    max_queue: int = Field(64, ge=1, description="requests waiting for the model at most; more get 503")
    timeout_s: float = Field(120.0, gt=0, description="a request not answered in this time gets 504")

    # ---- the operator dashboard -----------------------------------------------------------------
    stream: str | None = Field(None, description="frames for the dashboard: a folder, an mp4, synth or a webcam")
    db: Path | None = Field(None, description="SQLite file of the dashboard's alerts")
    stream_interval: float = Field(0.5, ge=0, le=3600, description="seconds between stream frames (0 = as fast "
                                   "as the model goes; a camera delivers at its own pace)")
    alert_threshold: float = Field(0.5, ge=0, le=1, description="a jam-risk verdict at least this sure raises an alert")
    alert_cooldown: float = Field(10.0, ge=0, description="stream seconds after a jam frame in which another jam "
                                  "frame is the same item (no new alert)")
    alert_minutes: float = Field(10.0, gt=0, le=1440, description="the dashboard counts detections per class over "
                                 "this many minutes")

    @property
    def served_name(self) -> str:
        """The model name the service reports (`model` in answers, /v1/models)."""
        return self.adapter or self.model
