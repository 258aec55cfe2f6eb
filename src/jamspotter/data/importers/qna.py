"""The seed QnA JSONL (think-with-crops) -> `Sample.qa`.

Expected line shape (JSONL, or one JSON list of such objects)::

    {"id": "q-0001",                      # optional
     "image": "images/belt-0001.jpg",     # or "image_path"; relative to --images or the file's folder
     "question": "Is anything on the belt likely to wrap around the screens?",   # or "problem"/"prompt"
     "answer": "<think>A thin line crosses the left half. {Crop rope [12, 40, 300, 95]} It is a frayed
                rope.</think><answer>Yes: a rope on the left.</answer>"}          # or "response"/"solution"

Several turns go in `"turns": [{"question": ..., "answer": ...}, ...]` instead. A crop call is
`{Crop <label> [x1, y1, x2, y2]}` (label optional) in ORIGINAL image pixels. In `<think>` it is a
tool call: it becomes the marker `<crop>` in `QATurn.think` and its box goes, in order, to
`QATurn.crops` (the formats layer writes the family's tool-call text there). In `<answer>` it is a
reference, not a call: it becomes `label <bbox>[x1, y1, x2, y2]</bbox>`, the model-agnostic box
placeholder the formats layer rewrites. Without `<answer>` tags, the text after `</think>` is the answer.
"""

from __future__ import annotations

import re
from pathlib import Path

from jamspotter.data.importers._common import (
    EntryError,
    ImportContext,
    first_key,
    import_records,
    require_dict,
    unique_id,
)
from jamspotter.data.records import Crop, QATurn, Sample

_NUM = r"\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*"
CROP_CALL_RE = re.compile(r"\{\s*Crop\b\s*([^\[\]{}]*?)\s*\[" + ",".join([_NUM] * 4) + r"\]\s*\}")
_THINK_RE = re.compile(r"<think>(.*?)(?:</think>|$)", re.S)
CROP_MARK = "<crop>"  # same marker as jamspotter.formats.tasks.CROP_MARK (data must not import formats)
_ANSWER_RE = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S)


def _crop_of(m: re.Match) -> Crop:
    return Crop(label=m.group(1).strip() or None, bbox=[float(m.group(i)) for i in range(2, 6)])


def parse_crop_calls(text: str) -> list[tuple[Crop, tuple[int, int]]]:
    """All `{Crop label [x1, y1, x2, y2]}` calls in `text` as `(Crop, (start, end))`, in order."""
    return [(_crop_of(m), m.span()) for m in CROP_CALL_RE.finditer(text)]


def split_think_answer(text: str) -> tuple[str | None, str]:
    """`(think, answer)` from `<think>...</think><answer>...</answer>` text (tags optional)."""
    think_m = _THINK_RE.search(text)
    answer_m = _ANSWER_RE.search(text)
    think = think_m.group(1).strip() if think_m else None
    if answer_m:
        answer = answer_m.group(1).strip()
    elif think_m:
        answer = text[think_m.end():].strip()
    else:
        answer = text.strip()
    return think, answer


def qa_turn(question: str, text: str, ctx: ImportContext, width: int | None, height: int | None) -> QATurn:
    """One turn with its crops checked against the image."""
    if not isinstance(question, str) or not isinstance(text, str):
        raise EntryError("question and answer must be strings")
    think, answer = split_think_answer(text)
    crops: list[Crop] = []

    def checked(crop: Crop) -> Crop:
        try:
            box = ctx.box(crop.label or "crop", crop.bbox, width, height).bbox
        except EntryError as e:
            raise EntryError(f"crop call {len(crops) + 1} {crop.bbox}: {e}") from None
        return Crop(label=crop.label, bbox=box)

    def to_marker(m: re.Match) -> str:
        crops.append(checked(_crop_of(m)))
        return CROP_MARK

    def to_ref(m: re.Match) -> str:
        crop = checked(_crop_of(m))
        ref = "<bbox>[" + ", ".join(f"{v:g}" for v in crop.bbox) + "]</bbox>"
        return f"{crop.label} {ref}" if crop.label else ref

    if think is not None:
        think = CROP_CALL_RE.sub(to_marker, think)
    answer = CROP_CALL_RE.sub(to_ref, answer)
    return QATurn(question=question.strip(), answer=answer, think=think, crops=crops)


def import_qna(src: str | Path, ctx: ImportContext) -> list[Sample]:
    """Read the QnA JSONL (shape in the module docstring)."""
    path = Path(src)

    def build(rec: dict, i: int, seen: set[str]) -> Sample:
        image, w, h, flags = ctx.image(first_key(rec, "image", "image_path"), path.parent,
                                       rec.get("width"), rec.get("height"))
        pairs = rec.get("turns", [rec])
        turns = []
        for t, pair in enumerate(pairs):
            try:
                pair = require_dict(pair)
                turns.append(qa_turn(first_key(pair, "question", "problem", "prompt", "query"),
                                     first_key(pair, "answer", "response", "solution"), ctx, w, h))
            except EntryError as e:
                raise EntryError(f"turn {t + 1}: {e}" if "turns" in rec else str(e)) from None
        return Sample(id=unique_id(str(rec.get("id") or f"qna-{i:06d}"), seen), image=image, width=w,
                      height=h, qa=turns, flags=flags, source=f"qna:{path.name}#{i}")

    return import_records(path, ctx, build)
