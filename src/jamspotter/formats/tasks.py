"""Instruction tasks beyond plain detection: prompt template + target renderer + parser for each.

Model-agnostic task text (what augmentations store in `Sample.qa`) refers to boxes with the
placeholder `<bbox>[x1, y1, x2, y2]</bbox>` in ORIGINAL pixels; rendering for a family rewrites each
placeholder into that family's coordinates, so a `Sample` never holds model-specific text.
In `QATurn.think`, each `<crop>` marks where the next of `QATurn.crops` is called as a tool
(crops without a marker are called at the end of the thinking, in order).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from jamspotter.data.boxes import visible_fraction
from jamspotter.data.records import BoxObject, QATurn, Sample
from jamspotter.data.taxonomy import ALIASES, JAM_CLASSES, MATERIAL_CLASSES, normalise
from jamspotter.errors import DataError
from jamspotter.formats.base import Format
from jamspotter.formats.parse import NUM, RawBox

CROP_MARK = "<crop>"
CROP_TOOL = "crop"  # the name of the crop tool in tool calls
_BOX_REF_RE = re.compile(rf"<bbox>\s*\[?\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*\]?\s*</bbox>")
_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)
_NUM_RE = re.compile(NUM)
_KNOWN = {**ALIASES, **{normalise(c): normalise(c) for c in JAM_CLASSES + MATERIAL_CLASSES}}  # normalised -> class


def fmt_num(v: float) -> str:
    """Short decimal text: 3 -> "3", 0.51234 -> "0.5123" (4 decimals at most)."""
    r = round(float(v), 4)
    return str(int(r)) if r == int(r) else repr(r)


def box_ref(box: Sequence[float]) -> str:
    """Model-agnostic reference to a box in original pixels, for task text stored in a Sample."""
    return "<bbox>[" + ", ".join(fmt_num(v) for v in box) + "]</bbox>"


def resolve_box_refs(fmt: Format, text: str, image_size: tuple[int, int]) -> str:
    """Rewrite every `<bbox>[...]</bbox>` placeholder into the family's own box text.

    A placeholder that is not a box (infinite values, x2 < x1 or y2 < y1) is a DataError naming it.
    """
    def sub(m: re.Match[str]) -> str:
        box = [float(g) for g in m.groups()]
        if not all(math.isfinite(v) for v in box) or box[2] < box[0] or box[3] < box[1]:
            raise DataError(f"region {m.group(0)} is not a box [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2")
        return fmt.write_box(fmt.to_model(box, image_size))

    return _BOX_REF_RE.sub(sub, text)


# ---- counting ------------------------------------------------------------------------------------
def count_question(classes: Sequence[str]) -> str:
    """Ask for a per-class count."""
    return (f"How many of each of these are on the conveyor belt: {', '.join(classes)}? "
            "Answer with one line per class as `class: number`.")


def count_answer(objects: Sequence[BoxObject], classes: Sequence[str]) -> str:
    """`class: n` lines in the asked order (0 for absent classes)."""
    return "\n".join(f"{c}: {sum(o.label == c for o in objects)}" for c in classes)


_COUNT_LINE_RE = re.compile(r"^[ \t\-*•]*[\"']?([A-Za-z][\w \-/&']*?)[\"']?\s*[:=]\s*(\d+)\b", re.M)


def parse_counts(text: str) -> tuple[dict[str, int], list[str]]:
    """`{class: count}` from `class: n` lines or a JSON object. Never raises."""
    if not isinstance(text, str):
        return {}, ["expected text"]
    m = re.search(r"\{[^{}]*\}", text)
    if m:
        try:
            obj = json.loads(m.group(0))
            if isinstance(obj, dict) and obj and all(isinstance(v, int) and not isinstance(v, bool)
                                                     for v in obj.values()):
                return {str(k).strip(): int(v) for k, v in obj.items()}, []
        except ValueError:
            pass
    counts = {m.group(1).strip(): int(m.group(2)) for m in _COUNT_LINE_RE.finditer(text[:100_000])}
    return counts, [] if counts else ["no `class: number` lines found"]


# ---- region checks -------------------------------------------------------------------------------
def region_question(region: Sequence[float]) -> str:
    """Ask what a region holds (stored with a placeholder; rendered per family)."""
    return (f"What is inside the region {box_ref(region)} of the belt? For each object say whether it is fully "
            "or partially inside, with the visible percentage for partial ones. Answer nothing if it is empty.")


def region_status(box: Sequence[float], region: Sequence[float]) -> tuple[str, int] | None:
    """("full", 100) / ("partial", 1..99) / None: how much of `box` the region shows."""
    f = visible_fraction(box, region)
    if f <= 0:
        return None
    if f >= 1.0 - 1e-9:
        return "full", 100
    return "partial", min(99, max(1, round(f * 100)))


def region_answer(objects: Sequence[BoxObject], region: Sequence[float]) -> str:
    """One line per object the region shows, top-to-bottom; `nothing` when it shows none."""
    lines = []
    for o in sorted(objects, key=lambda o: (o.bbox[1], o.bbox[0])):
        st = region_status(o.bbox, region)
        if st is None:
            continue
        lines.append(f"{o.label}: fully inside" if st[0] == "full" else
                     f"{o.label}: partially inside, {st[1]}% visible")
    return "\n".join(lines) if lines else "nothing"


_REGION_LINE_RE = re.compile(
    r"^[\s\-*•]*([^:\n]+?)\s*:\s*(fully|partially)(?:\s+inside)?(?:\s*,?\s*(\d+(?:\.\d+)?)\s*%)?", re.M | re.I)


def parse_region_answer(text: str) -> tuple[list[tuple[str, str, float]], list[str]]:
    """[(label, "full"|"partial", percent)] from a region answer; [] for `nothing`. Never raises."""
    if not isinstance(text, str):
        return [], ["expected text"]
    out, problems = [], []
    for m in _REGION_LINE_RE.finditer(text[:100_000]):
        kind = "full" if m.group(2).lower() == "fully" else "partial"
        pct = 100.0 if kind == "full" else float(m.group(3)) if m.group(3) else float("nan")
        if kind == "partial" and m.group(3) is None:
            problems.append(f"{m.group(1).strip()}: partial without a visible percentage")
        out.append((m.group(1).strip(), kind, pct))
    if not out and not re.search(r"\bnothing\b|\bempty\b|\bnone\b", text, re.I):
        problems.append("no region lines and no `nothing`")
    return out, problems


# ---- classification ------------------------------------------------------------------------------
def render_classification(sample: Sample, classes: Sequence[str], *, crop: bool = False) -> tuple[str, str]:
    """(prompt, target) naming the class of a whole image or of a crop; the prompt lists `classes` only."""
    names = list(classes)
    what = "the item in this crop of the conveyor belt" if crop else "the main item on the conveyor belt"
    return f"What is {what}? Answer with one of: {', '.join(names)}.", sample.label or ""


def parse_classification(text: str, classes: Sequence[str]) -> tuple[str | None, list[str]]:
    """The class a model named: the longest class name or alias in the text (exact answers first). Never raises."""
    if not isinstance(text, str):
        return None, ["expected text"]
    by_norm = {normalise(c): c for c in classes}
    words = normalise(text[:1000]).split()
    for n in range(min(len(words), 4), 0, -1):
        hits: list[str] = []
        for i in range(len(words) - n + 1):
            cand = " ".join(words[i:i + n])
            canon = by_norm.get(cand) or by_norm.get(_KNOWN.get(cand, ""))
            if canon is not None and canon not in hits:
                hits.append(canon)
        if hits:
            return hits[0], [] if len(hits) == 1 else [f"several classes named ({', '.join(hits)}), took {hits[0]!r}"]
    return None, [f"no known class in {text[:60]!r}"]


# ---- think / answer with crop tool calls ---------------------------------------------------------
@dataclass
class VQAText:
    """A rendered or parsed think/answer text; crops in ORIGINAL pixels, `offsets` = where each crop image goes."""

    text: str
    crops: list[list[float]] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)  # index just after each </tool_call>
    spans: list[tuple[int, int]] = field(default_factory=list)  # the <tool_call>...</tool_call> spans
    think: str = ""
    answer: str = ""
    problems: list[str] = field(default_factory=list)


def tool_call(fmt: Format, box: Sequence[float], image_size: tuple[int, int]) -> str:
    """A crop tool call in the family's coordinates (0-1000 or resized pixels), in the format's syntax.

    "json" is TRL's: `<tool_call>\n{"name": "crop", "arguments": {"bbox_2d": [x1, y1, x2, y2]}}\n</tool_call>`;
    "list" is the seed QnA data's `<tool_call>[x1, y1, x2, y2]</tool_call>`. `parse_vqa` reads both.
    """
    values = fmt.to_model(box, image_size)
    if fmt.tool_call == "list":
        return "<tool_call>[" + ", ".join(str(v) for v in values) + "]</tool_call>"
    call = {"name": CROP_TOOL, "arguments": {"bbox_2d": values}}
    return "<tool_call>\n" + json.dumps(call) + "\n</tool_call>"


def tool_call_box(body: str) -> list[float] | None:
    """The [x1, y1, x2, y2] of a tool call's body: TRL's JSON call or a bare list; None if neither."""
    body = body.strip()
    try:
        call = json.loads(body)
    except (ValueError, RecursionError):  # deeply nested brackets exhaust the JSON parser's recursion
        call = None
    if isinstance(call, dict):
        args = call.get("arguments")
        if isinstance(args, str):  # some models write the arguments as a JSON string
            try:
                args = json.loads(args)
            except ValueError:
                args = None
        box = args.get("bbox_2d", args.get("bbox")) if isinstance(args, dict) else None
    elif isinstance(call, list):
        box = call
    else:
        nums = _NUM_RE.findall(body) if body.startswith("[") else []
        box = [float(v) for v in nums] if len(nums) == 4 else None
    if not isinstance(box, list) or len(box) != 4:
        return None
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        return None
    return values if all(abs(v) < 1e12 for v in values) else None


def render_vqa(fmt: Format, turn: QATurn, image_size: tuple[int, int]) -> VQAText:
    """`<think>...</think><answer>...</answer>` with each crop as a tool call; offsets say where crop images go."""
    pieces = (turn.think or "").split(CROP_MARK)
    crops = [c.bbox for c in turn.crops]
    text, offsets, spans = "<think>", [], []
    for i, piece in enumerate(pieces):
        text += resolve_box_refs(fmt, piece, image_size)
        if i < len(pieces) - 1 and i < len(crops):
            start = len(text)
            text += tool_call(fmt, crops[i], image_size)
            spans.append((start, len(text)))
            offsets.append(len(text))
    for box in crops[len(pieces) - 1:]:  # crops without a marker: called at the end of the thinking
        if text and not text.endswith((" ", "\n", ">")):
            text += " "
        start = len(text)
        text += tool_call(fmt, box, image_size)
        spans.append((start, len(text)))
        offsets.append(len(text))
    answer = resolve_box_refs(fmt, turn.answer, image_size)
    text += f"</think><answer>{answer}</answer>"
    return VQAText(text, [list(b) for b in crops], offsets, spans, turn.think or "", answer)


def parse_vqa(fmt: Format, text: str, image_size: tuple[int, int],
              input_size: tuple[int, int] | None = None) -> VQAText:
    """Think, answer and crop calls (ORIGINAL pixels) of a model's think/answer text. Never raises."""
    if not isinstance(text, str):
        return VQAText("", problems=["expected text"])
    out = VQAText(text)
    raws = []
    for m in _TOOL_CALL_RE.finditer(text):
        out.spans.append(m.span())
        out.offsets.append(m.end())
        if not m.group(0).endswith("</tool_call>"):
            out.problems.append(f"tool call at {m.start()} not closed")
        values = tool_call_box(m.group(1))
        if values is None:
            out.problems.append(f"tool call at {m.start()} is not a crop of [x1, y1, x2, y2]")
            out.spans.pop()
            out.offsets.pop()
            continue
        raws.append(RawBox("crop", values, start=m.start()))
    boxes, more = fmt.boxes_from_raw(raws, image_size, input_size) if _valid_size(image_size) else ([], [])
    out.crops = [b.bbox for b in boxes]
    out.problems += more
    think = re.search(r"<think>(.*?)(?:</think>|<answer>|$)", text, re.S)
    answer = re.search(r"<answer>(.*?)(?:</answer>|$)", text, re.S)
    out.think = think.group(1).strip() if think else ""
    if answer:
        out.answer = answer.group(1).strip()
        if "</answer>" not in text:
            out.problems.append("answer not closed")
    else:
        out.answer = text.rsplit("</think>", 1)[-1].strip()
        out.problems.append("no <answer> tag: took the text after the thinking")
    return out


def _valid_size(size: object) -> bool:
    try:
        w, h = size  # type: ignore[misc]
        return int(w) > 0 and int(h) > 0
    except (TypeError, ValueError):
        return False


# ---- numeric sequences (clips) ---------------------------------------------------------------------
def render_sequence(sample: Sample) -> tuple[str, str]:
    """(prompt, target) for a clip's per-step values: `[(v, k), ...]`, or `[v, ...]` for one component."""
    t = sample.target
    if t is None:
        raise ValueError(f"sample {sample.id} has no target")
    width = len(t.values[0]) if t.values else 2
    names = t.names or [f"v{i + 1}" for i in range(width)]
    what = f"For each of the {len(t.values)} steps of this clip, give the {t.kind.replace('_', ' ')}"
    if width == 1:
        prompt = f"{what} ({names[0]}) as a list of numbers: [{names[0]}, ...]."
        return prompt, "[" + ", ".join(fmt_num(row[0]) for row in t.values) + "]"
    tup = "(" + ", ".join(names) + ")"
    prompt = f"{what} as a list of {tup} tuples: [{tup}, ...]."
    target = "[" + ", ".join("(" + ", ".join(fmt_num(v) for v in row) + ")" for row in t.values) + "]"
    return prompt, target


_TUPLE_RE = re.compile(rf"[(\[]\s*({NUM}(?:\s*,\s*{NUM})+)\s*[)\]]")
_FLAT_LIST_RE = re.compile(rf"\[\s*({NUM}(?:\s*,\s*{NUM})*)\s*(?:,\s*)?(\]|$)")


def parse_sequence(text: str, width: int | None = None) -> tuple[list[list[float]], list[str]]:
    """Rows from `[(v, k), ...]` / `[[v, k], ...]` (or `[v, ...]` when width is 1); wrong-width rows dropped.

    Never raises; a truncated last row is dropped and reported."""
    if not isinstance(text, str):
        return [], ["expected text"]
    text = text[:200_000]
    rows, problems = [], []
    if width == 1 or (width is None and not _TUPLE_RE.search(text)):
        m = _FLAT_LIST_RE.search(text)
        if m:
            rows = [[float(v)] for v in _NUM_RE.findall(m.group(1))]
            rows = [r for r in rows if r[0] == r[0] and abs(r[0]) != float("inf")]
            if not m.group(2):
                problems.append("list not closed (truncated output?)")
        return rows, problems if rows else problems + ["no [v, ...] list found"]
    last = 0
    for m in _TUPLE_RE.finditer(text):
        row = [float(v) for v in _NUM_RE.findall(m.group(1))]
        last = m.end()
        if any(v != v or v in (float("inf"), float("-inf")) for v in row):
            problems.append(f"row at {m.start()} has non-finite values")
            continue
        if width is not None and len(row) != width:
            problems.append(f"row at {m.start()} has {len(row)} values, expected {width}")
            continue
        rows.append(row)
    if "(" in text[last:] or not rows:
        problems.append("incomplete last row (truncated output?)" if rows else "no (v, k) rows found")
    return rows, problems


# ---- dispatch for Sample.qa ------------------------------------------------------------------------
def render_qa_turn(fmt: Format, turn: QATurn, sample: Sample) -> tuple[str, str]:
    """(user, assistant) for one stored turn: placeholders resolved; think/answer form when it thinks or crops."""
    needs_size = bool(turn.crops) or "<bbox>" in turn.question + turn.answer + (turn.think or "")
    size = fmt.image_size_of(sample) if needs_size else (1, 1)
    question = resolve_box_refs(fmt, turn.question, size)
    if turn.think is not None or turn.crops:
        return question, render_vqa(fmt, turn, size).text
    return question, resolve_box_refs(fmt, turn.answer, size)
