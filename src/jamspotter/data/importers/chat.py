"""Chat training files -> `Sample.qa`.

- `conversations` (LLaVA / qwen-vl-finetune / ShareGPT): `{"id", "image": str | [str], "video"?,
  "conversations": [{"from": "human"|"user"|"system", "value": "<image>\\n..."}, {"from": "gpt", ...}]}`
- `messages` (Hugging Face / ms-swift / LLaMA-Factory): `{"messages": [{"role": "user", "content":
  "<image>..." | [{"type": "image"}, {"type": "text", "text": ...}]}, ...], "images": [...], "videos": [...]}`

`<image>`/`<video>` placeholders are removed from the question; a system prompt goes to
`meta["system"]`, further images to `meta["images"]`; `source` names the file, entry and layout.
Turn text is kept as written, except box text a model family writes (Qwen2 box tokens, `bbox_2d`
values, `<tool_call>[...]` crops): its numbers mean nothing without the family, so the importer marks
such samples `meta["box_family"] = "unknown"` (chat exports refuse them), and `apply_box_family`
rewrites them into `<bbox>[x1, y1, x2, y2]</bbox>` references in original pixels once the family is known.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jamspotter.data.importers._common import (
    EntryError,
    ImportContext,
    first_key,
    import_records,
    require_dict,
    unique_id,
)
from jamspotter.data.records import QATurn, Sample
from jamspotter.errors import DataError
from jamspotter.formats.parse import has_family_box_text, to_box_refs

if TYPE_CHECKING:
    from jamspotter.formats.base import Format

BOX_FAMILY = "box_family"  # meta key: the family whose box text the sample's turns still hold
UNKNOWN_FAMILY = "unknown"

_PLACEHOLDER = re.compile(r"<(image|video)>\n?")
_USER = {"human", "user"}
_ASSISTANT = {"gpt", "assistant", "model"}


def _content_text(content: Any) -> str:
    """Text of a message content: a string or a list of typed parts (images dropped)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise EntryError(f"message content must be text or a list of parts, got {type(content).__name__}")


def _pair_turns(turns: list[tuple[str, str]]) -> tuple[list[QATurn], str | None]:
    """(role, text) list -> QA turns (a user message followed by an assistant reply) + system prompt."""
    qa, system, question = [], None, None
    for k, (role, text) in enumerate(turns):
        role = role.lower()
        if role == "system":
            system = text
        elif role in _USER:
            question = text if question is None else f"{question}\n{text}"
        elif role in _ASSISTANT:
            qa.append(QATurn(question=_PLACEHOLDER.sub("", question or "").strip(), answer=text))
            question = None
        else:
            raise EntryError(f"turn {k + 1}: unknown role {role!r}")
    if not qa:
        raise EntryError("no assistant reply in the conversation")
    return qa, system


def _media(rec: dict, image_keys: tuple[str, ...], video_keys: tuple[str, ...]) -> tuple[list[str], list[str]]:
    def as_list(v: Any) -> list[str]:
        if v is None:
            return []
        return [str(x if not isinstance(x, dict) else first_key(x, "path", "url")) for x in
                (v if isinstance(v, list) else [v])]
    return as_list(first_key(rec, *image_keys, required=False)), as_list(first_key(rec, *video_keys, required=False))


def _sample(rec: dict, i: int, layout: str, path: Path, turns: list[tuple[str, str]], media: tuple[list, list],
            ctx: ImportContext, seen: set[str]) -> Sample:
    qa, system = _pair_turns(turns)
    images, videos = media
    image = video = w = h = None
    flags: list[str] = []
    meta: dict[str, Any] = {"chat_format": layout}
    if system:
        meta["system"] = system
    if any(has_family_box_text(t.question) or has_family_box_text(t.answer) for t in qa):
        meta[BOX_FAMILY] = UNKNOWN_FAMILY
    if images:
        image, w, h, flags = ctx.image(images[0], path.parent)
        if len(images) > 1:
            meta["images"] = images[1:]
    if videos:
        ref = Path(videos[0])
        video = str(ref if ref.is_absolute() else (ctx.images or path.parent) / ref)
        if not Path(video).exists():
            if not ctx.allow_missing_images:
                raise EntryError(f"video {video} not found (use --allow-missing-images to keep it)")
            flags = sorted(set(flags) | {"missing_image"})
    return Sample(id=unique_id(str(rec.get("id") or f"{layout}-{i:06d}"), seen), image=image, video=video,
                  width=w, height=h, qa=qa, flags=flags, meta=meta, source=f"{layout}:{path.name}#{i}")


def _conversation_turns(rec: dict) -> list[tuple[str, str]]:
    return [(str(require_dict(t)["from"]), str(t["value"])) for t in rec["conversations"]]


def _message_turns(rec: dict) -> list[tuple[str, str]]:
    return [(str(require_dict(m)["role"]), _content_text(m["content"])) for m in rec["messages"]]


def _import_chat(src: str | Path, ctx: ImportContext, layout: str, turns: Callable[[dict], list[tuple[str, str]]],
                 image_keys: tuple[str, ...], video_keys: tuple[str, ...]) -> list[Sample]:
    """One sample per record: `turns(rec)` reads its (role, text) messages, the keys its media."""
    path = Path(src)

    def build(rec: dict, i: int, seen: set[str]) -> Sample:
        return _sample(rec, i, layout, path, turns(rec), _media(rec, image_keys, video_keys), ctx, seen)

    return import_records(path, ctx, build)


def import_conversations(src: str | Path, ctx: ImportContext) -> list[Sample]:
    """Read a LLaVA-style `conversations` JSON / JSONL."""
    return _import_chat(src, ctx, "conversations", _conversation_turns, ("image", "images"), ("video", "videos"))


def import_messages(src: str | Path, ctx: ImportContext) -> list[Sample]:
    """Read a `messages` + `images` JSON / JSONL (HF, ms-swift, LLaMA-Factory)."""
    return _import_chat(src, ctx, "messages", _message_turns, ("images", "image"), ("videos", "video"))


def apply_box_family(samples: Sequence[Sample], family: str, *, min_pixels: int | None = None,
                     max_pixels: int | None = None, skip_invalid: bool = False) -> tuple[list[Sample], list[str]]:
    """Rewrite the box text of samples marked `box_family: unknown` as written by `family`, into references.

    Each box becomes `<bbox>[x1, y1, x2, y2]</bbox>` in ORIGINAL pixels, converted with the family's
    coordinates (Qwen2.5-VL: pixels of the image resized with the family's default pixel budget, or
    `min_pixels`/`max_pixels`), and the mark is removed. Other samples pass unchanged. A sample that
    cannot be converted (no image size, box text in another form, boxes off the family's grid) raises
    one-line `DataError`, or with `skip_invalid` is left out and its reason returned.
    """
    from jamspotter.formats import get_format

    fmt = get_format(family, min_pixels=min_pixels, max_pixels=max_pixels)
    out: list[Sample] = []
    skipped: list[str] = []
    for s in samples:
        if s.meta.get(BOX_FAMILY) != UNKNOWN_FAMILY:
            out.append(s)
            continue
        try:
            out.append(_converted(s, fmt))
        except DataError as e:
            if not skip_invalid:
                raise
            skipped.append(str(e))
    return out, skipped


def _converted(s: Sample, fmt: Format) -> Sample:
    where = f"sample {s.id}" + (f" ({s.source})" if s.source else "")
    if not s.width or not s.height:
        raise DataError(f"{where}: image size unknown (missing image?), cannot convert its {fmt.family} box text")
    qa = []
    for k, turn in enumerate(s.qa, 1):
        texts = []
        for text in (turn.question, turn.answer):
            new, problems = to_box_refs(fmt, text, (s.width, s.height))
            if problems:
                raise DataError(f"{where}, turn {k}: {problems[0]}")
            texts.append(new)
        qa.append(turn.model_copy(update={"question": texts[0], "answer": texts[1]}))
    meta = {k: v for k, v in s.meta.items() if k != BOX_FAMILY}
    return s.model_copy(update={"qa": qa, "meta": meta})
