"""TFRecord shards: what is written, what is read back, and what happens when things break."""
import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

pytest.importorskip("tensorflow")

import tensorflow as tf  # noqa: E402
from _factories import make_fashion_folders  # noqa: E402
from conftest import make_exif_rotated_jpeg  # noqa: E402

from helpers import data, pipeline, scan
from helpers.scale import shards  # noqa: E402
from helpers.app.cli import main  # noqa: E402
from helpers.datasets.generate import make_dataset  # noqa: E402
from helpers.splits import split_dataframe  # noqa: E402

TARGET = (16, 20)  # not square, to catch height/width mix-ups
SHARD_MB = 0.02  # a few shards from about 60 KB of images


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """``colour_item`` folders of PNGs plus JPEGs that take the Pillow road, and one broken file."""
    root = make_fashion_folders(tmp_path_factory.mktemp("source") / "data", per_folder=12)
    rng = np.random.default_rng(1)
    for index in range(4):
        pixels = np.zeros((30, 40, 3), dtype=np.uint8)
        pixels[..., 0] = 200 + rng.integers(0, 40)
        Image.fromarray(pixels).save(root / "red_shoe" / f"photo_{index}.jpg", quality=90)
    Image.fromarray(np.full((24, 32, 3), (210, 30, 30), np.uint8)).convert("CMYK").save(
        root / "red_shirt" / "cmyk.jpg")
    make_exif_rotated_jpeg(root / "blue_shoe" / "rotated.jpg")
    return root


@pytest.fixture(scope="module")
def frame(source):
    return data.load_dataset(source, layout="split-folders")  # lists broken.jpg: packing finds it


@pytest.fixture(scope="module")
def written(frame, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("shards") / "out"
    with pytest.warns(UserWarning, match="broken.jpg"):
        manifest = shards.write_shards(frame, out_dir, shard_size_mb=SHARD_MB, progress=False, log=None)
    return out_dir, manifest


def relative(path, root):
    return Path(path).relative_to(root).as_posix()


def loose_frame(frame):
    """The folder's rows that can be read (the broken file is never packed)."""
    return frame[~frame["filename"].str.endswith("broken.jpg")].reset_index(drop=True)


def as_arrays(dataset):
    parts = [(np.asarray(x), np.asarray(y)) for x, y in dataset]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


# ----------------------------------------------------------------------------- writing


def test_manifest_counts_add_up_and_hashes_match(written, frame):
    out_dir, manifest = written
    on_disk = json.loads((out_dir / shards.MANIFEST_FILE).read_text())
    assert on_disk["complete"] is True and on_disk["n_shards"] == len(on_disk["shards"]) >= 3
    assert sum(shard["n_images"] for shard in on_disk["shards"]) == on_disk["n_images"] == len(frame) - 1
    for shard in on_disk["shards"]:
        sha256, size = shards.file_sha256(str(out_dir / shard["file"]))
        assert (sha256, size) == (shard["sha256"], shard["bytes"])
    assert [Path(item["path"]).name for item in on_disk["skipped"]] == ["broken.jpg"]
    assert on_disk["skipped"][0]["reason"]
    assert on_disk["classes"] == ["blue", "red", "shirt", "shoe"]
    assert on_disk["written_with"]["shard_size_mb"] == SHARD_MB
    assert sorted(path.name for path in out_dir.glob("*.tfrecord")) == [s["file"] for s in on_disk["shards"]]
    assert not list(out_dir.glob(".*.tmp")) and not list((out_dir / shards.PARTS_DIR).glob(".*"))


def test_records_hold_the_original_bytes_labels_and_header(written, source):
    out_dir, manifest = written
    index = {row.filename: row for row in shards.load_shards(out_dir).itertuples()}
    for shard in manifest["shards"]:
        for serialized in tf.data.TFRecordDataset(str(out_dir / shard["file"])).take(3):
            example = tf.train.Example.FromString(serialized.numpy()).features.feature
            name = example["image/filename"].bytes_list.value[0].decode()
            assert example["image/encoded"].bytes_list.value[0] == (source / name).read_bytes()
            row = index[str(out_dir / name)]
            assert [v.decode() for v in example["image/labels"].bytes_list.value] == row.labels
            assert example["image/width"].int64_list.value[0] == row.width


def test_images_are_spread_over_the_shards(written):
    frame = shards.load_shards(written[0])
    per_shard = frame.groupby("shard_file")["folder"].nunique()
    assert (per_shard >= 3).all(), "a shard holding one class only makes interleaved batches lopsided"


def test_default_size_gives_several_shards_for_a_small_dataset(frame, tmp_path):
    small = frame.iloc[:20].copy()
    manifest = shards.write_shards(small, tmp_path / "out", progress=False, log=None)
    assert manifest["n_shards"] == shards.MIN_SHARDS


@pytest.mark.parametrize("size", [0, -1, "big", True])
def test_a_wrong_shard_size_is_refused(frame, tmp_path, size):
    with pytest.raises(ValueError, match="shard_size_mb"):
        shards.write_shards(frame, tmp_path / "out", shard_size_mb=size, progress=False, log=None)


# ----------------------------------------------------------------------------- loading, scanning


def test_scan_of_the_shards_equals_scan_of_the_readable_files(written, frame):
    packed = scan.scan(shards.load_shards(written[0]))
    files = scan.scan(loose_frame(frame))
    for key in ("n_images", "label_counts", "labels_per_image", "cooccurrence", "sizes"):
        assert packed[key] == files[key], key
    assert packed["missing"] == [] and packed["unreadable"] == [] and packed["layout"] == "shards"
    assert [Path(item["path"]).name for item in packed["skipped"]] == ["broken.jpg"]


def test_load_dataset_points_at_the_shard_reader(written):
    with pytest.raises(ValueError, match="load_shards"):
        data.load_dataset(written[0])
    assert shards.is_shard_frame(shards.load_any(written[0]))


def test_an_edited_index_is_refused(written, tmp_path):
    copy = shutil.copytree(written[0], tmp_path / "copy")
    index = copy / shards.INDEX_FILE
    index.write_text(index.read_text().replace("shirt", "shorts", 1))
    with pytest.raises(ValueError, match="images.csv: does not match its sha256"):
        shards.load_shards(copy)


# ----------------------------------------------------------------------------- reading


@pytest.mark.parametrize("cycle_length", [1, 2, None])
def test_shards_read_back_as_the_files_do(written, frame, source, cycle_length):
    out_dir, _ = written
    loose = pipeline.dataset_from_dataframe(loose_frame(frame), target_size=TARGET, batch_size=5, shuffle=False)
    packed = shards.dataset_from_shards(shards.load_shards(out_dir), target_size=TARGET, batch_size=5,
                                        shuffle=False, cycle_length=cycle_length)
    assert packed.class_names == loose.class_names and len(packed) == len(loose)
    x_loose, y_loose = as_arrays(loose)
    x_packed, y_packed = as_arrays(packed)
    # The prediction variant carries each image's row in file_paths, in the batches' order.
    parts = [[np.asarray(part) for part in batch] for batch in packed.for_prediction]
    x_rows, y_rows, rows = (np.concatenate(column) for column in zip(*parts))
    np.testing.assert_array_equal(x_rows, x_packed)
    np.testing.assert_array_equal(y_rows, y_packed)
    row = {relative(path, source): i for i, path in enumerate(loose.file_paths)}
    order = [row[relative(packed.file_paths[r], out_dir)] for r in rows]
    assert sorted(order) == list(range(len(x_loose)))
    np.testing.assert_array_equal(x_packed, x_loose[order])
    np.testing.assert_array_equal(y_packed, y_loose[order])


def test_deterministic_reading_repeats_exactly(written):
    rows = shards.load_shards(written[0])
    first, second = (shards.dataset_from_shards(rows, target_size=TARGET, shuffle=False) for _ in range(2))
    assert first.file_paths == second.file_paths
    np.testing.assert_array_equal(as_arrays(first)[0], as_arrays(second)[0])


def test_training_pass_shuffles_every_epoch_and_keeps_labels_paired(written):
    rows = shards.load_shards(written[0])
    dataset = shards.dataset_from_shards(rows, target_size=TARGET, batch_size=8, seed=3, cache=True)
    epochs = [as_arrays(dataset) for _ in range(2)]
    red, blue = dataset.class_names.index("red"), dataset.class_names.index("blue")
    for images, labels in epochs:
        assert len(images) == len(rows)
        # Each image's own colour says which label it carries.
        redder = images[..., 0].mean(axis=(1, 2)) > images[..., 2].mean(axis=(1, 2))
        np.testing.assert_array_equal(redder, labels[:, red] == 1)
        np.testing.assert_array_equal(~redder, labels[:, blue] == 1)
    assert not np.array_equal(epochs[0][1], epochs[1][1])


def test_augmented_batches_keep_their_shape(written):
    rows = shards.load_shards(written[0])
    dataset = shards.dataset_from_shards(rows, target_size=TARGET, batch_size=8, seed=0,
                                         augment={"rotation_range": 20, "horizontal_flip": True})
    images, labels = as_arrays(dataset)
    assert images.shape == (len(rows), *TARGET, 3) and labels.shape == (len(rows), 4)
    assert 0 <= images.min() and images.max() <= 1


def test_a_split_reads_only_its_rows(written):
    rows = shards.load_shards(written[0])
    train, val, test = split_dataframe(rows, seed=0)
    dataset = shards.dataset_from_shards(test, target_size=TARGET, shuffle=False)
    assert sorted(dataset.file_paths) == sorted(test["filename"])
    assert len(as_arrays(dataset)[0]) == len(test)


@pytest.mark.parametrize("num_workers", [2, 3])
def test_each_worker_reads_its_own_whole_files(written, num_workers):
    rows = shards.load_shards(written[0])
    parts = [shards.dataset_from_shards(rows, target_size=TARGET, shuffle=False, num_workers=num_workers,
                                        worker_index=index) for index in range(num_workers)]
    files = [set(part.shard_files) for part in parts]
    assert set().union(*files) == set(rows["shard_file"])
    assert sum(len(f) for f in files) == len(set(rows["shard_file"]))
    names = [name for part in parts for name in part.file_paths]
    assert sorted(names) == sorted(rows["filename"])
    shares = shards.worker_shares(rows, num_workers)
    assert [share["files"] for share in shares] == [part.shard_files for part in parts]
    assert [share["n_images"] for share in shares] == [part.n_images for part in parts]
    for part in parts:
        assert len(as_arrays(part)[0]) == part.n_images == len(part.file_paths)
        assert part.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.OFF


@pytest.mark.parametrize("num_workers, worker_index, message", [
    (50, 0, "shard files for 50 workers"),
    (2, 2, "worker_index: expected 0 to 1"),
    (0, 0, "num_workers"),
])
def test_impossible_worker_settings_are_refused(written, num_workers, worker_index, message):
    with pytest.raises(ValueError, match=message):
        shards.dataset_from_shards(written[0], num_workers=num_workers, worker_index=worker_index)


def test_rows_of_loose_files_are_refused(frame):
    with pytest.raises(ValueError, match="expected rows of a shard folder"):
        shards.dataset_from_shards(frame)


@pytest.mark.parametrize("options, error, message", [
    ({"cycle_lenght": 2}, TypeError, "cycle_lenght"),
    ({"cycle_length": 0}, ValueError, "cycle_length"),
    ({"class_mode": "binary"}, ValueError, "class_mode"),
])
def test_wrong_reading_options_are_refused(written, options, error, message):
    with pytest.raises(error, match=message):
        shards.dataset_from_shards(written[0], **options)


# ----------------------------------------------------------------------------- interrupted, damaged


def test_an_interrupted_write_resumes_and_ends_as_an_uninterrupted_one(written, frame, tmp_path, monkeypatch):
    out_dir = tmp_path / "out"
    pack, calls = shards._pack, []

    def interrupted(item):
        calls.append(item)
        if len(calls) > 20:
            raise KeyboardInterrupt
        return pack(item)

    monkeypatch.setattr(shards, "_pack", interrupted)
    with pytest.raises(KeyboardInterrupt):
        shards.write_shards(frame, out_dir, shard_size_mb=SHARD_MB, workers=1, progress=False, log=None)
    monkeypatch.setattr(shards, "_pack", pack)
    assert not list(out_dir.glob(".*.tmp")), "temporary files left behind"
    with pytest.raises(ValueError, match="did not finish"):
        shards.load_shards(out_dir)
    with pytest.warns(UserWarning, match="broken.jpg"):
        manifest = shards.write_shards(frame, out_dir, shard_size_mb=SHARD_MB, progress=False, log=None)
    assert manifest["kept"] >= 1 and manifest["written"] == manifest["n_shards"] - manifest["kept"]
    assert [s["sha256"] for s in manifest["shards"]] == [s["sha256"] for s in written[1]["shards"]]


def damage(out_dir, manifest):
    """Truncate the first shard and flip a byte in the middle of the second."""
    first, second = (out_dir / shard["file"] for shard in manifest["shards"][:2])
    first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])
    content = bytearray(second.read_bytes())
    content[len(content) // 2] ^= 0xFF
    second.write_bytes(bytes(content))
    return first, second


def test_damaged_shards_are_named_then_repaired(written, frame, tmp_path):
    out_dir = shutil.copytree(written[0], tmp_path / "copy")
    first, second = damage(out_dir, written[1])
    rows = shards.load_shards(out_dir)
    with pytest.raises(ValueError) as error:
        shards.check_shards(rows["shard_file"])
    message = str(error.value)
    assert "2 of" in message and first.name in message and second.name in message
    assert "truncated" in message and "sha256" in message and "helpers shard" in message
    # A cheap size check still catches the truncated copy (TFRecordDataset reads it silently).
    with pytest.raises(ValueError, match=first.name):
        shards.dataset_from_shards(rows, target_size=TARGET, verify="size")

    report = shards.audit_shards(rows, progress=False)
    bad = {Path(item["path"]).name for item in report["shards"] if not item["ok"]}
    assert bad == {first.name, second.name}
    assert 0 < report["n_bad"] < report["n_images"] and report["n_ok"] + report["n_bad"] == len(rows)

    with pytest.warns(UserWarning, match="broken.jpg"):
        manifest = shards.write_shards(frame, out_dir, shard_size_mb=SHARD_MB, progress=False, log=None)
    assert (manifest["written"], manifest["kept"]) == (2, manifest["n_shards"] - 2)
    assert shards.check_shards(shards.load_shards(out_dir)["shard_file"])


# ----------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_dataset("shapes", tmp_path_factory.mktemp("data") / "shapes", scale=0.1, progress=False)


@pytest.fixture(scope="module")
def shapes_shards(shapes, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("shapes") / "shards"
    assert main(["shard", str(shapes), str(out_dir), "--layout", "split-folders", "--shard-size-mb", "0.05",
                 "--format", "json"]) == 0
    return out_dir


def test_cli_shard_then_scan_gives_the_folder_label_counts(shapes, shapes_shards, capsys, tmp_path):
    code = main(["shard", str(shapes), str(tmp_path / "again"), "--layout", "split-folders",
                 "--shard-size-mb", "0.05", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and set(report) >= {"n_images", "n_shards", "classes", "skipped"}
    manifest = json.loads((shapes_shards / shards.MANIFEST_FILE).read_text())
    assert report["n_images"] == manifest["n_images"] == 108 and report["n_shards"] == manifest["n_shards"] >= 3
    assert sum(shard["n_images"] for shard in manifest["shards"]) == 108
    assert [s["sha256"] for s in manifest["shards"]] == [
        shards.file_sha256(str(shapes_shards / s["file"]))[0] for s in manifest["shards"]]

    counts = []
    for argv in (["scan", str(shapes_shards)], ["scan", str(shapes), "--layout", "split-folders"]):
        assert main([*argv, "--format", "json"]) == 0
        counts.append(json.loads(capsys.readouterr().out)["label_counts"])
    assert counts[0] == counts[1]


def test_cli_audit_of_shards(shapes_shards, capsys):
    assert main(["audit", str(shapes_shards), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_ok"] == report["n_images"] == 108 and all(item["ok"] for item in report["shards"])


def test_cli_refuses_to_shard_shards(shapes_shards, tmp_path, capsys):
    assert main(["shard", str(shapes_shards), str(tmp_path / "x")]) == 2
    assert "already holds shards" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_train_and_evaluate_from_shards(shapes_shards, tmp_path, capsys):
    model_dir = tmp_path / "model"
    assert main(["train", str(shapes_shards), "--model", "mlp", "--epochs", "4", "--image-size", "16",
                 "--no-augment", "--out", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "108 images used" in out
    history = pd.read_csv(model_dir / "history.csv")
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    splits = pd.read_csv(model_dir / "splits.csv")
    assert len(splits) == 108 and set(splits["split"]) == {"train", "val", "test"}

    assert main(["evaluate", "--model-dir", str(model_dir), str(shapes_shards), "--split", "test",
                 "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_images"] == int((splits["split"] == "test").sum())


def test_cli_train_names_a_damaged_shard_without_a_traceback(shapes_shards, tmp_path, capsys):
    copy = shutil.copytree(shapes_shards, tmp_path / "copy")
    manifest = json.loads((copy / shards.MANIFEST_FILE).read_text())
    _, second = damage(copy, manifest)
    assert main(["train", str(copy), "--epochs", "1", "--image-size", "16", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and second.name in err and "Traceback" not in err
    assert "helpers shard" in err


def test_a_split_of_the_shards_is_the_split_of_the_folder(written, frame, source):
    out_dir = written[0]
    from_files = split_dataframe(loose_frame(frame), seed=7)
    from_shards = split_dataframe(shards.load_shards(out_dir), seed=7)
    for files_part, shards_part in zip(from_files, from_shards):
        assert [relative(path, source) for path in files_part["filename"]] == \
            [relative(path, out_dir) for path in shards_part["filename"]]


def test_any_tf_io_gfile_filesystem_works(frame):
    # TensorFlow's in-memory filesystem stands in for a bucket: no local path is used.
    out_dir = f"ram://shards-test-{uuid.uuid4().hex}"
    small = loose_frame(frame).iloc[:20]
    manifest = shards.write_shards(small, out_dir, shard_size_mb=SHARD_MB / 4, progress=False, log=None)
    rows = shards.load_shards(out_dir)
    assert rows["shard_file"].str.startswith("ram://").all() and len(rows) == manifest["n_images"] == 20
    dataset = shards.dataset_from_shards(rows, target_size=TARGET, shuffle=False)
    assert len(as_arrays(dataset)[0]) == 20
    again = shards.write_shards(small, out_dir, shard_size_mb=SHARD_MB / 4, progress=False, log=None)
    assert again["kept"] == manifest["n_shards"] and again["written"] == 0


def test_a_shard_damaged_after_the_check_ends_its_records_not_the_epoch(written, tmp_path):
    # verify="size" cannot see flipped bytes: the records' checksums stop that shard, and the
    # epoch still has its number of batches, without an exception.
    out_dir = shutil.copytree(written[0], tmp_path / "copy")
    second = out_dir / written[1]["shards"][1]["file"]
    content = bytearray(second.read_bytes())
    content[len(content) // 2] ^= 0xFF
    second.write_bytes(bytes(content))
    dataset = shards.dataset_from_shards(shards.load_shards(out_dir), target_size=TARGET, batch_size=4,
                                         shuffle=False, verify="size")
    assert sum(1 for _ in dataset) == len(dataset)
