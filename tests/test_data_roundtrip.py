"""Round trips: COCO -> Sample -> COCO and YOLO -> Sample -> YOLO keep boxes within 1e-6 px."""

import json
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from jamspotter.data.exporters import export_coco, export_yolo
from jamspotter.data.importers import import_dataset

CLASSES = ["rope", "plastic film", "cardboard", "hose"]


@st.composite
def image_with_boxes(draw):
    """An image size and 0-6 boxes (class id, x, y, w, h) strictly inside it, at least 0.01 px wide."""
    w, h = draw(st.integers(8, 3000)), draw(st.integers(8, 3000))
    boxes = []
    for _ in range(draw(st.integers(0, 6))):
        x1 = draw(st.floats(0, w - 1, allow_nan=False))
        y1 = draw(st.floats(0, h - 1, allow_nan=False))
        bw = draw(st.floats(0.01, w - x1, allow_nan=False))
        bh = draw(st.floats(0.01, h - y1, allow_nan=False))
        boxes.append((draw(st.integers(0, len(CLASSES) - 1)), x1, y1, bw, bh))
    return w, h, boxes


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(image_with_boxes(), min_size=1, max_size=3))
def test_coco_round_trip(images):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        doc = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]}
        for i, (w, h, boxes) in enumerate(images):
            doc["images"].append({"id": i, "file_name": f"{i}.jpg", "width": w, "height": h})
            for c, *xywh in boxes:
                doc["annotations"].append({"id": len(doc["annotations"]), "image_id": i, "category_id": c + 1,
                                           "bbox": xywh, "iscrowd": 0})
        (tmp / "in.json").write_text(json.dumps(doc))
        result = import_dataset("coco", tmp / "in.json", allow_missing_images=True)
        export_coco(result.samples, tmp / "out.json", classes=result.classes)
        out = json.loads((tmp / "out.json").read_text())
    assert out["categories"] == [{"id": i + 1, "name": n, "supercategory": n} for i, n in enumerate(CLASSES)]
    assert len(out["annotations"]) == len(doc["annotations"])
    for a, b in zip(doc["annotations"], out["annotations"], strict=True):
        assert b["category_id"] == a["category_id"] and b["image_id"] == a["image_id"] + 1
        assert b["bbox"] == pytest.approx(a["bbox"], abs=1e-6, rel=0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(image_with_boxes(), min_size=1, max_size=2))
def test_yolo_round_trip(images):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "src"
        (src / "images" / "train").mkdir(parents=True)
        (src / "labels" / "train").mkdir(parents=True)
        expected = {}
        for i, (w, h, boxes) in enumerate(images):
            Image.new("L", (w, h)).save(src / "images" / "train" / f"{i}.png")
            lines = [(c, (x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h) for c, x, y, bw, bh in boxes]
            (src / "labels" / "train" / f"{i}.txt").write_text("".join(" ".join(repr(v) for v in ln) + "\n"
                                                                      for ln in lines))
            expected[i] = (w, h, lines)
        (src / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "names": CLASSES}))
        result = import_dataset("yolo", src)
        export_yolo(result.samples, tmp / "out", classes=result.classes)
        data = yaml.safe_load((tmp / "out" / "data.yaml").read_text())
        assert data["names"] == dict(enumerate(CLASSES)) and data["train"] == "images/train"
        for i, (w, h, lines) in expected.items():
            name = f"images__train__{i}"
            assert (tmp / "out" / "images" / "train" / f"{name}.png").is_file()
            got = [[float(v) for v in ln.split()] for ln in
                   (tmp / "out" / "labels" / "train" / f"{name}.txt").read_text().splitlines()]
            assert len(got) == len(lines)
            for g, e in zip(got, lines, strict=True):
                assert int(g[0]) == e[0]
                scale = [w, h, w, h]
                assert [v * s for v, s in zip(g[1:], scale, strict=True)] == \
                    pytest.approx([v * s for v, s in zip(e[1:], scale, strict=True)], abs=1e-6, rel=0)


def test_coco_export_then_import_keeps_the_sample_ids(tmp_path):
    from jamspotter.data.records import BoxObject, Sample

    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    samples = [Sample(id="belt-000007", image=str(tmp_path / "a.png"), width=40, height=30,
                      objects=[BoxObject(label="rope", bbox=[1, 2, 10, 20])])]
    export_coco(samples, tmp_path / "gt.json")
    back = import_dataset("coco", tmp_path / "gt.json").samples
    assert [s.id for s in back] == ["belt-000007"]  # predictions keyed by the id still pair with it
