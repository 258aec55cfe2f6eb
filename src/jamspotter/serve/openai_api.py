"""The OpenAI chat-completions subset the service speaks: text and `image_url` data URIs in, raw text out.

The messages are run exactly as given through the processor's chat template and the model's greedy
`generate` (sampling when `temperature` > 0), with the same end-of-turn cut and vision-token mask the
`Detector` uses, so a client that sends the run contract's prompt gets the very text `Detector.detect`
parses. Not supported (400): streaming, `n` > 1, tools, image URLs other than data URIs.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field

from jamspotter.serve.limits import decode_data_uri, decode_image

MAX_CHAT_IMAGES = 16


class ImageURL(BaseModel):
    """`{"url": "data:image/png;base64,..."}` (`detail` is accepted and ignored)."""

    model_config = ConfigDict(extra="allow")
    url: str


class ContentPart(BaseModel):
    """One part of a message: `{"type": "text", "text": ...}` or `{"type": "image_url", "image_url": ...}`."""

    model_config = ConfigDict(extra="allow")
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageURL | str | None = None


class ChatMessage(BaseModel):
    """A chat turn; `content` is a string or a list of parts."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart] | None = None


class ChatRequest(BaseModel):
    """The request body of `POST /v1/chat/completions` (OpenAI's shape; unknown fields are ignored)."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = 1
    stream: bool = False
    tools: list[Any] | None = None


@dataclass
class ChatResult:
    """What one generation produced."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


def prepare_chat(request: ChatRequest, max_new_tokens: int, max_pixels: int) -> tuple[list[dict], list[Any], int]:
    """(chat-template messages, PIL images in order, max new tokens) from a request; HTTPException when unsupported."""
    if request.stream:
        raise HTTPException(400, "stream=true is not supported; send stream=false")
    if request.n != 1:
        raise HTTPException(400, "n must be 1")
    if request.tools:
        raise HTTPException(400, "tools are not supported by this endpoint")
    limit = request.max_completion_tokens or request.max_tokens or max_new_tokens
    if limit > max_new_tokens:
        raise HTTPException(400, f"max_tokens {limit} is over the service's limit of {max_new_tokens}")
    messages: list[dict] = []
    images: list[Any] = []
    for i, message in enumerate(request.messages):
        if message.content is None or isinstance(message.content, str):
            messages.append({"role": message.role, "content": message.content or ""})
            continue
        parts: list[dict] = []
        for part in message.content:
            if part.type == "text":
                parts.append({"type": "text", "text": part.text or ""})
                continue
            if part.image_url is None:
                raise HTTPException(400, f"messages[{i}]: an image_url part without image_url")
            url = part.image_url if isinstance(part.image_url, str) else part.image_url.url
            if len(images) >= MAX_CHAT_IMAGES:
                raise HTTPException(400, f"more than {MAX_CHAT_IMAGES} images in one request")
            images.append(decode_image(decode_data_uri(url), max_pixels))
            parts.append({"type": "image"})
        messages.append({"role": message.role, "content": parts})
    return messages, images, int(limit)


def generate_chat(detector: Any, messages: list[dict], images: list[Any], max_new_tokens: int,
                  temperature: float | None = None, top_p: float | None = None) -> ChatResult:
    """Run `messages` (chat-template form, `{"type": "image"}` parts) through the detector's model and processor."""
    sample = bool(temperature)
    kwargs: dict[str, Any] = {"do_sample": sample}
    if sample:
        kwargs.update(temperature=float(temperature), top_p=float(top_p or 1.0))
    new, inputs = detector.generate_turn(messages, images, max_new_tokens, **kwargs)
    full = detector.tokenizer.decode(new, skip_special_tokens=False)  # Qwen2-VL writes boxes with special tokens
    stopped = any(stop in full for stop in detector._stops)
    return ChatResult(text=detector._clean(full), prompt_tokens=int(inputs["input_ids"].shape[1]),
                      completion_tokens=int(new.shape[0]),
                      finish_reason="length" if not stopped and new.shape[0] >= max_new_tokens else "stop")


def completion_body(result: ChatResult, model: str) -> dict:
    """The OpenAI `chat.completion` object for one answer."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                     "finish_reason": result.finish_reason, "logprobs": None}],
        "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                  "total_tokens": result.prompt_tokens + result.completion_tokens},
    }
