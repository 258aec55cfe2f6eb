"""Core records, box maths and atomic JSONL I/O."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jamspotter.data import Sample, read_samples, write_samples
from jamspotter.data.boxes import iou, iou_matrix
from jamspotter.data.io import atomic_write
from jamspotter.data.taxonomy import Taxonomy, canonical_label
from jamspotter.errors import DataError


def test_sample_json_round_trip(tmp_path):
    s = Sample(id="a", image="images/a.jpg", width=10, height=8,
               objects=[{"label": "rope", "bbox": [1, 2, 3, 4], "jam_risk": True}])
    path = tmp_path / "samples.jsonl"
    assert write_samples(path, [s]) == 1
    assert read_samples(tmp_path) == [s]
    assert json.loads(path.read_text())["objects"][0]["bbox"] == [1.0, 2.0, 3.0, 4.0]


def test_bad_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "objects": [{"label": "x", "bbox": [1, 2]}]}\n')
    with pytest.raises(DataError, match=r"s\.jsonl:2: objects\.0\.bbox"):
        read_samples(path)


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "out.txt") as fh:
        fh.write("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


boxes = st.tuples(*[st.floats(0, 500, allow_nan=False)] * 4).map(
    lambda b: [min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])])


@given(st.lists(boxes, min_size=1, max_size=5), st.lists(boxes, min_size=1, max_size=5))
def test_iou_matrix_matches_scalar_iou(a, b):
    m = iou_matrix(a, b)
    expected = np.array([[iou(x, y) for y in b] for x in a])
    np.testing.assert_allclose(m, expected, atol=1e-9)


def test_taxonomy_aliases_and_overrides():
    assert canonical_label("Rope & strings") == "rope"
    assert Taxonomy().jam_risk("Plastic film") and not Taxonomy().jam_risk("cardboard")
    assert Taxonomy({"cardboard": True}).jam_risk("Cardboard")
