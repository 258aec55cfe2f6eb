"""Progress display: one rich display for a whole run, no raw tqdm bars where nobody watches a terminal.

Every jamspotter loop that shows progress goes through `track` (and training through `show_trainer_progress`),
so a caller that wants one display for many steps (the demo) opens `shared_progress` and every loop inside
it becomes a task of that display instead of a second live display, which rich refuses.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.progress import track as rich_track

T = TypeVar("T")
_shared: Progress | None = None


def interactive() -> bool:
    """True when stderr is a terminal someone can watch (progress bars are worth drawing)."""
    return sys.stderr.isatty()


def quiet_library_bars() -> None:
    """Off a terminal, or inside a shared display, silence Hugging Face's tqdm bars (weights, shards, downloads).

    A user's own HF_HUB_DISABLE_PROGRESS_BARS wins; the libraries read it when imported or on the call below.
    """
    if tqdm_wanted():
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] not in ("1", "true", "True", "yes"):
        return
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def tqdm_wanted() -> bool:
    """Whether a library's own tqdm bar should be drawn: only on a terminal with no shared display open."""
    return _shared is None and interactive()


@contextmanager
def shared_progress(console: Console, total: int, description: str) -> Iterator[tuple[Progress, Any]]:
    """One rich display for a multi-step run; yields it and its top task. Loops inside join it as tasks."""
    global _shared
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        _shared = progress
        quiet_library_bars()
        try:
            yield progress, task
        finally:
            _shared = None


def track(items: Iterable[T], total: int | None = None, description: str = "working") -> Iterator[T]:
    """Iterate with a progress bar: a task of the shared display when one is open, rich's own `track` otherwise."""
    if _shared is None:
        yield from rich_track(items, total=total, description=description)
        return
    progress = _shared
    task = progress.add_task(f"  {description}", total=total)
    try:
        for item in items:
            yield item
            progress.advance(task)
    finally:
        progress.remove_task(task)


def show_trainer_progress(trainer: Any) -> None:
    """Inside a shared display, show a Trainer's steps (and its last loss or reward) as one of its tasks instead of
    printing every log dict; elsewhere leave the Trainer's own tqdm bar (terminal) or log lines (pipe) alone."""
    if _shared is None:
        return
    from transformers import PrinterCallback, TrainerCallback

    progress = _shared

    class SharedDisplayTask(TrainerCallback):
        """Shows the training steps as a task of the shared display."""

        task: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.task = progress.add_task("  train", total=state.max_steps, completed=state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.task is not None:
                progress.update(self.task, completed=state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            shown = {k: v for k, v in (logs or {}).items() if k in ("loss", "reward") and isinstance(v, float)}
            if self.task is not None and shown:
                text = " ".join(f"{k} {v:.4g}" for k, v in shown.items())
                progress.update(self.task, description=f"  train ({text})")

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.task is not None:
                progress.remove_task(self.task)
                self.task = None

    trainer.remove_callback(PrinterCallback)  # a shared display means disable_tqdm, so the Trainer logs by printing
    trainer.add_callback(SharedDisplayTask())
