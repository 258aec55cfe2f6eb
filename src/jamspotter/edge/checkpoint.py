"""Edge checkpoints: `model.safetensors` (weights) + `model.json` (arch, classes, input size)."""

from __future__ import annotations

from pathlib import Path

from jamspotter.data.io import atomic_write, read_mapping, write_json
from jamspotter.edge.models import EdgeNet, build_model
from jamspotter.errors import DataError

WEIGHTS, META = "model.safetensors", "model.json"


def save_checkpoint(model: EdgeNet, meta: dict, out_dir: str | Path) -> Path:
    """Write weights and metadata into `out_dir`; returns the weights path."""
    from safetensors.torch import save

    out_dir = Path(out_dir)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_write(out_dir / WEIGHTS, "wb") as fh:
        fh.write(save(state))
    write_json(out_dir / META, meta)
    return out_dir / WEIGHTS


def read_meta_file(path: Path, what: str, required: tuple[str, ...] = ("arch", "classes", "image_size")) -> dict:
    """A JSON metadata file beside edge weights; unreadable or missing fields are one-line DataErrors."""
    meta = read_mapping(path, f"{what} metadata")
    for key in required:
        if key not in meta:
            raise DataError(f"{path}: missing field {key!r}")
    return meta


def read_meta(path: str | Path) -> dict:
    """The model.json beside a checkpoint (`path` is the folder, the .safetensors or the .json)."""
    path = Path(path)
    meta_path = path / META if path.is_dir() else path.with_name(META) if path.suffix != ".json" else path
    return read_meta_file(meta_path, "edge model")


def load_checkpoint(path: str | Path) -> tuple[EdgeNet, dict]:
    """Rebuild the model from model.json and load its safetensors weights (eval mode)."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_meta(path)
    weights = path / WEIGHTS if path.is_dir() else path.with_name(WEIGHTS)
    model = build_model(meta["arch"], len(meta["classes"]), pretrained=False, image_size=meta["image_size"],
                        train_blocks=meta.get("train_blocks"))
    try:
        model.load_state_dict(load_file(str(weights)))
    except Exception as e:  # safetensors, OS and shape errors all mean "not this model"
        raise DataError(f"{weights}: cannot load edge weights ({e})") from None
    return model.eval(), meta
