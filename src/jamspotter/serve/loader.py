"""Which weights the service loads: a hub id, a local folder, `tiny:<family>`, or a LoRA adapter on top of one.

`tiny:<family>` builds a tiny random model of that family once into the user's cache
(`$XDG_CACHE_HOME/jamspotter/tiny-<family>`, else `~/.cache/jamspotter/...`) so the service can be
tried with no download. An adapter folder is loaded directly (the loader applies it to the base its
`adapter_config.json` names) after checking that base is the `--model` given.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from jamspotter.errors import JamspotterError
from jamspotter.serve.settings import ServeSettings

TINY_PREFIX = "tiny:"


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/jamspotter`, else `~/.cache/jamspotter`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jamspotter"


def tiny_model(family: str) -> Path:
    """The cached tiny random model of `family`, built (into a temporary folder, then moved) when missing."""
    from jamspotter.models.families import check_family
    from jamspotter.models.tiny import build_tiny_model

    folder = cache_dir() / f"tiny-{check_family(family)}"
    if (folder / "config.json").is_file():
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError as e:
        raise JamspotterError(f"{folder.parent}: cannot write the tiny model's cache ({e.strerror or e})") from None
    try:
        build_tiny_model(family, stage, real_tokenizer=False)
        try:
            os.replace(stage, folder)
        except OSError:  # another process built it meanwhile
            if not (folder / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return folder


def model_source(name: str) -> str:
    """The folder or hub id to load for `name` (`tiny:<family>` resolved to its cached folder)."""
    if name.startswith(TINY_PREFIX):
        return str(tiny_model(name.removeprefix(TINY_PREFIX)))
    return name


def _same_model(a: str, b: str) -> bool:
    """Two model names denote the same weights: equal hub ids, or the same local folder."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return a.rstrip("/") == b.rstrip("/")


def weights_to_load(settings: ServeSettings) -> str:
    """What `Detector` is given: the model, or the adapter folder once its base is checked against the model.

    Raises a one-line JamspotterError for a missing model folder, a folder that is no adapter, or an adapter
    trained on another base.
    """
    from jamspotter.models.loading import adapter_base, check_model_source

    source = model_source(settings.model)
    check_model_source(source)
    if settings.adapter is None:
        return source
    adapter = Path(settings.adapter).expanduser()
    if not adapter.is_dir():
        raise JamspotterError(f"--adapter {settings.adapter}: no such folder")
    base = adapter_base(adapter)
    if base is None:
        raise JamspotterError(f"--adapter {settings.adapter}: not a LoRA adapter folder (no adapter_config.json, "
                              "or a full model: give it as --model)")
    if not _same_model(base, source):
        raise JamspotterError(f"--adapter {settings.adapter} was trained on {base}, not on --model {settings.model}")
    return str(adapter)


def load_detector(settings: ServeSettings) -> Any:
    """A `jamspotter.infer.Detector` for the settings' model (and adapter), task, dtype, device and quantization."""
    from jamspotter.infer import Detector

    return Detector(weights_to_load(settings), family=settings.family, quantization=settings.quantization,
                    dtype=settings.dtype, device=settings.device, task=settings.task,  # type: ignore[arg-type]
                    max_new_tokens=settings.max_new_tokens)
