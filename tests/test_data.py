"""Tests for helpers.data: every layout loads into the same filename/labels DataFrame."""
import os
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers.data import (
    LAYOUTS,
    detect_layout,
    list_images,
    load_csv,
    load_dataset,
    load_folders,
    load_split_folders,
    load_voc,
    voc_boxes,
)


def _image(path, size=(12, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(path)
    return path


# ---------------------------------------------------------------- folder layouts
@pytest.fixture
def class_folders(tmp_path):
    root = tmp_path / "animals"
    _image(root / "cats" / "c1.jpg")
    _image(root / "cats" / "UPPER.JPG")
    _image(root / "cats" / "deeper" / "c3.png")
    _image(root / "dogs" / "d1.jpeg")
    (root / "dogs" / ".DS_Store").write_bytes(b"\x00Bud1")
    (root / "dogs" / "Thumbs.db").write_bytes(b"\xd0\xcf")
    (root / "dogs" / "readme.txt").write_text("notes")
    (root / "dogs" / ".hidden.jpg").write_bytes(b"")
    _image(root / ".ipynb_checkpoints" / "x.jpg")
    return root


def test_list_images_skips_clutter_and_accepts_upper_case(class_folders):
    names = [os.path.relpath(path, class_folders) for path in list_images(class_folders)]
    assert names == sorted(names)
    assert names == [
        os.path.join("cats", "UPPER.JPG"),
        os.path.join("cats", "c1.jpg"),
        os.path.join("cats", "deeper", "c3.png"),
        os.path.join("dogs", "d1.jpeg"),
    ]


def test_list_images_joins_onto_the_given_directory(class_folders):
    assert all(path.startswith(str(class_folders) + os.sep) for path in list_images(class_folders))


def test_load_folders(class_folders):
    df = load_folders(class_folders)
    assert list(df.columns[:2]) == ["filename", "labels"]
    by_name = dict(zip(df.filename.map(os.path.basename), df.labels))
    assert by_name == {"UPPER.JPG": ["cats"], "c1.jpg": ["cats"], "c3.png": ["cats"],
                       "d1.jpeg": ["dogs"]}
    assert df.attrs == {"layout": "folders", "directory": str(class_folders), "skipped": [],
                        "merged_labels": {}, "left_out": []}
    assert all(os.path.isfile(path) for path in df.filename)


def test_load_folders_flat_folder_gives_unlabelled_images(odd_images_dir):
    df = load_folders(odd_images_dir)
    assert len(df) == 16  # every image-named file, broken or not; no clutter
    assert all(labels == [] for labels in df.labels)


@pytest.mark.parametrize(
    "folder, separator, expected",
    [
        ("red_shirt", "_", ["red", "shirt"]),
        ("white_bag", "_", ["bag", "white"]),
        ("blue-jeans", "-", ["blue", "jeans"]),
        (" red _ red_dress", "_", ["dress", "red"]),
        ("shoe", "_", ["shoe"]),
    ],
)
def test_load_split_folders(tmp_path, folder, separator, expected):
    _image(tmp_path / "clothes" / folder / "0001.jpg")
    df = load_split_folders(tmp_path / "clothes", separator=separator)
    assert df.labels.tolist() == [expected]
    assert df.folder.tolist() == [folder]
    assert df.attrs["layout"] == "split-folders"


def test_load_split_folders_rejects_empty_separator(tmp_path):
    with pytest.raises(ValueError, match="separator"):
        load_split_folders(tmp_path, separator="")


# ---------------------------------------------------------------- VOC
PERSON_XML = """<annotation>
  <folder>VOC2012</folder>
  <filename>2007_000001.jpg</filename>
  <size><width>500</width><height>375</height><depth>3</depth></size>
  <object>
    <name>person</name>
    <pose>Frontal</pose>
    <difficult>0</difficult>
    <part><name>head</name><bndbox><xmin>1</xmin></bndbox></part>
    <part><name>hand</name></part>
    <actions><jumping>1</jumping><phoning>0</phoning></actions>
  </object>
  <object><name>person</name><difficult>0</difficult></object>
  <object><name> dog </name><difficult>1</difficult></object>
</annotation>
"""
PLAIN_XML = """<annotation><filename>2007_000002.jpg</filename>
  <size><width>320</width><height>240</height></size>
  <object><name>car</name></object><object><name>bus</name></object>
</annotation>"""
EMPTY_XML = "<annotation><filename>2007_000003.jpg</filename></annotation>"
MALFORMED_XML = "<annotation><filename>broken.jpg</filename><object><name>cat</name>"
NO_FILENAME_XML = "<annotation><object><name>cat</name></object></annotation>"
ESCAPING_XML = "<annotation><filename>../../etc/passwd</filename></annotation>"


@pytest.fixture
def voc_root(tmp_path):
    root = tmp_path / "VOC"
    annotations = root / "Annotations"
    annotations.mkdir(parents=True)
    for name, text in [
        ("2007_000001.xml", PERSON_XML),
        ("2007_000002.xml", PLAIN_XML),
        ("2007_000003.xml", EMPTY_XML),
        ("broken.xml", MALFORMED_XML),
        ("nofile.xml", NO_FILENAME_XML),
        ("escape.xml", ESCAPING_XML),
    ]:
        (annotations / name).write_text(text)
    (annotations / ".DS_Store").write_bytes(b"\x00")
    for stem in ("2007_000001", "2007_000002", "2007_000003"):
        _image(root / "JPEGImages" / f"{stem}.jpg")
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("2007_000001\n2007_000003\n")
    (main / "val.txt").write_text("2007_000002\n")
    (main / "person_train.txt").write_text("2007_000001  1\n")
    return root


def test_load_voc_labels_are_object_names_only(voc_root):
    with pytest.warns(UserWarning) as caught:
        df = load_voc(voc_root)
    labels = dict(zip(df.filename.map(os.path.basename), df.labels))
    assert labels == {
        "2007_000001.jpg": ["dog", "person"],  # not head/hand/jumping; person once
        "2007_000002.jpg": ["bus", "car"],
        "2007_000003.jpg": [],
    }
    messages = " ".join(str(warning.message) for warning in caught)
    assert "broken.xml" in messages and "nofile.xml" in messages and "escape.xml" in messages


def test_load_voc_records_skipped_files_with_reasons(voc_root):
    with pytest.warns(UserWarning):
        df = load_voc(voc_root)
    reasons = {os.path.basename(item["path"]): item["reason"] for item in df.attrs["skipped"]}
    assert set(reasons) == {"broken.xml", "nofile.xml", "escape.xml"}
    assert "malformed XML" in reasons["broken.xml"]
    assert "filename" in reasons["nofile.xml"]
    assert "escapes" in reasons["escape.xml"]
    assert df.attrs["layout"] == "voc"
    assert df.attrs["directory"] == os.path.join(str(voc_root), "JPEGImages")


def test_load_voc_size_split_and_paths(voc_root):
    with pytest.warns(UserWarning):
        df = load_voc(voc_root)
    first = df.iloc[0]
    assert (first.width, first.height) == (500, 375)
    assert pd.isna(df.iloc[2].width)
    assert df.split.tolist() == ["train", "val", "train"]
    assert all(os.path.isfile(path) for path in df.filename)


def test_load_voc_drop_difficult(voc_root):
    with pytest.warns(UserWarning):
        df = load_voc(voc_root, drop_difficult=True)
    assert df.labels.iloc[0] == ["person"]


def test_load_voc_allow_absolute_keeps_escaping_name(voc_root):
    with pytest.warns(UserWarning):
        df = load_voc(voc_root, allow_absolute=True)
    assert any(path.endswith("etc/passwd") for path in df.filename)


def test_load_voc_without_imagesets_has_no_split(voc_root):
    for listing in (voc_root / "ImageSets" / "Main").iterdir():
        listing.unlink()
    with pytest.warns(UserWarning):
        df = load_voc(voc_root)
    assert "split" not in df.columns


def test_voc_boxes_skip_objects_without_a_box_and_read_odd_sizes(voc_root):
    boxed = ("<annotation><filename>2007_000004.jpg</filename><size><width>inf</width>"
             "<height>20</height></size><object><name>cat</name><bndbox><xmin>1</xmin>"
             "<ymin>2</ymin><xmax>3</xmax><ymax>4</ymax></bndbox></object></annotation>")
    (voc_root / "Annotations" / "boxed.xml").write_text(boxed)
    with pytest.warns(UserWarning) as caught:
        boxes = voc_boxes(voc_root)
    messages = [str(warning.message) for warning in caught]
    assert any("2007_000001.xml (object 1): no complete numeric" in message for message in messages)
    assert boxes[["label", "xmin", "ymin", "xmax", "ymax"]].values.tolist() == [["cat", 1, 2, 3, 4]]
    assert pd.isna(boxes.width.iloc[0]) and boxes.height.iloc[0] == 20
    assert str(boxes.width.dtype) == "Int64" and boxes.difficult.dtype == bool


def test_load_voc_needs_annotations(tmp_path):
    with pytest.raises(ValueError, match="Annotations"):
        load_voc(tmp_path)


# ---------------------------------------------------------------- CSV
CHEST_CSV = """Image Index,Finding Labels,Follow-up #,Patient ID
00000001_000.png,Cardiomegaly,0,1
00000001_001.png, Cardiomegaly | Emphysema ,1,1
00000002_000.png,No Finding,0,2
00000003_000.png,Hernia|Hernia|No Finding,0,3
,Mass,0,4
00000005_000.png,,0,5
00000006_000.png,Edema,0,6,extra,fields
../x.jpg,Mass,0,7
/etc/passwd,Mass,0,8
sub/../00000009_000.png,NA,0,9
"""


@pytest.fixture
def chest_csv(tmp_path):
    path = tmp_path / "chest" / "Data_Entry.csv"
    path.parent.mkdir()
    path.write_text(CHEST_CSV)
    return path


def _load_quietly(function, *args, **kwargs):
    with pytest.warns(UserWarning):
        return function(*args, **kwargs)


def test_load_csv_labels(chest_csv):
    df = _load_quietly(load_csv, chest_csv)
    labels = dict(zip(df["Image Index"], df.labels))
    assert labels == {
        "00000001_000.png": ["Cardiomegaly"],
        "00000001_001.png": ["Cardiomegaly", "Emphysema"],
        "00000002_000.png": [],
        "00000003_000.png": ["Hernia"],
        "sub/../00000009_000.png": ["NA"],  # a label called "NA" stays a label
    }
    assert list(df.columns) == ["filename", "labels", "Image Index", "Follow-up #", "Patient ID"]
    assert df["Patient ID"].tolist() == [1, 1, 2, 3, 9]


def test_load_csv_skips_bad_rows_and_escaping_paths(chest_csv):
    with pytest.warns(UserWarning) as caught:
        df = load_csv(chest_csv)
    reasons = [item["reason"] for item in df.attrs["skipped"]]
    paths = [item["path"] for item in df.attrs["skipped"]]
    assert len(reasons) == 5
    assert any("malformed row" in reason for reason in reasons)
    assert any("no file name" in reason for reason in reasons)
    assert any("no label" in reason for reason in reasons)
    assert "../x.jpg" in paths and "/etc/passwd" in paths
    assert len(caught) == 5  # one warning per skipped input
    assert len(df) + len(df.attrs["skipped"]) == CHEST_CSV.count("\n") - 1


def test_load_csv_allow_absolute(chest_csv):
    df = _load_quietly(load_csv, chest_csv, allow_absolute=True)
    assert "/etc/passwd" in df.filename.tolist()
    assert os.path.join(str(chest_csv.parent), "../x.jpg") in df.filename.tolist()


def test_load_csv_keeps_files_that_are_not_on_disk(chest_csv):
    df = _load_quietly(load_csv, chest_csv)
    assert df.attrs["directory"] == str(chest_csv.parent)
    assert df.filename.iloc[0] == os.path.join(str(chest_csv.parent), "00000001_000.png")
    assert not any(os.path.exists(path) for path in df.filename)


@pytest.mark.parametrize("folder", ["images", "JPEGImages"])
def test_load_csv_default_image_directory(chest_csv, folder):
    (chest_csv.parent / folder).mkdir()
    df = _load_quietly(load_csv, chest_csv)
    assert df.attrs["directory"] == str(chest_csv.parent / folder)
    assert df.filename.iloc[0] == os.path.join(str(chest_csv.parent / folder), "00000001_000.png")


def test_load_csv_explicit_directory_and_columns(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("id,path,tags\n1,a.jpg,cat;dog\n2,b.jpg,none\n")
    df = load_csv(path, image_directory="pics", image_column="path", label_column="tags",
                  separator=";", no_label="none")
    assert df.filename.tolist() == [os.path.join("pics", "a.jpg"), os.path.join("pics", "b.jpg")]
    assert df.labels.tolist() == [["cat", "dog"], []]
    assert list(df.columns) == ["filename", "labels", "path", "id"]


def test_load_csv_default_label_column_prefers_labels(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("file,other,labels\na.jpg,zzz,x|y\n")
    assert load_csv(path).labels.tolist() == [["x", "y"]]


def test_load_csv_empty_cell_means_no_label_when_no_label_is_empty(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("file,labels\na.jpg,\nb.jpg,x\n")
    df = load_csv(path, no_label="")
    assert df.labels.tolist() == [[], ["x"]]
    assert df.attrs["skipped"] == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_column": "nope"}, "image_column='nope'"),
        ({"label_column": "nope"}, "label_column='nope'"),
        ({"image_column": "file", "label_column": "file"}, "must differ"),
    ],
)
def test_load_csv_bad_columns(tmp_path, kwargs, match):
    path = tmp_path / "t.csv"
    path.write_text("file,labels\na.jpg,x\n")
    with pytest.raises(ValueError, match=match):
        load_csv(path, **kwargs)


def test_load_csv_single_column_is_an_error(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("file\na.jpg\n")
    with pytest.raises(ValueError, match="at least two columns"):
        load_csv(path)


def test_load_csv_100k_rows_is_fast(tmp_path):
    rng = np.random.default_rng(0)
    pool = np.array(["No Finding", "Effusion", "Mass|Nodule", "Hernia", "Edema|Effusion|Mass"])
    n = 100_000
    frame = pd.DataFrame({
        "Image Index": [f"{i:08d}_000.png" for i in range(n)],
        "Finding Labels": pool[rng.integers(0, len(pool), n)],
        "Patient ID": np.arange(n) // 3,
    })
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False)
    start = time.process_time()  # CPU time: steady even when the machine is busy
    df = load_csv(path)
    elapsed = time.process_time() - start
    assert len(df) == n
    expected = [sorted(set(text.split("|")) - {"No Finding"}) for text in frame["Finding Labels"]]
    assert df.labels.tolist() == expected
    assert elapsed < 3.0, f"load_csv took {elapsed:.2f}s for 100k rows"


# ---------------------------------------------------------------- dispatch
def test_detect_layout(voc_root, chest_csv, class_folders, tmp_path):
    assert detect_layout(voc_root) == "voc"
    assert detect_layout(chest_csv) == "csv"
    assert detect_layout(class_folders) == "folders"
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="notes.txt"):
        detect_layout(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="does not exist"):
        detect_layout(tmp_path / "missing")


@pytest.mark.parametrize("layout", ["auto", "voc"])
def test_load_dataset_voc(voc_root, layout):
    with pytest.warns(UserWarning):
        df = load_dataset(voc_root, layout=layout, drop_difficult=True)
    assert df.attrs["layout"] == "voc" and df.labels.iloc[0] == ["person"]


@pytest.mark.parametrize("layout", ["auto", "csv"])
def test_load_dataset_csv_passes_options(tmp_path, layout):
    path = tmp_path / "t.csv"
    path.write_text("name,kind\na.jpg,x+y\nb.jpg,-\n")
    df = load_dataset(path, layout=layout, separator="+", no_label="-", image_directory="img")
    assert df.labels.tolist() == [["x", "y"], []]
    assert df.filename.iloc[0] == os.path.join("img", "a.jpg")


@pytest.mark.parametrize(
    "layout, expected",
    [("auto", [["red_shirt"]]), ("folders", [["red_shirt"]]), ("split-folders", [["red", "shirt"]])],
)
def test_load_dataset_folders(tmp_path, layout, expected):
    _image(tmp_path / "red_shirt" / "1.jpg")
    df = load_dataset(tmp_path, layout=layout)
    assert df.labels.tolist() == expected


def test_load_dataset_rejects_unknown_layout_and_missing_source(tmp_path):
    with pytest.raises(ValueError, match="layout must be one of"):
        load_dataset(tmp_path, layout="pascal")
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset(tmp_path / "nothing")
    assert LAYOUTS == ("auto", "folders", "split-folders", "voc", "csv", "coco", "yolo")


def test_load_dataset_refuses_a_misspelt_option_for_every_layout(tmp_path):
    with pytest.raises(TypeError, match="image_colum"):
        load_dataset(tmp_path, layout="folders", image_colum="path")


@pytest.mark.parametrize("separator", [None, ""])
def test_load_csv_one_label_per_cell(tmp_path, separator):
    path = tmp_path / "t.csv"
    path.write_text("file,label\na.jpg,sea lion\nb.jpg, cat \n")
    df = load_csv(path, separator=separator)
    assert df.labels.tolist() == [["sea lion"], ["cat"]]


def test_load_csv_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(ValueError, match="empty.csv"):
        load_csv(path)
