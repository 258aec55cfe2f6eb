"""What every importer shares: per-entry error handling, image lookup, box checks, record files.

An importer walks its entries inside `ctx.entry(where)`. A problem raised there becomes ONE line
`file:entry: message`; with `skip_invalid` the entry is dropped and the reason kept for the report.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from jamspotter.data.images import upright_size
from jamspotter.data.io import validation_message
from jamspotter.data.records import BoxObject, Sample
from jamspotter.data.taxonomy import DEFAULT_TAXONOMY, Taxonomy
from jamspotter.data.validate import MISSING_IMAGE, check_box, size_problem
from jamspotter.errors import DataError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


class EntryError(Exception):
    """A problem with one entry; `ImportContext.entry` adds the file and entry in front."""


def shown(path: str | Path) -> str:
    """A path as the user would recognise it: relative to the working folder when below it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


@dataclass
class ImportContext:
    """Options of one import run plus what it skipped."""

    allow_missing_images: bool = False
    skip_invalid: bool = False
    taxonomy: Taxonomy = field(default_factory=lambda: DEFAULT_TAXONOMY)
    images: Path | None = None  # --images: folder image paths are relative to
    skipped: list[str] = field(default_factory=list)
    classes: list[dict] | None = None  # the source's class list `[{"id", "name"}]`, in id order, when it has one

    @contextlib.contextmanager
    def entry(self, where: str) -> Iterator[None]:
        """Run one entry; turn its problems into `where: message`; skip it when asked to."""
        try:
            yield
        except EntryError as e:
            self._fail(f"{where}: {e}")
        except ValidationError as e:
            self._fail(f"{where}: {validation_message(e)}")
        except DataError as e:
            self._fail(e.format_message())
        except RecursionError:
            self._fail(f"{where}: entry nested too deeply")
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, ArithmeticError) as e:
            detail = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            self._fail(f"{where}: malformed entry ({detail})")

    def _fail(self, message: str) -> None:
        message = " ".join(message.split())  # always one line
        if not self.skip_invalid:
            raise DataError(message)
        self.skipped.append(message)

    def image(self, path: str | Path, base: Path, width: int | None = None,
              height: int | None = None) -> tuple[str, int | None, int | None, list[str]]:
        """Resolve an image, read its upright (EXIF-rotated) size from the header and check a recorded size.

        Returns `(absolute path, width, height, flags)`; a missing image is an error unless
        `allow_missing_images`, which keeps the recorded size and flags the record. An unreadable or
        oversized image is an entry error (skipped with `skip_invalid`).
        """
        width, height = image_side(width, "width"), image_side(height, "height")
        p = Path(str(path))
        if not p.is_absolute():
            p = (self.images or base) / p
        p = Path(os.path.abspath(p))
        real = upright_size(p)
        if real is None:
            if not self.allow_missing_images:
                raise EntryError(f"image {shown(p)} not found (use --allow-missing-images to keep the record)")
            return str(p), width, height, [MISSING_IMAGE]
        problem = size_problem(p, real, width, height)
        if problem:
            raise EntryError(problem)
        return str(p), real[0], real[1], []

    def box(self, label: str, bbox: Sequence[float], width: int | None, height: int | None,
            **extra: Any) -> BoxObject:
        """A checked `BoxObject` (tiny overshoots clipped) with jam_risk from the taxonomy."""
        clipped, problem = check_box(bbox, width, height)
        if problem:
            raise EntryError(problem)
        return BoxObject(label=label, bbox=clipped, jam_risk=self.taxonomy.jam_risk(label), **extra)


def image_side(value: Any, name: str) -> int | None:
    """A recorded image width/height: None when absent, else a positive whole number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise EntryError(f"{name} must be a positive whole number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise EntryError(f"{name} must be a positive whole number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0 or number != int(number):
        raise EntryError(f"{name} must be a positive whole number, got {value!r}")
    return int(number)


def finite(values: Sequence[float], what: str) -> list[float]:
    """`values` as floats; NaN or infinite values are an EntryError naming `what`."""
    out = [float(v) for v in values]
    if not all(math.isfinite(v) for v in out):
        raise EntryError(f"{what} has a non-finite value (NaN or infinity)")
    return out


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def read_text(path: Path) -> str:
    """A text file as str: UTF-8, or UTF-16/32 with a byte-order mark; anything else is a one-line DataError."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{shown(path)}: cannot read ({e.strerror or e})") from None
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), "utf-8")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise DataError(f"{shown(path)}: not {encoding.upper().removesuffix('-SIG')} text (byte 0x{raw[e.start]:02x} "
                        f"at offset {e.start}); save it as UTF-8") from None


def parse_json(text: str, where: str) -> Any:
    """`json.loads` with one-line errors: malformed JSON names the line, absurd nesting is refused."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}:{e.lineno}: malformed JSON ({e.msg})") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply") from None


def load_records(path: Path) -> list[tuple[str, Any]]:
    """Entries of a JSON list or a JSONL file as `(where, record)`; malformed JSON names the line."""
    text = read_text(path)
    if text.lstrip().startswith("{"):  # one pretty-printed record is also accepted
        try:
            data = json.loads(text)
            if isinstance(data, dict):
                return [(f"{shown(path)}:1", data)]
        except (json.JSONDecodeError, RecursionError):
            pass  # JSONL: parsed line by line below
    if text.lstrip().startswith("["):
        data = parse_json(text, shown(path))
        if not isinstance(data, list):
            raise DataError(f"{shown(path)}: expected a JSON list of records")
        return [(f"{shown(path)}:[{i}]", rec) for i, rec in enumerate(data)]
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((f"{shown(path)}:{lineno}", json.loads(line)))
        except json.JSONDecodeError as e:
            raise DataError(f"{shown(path)}:{lineno}: malformed JSON ({e.msg})") from None
        except RecursionError:
            raise DataError(f"{shown(path)}:{lineno}: JSON nested too deeply") from None
    return out


def import_records(path: Path, ctx: ImportContext, build: Callable[[dict, int, set[str]], Sample]) -> list[Sample]:
    """Samples of a JSON-list / JSONL file: `build(record, index, seen_ids)` per entry, inside `ctx.entry`.

    So every record-per-line importer reports `file:line: message` (or skips the entry) the same way;
    `seen_ids` is for `unique_id`.
    """
    samples: list[Sample] = []
    seen: set[str] = set()
    for i, (where, rec) in enumerate(load_records(path)):
        with ctx.entry(where):
            samples.append(build(require_dict(rec), i, seen))
    return samples


def load_json(path: Path) -> Any:
    """One JSON document (UTF-8, or UTF-16/32 with a BOM); malformed JSON names the file and line."""
    return parse_json(read_text(path), shown(path))


def require_dict(rec: Any) -> dict:
    """An entry must be a JSON object."""
    if not isinstance(rec, dict):
        raise EntryError(f"expected a JSON object, got {type(rec).__name__}")
    return rec


def first_key(rec: dict, *keys: str, required: bool = True) -> Any:
    """The value of the first key present (datasets name the same field differently)."""
    for k in keys:
        if k in rec:
            return rec[k]
    if required:
        raise EntryError(f"missing field {' / '.join(repr(k) for k in keys)}")
    return None


def unique_id(base: str, seen: set[str]) -> str:
    """`base`, or `base-2`, `base-3` ... so ids (and exported file names) stay unique."""
    sid, n = base, 1
    while sid in seen:
        n += 1
        sid = f"{base}-{n}"
    seen.add(sid)
    return sid
