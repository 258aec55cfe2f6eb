"""From `Sample`s to model batches: conversations, images/frames, and assistant-only labels.

The text of every turn comes from `jamspotter.formats` (the only place that knows box syntax).
Here we only place images: the sample's image (or clip frames) in front of the first user turn,
and each crop image in a `tool` message right after the assistant message that ends with its
`</tool_call>`. Labels are built from the token ids: only assistant content and its closing
`<|im_end|>` carry loss; prompts, tool responses (crop images), padding and vision tokens are -100.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jamspotter.data.records import Sample
from jamspotter.errors import DataError
from jamspotter.formats.tasks import CROP_TOOL
from jamspotter.models.families import VISION_TOKENS

IGNORE_INDEX = -100
TOOL_CALL_END = "</tool_call>"


@dataclass
class Example:
    """One training conversation: a sample (its task is what it carries) and the folder its paths are under."""

    sample: Sample
    root: str


def load_image(sample: Sample, root: str | Path) -> Any:
    """The sample's image as upright (EXIF-rotated) RGB PIL; a missing or unreadable file raises DataError."""
    from jamspotter.data.images import open_rgb

    path = sample.image_path(root)
    if path is None or not Path(path).is_file():
        raise DataError(f"sample {sample.id}: image {sample.image!r} not found under {root}")
    return open_rgb(path)


def load_clip(sample: Sample, root: str | Path, n_frames: int) -> tuple[Any, dict[str, Any]]:
    """`n_frames` evenly spaced RGB frames (T, H, W, 3 uint8) of a clip plus video metadata.

    Videos are decoded with av (transformers 5 would need torchcodec for a path); the metadata
    carries fps and the chosen frame indices, which Qwen3-VL uses for its timestamps.
    """
    import numpy as np

    from jamspotter.data.images import open_rgb

    if sample.frames:
        paths = [sample.resolve(f, root) for f in sample.frames]
        frames = []
        for p in paths:
            if not Path(p).is_file():
                raise DataError(f"sample {sample.id}: frame {p} not found")
            frames.append(np.asarray(open_rgb(p)))
    elif sample.video:
        import av

        path = sample.resolve(sample.video, root)
        if not Path(path).is_file():
            raise DataError(f"sample {sample.id}: video {sample.video!r} not found under {root}")
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    else:
        raise DataError(f"sample {sample.id}: neither video nor frames")
    if not frames:
        raise DataError(f"sample {sample.id}: clip has no frames")
    n = max(2, min(n_frames, len(frames)) // 2 * 2)  # temporal patch 2 wants an even count
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int).tolist()
    fps = float(sample.fps or 10.0)
    meta = {"fps": fps, "total_num_frames": len(frames), "frames_indices": idx, "duration": len(frames) / fps}
    return np.stack([frames[i] for i in idx]), meta


def is_clip(sample: Sample) -> bool:
    """A clip carries video or frames instead of an image."""
    return sample.image is None and (sample.video is not None or bool(sample.frames))


def crop_boxes(sample: Sample) -> list[list[float]]:
    """Crop boxes of all qa turns, in the order their tool calls appear."""
    return [c.bbox for turn in sample.qa for c in turn.crops]


def uses_crop_tool(sample: Sample) -> bool:
    """Whether the sample's conversation offers the crop tool: every question-answer sample does (SFT, GRPO and
    `Detector.ask` alike), detection, counting and clip prompts do not."""
    return bool(sample.qa)


def chat_tools(sample: Sample) -> list[dict[str, Any]] | None:
    """The `tools` argument of the chat template for this sample (the crop tool's schema, or None)."""
    from jamspotter.formats.crop import crop_tool_schema

    return [crop_tool_schema()] if uses_crop_tool(sample) else None


def build_conversation(
    fmt: Any, ex: Example, *, clip_frames: int = 8, with_answer: bool = True,
) -> tuple[list[dict[str, Any]], list[Any], list[Any], list[dict]]:
    """(messages, images, videos, video_metadata) for the chat template and processor.

    All text comes from `fmt.render_turns` (configured once from the run contract). An assistant turn
    that calls the crop tool is split where each call ends: the call closes an assistant message, a
    `tool` message carries the crop image, and the answer goes on in the next assistant message (the
    layout TRL's GRPO rollouts and `Detector.ask` produce). with_answer=False drops the last assistant
    turn (the prompt for generation).
    """
    from jamspotter.formats.crop import crop_image

    s = ex.sample
    turns = fmt.render_turns(s)
    images: list[Any] = []
    videos: list[Any] = []
    metas: list[dict] = []
    if is_clip(s):
        video, meta = load_clip(s, ex.root, clip_frames)
        videos.append(video)
        metas.append(meta)
        media = {"type": "video"}
    else:
        image = load_image(s, ex.root)
        images.append(image)
        media = {"type": "image"}
    crops = crop_boxes(s)
    messages: list[dict[str, Any]] = []
    for i, (user, assistant) in enumerate(turns):
        content = [media, {"type": "text", "text": user}] if i == 0 else [{"type": "text", "text": user}]
        messages.append({"role": "user", "content": content})
        if not with_answer and i == len(turns) - 1:
            break
        pieces = assistant.split(TOOL_CALL_END)
        for j, piece in enumerate(pieces):
            if j < len(pieces) - 1 and crops:
                messages.append({"role": "assistant", "content": [{"type": "text", "text": piece + TOOL_CALL_END}]})
                messages.append({"role": "tool", "name": CROP_TOOL, "content": [{"type": "image"}]})
                images.append(crop_image(images[0], crops.pop(0)))
            elif j < len(pieces) - 1:  # a call without a stored crop box stays plain text
                pieces[j + 1] = piece + TOOL_CALL_END + pieces[j + 1]
            else:
                messages.append({"role": "assistant", "content": [{"type": "text", "text": piece}]})
    return messages, images, videos, metas


def assistant_labels(input_ids: Any, tokenizer: Any) -> Any:
    """Labels for a batch: assistant content + closing <|im_end|> only; everything else IGNORE_INDEX."""
    import torch

    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    vision = torch.tensor([tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS])
    header = tokenizer.encode("assistant", add_special_tokens=False)  # may be several tokens (small BPE)
    newline_ids = {i for i in tokenizer.encode("\n\n\n", add_special_tokens=False)} | set(
        tokenizer.encode("\n", add_special_tokens=False))
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for b, row in enumerate(input_ids.tolist()):
        i, n = 0, len(row)
        while i < n:
            if row[i] == im_start and row[i + 1:i + 1 + len(header)] == header:
                j = i + 1 + len(header)
                while j < n and row[j] in newline_ids:
                    j += 1
                k = j
                while k < n and row[k] != im_end:
                    k += 1
                end = min(k + 1, n)  # include <|im_end|>
                labels[b, j:end] = input_ids[b, j:end]
                i = end
            else:
                i += 1
    labels[torch.isin(input_ids, vision)] = IGNORE_INDEX
    return labels


class SFTCollator:
    """Turns `Example`s (as dataset rows) into padded model inputs with assistant-only labels."""

    def __init__(self, processor: Any, fmt: Any, *, clip_frames: int = 8) -> None:
        self.processor, self.fmt, self.clip_frames = processor, fmt, clip_frames

    def conversations(self, rows: list[dict[str, Any]], with_answer: bool = True) -> tuple[list[str], dict[str, Any]]:
        """Chat-template texts plus the processor's media arguments for a list of rows."""
        texts, images, videos, metas = [], [], [], []
        for row in rows:
            ex = example_from_row(row)
            msgs, im, vid, meta = build_conversation(self.fmt, ex, clip_frames=self.clip_frames,
                                                     with_answer=with_answer)
            texts.append(self.processor.apply_chat_template(
                msgs, tools=chat_tools(ex.sample), tokenize=False,
                add_generation_prompt=not with_answer))
            images += im
            videos += vid
            metas += meta
        media: dict[str, Any] = {}
        if images:
            media["images"] = images
        if videos:
            media["videos"] = videos
            media["video_metadata"] = metas
            media["do_sample_frames"] = False
        return texts, media

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        texts, media = self.conversations(rows)
        self.processor.tokenizer.padding_side = "right"  # training: pad after the answer
        try:
            batch = self.processor(text=texts, padding=True, return_tensors="pt", **media)
        finally:
            self.processor.tokenizer.padding_side = "left"
        batch["labels"] = assistant_labels(batch["input_ids"], self.processor.tokenizer)
        batch["labels"][batch["attention_mask"] == 0] = IGNORE_INDEX
        return dict(batch)


def example_to_row(ex: Example) -> dict[str, Any]:
    """A JSON-friendly dataset row (datasets.Dataset needs flat, typed columns); `id` is the sample's id."""
    return {"id": ex.sample.id, "sample": ex.sample.to_json(), "root": ex.root}


def example_from_row(row: dict[str, Any]) -> Example:
    """Inverse of example_to_row."""
    return Example(Sample.model_validate_json(row["sample"]), row["root"])


REGION_KINDS: tuple[str, ...] = ("full", "partial", "none")


def expand_examples(samples: list[Sample], root: str | Path, tasks: Any, classes: list[str] | None = None,
                    seed: int = 0) -> list[Example]:
    """The task mix (`tasks`: a contract's TaskMix): each sample as itself, plus count and region variants.

    Count and region variants come from `formats.augment.augment_sample`, the same generator `data augment`
    uses, so both ask the same questions (count questions include absent classes, answer 0). With
    `tasks.vqa` off, augmented copies (one image asked another question) are dropped, not turned into
    more copies of the same detection example.
    """
    from jamspotter.formats.augment import augment_sample

    rng = random.Random(seed)
    out: list[Example] = []
    for s in samples:
        if is_clip(s) and not tasks.clips:
            continue
        if s.qa and not tasks.vqa:
            if "augmented_from" in s.meta:
                continue
            s = s.model_copy(update={"qa": []})
            if not s.objects and s.label is None:
                continue
        plain = s.task == "detection"
        weight = tasks.detection if plain and s.objects else 1.0
        reps = int(weight) + (rng.random() < weight - int(weight))
        out += [Example(s, str(root))] * reps
        if not plain or is_clip(s) or not (s.width and s.height):
            continue
        for kinds, p in ((("count",), tasks.count), (REGION_KINDS, tasks.region)):
            if p > 0 and rng.random() < p:
                out += [Example(a, str(root)) for a in augment_sample(s, kinds, 1, rng, classes)]
    return out
