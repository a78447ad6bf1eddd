"""Tests for helpers.predict: predicting files and folders, odd and broken images, annotation."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from _factories import CLASSES, SIZE, save_model_folder

from helpers import artefacts, predict
from helpers.files.images import read_batches, read_image


def _save_model(model_dir, task="multi_label", thresholds=(0.45, 0.5, 0.55, 0.5), seed=0):
    return save_model_folder(model_dir, CLASSES, SIZE, task, thresholds, seed)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    _save_model(folder)
    return folder


def _expected_probabilities(model_dir, path):
    model, _ = artefacts.load_artefacts(model_dir)
    image = read_image(path, SIZE).astype("float32")[None] / 255.0
    return np.asarray(model.predict_on_batch(image))[0]


def test_folders_are_searched_recursively_without_hidden_or_non_image_files(model_dir, photos):
    folder, paths = photos
    results = predict.predict_paths(model_dir, folder)
    assert [r["path"] for r in results] == [str(p) for p in (paths[0], paths[1], paths[2])]
    for result in results:
        assert result["error"] is None
        assert list(result["probabilities"]) == CLASSES
        np.testing.assert_allclose(
            list(result["probabilities"].values()),
            _expected_probabilities(model_dir, result["path"]), rtol=1e-6,
        )


def test_labels_follow_the_saved_thresholds(model_dir, photos):
    folder, _ = photos
    thresholds = artefacts.load_artefacts(model_dir)[1]["thresholds"]
    for result in predict.predict_paths(model_dir, folder):
        expected = [name for name, threshold in zip(CLASSES, thresholds)
                    if result["probabilities"][name] >= threshold]
        assert result["labels"] == expected
    everything = predict.predict_paths(model_dir, folder, thresholds=0.0)
    assert all(result["labels"] == CLASSES for result in everything)


def test_multi_class_models_give_the_argmax(tmp_path, photos):
    _save_model(tmp_path, task="multi_class")
    folder, _ = photos
    for result in predict.predict_paths(tmp_path, folder):
        probabilities = result["probabilities"]
        assert result["labels"] == [max(probabilities, key=probabilities.get)]
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_odd_and_broken_images_each_get_an_entry(model_dir, odd_images_dir, odd_images_expected):
    results = predict.predict_paths(model_dir, [odd_images_dir], batch_size=3)
    by_name = {result["path"].rsplit("/", 1)[-1]: result for result in results}
    assert set(by_name) == set(odd_images_expected)  # clutter (.DS_Store, Thumbs.db) left out
    for name, expected in odd_images_expected.items():
        result = by_name[name]
        if expected["ok"]:
            assert result["error"] is None, name
            assert set(result["probabilities"]) == set(CLASSES)
        else:
            assert result["error"], name
            assert result["labels"] is None and result["probabilities"] is None


def test_exif_rotation_is_honoured(model_dir, odd_images_dir, tmp_path):
    rotated = odd_images_dir / "rotated_exif6.jpg"
    upright = tmp_path / "upright.png"
    Image.fromarray(read_image(rotated)).save(upright)
    first, second = predict.predict_paths(model_dir, [rotated, upright])
    assert first["probabilities"] == second["probabilities"]


@pytest.mark.parametrize("batch_size", [1, 2, 32])
def test_batch_size_does_not_change_the_result(model_dir, photos, batch_size):
    folder, _ = photos
    reference = predict.predict_paths(model_dir, folder, batch_size=4)
    results = predict.predict_paths(model_dir, folder, batch_size=batch_size)
    for result, expected in zip(results, reference):
        assert result["labels"] == expected["labels"]
        np.testing.assert_allclose(list(result["probabilities"].values()),
                                   list(expected["probabilities"].values()), rtol=1e-5)


def test_a_loaded_model_gives_the_same_answers_as_its_folder(model_dir, photos):
    folder, _ = photos
    loaded = artefacts.load_artefacts(model_dir)
    assert predict.predict_paths(loaded, folder) == predict.predict_paths(model_dir, folder)


def test_missing_paths_and_empty_folders_are_reported(model_dir, tmp_path, photos):
    _, paths = photos
    (tmp_path / "empty").mkdir()
    results = predict.predict_paths(model_dir, [tmp_path / "nowhere.jpg", tmp_path / "empty", paths[0]])
    assert [r["error"] for r in results] == ["no such file or folder", "folder holds no image file", None]


@pytest.mark.parametrize(
    "prepare, message",
    [
        (lambda d: (d / "labels.json").unlink(), "labels.json: file not found"),
        (lambda d: (d / "labels.json").write_text(json.dumps(
            {"classes": ["a", "b"], "task": "multi_label", "target_size": [16, 16]})),
         "2 classes but model.keras has 4 outputs"),
    ],
)
def test_a_mismatched_model_folder_is_a_clear_error(tmp_path, photos, prepare, message):
    _save_model(tmp_path)
    prepare(tmp_path)
    with pytest.raises(ValueError, match=message):
        predict.predict_paths(tmp_path, photos[0])


def test_bad_batch_size_is_refused(model_dir, photos):
    with pytest.raises(ValueError, match="batch_size"):
        predict.predict_paths(model_dir, photos[0], batch_size=0)


def test_read_batches_pass_over_none_and_skip_broken_files_without_costing_others(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((4, 6, 3), dtype=np.uint8)).save(good)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    paths = [good, None, tmp_path / "broken.png", good, good]
    failed = []
    batches = list(read_batches(paths, (2, 3), 2, failed))
    assert [[position for position, _ in batch] for batch in batches] == [[0, 3], [4]]
    assert all(image.shape == (2, 3, 3) for batch in batches for _, image in batch)
    assert [position for position, _ in failed] == [2]
    with pytest.raises(ValueError, match="batch_size"):
        next(read_batches(paths, (2, 3), 0, []))


def test_annotate_draws_the_labels_on_an_enlarged_copy(model_dir, photos, tmp_path):
    _, paths = photos
    result = predict.predict_paths(model_dir, paths[0], thresholds=0.0)[0]
    out = predict.annotate(paths[0], result, tmp_path / "out" / "a.png", min_size=240)
    with Image.open(out) as drawn:
        assert drawn.size == (288, 240)  # 24x20 enlarged, aspect kept
        pixels = np.asarray(drawn.convert("RGB"))
    plain = np.asarray(Image.fromarray(read_image(paths[0])).resize((288, 240), Image.Resampling.BILINEAR))
    assert (pixels != plain).any()
    assert (pixels[..., 1] == 255).any() and (pixels[..., 0] == 0).any()  # green text
    with pytest.raises(ValueError, match="cannot annotate"):
        predict.annotate(paths[0], {"path": str(paths[0]), "error": "broken"}, tmp_path / "b.png")


def test_cli_predict_reports_broken_images_without_stopping(model_dir, odd_images_dir, capsys):
    from helpers.app.cli import main

    code = main(["predict", "--model-dir", str(model_dir), "--format", "json", str(odd_images_dir)])
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    errors = {r["path"].rsplit("/", 1)[-1] for r in results if r["error"]}
    assert errors == {"empty.jpg", "truncated.jpg", "random_bytes.jpg", "text.png"}


def test_predict_split_reads_the_saved_split(tmp_path):
    keras = pytest.importorskip("keras")
    from PIL import Image


    paths = []
    for index in range(5):
        path = tmp_path / f"image_{index}.png"
        Image.new("RGB", (8, 8), (index * 50, 100, 200 - index * 40)).save(path)
        paths.append(str(path))
    splits = ["train", "val", "test", "test", "test"]
    labels = ["cat", "dog", "cat|dog", "", "dog"]
    model_dir = tmp_path / "model"
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2, activation="sigmoid")])
    artefacts.save_artefacts(model_dir, model, ["cat", "dog"], "multi_label", (8, 8))
    pd.DataFrame({"filename": paths, "split": splits, "labels": labels}).to_csv(
        model_dir / "splits.csv", index=False)

    result = predict.predict_split(model_dir, "test")

    assert list(result["frame"]["filename"]) == paths[2:]
    assert list(result["frame"]["labels"]) == [["cat", "dog"], [], ["dog"]]
    np.testing.assert_array_equal(result["y_true"], [[1, 1], [0, 0], [0, 1]])
    pixels = np.stack([np.asarray(Image.open(path), dtype="float32") / 255 for path in paths[2:]])
    np.testing.assert_allclose(result["y_prob"], model.predict(pixels, verbose=0), atol=1e-5)
    assert result["classes"] == ["cat", "dog"]
    with pytest.raises(ValueError, match="split"):
        predict.predict_split(model_dir, "holdout")
