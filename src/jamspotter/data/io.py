"""Atomic file writing and JSONL reading/writing of `Sample`s.

Nothing is ever half-written: writers go to a temp file in the same folder and rename it into place.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from jamspotter.data.records import Sample
from jamspotter.errors import DataError
from jamspotter.outputs import apply_umask


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8", fsync: bool = True) -> Iterator[IO]:
    """Open a temp file beside `path`; rename it onto `path` only if the block succeeds.

    `fsync=False` skips the flush to disk (~10 ms a file) for bulk outputs such as rendered images,
    which stay all-or-nothing per file but may be lost on a power cut.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        apply_umask(tmp)  # mkstemp makes 0600; the result should look like any file the user writes
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def validation_message(err: ValidationError) -> str:
    """Shorten a pydantic error to `field: message` for one-line reports."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ())) or "record"
    return f"{loc}: {first.get('msg', 'invalid')}" + (
        f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    )


def iter_samples(path: str | Path) -> Iterator[Sample]:
    """Yield `Sample`s from a JSONL file; a bad line raises `DataError` naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield Sample.model_validate(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
            except ValidationError as e:
                raise DataError(f"{path}:{lineno}: {validation_message(e)}") from None


def read_samples(path: str | Path) -> list[Sample]:
    """Read all `Sample`s of a JSONL file (or of `DIR/samples.jsonl` when given a folder)."""
    return list(iter_samples(samples_path(path)))


def samples_path(path: str | Path) -> Path:
    """`DIR` -> `DIR/samples.jsonl`; a file path stays as it is."""
    path = Path(path)
    return path / "samples.jsonl" if path.is_dir() else path


def write_samples(path: str | Path, samples: Iterable[Sample]) -> int:
    """Write `Sample`s as JSONL atomically; returns how many were written."""
    n = 0
    with atomic_write(path) as fh:
        for s in samples:
            fh.write(s.to_json() + "\n")
            n += 1
    return n


def read_mapping(path: str | Path, what: str = "file") -> dict:
    """A JSON or YAML file whose top level is a mapping; anything else is a one-line DataError naming it."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise DataError(f"{path}: cannot read {what} ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: {what} must be a mapping at the top level")
    return data


def finite_json(obj: object) -> object:
    """`obj` with every NaN/Infinity float (in nested dicts, lists and tuples) turned into None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: object, indent: int | None = 2) -> None:
    """Write a strict JSON document atomically: non-finite numbers become null, never bare NaN/Infinity."""
    with atomic_write(path) as fh:
        json.dump(finite_json(obj), fh, indent=indent, allow_nan=False)
        fh.write("\n")
