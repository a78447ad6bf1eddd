"""Tests for helpers.predict: predicting files and folders, odd and broken images, annotation."""
import json

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import models, predict, training
from helpers.images import read_image

CLASSES = ["blue", "red", "shirt", "shoe"]
SIZE = (16, 16)


def _save_model(model_dir, task="multi_label", thresholds=(0.45, 0.5, 0.55, 0.5), seed=0):
    keras.utils.set_random_seed(seed)
    activation = "sigmoid" if task == "multi_label" else "softmax"
    model = models.build_mlp((*SIZE, 3), len(CLASSES), final_activation=activation)
    training.save_artefacts(model_dir, model, CLASSES, task, SIZE,
                            thresholds=thresholds if task == "multi_label" else None)
    return model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    _save_model(folder)
    return folder


@pytest.fixture
def photos(tmp_path):
    """A few plain images in nested folders, plus clutter that must be ignored."""
    rng = np.random.default_rng(0)
    (tmp_path / "photos" / "nested" / ".hidden").mkdir(parents=True)
    paths = []
    for index, relative in enumerate(["a.png", "b.jpg", "nested/c.png", "nested/.hidden/d.png"]):
        path = tmp_path / "photos" / relative
        Image.fromarray(rng.integers(0, 256, (20 + index, 24, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    return tmp_path / "photos", paths


def _expected_probabilities(model_dir, path):
    model, _ = training.load_artefacts(model_dir)
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
    thresholds = training.load_artefacts(model_dir)[1]["thresholds"]
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
    loaded = training.load_artefacts(model_dir)
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


def test_evaluate_model_dir_uses_the_saved_split_and_tunes_thresholds(tmp_path, photos):
    _save_model(tmp_path)
    folder, paths = photos
    dataframe = pd.DataFrame({
        "filename": [str(p) for p in paths],
        "labels": [["red", "shirt"], ["blue"], ["shoe"], ["red"]],
    })
    splits = dataframe.assign(split=["val", "val", "test", "test"])
    splits["labels"] = ["|".join(labels) for labels in splits["labels"]]
    splits[["filename", "split", "labels"]].to_csv(tmp_path / "splits.csv", index=False)

    report = predict.evaluate_model_dir(tmp_path, dataframe, split="test")
    assert report["n_images"] == 2 and report["split"] == "test"
    assert set(report["per_class"]) == set(CLASSES)
    assert {"micro", "macro", "weighted", "mAP"} <= set(report)

    before = training.load_artefacts(tmp_path)[1]["thresholds"]
    predict.evaluate_model_dir(tmp_path, dataframe, split="all", tune_thresholds=True)
    after = training.load_artefacts(tmp_path)[1]["thresholds"]
    assert len(after) == len(CLASSES) and after != before

    with pytest.raises(ValueError, match="not trained on"):
        predict.evaluate_model_dir(tmp_path, dataframe.assign(labels=[["zebra"]] * 4))
    elsewhere = dataframe.assign(filename=[f"/elsewhere/{p.name}" for p in paths])
    with pytest.raises(ValueError, match="none of its 'test' images"):
        predict.evaluate_model_dir(tmp_path, elsewhere, split="test")


def test_cli_predict_reports_broken_images_without_stopping(model_dir, odd_images_dir, capsys):
    from helpers.cli import main

    code = main(["predict", "--model-dir", str(model_dir), "--format", "json", str(odd_images_dir)])
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    errors = {r["path"].rsplit("/", 1)[-1] for r in results if r["error"]}
    assert errors == {"empty.jpg", "truncated.jpg", "random_bytes.jpg", "text.png"}
