"""Tests for helpers.app.label_issues: out-of-fold label-issue ranking and its command."""
import argparse
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _factories import make_fashion_folders, save_model_folder
from PIL import Image

from helpers.app import label_issues
from helpers.app.label_issues import (
    TRAINING_NOTE,
    add_label_issues_options,
    command_label_issues,
    find_label_issues,
    from_model_dir,
)

# Not a seed of the library's defaults nor of the generated datasets: these tests must not
# tune anything the planted sets of ``make-data`` are measured on.
SEED = 2027
COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}
# (from folder, to folder): the image keeps its look and gets the other colour's label.
FLIPS = [("red_shirt", "blue_shirt"), ("red_shoe", "blue_shoe"),
         ("blue_shirt", "red_shirt"), ("blue_shoe", "red_shoe")]
BROKEN = ["empty.jpg", "truncated.jpg", "random_bytes.jpg", "text.png"]
KEYS = {"path", "given", "suggested", "score", "issue"}


def make_flipped_folders(root, odd_images, per_folder=12, size=16, seed=SEED):
    """``colour_item`` folders (split-folders layout) whose colour is easy to learn, with one
    image of each ``FLIPS`` pair moved to the wrong colour and the broken files of
    ``odd_images`` in ``red_shirt``. Returns the paths of the flipped images."""
    make_fashion_folders(root, per_folder=per_folder, size=size, broken=False, seed=seed)
    flipped = []
    for index, (source, target) in enumerate(FLIPS):
        path = root / target / f"flipped_{index}.png"
        (root / source / f"{index}.png").rename(path)
        flipped.append(str(path))
    for name in BROKEN:
        shutil.copy(odd_images / name, root / "red_shirt" / name)
    return flipped


def found_among_most_suspicious(issues, flipped):
    """How many ``flipped`` paths are among the ``2 * len(flipped)`` most suspicious."""
    top = {item["path"] for item in issues[:2 * len(flipped)]}
    return sum(path in top for path in flipped)


@pytest.fixture(scope="module")
def flipped_set(tmp_path_factory, _odd_images_master):
    root = tmp_path_factory.mktemp("flipped") / "data"
    return root, make_flipped_folders(root, _odd_images_master)


@pytest.fixture(scope="module")
def out_of_fold(flipped_set):
    """One K-fold run (a fast MLP on 16x16 images), its log lines and its warnings."""
    from helpers.app.workflows import TrainOptions

    root, _ = flipped_set
    lines = []
    with pytest.warns(UserWarning) as caught:
        issues = find_label_issues(root, "split-folders", folds=2, epochs=6, image_size=16,
                                   seed=SEED, options=TrainOptions(batch_size=8), model="mlp",
                                   log=lines.append)
    return issues, lines, [str(item.message) for item in caught]


def test_flipped_labels_rank_among_the_most_suspicious(out_of_fold, flipped_set):
    issues, _, _ = out_of_fold
    _, flipped = flipped_set
    assert found_among_most_suspicious(issues, flipped) >= len(flipped) / 2
    by_path = {item["path"]: item for item in issues}
    for path in flipped:  # the flipped images have the colour of the folder they came from
        assert by_path[path]["given"] != by_path[path]["suggested"]


def test_the_ranking_scores_every_readable_image_once_most_suspicious_first(out_of_fold):
    issues, lines, _ = out_of_fold
    assert len(issues) == 48 and len({item["path"] for item in issues}) == 48
    assert all(set(item) == KEYS for item in issues)
    scores = [item["score"] for item in issues]
    assert scores == sorted(scores) and all(0 <= score <= 1 for score in scores)
    assert all(isinstance(item["issue"], bool) for item in issues)
    assert sum(line.startswith("fold ") for line in lines) == 2
    assert any("48 images scored out of fold by 2 models" in line for line in lines)


def test_unreadable_files_are_named_and_left_out(out_of_fold):
    issues, lines, messages = out_of_fold
    paths = {item["path"] for item in issues}
    for name in BROKEN:
        assert not any(path.endswith(name) for path in paths)
        assert sum(name in message for message in messages) == 1, name
    assert any("4 skipped" in line for line in lines)


def test_the_copies_of_a_picture_are_held_out_in_one_fold(tmp_path, monkeypatch):
    root = make_fashion_folders(tmp_path / "data", per_folder=6, size=16, broken=False, seed=SEED)
    shutil.copy(root / "red_shirt" / "0.png", root / "red_shirt" / "copy_of_0.png")
    with Image.open(root / "blue_shoe" / "1.png") as image:
        image.resize((24, 24), Image.Resampling.BICUBIC).save(root / "blue_shoe" / "bigger_1.png")
    held_out = []

    def record(dataframe, rows, recipe, y_prob, log):  # instead of training a model per fold
        names = dataframe["filename"].iloc[rows]
        held_out.append({"/".join(Path(name).parts[-2:]) for name in names})
        y_prob[rows] = 0.5

    monkeypatch.setattr(label_issues, "_train_and_score", record)
    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab on constant probabilities
        find_label_issues(root, "split-folders", folds=3, seed=SEED, log=lines.append)
    assert len(held_out) == 3 and sum(map(len, held_out)) == 26
    for pair in ({"red_shirt/0.png", "red_shirt/copy_of_0.png"},
                 {"blue_shoe/1.png", "blue_shoe/bigger_1.png"}):
        assert [len(pair & fold) for fold in held_out if pair & fold] == [2]
    assert any(line.startswith("copies: 2 groups of copies (4 images)") for line in lines), lines


def _flat_dataset(groups):
    labels = [["a"], ["b"], ["a", "b"], ["a"], ["b"], []] * 4
    return pd.DataFrame({"filename": [f"{index}.png" for index in range(len(labels))],
                         "labels": labels, "group": groups(len(labels))})


def test_folds_stratify_and_keep_a_group_together():
    dataframe = _flat_dataset(lambda n: [index // 3 for index in range(n)])
    folds = label_issues._fold_of_each_row(dataframe, 4, SEED, "group")
    assert sorted(set(folds)) == [0, 1, 2, 3]
    assert dataframe.assign(fold=folds).groupby("group")["fold"].nunique().max() == 1
    without = label_issues._fold_of_each_row(dataframe, 4, SEED)
    assert np.bincount(without).tolist() == [6, 6, 6, 6]
    for label in ("a", "b"):  # each fold holds a share of every label
        has = dataframe["labels"].map(lambda labels: label in labels).to_numpy()
        assert all(has[without == fold].any() for fold in range(4))


def test_rows_without_a_group_are_groups_of_their_own():
    dataframe = _flat_dataset(lambda n: [None if index % 2 else "g" for index in range(n)])
    folds = label_issues._fold_of_each_row(dataframe, 3, SEED, "group")
    assert len(set(folds[dataframe["group"].notna().to_numpy()])) == 1
    assert len(set(folds)) == 3


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"folds": 1}, "folds must be an integer of at least 2"),
    ({"folds": True}, "folds must be an integer of at least 2"),
    ({"folds": 3, "epochs": 0}, "epochs must be a positive integer"),
    ({"folds": 3, "model": "nope"}, "model must be one of"),
])
def test_wrong_arguments_are_refused_before_any_work(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        find_label_issues(tmp_path / "missing", **kwargs)


def test_more_folds_than_images_is_refused():
    dataframe = _flat_dataset(lambda n: ["one"] * n)
    with pytest.raises(ValueError, match="folds=2 but only 1 images"):
        label_issues._fold_of_each_row(dataframe, 2, SEED, "group")


@pytest.mark.parametrize("task", ["multi_label", "multi_class"])
def test_the_ranking_puts_disagreeing_labels_first(task):
    classes = ["cat", "dog", "fox"]
    rng = np.random.default_rng(SEED)
    truth = rng.integers(0, 3, 60)
    y_prob = np.full((60, 3), 0.05) + 0.02 * rng.random((60, 3))
    y_prob[np.arange(60), truth] = 0.9
    if task == "multi_class":
        y_prob /= y_prob.sum(axis=1, keepdims=True)
    given = [[classes[label]] for label in truth]
    for row in (3, 17, 40):
        given[row] = [classes[(truth[row] + 1) % 3]]
    frame = pd.DataFrame({"filename": [f"{row}.png" for row in range(60)], "labels": given})
    issues = label_issues._ranking(frame, y_prob, classes, None, task)
    flipped = {"3.png", "17.png", "40.png"}
    assert {item["path"] for item in issues[:3]} == flipped
    flagged = {item["path"] for item in issues if item["issue"]}
    assert flagged and flagged <= flipped
    assert issues[0]["suggested"] == [classes[truth[int(issues[0]["path"][:-4])]]]


@pytest.mark.parametrize("labels", [[["cat"], []], [[], []], [["cat", "dog"], ["cat", "dog"]]])
def test_a_ranking_cleanlab_cannot_make_is_refused_with_the_reason(labels):
    classes = sorted({label for row in labels for label in row}) or ["cat", "dog"]
    frame = pd.DataFrame({"filename": ["a.png", "b.png"], "labels": labels})
    with pytest.raises(ValueError, match="cleanlab's multi-label ranking needs two classes"):
        label_issues._ranking(frame, np.full((2, len(classes)), 0.5), classes, None, "multi_label")


# ----------------------------------------------------------------------------- model folder
@pytest.fixture
def model_folder(tmp_path, odd_images_dir):
    """An (untrained) model folder whose ``splits.csv`` covers a flipped set, with odd and
    broken files in its validation split."""
    from helpers import artefacts
    from helpers.data import load_split_folders

    source = tmp_path / "data"
    make_flipped_folders(source, odd_images_dir, per_folder=4)
    shutil.copytree(odd_images_dir, source / "red_shirt", dirs_exist_ok=True)
    dataframe = load_split_folders(source)
    odd_names = {path.name for path in odd_images_dir.iterdir()}
    odd = dataframe["filename"].map(lambda path: Path(path).name in odd_names)
    train, rest = dataframe[~odd].iloc[::2], dataframe[~odd].iloc[1::2]
    model_dir = tmp_path / "model"
    save_model_folder(model_dir)
    artefacts.write_splits(model_dir, {"train": train, "val": pd.concat([rest.iloc[:4], dataframe[odd]]),
                                       "test": rest.iloc[4:]})
    return model_dir, source, train, dataframe[odd]


def test_a_model_folder_scores_its_validation_and_test_images_only(model_folder):
    model_dir, source, train, odd = model_folder
    with pytest.warns(UserWarning):
        result = from_model_dir(model_dir, source, layout="split-folders")
    scored = {item["path"] for item in result["issues"]}
    assert not scored & set(train["filename"])
    assert result["not_scored"] == {"train": len(train), "reason": TRAINING_NOTE}
    broken = {path for path in odd["filename"] if path.endswith(tuple(BROKEN))}
    assert {item["path"] for item in result["skipped"]} == broken
    readable_odd = set(odd["filename"]) - broken
    assert readable_odd <= scored  # odd but valid images (CMYK, 16-bit, EXIF-rotated) count
    assert sum(result["scored"].values()) == len(scored) == len(result["issues"])
    assert all(set(item) == KEYS for item in result["issues"])


def test_a_model_folder_alone_uses_the_labels_of_its_splits_file(model_folder):
    model_dir, source, _, _ = model_folder
    with pytest.warns(UserWarning):
        from_source = from_model_dir(model_dir, source, layout="split-folders")
        alone = from_model_dir(model_dir)
    assert [item["given"] for item in alone["issues"]] == \
        [item["given"] for item in from_source["issues"]]
    assert alone["scored"] == from_source["scored"]


def test_a_model_folder_and_another_dataset_is_refused(model_folder, tmp_path):
    model_dir, _, _, _ = model_folder
    other = tmp_path / "other" / "red_shirt"
    other.mkdir(parents=True)
    Image.new("RGB", (16, 16)).save(other / "new.png")
    with pytest.raises(ValueError, match="none of its validation or test images"):
        from_model_dir(model_dir, other.parent, layout="split-folders")


# ----------------------------------------------------------------------------- command line
def run_command(argv):
    """``helpers label-issues ARGV`` through the options and handler of the module."""
    parser = argparse.ArgumentParser(prog="helpers label-issues")
    add_label_issues_options(parser)
    return command_label_issues(parser.parse_args(argv))


def test_the_command_prints_a_json_list_and_says_what_a_model_cannot_score(model_folder, capsys):
    model_dir, source, train, _ = model_folder
    with pytest.warns(UserWarning):
        code = run_command([str(source), "--layout", "split-folders", "--model-dir",
                            str(model_dir), "--format", "json"])
    captured = capsys.readouterr()
    issues = json.loads(captured.out)
    assert code == 0 and isinstance(issues, list) and issues
    assert all(set(item) == KEYS for item in issues)
    assert f"the {len(train)} training images are not" in captured.err


def test_the_command_prints_a_table(model_folder, capsys):
    model_dir, source, _, _ = model_folder
    with pytest.warns(UserWarning):
        run_command([str(source), "--layout", "split-folders", "--model-dir", str(model_dir),
                     "--top", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["rank", "score"]
    assert [line.split()[0] for line in lines[1:4]] == ["1", "2", "3"]
    assert "flagged; most suspicious first (3 shown" in lines[4]
    assert TRAINING_NOTE in lines[5]


def test_the_command_is_wired_into_the_cli():
    from helpers.app import cli

    names = [row[0] for row in cli._subcommands()]
    if "label-issues" not in names:
        pytest.skip("helpers label-issues is not wired into helpers.app.cli yet")
    parser = cli.build_parser()
    args = parser.parse_args(["label-issues", "data", "--folds", "3", "--format", "json"])
    assert args.handler is command_label_issues and args.folds == 3


@pytest.mark.slow
def test_the_command_finds_flipped_labels_with_the_default_recipe(flipped_set, capsys):
    root, flipped = flipped_set
    with pytest.warns(UserWarning):
        code = run_command([str(root), "--layout", "split-folders", "--folds", "3",
                            "--epochs", "8", "--image-size", "16", "--batch-size", "8",
                            "--seed", str(SEED), "--format", "json"])
    captured = capsys.readouterr()
    issues = json.loads(captured.out)
    assert code == 0 and len(issues) == 48
    assert found_among_most_suspicious(issues, flipped) >= len(flipped) / 2
    assert "fold 3/3" in captured.err  # progress goes to stderr, the JSON alone to stdout
