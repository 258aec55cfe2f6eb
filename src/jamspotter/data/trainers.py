"""The fine-tuning toolkits a chat export can target: file layout, image paths and resize pipeline of each.

A Qwen2.5-VL target is written in pixels of the image the model really sees, so an export for a trainer
must reproduce that trainer's resize, which for some is two steps: the trainer shrinks the image first,
then the Qwen processor smart-resizes what is left. Each `Trainer` knows its default pixel budget, which
step `--min-pixels/--max-pixels` set, and the trainer flag that must carry the same numbers.

    trainer = get_trainer("llamafactory")
    fmt, budget = trainer.format("qwen2.5-vl")          # fmt.input_size(1280, 720) == (1036, 588)
    record = trainer.record(sample, fmt, root, out_dir)  # a dict in that trainer's layout, or a reason

Sources of each rule (see also docs/trainers/):
- LLaMA-Factory src/llamafactory/data/mm_plugin.py `_preprocess_image`: above `image_max_pixels`
  (default 768*768) scale by sqrt(max / (w*h)) and truncate both sides with int(); likewise up to
  `image_min_pixels` (default 32*32); then the processor's smart_resize.
- ms-swift swift/template/vision_utils.py `rescale_image` (template `--max_pixels`, off by default):
  height = sqrt(max / ratio), width = height * ratio, both truncated with int(); then qwen_vl_utils
  `fetch_image` smart-resizes with the MIN_PIXELS / MAX_PIXELS environment variables (3136 / 12845056).
- qwen-vl-finetune scripts/sft_*.sh: `--max_pixels 50176 --min_pixels 784`, one smart_resize.
- 2U1/Qwen2-VL-Finetune scripts/finetune.sh: `--image_min_pixels 401408 --image_max_pixels 1003520`.
- TRL SFTTrainer: the processor as loaded (the model's preprocessor_config.json budget).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jamspotter.data.records import Sample
from jamspotter.errors import JamspotterError
from jamspotter.formats import get_format
from jamspotter.formats.base import Format
from jamspotter.formats.parse import NUM
from jamspotter.formats.resize import ResizeParams

_ALIASES = {"ms-swift": "swift", "llama-factory": "llamafactory", "llama_factory": "llamafactory",
            "qwen-vl": "qwen-vl-finetune", "qwenvl": "qwen-vl-finetune", "qwen2-vl-finetune": "2u1"}

PreStep = Callable[[int, int, int | None, int | None], tuple[int, int]]


def family_needs_new_bbox_format(family: str) -> bool:
    """ms-swift must write <bbox> as a plain list for the JSON families (Qwen2.5-VL, Qwen3-VL)."""
    return family in ("qwen2.5-vl", "qwen3-vl")


def llamafactory_shrink(width: int, height: int, min_pixels: int | None, max_pixels: int | None) -> tuple[int, int]:
    """(width, height) after LLaMA-Factory's `_preprocess_image`: scaled into [min, max] pixels, sides int()-ed."""
    if max_pixels is not None and width * height > max_pixels:
        f = math.sqrt(max_pixels / (width * height))
        width, height = int(width * f), int(height * f)
    if min_pixels is not None and width * height < min_pixels:
        f = math.sqrt(min_pixels / (width * height))
        width, height = int(width * f), int(height * f)
    return width, height


def swift_rescale(width: int, height: int, min_pixels: int | None, max_pixels: int | None) -> tuple[int, int]:
    """(width, height) after ms-swift's `rescale_image` (template `--max_pixels`); never enlarges."""
    if max_pixels is None or max_pixels <= 0 or width * height <= max_pixels:
        return width, height
    ratio = width / height
    h = math.sqrt(max_pixels / ratio)
    return int(h * ratio), int(h)


@dataclass(frozen=True)
class TrainerParams(ResizeParams):
    """A processor budget (factor, min, max) preceded by a trainer's own first resize step, if it has one."""

    pre: PreStep | None = None
    pre_min_pixels: int | None = None
    pre_max_pixels: int | None = None

    def resize(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the model input: the trainer's step, then smart_resize."""
        if self.pre is not None:
            width, height = self.pre(int(width), int(height), self.pre_min_pixels, self.pre_max_pixels)
            if width <= 0 or height <= 0:
                raise JamspotterError(f"the trainer's resize leaves a {width}x{height} image; raise the pixel budget")
        return super().resize(width, height)


@dataclass(frozen=True)
class Trainer:
    """One toolkit: its layout, its pixel budget (which step the CLI's --min/--max-pixels set) and its flags."""

    name: str
    layout: str  # the chat_record layout the trainer's records start from
    json_list: bool  # the trainer reads only one JSON list (2U1 json.load), not JSONL
    min_pixels: int | None  # the trainer's default budget for the step the CLI options set (None: the model's)
    max_pixels: int | None
    pre: PreStep | None = None  # the trainer's first step; --min/--max-pixels then set it, not the processor
    paths: str = ""  # what the trainer resolves a relative image path against
    flags: Callable[[int | None, int | None], str] = field(default=lambda lo, hi: "")
    convert: Callable[[Sample, Format, dict], dict] | None = None  # from the layout's record to the trainer's own
    dataset_info: bool = False  # the trainer finds files through a dataset_info.json entry (LLaMA-Factory)
    bbox_format_flag: bool = False  # JSON families need QWENVL_BBOX_FORMAT=new (ms-swift's template)
    min_to_processor: bool = False  # --min-pixels sets the processor's minimum even with a first step (swift)

    def format(self, family: str, *, min_pixels: int | None = None, max_pixels: int | None = None,
               processor: Any = None) -> tuple[Format, str]:
        """The family's `Format` resizing as this trainer does, and a line naming the budget and trainer flags.

        `min_pixels`/`max_pixels` override this trainer's default for the step it lets users set.
        """
        lo = min_pixels if min_pixels is not None else self.min_pixels
        hi = max_pixels if max_pixels is not None else self.max_pixels
        for name, v in (("--min-pixels", lo), ("--max-pixels", hi)):
            if v is not None and v <= 0:
                raise JamspotterError(f"{name} must be positive, got {v}")
        if self.pre is None:
            fmt = get_format(family, processor=processor, min_pixels=lo, max_pixels=hi)
            budget = f"min_pixels={fmt.params.min_pixels}, max_pixels={fmt.params.max_pixels}"
            flag = self.flags(fmt.params.min_pixels, fmt.params.max_pixels)
        else:
            if lo is not None and hi is not None and lo > hi:
                raise JamspotterError(f"min_pixels {lo} is larger than max_pixels {hi}")
            fmt = get_format(family, processor=processor,
                             min_pixels=lo if self.min_to_processor else None)
            p = fmt.params
            fmt.params = TrainerParams(p.factor, p.min_pixels, p.max_pixels, pre=self.pre,
                                       pre_min_pixels=None if self.min_to_processor else lo, pre_max_pixels=hi)
            q = fmt.params
            steps = (("min_pixels", q.pre_min_pixels), ("max_pixels", q.pre_max_pixels))
            first = ", ".join(f"{k}={v}" for k, v in steps if v is not None) or "off"
            budget = (f"{self.name} resize {first}, then processor min_pixels={q.min_pixels}, "
                      f"max_pixels={q.max_pixels}")
            flag = self.flags(lo, hi)
        if self.bbox_format_flag and family_needs_new_bbox_format(fmt.family):
            # swift/template/templates/qwen.py: the default QWENVL_BBOX_FORMAT=legacy fills <bbox>/<ref-object>
            # with Qwen2-VL's special tokens, which would break the JSON answer (benchmarks/peer_loaders.py saw it)
            flag = "QWENVL_BBOX_FORMAT=new (environment)" + (f", {flag}" if flag else "")
        return fmt, f"{budget}" + (f"; train with {flag}" if flag else "")

    def record(self, sample: Sample, fmt: Format, root: str | Path | None, out_dir: Path | None) -> dict | str:
        """One record in this trainer's layout, or the reason the sample cannot become one."""
        from jamspotter.data.exporters import chat_record

        rec = chat_record(sample, fmt, self.layout, root, out_dir)
        return rec if isinstance(rec, str) or self.convert is None else self.convert(sample, fmt, rec)


def trl_record(rec: dict) -> dict:
    """A `messages` record with every `<image>` / `<video>` placeholder turned into an image / video content part.

    TRL's vision collator and `apply_chat_template` read content lists; text parts keep the rest of the turn.
    """
    messages = []
    for m in rec["messages"]:
        parts: list[dict] = []
        for piece in re.split(r"(<image>|<video>)", str(m["content"])):
            if piece in ("<image>", "<video>"):
                parts.append({"type": piece[1:-1]})
            elif piece.strip():
                parts.append({"type": "text", "text": piece.strip("\n")})
        messages.append({"role": m["role"], "content": parts or [{"type": "text", "text": ""}]})
    return {"messages": messages, **{k: v for k, v in rec.items() if k != "messages"}}


def swift_record(sample: Sample, fmt: Format, rec: dict) -> dict:
    """ms-swift's native grounding form: `<ref-object>`/`<bbox>` placeholders and
    `objects: {"ref", "bbox", "bbox_type": "real"}` in ORIGINAL pixels (swift normalises them for the model
    itself, swift/template/base.py `normalize_bbox`), for detection samples and for question-answer
    samples whose turns refer to boxes (`swift_qa_record`). Other samples, and answers with reasons, stay text.
    """
    if sample.image is None:
        return rec
    if sample.qa:
        return swift_qa_record(sample, rec)
    if sample.task != "detection" or fmt.with_reason:
        return rec
    objects = sorted(fmt.expected_objects(sample.objects), key=lambda o: (o.bbox[1], o.bbox[0]))
    if not objects:
        return rec
    if fmt.relative and fmt.family == "qwen2-vl":  # swift's Qwen2-VL template writes the special tokens itself
        answer = "\n".join("<ref-object><bbox>" for _ in objects)
    else:  # Qwen2.5-VL / Qwen3-VL: the template writes each <bbox> as a list, <ref-object> as the bare label
        answer = ("```json\n[\n" + ",\n".join('\t{"bbox_2d": <bbox>, "label": "<ref-object>"}' for _ in objects)
                  + "\n]\n```")
    messages = [dict(m) for m in rec["messages"]]
    assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    messages[assistant[-1]]["content"] = answer
    return {**rec, "messages": messages,
            "objects": {"ref": [o.label for o in objects], "bbox": [[float(v) for v in o.bbox] for o in objects],
                        "bbox_type": "real"}}


_REF_RE = re.compile(rf"<bbox>\s*\[\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*\]\s*</bbox>")
_LEADING_MEDIA_RE = re.compile(r"^(?:<image>|<video>)*")


def swift_qa_record(sample: Sample, rec: dict) -> dict:
    """A question-answer record with every `<bbox>[x1, y1, x2, y2]</bbox>` reference of its turns (questions
    and answers, in order, as swift fills them) written as a `<bbox>` placeholder and its box (original
    pixels) in `objects.bbox`.

    A box equal to one of `sample.objects` gets that object's label as a `<ref-object>`: the last whole-word
    occurrence of the label in the text since the previous placeholder becomes the placeholder (the text
    reads the same once swift fills it in); a box whose label is the ref already in force needs none, and
    a label the text does not spell stays unnamed (no text is added). Turns that think or crop, and
    samples whose turns hold no reference, keep the rendered text.
    """
    if any(t.think is not None or t.crops for t in sample.qa):
        return rec
    items: list[tuple[int, str | list[float] | None]] = []  # (text index, plain text | box | ref placeholder)
    n_texts = 0
    for turn in sample.qa:
        for text in (turn.question, turn.answer):
            last = 0
            for m in _REF_RE.finditer(text):
                values = [float(v) for v in m.groups()]
                items += [(n_texts, text[last:m.start()]), (n_texts, values)]
                last = m.end()
            items.append((n_texts, text[last:]))
            n_texts += 1
    if not any(isinstance(v, list) for _, v in items):
        return rec
    refs: list[str] = []
    current, i = "", 0
    while i < len(items):
        box = items[i][1]
        i += 1
        if not isinstance(box, list):
            continue
        label = next((o.label for o in sample.objects
                      if all(abs(a - b) < 1e-3 for a, b in zip(o.bbox, box, strict=True))), None)
        if label is None or label == current:
            continue
        for k in range(i - 2, -1, -1):  # back through the text since the previous placeholder
            t, piece = items[k]
            if not isinstance(piece, str):
                break
            hits = list(re.finditer(rf"(?<!\w){re.escape(label)}(?!\w)", piece))
            if hits:
                h = hits[-1]
                items[k:k + 1] = [(t, piece[:h.start()]), (t, None), (t, piece[h.end():])]
                i += 2
                refs.append(label)  # placeholders before it were all boxes: refs stay in text order
                current = label
                break
    texts = [""] * n_texts
    for t, v in items:
        texts[t] += v if isinstance(v, str) else "<bbox>" if isinstance(v, list) else "<ref-object>"
    bboxes = [v for _, v in items if isinstance(v, list)]
    messages = [dict(m) for m in rec["messages"]]
    k = 0
    for m in messages:
        if m["role"] == "user":
            media = _LEADING_MEDIA_RE.match(str(m["content"])).group(0)
            m["content"] = media + texts[2 * k]
        elif m["role"] == "assistant":
            m["content"] = texts[2 * k + 1]
            k += 1
    return {**rec, "messages": messages, "objects": {"ref": refs, "bbox": bboxes, "bbox_type": "real"}}


_TRAINER_LIST: tuple[Trainer, ...] = (
    Trainer("plain", "messages", False, None, None,
            paths="the tool's own media root (set it to the output file's folder)",
            flags=lambda lo, hi: f"the processor's min_pixels={lo}, max_pixels={hi}"),
    Trainer("swift", "messages", False, None, None, pre=swift_rescale,
            paths="the folder `swift sft` runs in (it opens paths as given)",
            flags=lambda lo, hi: " ".join(
                ([f"--max_pixels {hi}"] if hi is not None else [])
                + ([f"MIN_PIXELS={lo} (environment)"] if lo is not None else []))
            or "no --max_pixels and no MAX_PIXELS/MIN_PIXELS environment variables (their defaults)",
            min_to_processor=True, convert=swift_record, bbox_format_flag=True),
    Trainer("llamafactory", "messages", False, 32 * 32, 768 * 768, pre=llamafactory_shrink,
            paths="`media_dir` (default: `dataset_dir`, the folder of dataset_info.json)",
            flags=lambda lo, hi: f"image_min_pixels: {lo} and image_max_pixels: {hi} (training YAML)",
            dataset_info=True),
    Trainer("qwen-vl-finetune", "conversations", False, 784, 50176,
            paths="the dataset's `data_path` in qwenvl/data/__init__.py",
            flags=lambda lo, hi: f"--min_pixels {lo} --max_pixels {hi}"),
    Trainer("2u1", "conversations", True, 401408, 1003520,
            paths="`--image_folder`",
            flags=lambda lo, hi: f"--image_min_pixels {lo} --image_max_pixels {hi}"),
    Trainer("trl", "messages", False, None, None,
            paths="the folder training runs in (the processor opens paths as given)",
            flags=lambda lo, hi: f"AutoProcessor.from_pretrained(MODEL, min_pixels={lo}, max_pixels={hi})",
            convert=lambda sample, fmt, rec: trl_record(rec)),
)
TRAINER_SPECS: dict[str, Trainer] = {t.name: t for t in _TRAINER_LIST}


def get_trainer(name: str) -> Trainer:
    """The `Trainer` called `name` (case-insensitive; ms-swift, llama-factory accepted); unknown names raise."""
    key = _ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    if key not in TRAINER_SPECS:
        raise JamspotterError(f"unknown trainer {name!r}; choose one of {', '.join(TRAINER_SPECS)}")
    return TRAINER_SPECS[key]


def dataset_info_entry(file_name: str, kinds: tuple[str, ...] = ("images",)) -> dict:
    """LLaMA-Factory's dataset_info.json entry for a sharegpt `messages` file with `images` and/or `videos`."""
    return {"file_name": file_name, "formatting": "sharegpt",
            "columns": {"messages": "messages", **{kind: kind for kind in kinds}},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant", "system_tag": "system"}}
