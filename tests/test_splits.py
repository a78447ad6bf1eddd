import numpy as np
import pandas as pd
import pytest

from helpers import splits
from helpers.splits import split_dataframe, split_report

CLASSES = ["a", "b", "c", "d", "e", "f"]
FREQUENCIES = np.array([40, 25, 12, 8, 5, 2]) / 92


def make_frame(n=600, n_groups=None, seed=0):
    rng = np.random.default_rng(seed)
    rows = [
        sorted(rng.choice(CLASSES, size=rng.integers(0, 4), replace=False, p=FREQUENCIES))
        for _ in range(n)
    ]
    frame = pd.DataFrame({"filename": [f"img_{i}.jpg" for i in range(n)], "labels": rows})
    if n_groups:
        frame["Patient ID"] = rng.integers(0, n_groups, size=n)
    frame.attrs["directory"] = "images"
    return frame


def label_share(frame):
    return pd.Series([label for labels in frame["labels"] for label in labels]).value_counts()


@pytest.mark.parametrize("group_column", [None, "Patient ID"])
@pytest.mark.parametrize(("val_size", "test_size"), [(0.15, 0.15), (0.2, 0.0)])
def test_split_is_a_partition_keeping_label_shares(group_column, val_size, test_size):
    frame = make_frame(n_groups=150 if group_column else None)
    parts = split_dataframe(frame, val_size=val_size, test_size=test_size, seed=1, group_column=group_column)
    indices = [set(part.index) for part in parts]
    assert sum(len(i) for i in indices) == len(frame)
    assert set().union(*indices) == set(frame.index)
    assert not (indices[0] & indices[1] or indices[0] & indices[2] or indices[1] & indices[2])
    # Rows keep their original order and content.
    for part in parts:
        pd.testing.assert_frame_equal(part, frame.loc[part.index])
        assert part.attrs["directory"] == "images"

    totals = label_share(frame)
    # Groups are coarser units, so allow a wider tolerance there.
    tolerance = 0.06 if group_column else 0.03
    for part, size in zip(parts, (1 - val_size - test_size, val_size, test_size)):
        assert abs(len(part) / len(frame) - size) < tolerance
        if size == 0:
            assert part.empty
            continue
        shares = label_share(part).reindex(totals.index, fill_value=0) / totals
        # Common labels (>= 40 images) keep their share closely.
        common = totals[totals >= 40].index
        assert (abs(shares[common] - size) < tolerance + 0.03).all(), shares
        # Every label appears in every non-empty split when it has enough images.
        assert (shares[totals >= 1 / size * 2] > 0).all()


def test_groups_stay_together():
    frame = make_frame(n=400, n_groups=60)
    parts = split_dataframe(frame, group_column="Patient ID", seed=3)
    groups = [set(part["Patient ID"]) for part in parts]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])


def test_stratification_beats_random_split_on_rare_labels():
    frame = make_frame(n=600, seed=5)
    train, val, test = split_dataframe(frame, seed=5)
    rare_counts = [label_share(part).get("f", 0) for part in (val, test)]
    total_rare = label_share(frame)["f"]
    expected = 0.15 * total_rare
    assert all(abs(count - expected) <= 1 for count in rare_counts)


def test_reproducible_with_seed_and_different_without():
    frame = make_frame()
    first = split_dataframe(frame, seed=7)
    again = split_dataframe(frame, seed=7)
    other = split_dataframe(frame, seed=8)
    assert all(a.index.equals(b.index) for a, b in zip(first, again))
    assert not all(a.index.equals(b.index) for a, b in zip(first, other))


def test_multiclass_strings_and_unlabelled_rows():
    frame = pd.DataFrame(
        {"filename": [f"{i}.jpg" for i in range(90)], "labels": ["cats", "dogs", "panda"] * 30}
    )
    frame.loc[::9, "labels"] = None
    train, val, test = split_dataframe(frame, val_size=0.2, test_size=0.2, seed=0)
    assert len(train) + len(val) + len(test) == 90
    for part in (val, test):
        counts = part["labels"].value_counts()
        assert counts.min() >= 4, counts


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_size": 0.5, "test_size": 0.5}, "below 1"),
        ({"val_size": -0.1}, "val_size"),
        ({"test_size": "0.2"}, "test_size"),
        ({"y_col": "tags"}, "no column 'tags'"),
        ({"group_column": "patient"}, "no column 'patient'"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        split_dataframe(make_frame(n=50), **kwargs)


def test_too_few_rows_for_a_split():
    with pytest.raises(ValueError, match="val split would be empty"):
        split_dataframe(make_frame(n=3), val_size=0.1, test_size=0.0)


def test_missing_groups_raise():
    frame = make_frame(n=50, n_groups=10).astype({"Patient ID": "float"})
    frame.loc[3, "Patient ID"] = np.nan
    with pytest.raises(ValueError, match="1 row"):
        split_dataframe(frame, group_column="Patient ID")


def test_split_report_counts():
    frame = make_frame(n=200)
    parts = split_dataframe(frame, seed=0)
    report = split_report(*parts)
    assert report.loc["(images)", ["train", "val", "test"]].sum() == 200
    assert report.loc["a", ["train", "val", "test"]].sum() == label_share(frame)["a"]
    assert list(report.columns) == ["train", "val", "test", "train %", "val %", "test %"]


def test_with_groups_turns_a_setting_into_a_column():
    df = pd.DataFrame({"filename": ["/d/a_1.jpg", "/d/a_2.jpg", "/d/b_1.jpg"],
                       "labels": [["x"], ["y"], ["x"]], "Patient ID": [7, 7, 8]})
    assert splits.with_groups(df, None) == (df, None)
    same, column = splits.with_groups(df, "Patient ID")
    assert same is df and column == "Patient ID"
    grouped, column = splits.with_groups(df, lambda path: path.rsplit("/", 1)[-1].split("_")[0])
    assert column == "group" and grouped["group"].tolist() == ["a", "a", "b"] and "group" not in df
    with pytest.raises(ValueError, match="no column 'Patient'"):
        splits.with_groups(df, "Patient")
    with pytest.raises(ValueError, match="expected None, a column name"):
        splits.with_groups(df, 3)


def test_with_copies_keeps_each_group_of_copies_and_its_patients_in_one_split():
    frame = make_frame(n=400, n_groups=120)
    groups = [[f"img_{i}.jpg" for i in range(start, start + 4)] for start in range(0, 80, 8)]
    grouped, column = splits.with_copies(frame, groups)
    assert column == "copy_group" and "copy_group" not in frame
    assert grouped["copy_group"].nunique() == 400 - 10 * 3
    parts = split_dataframe(grouped, seed=3, group_column=column)
    split_of = {name: index for index, part in enumerate(parts) for name in part["filename"]}
    assert all(len({split_of[name] for name in group}) == 1 for group in groups)

    grouped, column = splits.with_copies(frame, groups, group_column="Patient ID")
    parts = split_dataframe(grouped, seed=3, group_column=column)
    split_of = {name: index for index, part in enumerate(parts) for name in part["filename"]}
    patients = {}
    for name, patient in zip(frame["filename"], frame["Patient ID"]):
        patients.setdefault(patient, set()).add(split_of[name])
    assert all(len(where) == 1 for where in patients.values())
    assert all(len({split_of[name] for name in group}) == 1 for group in groups)


def test_with_copies_refuses_unknown_files_and_rows_without_a_group():
    frame = make_frame(n=20, n_groups=5)
    with pytest.raises(ValueError, match="img_99.jpg"):
        splits.with_copies(frame, [["img_1.jpg", "img_99.jpg"]])
    frame.loc[3, "Patient ID"] = None
    with pytest.raises(ValueError, match="'Patient ID': some rows have no group"):
        splits.with_copies(frame, [["img_1.jpg", "img_2.jpg"]], group_column="Patient ID")
