"""GRPO reward functions in TRL's shape: `f(completions, **columns) -> list[float | None]`.

A completion is a string or TRL's conversational list of messages (assistant turns with `content`,
`tool_calls` and `reasoning_content`, tool turns with the crop image); `completion_text` rebuilds the
model's full text from either. Columns are lists aligned with `completions`, one value per row.
A reward returns None for a row it does not apply to (TRL sums rewards with nansum) and never raises:
model text, junk columns and non-text completions all give a number or None.

Formulas (IoU and matching are `jamspotter.evaluate.matching`, the evaluator's own code):

- detection: one-to-one matching at IoU 0.5 with equal labels. A ground-truth object weighs
  `jam_weight` when `Taxonomy.is_jam` says it is jam-causing, else 1; W = total weight,
  TP_w = weight of the matched ones, FP = unmatched predictions.
  F1_w = 2 TP_w / (2 TP_w + FP + (W - TP_w)); mIoU = mean IoU of the matched pairs;
  reward = F1_w * (0.7 + 0.3 mIoU) * min(1, n_gt / n_pred), in [0, 1].
  Empty scene: 1 for a clear empty answer (`[]`, `none`, `nothing`), 0 for boxes or anything else.
- format: detection 1 (boxes, no parse problems, or a clear empty answer), 0.5 (boxes read with
  problems), 0 (no boxes, not a clear empty answer). QnA 1 for `<think>...</think><answer>...</answer>`
  (several think blocks with crop calls between allowed), else 0.5 for a closed non-empty `<answer>` plus
  0.25 for a closed `<think>`; times 0.5 when any `<tool_call>` is not a well-formed crop call.
  Count / sequence 1 when the answer parses cleanly (sequence 0.5 when it parses with problems), else 0.
- crop (QnA rows): 0 without tool calls; -min(1, 0.5 (invalid calls + calls over max_crops)) when a call
  is malformed, outside the image, degenerate or over the limit; else 1 when some crop intersects a
  ground-truth box AND the `<answer>` equals the reference answer (lower case, punctuation and space runs
  folded to one space; a yes/no reference compares the first word only) and, for message lists, a tool turn
  returned an image; else 0.
- count: 1 - mean over the asked classes of min(1, |pred - true| / max(1, true)); a missing class counts 1.
- sequence: -mean over steps x components of min(1, |pred - true| / (mean_t |true| of the component
  + 1e-6)); missing or extra steps count 1. In [-1, 0].
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from jamspotter.data.boxes import intersection
from jamspotter.data.records import BoxObject
from jamspotter.data.taxonomy import DEFAULT_TAXONOMY, Taxonomy, normalise
from jamspotter.evaluate.matching import match_detections
from jamspotter.formats import canonical_family, get_format
from jamspotter.formats.base import Format
from jamspotter.formats.crop import crop_call
from jamspotter.formats.parse import extract_boxes
from jamspotter.formats.tasks import CROP_TOOL, parse_counts, parse_sequence, parse_vqa, tool_call_box

log = logging.getLogger(__name__)

IOU_THRESHOLD = 0.5
F1_SHARE = 0.7  # detection reward = F1_w * (F1_SHARE + (1 - F1_SHARE) * mean matched IoU) * anti-spam
SEQUENCE_EPS = 1e-6
MAX_SIDE = 1_000_000  # an image side above this is a junk column value, not an image
DETECT, QNA, COUNT, SEQUENCE = "detect", "qna", "count", "sequence"

_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)(</tool_call>|$)", re.S)  # the calls parse_vqa reads
_TAG_FREE = r"(?:(?!</?think>|</?answer>).)*"
_QNA_RE = re.compile(rf"\s*(?:<think>{_TAG_FREE}</think>\s*)+<answer>({_TAG_FREE})</answer>\s*", re.S)
_COUNT_LINE_CHARS = re.compile(r"[\w{}]")
_EMPTY_ANSWERS = {"[]", "none", "nothing", "no objects", "no items"}
_MAX_TEXT = 200_000
_warned: set[str] = set()


# ---- completions ---------------------------------------------------------------------------------
def completion_text(completion: Any) -> str:
    """The model's full text of a completion: the string itself, or every assistant message of a TRL message
    list rendered as `<think>reasoning</think>` (when non-empty) + content + each tool call as
    `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`, messages joined by newlines; tool (and
    user/system) messages are skipped. Anything else gives "". Never raises."""
    try:
        if isinstance(completion, str):
            return completion
        messages = [completion] if isinstance(completion, dict) else completion
        if not isinstance(messages, list | tuple):
            return ""
        pieces = [_message_text(m) for m in messages]
        return "\n".join(p for p in pieces if p)
    except Exception:  # noqa: BLE001 - junk of any shape must not stop a training step
        return ""


def _message_text(message: Any) -> str:
    if isinstance(message, str):
        return message
    if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
        return ""
    text = ""
    reasoning = _content_text(message.get("reasoning_content"))
    if reasoning.strip():
        text += f"<think>{reasoning}</think>"
    text += _content_text(message.get("content"))
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list | tuple) else []:
        rendered = _render_tool_call(call)
        if rendered:
            text += ("\n" if text else "") + rendered
    return text


def _content_text(content: Any) -> str:
    """A message content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list | tuple):
        return ""
    out = []
    for part in content:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            out.append(part["text"])
    return "".join(out)


def _render_tool_call(call: Any) -> str:
    """TRL's `{"type": "function", "function": {"name", "arguments"}}` (or the bare inner dict) as model text."""
    if not isinstance(call, dict):
        return ""
    fn = call.get("function") if isinstance(call.get("function"), dict) else call
    args = fn.get("arguments")
    if isinstance(args, str):
        with contextlib.suppress(ValueError, RecursionError):
            args = json.loads(args)
    try:
        body = json.dumps({"name": fn.get("name"), "arguments": args}, default=str)
    except (TypeError, ValueError, RecursionError):
        return ""
    return f"<tool_call>\n{body}\n</tool_call>"


def tool_results(completion: Any) -> int:
    """How many tool messages of a message-list completion returned an image (crops the model saw). Never raises."""
    if not isinstance(completion, list | tuple):
        return 0
    n = 0
    for m in completion:
        if isinstance(m, dict) and m.get("role") == "tool" and isinstance(m.get("content"), list | tuple):
            n += any(isinstance(p, dict) and p.get("type") == "image" and p.get("image") is not None
                     for p in m["content"])
    return n


# ---- columns -------------------------------------------------------------------------------------
def _rows(completions: Any) -> list[Any]:
    if isinstance(completions, str | dict):
        return [completions]
    return list(completions) if isinstance(completions, list | tuple) else []


def _at(column: Any, i: int) -> Any:
    """Row i of a column (None past its end); a non-list value applies to every row."""
    if isinstance(column, list | tuple):
        return column[i] if i < len(column) else None
    return column


def _task(value: Any) -> str | None:
    """The row's task, lower-case; None (or "") means plain detection; a non-string is no known task."""
    if value is None:
        return None
    return value.strip().lower() or None if isinstance(value, str) else repr(value)


def _missing(reward: str, column: str, value: Any) -> None:
    """Warn once when a column a row needs was not passed at all (the dataset lacks it)."""
    if value is None:
        _warn_once(f"{reward}:{column}", f"{reward}: no {column!r} column; its rows are left unscored")


def _size(value: Any) -> tuple[int, int] | None:
    """A positive finite `[w, h]`, else None."""
    if not isinstance(value, list | tuple | np.ndarray) or len(value) != 2:
        return None
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
            return None
        if not math.isfinite(float(v)) or not 1 <= round(float(v)) <= MAX_SIDE:
            return None
        out.append(round(float(v)))
    return out[0], out[1]


@lru_cache(maxsize=16)
def _format_of(family: str) -> Format:
    return get_format(family)


def _format(family: Any) -> Format | None:
    try:
        return _format_of(canonical_family(family)) if isinstance(family, str) else None
    except Exception:  # noqa: BLE001 - an unknown family is reported once, the row is left unscored
        _warn_once(f"family:{family!r}", f"reward: unknown model family {family!r}; rows left unscored")
        return None


def _input_size(fmt: Format, value: Any) -> tuple[tuple[int, int] | None, bool]:
    """(input size, usable): a junk input_size is unusable only for a family that writes resized pixels."""
    if value is None:
        return None, True
    size = _size(value)
    return size, size is not None or fmt.relative


def _gt_objects(gt: Any) -> list[BoxObject] | None:
    """Ground-truth objects from `[{"label", "bbox", "jam_risk"?}]` (or BoxObjects); None if any is unusable."""
    if not isinstance(gt, list | tuple):
        return None
    out = []
    for o in gt:
        if isinstance(o, BoxObject):
            out.append(o)
            continue
        if not isinstance(o, dict) or not isinstance(o.get("label"), str):
            return None
        jam = o.get("jam_risk")
        try:
            obj = BoxObject(label=o["label"], bbox=o.get("bbox"), jam_risk=jam if isinstance(jam, bool) else None)
        except ValueError:
            return None
        if not all(math.isfinite(v) for v in obj.bbox):
            return None
        out.append(obj)
    return out


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


def _per_row(name: str, completions: Any, row: Callable[[int, Any], float | None]) -> list[float | None]:
    """Apply `row(i, completion)` to every row; a non-finite result or an unexpected error leaves the row None."""
    out: list[float | None] = []
    for i, completion in enumerate(_rows(completions)):
        try:
            value = row(i, completion)
        except Exception:  # noqa: BLE001 - a reward bug must not end a training run; it is logged once
            if name not in _warned:
                _warned.add(name)
                log.warning("%s failed on a row; such rows are left unscored", name, exc_info=True)
            value = None
        out.append(float(value) if value is not None and math.isfinite(value) else None)
    return out


def _answer_part(text: str) -> str:
    """The final answer of a text: inside `<answer>` when tagged, else after the thinking."""
    m = re.search(r"<answer>(.*?)(?:</answer>|$)", text, re.S)
    if m:
        return m.group(1)
    return text.rsplit("</think>", 1)[-1]


def _count_text(text: str) -> str:
    """The answer part for `parse_counts`: lines without a word character or brace dropped, whitespace runs
    folded to one space (its line pattern takes time quadratic in long runs of blanks and bullets)."""
    lines = (" ".join(line.split()) for line in _answer_part(text).splitlines())
    return "\n".join(line for line in lines if _COUNT_LINE_CHARS.search(line))


def is_empty_answer(text: str) -> bool:
    """True for a clear "no objects" answer: `[]` (fenced or not), `none`, `nothing`, after any thinking."""
    if not isinstance(text, str):
        return False
    answer = _answer_part(text[:_MAX_TEXT]).strip()
    if len(answer) > 40:
        return False
    if answer.startswith("```"):
        answer = answer[3:].removeprefix("json").removeprefix("JSON")
    answer = answer.removesuffix("```").strip().rstrip(".").strip().lower()
    return "".join(answer.split()) == "[]" or " ".join(answer.split()) in _EMPTY_ANSWERS


def _tagged(text: str, tag: str) -> str | None:
    """The content of the first `<tag>` closed by a `</tag>`, else None (str.find: linear on any text)."""
    start = text.find(f"<{tag}>")
    if start < 0:
        return None
    start += len(tag) + 2
    end = text.find(f"</{tag}>", start)
    return text[start:end] if end >= 0 else None


# ---- detection -----------------------------------------------------------------------------------
def detection_score(gt: Sequence[BoxObject], pred: Sequence[BoxObject], jam_weight: float = 2.0,
                    taxonomy: Taxonomy | None = None) -> float:
    """F1_w * (0.7 + 0.3 mIoU) * min(1, n_gt / n_pred) for boxes in the same pixels (see the module docstring).

    Both empty gives 1; predictions on an empty scene or none on a non-empty one give 0."""
    if not gt or not pred:
        return 1.0 if not gt and not pred else 0.0
    tax = taxonomy or DEFAULT_TAXONOMY
    weights = [float(jam_weight) if tax.is_jam(o) else 1.0 for o in gt]
    matching = match_detections(gt, pred, IOU_THRESHOLD)
    total = sum(weights)
    tp = sum(weights[g] for _, g, _ in matching.matches)
    fp = len(matching.false_positives)
    f1 = 2 * tp / (tp + total + fp)
    miou = float(np.mean([iou for _, _, iou in matching.matches])) if matching.matches else 0.0
    return f1 * (F1_SHARE + (1 - F1_SHARE) * miou) * min(1.0, len(gt) / len(pred))


def detection_reward(completions: Any, gt: Any = None, image_size: Any = None, family: Any = None,
                     input_size: Any = None, task: Any = None, *, jam_weight: float = 2.0,
                     taxonomy: Taxonomy | None = None, **kw: Any) -> list[float | None]:
    """Box reward in [0, 1] per row (formula in the module docstring); None for non-detection rows and rows
    whose gt / image_size / family cannot be used. `gt` must hold what the prompt asks for (the jam-causing
    objects only for a jam-only run). A clear empty answer on an empty scene scores 1."""
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else DEFAULT_TAXONOMY

    def row(i: int, completion: Any) -> float | None:
        if _task(_at(task, i)) not in (None, DETECT):
            return None
        _missing("detection_reward", "gt", gt)
        _missing("detection_reward", "image_size", image_size)
        fmt, size, objects = _format(_at(family, i)), _size(_at(image_size, i)), _gt_objects(_at(gt, i))
        if fmt is None or size is None or objects is None:
            return None
        insize, ok = _input_size(fmt, _at(input_size, i))
        if not ok:
            return None
        text = completion_text(completion)
        pred, _ = fmt.parse_detections(text, size, insize)
        if not objects and not pred:
            return 1.0 if is_empty_answer(text) else 0.0
        return detection_score(objects, pred, jam_weight, tax)

    return _per_row("detection_reward", completions, row)


# ---- format --------------------------------------------------------------------------------------
def _tool_calls(fmt: Format, text: str, image_size: tuple[int, int] | None,
                input_size: tuple[int, int] | None) -> tuple[list[list[float]], int, int]:
    """(valid crop boxes in original pixels, malformed calls, invalid calls) of every `<tool_call>` in `text`.

    Malformed: not closed, another tool's name, or no `[x1, y1, x2, y2]`; invalid: malformed, or a box
    `crop_call` refuses (outside the image, degenerate). Without an image size every readable call is invalid."""
    boxes, malformed, invalid = [], 0, 0
    for m in _TOOL_CALL_RE.finditer(text[:_MAX_TEXT]):
        try:
            values = tool_call_box(m.group(1)) if m.group(2) and _names_crop(m.group(1)) else None
        except RecursionError:  # absurdly nested JSON in a call body
            values = None
        if values is None:
            malformed += 1
            invalid += 1
            continue
        call = crop_call(fmt, values, image_size, input_size) if image_size is not None else None
        if call is None or not call.ok:
            invalid += 1
        else:
            boxes.append(call.box)
    return boxes, malformed, invalid


def _names_crop(body: str) -> bool:
    """A JSON call must name the crop tool; a bare list is the seed data's crop syntax."""
    try:
        call = json.loads(body)
    except (ValueError, RecursionError):
        return True
    return not isinstance(call, dict) or call.get("name") == CROP_TOOL


def _qna_structure(text: str) -> float:
    """1 for think block(s) then one answer and nothing else (crop calls aside), else partial credit."""
    close = text.find("</think>")
    if close >= 0 and "<think>" not in text[:close]:  # Qwen3 thinking templates put <think> in the prompt
        text = "<think>" + text
    bare = _TOOL_CALL_RE.sub(lambda m: " " if m.group(2) else m.group(0), text)  # closed calls aside
    m = _QNA_RE.fullmatch(bare)
    if m and m.group(1).strip():
        return 1.0
    answer = _tagged(bare, "answer")
    return 0.5 * bool(answer and answer.strip()) + 0.25 * (_tagged(bare, "think") is not None)


def format_reward(completions: Any, family: Any = None, task: Any = None, image_size: Any = None,
                  input_size: Any = None, target: Any = None, **kw: Any) -> list[float | None]:
    """Form of the answer in [0, 1] per row for detection, qna, count and sequence rows (None for other tasks
    and for detection/qna rows of an unknown family); scores in the module docstring."""

    def row(i: int, completion: Any) -> float | None:
        kind = _task(_at(task, i))
        text = completion_text(completion)[:_MAX_TEXT]
        if kind == COUNT:
            return 1.0 if parse_counts(_count_text(text))[0] else 0.0
        if kind == SEQUENCE:
            values = _target_values(_at(target, i))
            rows, problems = parse_sequence(_answer_part(text), len(values[0]) if values else None)
            return 0.0 if not rows else 0.5 if problems else 1.0
        if kind not in (None, DETECT, QNA):
            return None
        fmt = _format(_at(family, i))
        if fmt is None:
            return None
        size = _size(_at(image_size, i))
        insize, ok = _input_size(fmt, _at(input_size, i))
        if kind == QNA:
            _, malformed, _ = _tool_calls(fmt, text, size, insize if ok else None)
            return _qna_structure(text) * (0.5 if malformed else 1.0)
        if size is not None and ok:
            boxes, problems = fmt.parse_detections(text, size, insize)
        else:  # no usable size: judge the syntax alone
            boxes, problems = extract_boxes(text)
        if boxes:
            return 0.5 if problems else 1.0
        return 1.0 if is_empty_answer(text) else 0.0

    return _per_row("format_reward", completions, row)


# ---- crop ----------------------------------------------------------------------------------------
def answers_match(answer: Any, reference: Any) -> bool:
    """Answers equal after lower-casing and turning punctuation/space runs into one space; when the reference
    starts with yes/no only the first words are compared."""
    if not isinstance(answer, str) or reference is None or isinstance(reference, list | dict | tuple):
        return False
    a, r = normalise(answer).split(), normalise(str(reference)).split()
    if not r:
        return False
    return a[:1] == r[:1] if r[0] in ("yes", "no") else a == r


def crop_reward(completions: Any, gt: Any = None, image_size: Any = None, family: Any = None, answer: Any = None,
                input_size: Any = None, task: Any = None, *, max_crops: int = 3, **kw: Any) -> list[float | None]:
    """Crop tool reward per qna row (None for other rows or an unusable image_size/family): 0 without calls,
    -min(1, 0.5 x (invalid + over-limit calls)) for bad calls, 1 when a crop intersects a ground-truth box and
    the `<answer>` matches `answer` (for message lists: a tool turn returned an image), else 0."""

    def row(i: int, completion: Any) -> float | None:
        if _task(_at(task, i)) != QNA:
            return None
        _missing("crop_reward", "image_size", image_size)
        fmt, size = _format(_at(family, i)), _size(_at(image_size, i))
        if fmt is None or size is None:
            return None
        insize, ok = _input_size(fmt, _at(input_size, i))
        if not ok:
            return None
        text = completion_text(completion)[:_MAX_TEXT]
        boxes, _, invalid = _tool_calls(fmt, text, size, insize)
        n_calls = len(boxes) + invalid
        if n_calls == 0:
            return 0.0
        bad = invalid + max(0, n_calls - int(max_crops))
        if bad:
            return -min(1.0, 0.5 * bad)
        if isinstance(completion, list | tuple) and tool_results(completion) == 0:
            return 0.0  # the crops never reached the model
        objects = _gt_objects(_at(gt, i)) or []
        overlap = any(intersection(b, o.bbox) > 0 for b in boxes for o in objects)
        right = "<answer>" in text and answers_match(parse_vqa(fmt, text, size, insize).answer, _at(answer, i))
        return 1.0 if overlap and right else 0.0

    return _per_row("crop_reward", completions, row)


# ---- counting and sequences ----------------------------------------------------------------------
def _count(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
        return None
    v = float(v)
    return v if math.isfinite(v) and v >= 0 else None


def count_reward(completions: Any, counts: Any = None, task: Any = None, **kw: Any) -> list[float | None]:
    """1 - mean over the asked classes of min(1, |pred - true| / max(1, true)) per count row; a class the answer
    misses counts 1. `counts` rows are dicts or JSON objects of them. Classes whose true count is missing (None,
    as `datasets` fills absent keys) are not asked.
    None for other rows or when no class has a usable count."""

    def row(i: int, completion: Any) -> float | None:
        if _task(_at(task, i)) != COUNT:
            return None
        _missing("count_reward", "counts", counts)
        truth = _at(counts, i)
        if isinstance(truth, str):  # a JSON object: how GRPO's dataset carries counts (their keys vary per row)
            with contextlib.suppress(ValueError, RecursionError):
                truth = json.loads(truth)
        if not isinstance(truth, dict):
            return None
        asked = {normalise(str(k)): _count(v) for k, v in truth.items()}
        asked = {k: v for k, v in asked.items() if k and v is not None}
        if not asked:
            return None
        pred, _ = parse_counts(_count_text(completion_text(completion)[:_MAX_TEXT]))
        pred = {normalise(k): v for k, v in pred.items()}
        errors = [1.0 if k not in pred else min(1.0, abs(pred[k] - t) / max(1.0, t)) for k, t in asked.items()]
        return 1.0 - float(np.mean(errors))

    return _per_row("count_reward", completions, row)


def _target_values(target: Any) -> list[list[float]] | None:
    """Rows of a sequence target (`[[v, k], ...]`, `[v, ...]` or `{"values": ...}`); None if unusable."""
    if isinstance(target, dict):
        target = target.get("values")
    if not isinstance(target, list | tuple) or not target:
        return None
    rows = [list(r) if isinstance(r, list | tuple) else [r] for r in target]
    width = len(rows[0])
    if width == 0 or any(len(r) != width for r in rows):
        return None
    if any(isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) for r in rows for v in r):
        return None
    return [[float(v) for v in r] for r in rows]


def sequence_reward(completions: Any, target: Any = None, task: Any = None, **kw: Any) -> list[float | None]:
    """-mean over steps x components of min(1, |pred - true| / (mean |true| of the component + 1e-6)) per
    sequence row, in [-1, 0]; steps the answer misses or adds count 1. None for other rows or a junk target."""

    def row(i: int, completion: Any) -> float | None:
        if _task(_at(task, i)) != SEQUENCE:
            return None
        _missing("sequence_reward", "target", target)
        values = _target_values(_at(target, i))
        if values is None:
            return None
        true = np.asarray(values, dtype=np.float64)
        rows, _ = parse_sequence(_answer_part(completion_text(completion)[:_MAX_TEXT]), true.shape[1])
        n = min(len(rows), len(true))
        steps = max(len(rows), len(true))
        errors = np.ones((steps, true.shape[1]))
        if n:
            scale = np.abs(true).mean(axis=0) + SEQUENCE_EPS
            errors[:n] = np.minimum(1.0, np.abs(np.asarray(rows[:n], dtype=np.float64) - true[:n]) / scale)
        return -float(errors.mean())

    return _per_row("sequence_reward", completions, row)


# ---- wiring for GRPOTrainer ----------------------------------------------------------------------
class RewardWeights(BaseModel):
    """Weights of the reward functions in the GRPO total (TRL's `reward_weights`) and their settings."""

    model_config = ConfigDict(extra="forbid")

    detection: float = Field(1.0, ge=0.0, description="weight of detection_reward (boxes: matched F1 x IoU)")
    format: float = Field(0.5, ge=0.0, description="weight of format_reward (parseable answer, think/answer form)")
    crop: float = Field(0.5, ge=0.0, description="weight of crop_reward (valid crop calls; bonus when useful)")
    count: float = Field(1.0, ge=0.0, description="weight of count_reward (per-class count error)")
    sequence: float = Field(1.0, ge=0.0, description="weight of sequence_reward (negative clip trajectory error)")
    jam_weight: float = Field(2.0, gt=0.0, description="weight of a jam-causing ground-truth object in recall/F1")
    max_crops: int = Field(
        3, ge=0,
        description="crop calls per completion: the crop tool's limit and TRL's tool iterations; more cost crop reward")


class BoundReward:
    """A reward function with settings bound (`jam_weight`, `max_crops`, taxonomy); keeps the function's
    `__name__` (TRL logs rewards under it) and pickles, unlike a closure."""

    def __init__(self, fn: Callable[..., list[float | None]], **fixed: Any) -> None:
        self.fn, self.fixed = fn, fixed
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__

    def __call__(self, completions: Any, **columns: Any) -> list[float | None]:
        return self.fn(completions, **{**columns, **self.fixed})

    def __repr__(self) -> str:
        return f"{self.__name__}({', '.join(f'{k}={v!r}' for k, v in self.fixed.items())})"


def reward_functions(weights: RewardWeights | None = None,
                     taxonomy: Taxonomy | None = None) -> tuple[list[BoundReward], list[float]]:
    """(reward functions, TRL `reward_weights`) for GRPOTrainer: detection, format, crop, count and sequence
    rewards under their own `__name__`s, with `jam_weight`, `max_crops` and the run's taxonomy bound."""
    w = weights or RewardWeights()
    funcs = [
        BoundReward(detection_reward, jam_weight=w.jam_weight, taxonomy=taxonomy or DEFAULT_TAXONOMY),
        BoundReward(format_reward),
        BoundReward(crop_reward, max_crops=w.max_crops),
        BoundReward(count_reward),
        BoundReward(sequence_reward),
    ]
    return funcs, [w.detection, w.format, w.crop, w.count, w.sequence]
