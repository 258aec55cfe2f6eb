"""Detections drawn onto images and clips: boxes, labels on a filled background, reasons as captions.

Jam-causing items (the project's one jam rule, `Taxonomy.is_jam`) are drawn in a warning colour and on
top; other material in a calm colour. Line width and text size follow the image size, text is DejaVu
Sans (bundled with matplotlib) when available, else Pillow's default font. `jamspotter infer --draw`,
the dashboard's live view and its alert thumbnails all draw with `draw_detections`.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from jamspotter.data.records import BoxObject, Sample
from jamspotter.data.taxonomy import DEFAULT_TAXONOMY, Taxonomy
from jamspotter.detections import Detections

JAM_COLOR = (255, 69, 0)  # orange-red: an item that can wrap around a screen and stop the line
MATERIAL_COLOR = (30, 144, 255)  # blue: ordinary material
CAPTION_BACKGROUND = (32, 32, 32)
DEFAULT_FRAMES_FPS = 1.0  # a clip given as frames without an fps is shown one frame per second
DRAWN_IMAGE_EXTS = {".jpg": ".jpg", ".jpeg": ".jpg"}  # other inputs are drawn as PNG


def line_thickness(width: int, height: int) -> int:
    """Box outline width in pixels: 1 on thumbnails, about 2 at 640 px, 3 at 1280 px, 5 at 1920 px."""
    return max(1, round(max(width, height) / 400))


def font_size(width: int, height: int) -> int:
    """Label text height in pixels: 2.5% of the shorter side, at least 10."""
    return max(10, round(min(width, height) * 0.025))


@functools.lru_cache(maxsize=16)
def label_font(size: int) -> Any:
    """DejaVu Sans at `size` px (matplotlib's bundled copy), else Pillow's default font at that size."""
    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)
    except (ImportError, OSError):
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1: one fixed-size bitmap font
            return ImageFont.load_default()


def _text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: float) -> str:
    """`text`, shortened with '...' to fit `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text.rstrip() + "..."


def _tag(draw: ImageDraw.ImageDraw, text: str, x: float, y: float, above: bool, font: Any,
         background: tuple[int, int, int], size: tuple[int, int]) -> None:
    """A text tag on a filled background with its bottom (`above`) or top edge at y, kept inside the image."""
    w, h = size
    pad = max(1, getattr(font, "size", 10) // 5)
    text = _fit(draw, text, font, w - 2 * pad)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tw, th = right - left + 2 * pad, bottom - top + 2 * pad
    x0 = min(max(0, round(x)), max(0, w - tw))
    y0 = round(y) - th if above else round(y)
    y0 = min(max(0, y0), max(0, h - th))
    draw.rectangle([x0, y0, x0 + tw - 1, y0 + th - 1], fill=background)
    draw.text((x0 + pad - left, y0 + pad - top), text, font=font, fill=_text_color(background))


def draw_detections(image: Image.Image, detections: Detections | Sequence[BoxObject], *,
                    taxonomy: Taxonomy | None = None) -> Image.Image:
    """A copy of `image` (RGB) with each box outlined inside its original-pixel edges, its label (and score)
    on a filled tag above it and its reason, when it has one, as a caption under it.

    Jam-causing boxes (per `taxonomy`, default the project's) are drawn in `JAM_COLOR` and over the others,
    which get `MATERIAL_COLOR`. The input image is not changed.
    """
    tax = taxonomy or DEFAULT_TAXONOMY
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    objects = list(detections.objects if isinstance(detections, Detections) else detections)
    if not objects:
        return out
    size = out.size
    thickness, font = line_thickness(*size), label_font(font_size(*size))
    draw = ImageDraw.Draw(out)
    ordered = sorted(((tax.is_jam(o), o) for o in objects), key=lambda t: t[0])  # jam items drawn last, on top
    boxes = []
    for jam, obj in ordered:
        x1, y1, x2, y2 = (round(v) for v in obj.bbox)
        x2, y2 = max(x1 + 1, x2), max(y1 + 1, y2)
        color = JAM_COLOR if jam else MATERIAL_COLOR
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=color, width=min(thickness, (x2 - x1 + 1) // 2 or 1))
        boxes.append((color, obj, x1, y1, y2))
    # text after all outlines (no box line crosses a label), labels after all captions (a long caption
    # never hides which box is which)
    for _, obj, x1, _, y2 in boxes:
        if obj.reason:
            _tag(draw, obj.reason, x1, y2, False, font, CAPTION_BACKGROUND, size)
    for color, obj, x1, y1, _ in boxes:
        label = obj.label if obj.score is None else f"{obj.label} {obj.score:.2f}"
        _tag(draw, label, x1, y1, True, font, color, size)
    return out


def video_fps(path: str | Path) -> Fraction | None:
    """The frame rate a clip declares (average, else guessed), None when it declares none."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    except (av.error.FFmpegError, IndexError):
        return None
    return Fraction(rate) if rate else None


def write_clip(path: str | Path, frames: Iterable[Image.Image], fps: float | Fraction) -> int:
    """Encode RGB frames as an mp4 (H.264 yuv420p, else MPEG-4 Part 2) as they come; returns the frame count.

    The clip takes the first frame's size (padded with black to even sides, as yuv420p needs); later frames
    of another size are resized to it. No frames: nothing is written. The file appears whole or not at all.
    """
    import av
    import numpy as np

    from jamspotter.data.io import atomic_write

    it = iter(frames)
    first = next(it, None)
    if first is None:
        return 0
    w, h = first.size
    even = (w + w % 2, h + h % 2)
    rate = Fraction(fps).limit_denominator(1001)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    count = 0
    with atomic_write(path, "wb") as fh, av.open(fh, "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = even[0], even[1], "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "20", "preset": "veryfast"}
        for frame in itertools.chain([first], it):
            frame = frame.convert("RGB")
            if frame.size != (w, h):
                frame = frame.resize((w, h))
            if even != (w, h):
                canvas = Image.new("RGB", even)
                canvas.paste(frame)
                frame = canvas
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(frame), format="rgb24")):
                container.mux(packet)
            count += 1
        for packet in stream.encode():
            container.mux(packet)
    return count


def _unique(stem: str, ext: str, used: set[str]) -> str:
    """`stem + ext`, or `stem-2 + ext`, `stem-3 + ext` ... when that name is taken already."""
    name, n = stem + ext, 1
    while name.lower() in used:
        n += 1
        name = f"{stem}-{n}{ext}"
    used.add(name.lower())
    return name


def draw_predictions(predictions: Sequence[Sample], folder: str | Path, every_n: int = 1,
                     taxonomy: Taxonomy | None = None) -> list[Path]:
    """Draw each prediction into `folder`: an image per image input (same stem, PNG; JPEG stays JPEG), an mp4
    per clip (its sampled frames at the source rate / `every_n`; frames clips at their fps, else 1 per s).

    Names taken twice get `-2`, `-3` ... Images that cannot be read (recorded as such in their prediction)
    are skipped. Returns the files written, in input order.
    """
    from jamspotter.data.images import open_rgb
    from jamspotter.errors import DataError
    from jamspotter.infer.detector import iter_video_frames

    folder = Path(folder)
    used: set[str] = set()
    written: list[Path] = []
    for pred in predictions:
        if pred.image is not None:
            src = Path(pred.image)
            try:
                image = open_rgb(src)
            except DataError:
                continue
            ext = DRAWN_IMAGE_EXTS.get(src.suffix.lower(), ".png")
            path = folder / _unique(src.stem, ext, used)
            drawn = draw_detections(image, pred.objects, taxonomy=taxonomy)
            # JPEG without chroma subsampling (4:4:4): one-pixel coloured lines keep their colour
            drawn.save(path, **({"quality": 92, "subsampling": 0} if ext == ".jpg" else {}))
            written.append(path)
            continue
        per_frame = pred.frame_objects or []
        indices = pred.meta.get("frame_indices") or list(range(len(per_frame)))
        boxes = dict(zip(indices, per_frame, strict=False))
        if pred.video is not None:
            src = Path(pred.video)
            rate = video_fps(src)
            fps = rate / every_n if rate else DEFAULT_FRAMES_FPS
            frames = (draw_detections(im, boxes.get(i, []), taxonomy=taxonomy)
                      for i, im in iter_video_frames(src, every_n) if i in boxes)
            stem = src.stem
        elif pred.frames:
            fps = pred.fps or DEFAULT_FRAMES_FPS
            frames = (draw_detections(open_rgb(Path(f)), boxes.get(i, []), taxonomy=taxonomy)
                      for i, f in enumerate(pred.frames))
            stem = pred.id.rsplit("/", 1)[-1]
        else:
            continue
        path = folder / _unique(stem, ".mp4", used)
        if write_clip(path, frames, fps):
            written.append(path)
    return written
