"""`jamspotter demo --quick` runs the whole pipeline end to end (what `make demo` runs, smaller) and writes a
report page whose every picture and link resolves, in a real browser too."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from jamspotter.cli import app


class _Refs(HTMLParser):
    """Every img src and a href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"] or "")
        elif tag == "a":
            self.links.append(a["href"] or "")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[warnings.WarningMessage]]:
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out, r.output, list(caught)


def test_demo_quick_runs_every_stage(demo):
    out, _, _ = demo
    assert (out / "belt" / "preview.png").stat().st_size > 10_000
    first = json.loads((out / "belt_qwen2.5-vl.jsonl").read_text().splitlines()[0])
    assert "bbox_2d" in first["messages"][-1]["content"] and first["images"]
    seen = json.loads((out / "report_train" / "metrics.json").read_text())
    held = json.loads((out / "report_heldout" / "metrics.json").read_text())
    assert (seen["n_images"], held["n_images"]) == (8, 4) and held["n_gt"] > 0
    sim = json.loads((out / "twin" / "simulation.json").read_text())
    assert sim["detector"]["recall"] == 0.8  # the line config's assumed detector, not the tiny model's figures
    assert (out / "twin" / "recall_sweep.png").is_file()
    assert (out / "runs" / "tiny" / "final" / "model.safetensors").is_file()
    assert (out / "runs" / "tiny" / "grpo" / "final" / "model.safetensors").is_file()
    answer = json.loads((out / "service" / "detect.json").read_text())
    assert (answer["width"], answer["height"]) == (112, 112) and isinstance(answer["detections"], list)
    assert len(list((out / "drawn_heldout").glob("*.jpg"))) == 4


def test_demo_page_links_every_artefact_that_exists(demo):
    out, _, _ = demo
    page = (out / "index.html").read_text()
    refs = _Refs()
    refs.feed(page)
    assert len(refs.images) >= 4 + 4 + 2  # held-out drawings, error gallery, preview and plots
    for ref in refs.images + refs.links:
        assert not ref.startswith("/") and "://" not in ref, ref  # relative: the folder can move
        assert (out / ref).exists(), ref
    for src in refs.images:
        with Image.open(out / src) as im:
            im.verify()
    assert "tiny and random" in page and "assumed detector" in page
    assert "held-out scenes (not trained on)" in page and "training scenes (memorisation check)" in page
    assert "Skipped: pass --trashnet DIR" in page
    for artefact in ("twin/recall_sweep.json", "twin/simulation.json", "service/detect.json", "preds_heldout.jsonl",
                     "report_heldout/metrics.json", "report_train/gallery.html", "belt/clips/clip-0000.mp4"):
        assert artefact in refs.links, artefact
    assert "--stream belt/images/" in page  # the dashboard streams the scenes, not the preview collage


def test_demo_output_has_no_raw_progress_bars_and_our_calls_no_warnings(demo):
    _, output, caught = demo
    assert "it/s]" not in output and "\r" not in output  # CliRunner is not a terminal: no tqdm bars
    ours = [w for w in caught if any(k in w.filename for k in ("jamspotter", "trl", "transformers", "peft"))]
    assert not ours, [f"{w.filename}:{w.lineno}: {w.message}" for w in ours]


CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).is_file()), None)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_demo_page_shows_every_image_in_chromium(demo):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    out, _, _ = demo
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto((out / "index.html").as_uri())
        page.wait_for_load_state("load")
        shown = page.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])")
        browser.close()
    assert len(shown) >= 10
    assert all(width > 0 for _, width in shown), [src for src, width in shown if width == 0]


def test_trashnet_subset_names_the_first_images_of_each_class_and_split(tmp_path):
    from jamspotter.demo import trashnet_items, trashnet_subset

    src = tmp_path / "imagefolder"
    for split in ("train", "val", "test"):
        for label in ("glass", "paper"):
            for i in range(3):
                (src / split / label).mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8)).save(src / split / label / f"{i}.jpg")
    n = trashnet_subset(trashnet_items(src), tmp_path / "subset", {"train": 2, "val": 1, "test": 1})
    with (tmp_path / "subset" / "split.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert n == len(rows) == 2 * (2 + 1 + 1)
    firsts = sorted((r["label"], r["split"]) for r in rows if r["path"].endswith("/0.jpg"))
    assert firsts == [(label, split) for label in ("glass", "paper") for split in ("test", "train", "val")]
    assert all(Path(r["path"]).is_absolute() and Path(r["path"]).is_file() for r in rows)


def test_demo_refuses_a_missing_trashnet_folder_before_writing(tmp_path):
    r = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path / "out"), "--trashnet", str(tmp_path / "no")])
    assert r.exit_code == 2 and r.output.strip().startswith("error:") and "--trashnet" in r.output
    assert not (tmp_path / "out").exists()
