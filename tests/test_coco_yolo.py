"""The labelling tools' exports: COCO JSON (CVAT, Roboflow, COCO itself) and YOLO folders
(Ultralytics, Roboflow, Darknet / CVAT "YOLO 1.1"), written as those tools write them, and
their hostile cases: each bad entry named, nothing else lost."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import data


def image(path, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 128, dtype=np.uint8)).save(path)
    return path


def coco_document(file_names, annotations, categories=None):
    categories = categories or [{"id": 1, "name": "person", "supercategory": "person"},
                                {"id": 2, "name": "dog", "supercategory": "animal"},
                                {"id": 3, "name": "cat", "supercategory": "animal"}]
    return {"info": {"description": "export"}, "licenses": [],
            "images": [{"id": index + 1, "file_name": name, "width": 12, "height": 10}
                       for index, name in enumerate(file_names)],
            "annotations": [{"id": index + 1, "image_id": image_id, "category_id": category,
                             "bbox": [1, 1, 4, 4], "area": 16, "iscrowd": crowd, "segmentation": []}
                            for index, (image_id, category, crowd) in enumerate(annotations)],
            "categories": categories}


def write_json(path, document):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


STANDARD = (["a.jpg", "b.jpg", "c.jpg"], [(1, 1, 0), (1, 2, 0), (2, 3, 1), (2, 3, 0)])


@pytest.mark.parametrize("layout", ["cvat", "roboflow", "coco"])
def test_a_coco_export_loads_where_each_tool_puts_its_images(tmp_path, layout):
    json_path, folder = {
        "cvat": ("annotations/instances_default.json", "images"),
        "roboflow": ("train/_annotations.coco.json", "train"),
        "coco": ("annotations/instances_val2017.json", "val2017"),
    }[layout]
    write_json(tmp_path / json_path, coco_document(*STANDARD))
    for name in STANDARD[0]:
        image(tmp_path / folder / name)
    frame = data.load_dataset(tmp_path / json_path)
    assert frame.attrs["layout"] == "coco"
    assert [list(labels) for labels in frame["labels"]] == [["dog", "person"], ["cat"], []]
    assert all((tmp_path / folder / name).samefile(path)
               for name, path in zip(STANDARD[0], frame["filename"]))


def test_coco_supercategories_and_an_explicit_image_directory(tmp_path):
    json_path = write_json(tmp_path / "export.json", coco_document(*STANDARD))
    frame = data.load_coco(json_path, image_directory=tmp_path / "pictures",
                           label_field="supercategory")
    assert [list(labels) for labels in frame["labels"]] == [["animal", "person"], ["animal"], []]
    assert frame["filename"][0] == str(tmp_path / "pictures" / "a.jpg")


def test_each_bad_coco_entry_is_named_and_the_rest_kept(tmp_path):
    document = coco_document(["a.jpg", "b.jpg", "a.jpg", "../escape.jpg", "/etc/x.jpg", "c.jpg"],
                             [(1, 1, 0), (2, 9, 0), (42, 1, 0), (6, 2, 0)])
    document["images"].append({"id": 2, "file_name": "twin.jpg"})
    document["images"].append("not an object")
    document["annotations"].append({"id": 99, "image_id": [1], "category_id": 1})
    json_path = write_json(tmp_path / "export.json", document)
    with pytest.warns(UserWarning):
        frame = data.load_coco(json_path)
    assert [name.rsplit("/", 1)[-1] for name in frame["filename"]] == ["a.jpg", "b.jpg", "c.jpg"]
    assert [list(labels) for labels in frame["labels"]] == [["person"], [], ["dog"]]
    reasons = {entry["path"].rsplit(" ", 1)[-1]: entry["reason"] for entry in frame.attrs["skipped"]}
    assert "duplicate file_name 'a.jpg'" in reasons["images[2]"]
    assert "escapes the image directory" in reasons["images[3]"]
    assert "absolute path" in reasons["images[4]"]
    assert "duplicate image id 2" in reasons["images[6]"]
    assert "expected an object" in reasons["images[7]"]
    assert "category_id 9 is not in 'categories'" in reasons["annotations[1]"]
    assert "image_id 42 is not in 'images'" in reasons["annotations[2]"]
    assert "image_id [1]" in reasons["annotations[4]"]
    assert all(str(json_path) in entry["path"] for entry in frame.attrs["skipped"])


@pytest.mark.parametrize("content, message", [
    (b'{"images": [', "JSON"),
    (b"[" * 5000 + b"]" * 5000, "nest"),
    ('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "caf\u00e9"}]}'
     .encode("latin-1"), "UTF-8"),
    (b'{"images": {}, "annotations": [], "categories": []}', "expected a COCO object"),
    (b'[1, 2]', "expected a COCO object"),
])
def test_a_malformed_coco_file_is_one_clear_error_naming_it(tmp_path, content, message):
    json_path = tmp_path / "export.json"
    json_path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        data.load_dataset(json_path)
    assert "export.json" in str(error.value)


def test_a_huge_coco_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from helpers.files import coco

    monkeypatch.setattr(coco, "_MAX_COCO_BYTES", 1000)
    json_path = write_json(tmp_path / "export.json", coco_document(["a.jpg"] * 1, [(1, 1, 0)] * 40))
    with pytest.raises(ValueError, match="export.json"):
        data.load_coco(json_path)


def yolo_line(class_id):
    return f"{class_id} 0.5 0.5 0.2 0.3"


def make_ultralytics(root, names_yaml="names: [person, dog, cat]\n"):
    (root / "data.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\n" + names_yaml)
    for split, stem, lines in [("train", "a", [0, 1, 1]), ("train", "b", [2]), ("val", "c", []),
                               ("val", "d", None)]:
        image(root / "images" / split / f"{stem}.jpg")
        if lines is not None:
            label = root / "labels" / split / f"{stem}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("\n".join(yolo_line(c) for c in lines) + ("\n" if lines else ""))
    return root


@pytest.mark.parametrize("names_yaml", ["names: [person, dog, cat]\n",
                                        "names:\n  0: person\n  1: dog\n  2: cat\n"])
def test_an_ultralytics_folder_loads_with_its_splits(tmp_path, names_yaml):
    root = make_ultralytics(tmp_path / "ds", names_yaml)
    frame = data.load_dataset(root)
    assert frame.attrs["layout"] == "yolo"
    by_name = {path.rsplit("/", 1)[-1]: (list(labels), split)
               for path, labels, split in zip(frame["filename"], frame["labels"], frame["split"])}
    assert by_name == {"a.jpg": (["dog", "person"], "train"), "b.jpg": (["cat"], "train"),
                       "c.jpg": ([], "val"), "d.jpg": ([], "val")}


def test_a_roboflow_yolo_export_loads(tmp_path):
    root = tmp_path / "ds"
    (root).mkdir()
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['bus', 'car']\n")
    for split, stem, lines in [("train", "x", [1]), ("valid", "y", [0, 1])]:
        image(root / split / "images" / f"{stem}.jpg")
        (root / split / "labels").mkdir(parents=True)
        (root / split / "labels" / f"{stem}.txt").write_text("\n".join(yolo_line(c) for c in lines))
    frame = data.load_dataset(root)
    assert sorted((list(l), s) for l, s in zip(frame["labels"], frame["split"])) == \
        [(["bus", "car"], "val"), (["car"], "train")]


def test_a_cvat_yolo_1_1_export_loads(tmp_path):
    root = tmp_path / "ds"
    (root / "obj_train_data").mkdir(parents=True)
    (root / "obj.names").write_text("person\ndog\n")
    (root / "obj.data").write_text("classes = 2\ntrain = data/train.txt\nnames = data/obj.names\n")
    (root / "train.txt").write_text("data/obj_train_data/p.jpg\n")
    image(root / "obj_train_data" / "p.jpg")
    (root / "obj_train_data" / "p.txt").write_text(yolo_line(1) + "\n")
    image(root / "obj_train_data" / "q.jpg")
    frame = data.load_yolo(root)
    assert [list(labels) for labels in frame["labels"]] == [["dog"], []]
    assert frame.attrs["skipped"] == []


def test_each_bad_yolo_line_and_lonely_label_file_is_named(tmp_path):
    root = make_ultralytics(tmp_path / "ds")
    (root / "labels" / "train" / "a.txt").write_text(
        f"{yolo_line(0)}\nseven 0.5 0.5 0.1 0.1\n{yolo_line(7)}\n{yolo_line(-1)}\n1.5 0 0 0 0\n")
    (root / "labels" / "train" / "ghost.txt").write_text(yolo_line(0))
    with pytest.warns(UserWarning):
        frame = data.load_dataset(root, layout="yolo")
    labels = {path.rsplit("/", 1)[-1]: list(l) for path, l in zip(frame["filename"], frame["labels"])}
    assert labels["a.jpg"] == ["person"] and len(labels) == 4
    reasons = [(entry["path"].rsplit("/", 1)[-1], entry["reason"]) for entry in frame.attrs["skipped"]]
    assert ("a.txt line 2", "expected a class id first, got 'seven'") in reasons
    assert any(where == "a.txt line 3" and "class id 7 is not one of the 3" in why for where, why in reasons)
    assert any(where == "a.txt line 4" and "class id -1" in why for where, why in reasons)
    assert any(where == "a.txt line 5" for where, _ in reasons)
    assert ("ghost.txt", "a label file without an image") in reasons


@pytest.mark.parametrize("content, message", [
    ("- a\n- b\n", "expected a mapping with 'names'"),
    ("names: !!python/object/apply:os.system ['echo hacked']\n", "not YAML that can be read safely"),
    ("names: {0: a, 2: b}\n", "must map the ids"),
    ("names: [a, [b]]\n", "must be a list of names"),
    ("names: [a\n", "not YAML that can be read safely"),
])
def test_a_bad_data_yaml_is_one_clear_error(tmp_path, content, message):
    root = tmp_path / "ds"
    image(root / "images" / "a.jpg")
    (root / "data.yaml").write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        data.load_dataset(root)
    assert "data.yaml" in str(error.value)


def test_scan_on_the_new_layouts_names_what_it_leaves_out(tmp_path):
    json_path = write_json(tmp_path / "annotations" / "instances_default.json",
                           coco_document(["a.jpg", "b.jpg"], [(1, 1, 0), (2, 8, 0)]))
    for name in ("a.jpg", "b.jpg"):
        image(tmp_path / "images" / name)
    result = subprocess.run([sys.executable, "-m", "helpers", "scan", str(json_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "annotations[1]" in result.stderr and "category_id 8" in result.stderr
    assert "2 images" in result.stdout and "coco layout" in result.stdout
