"""Read boxes out of whatever a Qwen-VL model wrote, in the model's own coordinates. Never raises.

What is read, in this order (each stage masks what it used so nothing is read twice):
1. the Qwen2-VL token form `<|object_ref_start|>rope<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>`;
2. JSON objects anywhere in the text (fenced or bare, inside wrappers, truncated lists keep their
   complete items; single quotes, trailing commas, `bbox`/`box` for `bbox_2d`, extra keys);
3. only when stages 1-2 found no box and no ```json block: plain `label(x1,y1),(x2,y2)` or
   `label: [x1, y1, x2, y2]` text.
Never read: the `<think>` part of a think/answer text, `<tool_call>` crop requests, and an object the
text ends inside (a truncated last item is dropped and reported, not re-read by a later stage).
Coordinate systems are the caller's business (see `jamspotter.formats.base.Format`).

`family_box_texts` / `to_box_refs` find the box text a family writes inside chat text (training
files made for one family) and rewrite it into the family-neutral `<bbox>[x1, y1, x2, y2]</bbox>`
reference in original pixels.
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jamspotter.formats.base import Format

MAX_TEXT = 200_000  # characters read; longer outputs are cut (and reported)
BOX_KEYS = ("bbox_2d", "bbox", "box_2d", "box", "bbox2d", "bndbox", "coordinates", "xyxy")
POINT_KEYS = ("point_2d", "point", "points")
LABEL_KEYS = ("label", "name", "class", "category", "object", "text")
SCORE_KEYS = ("score", "confidence", "conf")
NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUM_RE = re.compile(NUM)
_TOKEN_RE = re.compile(
    r"<\|object_ref_start\|>(?P<ref>[^<]*)(?:<\|object_ref_end\|>)?"
    r"|<\|box_start\|>(?P<body>[^<]*)(?P<end><\|box_end\|>)?"
)
_PAIR = rf"\(\s*({NUM})\s*,\s*({NUM})\s*\)"
_PLAIN_PAIRS_RE = re.compile(rf"{_PAIR}\s*(?:,|-|to)?\s*{_PAIR}")
_BOX4 = rf"\[\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*\]"  # [x1, y1, x2, y2]
_PLAIN_LIST_RE = re.compile(_BOX4)
_SPECIALS_RE = re.compile(r"[{}\"'\\\\]")
_TOOL_CALL_SPAN_RE = re.compile(r"<tool_call>.*?(?:</tool_call>|$)", re.S)
_THINK_SPAN_RE = re.compile(r"<think>.*?(</think>|(?=<answer>)|$)", re.S)
_JSON_FENCE_RE = re.compile(r"```\s*json", re.I)
_SAYS_EMPTY_RE = re.compile(r"\[\s*\]|\b(?:no|none|nothing)\b", re.I)
_LABEL_TAIL_RE = re.compile(r"([A-Za-z][A-Za-z0-9 _\-/&']{0,60})[\s:=\"'`*]*$")
_STOP_WORDS = {"and", "at", "in", "is", "located", "box", "bbox", "bbox_2d", "the", "a", "an", "of", "with",
               "coordinates", "position", "region", "found"}


@dataclass
class RawBox:
    """A box as written by the model: 4 numbers in the model's coordinates, plus where it was found."""

    label: str
    values: list[float]
    reason: str | None = None
    score: float | None = None
    start: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _finite(values: list[Any]) -> list[float] | None:
    """Floats when all values are finite numbers (or numeric strings); else None."""
    out = []
    for v in values:
        if isinstance(v, bool):
            return None
        if isinstance(v, str):
            m = _NUM_RE.fullmatch(v.strip())
            if not m:
                return None
            v = m.group(0)
        try:
            f = float(v)
        except (TypeError, ValueError, OverflowError):
            return None
        if not math.isfinite(f):
            return None
        out.append(f)
    return out


def _flatten(v: Any) -> list[Any] | None:
    """[x1, y1, x2, y2], [[x1, y1], [x2, y2]], "x1,y1,x2,y2" or {x1:..} to a flat list."""
    if isinstance(v, str):
        return _NUM_RE.findall(v)
    if isinstance(v, dict):
        keys = [("x1", "y1", "x2", "y2"), ("xmin", "ymin", "xmax", "ymax"), ("left", "top", "right", "bottom")]
        for ks in keys:
            if all(k in v for k in ks):
                return [v[k] for k in ks]
        return None
    if isinstance(v, list | tuple):
        flat: list[Any] = []
        for x in v:
            flat.extend(x if isinstance(x, list | tuple) else [x])
        return flat
    return None


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    """Blank out used spans (same length, so offsets stay valid)."""
    if not spans:
        return text
    chars = list(text)
    for a, b in spans:
        chars[a:b] = " " * (b - a)
    return "".join(chars)


def _token_boxes(text: str, out: list[RawBox], problems: list[str]) -> list[tuple[int, int]]:
    """Stage 1: the Qwen2-VL special-token form. Returns the spans it used."""
    spans: list[tuple[int, int]] = []
    label = ""
    for m in _TOKEN_RE.finditer(text):
        spans.append(m.span())
        if m.group("ref") is not None:
            label = m.group("ref").strip()
            continue
        nums = _finite(_NUM_RE.findall(m.group("body")))
        if m.group("end") is None:
            if m.end() >= len(text.rstrip()):  # cut off mid-box: its last number may be incomplete
                problems.append(f"box at {m.start()} cut off before <|box_end|> (truncated output): dropped")
                continue
            problems.append(f"box at {m.start()} has no <|box_end|>")
        if nums is None or len(nums) != 4:
            kind = "a point" if nums is not None and len(nums) == 2 else f"{len(nums or [])} numbers"
            problems.append(f"box at {m.start()} ignored: {kind} instead of (x1,y1),(x2,y2)")
            continue
        box_label = label or _label_before(text, m.start())
        tail = text[m.end():].split("\n", 1)[0]
        tail_stop = tail.find("<|")
        tail = (tail[:tail_stop] if tail_stop >= 0 else tail).strip(" \t:-–—")
        reason = tail[7:].strip() if tail.lower().startswith("reason:") else tail
        if reason:
            spans.append((m.end(), m.end() + len(text[m.end():].split("\n", 1)[0])))
        out.append(RawBox(box_label, nums, reason or None, start=m.start()))
    return spans


def _brace_pairs(text: str) -> tuple[list[tuple[int, int]], list[int]]:
    """Complete `{...}` spans (string-aware) not inside another complete one, and where each `{` left open starts.

    A complete object inside one that never closes (a truncated wrapper) is returned too.
    """
    closed: list[tuple[int, int]] = []
    stack: list[int] = []
    quote = ""
    skip_to = 0  # index after an escaped character inside a string
    for m in _SPECIALS_RE.finditer(text):
        j = m.start()
        if j < skip_to:
            continue
        c = text[j]
        if quote:
            if c == "\\":
                skip_to = j + 2
            elif c == quote:
                quote = ""
        elif stack and (c == '"' or (c == "'" and _prev_nonspace(text, j) in "{[,:")):  # prose apostrophes open nothing
            quote = c
        elif c == "{":
            stack.append(j)
        elif c == "}" and stack:
            closed.append((stack.pop(), j + 1))
    closed.sort()
    pairs: list[tuple[int, int]] = []
    for a, b in closed:
        if not pairs or a >= pairs[-1][1]:
            pairs.append((a, b))
    return pairs, stack


def _prev_nonspace(text: str, j: int) -> str:
    k = j - 1
    while k >= 0 and text[k] in " \t\r\n":
        k -= 1
    return text[k] if k >= 0 else ""


_TRAILING_COMMA_RE = re.compile(r",\s*([}\]])")
_KEY_RE = re.compile(r"[\"']?([A-Za-z_][A-Za-z0-9_]*)[\"']?\s*:\s*")
_OBJECT_START_RE = re.compile(r"\{\s*(?:[\"']|[A-Za-z_][A-Za-z0-9_]*\s*(?::|$)|$)")  # `{"k`, `{k:`, `{k<end>`


def _load_object(s: str) -> Any:
    """json, then Python-literal (single quotes), then trailing-comma/unquoted-key repairs; None if all fail."""
    for attempt in (s, _TRAILING_COMMA_RE.sub(r"\1", s)):
        try:
            return json.loads(attempt)
        except (ValueError, RecursionError):
            pass
        if len(attempt) < 20_000:
            try:
                fixed = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", attempt)))
                with warnings.catch_warnings():  # odd escapes in model text warn; they are not our problem
                    warnings.simplefilter("ignore")
                    return ast.literal_eval(fixed)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                pass
    return None


def _regex_object(s: str) -> dict[str, Any] | None:
    """Last resort for a broken object: pull `key: [numbers]` and `key: "text"` pairs with regexes."""
    obj: dict[str, Any] = {}
    for m in _KEY_RE.finditer(s):
        key, rest = m.group(1), s[m.end():]
        if rest.startswith("["):
            close = rest.find("]")
            inner = rest[1:close] if close >= 0 else ""
            if inner.count("[") and close >= 0:  # nested pairs [[x1, y1], [x2, y2]]
                close2 = rest.find("]", close + 1)
                inner = rest[1:close2] if close2 >= 0 else inner
            obj[key] = _NUM_RE.findall(inner)
        elif rest[:1] in "\"'":
            end = rest.find(rest[0], 1)
            if end > 0:
                obj[key] = rest[1:end]
        else:
            num = _NUM_RE.match(rest)
            if num:
                obj[key] = num.group(0)
    return obj or None


def _item_from_dict(d: dict[str, Any], start: int, problems: list[str]) -> RawBox | None:
    """A box from one parsed JSON object, or None (with a problem when it looked like one)."""
    lower = {str(k).lower(): v for k, v in d.items()}
    label_raw = next((lower[k] for k in LABEL_KEYS if k in lower and isinstance(lower[k], str | int | float)), "")
    label = str(label_raw).strip()
    box_key = next((k for k in BOX_KEYS if k in lower), None)
    if box_key is None:
        point_key = next((k for k in POINT_KEYS if k in lower), None)
        if point_key is not None:
            problems.append(f"item at {start} has {point_key} (a point, not a box): ignored")
        return None
    flat = _flatten(lower[box_key])
    nums = _finite(flat) if flat is not None else None
    if nums is None or len(nums) != 4:
        problems.append(f"item at {start}: {box_key} is not 4 finite numbers: {str(lower[box_key])[:60]!r}")
        return None
    if box_key != "bbox_2d":
        problems.append(f"item at {start} uses {box_key!r} instead of 'bbox_2d'")
    if not label:
        problems.append(f"item at {start} has no label")
    reason = lower.get("reason")
    score_v = next((lower[k] for k in SCORE_KEYS if k in lower), None)
    score = _finite([score_v]) if score_v is not None else None
    used = {box_key, "reason", *LABEL_KEYS, *SCORE_KEYS}
    extra = {str(k): v for k, v in d.items() if str(k).lower() not in used and _jsonable(v)}
    return RawBox(label, nums, str(reason).strip() if reason else None, score[0] if score else None, start, extra)


def _jsonable(v: Any) -> bool:
    """Extra keys are kept only when they survive JSON (literal_eval can produce bytes, sets, complex)."""
    try:
        json.dumps(v, allow_nan=False)
        return True
    except (TypeError, ValueError, RecursionError):
        return False


def _walk(v: Any, start: int, out: list[RawBox], problems: list[str], depth: int = 0) -> int:
    """Collect boxes from a parsed JSON value; returns how many it found."""
    if depth > 20:
        return 0
    found = 0
    if isinstance(v, dict):
        item = _item_from_dict(v, start, problems)
        if item is not None:
            out.append(item)
            return 1
        for x in v.values():
            found += _walk(x, start, out, problems, depth + 1)
    elif isinstance(v, list):
        for x in v:
            found += _walk(x, start, out, problems, depth + 1)
    return found


def _json_boxes(text: str, out: list[RawBox], problems: list[str]) -> list[tuple[int, int]]:
    """Stage 2: every outermost JSON object; broken ones are searched for complete inner objects.

    An object the text ends inside (the first unclosed `{` that opens a key or nothing) is dropped and
    its whole tail returned as used, so no later stage reads the numbers it holds.
    """
    spans: list[tuple[int, int]] = []
    todo, unclosed = _brace_pairs(text)
    cut = next((j for j in unclosed if _OBJECT_START_RE.match(text, j)), None)
    if cut is not None:
        problems.append(f"item at {cut} cut off (truncated output?): dropped")
        spans.append((cut, len(text)))
    budget = 20 * len(text) + 100_000  # characters examined; deep nesting would otherwise cost O(n^2)
    while todo:
        a, b = todo.pop(0)
        chunk = text[a:b]
        budget -= 2 * len(chunk)
        if budget < 0:
            problems.append("JSON nested too deeply: the rest was not read")
            break
        value = _load_object(chunk)
        if value is None and "{" in chunk[1:-1]:  # a broken wrapper: look at the complete objects inside
            inner, _ = _brace_pairs(chunk[1:-1])
            if inner:
                todo[:0] = [(a + 1 + x, a + 1 + y) for x, y in inner]
                continue
        if value is None:
            value = _regex_object(chunk)
            if value is not None and any(k.lower() in BOX_KEYS for k in value):
                problems.append(f"item at {a} is not valid JSON: read leniently")
        if value is not None:
            _walk(value, a, out, problems)
            spans.append((a, b))
    return spans


def _label_before(text: str, pos: int) -> str:
    """The words just before `pos` on the same line, without filler words ("rope at" -> "rope")."""
    line = re.sub(r"<[^<>\n]{0,40}>", " ", text[max(0, pos - 200):pos].rsplit("\n", 1)[-1])  # <ref>rope</ref><box>
    line = re.split(r"[.;,()\[\]{}]", line)[-1]
    m = _LABEL_TAIL_RE.search(line)
    if not m:
        return ""
    words = m.group(1).replace("_", " ").split()
    while words and words[-1].lower() in _STOP_WORDS:
        words.pop()
    while words and words[0].lower() in _STOP_WORDS:
        words.pop(0)
    return " ".join(words[-4:]).strip(" -/&'")


def _plain_boxes(text: str, out: list[RawBox], problems: list[str]) -> None:
    """Stage 3: `label(x1,y1),(x2,y2)` and `label: [x1, y1, x2, y2]` in plain text."""
    for rx in (_PLAIN_PAIRS_RE, _PLAIN_LIST_RE):
        for m in rx.finditer(text):
            nums = _finite(list(m.groups()))
            if nums is None:
                problems.append(f"box at {m.start()} has non-finite numbers")
                continue
            label = _label_before(text, m.start())
            if not label:
                problems.append(f"box at {m.start()} has no label")
            tail = text[m.end():].split("\n", 1)[0].strip()  # `rope(1,2),(3,4): reason` (Qwen2 text, specials skipped)
            reason = tail[1:].strip() if tail.startswith(":") else None
            reason = reason[7:].strip() if reason and reason.lower().startswith("reason:") else reason
            out.append(RawBox(label, nums, reason or None, start=m.start()))
        text = _mask(text, [m.span() for m in rx.finditer(text)])


def _unread_spans(text: str, problems: list[str]) -> list[tuple[int, int]]:
    """Spans never read for boxes: `<tool_call>` crop requests and the thinking of a think/answer text.

    The thinking runs from `<think>` (or the start, when the text has only the closing tag, as
    Qwen3 thinking models write it) to `</think>`, `<answer>` or the end of the text.
    """
    spans = [m.span() for m in _TOOL_CALL_SPAN_RE.finditer(text)]
    close = text.find("</think>")
    if close >= 0 and "<think>" not in text[:close]:
        spans.append((0, close + len("</think>")))
    for m in _THINK_SPAN_RE.finditer(text):
        spans.append(m.span())
        if not m.group(1) and m.end() == len(text):
            problems.append(f"text ends inside <think> at {m.start()} (truncated output?): no answer to read")
    return spans


def extract_boxes(text: Any) -> tuple[list[RawBox], list[str]]:
    """All boxes in `text`, in reading order, with the problems met. Never raises on any input."""
    problems: list[str] = []
    if not isinstance(text, str):
        return [], [f"expected text, got {type(text).__name__}"]
    if len(text) > MAX_TEXT:
        problems.append(f"text longer than {MAX_TEXT} characters: the rest was not read")
        text = text[:MAX_TEXT]
    out: list[RawBox] = []
    try:
        rest = _mask(text, _unread_spans(text, problems))
        rest = _mask(rest, _token_boxes(rest, out, problems))
        rest = _mask(rest, _json_boxes(rest, out, problems))
        if not out and not _JSON_FENCE_RE.search(rest):  # prose is read only when there is no structured answer
            _plain_boxes(rest, out, problems)
    except Exception as e:  # noqa: BLE001 - a parser bug must not take a training run down; report it
        problems.append(f"parser error ({type(e).__name__}: {e}); returned what was read before it")
    out.sort(key=lambda r: r.start)
    if not out and not problems and not _SAYS_EMPTY_RE.search(text):
        problems.append("no boxes found in the text")
    return out, problems


# ---- family box text inside chat text -> neutral references ------------------------------------------
_FAMILY_TEXT_RES = (
    ("token", re.compile(r"(?:<\|object_ref_start\|>(?P<label>[^<]*)<\|object_ref_end\|>\s*)?<\|box_start\|>\s*"
                         rf"\(\s*({NUM})\s*,\s*({NUM})\s*\)\s*,?\s*\(\s*({NUM})\s*,\s*({NUM})\s*\)\s*<\|box_end\|>")),
    ("json", re.compile(r"[\"']bbox_2d[\"']\s*:\s*(?P<box>" + _BOX4 + ")")),
    ("call", re.compile(r"<tool_call>\s*(?P<box>" + _BOX4 + r")\s*</tool_call>")),
)
_FAMILY_MARK_RE = re.compile(r"<\|box_start\|>|<\|box_end\|>|[\"'](?:bbox_2d|point_2d)[\"']\s*:|<tool_call>\s*\[")
REF_SPAN_RE = re.compile(r"<bbox>.*?</bbox>", re.S)  # neutral references: already original pixels


@dataclass
class BoxText:
    """One box written in a family's own syntax and coordinates; `span` is the text a reference replaces."""

    kind: str  # "token" (Qwen2 special tokens), "json" (a bbox_2d value), "call" (a [x1, y1, x2, y2] tool call)
    span: tuple[int, int]
    values: list[float]
    label: str = ""


def family_box_texts(text: str, bare_lists: bool = False) -> tuple[list[BoxText], list[int]]:
    """The family box texts in `text`, in order, and the offsets of box text in no form read here.

    Read: Qwen2 token boxes (with their `<|object_ref_start|>` label), `"bbox_2d": [x1, y1, x2, y2]`
    values and `<tool_call>[x1, y1, x2, y2]</tool_call>`; with `bare_lists` also every other list of
    exactly 4 numbers `[x1, y1, x2, y2]` (kind "list", how Qwen2.5-VL / Qwen3-VL render a box inside
    prose), never one inside a neutral `<bbox>...</bbox>` reference. Anything else that only a family
    writes (`point_2d`, nested or broken boxes, lone box tokens) is returned as an offset.
    """
    found: list[BoxText] = []
    used: list[tuple[int, int]] = [m.span() for m in REF_SPAN_RE.finditer(text)] if bare_lists else []
    kinds = (*_FAMILY_TEXT_RES, ("list", _PLAIN_LIST_RE)) if bare_lists else _FAMILY_TEXT_RES
    for kind, rx in kinds:
        for m in rx.finditer(_mask(text, used)):
            span = m.span() if kind in ("token", "list") else m.span("box")
            nums = [float(v) for v in m.groups()[-4:]]
            label = (m.group("label") or "").strip() if kind == "token" else ""
            found.append(BoxText(kind, span, nums, label))
            used.append(m.span())
    found.sort(key=lambda b: b.span)
    return found, [m.start() for m in _FAMILY_MARK_RE.finditer(_mask(text, used))]


_NEUTRAL_KEY_RE = re.compile(r"[\"'](?:bbox_2d|point_2d)[\"']\s*:\s*(?=<bbox>)")


def has_family_box_text(text: str) -> bool:
    """Whether `text` holds box text whose numbers depend on the model family that wrote it (a `bbox_2d` whose
    value is a neutral `<bbox>` reference, as ms-swift grounding files write it, is not)."""
    return bool(_FAMILY_MARK_RE.search(_NEUTRAL_KEY_RE.sub("", text)))


def has_bare_box_list(text: str) -> bool:
    """Whether `text` holds a list of exactly 4 numbers outside neutral `<bbox>...</bbox>` references."""
    return bool(_PLAIN_LIST_RE.search(_mask(text, [m.span() for m in REF_SPAN_RE.finditer(text)])))


def to_box_refs(fmt: Format, text: str, image_size: tuple[int, int],
                bare_lists: bool = False) -> tuple[str, list[str]]:
    """`text` with every box `fmt`'s family writes replaced by `<bbox>[x1, y1, x2, y2]</bbox>` in ORIGINAL pixels.

    A Qwen2 token box becomes `label <bbox>[...]</bbox>`; a `bbox_2d` value, a list tool call or (with
    `bare_lists`, see `family_box_texts`) a bare 4-number list keeps its surrounding text. Problems (box
    text in no readable form, boxes outside the family's grid for this image size, swapped corners) are
    returned; the text is only safe to use when there are none.
    """
    from jamspotter.formats.tasks import box_ref  # tasks imports this module

    found, unread = family_box_texts(text, bare_lists)
    problems = [f"box text {text[i:i + 40]!r} cannot be converted (only boxes [x1, y1, x2, y2] can)" for i in unread]
    raws = [RawBox(b.label or "box", b.values, start=b.span[0]) for b in found]
    objects, more = fmt.boxes_from_raw(raws, image_size)
    problems += [f"{p} (is {fmt.family} with this pixel budget the family that wrote it?)"
                 if "outside" in p else p for p in more]
    if len(objects) != len(found):
        return text, problems
    pieces, last = [], 0
    for b, obj in zip(found, objects, strict=True):
        ref = box_ref(obj.bbox)
        pieces += [text[last:b.span[0]], f"{b.label} {ref}" if b.label else ref]
        last = b.span[1]
    return "".join(pieces) + text[last:], problems
