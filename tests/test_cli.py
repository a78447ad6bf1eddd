"""The command line, as a user calls it: ``python -m helpers COMMAND ...``."""
import json
import shutil

import pytest

from helpers.app.cli import main
from helpers.data import load_dataset
from helpers.datasets.generate import make_dataset


@pytest.fixture(scope="module")
def fashion_tiny(tmp_path_factory):
    return make_dataset("fashion", tmp_path_factory.mktemp("data") / "fashion", scale=0.03, progress=False)


@pytest.fixture(scope="module")
def scenes_tiny(tmp_path_factory):
    return make_dataset("scenes", tmp_path_factory.mktemp("data") / "scenes", scale=0.03, progress=False)


def run_json(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_make_data_writes_a_dataset(tmp_path, capsys):
    out_dir = tmp_path / "fashion"
    assert main(["make-data", "fashion", str(out_dir), "--seed", "3", "--scale", "0.02"]) == 0
    assert "wrote the fashion dataset" in capsys.readouterr().out
    folders = sorted(path.name for path in out_dir.iterdir() if path.is_dir())
    assert "red_shirt" in folders and len(folders) == 12


@pytest.mark.parametrize(
    "dataset, options, expected_labels",
    [
        ("fashion", ["--layout", "split-folders"], {"bag", "black", "blue", "dress", "jeans", "red", "shirt", "shoe", "white"}),
        ("fashion", ["--layout", "folders"], {"black_dress", "white_shoe", "red_shoe"}),
        ("scenes", [], None),
        ("scenes", ["--layout", "csv"], None),
    ],
)
def test_scan_json_on_each_layout(capsys, fashion_tiny, scenes_tiny, dataset, options, expected_labels):
    source = fashion_tiny if dataset == "fashion" else scenes_tiny
    if "csv" in options:
        source = source / "Data_Entry.csv"
        options = []
    code, report, _ = run_json(capsys, ["scan", str(source), *options, "--format", "json"])
    assert code == 0
    assert isinstance(report["n_images"], int) and report["n_images"] > 0
    assert all(isinstance(count, int) and count > 0 for count in report["label_counts"].values())
    if expected_labels is not None:
        assert expected_labels <= set(report["label_counts"])
    if dataset == "scenes":
        # The VOC XML and the CSV describe the same images with the same labels.
        voc = load_dataset(scenes_tiny, layout="voc")
        assert report["n_images"] == len(voc)


def test_scan_text_report(capsys, fashion_tiny):
    assert main(["scan", str(fashion_tiny), "--layout", "split-folders"]) == 0
    out = capsys.readouterr().out
    assert "label counts:" in out and "shirt" in out


def test_scan_of_a_csv_whose_images_are_not_downloaded(tmp_path, capsys):
    csv_path = tmp_path / "Data_Entry_2017.csv"
    csv_path.write_text(
        "Image Index,Finding Labels,Patient ID\n"
        "00000001_000.png,Cardiomegaly,1\n"
        "00000001_001.png, Cardiomegaly | Emphysema ,1\n"
        "00000002_000.png,No Finding,2\n"
    )
    code, report, _ = run_json(capsys, ["scan", str(csv_path), "--format", "json"])
    assert code == 0
    assert report["n_images"] == 3
    assert report["label_counts"] == {"Cardiomegaly": 2, "Emphysema": 1}
    assert len(report["missing"]) == 3


def test_audit_reports_every_broken_file(tmp_path, capsys, odd_images_dir, odd_images_expected):
    # One class per folder: the odd files form the class "odd".
    source = tmp_path / "dataset"
    shutil.copytree(odd_images_dir, source / "odd")
    code, report, _ = run_json(capsys, ["audit", str(source), "--format", "json"])
    assert code == 1
    by_name = {entry["path"].rsplit("/", 1)[-1]: entry for entry in report["files"]}
    assert set(by_name) == set(odd_images_expected)
    for name, expected in odd_images_expected.items():
        entry = by_name[name]
        assert entry["ok"] is expected["ok"], name
        if expected["ok"]:
            assert (entry["width"], entry["height"]) == (expected["width"], expected["height"]), name
            assert entry["error"] is None
        else:
            assert entry["error"] and entry["width"] is None
    assert report["n_bad"] == sum(not expected["ok"] for expected in odd_images_expected.values())


def test_audit_of_clean_data_exits_zero(capsys, fashion_tiny):
    assert main(["audit", str(fashion_tiny), "--layout", "split-folders"]) == 0
    assert " 0 do not" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["scan", "no/such/folder"], "does not exist"),
        (["audit", "no/such/folder", "--format", "json"], "does not exist"),
        (["predict", "--model-dir", "no/such/model", "no/such/image.jpg"], "no such file"),
    ],
)
def test_user_errors_are_one_line_messages(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err


def test_wrong_arguments_are_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["scan", "data", "--layout", "yaml"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_train_defaults_are_the_recipe_of_train_from_source():
    import inspect

    from helpers.app.cli import build_parser
    from helpers.app.workflows import TrainOptions, train_from_source

    args = build_parser().parse_args(["train", "data", "--out", "run"])
    defaults = inspect.signature(train_from_source).parameters
    for name in ("model", "epochs", "image_size", "patience"):
        assert getattr(args, name) == defaults[name].default, name
    options = TrainOptions()
    for name in ("batch_size", "learning_rate", "schedule", "seed", "task", "loss", "weights",
                 "trainable_layers", "group_column", "allow_copies_across_splits"):
        assert getattr(args, name) == getattr(options, name), name
    assert (not args.no_augment) == options.augment
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "data", "--out", "run", "--schedule", "step"])
