"""Make a real tiny model write a scripted reply: its own `generate` runs (vision inputs, padding, the
forward passes), and a logits processor leaves only the next scripted token allowed at each step.

So the code around generation (prompt layout, images of every turn, parsing, drawing) is tested with a
known answer while the model still receives, and must accept, exactly what the code gave it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from transformers import LogitsProcessor, LogitsProcessorList

END_OF_TURN = "<|im_end|>"


Reply = str | Callable[[dict[str, Any]], Sequence[str]]  # one text for every row, or one per row from the inputs


class ScriptedText(LogitsProcessor):
    """A logits processor that forces row r's `ids[r]` from prompt length `start` on (its last id once they run out)."""

    def __init__(self, ids: Sequence[Sequence[int]], start: int) -> None:
        self.ids, self.start = [list(row) for row in ids], start

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        step = input_ids.shape[1] - self.start
        forced = torch.full_like(scores, float("-inf"))
        for r, row in enumerate(self.ids):
            forced[r, row[min(step, len(row) - 1)]] = 0.0
        return forced


def scripted_generate(generate: Callable[..., Any], tokenizer: Any, replies: Sequence[Reply],
                      calls: list[dict[str, Any]] | None = None) -> Callable[..., Any]:
    """A drop-in `generate` whose i-th call writes `replies[i]` + end of turn (the last reply repeats).

    A reply is a text for every row of the batch, or a function of the call's keyword arguments giving
    one text per row (an answer that depends on the image the row holds). The keyword arguments of every
    call (input_ids, pixel_values, image_grid_thw ...) are appended to `calls`. Works as an instance
    attribute (`model.generate = ...`) and as a class attribute (self passed through).
    """
    record = calls if calls is not None else []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        reply = replies[min(len(record), len(replies) - 1)]
        record.append(kwargs)
        rows = len(kwargs["input_ids"])
        texts = [reply] * rows if isinstance(reply, str) else list(reply(kwargs))
        ids = [tokenizer.encode(text + END_OF_TURN, add_special_tokens=False) for text in texts]
        forced = ScriptedText(ids, kwargs["input_ids"].shape[1])
        return generate(*args, **kwargs, logits_processor=LogitsProcessorList([forced]))

    return wrapper
