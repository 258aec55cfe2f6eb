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


class ScriptedText(LogitsProcessor):
    """A logits processor that forces `ids` from prompt length `start` on (the last id once they run out)."""

    def __init__(self, ids: Sequence[int], start: int) -> None:
        self.ids, self.start = list(ids), start

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        k = min(input_ids.shape[1] - self.start, len(self.ids) - 1)
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.ids[k]] = 0.0
        return forced


def scripted_generate(generate: Callable[..., Any], tokenizer: Any, replies: Sequence[str],
                      calls: list[dict[str, Any]] | None = None) -> Callable[..., Any]:
    """A drop-in `generate` whose i-th call writes `replies[i]` + end of turn (the last reply repeats).

    The keyword arguments of every call (input_ids, pixel_values, image_grid_thw ...) are appended to `calls`.
    Works as an instance attribute (`model.generate = ...`) and as a class attribute (self passed through).
    """
    record = calls if calls is not None else []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        reply = replies[min(len(record), len(replies) - 1)]
        record.append(kwargs)
        ids = tokenizer.encode(reply + END_OF_TURN, add_special_tokens=False)
        forced = ScriptedText(ids, kwargs["input_ids"].shape[1])
        return generate(*args, **kwargs, logits_processor=LogitsProcessorList([forced]))

    return wrapper
