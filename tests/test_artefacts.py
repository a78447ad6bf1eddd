"""Tests for helpers.artefacts: save, load and validate a model folder; splits.csv; history."""
import json
import os

import numpy as np
import pytest
from _factories import tiny_arrays

from helpers import artefacts, imbalance, models, training


def test_backup_epoch_is_zero_without_a_backup(tmp_path):
    assert artefacts.backup_epoch(tmp_path) == 0
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "training_metadata.json").write_text("{broken")
    assert artefacts.backup_epoch(tmp_path) == 0


@pytest.fixture
def saved_model_dir(tmp_path):
    model = models.build_mlp((16, 16, 3), 3, final_activation="sigmoid")
    training.compile_model(model)
    artefacts.save_artefacts(tmp_path, model, ["cat", "dog", "panda"], "multi_label", (16, 16),
                            thresholds=[0.4, 0.5, 0.6], metrics={"val": {"f1_micro": 0.5}})
    return tmp_path, model


def test_save_then_load_gives_identical_probabilities(saved_model_dir):
    model_dir, model = saved_model_dir
    assert sorted(os.listdir(model_dir)) == ["labels.json", "metrics.json", "model.keras"]
    loaded, metadata = artefacts.load_artefacts(model_dir)
    images, _ = tiny_arrays(8)
    np.testing.assert_array_equal(loaded.predict_on_batch(images), model.predict_on_batch(images))
    assert metadata["classes"] == ["cat", "dog", "panda"]
    assert metadata["thresholds"] == [0.4, 0.5, 0.6]
    assert metadata["target_size"] == [16, 16] and metadata["model"] == "mlp"
    assert metadata["preprocessing"]["input_range"] == [0.0, 1.0]
    assert json.loads((model_dir / "metrics.json").read_text())["val"]["f1_micro"] == 0.5


def test_save_artefacts_checks_the_class_count(tmp_path):
    model = models.build_mlp((8, 8, 3), 3)
    with pytest.raises(ValueError, match="3 outputs"):
        artefacts.save_artefacts(tmp_path, model, ["a", "b"], "multi_class", (8, 8))


def _rewrite_labels(model_dir, change):
    path = model_dir / "labels.json"
    metadata = json.loads(path.read_text())
    change(metadata)
    path.write_text(json.dumps(metadata))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.pop("classes"), r"missing field\(s\) \['classes'\]"),
        (lambda m: m.update(classes="cat"), "'classes' must be a non-empty list"),
        (lambda m: m.update(classes=["cat", "cat", "dog"]), "without duplicates"),
        (lambda m: m.update(task="multilabel"), "'task' must be one of"),
        (lambda m: m.update(target_size=[16]), "'target_size' must be"),
        (lambda m: m.update(target_size=["16", 16]), "'target_size' must be"),
        (lambda m: m.update(thresholds=[0.5, 0.5]), "'thresholds' has 2 values but 'classes' has 3"),
        (lambda m: m.update(thresholds=[0.5, 2, 0.5]), "between 0 and 1"),
        (lambda m: m.update(classes=["a", "b", "c", "d"], thresholds=None), "4 classes but model.keras has 3 outputs"),
        (lambda m: m.update(target_size=[32, 32]), "takes \\[16, 16\\] images"),
    ],
)
def test_labels_json_is_validated_on_load(saved_model_dir, change, message):
    model_dir, _ = saved_model_dir
    _rewrite_labels(model_dir, change)
    with pytest.raises(ValueError, match=message) as error:
        artefacts.load_artefacts(model_dir)
    assert "labels.json" in str(error.value)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "labels.json").unlink(), "labels.json: file not found"),
        (lambda d: (d / "labels.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "labels.json").write_text("[1, 2]"), "must be a JSON object"),
        (lambda d: (d / "model.keras").unlink(), "model.keras: file not found"),
        (lambda d: (d / "model.keras").write_bytes(b"PK\x03\x04 nonsense"), "model.keras: not a Keras model file"),
    ],
)
def test_damaged_model_folders_raise_clear_errors(saved_model_dir, damage, message):
    model_dir, _ = saved_model_dir
    damage(model_dir)
    with pytest.raises(ValueError, match=message):
        artefacts.load_artefacts(model_dir)


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="model folder not found"):
        artefacts.load_artefacts(tmp_path / "nowhere")


def test_update_thresholds_rewrites_labels_json(saved_model_dir):
    model_dir, _ = saved_model_dir
    artefacts.update_thresholds(model_dir, [0.2, 0.3, 0.9])
    assert artefacts.load_artefacts(model_dir)[1]["thresholds"] == [0.2, 0.3, 0.9]
    with pytest.raises(ValueError):
        artefacts.update_thresholds(model_dir, [0.2, 0.3])


def test_custom_loss_model_loads_in_safe_mode(tmp_path):

    model = models.build_mlp((8, 8, 3), 2, final_activation="sigmoid")
    training.compile_model(model, loss=imbalance.weighted_binary_crossentropy([2.0, 3.0]))
    artefacts.save_artefacts(tmp_path, model, ["a", "b"], "multi_label", (8, 8))
    loaded, _ = artefacts.load_artefacts(tmp_path, compile=True)
    assert loaded.loss.__class__.__name__ == "WeightedBinaryCrossentropy"
