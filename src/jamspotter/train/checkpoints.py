"""Checkpoints that are safe to resume from.

The Trainer writes a checkpoint file by file (weights, optimizer, scheduler, RNG, trainer_state);
a kill in between leaves a folder that looks valid but is not. After a save returns, we drop a
`.complete` marker (atomically) into it; resume picks the newest folder that has the marker.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from jamspotter.data.io import atomic_write

COMPLETE_MARKER = ".complete"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: Path) -> int | None:
    """`checkpoint-120` -> 120; other names -> None."""
    m = _CHECKPOINT_RE.match(path.name)
    return int(m.group(1)) if m else None


def is_complete(path: Path) -> bool:
    """A checkpoint folder whose save finished (marker present and trainer_state.json readable)."""
    return (path / COMPLETE_MARKER).is_file() and (path / "trainer_state.json").is_file()


def latest_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step under output_dir, or None."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    found = [(checkpoint_step(p), p) for p in root.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    complete = [(s, p) for s, p in found if is_complete(p)]
    return max(complete)[1] if complete else None


class CompleteMarkerCallback(TrainerCallback):
    """Marks each checkpoint complete once the Trainer has finished writing it, with the run contract beside
    its weights (so `infer runs/x/checkpoint-N` asks what the run teaches)."""

    def __init__(self, contract: Any = None) -> None:
        self.contract = contract

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Every rank writes its own RNG file into the folder: wait for all before calling it complete.
        _barrier()
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            if self.contract is not None:
                self.contract.save(folder)
            with atomic_write(folder / COMPLETE_MARKER) as fh:
                fh.write(f"{state.global_step}\n")


def _barrier() -> None:
    """Wait for every process of a torch.distributed run; a no-op in a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
