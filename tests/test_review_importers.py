"""Review regressions: importers read the layouts labelling tools really export."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from jamspotter.data.importers import import_dataset


def _image(path: Path, size: tuple[int, int] = (100, 50)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 90, 90)).save(path)


def test_yolo_roboflow_export_with_parent_relative_splits(tmp_path: Path) -> None:
    # Roboflow's YOLO export: data.yaml beside train/ valid/ but listing `../train/images`; Ultralytics
    # retries such a path without the leading `../`, so the same export must import here too.
    root = tmp_path / "export"
    _image(root / "train" / "images" / "a.jpg")
    _image(root / "valid" / "images" / "b.jpg")
    (root / "train" / "labels").mkdir(parents=True)
    (root / "train" / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['rope']\n")
    a, b = import_dataset("yolo", root).samples
    assert (a.split, b.split, b.objects) == ("train", "val", [])
    assert a.objects[0].label == "rope" and a.objects[0].bbox == pytest.approx([40, 15, 60, 35])
