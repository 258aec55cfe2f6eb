"""Issue 11, data side: no data lost, interrupts leave a consistent folder, bad input is one `error:` line.

Each test names the finding it guards. Expected values come from what is on disk and hand-computed
boxes, never from the function under test.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps
from typer.testing import CliRunner

from jamspotter.cli import app
from jamspotter.data import read_samples
from jamspotter.outputs import MARKER

runner = CliRunner()
CLI = [sys.executable, "-c", "from jamspotter.cli import main; main()"]


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def one_error(r, *needles: str) -> str:
    """Assert exit 2 with exactly one `error:` line (no traceback) that contains every needle."""
    assert r.exit_code == 2, r.output
    assert isinstance(r.exception, SystemExit), repr(r.exception)
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def tree(folder: Path) -> dict[str, bytes | str]:
    """Every entry below `folder`: file bytes, or the symlink target."""
    out: dict[str, bytes | str] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_bytes()
    return out


def png(path: Path, size=(64, 48), color=(90, 90, 90)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def huge_png_header(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A tiny PNG file whose header declares `width` x `height` pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) +
                     chunk(b"IEND", b""))
    return path


def exif_rotated_jpeg(path: Path) -> Path:
    """A 40x20 stored JPEG with EXIF orientation 6 (shown rotated 90 degrees: upright 20x40)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (40, 20), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(path, exif=exif.tobytes())
    return path


def coco(images, annotations, categories=({"id": 1, "name": "rope"},)) -> dict:
    return {"images": list(images), "annotations": list(annotations), "categories": list(categories)}


def synth(out: Path, n: int, *extra: str):
    return invoke("data", "synth", "--out", out, "--n", n, "--size", "64x48", "--seed", "1", *extra)


# ---- finding 1: exporting YOLO into the user's own YOLO folder ----------------------------------------------
def test_yolo_export_never_replaces_the_users_yolo_folder(tmp_path):
    user = tmp_path / "their_yolo"
    png(user / "images" / "train" / "a.png")
    (user / "labels" / "train").mkdir(parents=True)
    (user / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (user / "data.yaml").write_text("train: images/train\nnames: [rope]\n")
    (user / "notes.txt").write_text("my only copy")
    assert invoke("data", "import", "--from", "yolo", user, "--out", tmp_path / "ds").exit_code == 0
    before = tree(user)
    for extra in ([], ["--overwrite"]):
        one_error(invoke("data", "export", "--to", "yolo", tmp_path / "ds", "--out", user, *extra), str(user))
        assert tree(user) == before  # images, labels and notes untouched, no dangling links


# ---- finding 3: writers into non-empty folders --------------------------------------------------------------
def test_synth_refuses_an_earlier_dataset_and_overwrite_leaves_no_stale_images(tmp_path):
    ds = tmp_path / "ds"
    assert synth(ds, 10).exit_code == 0
    before = tree(ds)
    one_error(synth(ds, 3), "--overwrite")
    assert tree(ds) == before
    r = synth(ds, 3, "--overwrite")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (ds / "images").iterdir()) == [f"belt-00000{i}.jpg" for i in range(3)]
    assert [s.image for s in read_samples(ds)] == [f"images/belt-00000{i}.jpg" for i in range(3)]


def test_synth_over_an_import_keeps_no_old_classes_json(tmp_path):
    png(tmp_path / "src" / "a.png")
    (tmp_path / "c.json").write_text(json.dumps(coco(
        [{"id": 1, "file_name": "src/a.png", "width": 64, "height": 48}],
        [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 9, 9]}], [{"id": 7, "name": "hose"}])))
    ds = tmp_path / "ds"
    assert invoke("data", "import", "--from", "coco", tmp_path / "c.json", "--out", ds).exit_code == 0
    assert (ds / "classes.json").is_file()
    one_error(synth(ds, 2), "--overwrite")
    assert synth(ds, 2, "--overwrite").exit_code == 0
    assert not (ds / "classes.json").exists()
    assert sorted(p.name for p in ds.iterdir()) == [MARKER, "images", "samples.jsonl"]


def test_export_into_the_dataset_itself_is_refused(tmp_path):
    ds = tmp_path / "ds"
    assert synth(ds, 2).exit_code == 0
    before = tree(ds)
    for to in ("coco", "qwen2.5-vl"):
        for extra in ([], ["--overwrite"]):
            one_error(invoke("data", "export", "--to", to, ds, "--out", ds / "samples.jsonl", *extra), "own input")
    one_error(invoke("data", "export", "--to", "coco", ds, "--out", ds / "classes.json", "--overwrite"))
    one_error(invoke("data", "export", "--to", "yolo", ds, "--out", ds, "--overwrite"), "own input")
    assert tree(ds) == before


def test_every_data_writer_refuses_an_existing_output_without_overwrite(tmp_path):
    ds = tmp_path / "ds"
    assert synth(ds, 2).exit_code == 0
    (tmp_path / "gt.json").write_text("keep")
    one_error(invoke("data", "export", "--to", "coco", ds, "--out", tmp_path / "gt.json"), "--overwrite")
    assert (tmp_path / "gt.json").read_text() == "keep"
    assert invoke("data", "export", "--to", "coco", ds, "--out", tmp_path / "gt.json", "--overwrite").exit_code == 0
    assert len(json.loads((tmp_path / "gt.json").read_text())["images"]) == 2

    aug = tmp_path / "aug"
    (aug / "mine").mkdir(parents=True)  # a folder the user made: never replaced, even with --overwrite
    for extra in ([], ["--overwrite"]):
        one_error(invoke("data", "augment", ds, "--out", aug, *extra), "did not write")
    assert sorted(p.name for p in aug.iterdir()) == ["mine"]

    assert invoke("data", "augment", ds, "--out", tmp_path / "aug2").exit_code == 0
    one_error(invoke("data", "augment", ds, "--out", tmp_path / "aug2"), "--overwrite")
    r = invoke("data", "augment", ds, "--out", tmp_path / "aug2", "--overwrite", "--only-new", "--kinds", "count")
    assert r.exit_code == 0, r.output
    assert all(s.meta.get("task") == "count" for s in read_samples(tmp_path / "aug2"))

    yolo = tmp_path / "yolo"
    assert invoke("data", "export", "--to", "yolo", ds, "--out", yolo).exit_code == 0
    one_error(invoke("data", "export", "--to", "yolo", ds, "--out", yolo), "--overwrite")
    assert invoke("data", "export", "--to", "yolo", ds, "--out", yolo, "--overwrite", "--copy-images").exit_code == 0
    assert not any(p.is_symlink() for p in (yolo / "images").rglob("*"))  # --copy-images is honoured

    src = tmp_path / "imgs"
    png(src / "rope" / "a.png")
    assert invoke("data", "import", "--from", "imagefolder", src, "--out", tmp_path / "imp").exit_code == 0
    one_error(invoke("data", "import", "--from", "imagefolder", src, "--out", tmp_path / "imp"), "--overwrite")
    assert invoke("data", "import", "--from", "imagefolder", src, "--out", tmp_path / "imp",
                  "--overwrite").exit_code == 0


def test_ctrl_c_during_synth_keeps_the_old_dataset(tmp_path, monkeypatch):
    import jamspotter.synth.dataset as dataset

    ds = tmp_path / "ds"
    assert synth(ds, 4).exit_code == 0
    before = tree(ds)
    real = dataset._image_job

    def interrupted(out_dir, i, *args):
        if i == 2:
            raise KeyboardInterrupt
        return real(out_dir, i, *args)

    monkeypatch.setattr(dataset, "_image_job", interrupted)
    r = invoke("data", "synth", "--out", tmp_path / "new", "--n", "4", "--size", "64x48", "--seed", "9")
    assert r.exit_code != 0
    assert not (tmp_path / "new").exists()  # nothing half-written
    r = invoke("data", "synth", "--out", ds, "--n", "4", "--size", "64x48", "--seed", "9", "--overwrite")
    assert r.exit_code != 0
    assert tree(ds) == before  # old images AND old samples.jsonl: nothing mixed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no staging folder left


def test_interrupted_yolo_export_keeps_the_earlier_export(tmp_path, monkeypatch):
    ds, yolo = tmp_path / "ds", tmp_path / "yolo"
    assert synth(ds, 3).exit_code == 0
    assert invoke("data", "export", "--to", "yolo", ds, "--out", yolo).exit_code == 0
    before = tree(yolo)
    calls = []

    def symlink(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(src, dst)

    real = os.symlink
    monkeypatch.setattr(os, "symlink", symlink)
    assert invoke("data", "export", "--to", "yolo", ds, "--out", yolo, "--overwrite").exit_code != 0
    assert len(calls) == 2 and tree(yolo) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "yolo"]


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux only")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_synth_workers_die_with_their_parent(tmp_path, sig):
    proc = subprocess.Popen([*CLI, "data", "synth", "--out", str(tmp_path / "ds"), "--n", "400", "--size", "320x240",
                             "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        kids: list[int] = []
        while len(kids) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            kids = _children(proc.pid)
        assert len(kids) >= 2, "the workers never started"
        time.sleep(0.3)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(k) for k in kids), "worker processes outlived their parent"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    if sig == signal.SIGTERM:
        assert leftovers == []  # a clean stop: the staging folder is removed, no dataset half-written
    else:
        assert all(name.startswith(".ds.") and name.endswith(".partial") for name in leftovers), leftovers


# ---- property: kill `data synth` at a random moment ------------------------------------------------------------
def _consistent(ds: Path) -> list[str]:
    """Images listed by samples.jsonl == image files present (the folder is one whole dataset)."""
    listed = sorted(s.image for s in read_samples(ds))
    present = sorted(p.relative_to(ds).as_posix() for p in (ds / "images").iterdir())
    assert listed == present, (listed, present)
    return listed


@pytest.fixture(scope="module")
def synth_states(tmp_path_factory):
    """An old dataset (5 images, seed 1) and the samples.jsonl a complete new run (12 images, seed 2) writes."""
    root = tmp_path_factory.mktemp("synth_states")
    old, new = root / "old", root / "new"
    assert synth(old, 5).exit_code == 0
    assert invoke("data", "synth", "--out", new, "--n", "12", "--size", "64x48", "--seed", "2").exit_code == 0
    return tree(old), (new / "samples.jsonl").read_bytes()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sig=st.sampled_from([signal.SIGINT, signal.SIGTERM, signal.SIGKILL]),
       delay=st.floats(0.0, 1.6), workers=st.sampled_from([1, 2]), existing=st.booleans())
def test_killing_synth_at_any_moment_leaves_old_or_new_never_mixed(tmp_path_factory, synth_states, sig, delay,
                                                                    workers, existing):
    """Into an earlier dataset (--overwrite) or a new folder: afterwards OUT is the old dataset (or absent),
    or the complete new one; after SIGKILL at most a hidden `.ds.*.partial` staging folder lies beside it."""
    old_tree, new_samples = synth_states
    root = tmp_path_factory.mktemp("kill")
    ds = root / "ds"
    if existing:
        for rel, data in old_tree.items():
            (ds / rel).parent.mkdir(parents=True, exist_ok=True)
            (ds / rel).write_bytes(data)
    proc = subprocess.Popen([*CLI, "data", "synth", "--out", str(ds), "--n", "12", "--size", "64x48", "--seed", "2",
                             "--workers", str(workers), *(["--overwrite"] if existing else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.wait(timeout=60)
    if ds.exists():
        _consistent(ds)
        now = tree(ds)
        assert (existing and now == old_tree) or now["samples.jsonl"] == new_samples
    leftovers = sorted(p.name for p in root.iterdir() if p.name != "ds")
    if sig == signal.SIGKILL:
        assert all(n.startswith(".ds.") and n.endswith(".partial") for n in leftovers), leftovers
    else:
        assert leftovers == [], leftovers


# ---- finding 6: NaN / Inf at the border ---------------------------------------------------------------------
def _coco_case(tmp_path: Path, ann: dict) -> Path:
    png(tmp_path / "a.png")
    doc = coco([{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
               [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9], **ann}])
    (tmp_path / "c.json").write_text(json.dumps(doc))  # json.dumps writes NaN / Infinity as Python reads them
    return tmp_path / "c.json"


@pytest.mark.parametrize("ann", [
    {"segmentation": [[1, 1, 9, 1, 9, float("nan"), 1, 9]]},
    {"segmentation": [[1, 1, 9, 1, 9, float("inf"), 1, 9]]},
    {"area": float("nan")},
    {"bbox": [1, 1, float("inf"), 9]},
    {"bbox": [float("nan"), 1, 9, 9]},
])
def test_coco_nan_or_inf_is_one_line_and_nothing_written(tmp_path, ann):
    src = _coco_case(tmp_path, ann)
    for extra in ([], ["--skip-invalid"]):
        one_error(invoke("data", "import", "--from", "coco", src, "--out", tmp_path / "out", *extra))
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("line", ["0 nan 0.5 0.1 0.1", "0 0.5 0.5 inf 0.1", "1e400 0.5 0.5 0.1 0.1",
                                  "0 0.1 0.1 0.2 nan 0.3 0.3"])
def test_yolo_nan_inf_and_huge_class_is_one_line(tmp_path, line):
    png(tmp_path / "y" / "images" / "a.png")
    (tmp_path / "y" / "labels").mkdir()
    (tmp_path / "y" / "labels" / "a.txt").write_text(line + "\n")
    (tmp_path / "y" / "data.yaml").write_text("train: images\nnames: [rope, glass]\n")
    one_error(invoke("data", "import", "--from", "yolo", tmp_path / "y", "--out", tmp_path / "out"), "a.txt:1")


@pytest.mark.parametrize("value", ["nan", "inf", "-1e400"])
def test_voc_and_detjson_nan_inf_is_one_line(tmp_path, value):
    png(tmp_path / "v" / "a.png")
    (tmp_path / "v" / "a.xml").write_text(
        "<annotation><filename>a.png</filename><size><width>64</width><height>48</height></size><object>"
        f"<name>rope</name><bndbox><xmin>1</xmin><ymin>{value}</ymin><xmax>9</xmax><ymax>9</ymax></bndbox>"
        "</object></annotation>")
    one_error(invoke("data", "import", "--from", "voc", tmp_path / "v", "--out", tmp_path / "out1"), "a.xml")
    number = {"nan": "NaN", "inf": "Infinity", "-1e400": "-1e400"}[value]
    (tmp_path / "d.jsonl").write_text('{"image_path": "v/a.png", "object": {"rope": [[1, ' + number + ', 9, 9]]}}\n')
    one_error(invoke("data", "import", "--from", "detjson", tmp_path / "d.jsonl", "--out", tmp_path / "o2"), "d.jsonl")


# ---- finding 7: tracebacks that must be one line -------------------------------------------------------------
def test_image_declaring_30000x30000_is_one_line_and_skippable(tmp_path):
    huge_png_header(tmp_path / "bomb.png")
    png(tmp_path / "ok.png")
    doc = coco([{"id": 1, "file_name": "bomb.png"}, {"id": 2, "file_name": "ok.png"}],
               [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [1, 1, 9, 9]}])
    (tmp_path / "c.json").write_text(json.dumps(doc))
    one_error(invoke("data", "import", "--from", "coco", tmp_path / "c.json", "--out", tmp_path / "o1"), "bomb.png")
    r = invoke("data", "import", "--from", "coco", tmp_path / "c.json", "--out", tmp_path / "o2", "--skip-invalid")
    assert r.exit_code == 0, r.output
    assert "skipped 1" in r.output and "bomb.png" in r.output
    assert [s.id for s in read_samples(tmp_path / "o2")] == ["ok"]


def test_coco_nested_100k_deep_is_one_line(tmp_path):
    (tmp_path / "c.json").write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    one_error(invoke("data", "import", "--from", "coco", tmp_path / "c.json", "--out", tmp_path / "o"), "c.json")
    (tmp_path / "d.json").write_text("[" * 100_000 + "]" * 100_000)
    one_error(invoke("data", "import", "--from", "detjson", tmp_path / "d.json", "--out", tmp_path / "o"), "d.json")


def test_coco_in_utf16_is_read_and_latin1_is_one_line(tmp_path):
    png(tmp_path / "a.png")
    doc = coco([{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
               [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 20]}], [{"id": 1, "name": "tuyau é"}])
    (tmp_path / "u16.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-16")
    r = invoke("data", "import", "--from", "coco", tmp_path / "u16.json", "--out", tmp_path / "o16")
    assert r.exit_code == 0, r.output
    (s,) = read_samples(tmp_path / "o16")
    assert s.objects[0].label == "tuyau é" and s.objects[0].bbox == [1, 2, 11, 22]
    (tmp_path / "l1.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="latin-1")
    one_error(invoke("data", "import", "--from", "coco", tmp_path / "l1.json", "--out", tmp_path / "o1"),
              "l1.json", "UTF-8")
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "data.yaml").write_text("train: images\nnames: [tuyau é]\n", encoding="latin-1")
    one_error(invoke("data", "import", "--from", "yolo", tmp_path / "y", "--out", tmp_path / "o2"), "data.yaml")


def test_out_on_a_file_or_an_unwritable_place_is_one_line(tmp_path):
    png(tmp_path / "imgs" / "rope" / "a.png")
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        one_error(invoke("data", "import", "--from", "imagefolder", tmp_path / "imgs", "--out", out), str(out))
        one_error(synth(out, 1), str(out))
        one_error(invoke("data", "augment", tmp_path / "nope", "--out", out))
    assert invoke("data", "import", "--from", "imagefolder", tmp_path / "imgs", "--out", tmp_path / "ds").exit_code == 0
    one_error(invoke("data", "export", "--to", "coco", tmp_path / "ds", "--out", tmp_path / "file" / "x.json"), "file")
    one_error(invoke("data", "export", "--to", "yolo", tmp_path / "ds", "--out", tmp_path / "file"), "file")
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_out_in_a_read_only_folder_is_one_line(tmp_path):
    png(tmp_path / "imgs" / "rope" / "a.png")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        one_error(invoke("data", "import", "--from", "imagefolder", tmp_path / "imgs", "--out", ro / "ds"), "ro")
        one_error(synth(ro / "ds", 1), "ro")
    finally:
        ro.chmod(0o755)


def test_split_ratios_nan_is_one_line(tmp_path):
    assert synth(tmp_path / "ds", 2).exit_code == 0
    before = tree(tmp_path / "ds")
    for ratios in ("nan,0.5,0.5", "0.5,inf,0.5", "nan"):
        one_error(invoke("data", "split", tmp_path / "ds", "--ratios", ratios), "--ratios")
    assert tree(tmp_path / "ds") == before


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args, option", [
    (["--seed", "-1"], "--seed"),
    (["--clutter", "nan"], "--clutter"),
    (["--clutter", "1e9"], "--clutter"),
    (["--clutter", "-1"], "--clutter"),
    (["--clips", "1", "--seconds", "1e9"], "--seconds"),
    (["--clips", "1", "--seconds", "nan"], "--seconds"),
    (["--clips", "1", "--seconds", "600", "--size", "640x480"], "GiB"),
    (["--clips", "1", "--fps", "100000"], "--fps"),
    (["--size", "30000x30000"], "--size"),
    (["--size", "4096x4096", "--clutter", "200"], "GiB"),
    (["--jam-rate", "nan"], "--jam-rate"),
    (["--n", "-1"], "--n"),
    (["--workers", "0"], "--workers"),
])
def test_absurd_synth_arguments_are_one_line_before_any_work(tmp_path, args, option):
    one_error(invoke("data", "synth", "--out", tmp_path / "o", "--n", "1", "--size", "64x48", *args), option)
    assert not (tmp_path / "o").exists()


# ---- finding 8: silent wrong imports -------------------------------------------------------------------------
def test_duplicate_coco_image_ids_are_refused(tmp_path):
    png(tmp_path / "a.png")
    png(tmp_path / "b.png")
    doc = coco([{"id": 3, "file_name": "a.png"}, {"id": 3, "file_name": "b.png"}],
               [{"id": 1, "image_id": 3, "category_id": 1, "bbox": [1, 1, 9, 9]}])
    (tmp_path / "c.json").write_text(json.dumps(doc))
    for extra in ([], ["--skip-invalid"]):
        one_error(invoke("data", "import", "--from", "coco", tmp_path / "c.json", "--out", tmp_path / "o", *extra),
                  "c.json", "duplicate image id 3")


def test_duplicate_coco_category_ids_are_refused(tmp_path):
    png(tmp_path / "a.png")
    doc = coco([{"id": 1, "file_name": "a.png"}], [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [1, 1, 9, 9]}],
               [{"id": 2, "name": "rope"}, {"id": 2, "name": "hose"}])
    (tmp_path / "c.json").write_text(json.dumps(doc))
    for extra in ([], ["--skip-invalid"]):
        one_error(invoke("data", "import", "--from", "coco", tmp_path / "c.json", "--out", tmp_path / "o", *extra),
                  "c.json", "duplicate category id 2")


def test_imagefolder_follows_symlinked_classes_and_keeps_deeper_images(tmp_path):
    src = tmp_path / "src"
    png(tmp_path / "elsewhere" / "hose" / "h1.png")
    png(src / "rope" / "r1.png")
    png(src / "rope" / "batch-2" / "r2.png")
    png(src / "train" / "film" / "day-1" / "f1.png")
    src.joinpath("hose").symlink_to(tmp_path / "elsewhere" / "hose", target_is_directory=True)
    src.joinpath("rope", "loop").symlink_to(src / "rope", target_is_directory=True)  # a loop is walked once
    r = invoke("data", "import", "--from", "imagefolder", src, "--out", tmp_path / "ds")
    assert r.exit_code == 0, r.output
    got = {(s.id, s.label, s.split) for s in read_samples(tmp_path / "ds")}
    assert got == {("hose/h1", "hose", None), ("rope/r1", "rope", None), ("rope/batch-2/r2", "rope", None),
                   ("train/film/day-1/f1", "film", "train")}


def test_imagefolder_reports_an_image_outside_any_class_folder(tmp_path):
    src = tmp_path / "src"
    png(src / "rope" / "r1.png")
    png(src / "stray.png")
    one_error(invoke("data", "import", "--from", "imagefolder", src, "--out", tmp_path / "o1"), "stray.png")
    r = invoke("data", "import", "--from", "imagefolder", src, "--out", tmp_path / "o2", "--skip-invalid")
    assert r.exit_code == 0 and "skipped 1" in r.output and "stray.png" in r.output, r.output
    assert [s.id for s in read_samples(tmp_path / "o2")] == ["rope/r1"]


def test_yolo_given_as_a_relative_path(tmp_path, monkeypatch):
    root = tmp_path / "data" / "yolo"
    png(root / "images" / "train" / "a.png", (100, 50))
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    (root / "data.yaml").write_text("train: images/train\nnames: [rope]\n")
    monkeypatch.chdir(tmp_path)
    for src in ("data/yolo", "data/yolo/data.yaml"):
        out = tmp_path / f"ds-{src.count('/')}"
        r = invoke("data", "import", "--from", "yolo", src, "--out", out)
        assert r.exit_code == 0, r.output
        (s,) = read_samples(out)
        assert Path(s.image) == root / "images" / "train" / "a.png"
        assert s.objects[0].bbox == pytest.approx([40, 15, 60, 35])  # (0.5 -+ 0.1) * 100, (0.5 -+ 0.2) * 50


def test_exif_rotated_images_are_sized_and_labelled_upright(tmp_path):
    root = tmp_path / "y"
    img = exif_rotated_jpeg(root / "images" / "a.jpg")
    with Image.open(img) as im:
        upright = ImageOps.exif_transpose(im).size  # the independent reference: Pillow's own transpose
    assert upright == (20, 40)
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.5 0.25 0.5 0.5\n")
    (root / "data.yaml").write_text("train: images\nnames: [rope]\n")
    r = invoke("data", "import", "--from", "yolo", root, "--out", tmp_path / "ds")
    assert r.exit_code == 0, r.output
    (s,) = read_samples(tmp_path / "ds")
    assert (s.width, s.height) == (20, 40)
    assert s.objects[0].bbox == pytest.approx([5, 0, 15, 20])  # cx 10, cy 10, w 10, h 20 on the upright image
    r = invoke("data", "validate", tmp_path / "ds")
    assert r.exit_code == 0 and "no problems" in r.output, r.output

    # a label file that recorded the stored (unrotated) size is reported, with the EXIF hint
    (tmp_path / "d.json").write_text(json.dumps([{"image_path": str(img), "width": 40, "height": 20,
                                                  "object": {"rope": [[1, 1, 9, 9]]}}]))
    line = one_error(invoke("data", "import", "--from", "detjson", tmp_path / "d.json", "--out", tmp_path / "o"))
    assert "40x20" in line and "20x40" in line and "EXIF" in line


def test_training_and_inference_read_images_upright(tmp_path):
    from jamspotter.data import Sample
    from jamspotter.infer.detector import to_pil
    from jamspotter.train.data import load_clip, load_image

    img = exif_rotated_jpeg(tmp_path / "a.jpg")
    assert load_image(Sample(id="a", image="a.jpg"), tmp_path).size == (20, 40)
    assert to_pil(img).size == (20, 40)
    frames, _ = load_clip(Sample(id="c", frames=["a.jpg", "a.jpg"], fps=1.0), tmp_path, 2)
    assert np.asarray(frames).shape[1:3] == (40, 20)  # H x W of the upright frames


# ---- finding 9: file modes follow the umask ---------------------------------------------------------------------
def test_data_outputs_honour_the_umask(tmp_path, umask_027):
    ds, yolo, gt = tmp_path / "ds", tmp_path / "yolo", tmp_path / "gt.json"
    assert synth(ds, 2, "--preview", "--clips", "1", "--seconds", "0.2", "--fps", "5").exit_code == 0
    assert invoke("data", "export", "--to", "yolo", ds, "--out", yolo, "--copy-images").exit_code == 0
    assert invoke("data", "export", "--to", "coco", ds, "--out", gt).exit_code == 0
    png(tmp_path / "imgs" / "rope" / "a.png").chmod(0o600)
    assert invoke("data", "import", "--from", "imagefolder", tmp_path / "imgs", "--out",
                  tmp_path / "imp").exit_code == 0
    checked = 0
    for top in (ds, yolo, tmp_path / "imp"):
        for p in [top, *top.rglob("*")]:
            if p.is_symlink():
                continue
            want = 0o750 if p.is_dir() else 0o640
            assert p.stat().st_mode & 0o777 == want, (p, oct(p.stat().st_mode & 0o777))
            checked += 1
    assert gt.stat().st_mode & 0o777 == 0o640
    assert checked > 10 and (ds / "preview.png").is_file() and (ds / "clips" / "clip-0000.mp4").is_file()
