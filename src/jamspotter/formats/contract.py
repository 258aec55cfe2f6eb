"""The run contract: what a model was trained to answer, decided once by `train` and read by every later stage.

Saved beside the weights as `jamspotter.json`. The Detector, the training F1 callback, `eval detection --run`,
distillation, merge (which copies it) and the coming GRPO stage and service build their prompts from
it alone, so a model is always asked exactly the question it was taught. Nothing in it is decided per image.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jamspotter.data.records import BoxObject, Sample
from jamspotter.data.taxonomy import DEFAULT_TAXONOMY, JAM_CLASSES, MATERIAL_CLASSES, Taxonomy
from jamspotter.errors import DataError

CONTRACT_FILE = "jamspotter.json"
PROMPT_VERSION = "2"  # bump when a prompt's wording changes: a model trained on v1 text is asked v1 text
ToolCallSyntax = Literal["json", "list"]  # json: TRL's {"name": "crop", "arguments": {"bbox_2d": [...]}}


class TaskMix(BaseModel):
    """Which tasks training rendered and how often (the probabilities `train` used)."""

    model_config = ConfigDict(extra="forbid")

    detection: float = Field(1.0, ge=0.0, description="plain box-detection examples per image with objects")
    count: float = Field(0.0, ge=0.0, description="probability of a counting example per image")
    region: float = Field(0.0, ge=0.0, description="probability of a region check (full/partial/none) per image")
    vqa: bool = Field(True, description="samples' own qa turns (think/answer with crop calls) were trained on")
    clips: bool = Field(True, description="clips (video/frames) were trained on")


class RunContract(BaseModel):
    """Family, pixel budgets, frame sampling, class list, jam-only, reasons, task mix, prompt and tool-call syntax."""

    model_config = ConfigDict(extra="forbid")

    family: Literal["qwen2-vl", "qwen2.5-vl", "qwen3-vl"]
    min_pixels: int = Field(gt=0, description="smallest image area after smart_resize")
    max_pixels: int = Field(gt=0, description="largest image area after smart_resize")
    video_min_pixels: int | None = Field(None, gt=0, description="per-frame area bounds of clips (null: processor's)")
    video_max_pixels: int | None = Field(None, gt=0)
    clip_frames: int = Field(8, ge=2, description="frames sampled evenly from a clip")
    classes: list[str] = Field(min_length=1, description="the one class list every detection prompt names")
    jam_only: bool = Field(False, description="detection asks only for jam-causing items")
    taxonomy: dict[str, bool] = Field(
        default_factory=dict, description="labels whose jam risk differs from the built-in taxonomy (label: bool)")
    with_reason: bool = Field(False, description="jam-only answers carry a one-line reason per item")
    tasks: TaskMix = Field(default_factory=TaskMix)
    prompt_version: str = PROMPT_VERSION
    tool_call: ToolCallSyntax = "json"
    training: dict[str, Any] = Field(default_factory=dict, description="provenance: base model, method, data")

    @model_validator(mode="after")
    def _consistent(self) -> RunContract:
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels {self.min_pixels} is larger than max_pixels {self.max_pixels}")
        if self.with_reason and not self.jam_only:
            raise ValueError("with_reason applies to jam-only answers; set jam_only too")
        if self.prompt_version != PROMPT_VERSION:
            raise ValueError(f"prompt_version {self.prompt_version!r} is not the one this jamspotter writes "
                             f"({PROMPT_VERSION!r}); use the jamspotter version that trained the model")
        return self

    # ---- what is asked and expected ----------------------------------------------------------
    def expected_sample(self, sample: Sample) -> Sample:
        """`sample` with only the objects this model is asked for (what F1 and eval score against)."""
        if not self.jam_only:
            return sample
        fmt = self.format()
        frames = None if sample.frame_objects is None else [fmt.expected_objects(f) for f in sample.frame_objects]
        return sample.model_copy(update={"objects": fmt.expected_objects(sample.objects), "frame_objects": frames})

    def format(self, processor: Any = None) -> Any:
        """The `Format` that renders this contract's prompts; resize settings from `processor` when given."""
        from jamspotter.formats import get_format

        kwargs: dict[str, Any] = {} if processor is not None else {
            "min_pixels": self.min_pixels, "max_pixels": self.max_pixels}
        return get_format(self.family, processor=processor, classes=self.classes, jam_only=self.jam_only,
                          with_reason=self.with_reason, tool_call=self.tool_call, taxonomy=Taxonomy(self.taxonomy),
                          **kwargs)

    # ---- files -------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write `folder/jamspotter.json` atomically."""
        from jamspotter.data.io import write_json

        path = Path(folder) / CONTRACT_FILE
        write_json(path, self.model_dump(mode="json"))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> RunContract | None:
        """The contract saved in a model folder, None when there is none (a released or foreign model)."""
        path = Path(folder) / CONTRACT_FILE
        if not path.is_file():
            return None
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as e:
            first = e.errors()[0] if isinstance(e, ValidationError) else None
            detail = (f"{'.'.join(map(str, first['loc']))}: {first['msg']}" if first and first.get("loc")
                      else first["msg"] if first else " ".join(str(e).split()))
            raise DataError(f"{path}: not a valid run contract ({detail})") from None


def default_classes() -> list[str]:
    """The taxonomy's classes: jam-causing first, then material."""
    return list(JAM_CLASSES + MATERIAL_CLASSES)


def dataset_classes(samples: Sequence[Sample], base: Sequence[str] | None = None) -> list[str]:
    """`base` (default: the taxonomy's classes) plus every other label in the data, sorted: one list for all prompts.

    A per-sample list would name exactly the unusual classes present in that image (the answer leaks into the
    question), and inference could never ask for them.
    """
    base = list(base) if base else default_classes()
    labels = {o.label for o in _all_objects(samples)} | {s.label for s in samples if s.label}
    return base + sorted(labels - set(base))


def _all_objects(samples: Sequence[Sample]) -> Iterator[BoxObject]:
    """Every labelled box of the samples: image objects and the per-frame boxes of clips."""
    for s in samples:
        yield from s.objects
        for frame in s.frame_objects or []:
            yield from frame


def taxonomy_overrides(samples: Sequence[Sample], base: Taxonomy = DEFAULT_TAXONOMY) -> dict[str, bool]:
    """Labels whose objects are flagged (jam_risk) differently from `base`, by majority: what the data teaches."""
    votes: dict[str, list[bool]] = {}
    for o in _all_objects(samples):
        if o.jam_risk is not None:
            votes.setdefault(o.label, []).append(o.jam_risk)
    out = {}
    for label, flags in sorted(votes.items()):
        jam = sum(flags) * 2 >= len(flags)
        if jam != base.jam_risk(label):
            out[label] = jam
    return out


def untrained_contract(family: str, min_pixels: int, max_pixels: int) -> RunContract:
    """The contract assumed for a model jamspotter did not train (a released checkpoint): default classes."""
    return RunContract(family=family, min_pixels=min_pixels, max_pixels=max_pixels, classes=default_classes())
