"""Hostile inputs (``tests/_hostile.py``): each bad input is named once and costs nothing else.

For every case of the corpus, the loaders and the command line must end without a
traceback or a hang: a bad input is skipped with a reason naming it (every good image is
still used, found = used + skipped), an odd one is read, and an unusable one gives a
single ``error: ...`` line naming the file. The slow tests run each command in a child
process on the worst inputs and check its peak memory.
"""
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from _hostile import (
    CLASSES,
    GOOD_PER_CLASS,
    build_corpus,
    build_mixed,
    corrupt_png,
    good_image,
    run_child,
    save_clean_model,
)
from PIL import Image

from helpers import REPO_ROOT
from helpers.app import cli
from helpers.files import fileio
from helpers.data import load_dataset

TIME_LIMIT = 120  # seconds for one command on one small hostile dataset
MEMORY_LIMIT_MB = 1536


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return build_mixed(tmp_path_factory.mktemp("mixed"))


@pytest.fixture(scope="module")
def clean_model(corpus):
    return corpus["labels_utf16"].model_dir.parent.parent / "clean_model"


@pytest.fixture
def time_limit():
    """Fail (instead of hanging) when a call blocks, e.g. on reading a named pipe."""
    def expired(signum, frame):
        raise TimeoutError(f"no answer within {TIME_LIMIT} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TIME_LIMIT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def names(case):
    return [os.path.basename(path) for path in case.bad]


def cases_of(*kinds):
    return [pytest.param(name, id=name) for name, kind, _ in CASE_INDEX if kind in kinds]


# (name, kind, expect) of every case, without building the corpus at collection time.
CASE_INDEX = [
    ("corrupt_png", "images", "skip"), ("truncated_jpeg", "images", "skip"),
    ("png_bomb", "images", "skip"), ("jpeg_huge_header", "images", "skip"),
    ("gif_bomb", "images", "skip"), ("huge_file", "images", "skip"),
    ("empty_file", "images", "skip"), ("random_bytes", "images", "skip"),
    ("fifo", "images", "skip"), ("dangling_symlink", "images", "skip"),
    ("symlink_loop", "images", "skip"), ("strip", "images", "read"), ("tiny", "images", "read"),
    ("large_png", "images", "read"), ("large_jpeg", "images", "read"),
    ("webp_tiff", "images", "read"), ("odd_modes", "images", "read"),
    ("other_extensions", "images", "read"), ("latin1_name", "images", "read"),
    ("latin1_subfolder", "images", "read"), ("folder_named_jpg", "images", "read"),
    ("case_variants", "images", "read"),
    ("voc_shift_jis", "voc", "read"), ("voc_utf16", "voc", "read"), ("voc_latin1", "voc", "read"),
    ("voc_wrong_encoding", "voc", "skip"), ("voc_unknown_encoding", "voc", "skip"),
    ("voc_inf_width", "voc", "read"), ("voc_huge_width", "voc", "read"),
    ("voc_malformed", "voc", "skip"), ("voc_binary", "voc", "skip"),
    ("voc_billion_laughs", "voc", "skip"), ("voc_external_entity", "voc", "skip"),
    ("voc_deep_nesting", "voc", "read"), ("voc_huge_xml", "voc", "skip"),
    ("voc_xml_is_folder", "voc", "skip"), ("voc_symlink_loop", "voc", "skip"),
    ("voc_dangling_symlink", "voc", "skip"), ("voc_fifo", "voc", "skip"),
    ("voc_escape", "voc", "skip"), ("voc_duplicate", "voc", "read"),
    ("voc_utf16_imagesets", "voc", "read"),
    ("csv_first_row_extra", "csv", "skip"), ("csv_latin1_body", "csv", "error"),
    ("csv_latin1_encoding", "csv", "read"), ("csv_unterminated_quote", "csv", "error"),
    ("csv_utf16", "csv", "read"), ("csv_utf8_bom", "csv", "read"),
    ("csv_duplicate_rows", "csv", "read"), ("csv_case_variants", "csv", "read"),
    ("csv_escape", "csv", "skip"), ("csv_nul_in_name", "csv", "skip"),
    ("csv_binary", "csv", "error"), ("csv_empty", "csv", "error"), ("csv_header_only", "csv", "read"),
    ("labels_deep", "model", "error"), ("labels_utf16", "model", "read"),
    ("labels_binary", "model", "error"), ("labels_huge_size", "model", "error"),
    ("labels_is_folder", "model", "error"), ("model_zip_bomb", "model", "error"),
    ("model_config_deep", "model", "error"), ("model_unstored_weights", "model", "error"),
    ("model_not_zip", "model", "error"), ("model_lambda_layer", "model", "error"),
    ("splits_no_split_column", "model", "error"), ("splits_utf16", "model", "read"),
    ("splits_binary", "model", "error"),
]


def test_the_index_lists_every_case_of_the_corpus(corpus):
    assert {(name, case.kind, case.expect) for name, case in corpus.items()} == set(CASE_INDEX)


def run_cli(capsys, argv):
    """``helpers.app.cli.main(argv)``: exit code, stdout, stderr and the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        code = cli.main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    run_cli.warnings = [str(warning.message) for warning in caught]
    return code, captured.out, captured.err


def count_naming(name, messages):
    return sum(name in message for message in messages)


def dataset_argv(case):
    return [str(case.source), "--layout", case.layout, *case.options]


# ----------------------------------------------------------------------------- loaders


@pytest.mark.parametrize("name", cases_of("voc", "csv"))
def test_loaders_read_or_skip_each_annotation_naming_it(corpus, name, time_limit):
    case = corpus[name]
    options = {"encoding": case.options[1]} if case.options else {}
    if case.expect == "error":
        with pytest.raises(ValueError) as error:
            load_dataset(case.source, layout=case.layout, **options)
        assert str(case.source) in str(error.value)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = load_dataset(case.source, layout=case.layout, **options)
    messages = [str(warning.message) for warning in caught]
    assert len(frame) == case.n_good
    assert all(labels and set(labels) <= set(CLASSES) for labels in frame["labels"])
    if case.expect == "skip":
        skipped = " ".join(item["path"] + " " + item["reason"] for item in frame.attrs["skipped"])
        for path in case.bad:
            assert path in skipped, (path, frame.attrs["skipped"])
            assert sum(path in message for message in messages) >= 1
    else:  # only a second listing of one image counts as skipped
        assert all("listed again" in item["reason"] for item in frame.attrs["skipped"])


def test_voc_refuses_entities_and_external_dtds(corpus):
    for name in ("voc_billion_laughs", "voc_external_entity"):
        with pytest.warns(UserWarning, match="refused: the XML declares a DTD"):
            frame = load_dataset(corpus[name].source)
        assert "root:" not in " ".join(label for labels in frame["labels"] for label in labels)


def test_voc_reads_declared_and_marked_encodings(corpus):
    for name in ("voc_shift_jis", "voc_utf16", "voc_latin1"):
        frame = load_dataset(corpus[name].source)
        assert frame.attrs["skipped"] == [] and "extra.jpg" in {os.path.basename(p) for p in frame.filename}


def test_voc_listing_in_utf16_still_gives_the_splits(corpus):
    frame = load_dataset(corpus["voc_utf16_imagesets"].source)
    assert frame["split"].value_counts().to_dict() == {"train": 6, "val": 2}


def test_voc_absurd_sizes_keep_the_image_and_say_so(corpus):
    for name, text in (("voc_inf_width", "inf"), ("voc_huge_width", "12345678901234567890123")):
        with pytest.warns(UserWarning, match=f"ignored <width>{text}</width>"):
            frame = load_dataset(corpus[name].source)
        extra = frame[frame.filename.str.endswith("extra.jpg")]
        assert len(extra) == 1 and pd.isna(extra.width.iloc[0]) and extra.height.iloc[0] == 20


def test_csv_first_row_with_an_extra_field_shifts_nothing(corpus):
    case = corpus["csv_first_row_extra"]
    with pytest.warns(UserWarning, match=r"labels.csv:2: malformed row \(expected 3 fields, saw 4\)"):
        frame = load_dataset(case.source)
    assert list(frame.columns[:3]) == ["filename", "labels", "group"]
    assert all(os.path.isfile(path) for path in frame.filename)
    expected = [f"{label}_{i}.png" for label in CLASSES for i in range(GOOD_PER_CLASS)][1:]
    assert [os.path.basename(path) for path in frame.filename] == expected
    assert frame.labels.tolist() == [[name.split("_")[0]] for name in expected]


@pytest.mark.parametrize("name, message", [
    ("csv_latin1_body", r"labels.csv: the CSV file is not UTF-8 text \(line 10: byte 0xe9.*--encoding latin-1"),
    ("csv_unterminated_quote", r"labels.csv: line 7: a quoted field is never closed"),
])
def test_csv_errors_name_the_file_and_the_line(corpus, name, message):
    with pytest.raises(ValueError, match=message):
        load_dataset(corpus[name].source)


def test_csv_in_another_encoding_reads_with_the_encoding_given(corpus):
    frame = load_dataset(corpus["csv_latin1_encoding"].source, encoding="latin-1")
    assert "caf\u00e9.png" in {os.path.basename(path) for path in frame.filename}


def test_an_image_listed_twice_is_one_image_with_both_labels(corpus):
    for name, image in (("csv_duplicate_rows", "cat_0.png"), ("voc_duplicate", "dog_0.jpg")):
        with pytest.warns(UserWarning, match="listed again") as caught:
            frame = load_dataset(corpus[name].source)
        rows = frame[frame.filename.map(os.path.basename) == image]
        assert len(rows) == 1 and rows.labels.iloc[0] == ["cat", "dog"]
        assert len(frame.attrs["skipped"]) == 1 and image in frame.attrs["skipped"][0]["path"]
        assert sum("listed again" in str(w.message) for w in caught) == 1


@pytest.mark.parametrize("name", ["case_variants", "csv_case_variants"])
def test_case_and_space_variants_of_a_label_are_merged_with_a_warning(corpus, name):
    case = corpus[name]
    with pytest.warns(UserWarning, match="differ only in case or spacing") as caught:
        frame = load_dataset(case.source, layout=case.layout)
    assert sorted({label for labels in frame.labels for label in labels}) == ["cat", "dog"]
    assert set(frame.attrs["merged_labels"]) == {"Cat", "CAT"}
    message = next(str(w.message) for w in caught if "differ only" in str(w.message))
    assert "'Cat'" in message and "'CAT'" in message


def test_the_vocabulary_warns_about_classes_that_differ_only_in_case():
    from helpers.labels import LabelVocabulary

    with pytest.warns(UserWarning, match="'Dog', 'dog'"):
        vocabulary = LabelVocabulary.from_labels([["Dog"], ["dog"], ["cat"]])
    assert vocabulary.classes == ["Dog", "cat", "dog"]


def test_folder_layouts_load_webp_and_tiff_and_list_what_they_leave_out(corpus):
    frame = load_dataset(corpus["webp_tiff"].source)
    assert {"a.webp", "b.tif", "c.tiff"} <= {os.path.basename(path) for path in frame.filename}
    case = corpus["other_extensions"]
    with pytest.warns(UserWarning, match=r"left out 2 file\(s\) .* not images by their extension") as caught:
        frame = load_dataset(case.source)
    message = next(str(w.message) for w in caught if "left out" in str(w.message))
    assert "photo.heic" in message and "clip.mp4" in message and "notes.txt" not in message
    assert sorted(map(os.path.basename, frame.attrs["left_out"])) == ["clip.mp4", "photo.heic"]


def test_names_that_are_not_utf8_are_kept_as_they_are(corpus):
    frame = load_dataset(corpus["latin1_name"].source)
    path = next(path for path in frame.filename if "caf" in path)
    assert os.fsencode(path).endswith(b"caf\xe9.png") and os.path.isfile(path)


def test_a_folder_name_that_is_not_utf8_becomes_a_printable_label(tmp_path):
    good_image(tmp_path / os.fsdecode(b"caf\xe9") / "a.png", "cat", 0)
    good_image(tmp_path / "dog" / "b.png", "dog", 0)
    with pytest.warns(UserWarning, match="not valid UTF-8"):
        frame = load_dataset(tmp_path)
    assert sorted(label for labels in frame.labels for label in labels) == ["caf\\xe9", "dog"]
    json.dumps(frame.labels.tolist()).encode("utf-8")  # printable everywhere


# ----------------------------------------------------------------------------- scan, audit


@pytest.mark.parametrize("command", ["scan", "audit"])
@pytest.mark.parametrize("name", cases_of("images", "voc", "csv"))
def test_scan_and_audit_end_cleanly_on_every_case(corpus, capsys, command, name, time_limit):
    case = corpus[name]
    code, out, err = run_cli(capsys, [command, *dataset_argv(case), "--format", "json"])
    if case.expect == "error":
        assert code == 2 and err.startswith("error:") and os.path.basename(str(case.source)) in err
        return
    report = json.loads(out)
    if command == "audit":
        bad = [entry for entry in report["files"] if not entry["ok"]]
        assert code == (1 if bad else 0)
        assert report["n_ok"] == case.n_good or case.kind != "images"
        if case.kind == "images" and case.expect == "skip":
            assert [os.path.basename(entry["path"]) for entry in bad] == names(case)
            assert all(entry["error"] for entry in bad)
    else:
        assert code == 0
        listed = report["n_images"] + len(report["skipped"])
        assert listed >= case.n_good
        if case.kind == "images":  # a bad file costs no other, even in the listing of its folder
            assert report["missing"] == []
            unreadable = [os.path.basename(item["path"]) for item in report["unreadable"]]
            found_by_headers = case.name not in ("corrupt_png", "truncated_jpeg")
            assert unreadable == (names(case) if case.expect == "skip" and found_by_headers else [])


def test_the_pixel_budget_names_the_file_and_its_size(corpus, capsys):
    code, out, _ = run_cli(capsys, ["audit", str(corpus["png_bomb"].source), "--format", "json"])
    bad = [entry for entry in json.loads(out)["files"] if not entry["ok"]]
    assert bad[0]["error"].startswith("too many pixels: 13000×13000 (169 megapixels, limit 30")
    code, out, _ = run_cli(capsys, ["scan", str(corpus["gif_bomb"].source), "--format", "json"])
    (unreadable,) = json.loads(out)["unreadable"]
    assert unreadable["path"].endswith("screen.gif") and "65535×65535" in unreadable["reason"]


def test_a_large_jpeg_is_decoded_at_a_reduced_scale(corpus):
    from helpers.files import images

    path = corpus["large_jpeg"].source / "cat" / "large.jpg"
    assert images.read_image(path).shape == (3000, 4000, 3)  # 48 MP > 30 MP: at 1/2 scale
    assert images.read_image(path, (16, 16)).shape == (16, 16, 3)


def test_audit_text_report_prints_names_that_are_not_utf8(corpus, capsys, tmp_path):
    source = tmp_path / "data" / "cat"
    source.mkdir(parents=True)
    (source / os.fsdecode(b"bad_\xe9.jpg")).write_bytes(b"not an image")
    code, out, _ = run_cli(capsys, ["audit", str(tmp_path / "data")])
    assert code == 1 and "bad_\\xe9.jpg: not an image" in out


# ----------------------------------------------------------------------------- train, predict, evaluate


def test_one_corrupt_file_among_40_good_ones_evaluates_all_40_good_ones_and_names_the_corrupt_one(tmp_path):
    from helpers.app import workflows

    for index in range(40):
        good_image(tmp_path / "data" / CLASSES[index % 2] / f"{index:02d}.png", CLASSES[index % 2], index)
    corrupt = tmp_path / "data" / "cat" / "05_corrupt.png"  # among the first batch of 32
    corrupt.write_bytes(corrupt_png())
    model_dir = save_clean_model(tmp_path / "model")
    frame = load_dataset(tmp_path / "data")
    with pytest.warns(UserWarning) as caught:
        report = workflows.evaluate_model_dir(model_dir, frame, batch_size=32)
    assert report["n_images"] == 40
    assert report["counts"] == {"found": 41, "used": 40, "skipped": 1}
    (skipped,) = report["skipped"]
    assert skipped["path"] == str(corrupt) and skipped["reason"].startswith("cannot decode")
    assert sum(str(corrupt) in str(warning.message) for warning in caught) == 1
    assert sum(row["support"] for row in report["per_class"].values()) == 40


def test_a_corrupt_file_costs_no_other_image_of_its_batch_in_fit(tmp_path):
    """Every epoch keeps its number of batches and brings each good image at least once."""
    from helpers.pipeline import dataset_from_dataframe

    paths = []
    for index in range(9):
        path = tmp_path / f"{index}.png"
        Image.new("RGB", (12, 12), (20 * index + 20,) * 3).save(path)
        paths.append(str(path))
    (tmp_path / "bad.png").write_bytes(corrupt_png())
    paths.insert(3, str(tmp_path / "bad.png"))
    frame = pd.DataFrame({"filename": paths, "labels": [["a"]] * len(paths)})
    dataset = dataset_from_dataframe(frame, target_size=(12, 12), batch_size=4, shuffle=True, seed=1)
    assert len(dataset) == 3
    for _ in range(2):
        batches = [np.asarray(x) for x, _ in dataset]
        assert len(batches) == 3
        levels = {int(round(x.mean() * 255)) for batch in batches for x in batch}
        assert {20 * index + 20 for index in range(9)} <= levels


@pytest.fixture(scope="module")
def trained_mixed(mixed, tmp_path_factory):
    """`train` on the dataset with every hostile image: (exit code, out, err, run folder)."""
    run = tmp_path_factory.mktemp("run") / "mixed"
    argv = ["train", str(mixed.source), "--model", "mlp", "--epochs", "1", "--image-size", "16",
            "--batch-size", "4", "--no-augment", "--out", str(run)]
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings(record=True) as caught:
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue(), run, [str(w.message) for w in caught]


def test_train_uses_every_good_image_and_names_each_bad_one_once(mixed, trained_mixed):
    code, out, err, run, messages = trained_mixed
    assert code == 0 and "Traceback" not in err, err
    n_found = mixed.n_good + len(mixed.bad)
    assert f"{n_found} inputs found: {mixed.n_good} images used, {len(mixed.bad)} skipped" in out
    for name in names(mixed):
        assert count_naming(name, messages) == 1, (name, messages)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["counts"]["found"] == metrics["counts"]["used"] + metrics["counts"]["skipped"]


def test_evaluate_a_saved_split_with_names_that_are_not_utf8(mixed, trained_mixed, capsys):
    run = trained_mixed[3]
    splits = fileio.read_bytes(run / "splits.csv")
    assert b"caf\xe9.png" in splits  # the file name's own bytes
    for split in ("train", "val", "test"):
        code, out, err = run_cli(capsys, ["evaluate", "--model-dir", str(run), str(mixed.source),
                                          "--split", split, "--format", "json"])
        assert code == 0, err
        report = json.loads(out)
        assert report["counts"]["found"] == report["counts"]["used"] + report["counts"]["skipped"]


def test_evaluate_and_predict_name_each_bad_image_once(mixed, clean_model, capsys, tmp_path):
    code, out, err = run_cli(capsys, ["evaluate", "--model-dir", str(clean_model), str(mixed.source),
                                      "--format", "json"])
    assert code == 0, err
    report = json.loads(out)
    assert report["n_images"] == mixed.n_good
    assert sorted(os.path.basename(item["path"]) for item in report["skipped"]) == sorted(names(mixed))
    for name in names(mixed):
        assert count_naming(name, run_cli.warnings) == 1, (name, run_cli.warnings)

    annotated = tmp_path / "annotated"
    code, out, err = run_cli(capsys, ["predict", "--model-dir", str(clean_model), str(mixed.source),
                                      "--annotate", str(annotated), "--format", "json"])
    assert code == 0, err
    results = json.loads(out)
    failed = sorted(os.path.basename(r["path"]) for r in results if r["error"])
    assert failed == sorted(names(mixed))
    assert len(results) - len(failed) == mixed.n_good == len(os.listdir(annotated))
    for copy in annotated.iterdir():
        with Image.open(copy) as image:
            assert max(image.size) <= 2048, copy.name


def test_predict_split_and_the_pipeline_account_for_each_file(mixed, clean_model):
    from helpers.pipeline import dataset_from_dataframe
    from helpers.predict import predict_dataframe

    frame = load_dataset(mixed.source)
    with pytest.warns(UserWarning):
        dataset = dataset_from_dataframe(frame, target_size=(16, 16), batch_size=4, shuffle=False)
    assert len(dataset.file_paths) + len(dataset.skipped) == len(frame)
    with pytest.warns(UserWarning):
        y_true, y_prob, paths, skipped = predict_dataframe(clean_model, frame, batch_size=4)
    assert len(y_true) == len(y_prob) == len(paths) == mixed.n_good
    assert len(paths) + len(skipped) == len(frame)
    assert sorted(item["path"] for item in skipped) == sorted(mixed.bad)
    assert not set(paths) & set(mixed.bad)


# ----------------------------------------------------------------------------- model folders


@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize("name", cases_of("model"))
def test_tampered_model_folders_give_one_error_line_naming_the_file(corpus, capsys, command, name,
                                                                    time_limit):
    case = corpus[name]
    if command == "predict":
        argv = ["predict", "--model-dir", str(case.model_dir), str(case.source), "--format", "json"]
    else:
        split = ["--split", "test"] if name.startswith("splits_") else []
        argv = ["evaluate", "--model-dir", str(case.model_dir), str(case.source), *split,
                "--format", "json"]
    code, out, err = run_cli(capsys, argv)
    bad_file = os.path.basename(case.bad[0])
    if case.expect == "read" or (command == "predict" and bad_file == "splits.csv"):
        assert code == 0, err
        return
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1, err
    assert f"{bad_file}" in err


def test_model_checks_refuse_before_reading(corpus):
    from helpers import artefacts
    from helpers.files import archive

    for name, message in (("model_zip_bomb", "config.json declares 1.6 GB"),
                          ("model_config_deep", "nests 100000 levels deep"),
                          ("model_unstored_weights", "declares 1.6 GB but stores")):
        with pytest.raises(ValueError, match=message):
            archive.check_model_file(corpus[name].model_dir / "model.keras")
    with pytest.raises(ValueError, match="safe_mode"):
        artefacts.load_artefacts(corpus["model_lambda_layer"].model_dir)


# ----------------------------------------------------------------------------- memory (children)


def _peak(argv, cwd):
    code, out, err, peak = run_child([sys.executable, *argv], TIME_LIMIT * 2, cwd)
    assert code is not None, f"{argv} did not finish within {TIME_LIMIT * 2} s"
    assert "Traceback" not in err, err[-2000:]
    return code, peak


@pytest.mark.slow
@pytest.mark.parametrize("command", ["scan", "audit", "train", "predict --annotate", "evaluate"])
def test_peak_memory_of_each_command_on_the_worst_images(command, mixed, clean_model, tmp_path):
    argv = {
        "scan": ["scan", str(mixed.source)],
        "audit": ["audit", str(mixed.source)],
        "train": ["train", str(mixed.source), "--model", "mlp", "--epochs", "1", "--image-size", "16",
                  "--batch-size", "4", "--no-augment", "--out", str(tmp_path / "run")],
        "predict --annotate": ["predict", "--model-dir", str(clean_model), str(mixed.source),
                               "--annotate", str(tmp_path / "annotated")],
        "evaluate": ["evaluate", "--model-dir", str(clean_model), str(mixed.source)],
    }[command]
    start = time.monotonic()
    code, peak = _peak(["-m", "helpers", *argv], tmp_path)
    assert code in (0, 1)
    assert peak < MEMORY_LIMIT_MB, f"{command}: {peak:.0f} MB in {time.monotonic() - start:.0f} s"


@pytest.mark.slow
def test_peak_memory_of_the_loaders_and_model_checks(corpus, tmp_path):
    sources = [(str(case.source), case.layout) for case in corpus.values() if case.kind in ("voc", "csv")]
    models = [str(corpus[name].model_dir) for name in ("model_zip_bomb", "model_unstored_weights",
                                                         "model_config_deep", "labels_deep")]
    script = (
        "import json, sys, warnings\n"
        "from helpers.data import load_dataset\n"
        "from helpers.artefacts import load_artefacts\n"
        "warnings.simplefilter('ignore')\n"
        "sources, models = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n"
        "for source, layout in sources:\n"
        "    try: load_dataset(source, layout=layout)\n"
        "    except ValueError: pass\n"
        "for model_dir in models:\n"
        "    try: load_artefacts(model_dir)\n"
        "    except ValueError: pass\n"
    )
    code, peak = _peak(["-c", script, json.dumps(sources), json.dumps(models)], tmp_path)
    assert code == 0 and peak < MEMORY_LIMIT_MB, peak


def test_the_corpus_builder_runs_as_a_script(tmp_path):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "tests" / "_hostile.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--run" in result.stdout


def test_predict_goes_on_when_only_some_paths_are_missing(corpus, clean_model, capsys, tmp_path):
    good = corpus["tiny"].source / "cat" / "tiny.png"
    code, out, err = run_cli(capsys, ["predict", "--model-dir", str(clean_model), str(good),
                                      str(tmp_path / "gone.jpg"), "--format", "json"])
    assert code == 0
    first, second = json.loads(out)
    assert first["error"] is None and second["error"] == "no such file or folder"


def test_an_unexpected_error_is_one_line_with_exit_code_3(capsys, monkeypatch):
    def broken(args):
        raise TypeError("something nobody foresaw\nover two lines")

    monkeypatch.setattr(cli, "command_scan", broken)
    monkeypatch.delenv("HELPERS_TRACEBACK", raising=False)
    code, _, err = run_cli(capsys, ["scan", "."])
    assert code == 3 and err.count("\n") == 1
    assert err.startswith("error: unexpected TypeError: something nobody foresaw over two lines")
    monkeypatch.setenv("HELPERS_TRACEBACK", "1")
    with pytest.raises(TypeError):
        cli.main(["scan", "."])
