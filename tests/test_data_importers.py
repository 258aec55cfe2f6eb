"""Importers: every source format into canonical Samples, on tiny files and on the real TACO / TrashNet."""

import json
from collections import Counter

import pytest
from PIL import Image

from jamspotter.data.importers import import_dataset, parse_crop_calls, relative_paths
from jamspotter.data.taxonomy import Taxonomy
from jamspotter.errors import DataError


def make_image(path, size=(64, 48)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 90, 90)).save(path)
    return path


def write_coco(path, images, annotations, categories=({"id": 1, "name": "rope"}, {"id": 2, "name": "cardboard"})):
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": list(categories)}))
    return path


# ---- real data ---------------------------------------------------------------------------------
def test_taco_imports_with_missing_images(shared_data):
    src = shared_data / "taco_annotations" / "annotations.json"
    result = import_dataset("coco", src, allow_missing_images=True)
    samples = result.samples
    assert len(samples) == 1500
    assert sum(len(s.objects) for s in samples) == 4784
    assert len(result.classes) == 60  # one category ("Plastified paper bag") has no annotation
    assert len({o.label for s in samples for o in s.objects}) == 59
    assert all("missing_image" in s.flags for s in samples)
    labels = Counter(o.label for s in samples for o in s.objects)
    assert labels["Plastic film"] == 451 and labels["Rope & strings"] == 29
    film = next(o for s in samples for o in s.objects if o.label == "Plastic film")
    assert film.jam_risk is True and film.polygon
    # boxes are xyxy inside the image (TACO's 1 px overshoots are clipped)
    for s in samples:
        for o in s.objects:
            x1, y1, x2, y2 = o.bbox
            assert 0 <= x1 < x2 <= s.width and 0 <= y1 < y2 <= s.height


def test_taco_without_allow_missing_fails_on_first_image(shared_data):
    with pytest.raises(DataError, match=r"annotations\.json:images\[0\]: image .*not found"):
        import_dataset("coco", shared_data / "taco_annotations" / "annotations.json")


def test_trashnet_imports_with_split_csv(shared_data):
    samples = import_dataset("imagefolder", shared_data / "trashnet").samples
    assert len(samples) == 2527
    assert Counter(s.split for s in samples) == {"train": 2023, "val": 252, "test": 252}
    assert Counter(s.label for s in samples) == {"cardboard": 403, "glass": 501, "metal": 410, "paper": 594,
                                                 "plastic": 482, "trash": 137}
    assert {(s.width, s.height) for s in samples} == {(384, 288)}
    assert all(not s.objects and not s.flags for s in samples)


# ---- COCO --------------------------------------------------------------------------------------
def test_coco_polygons_rle_crowd_and_clipping(tmp_path):
    make_image(tmp_path / "a.png")
    src = write_coco(tmp_path / "c.json", [{"id": 7, "file_name": "a.png", "width": 64, "height": 48}], [
        {"id": 1, "image_id": 7, "category_id": 1, "bbox": [-0.5, 2, 10, 20], "iscrowd": 0,
         "segmentation": [[0, 2, 9, 2, 9, 22, 0, 22]]},
        {"id": 2, "image_id": 7, "category_id": 2, "bbox": [30, 10, 20, 30], "iscrowd": 1,
         "segmentation": {"counts": "abc", "size": [48, 64]}},
    ])
    (s,) = import_dataset("coco", src).samples
    rope, box = s.objects
    assert rope.bbox == [0.0, 2.0, 9.5, 22.0] and rope.polygon == [[0, 2, 9, 2, 9, 22, 0, 22]] and rope.jam_risk
    assert box.bbox == [30.0, 10.0, 50.0, 40.0] and box.polygon is None and box.iscrowd and not box.jam_risk
    assert (s.width, s.height, s.source) == (64, 48, "coco:c.json#7")


def test_coco_bad_boxes_and_ids_name_the_entry(tmp_path):
    make_image(tmp_path / "a.png")
    img = [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}]
    src = write_coco(tmp_path / "c.json", img, [{"id": 5, "image_id": 1, "category_id": 9, "bbox": [1, 1, 2, 2]}])
    with pytest.raises(DataError, match=r"c\.json:images\[0\]: annotations\[0\] \(id 5\): unknown category_id 9"):
        import_dataset("coco", src)
    src = write_coco(tmp_path / "c.json", img, [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 1, 200, 2]}])
    with pytest.raises(DataError, match=r"lies outside the 64x48 image"):
        import_dataset("coco", src)
    src = write_coco(tmp_path / "c.json", [{**img[0], "width": 65}], [])
    with pytest.raises(DataError, match=r"recorded size 65x48 but the image .* is 64x48"):
        import_dataset("coco", src)


def test_skip_invalid_keeps_the_rest(tmp_path):
    make_image(tmp_path / "a.png")
    make_image(tmp_path / "b.png")
    src = write_coco(tmp_path / "c.json", [{"id": 1, "file_name": "a.png", "width": 64, "height": 48},
                                           {"id": 2, "file_name": "b.png", "width": 64, "height": 48},
                                           {"id": 3, "file_name": "gone.png", "width": 64, "height": 48}],
                     [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, -3, 4]},
                      {"id": 2, "image_id": 2, "category_id": 1, "bbox": [5, 5, 3, 4]}])
    result = import_dataset("coco", src, skip_invalid=True)
    assert [s.id for s in result.samples] == ["b"]
    assert len(result.skipped) == 2
    assert "x2 < x1" in result.skipped[0] and "gone.png not found" in result.skipped[1]


def test_taxonomy_override_changes_jam_risk(tmp_path):
    make_image(tmp_path / "a.png")
    src = write_coco(tmp_path / "c.json", [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
                     [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [1, 1, 5, 5]}])
    (s,) = import_dataset("coco", src, taxonomy=Taxonomy({"cardboard": True})).samples
    assert s.objects[0].jam_risk is True


# ---- YOLO --------------------------------------------------------------------------------------
def test_yolo_with_dict_names_and_polygon_lines(tmp_path):
    make_image(tmp_path / "images" / "train" / "a.jpg", (100, 50))
    make_image(tmp_path / "images" / "val" / "b.jpg", (100, 50))
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n\n0 0.1 0.2 0.3 0.2 0.3 0.6\n")
    (tmp_path / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {0: rope, 1: hose}\n")
    result = import_dataset("yolo", tmp_path)
    a, b = result.samples
    assert (a.id, a.split, b.split, b.objects) == ("images/train/a", "train", "val", [])
    assert a.objects[0].label == "hose" and a.objects[0].bbox == pytest.approx([40, 15, 60, 35])
    assert a.objects[1].label == "rope" and a.objects[1].bbox == pytest.approx([10, 10, 30, 30])
    assert a.objects[1].polygon == [pytest.approx([10, 10, 30, 10, 30, 30])]
    assert result.classes == [{"id": 0, "name": "rope"}, {"id": 1, "name": "hose"}]


@pytest.mark.parametrize("line, message", [
    ("0 0.5 0.5 0.2", "got 4 values"),
    ("0 0.5 x 0.2 0.2", "not numbers"),
    ("7 0.5 0.5 0.2 0.2", "unknown class id 7"),
    ("0 0.5 0.5 -0.2 0.2", "x2 < x1"),
])
def test_yolo_bad_line_names_file_and_line(tmp_path, line, message):
    make_image(tmp_path / "images" / "a.png")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text(f"0 0.5 0.5 0.1 0.1\n{line}\n")
    (tmp_path / "data.yaml").write_text("train: images\nnames: [rope]\n")
    with pytest.raises(DataError, match=rf"labels/a\.txt:2: .*{message}"):
        import_dataset("yolo", tmp_path / "data.yaml")


# ---- VOC ---------------------------------------------------------------------------------------
VOC = """<annotation><filename>a.jpg</filename><size><width>64</width><height>48</height><depth>3</depth></size>
<object><name>plastic film</name><difficult>1</difficult><bndbox><xmin>3</xmin><ymin>4</ymin><xmax>30</xmax>
<ymax>40</ymax></bndbox></object></annotation>"""


def test_voc_year_folder_with_imagesets(tmp_path):
    make_image(tmp_path / "JPEGImages" / "a.jpg")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(VOC)
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("a\n")
    (s,) = import_dataset("voc", tmp_path).samples
    assert s.split == "val" and (s.width, s.height) == (64, 48)
    (o,) = s.objects
    assert o.bbox == [3, 4, 30, 40] and o.jam_risk and o.attributes == {"difficult": True}


def test_voc_malformed_xml_names_file_and_line(tmp_path):
    make_image(tmp_path / "a.jpg")
    (tmp_path / "a.xml").write_text(VOC.replace("</size>", "</siz>"))
    with pytest.raises(DataError, match=r"a\.xml: malformed XML \(line 1"):
        import_dataset("voc", tmp_path)
    (tmp_path / "a.xml").write_text(VOC.replace("<xmax>30</xmax>", "<xmax>2</xmax>"))
    with pytest.raises(DataError, match=r"a\.xml: object 1: x2 < x1"):
        import_dataset("voc", tmp_path)


# ---- ImageFolder -------------------------------------------------------------------------------
def test_imagefolder_split_folders_and_csv_disagreement(tmp_path):
    make_image(tmp_path / "train" / "glass" / "1.jpg")
    make_image(tmp_path / "test" / "metal" / "2.jpg")
    samples = import_dataset("imagefolder", tmp_path).samples
    assert [(s.label, s.split) for s in samples] == [("metal", "test"), ("glass", "train")]
    (tmp_path / "split.csv").write_text("path,label,split\ntrain/glass/1.jpg,paper,val\n")
    with pytest.raises(DataError, match=r"split\.csv:2: label 'paper' disagrees with its folder 'glass'"):
        import_dataset("imagefolder", tmp_path)


# ---- QnA ---------------------------------------------------------------------------------------
def test_qna_crop_calls_become_markers_and_refs(tmp_path):
    make_image(tmp_path / "a.png", (200, 100))
    answer = ("<think>Something thin on the left. {Crop rope [10, 20, 60, 80]} Frayed. {Crop [0, 0, 5.5, 5]}"
              "</think><answer>Yes: {Crop rope [10, 20, 60, 80]} will wrap.</answer>")
    rec = {"id": "q1", "image": "a.png", "question": "Anything that jams?", "answer": answer}
    (tmp_path / "q.jsonl").write_text(json.dumps(rec) + "\n")
    (s,) = import_dataset("qna", tmp_path / "q.jsonl").samples
    (turn,) = s.qa
    assert turn.think == "Something thin on the left. <crop> Frayed. <crop>"
    assert [c.bbox for c in turn.crops] == [[10, 20, 60, 80], [0, 0, 5.5, 5]]
    assert [c.label for c in turn.crops] == ["rope", None]
    assert turn.answer == "Yes: rope <bbox>[10, 20, 60, 80]</bbox> will wrap."
    assert (s.width, s.height, s.id) == (200, 100, "q1")


def test_qna_bad_crop_names_line(tmp_path):
    make_image(tmp_path / "a.png", (200, 100))
    good = {"image": "a.png", "question": "q", "answer": "<answer>no</answer>"}
    bad = {"image": "a.png", "question": "q", "answer": "<think>{Crop rope [50, 20, 10, 80]}</think>"}
    (tmp_path / "q.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=r"q\.jsonl:2: crop call 1 .*x2 < x1"):
        import_dataset("qna", tmp_path / "q.jsonl")
    assert parse_crop_calls("{Crop plastic film [1, 2.5, 3e1, 4]}")[0][0].bbox == [1, 2.5, 30, 4]


# ---- per-class detection JSON ------------------------------------------------------------------
def test_detjson_list_and_jsonl(tmp_path):
    make_image(tmp_path / "a.png")
    rec = {"image_path": "a.png", "object": {"rope": [[1, 2, 10, 20], [5, 5, 9, 9]], "glass": [[0, 0, 64, 48]]}}
    (tmp_path / "d.json").write_text(json.dumps([rec]))
    (tmp_path / "d.jsonl").write_text(json.dumps(rec) + "\n")
    (tmp_path / "one.json").write_text(json.dumps(rec, indent=2))  # a single pretty-printed record
    for name in ("d.json", "d.jsonl", "one.json"):
        (s,) = import_dataset("detjson", tmp_path / name).samples
        assert [(o.label, o.bbox) for o in s.objects] == [("rope", [1, 2, 10, 20]), ("rope", [5, 5, 9, 9]),
                                                          ("glass", [0, 0, 64, 48])]
    (tmp_path / "d.jsonl").write_text(json.dumps(rec) + "\n{not json\n")
    with pytest.raises(DataError, match=r"d\.jsonl:2: malformed JSON"):
        import_dataset("detjson", tmp_path / "d.jsonl")


# ---- chat files --------------------------------------------------------------------------------
def test_conversations_and_messages(tmp_path):
    make_image(tmp_path / "a.png")
    conv = [{"id": "c1", "image": "a.png", "conversations": [
        {"from": "system", "value": "You sort waste."},
        {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "A rope."},
        {"from": "human", "value": "Jam risk?"}, {"from": "gpt", "value": "Yes."}]}]
    (tmp_path / "c.json").write_text(json.dumps(conv))
    (s,) = import_dataset("conversations", tmp_path / "c.json").samples
    assert [(t.question, t.answer) for t in s.qa] == [("What is this?", "A rope."), ("Jam risk?", "Yes.")]
    assert s.meta == {"chat_format": "conversations", "system": "You sort waste."}
    assert s.source == "conversations:c.json#0" and s.width == 64

    msgs = {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Count ropes."}]},
                         {"role": "assistant", "content": "2"}], "images": ["a.png"]}
    (tmp_path / "m.jsonl").write_text(json.dumps(msgs) + "\n")
    (s,) = import_dataset("messages", tmp_path / "m.jsonl").samples
    assert [(t.question, t.answer) for t in s.qa] == [("Count ropes.", "2")] and s.image.endswith("a.png")
    (tmp_path / "m.jsonl").write_text(json.dumps({"messages": [{"role": "bot", "content": "x"}]}) + "\n")
    with pytest.raises(DataError, match=r"m\.jsonl:1: turn 1: unknown role 'bot'"):
        import_dataset("messages", tmp_path / "m.jsonl")


# ---- clips -------------------------------------------------------------------------------------
def test_video_records(tmp_path):
    import numpy as np

    from jamspotter.synth import write_mp4

    clip = tmp_path / "clip.mp4"
    write_mp4(clip, [np.zeros((24, 32, 3), np.uint8)] * 3, fps=10)
    recs = [{"video": "clip.mp4", "fps": 10, "target": [[0.5, 0.0], [0.6, 0.1]], "names": ["v", "k"]},
            {"video": "gone.mp4", "fps": 10, "target": [[1, 2]]}]
    (tmp_path / "v.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    with pytest.raises(DataError, match=r"v\.jsonl:2: video .*gone\.mp4 not found"):
        import_dataset("video", tmp_path / "v.jsonl")
    a, b = import_dataset("video", tmp_path / "v.jsonl", allow_missing_images=True).samples
    assert (a.width, a.height, a.fps, a.target.values, a.target.names) == (32, 24, 10.0, [[0.5, 0.0], [0.6, 0.1]],
                                                                          ["v", "k"])
    assert b.flags == ["missing_image"] and a.id == "clip"
    (rel,) = relative_paths([a], tmp_path)
    assert rel.video == "clip.mp4"
