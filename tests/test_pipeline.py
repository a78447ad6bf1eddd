import os
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

pytest.importorskip("tensorflow")


from helpers import pipeline
from helpers.files import decode, images  # noqa: E402
from helpers.labels import LabelVocabulary  # noqa: E402

TARGET = (16, 20)  # not square, to catch height/width mix-ups
ROWS = [["red", "shirt"], ["blue"], [], ["red"], ["blue", "shoe"], ["shoe"], ["red", "shoe"]]
FORMATS = ["JPEG", "PNG", "BMP", "JPEG", "PNG", "GIF", "JPEG"]
AUGMENT = {"rotation_range": 30, "width_shift_range": 0.2, "zoom_range": 0.3, "horizontal_flip": True}


def grey(row):
    """Each row gets its own flat grey level, so an image tells which row it is."""
    return 30 + 30 * row


@pytest.fixture
def frame(tmp_path):
    """Seven flat-grey images in mixed formats and sizes, one per row of ROWS."""
    names = []
    for row, fmt in enumerate(FORMATS):
        name = f"img_{row}.{fmt.lower()}"
        size = (24 + 8 * row, 18 + 4 * row)
        Image.new("RGB", size, (grey(row),) * 3).save(tmp_path / name, format=fmt)
        names.append(name)
    frame = pd.DataFrame({"filename": names, "labels": ROWS})
    frame.attrs["directory"] = str(tmp_path)
    return frame


def batches(dataset):
    return [tuple(np.asarray(part) for part in batch) for batch in dataset]


def concatenated(dataset):
    parts = batches(dataset)
    return [np.concatenate([batch[i] for batch in parts]) for i in range(len(parts[0]))]


def row_of(image):
    return int(round((image.mean() * 255 - 30) / 30))


def test_shapes_dtypes_and_range(frame):
    dataset = pipeline.dataset_from_dataframe(
        frame, directory=frame.attrs["directory"], target_size=TARGET, batch_size=3, shuffle=False
    )
    parts = batches(dataset)
    assert [x.shape for x, _ in parts] == [(3, *TARGET, 3), (3, *TARGET, 3), (1, *TARGET, 3)]
    assert all(x.dtype == np.float32 and y.dtype == np.float32 for x, y in parts)
    assert all(x.min() >= 0 and x.max() <= 1 for x, _ in parts)
    assert dataset.class_names == ["blue", "red", "shirt", "shoe"]
    assert dataset.element_spec[0].shape.as_list() == [None, *TARGET, 3]


def test_labels_match_rows_without_shuffle(frame):
    dataset = pipeline.dataset_from_dataframe(
        frame, directory=frame.attrs["directory"], target_size=TARGET, batch_size=2, shuffle=False
    )
    x, y = concatenated(dataset)
    np.testing.assert_array_equal(y, LabelVocabulary.from_labels(ROWS).encode(ROWS))
    assert [row_of(image) for image in x] == list(range(len(ROWS)))
    np.testing.assert_allclose(x[0], grey(0) / 255, atol=2 / 255)


def test_shuffle_keeps_images_and_labels_paired(frame):
    dataset = pipeline.dataset_from_dataframe(
        frame, directory=frame.attrs["directory"], target_size=TARGET, batch_size=4, seed=0
    )
    encoded = LabelVocabulary.from_labels(ROWS).encode(ROWS)
    orders = []
    for _ in range(3):
        x, y = concatenated(dataset)
        rows = [row_of(image) for image in x]
        assert sorted(rows) == list(range(len(ROWS)))
        np.testing.assert_array_equal(y, encoded[rows])
        orders.append(rows)
    assert len({tuple(order) for order in orders}) > 1, "order should change between epochs"


def test_augmentation_only_when_asked(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
    frame = pd.DataFrame({"filename": [str(tmp_path / f"{i}.png") for i in range(4)], "labels": [["a"]] * 4})
    plain = pipeline.dataset_from_dataframe(frame, target_size=(32, 32), shuffle=False)
    first, second = concatenated(plain)[0], concatenated(plain)[0]
    np.testing.assert_array_equal(first, second)
    for path, image in zip(frame["filename"], first):
        np.testing.assert_allclose(image, images.read_image(path) / 255, atol=1e-6)

    augmented = pipeline.dataset_from_dataframe(frame, target_size=(32, 32), shuffle=False, augment=AUGMENT, seed=1)
    one, two = concatenated(augmented)[0], concatenated(augmented)[0]
    assert one.shape == first.shape and one.min() >= 0 and one.max() <= 1
    assert np.abs(one - first).mean() > 0.02
    assert np.abs(one - two).mean() > 0.02, "each epoch should draw new transforms"


def test_odd_formats_decode_like_read_image(odd_images_dir, odd_images_expected):
    good = sorted(name for name, info in odd_images_expected.items() if info["ok"])
    frame = pd.DataFrame({"filename": good, "labels": [["x"]] * len(good)})
    dataset = pipeline.dataset_from_dataframe(
        frame, directory=str(odd_images_dir), target_size=TARGET, batch_size=64, shuffle=False
    )
    x, _ = concatenated(dataset)
    assert x.shape == (len(good), *TARGET, 3)
    for name, image in zip(good, x):
        expected = images.read_image(os.path.join(odd_images_dir, name), TARGET) / 255
        # TensorFlow's own decoders (plain JPEG/PNG) agree with Pillow to one grey level.
        np.testing.assert_allclose(image, expected, atol=1.5 / 255, err_msg=name)


def test_exif_orientation_is_honoured(odd_images_dir):
    frame = pd.DataFrame({"filename": [str(odd_images_dir / "rotated_exif6.jpg")], "labels": [["x"]]})
    # Stored 40 wide x 20 high with a red block top-left; displayed 20 wide x 40 high.
    (x,), _ = next(iter(pipeline.dataset_from_dataframe(frame, target_size=(40, 20), shuffle=False)))
    x = np.asarray(x)
    red = (x[..., 0] > 0.7) & (x[..., 2] < 0.3)
    rows, cols = np.nonzero(red)
    assert rows.max() < 12 and cols.min() > 8, "orientation 6 moves the stored top-left to the top-right"


def test_bad_files_are_skipped_with_warnings(odd_images_dir, odd_images_expected):
    names = sorted(odd_images_expected)
    frame = pd.DataFrame({"filename": names, "labels": [["x"]] * len(names)})
    with pytest.warns(UserWarning) as record:
        dataset = pipeline.dataset_from_dataframe(
            frame, directory=str(odd_images_dir), target_size=TARGET, batch_size=5, shuffle=False
        )
        x, y = concatenated(dataset)
    messages = [str(w.message) for w in record]
    for name in ("empty.jpg", "random_bytes.jpg", "text.png", "truncated.jpg"):
        assert sum(name in m for m in messages) == 1, (name, messages)
    assert any("skipped 3 of 16 image files" in m for m in messages)
    n_good = sum(info["ok"] for info in odd_images_expected.values())
    assert len(x) == len(y) == n_good
    assert {os.path.basename(s["path"]) for s in dataset.skipped} == {"empty.jpg", "random_bytes.jpg", "text.png"}

    # A second epoch neither crashes nor repeats the warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(concatenated(dataset)[0]) == n_good


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_is_dropped_alone(frame, fmt):
    directory = frame.attrs["directory"]
    full = os.path.join(directory, f"full.{fmt.lower()}")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(full, format=fmt)
    data = open(full, "rb").read()
    with open(os.path.join(directory, f"cut.{fmt.lower()}"), "wb") as handle:
        handle.write(data[: len(data) // 2])
    frame = pd.concat([frame, pd.DataFrame({"filename": [f"cut.{fmt.lower()}"], "labels": [["red"]]})], ignore_index=True)
    with pytest.warns(UserWarning, match=f"cut.{fmt.lower()}: truncated image"):
        dataset = pipeline.dataset_from_dataframe(frame, directory=directory, target_size=TARGET, batch_size=8, shuffle=False)
        x, y = concatenated(dataset)
    assert len(x) == len(y) == len(ROWS)  # the other images of its batch survive


def test_bad_files_raise_up_front(odd_images_dir, odd_images_expected):
    names = sorted(odd_images_expected)
    frame = pd.DataFrame({"filename": names, "labels": [["x"]] * len(names)})
    with pytest.raises(ValueError, match="4 of 16 image files cannot be read") as error:
        pipeline.dataset_from_dataframe(frame, directory=str(odd_images_dir), on_error="raise")
    for name in ("empty.jpg", "random_bytes.jpg", "text.png", "truncated.jpg"):
        assert name in str(error.value)


def test_raise_mode_on_good_files_keeps_the_length(frame):
    dataset = pipeline.dataset_from_dataframe(
        frame, directory=frame.attrs["directory"], target_size=TARGET, batch_size=3, on_error="raise"
    )
    assert len(dataset) == 3
    assert sum(len(x) for x, _ in batches(dataset)) == len(ROWS)


def test_missing_file_is_skipped(frame):
    directory = frame.attrs["directory"]
    frame = pd.concat([frame, pd.DataFrame({"filename": ["gone.jpg"], "labels": [["red"]]})], ignore_index=True)
    with pytest.warns(UserWarning) as record:
        dataset = pipeline.dataset_from_dataframe(frame, directory=directory, shuffle=False)
    messages = [str(w.message) for w in record]
    assert any(m.endswith("gone.jpg: file not found") for m in messages)
    assert "skipped 1 of 8 image files (see the warnings above)" in messages
    assert len(concatenated(dataset)[0]) == len(ROWS)


@pytest.mark.parametrize(
    ("class_mode", "expected"),
    [
        ("categorical", np.eye(3, dtype=np.float32)[[2, 0, 1, 2]]),
        ("sparse", np.array([2, 0, 1, 2], dtype=np.float32)),
        ("multi_hot", np.eye(3, dtype=np.float32)[[2, 0, 1, 2]]),
    ],
)
def test_single_label_class_modes(frame, class_mode, expected):
    frame = frame.iloc[:4].assign(labels=["panda", "cats", "dogs", "panda"])
    dataset = pipeline.dataset_from_dataframe(
        frame, directory=frame.attrs["directory"], class_mode=class_mode, target_size=TARGET, shuffle=False
    )
    _, y = concatenated(dataset)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, expected)
    assert dataset.class_names == ["cats", "dogs", "panda"]


def test_class_mode_none_gives_images_only(frame):
    frame = frame.drop(columns="labels")
    dataset = pipeline.dataset_from_dataframe(
        frame, directory=frame.attrs["directory"], class_mode=None, target_size=TARGET, shuffle=False
    )
    first = next(iter(dataset))
    assert first.shape == (len(ROWS), *TARGET, 3)
    assert dataset.class_names is None


def test_categorical_needs_one_label_per_image(frame):
    with pytest.raises(ValueError, match="multi_hot"):
        pipeline.dataset_from_dataframe(frame, directory=frame.attrs["directory"], class_mode="categorical")


def test_given_classes_fix_the_columns(frame):
    classes = LabelVocabulary(["blue", "green", "red", "shirt", "shoe"])
    dataset = pipeline.dataset_from_dataframe(
        frame, directory=frame.attrs["directory"], classes=classes, target_size=TARGET, shuffle=False
    )
    _, y = concatenated(dataset)
    assert y.shape == (len(ROWS), 5) and y[:, 1].sum() == 0
    with pytest.raises(ValueError, match=r"not in the vocabulary: \['shirt', 'shoe'\]"):
        pipeline.dataset_from_dataframe(frame, directory=frame.attrs["directory"], classes=["blue", "red"])


@pytest.mark.parametrize("cache", ["memory", "file"])
def test_cache_gives_the_same_images(frame, tmp_path, cache):
    cache_arg = True if cache == "memory" else str(tmp_path / "cache" / "train")
    dataset = pipeline.dataset_from_dataframe(
        frame, directory=frame.attrs["directory"], target_size=TARGET, shuffle=False, cache=cache_arg
    )
    first, second = concatenated(dataset), concatenated(dataset)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert [row_of(image) for image in first[0]] == list(range(len(ROWS)))
    if cache == "file":
        written = os.listdir(tmp_path / "cache")
        assert any(name.startswith("train-") and name.endswith(".index") for name in written)
        # Another image size must not read the old cache.
        other = pipeline.dataset_from_dataframe(
            frame, directory=frame.attrs["directory"], target_size=(8, 8), shuffle=False, cache=cache_arg
        )
        assert concatenated(other)[0].shape[1:3] == (8, 8)


def test_shuffled_cache_still_pairs_labels(frame):
    dataset = pipeline.dataset_from_dataframe(
        frame, directory=frame.attrs["directory"], target_size=TARGET, seed=3, cache=True, shuffle_buffer_size=4
    )
    encoded = LabelVocabulary.from_labels(ROWS).encode(ROWS)
    for _ in range(2):
        x, y = concatenated(dataset)
        rows = [row_of(image) for image in x]
        assert sorted(rows) == list(range(len(ROWS)))
        np.testing.assert_array_equal(y, encoded[rows])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"class_mode": "binary"}, "class_mode"),
        ({"on_error": "ignore"}, "on_error"),
        ({"target_size": 64}, "target_size"),
        ({"target_size": (64, 0)}, "target_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"x_col": "path"}, "no column 'path'"),
        ({"cache": 3}, "cache"),
        ({"augment": {"rescale": 1 / 255}}, "already scaled"),
    ],
)
def test_bad_arguments(frame, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipeline.dataset_from_dataframe(frame, directory=frame.attrs["directory"], **kwargs)


def test_dataset_from_directory(tmp_path):
    for folder in ("cats", "dogs", "red_shirt"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (20, 20), (90, 90, 90)).save(tmp_path / "data" / folder / f"{i}.jpg")
    dataset = pipeline.dataset_from_directory(tmp_path / "data", target_size=TARGET, shuffle=False)
    _, y = concatenated(dataset)
    assert dataset.class_names == ["cats", "dogs", "red_shirt"]
    np.testing.assert_array_equal(y.argmax(axis=1), [0, 0, 1, 1, 2, 2])

    split = pipeline.dataset_from_directory(
        tmp_path / "data", class_mode="multi_hot", folder_separator="_", target_size=TARGET, shuffle=False
    )
    assert split.class_names == ["cats", "dogs", "red", "shirt"]
    np.testing.assert_array_equal(concatenated(split)[1][-1], [0, 0, 1, 1])

    unlabelled = pipeline.dataset_from_directory(tmp_path / "data", class_mode=None, target_size=TARGET)
    assert next(iter(unlabelled)).shape[0] == 6


# --------------------------------------------------------------------------- augmentation


def test_pipeline_augmentation_is_repeatable_with_a_seed(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    frame = pd.DataFrame({"filename": [str(tmp_path / f"{i}.png") for i in range(12)], "labels": [["a"]] * 12})
    runs = [
        concatenated(pipeline.dataset_from_dataframe(
            frame, target_size=(32, 32), batch_size=4, shuffle=True, seed=seed, augment=AUGMENT))[0]
        for seed in (3, 3, 4)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.abs(runs[0] - runs[2]).mean() > 0.02


@pytest.mark.parametrize("size", [(97, 131), (64, 64), (40, 70), (200, 30), (17, 23)])
def test_tensorflow_resize_matches_images_resize(size):
    image = np.random.default_rng(sum(size)).integers(0, 256, (*size, 3), dtype=np.uint8)
    for target in [(64, 64), (48, 80)]:
        shrinks = (size[0] >= target[0], size[1] >= target[1])
        ours = decode._tf_resize(image, target, *shrinks).numpy().astype(int)
        np.testing.assert_allclose(ours, images.resize(image, target), atol=1, err_msg=f"{size} -> {target}")
