"""Fuzz the importers through the CLI: random and mutated COCO, YOLO and VOC files never end in a traceback.

Every run either imports (exit 0, and the dataset it wrote reads back) or fails with exactly one
`error:` line and exit 2, writing nothing.
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from jamspotter.cli import app
from jamspotter.data import read_samples

runner = CliRunner()
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8) | st.sampled_from(["a.png", "b.png", "../a.png", "", "missing.png", "1", "nan"]),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz_images")
    Image.new("RGB", (16, 12), (90, 90, 90)).save(root / "a.png")
    Image.new("RGB", (20, 10), (10, 90, 90)).save(root / "b.png")
    return root


def check_import(kind: str, src: Path, work: Path, skip_invalid: bool) -> None:
    """The CLI contract: exit 0 with a readable dataset, or exit 2 with one `error:` line and nothing written."""
    out = work.with_name(work.name + "-out")
    r = runner.invoke(app, ["data", "import", "--from", kind, str(src), "--out", str(out)]
                      + (["--skip-invalid"] if skip_invalid else []))
    assert isinstance(r.exception, SystemExit) or r.exception is None, repr(r.exception)
    assert "Traceback" not in r.output, r.output
    assert r.exit_code in (0, 2), r.output
    if r.exit_code == 2:
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), r.output
        assert not out.exists()
    else:
        assert read_samples(out)  # what was written reads back as a valid dataset


def _set(doc: Any, path: list, value: Any) -> Any:
    """`doc` with the element at `path` replaced by `value` (missing steps are skipped)."""
    if not path:
        return value
    node = doc
    for step in path[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return doc
    with contextlib.suppress(IndexError, TypeError):
        node[path[-1]] = value
    return doc


COCO = {"images": [{"id": 1, "file_name": "a.png", "width": 16, "height": 12},
                   {"id": 2, "file_name": "b.png"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25,
                         "segmentation": [[1, 1, 6, 1, 6, 6, 1, 6]]},
                        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [2, 2, 4, 4], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "rope"}, {"id": 2, "name": "glass"}]}
COCO_PATHS = [[], ["images"], ["images", 0], ["images", 0, "id"], ["images", 1, "id"], ["images", 0, "file_name"],
              ["images", 0, "width"], ["images", 0, "height"], ["annotations"], ["annotations", 0],
              ["annotations", 0, "bbox"], ["annotations", 0, "bbox", 2], ["annotations", 0, "segmentation"],
              ["annotations", 0, "segmentation", 0, 3], ["annotations", 0, "area"], ["annotations", 0, "category_id"],
              ["annotations", 1, "image_id"], ["annotations", 1, "iscrowd"], ["categories"], ["categories", 0],
              ["categories", 0, "id"], ["categories", 1, "id"], ["categories", 0, "name"]]


def mutate_bytes(data: bytes, edits: list[tuple[int, bytes]]) -> bytes:
    """Overwrite a few byte runs at positions (taken modulo the length)."""
    out = bytearray(data)
    for pos, chunk in edits:
        i = pos % (len(out) + 1)
        out[i:i + len(chunk)] = chunk
    return bytes(out)


# most examples keep the file's syntax (so the importer's checks are reached); some get bytes overwritten
byte_edits = st.integers(0, 3).flatmap(lambda k: st.just([]) if k < 3 else st.lists(
    st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=4)), min_size=1, max_size=3))


@SETTINGS
@given(mutations=st.lists(st.tuples(st.sampled_from(range(len(COCO_PATHS))), json_values), max_size=3),
       edits=byte_edits, skip=st.booleans())
def test_mutated_coco_is_imported_or_one_error_line(images, mutations, edits, skip):
    doc = copy.deepcopy(COCO)
    for index, value in mutations:
        doc = _set(doc, list(COCO_PATHS[index]), value)
    work = Path(tempfile.mkdtemp(dir=images.parent))
    src = work / "c.json"
    src.write_bytes(mutate_bytes(json.dumps(doc).encode(), edits))
    (work / "a.png").symlink_to(images / "a.png")
    (work / "b.png").symlink_to(images / "b.png")
    check_import("coco", src, work, skip)


yolo_tokens = st.sampled_from(["0", "1", "2", "-1", "0.5", "0.25", "1.5", "-0.2", "1e400", "-1e400", "nan", "inf",
                               "1e-300", "x", "0x1", "", "\t", "٣"])
label_lines = st.lists(st.lists(yolo_tokens, max_size=9).map(" ".join), max_size=4).map("\n".join)
yaml_texts = st.sampled_from([
    "train: images\nnames: [rope, glass]\n", "train: images\nnames: {0: rope, 1: glass}\n",
    "train: images\nnames: {0: rope, 2: glass}\n", "train: images\nnames: {.inf: rope}\n",
    "train: [images, images]\nnames: [rope]\n", "train: nope\nnames: [rope]\n", "names: [rope]\n",
    "train: images\n", "train: images\nnames: rope\n", "train: images\nval: images.txt\nnames: [rope, glass]\n",
    "path: ..\ntrain: images\nnames: [rope]\n", "train: images\nnames: [rope, [glass]]\n", "[1, 2",
    "train: images\nnames: " + "[" * 5000 + "]" * 5000 + "\n", "train: 5\nnames: [rope]\n", ""])


@SETTINGS
@given(yaml_text=yaml_texts, label_a=label_lines, label_b=st.one_of(label_lines, st.binary(max_size=20)),
       edits=byte_edits, listing=st.lists(st.sampled_from(["images/a.png", "nope.png", "", "images"]), max_size=3),
       skip=st.booleans())
def test_random_yolo_is_imported_or_one_error_line(images, yaml_text, label_a, label_b, edits, listing, skip):
    work = Path(tempfile.mkdtemp(dir=images.parent))
    (work / "images").mkdir()
    (work / "labels").mkdir()
    (work / "images" / "a.png").symlink_to(images / "a.png")
    (work / "images" / "b.png").symlink_to(images / "b.png")
    (work / "labels" / "a.txt").write_text(label_a)
    (work / "labels" / "b.txt").write_bytes(label_b if isinstance(label_b, bytes) else label_b.encode())
    (work / "images.txt").write_text("\n".join(listing))
    (work / "data.yaml").write_bytes(mutate_bytes(yaml_text.encode(), edits) if edits else yaml_text.encode())
    check_import("yolo", work, work, skip)


voc_values = st.one_of(st.sampled_from(["1", "5", "16", "12", "0", "-3", "nan", "inf", "1e400", "2.5", "", "x",
                                        "a.png", "b.png", "rope", "&amp;", "<b/>"]), st.text(max_size=5))
VOC = ("<annotation><filename>{filename}</filename><size><width>{width}</width><height>{height}</height></size>"
       "<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
       "<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object></annotation>")
VOC_FIELDS = ("filename", "width", "height", "name", "difficult", "xmin", "ymin", "xmax", "ymax")
VOC_VALID = {"filename": "a.png", "width": "16", "height": "12", "name": "rope", "difficult": "0", "xmin": "1",
             "ymin": "1", "xmax": "5", "ymax": "5"}


@SETTINGS
@given(fields=st.fixed_dictionaries({k: st.just(VOC_VALID[k]) | voc_values for k in VOC_FIELDS}), edits=byte_edits,
       layout=st.sampled_from(["file", "folder", "voc"]), skip=st.booleans())
def test_random_voc_is_imported_or_one_error_line(images, fields, edits, layout, skip):
    work = Path(tempfile.mkdtemp(dir=images.parent))
    xml = mutate_bytes(VOC.format(**fields).encode(), edits)
    folder = work / "Annotations" if layout == "voc" else work
    folder.mkdir(exist_ok=True)
    (folder / "a.xml").write_bytes(xml)
    (folder / "b.xml").write_text(VOC.format(filename="b.png", width=20, height=10, name="rope", difficult=0,
                                             xmin=1, ymin=1, xmax=5, ymax=5))
    img_dir = work / "JPEGImages" if layout == "voc" else work
    img_dir.mkdir(exist_ok=True)
    (img_dir / "a.png").symlink_to(images / "a.png")
    (img_dir / "b.png").symlink_to(images / "b.png")
    if layout == "voc":
        (work / "ImageSets" / "Main").mkdir(parents=True)
        (work / "ImageSets" / "Main" / "train.txt").write_bytes(mutate_bytes(b"a\nb\n", edits))
    check_import("voc", folder / "a.xml" if layout == "file" else work, work, skip)
