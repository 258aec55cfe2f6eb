"""`Detector.ask`: a free question about one image, answered think/answer style with the crop tool.

The conversation is laid out exactly as SFT and GRPO render it (`jamspotter.train.data.build_conversation`,
TRL's multi-turn rollouts), with the crop tool's schema offered through the chat template:

    user:      [image] question
    assistant: <think>... <tool_call>{"name": "crop", "arguments": {"bbox_2d": [...]}}</tool_call>
    tool:      [crop image]                    (a bad call: TRL's text {'error': '<reason>'}, no image)
    assistant: ...</think><answer>...</answer>

Each turn is generated greedily and stops at the end of the turn or at the first `</tool_call>`; the
call is answered by the one `CropTool` (the same one GRPO rollouts use), so crop coordinates follow the
family's convention (0-1000, or pixels of the resized original input for Qwen2.5-VL) and the crop shows
original pixels. The crop image is appended after the original image of the conversation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jamspotter.errors import JamspotterError

if TYPE_CHECKING:
    from jamspotter.infer.detector import Detector, ImageLike

TOOL_CALL_END = "</tool_call>"
_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)
_OPEN_CALL_RE = re.compile(r"<tool_call>(?:(?!</tool_call>).)*$", re.S)


@dataclass
class Answer:
    """The answer to one question about one image.

    answer: the text inside `<answer>` (or after the thinking when the model wrote no tag).
    think: the thinking, with the crop calls taken out (they are listed in `crops`).
    crops: boxes of the crop calls that returned an image, in ORIGINAL pixels (clipped to the image), in order.
    crops_used: how many crop images the model received (`len(crops)`).
    text: every assistant turn as generated, joined; each tool response appears where it was given as
        `<tool_response>crop</tool_response>` (an image was returned) or `<tool_response>error: reason</tool_response>`.
    problems: what went wrong on the way (bad crop calls, a cut or unclosed answer, the crop limit).
    """

    answer: str = ""
    think: str = ""
    crops: list[list[float]] = field(default_factory=list)
    crops_used: int = 0
    text: str = ""
    problems: list[str] = field(default_factory=list)


def tool_response_marker(result: str) -> str:
    """How a tool response is shown in `Answer.text`: `crop` for a returned image, else `error: reason`."""
    return f"<tool_response>{result}</tool_response>"


def _stop_ids(det: Detector) -> list[int]:
    """Token ids generation stops at: the model's end-of-turn ids and `</tool_call>` when it is one token."""
    eos = det.model.generation_config.eos_token_id
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    for token in ("<|im_end|>", TOOL_CALL_END):
        tid = det.tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and det.tokenizer.convert_ids_to_tokens(tid) == token and tid not in ids:
            ids.append(tid)
    return ids


def _generate_turn(det: Detector, messages: list[dict[str, Any]], images: list[Any], max_new_tokens: int,
                   stop_ids: list[int]) -> tuple[str, Any, bool]:
    """(generated text, processor inputs, cut at max_new_tokens) for the conversation so far."""
    from jamspotter.formats.crop import crop_tool_schema

    new, inputs = det.generate_turn(messages, images, max_new_tokens, tools=[crop_tool_schema()],
                                    eos_token_id=stop_ids)
    cut = len(new) >= max_new_tokens and int(new[-1]) not in stop_ids
    return det.tokenizer.decode(new, skip_special_tokens=False), inputs, cut


def _input_size(det: Detector, inputs: Any, image: Any) -> tuple[int, int]:
    """(width, height) the original image was resized to, from the first image's patch grid when reported."""
    grid = inputs.get("image_grid_thw")
    if grid is not None and det._patch and len(grid):
        _, h, w = (int(v) for v in grid[0].tolist())
        return w * det._patch, h * det._patch
    return det.format.input_size(*image.size)


def _call_box(body: str) -> tuple[list[float] | None, str | None]:
    """(bbox_2d values, None) of a crop call's body, or (None, the reason it is not a crop call)."""
    import json

    from jamspotter.formats.tasks import CROP_TOOL, tool_call_box

    try:
        call = json.loads(body)
    except ValueError:
        call = None
    if isinstance(call, dict) and call.get("name", CROP_TOOL) != CROP_TOOL:
        return None, f"unknown tool {call.get('name')!r}; the only tool is {CROP_TOOL}"
    box = tool_call_box(body)
    if box is None:
        return None, f"tool call {body.strip()[:80]!r} is not a crop of [x1, y1, x2, y2]"
    return box, None


def ask(det: Detector, image: ImageLike, question: str, max_crops: int = 3,
        max_new_tokens: int | None = None) -> Answer:
    """Answer `question` about `image` with up to `max_crops` crop images; see `Detector.ask`."""
    from jamspotter.formats.crop import CropTool, tool_error_text
    from jamspotter.formats.tasks import CROP_TOOL, parse_vqa, resolve_box_refs
    from jamspotter.infer.detector import cut_at_stops, to_pil
    from jamspotter.models.chat import use_tool_template

    if not isinstance(question, str) or not question.strip():
        raise JamspotterError("the question is empty")
    if max_crops < 0:
        raise JamspotterError(f"max_crops must be >= 0, got {max_crops}")
    budget = det.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
    if budget < 1:
        raise JamspotterError(f"max_new_tokens must be >= 1, got {budget}")
    original = to_pil(image)
    use_tool_template(det.processor)  # Qwen2/2.5-VL's stock template drops tools; detection prompts render the same
    question = resolve_box_refs(det.format, question, original.size)  # <bbox>[...]</bbox> in original pixels
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    images = [original]
    stop_ids = _stop_ids(det)
    tool = CropTool()
    said: list[str] = []  # the assistant turns
    shown: list[str] = []  # the assistant turns with the tool responses between them
    problems: list[str] = []
    responses = 0
    stopped = False
    while True:
        raw, inputs, cut = _generate_turn(det, messages, images, budget, stop_ids)
        if tool.image is None:  # the first turn: the input size the model's coordinates refer to
            input_size = _input_size(det, inputs, original)
            tool.reset(original, det.format, input_size=input_size, max_calls=max_crops)
        turn = cut_at_stops(raw, det._stops)
        call = _TOOL_CALL_RE.search(turn)
        if call is None:
            said.append(turn)
            shown.append(turn)
            if cut:
                problems.append(f"answer cut at max_new_tokens={budget}")
            break
        turn = turn[:call.end()]
        said.append(turn)
        shown.append(turn)
        if responses > max_crops:  # max_crops crops and one limit error were answered already
            problems.append(f"stopped at crop call {responses + 1}: over the limit of {max_crops} crops, "
                            "no answer")
            stopped = True
            break
        responses += 1
        messages.append({"role": "assistant", "content": [{"type": "text", "text": turn}]})
        box, reason = _call_box(call.group(1))
        result: list[dict[str, Any]] | None = None
        if box is not None:
            try:
                result = tool.crop(box)
            except ValueError as e:
                reason = str(e)
        if result is not None:
            messages.append({"role": "tool", "name": CROP_TOOL, "content": [{"type": "image"}]})
            images.append(result[0]["image"])
            shown.append(tool_response_marker(CROP_TOOL))
        else:
            problems.append(f"crop call {responses}: {reason}")
            messages.append({"role": "tool", "name": CROP_TOOL,
                             "content": [{"type": "text", "text": tool_error_text(reason)}]})
            shown.append(tool_response_marker(f"error: {reason}"))
    whole = "".join(said)
    if _OPEN_CALL_RE.search(whole):
        problems.append("crop call not closed")
    plain = _OPEN_CALL_RE.sub("", _TOOL_CALL_RE.sub("", whole))
    parsed = parse_vqa(det.format, plain, original.size, input_size)
    crops = [list(c.box) for c in tool.calls if c.box is not None]
    return Answer(answer="" if stopped else parsed.answer, think=parsed.think, crops=crops, crops_used=tool.used,
                  text="".join(shown).strip(), problems=problems + ([] if stopped else parsed.problems))
