"""Tests for helpers.scan: label statistics, header sizes, missing files, full-decode audit."""
import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers.data import load_csv, load_folders
from helpers.scan import (
    audit,
    cooccurrence,
    find_copies,
    find_missing,
    image_sizes,
    label_counts,
    labels_per_image,
    scan,
)


@pytest.fixture
def small_df():
    return pd.DataFrame({
        "filename": ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"],
        "labels": [["cat", "dog"], ["dog"], [], ["dog", "person"], ["cat", "dog", "person"]],
    })


def test_label_counts(small_df):
    counts = label_counts(small_df)
    assert counts.to_dict() == {"dog": 4, "cat": 2, "person": 2}
    assert list(counts.index) == ["dog", "cat", "person"]  # descending, ties alphabetical
    assert counts.dtype == "int64"


def test_labels_per_image_has_no_gaps(small_df):
    small_df.loc[len(small_df)] = ["f.jpg", ["a", "b", "c", "d", "e"]]
    assert labels_per_image(small_df).to_dict() == {0: 1, 1: 1, 2: 2, 3: 1, 4: 0, 5: 1}


def test_cooccurrence(small_df):
    table = cooccurrence(small_df)
    assert list(table.index) == list(table.columns) == ["dog", "cat", "person"]
    assert table.loc["dog", "dog"] == 4
    assert table.loc["cat", "dog"] == table.loc["dog", "cat"] == 2
    assert table.loc["cat", "person"] == 1
    assert (table.values == table.values.T).all()


@pytest.mark.parametrize("function", [label_counts, labels_per_image, cooccurrence])
def test_statistics_on_empty_frame(function):
    result = function(pd.DataFrame({"filename": [], "labels": []}))
    assert len(result) <= 1


@pytest.mark.parametrize("function", [label_counts, scan, audit, image_sizes])
def test_missing_column_is_a_clear_error(function):
    with pytest.raises(ValueError, match="column"):
        function(pd.DataFrame({"path": ["x.jpg"]}))


def test_find_missing(tmp_path):
    (tmp_path / "here.jpg").write_bytes(b"x")
    names = [str(tmp_path / "here.jpg"), str(tmp_path / "gone.jpg"), str(tmp_path / "no" / "x.jpg")]
    assert find_missing(names) == names[1:]


def test_image_sizes_reads_headers(odd_images_dir, odd_images_expected):
    df = load_folders(odd_images_dir)
    sizes = image_sizes(df).set_index(df.filename.map(os.path.basename))
    for name, expected in odd_images_expected.items():
        row = sizes.loc[name]
        if name in ("empty.jpg", "random_bytes.jpg", "text.png"):
            assert row.error and pd.isna(row.width)
        elif expected["ok"]:
            assert (row.width, row.height, row["mode"]) == (
                expected["width"], expected["height"], expected["mode"]
            )
            assert pd.isna(row.error)


def test_scan_folder_of_odd_files(odd_images_dir):
    result = scan(load_folders(odd_images_dir))
    json.dumps(result)
    assert result["n_images"] == 16
    assert result["label_counts"] == {}
    assert result["missing"] == []
    # Headers only: the truncated JPEG still has a readable header.
    assert sorted(os.path.basename(item["path"]) for item in result["unreadable"]) == [
        "empty.jpg", "random_bytes.jpg", "text.png"
    ]
    sizes = result["sizes"]
    assert sizes["n_read"] == 13
    assert sizes["modes"]["RGB"] >= 4 and sizes["modes"]["CMYK"] == 1
    assert sizes["height"]["max"] == 64 and sizes["width"]["min"] == 15


def test_scan_csv_before_images_are_downloaded(tmp_path):
    csv_path = tmp_path / "Data_Entry.csv"
    csv_path.write_text(
        "Image Index,Finding Labels,Patient ID\n"
        "1.png,Mass|Nodule,1\n2.png,No Finding,1\n3.png,Mass,2\n../4.png,Mass,3\n"
    )
    (tmp_path / "images").mkdir()
    Image.new("RGB", (10, 6)).save(tmp_path / "images" / "1.png")
    with pytest.warns(UserWarning, match="escapes"):
        df = load_csv(csv_path)
    result = scan(df)
    json.loads(json.dumps(result))
    assert result["n_images"] == 3
    assert result["label_counts"] == {"Mass": 2, "Nodule": 1}
    assert result["labels_per_image"] == {0: 1, 1: 1, 2: 1}
    assert result["cooccurrence"]["Mass"] == {"Mass": 2, "Nodule": 1}
    assert [os.path.basename(path) for path in result["missing"]] == ["2.png", "3.png"]
    assert result["sizes"]["width"]["max"] == 10
    assert [item["path"] for item in result["skipped"]] == ["../4.png"]
    assert result["layout"] == "csv"


def test_scan_without_sizes(small_df):
    result = scan(small_df, sizes=False)
    assert result["sizes"] is None and len(result["missing"]) == 5
    assert result["label_fraction"]["dog"] == 0.8


def test_audit_odd_files(odd_images_dir, odd_images_expected):
    df = load_folders(odd_images_dir)
    result = audit(df, progress=False)
    json.dumps(result)
    assert [item["path"] for item in result["files"]] == df.filename.tolist()
    by_name = {os.path.basename(item["path"]): item for item in result["files"]}
    for name, expected in odd_images_expected.items():
        record = by_name[name]
        assert record["ok"] == expected["ok"], (name, record)
        if expected["ok"]:
            assert record["error"] is None
            assert (record["width"], record["height"], record["mode"]) == (
                expected["width"], expected["height"], expected["mode"]
            )
        else:
            assert record["error"] and record["width"] is None
    n_bad = sum(not item["ok"] for item in odd_images_expected.values())
    assert (result["n_images"], result["n_ok"], result["n_bad"]) == (16, 16 - n_bad, n_bad)
    assert by_name["truncated.jpg"]["error"] == "truncated image"


def test_audit_reports_missing_files():
    df = pd.DataFrame({"filename": ["nowhere/x.jpg"], "labels": [["a"]]})
    df.attrs["skipped"] = [{"path": "bad.xml", "reason": "malformed XML"}]
    result = audit(df, progress=False)
    assert result["files"][0]["error"] == "file not found"
    assert result["n_bad"] == 1 and result["skipped"] == df.attrs["skipped"]


def test_find_copies_says_which_groups_carry_different_labels(tmp_path):
    rng = np.random.default_rng(3)
    for name in ("a", "b", "c"):
        pixels = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((96, 72), Image.BICUBIC).save(tmp_path / f"{name}.png")
    with Image.open(tmp_path / "a.png") as image:
        image.save(tmp_path / "a_copy.jpg", quality=60)
        image.save(tmp_path / "a_again.jpg", quality=70)
    (tmp_path / "b_copy.png").write_bytes((tmp_path / "b.png").read_bytes())
    names = ["a.png", "b.png", "c.png", "a_copy.jpg", "b_copy.png", "a_again.jpg", "gone.png"]
    df = pd.DataFrame({"filename": [str(tmp_path / name) for name in names],
                       "labels": [["cat"], ["dog"], ["cat"], ["dog", "cat"], ["dog"], ["cat"], []]})
    df.attrs["skipped"] = [{"path": "bad.xml", "reason": "malformed XML"}]
    result = find_copies(df)
    json.dumps(result)
    assert result["groups"] == [[str(tmp_path / name) for name in ("a.png", "a_copy.jpg", "a_again.jpg")],
                                [str(tmp_path / name) for name in ("b.png", "b_copy.png")]]
    assert result["labels_differ"] == [True, False] and result["identical"] == [False, True]
    assert result["unreadable"] == [{"path": str(tmp_path / "gone.png"), "reason": "file not found"}]
    assert (result["n_images"], result["skipped"]) == (7, df.attrs["skipped"])
    with pytest.raises(ValueError, match="labels"):
        find_copies(df[["filename"]])
