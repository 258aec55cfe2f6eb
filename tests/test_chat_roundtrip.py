"""Chat round trips: import the ms-swift grounding demo, export it for a family and trainer, import it again.

The demo file is ../shared/data/peer_formats/ms-swift/grounding.jsonl (modelscope/ms-swift,
docs/source_en/Customization/Custom-dataset.md); its images are placeholders of the README's sizes
(dog.jpg 1500x1800, sheep.jpg 900x800). The originals are the file's own numbers (real pixels).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from jamspotter.cli import app
from jamspotter.data import read_samples

runner = CliRunner()
REF = re.compile(r"<bbox>\[[^\]]*\]</bbox>")
# the demo file's boxes, as written in it (record 3 is a click point, no box)
DEMO = [[("a dog", [331.5, 761.4, 853.5, 1594.8]), ("a woman", [676.5, 685.8, 1099.5, 1427.4])],
        [("sheep", [90.9, 160.8, 135, 212.8]), ("sheep", [360.9, 480.8, 495, 532.8])],
        []]


def images(root: Path, sizes: dict[str, tuple[int, int]]) -> None:
    for name, size in sizes.items():
        Image.new("RGB", size, (90, 90, 90)).save(root / name)


def cli(*args: str) -> str:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture
def swift(shared_data, tmp_path) -> Path:
    src = tmp_path / "grounding.jsonl"
    shutil.copy(shared_data / "peer_formats" / "ms-swift" / "grounding.jsonl", src)
    images(tmp_path, {"dog.jpg": (1500, 1800), "sheep.jpg": (900, 800)})
    return src


def neutral(s) -> list[tuple[str, str]]:
    """The turns with every box reference blanked: the text around the boxes."""
    return [(REF.sub("<bbox>", t.question), REF.sub("<bbox>", t.answer).replace(" <bbox>", "<bbox>")) for t in s.qa]


@pytest.mark.parametrize("family", ["qwen2-vl", "qwen2.5-vl", "qwen3-vl"])
@pytest.mark.parametrize("trainer", ["plain", "swift", "llamafactory"])
def test_swift_demo_round_trips_for_every_family_and_trainer(swift, tmp_path, family, trainer):
    cli("data", "import", "--from", "messages", str(swift), "--out", str(tmp_path / "ds"))
    first = read_samples(tmp_path / "ds")
    assert [[(o.label, o.bbox) for o in s.objects] for s in first] == DEMO
    out = tmp_path / "out" / "chat.jsonl"
    printed = cli("data", "export", "--to", family, str(tmp_path / "ds"), "--out", str(out), "--for", trainer)
    lo, hi = re.findall(r"min_pixels=(\d+), max_pixels=(\d+)", printed)[-1]  # the processor budget used
    budget = ["--min-pixels", lo, "--max-pixels", hi] if family == "qwen2.5-vl" and trainer == "plain" else []
    budget += ["--for", trainer]  # the import reads pixels as that trainer resized the image
    records = [json.loads(line) for line in out.read_text().splitlines()]
    if trainer == "swift":  # the native form for question-answer samples too: placeholders + real pixels
        source = [json.loads(line) for line in swift.read_text().splitlines()]
        assert [r["messages"] for r in records[:2]] == [r["messages"] for r in source[:2]]  # the 3rd: a point
        assert [r.get("objects", {}).get("ref") for r in records] == [["a dog", "a woman"], ["sheep"], None]
        assert [r.get("objects", {}).get("bbox") for r in records[:2]] == [r["objects"]["bbox"] for r in source[:2]]
    cli("data", "import", "--from", "messages", str(out), "--out", str(tmp_path / "ds2"), "--family", family, *budget)
    again = read_samples(tmp_path / "ds2")
    assert len(again) == 3
    for a, b, demo in zip(first, again, DEMO, strict=True):
        assert (b.image, b.width, b.height, b.meta["system"]) == (a.image, a.width, a.height, "You are a helpful "
                                                                                              "assistant.")
        assert "box_family" not in b.meta
        assert len(b.objects) == len(demo)
        for ob, (label, box) in zip(b.objects, demo, strict=True):
            assert ob.bbox == pytest.approx(box, abs=1.0)
            if trainer == "swift":  # the objects form carries the labels
                assert ob.label == label
        assert neutral(b) == neutral(a)  # the same text around the boxes, the click point as written
    assert again[2].qa[0].answer == "Action: click(start_box='[615, 226]')"


def chat_file(tmp_path: Path, turns: list[tuple[str, str]]) -> Path:
    images(tmp_path, {"a.png": (1280, 720)})
    msgs = [{"role": "system", "content": "Spot jams."}]
    for k, (q, a) in enumerate(turns):
        msgs += [{"role": "user", "content": ("<image>" if k == 0 else "") + q}, {"role": "assistant", "content": a}]
    (tmp_path / "m.jsonl").write_text(json.dumps({"messages": msgs, "images": ["a.png"]}) + "\n")
    return tmp_path / "m.jsonl"


PROSE = "Belt speed 2.5 m/s, 3 items, a click at [615, 226], counts [1, 2, 3] and [1, 2, 3, 4, 5]."


@pytest.mark.parametrize("family", ["qwen2-vl", "qwen2.5-vl", "qwen3-vl"])
def test_prose_numbers_are_never_boxes(tmp_path, family):
    src = chat_file(tmp_path, [("What do you see?", PROSE)])
    cli("data", "import", "--from", "messages", str(src), "--out", str(tmp_path / "ds"), "--family", family)
    (s,) = read_samples(tmp_path / "ds")
    assert s.objects == [] and s.qa[0].answer == PROSE and "box_family" not in s.meta


def test_bare_lists_are_boxes_of_the_given_family_in_questions_and_answers(tmp_path):
    # Qwen3-VL: 0-1000 of each side, 1280x720: [100, 200, 300, 400] -> x*1.28, y*0.72 = [128, 144, 384, 288];
    # the question's [0, 0, 500, 500] -> [0, 0, 640, 360] (a region asked about: no object)
    src = chat_file(tmp_path, [("What is in [0, 0, 500, 500]?", "a rope[100, 200, 300, 400], " + PROSE)])
    cli("data", "import", "--from", "messages", str(src), "--out", str(tmp_path / "ds"), "--family", "qwen3-vl")
    (s,) = read_samples(tmp_path / "ds")
    assert s.qa[0].question == "What is in <bbox>[0, 0, 640, 360]</bbox>?"
    assert s.qa[0].answer == "a rope<bbox>[128, 144, 384, 288]</bbox>, " + PROSE
    assert [(o.label, o.bbox) for o in s.objects] == [("rope", [128, 144, 384, 288])]


def test_bare_lists_stay_text_without_a_family(tmp_path):
    src = chat_file(tmp_path, [("What is in [0, 0, 500, 500]?", "a rope[100, 200, 300, 400]")])
    cli("data", "import", "--from", "messages", str(src), "--out", str(tmp_path / "ds"))
    (s,) = read_samples(tmp_path / "ds")
    assert s.objects == [] and s.qa[0].answer == "a rope[100, 200, 300, 400]"
    assert s.qa[0].question == "What is in [0, 0, 500, 500]?"


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
def test_references_in_original_pixels_are_not_read_again(swift, tmp_path, family):
    # the ms-swift objects become <bbox>[...]</bbox> references in original pixels before --family applies
    cli("data", "import", "--from", "messages", str(swift), "--out", str(tmp_path / "ds"), "--family", family)
    samples = read_samples(tmp_path / "ds")
    assert [[(o.label, o.bbox) for o in s.objects] for s in samples] == DEMO
    assert samples[1].qa[0].answer == "<bbox>[90.9, 160.8, 135, 212.8]</bbox><bbox>[360.9, 480.8, 495, 532.8]</bbox>"


def test_qwen2_reimport_takes_the_words_before_each_box_as_its_label(swift, tmp_path):
    # dog.jpg 1500x1800 on the 0-1000 grid: 331.5/1.5=221, 761.4/1.8=423, 853.5/1.5=569, 1594.8/1.8=886;
    # 676.5/1.5=451, 685.8/1.8=381, 1099.5/1.5=733, 1427.4/1.8=793. The export writes no ref tokens around
    # "a dog" (see the report of brief P2); the import reads "dog" and "woman" (filler words "a", "and" dropped).
    # The sheep's text names no label: "object".
    cli("data", "import", "--from", "messages", str(swift), "--out", str(tmp_path / "ds"))
    out = tmp_path / "q2.jsonl"
    cli("data", "export", "--to", "qwen2-vl", str(tmp_path / "ds"), "--out", str(out))
    dog = json.loads(out.read_text().splitlines()[0])["messages"][-1]["content"]
    assert dog == ("a dog<|box_start|>(221,423),(569,886)<|box_end|> and "
                   "a woman<|box_start|>(451,381),(733,793)<|box_end|> are playing on the beach")
    cli("data", "import", "--from", "messages", str(out), "--out", str(tmp_path / "ds2"), "--family", "qwen2-vl")
    assert [[o.label for o in s.objects] for s in read_samples(tmp_path / "ds2")] == [
        ["dog", "woman"], ["object", "object"], []]


def test_qwen25_prose_boxes_take_the_words_before_them_as_labels(tmp_path):
    # Qwen2.5-VL default budget, 1280x720 -> 1288x728 (x*1280/1288, y*720/728):
    # [161, 182, 966, 364] -> [160, 180, 960, 360]; [644, 364, 1288, 728] -> [640, 360, 1280, 720]
    src = chat_file(tmp_path, [("Describe.", "a rope[161, 182, 966, 364] and a woman[644, 364, 1288, 728]")])
    cli("data", "import", "--from", "messages", str(src), "--out", str(tmp_path / "ds"), "--family", "qwen2.5-vl")
    (s,) = read_samples(tmp_path / "ds")
    assert [(o.label, o.bbox) for o in s.objects] == [("rope", [160, 180, 960, 360]), ("woman", [640, 360, 1280, 720])]
    assert s.qa[0].answer == "a rope<bbox>[160, 180, 960, 360]</bbox> and a woman<bbox>[640, 360, 1280, 720]</bbox>"


@pytest.fixture(scope="module")
def belt_with_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("belt")
    cli("data", "synth", "--n", "3", "--size", "1280x720", "--clips", "1", "--seconds", "1", "--fps", "2",
        "--seed", "3", "--out", str(root / "belt"))
    return root / "belt"


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
def test_our_swift_exports_come_back_with_their_labels(belt_with_clip: Path, tmp_path: Path, family: str) -> None:
    # a JSON answer names the label AFTER its box ({"bbox_2d": <bbox>, "label": "<ref-object>"}): one ref per
    # box pairs them by position, never with the previous box's label
    originals = [[(o.label, o.bbox) for o in s.objects] for s in read_samples(belt_with_clip) if s.image]
    assert sum(map(len, originals)) > 3
    out = tmp_path / "swift.jsonl"
    cli("data", "export", "--to", family, str(belt_with_clip), "--for", "swift", "--out", str(out))
    for extra in ([], ["--family", family, "--for", "swift"]):
        dest = tmp_path / f"back{len(extra)}"
        cli("data", "import", "--from", "messages", str(out), "--out", str(dest), *extra)
        back = [s for s in read_samples(dest) if s.image]  # records in the dataset's order
        assert len(back) == len(originals)
        for sample, objects in zip(back, originals, strict=True):  # the answer lists boxes in its own order
            def rounded(pairs: list) -> list:
                return sorted((label, [round(v, 2) for v in box]) for label, box in pairs)

            assert rounded([(o.label, o.bbox) for o in sample.objects]) == rounded(objects)
            assert "box_family" not in sample.meta  # the text holds neutral references only


def test_llamafactory_entry_lists_images_and_videos_and_trl_has_no_literal_video(belt_with_clip: Path,
                                                                                 tmp_path: Path) -> None:
    out = tmp_path / "lf" / "jam.json"
    cli("data", "export", "--to", "qwen2.5-vl", str(belt_with_clip), "--for", "llamafactory", "--out", str(out))
    entry = json.loads((out.parent / "dataset_info.json").read_text())["jam"]
    assert entry["columns"] == {"messages": "messages", "images": "images", "videos": "videos"}
    trl = tmp_path / "trl.jsonl"
    cli("data", "export", "--to", "qwen2.5-vl", str(belt_with_clip), "--for", "trl", "--out", str(trl))
    records = [json.loads(line) for line in trl.read_text().splitlines()]
    clip = next(r for r in records if "videos" in r)
    parts = clip["messages"][0]["content"]
    assert {"type": "video"} in parts and not any("<video>" in p.get("text", "") for p in parts)


def test_llamafactory_export_refuses_a_dataset_info_that_is_a_folder(belt_with_clip: Path, tmp_path: Path) -> None:
    (tmp_path / "lf" / "dataset_info.json").mkdir(parents=True)
    res = CliRunner().invoke(app, ["data", "export", "--to", "qwen2.5-vl", str(belt_with_clip), "--for",
                                   "llamafactory", "--out", str(tmp_path / "lf" / "jam.json")])
    assert res.exit_code == 2 and res.output.count("error:") == 1 and "dataset_info.json" in res.output
    assert not (tmp_path / "lf" / "jam.json").exists()  # nothing half-written
