"""Chat training files -> `Sample.qa` (and `Sample.objects` for the boxes the answers give).

- `conversations` (LLaVA / qwen-vl-finetune / ShareGPT / 2U1): `{"id", "image": str | [str], "video"?,
  "conversations": [{"from": "human"|"user"|"system", "value": "<image>\\n..."}, {"from": "gpt", ...}]}`
- `messages` (Hugging Face / ms-swift / LLaMA-Factory): `{"messages": [{"role": "user", "content":
  "<image>..." | [{"type": "image"}, {"type": "text", "text": ...}]}, ...], "images": [...], "videos": [...]}`

Media: `<image>`/`<video>` placeholders (or image content parts) are removed from the question. Every
image path resolves against the same root (`--images`, else the file's folder); the first is
`Sample.image`, the others go to `meta["images"]` (absolute paths) and, when the placeholders count
one per image, `meta["image_turns"]` records the turn each image's placeholder was in (the chat
exporter puts them back there). A system prompt goes to `meta["system"]`.

Box text in the turns:
- ms-swift grounding (a record with `objects: {"ref": [...], "bbox": [[x1, y1, x2, y2], ...],
  "bbox_type": "real" | "norm1000"}`): the `<ref-object>` / `<bbox>` placeholders of all turns are
  filled in order, `<ref-object>` with the next ref, `<bbox>` with `<bbox>[x1, y1, x2, y2]</bbox>` in
  original pixels (norm1000 scaled by the first image's size). Every box becomes an object labelled
  with the ref written last before it (`object` when none). A 2-number "box" (a point) is not an
  object: its numbers stay in the text as written and `meta["points_as_text"]` counts them.
- Box text a model family writes (Qwen2 box tokens, `bbox_2d` values, `<tool_call>[...]` crops): its
  numbers mean nothing without the family, so the importer marks such samples
  `meta["box_family"] = "unknown"` (chat exports refuse them), and `apply_box_family` rewrites them
  into `<bbox>[x1, y1, x2, y2]</bbox>` references in original pixels once the family is known, and
  adds every box an assistant answer gives (crop tool calls and `<think>` text excepted) to
  `Sample.objects`, read with the family's own parser (`Format.parse_detections`).
- Bare `[x1, y1, x2, y2]` lists (how Qwen2.5-VL / Qwen3-VL render a box reference inside prose, e.g.
  in a question-answer export) are not marked: without a family they stay prose. With `--family
  qwen2.5-vl|qwen3-vl`, `apply_box_family` reads every list of exactly 4 numbers in user and assistant
  turns (outside `<bbox>...</bbox>` references) as that family's box; other numbers (counts, "2.5 m/s",
  a 2-number point) are never touched.

A sample with both: `objects` are its detection labels (evaluation, stats, COCO/YOLO exports, and
the detection example training makes of it when the task mix has vqa off); its qa turns stay as
written and are what chat exports and vqa training use (`train.data.expand_examples` makes a sample
with qa one qa example, never also a detection example), so each answer is trained once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jamspotter.data.importers._common import (
    EntryError,
    ImportContext,
    finite,
    first_key,
    import_records,
    require_dict,
    unique_id,
)
from jamspotter.data.records import BoxObject, QATurn, Sample
from jamspotter.data.taxonomy import DEFAULT_TAXONOMY, Taxonomy
from jamspotter.errors import DataError
from jamspotter.formats.parse import REF_SPAN_RE, has_bare_box_list, has_family_box_text, to_box_refs
from jamspotter.formats.tasks import box_ref, fmt_num

if TYPE_CHECKING:
    from jamspotter.formats.base import Format

BOX_FAMILY = "box_family"  # meta key: the family whose box text the sample's turns still hold
UNKNOWN_FAMILY = "unknown"

_PLACEHOLDER = re.compile(r"<(image|video)>\n?")
_USER = {"human", "user"}
_ASSISTANT = {"gpt", "assistant", "model"}


Turn = tuple[str, str, int]  # (role, text, images its placeholders name)


def _image_count(text: str) -> int:
    return len(re.findall(r"<image>", text))


def _content_text(content: Any) -> tuple[str, int]:
    """Text of a message content (a string or a list of typed parts) and the images it places."""
    if isinstance(content, str):
        return content, _image_count(content)
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict)]
        text = "".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")
        return text, _image_count(text) + sum(p.get("type") in ("image", "image_url") for p in parts)
    raise EntryError(f"message content must be text or a list of parts, got {type(content).__name__}")


def _pair_turns(turns: list[Turn]) -> tuple[list[QATurn], str | None, list[int]]:
    """Turns -> QA turns (user messages up to an assistant reply), system prompt, and each image's QA turn."""
    qa: list[QATurn] = []
    system, question = None, None
    image_turns: list[int] = []
    for k, (role, text, n_images) in enumerate(turns):
        role = role.lower()
        image_turns += [len(qa)] * n_images
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
    return qa, system, [min(t, len(qa) - 1) for t in image_turns]


def _media(rec: dict, image_keys: tuple[str, ...], video_keys: tuple[str, ...]) -> tuple[list[str], list[str]]:
    def as_list(v: Any) -> list[str]:
        if v is None:
            return []
        return [str(x if not isinstance(x, dict) else first_key(x, "path", "url")) for x in
                (v if isinstance(v, list) else [v])]
    return as_list(first_key(rec, *image_keys, required=False)), as_list(first_key(rec, *video_keys, required=False))


_SWIFT_PLACEHOLDER_RE = re.compile(r"<ref-object>|<bbox>(?!\s*\[)")  # not our own `<bbox>[...]</bbox>`
SWIFT_BBOX_TYPES = ("real", "norm1000")


def _grounding(rec: dict, turns: list[Turn], size: tuple[int | None, int | None],
               ctx: ImportContext) -> tuple[list[Turn], list[BoxObject], int]:
    """ms-swift `objects` filled into the turns' `<ref-object>`/`<bbox>` placeholders, in order.

    Returns the turns, one object per box (original pixels, labelled with the last ref before it) and
    how many points (2 numbers) were kept as text. Placeholder and entry counts must match.
    """
    objs = require_dict(rec["objects"])
    refs = objs.get("ref") or []
    refs = [refs] if isinstance(refs, str) else refs
    boxes = objs.get("bbox") or []
    if boxes and not isinstance(boxes[0], list):
        boxes = [boxes]  # one box written flat
    kind = objs.get("bbox_type", rec.get("bbox_type")) or "real"
    if kind not in SWIFT_BBOX_TYPES:
        raise EntryError(f"objects.bbox_type {kind!r} not supported (use {' or '.join(SWIFT_BBOX_TYPES)})")
    w, h = size
    state = {"ref": 0, "box": 0, "label": "", "points": 0}
    objects: list[BoxObject] = []

    def fill(m: re.Match[str]) -> str:
        if m.group(0) == "<ref-object>":
            if state["ref"] >= len(refs):
                raise EntryError(f"more <ref-object> placeholders than the {len(refs)} entries of objects.ref")
            state["label"] = str(refs[state["ref"]]).strip()
            state["ref"] += 1
            return str(refs[state["ref"] - 1])
        j = state["box"]
        if j >= len(boxes):
            raise EntryError(f"more <bbox> placeholders than the {len(boxes)} entries of objects.bbox")
        state["box"] += 1
        if not isinstance(boxes[j], list) or len(boxes[j]) not in (2, 4):
            raise EntryError(f"objects.bbox[{j}] must be [x1, y1, x2, y2] (or a point [x, y])")
        values = finite(boxes[j], f"objects.bbox[{j}]")
        if len(values) == 2:  # a point (click): not a box; its numbers stay as written
            state["points"] += 1
            return "[" + ", ".join(fmt_num(v) for v in values) + "]"
        if kind == "norm1000":
            if not w or not h:
                raise EntryError("image size unknown (missing image?): cannot scale norm1000 objects.bbox to pixels")
            values = [values[0] * w / 1000, values[1] * h / 1000, values[2] * w / 1000, values[3] * h / 1000]
        # one ref per box pairs them by position (a JSON answer names its label after the box); otherwise a box
        # takes the last ref written before it ("<ref-object><bbox><bbox>": one label, several boxes)
        label = str(refs[j]).strip() if len(refs) == len(boxes) else str(state["label"])
        obj = ctx.box(label or "object", values, w, h)
        objects.append(obj)
        return box_ref(obj.bbox)

    filled = [(role, _SWIFT_PLACEHOLDER_RE.sub(fill, text), n) for role, text, n in turns]
    if state["box"] != len(boxes) or state["ref"] != len(refs):
        raise EntryError(f"objects has {len(refs)} refs and {len(boxes)} boxes but the turns hold {state['ref']} "
                         f"<ref-object> and {state['box']} <bbox> placeholders")
    return filled, objects, int(state["points"])


def _sample(rec: dict, i: int, layout: str, path: Path, turns: list[Turn], media: tuple[list, list],
            ctx: ImportContext, seen: set[str]) -> Sample:
    images, videos = media
    image = video = w = h = None
    flags: set[str] = set()
    meta: dict[str, Any] = {"chat_format": layout}
    if images:
        resolved = []
        for ref in images:
            p, iw, ih, more = ctx.image(ref, path.parent)
            resolved.append(p)
            flags |= set(more)
            if image is None:
                image, w, h = p, iw, ih
        if len(resolved) > 1:
            meta["images"] = resolved[1:]
    objects: list[BoxObject] = []
    if rec.get("objects") is not None:
        turns, objects, points = _grounding(rec, turns, (w, h), ctx)
        if points:
            meta["points_as_text"] = points
    qa, system, image_turns = _pair_turns(turns)
    if system:
        meta["system"] = system
    if len(images) > 1 and len(image_turns) == len(images) and any(image_turns):
        meta["image_turns"] = image_turns
    if any(has_family_box_text(t.question) or has_family_box_text(t.answer) for t in qa):
        meta[BOX_FAMILY] = UNKNOWN_FAMILY
    if videos:
        ref = Path(videos[0])
        video = str(ref if ref.is_absolute() else (ctx.images or path.parent) / ref)
        if not Path(video).exists():
            if not ctx.allow_missing_images:
                raise EntryError(f"video {video} not found (use --allow-missing-images to keep it)")
            flags.add("missing_image")
    return Sample(id=unique_id(str(rec.get("id") or f"{layout}-{i:06d}"), seen), image=image, video=video,
                  width=w, height=h, objects=objects, qa=qa, flags=sorted(flags), meta=meta,
                  source=f"{layout}:{path.name}#{i}")


def _conversation_turns(rec: dict) -> list[Turn]:
    return [(str(require_dict(t)["from"]), str(t["value"]), _image_count(str(t["value"])))
            for t in rec["conversations"]]


def _message_turns(rec: dict) -> list[Turn]:
    return [(str(require_dict(m)["role"]), *_content_text(m["content"])) for m in rec["messages"]]


def _import_chat(src: str | Path, ctx: ImportContext, layout: str, turns: Callable[[dict], list[Turn]],
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
                     max_pixels: int | None = None, skip_invalid: bool = False,
                     taxonomy: Taxonomy | None = None, trainer: str | None = None) -> tuple[list[Sample], list[str]]:
    """Rewrite the box text of samples marked `box_family: unknown` as written by `family`, into references.

    Each box becomes `<bbox>[x1, y1, x2, y2]</bbox>` in ORIGINAL pixels, converted with the family's
    coordinates (Qwen2.5-VL: pixels of the image resized with the family's default pixel budget, or
    `min_pixels`/`max_pixels`), and the mark is removed. For a family that writes boxes in prose as bare
    lists (Qwen2.5-VL, Qwen3-VL), samples whose turns hold lists of exactly 4 numbers are converted too,
    each such list read as a box. Every box an assistant answer gives (not crop
    tool calls, not `<think>` text) is added to `objects` (exact repeats once), its jam_risk from
    `taxonomy` (default: the built-in one). Other samples pass unchanged. A sample that
    cannot be converted (no image size, box text in another form, boxes off the family's grid) raises
    one-line `DataError`, or with `skip_invalid` is left out and its reason returned.
    `trainer` (a `jamspotter.data.trainers` name) reads Qwen2.5-VL pixels as that trainer resized the image
    (LLaMA-Factory and ms-swift shrink it before smart_resize); the budget then overrides its default.
    """
    from jamspotter.data.trainers import get_trainer

    fmt, _ = get_trainer(trainer or "plain").format(family, min_pixels=min_pixels, max_pixels=max_pixels)
    taxonomy = taxonomy or DEFAULT_TAXONOMY
    bare = fmt.write_box([0, 0, 0, 0]).startswith("[")  # the family refers to boxes in prose as bare lists
    out: list[Sample] = []
    skipped: list[str] = []
    for s in samples:
        lists = bare and any(has_bare_box_list(t.question) or has_bare_box_list(t.answer) for t in s.qa)
        if s.meta.get(BOX_FAMILY) != UNKNOWN_FAMILY and not lists:
            out.append(s)
            continue
        try:
            out.append(_converted(s, fmt, taxonomy, bare))
        except DataError as e:
            if not skip_invalid:
                raise
            skipped.append(str(e))
    return out, skipped




def _converted(s: Sample, fmt: Format, taxonomy: Taxonomy, bare_lists: bool) -> Sample:
    where = f"sample {s.id}" + (f" ({s.source})" if s.source else "")
    if not s.width or not s.height:
        raise DataError(f"{where}: image size unknown (missing image?), cannot convert its {fmt.family} box text")
    qa = []
    for k, turn in enumerate(s.qa, 1):
        texts = []
        for text in (turn.question, turn.answer):
            new, problems = to_box_refs(fmt, text, (s.width, s.height), bare_lists)
            if problems:
                raise DataError(f"{where}, turn {k}: {problems[0]}")
            texts.append(new)
        qa.append(turn.model_copy(update={"question": texts[0], "answer": texts[1]}))
    objects = list(s.objects)
    seen = {(o.label, tuple(o.bbox)) for o in objects}
    for turn in s.qa:
        answer = REF_SPAN_RE.sub(lambda m: " " * len(m.group(0)), turn.answer)  # references are original pixels
        boxes, _ = fmt.parse_detections(answer, (s.width, s.height))
        for o in boxes:
            bbox = [round(v, 4) for v in o.bbox]  # the precision of the `<bbox>` references in the text
            if (o.label, tuple(bbox)) not in seen:
                seen.add((o.label, tuple(bbox)))
                objects.append(o.model_copy(update={"bbox": bbox, "jam_risk": taxonomy.jam_risk(o.label)}))
    meta = {k: v for k, v in s.meta.items() if k != BOX_FAMILY}
    return s.model_copy(update={"qa": qa, "meta": meta, "objects": objects})
