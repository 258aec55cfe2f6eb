"""`Sample`s <-> Hugging Face `datasets.Dataset`, with an explicit schema.

Nested records become lists of dicts (Arrow structs). Free-form dicts (`meta`, object
`attributes`) are stored as JSON strings, because Arrow cannot hold structs whose keys change
from row to row. `samples_from_dataset(samples_to_dataset(x)) == x`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from jamspotter.data.records import Sample

if TYPE_CHECKING:
    import datasets


def features() -> datasets.Features:
    """The Arrow schema of a `Sample` row."""
    from datasets import Features, List, Value

    box = {
        "label": Value("string"), "bbox": List(Value("float64")), "jam_risk": Value("bool"),
        "score": Value("float64"), "polygon": List(List(Value("float64"))), "iscrowd": Value("bool"),
        "reason": Value("string"), "attributes": Value("string"),
    }
    crop = {"bbox": List(Value("float64")), "label": Value("string")}
    return Features({
        "id": Value("string"), "image": Value("string"), "width": Value("int64"), "height": Value("int64"),
        "objects": List(box), "label": Value("string"),
        "qa": List({"question": Value("string"), "answer": Value("string"), "think": Value("string"),
                    "crops": List(crop)}),
        "target": {"kind": Value("string"), "values": List(List(Value("float64"))), "names": List(Value("string"))},
        "split": Value("string"), "source": Value("string"), "video": Value("string"),
        "frames": List(Value("string")), "fps": Value("float64"), "frame_objects": List(List(box)),
        "flags": List(Value("string")), "meta": Value("string"),
    })


def _box_row(o: dict) -> dict:
    return {**o, "attributes": json.dumps(o["attributes"], sort_keys=True)}


def sample_to_row(sample: Sample) -> dict[str, Any]:
    """One `Sample` as an Arrow-friendly dict."""
    row = sample.model_dump()
    row["objects"] = [_box_row(o) for o in row["objects"]]
    if row["frame_objects"] is not None:
        row["frame_objects"] = [[_box_row(o) for o in objs] for objs in row["frame_objects"]]
    row["meta"] = json.dumps(row["meta"], sort_keys=True)
    return row


def _box_back(o: dict) -> dict:
    return {**o, "attributes": json.loads(o["attributes"]) if o.get("attributes") else {}}


def row_to_sample(row: dict[str, Any]) -> Sample:
    """Inverse of `sample_to_row`."""
    row = dict(row)
    row["objects"] = [_box_back(o) for o in row.get("objects") or []]
    if row.get("frame_objects") is not None:
        row["frame_objects"] = [[_box_back(o) for o in objs] for objs in row["frame_objects"]]
    row["meta"] = json.loads(row["meta"]) if row.get("meta") else {}
    return Sample.model_validate(row)


def samples_to_dataset(samples: Sequence[Sample]) -> datasets.Dataset:
    """A `datasets.Dataset` with one row per sample and the schema of `features()`."""
    from datasets import Dataset

    return Dataset.from_list([sample_to_row(s) for s in samples], features=features())


def samples_from_dataset(dataset: Iterable[dict[str, Any]]) -> list[Sample]:
    """`Sample`s back from a dataset made by `samples_to_dataset` (or any rows of that shape)."""
    return [row_to_sample(r) for r in dataset]
