"""Edge classifier: datasets, one-epoch training, ONNX export equal to PyTorch, predict CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from jamspotter.edge.data import load_items, stratified_split
from jamspotter.edge.metrics import classification_metrics
from jamspotter.edge.models import build_model
from jamspotter.errors import DataError

CLASSES = ("cardboard", "glass", "metal")



def _tiny_folder(root: Path, shared: Path | None, per_class: int = 5) -> Path:
    """A class-per-folder dataset: real TrashNet photos when shared data exists, else coloured noise."""
    rng = np.random.default_rng(0)
    for ci, c in enumerate(CLASSES):
        (root / c).mkdir(parents=True)
        src = sorted((shared / "trashnet" / c).glob("*.jpg"))[:per_class] if shared else []
        for i in range(per_class):
            if src:
                shutil.copy(src[i], root / c / src[i].name)
            else:
                arr = rng.integers(0, 80, (48, 64, 3), dtype=np.uint8)
                arr[..., ci] += 150
                Image.fromarray(arr).save(root / c / f"{c}{i}.jpg")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One epoch of EfficientNet-Lite0 transfer learning on 15 images at 64 px (ImageNet weights)."""
    from jamspotter.cli import app

    root = tmp_path_factory.mktemp("edge")
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    data = _tiny_folder(root / "data", shared if (shared / "trashnet").is_dir() else None)
    out = root / "run"
    res = CliRunner().invoke(app, ["edge", "train", "--data", str(data), "--out", str(out), "--epochs", "1",
                                   "--image-size", "64", "--batch-size", "4", "--cache-views", "1"])
    assert res.exit_code == 0, res.output
    return out


def test_train_writes_checkpoint_metrics_and_plots(trained):
    meta = json.loads((trained / "model.json").read_text())
    assert meta["arch"] == "efficientnet-lite0" and meta["classes"] == list(CLASSES) and meta["image_size"] == 64
    report = json.loads((trained / "metrics.json").read_text())
    # 15 unsplit images cut 0.8/0.1/0.1 by data.splits: 12, 1.5, 1.5 -> largest remainder, ties to val: 12/2/1
    assert report["counts"]["train"] == 12 and report["counts"]["val"] == 2
    assert len(report["history"]) == 1 and 0 <= report["val"]["accuracy"] <= 1
    assert np.asarray(report["val"]["confusion_matrix"]).sum() == report["val"]["n"] == 2
    for f in ("model.safetensors", "confusion_matrix.png", "training_curves.png"):
        assert (trained / f).stat().st_size > 500


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> Path:
    """`jamspotter edge export` with INT8 and TorchScript, once for the module."""
    from jamspotter.cli import app

    out = tmp_path_factory.mktemp("export")
    res = CliRunner().invoke(app, ["edge", "export", str(trained), "--out", str(out), "--int8", "--torchscript",
                                   "--int8-static", str(trained.parent / "data")])
    assert res.exit_code == 0, res.output
    return out


def test_export_onnx_matches_pytorch_and_predicts(trained, exported):
    import onnx

    from jamspotter.cli import app
    from jamspotter.edge.checkpoint import load_checkpoint
    from jamspotter.edge.export import ort_run, ort_session

    tmp_path = exported
    onnx_path = tmp_path / "model.onnx"
    model_proto = onnx.load(str(onnx_path))
    assert model_proto.opset_import[0].version >= 17
    assert model_proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    report = json.loads((tmp_path / "export.json").read_text())
    assert report["max_abs_diff"] <= 1e-4

    model, _ = load_checkpoint(trained)
    x = torch.rand(5, 3, 64, 64)  # a batch size the export never saw
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(ort_run(ort_session(onnx_path), x.numpy()) - ref).max() <= 1e-4
    scripted = torch.jit.load(str(tmp_path / "model.ts"))
    assert torch.allclose(scripted(x), torch.from_numpy(ref), atol=1e-4)
    assert (tmp_path / "model.int8.onnx").stat().st_size < onnx_path.stat().st_size
    assert report["int8_static_calibration_images"] == 15
    assert 0 <= report["int8_static_top1_agreement_on_calibration"] <= 1
    static = ort_run(ort_session(tmp_path / "model.int8-static.onnx"), x.numpy())
    assert static.shape == ref.shape and np.isfinite(static).all()

    images = sorted((trained.parent / "data" / "glass").glob("*.jpg"))[:2]
    res = CliRunner().invoke(app, ["edge", "predict", str(onnx_path), *map(str, images), "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.strip().splitlines()]
    assert len(rows) == 2 and all(len(r["top"]) == 3 for r in rows)
    assert all(r["top"][0]["confidence"] >= r["top"][1]["confidence"] >= r["top"][2]["confidence"] for r in rows)
    assert {t["label"] for t in rows[0]["top"]} == set(CLASSES)


def test_onnx_and_checkpoint_predictions_agree(trained, exported):
    from jamspotter.edge.predict import EdgeClassifier

    tmp_path = exported
    frames = [np.random.default_rng(i).integers(0, 255, (40, 50, 3), dtype=np.uint8) for i in range(3)]
    a = EdgeClassifier(tmp_path / "model.onnx").probabilities(frames)
    b = EdgeClassifier(trained).probabilities(frames)
    assert a.shape == (3, 3) and np.allclose(a.sum(1), 1, atol=1e-5)
    assert np.allclose(a, b, atol=1e-4)


def test_split_csv_and_samples_jsonl(tmp_path):
    from jamspotter.data.io import write_samples
    from jamspotter.data.records import Sample

    for i in range(4):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / f"im{i}.png")
    (tmp_path / "split.csv").write_text("path,label,split\nim0.png,a,train\nim1.png,b,val\nim2.png,a,test\n")
    items = load_items(tmp_path)
    assert [(i.label, i.split) for i in items] == [("a", "train"), ("b", "val"), ("a", "test")]

    jl = tmp_path / "s" / "samples.jsonl"
    write_samples(jl, [Sample(id=f"s{i}", image=f"../im{i}.png", label="ab"[i % 2]) for i in range(4)])
    items = load_items(jl.parent)
    assert {i.split for i in items} <= {"train", "val", "test"} and len(items) == 4

    write_samples(jl, [Sample(id="x", image="../im0.png")])
    with pytest.raises(DataError, match=r"samples.jsonl:1"):
        load_items(jl)
    (tmp_path / "split.csv").write_text("path,label,split\nnope.png,a,train\n")
    with pytest.raises(DataError, match="missing"):
        load_items(tmp_path)


def test_stratified_split_keeps_every_class_in_train():
    from jamspotter.edge.data import Item

    items = [Item(Path(f"{c}{i}.jpg"), c, "") for c in "ab" for i in range(10)]
    out = stratified_split(items, seed=1)
    for c in "ab":
        splits = [it.split for it in out if it.label == c]
        assert splits.count("train") == 8 and splits.count("val") == 1 and splits.count("test") == 1
    assert stratified_split(items, seed=1) == out


def test_classification_metrics_by_hand():
    m = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3) and m["per_class"]["b"]["recall"] == 1.0
    assert m["per_class"]["c"]["f1"] == 0.0
    # weighted recall equals accuracy
    assert m["recall"] == pytest.approx(0.6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_build_model_splits_and_rejects_unknown_arch():
    from jamspotter.errors import JamspotterError

    m = build_model("mobilenet_v3_small", 4, pretrained=False, train_blocks=2)
    assert m(torch.rand(2, 3, 64, 64)).shape == (2, 4)
    m.freeze_stem()
    assert not any(p.requires_grad for p in m.stem.parameters()) and all(p.requires_grad for p in m.tail.parameters())
    with pytest.raises(JamspotterError, match="unknown edge architecture"):
        build_model("vgg", 3)
