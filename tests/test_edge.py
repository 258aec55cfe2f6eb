"""Edge classifier: datasets, one-epoch training, ONNX export equal to PyTorch, predict CLI."""

from __future__ import annotations

import json
import shutil
import warnings
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
                                   "--image-size", "64", "--batch-size", "4", "--cache-views", "1", "--tta-flips"])
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
    # cosine schedule, stepped per batch: 3 batches of 4 in the one epoch end at lr 0
    assert report["history"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert meta["tta_flips"] is True and 0 <= report["one_view_accuracy"]["val"] <= 1
    assert report["cpu_seconds"]["total"] > 0


def test_cosine_ends_at_zero_when_the_last_batch_of_one_image_is_skipped(trained, tmp_path):
    from jamspotter.cli import app

    # 12 training images at batch 11: one batch of 11 a step, the last single image is skipped (BatchNorm)
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["edge", "train", "--data", str(trained.parent / "data"), "--out", str(out),
                                   "--epochs", "2", "--image-size", "64", "--batch-size", "11", "--cache-views", "1",
                                   "--no-tta-flips"])
    assert res.exit_code == 0, res.output
    lrs = [h["lr"] for h in json.loads((out / "metrics.json").read_text())["history"]]
    assert lrs == pytest.approx([0.5e-3, 0.0], abs=1e-9)  # lr 1e-3, 2 steps: cos(pi/2) halfway, 0 at the end


def test_stem_features_flips_match_pil_and_probabilities_average_views(tmp_path):
    from PIL import ImageOps

    from jamspotter.edge.data import FLIPS, ImageDataset, Item, pil_to_chw
    from jamspotter.edge.train import predict_features, stem_features

    rng = np.random.default_rng(3)
    im = Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    im.save(tmp_path / "im.png")
    ds = ImageDataset([Item(tmp_path / "im.png", "a", "val")], ["a"], 16)
    feats, labels = stem_features(lambda x: x, torch.utils.data.DataLoader(ds, batch_size=1), "t", FLIPS)
    want = [im, ImageOps.mirror(im), ImageOps.flip(im), ImageOps.flip(ImageOps.mirror(im))]
    assert feats.shape == (4, 1, 3, 16, 16) and labels.tolist() == [0]
    for got, ref in zip(feats, want, strict=True):
        assert torch.equal(got[0], pil_to_chw(ref).half())

    tail = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 3))
    views = torch.randn(4, 5, 2)
    p = predict_features(tail, views, batch_size=2).numpy()
    with torch.no_grad():
        logits = tail(views.reshape(-1, 2)).reshape(4, 5, 3).double().numpy()
    e = np.exp(logits - logits.max(-1, keepdims=True))
    assert np.allclose(p, (e / e.sum(-1, keepdims=True)).mean(0), atol=1e-6)


def test_train_config_rejects_unknown_schedule_and_cli_defaults_match_config():
    import inspect

    from jamspotter.cli.edge import train_cmd
    from jamspotter.edge.train import EdgeTrainConfig

    with pytest.raises(DataError, match="schedule"):
        EdgeTrainConfig(schedule="linear")
    with pytest.raises(DataError, match="stem_backend"):
        EdgeTrainConfig(stem_backend="tvm")
    d = EdgeTrainConfig()
    params = inspect.signature(train_cmd).parameters
    for name in ("epochs", "cache_views", "patience", "schedule", "tta_flips", "lr", "batch_size", "train_blocks"):
        assert params[name].default.default == getattr(d, name), name


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
    with warnings.catch_warnings():  # PyTorch's own notice that TorchScript is deprecated
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=FutureWarning)
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

    # flips=True is the mean over the frame and its mirrored copies (frames at the model size: no resize)
    frame = np.random.default_rng(7).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    mirrored = [frame, frame[:, ::-1], frame[::-1], frame[::-1, ::-1]]
    one_view = EdgeClassifier(trained).probabilities([np.ascontiguousarray(f) for f in mirrored])
    for model in (trained, tmp_path / "model.onnx"):
        tta = EdgeClassifier(model, flips=True).probabilities([frame])
        assert np.allclose(tta[0], one_view.mean(0), atol=1e-4)


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
