"""What a request may carry: a bounded body, and images that are real, bounded and not decompression bombs.

The body limit is checked twice: against `Content-Length` before anything is read, and against the bytes
actually streamed (a chunked upload has no length; a client may lie about it). An image's pixel count is
read from its header and checked against the service's cap and Pillow's decompression-bomb bound
(`Image.MAX_IMAGE_PIXELS`) before decoding, so a small file that would expand to gigabytes is refused
without ever being expanded.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from fastapi import HTTPException
from starlette.responses import JSONResponse

from jamspotter.formats.resize import MAX_ASPECT_RATIO


class BodyTooLarge(HTTPException):
    """A request body over the limit (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body larger than {limit} bytes")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape of the service: `{"error": message}`."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class BodyLimitMiddleware:
    """Pure ASGI middleware refusing bodies over `limit` bytes with a JSON 413."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = int(limit)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        try:
            declared = int(length) if length is not None else None
        except ValueError:
            declared = None
        if declared is not None and declared > self.limit:
            await error_response(413, BodyTooLarge(self.limit).detail)(scope, receive, send)
            return
        total = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as e:  # raised where no exception handler caught it (outside a route)
            if started:
                raise
            await error_response(413, e.detail)(scope, receive, send)


def decode_base64(text: str, what: str = "image") -> bytes:
    """Bytes of a base64 string (standard or URL-safe alphabet, padding optional); 400 when it is not base64."""
    cleaned = "".join(text.split())
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        altchars = b"-_" if ("-" in cleaned or "_" in cleaned) else None
        return base64.b64decode(cleaned, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, f"{what} is not valid base64") from None


def decode_data_uri(uri: str) -> bytes:
    """The bytes of a `data:image/...;base64,...` URI; anything else (an http URL) is refused: nothing is fetched."""
    head, sep, payload = uri.partition(",")
    if not uri.startswith("data:") or not sep:
        raise HTTPException(400, "image_url must be a data: URI (data:image/png;base64,...); the server fetches "
                                 "no URLs")
    media = head[5:].split(";")[0].strip().lower()
    if media and not media.startswith("image/") and media != "application/octet-stream":
        raise HTTPException(415, f"image_url has media type {media!r}, not an image")
    if ";base64" not in head.lower():
        raise HTTPException(400, "image_url data URI must be base64-encoded")
    return decode_base64(payload, "image_url")


def decode_image(data: bytes, max_pixels: int) -> Any:
    """An upright RGB PIL image from encoded bytes, or an HTTPException.

    400: empty, not an image, truncated, or an aspect ratio the Qwen-VL processors refuse;
    413: more than `max_pixels` pixels, or what Pillow's decompression-bomb guard refuses.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise HTTPException(400, "empty image")
    # Pillow's own guard: over MAX_IMAGE_PIXELS it warns, over twice that it raises. The warning is made an
    # error here by checking the same bound (warnings.catch_warnings is not thread-safe; this runs in threads).
    bound = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > bound:
                raise HTTPException(413, f"image is {w}x{h} = {w * h} pixels, more than {bound}")
            image = ImageOps.exif_transpose(im).convert("RGB")
    except Image.DecompressionBombError as e:
        raise HTTPException(413, f"image too large ({' '.join(str(e).split())})") from None
    except HTTPException:
        raise
    except UnidentifiedImageError:
        raise HTTPException(400, "not an image (no format Pillow reads)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise HTTPException(400, f"cannot decode image ({' '.join(str(e).split()) or type(e).__name__})") from None
    w, h = image.size
    if min(w, h) < 1 or max(w, h) / min(w, h) > MAX_ASPECT_RATIO:
        raise HTTPException(400, f"image is {w}x{h}: aspect ratio over {MAX_ASPECT_RATIO}, which Qwen-VL refuses")
    return image
