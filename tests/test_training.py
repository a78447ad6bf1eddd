"""Tests for helpers.training: compile, callbacks, resuming, artefacts, train_from_source."""
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import f1_score

from helpers import REPO_ROOT, models, training

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


def tiny_arrays(n=48, size=16, n_classes=3, seed=0):
    """Images whose label k lights up channel k: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, n_classes)) < 0.5).astype("float32")
    images = rng.random((n, size, size, 3)).astype("float32") * 0.3
    for k in range(min(n_classes, 3)):
        images[labels[:, k] == 1, :, :, k] += 0.6
    return images, labels


def make_fashion_folders(root, per_folder=8, size=20, broken=True):
    """``colour_item`` folders (split-folders layout) of tiny PNGs, plus one broken file."""
    rng = np.random.default_rng(0)
    for colour, rgb in COLOURS.items():
        for item in ("shirt", "shoe"):
            folder = root / f"{colour}_{item}"
            folder.mkdir(parents=True)
            for index in range(per_folder):
                pixels = np.full((size, size, 3), 255, dtype=np.int16)
                if item == "shirt":
                    pixels[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = rgb
                else:
                    pixels[size // 2:, :] = rgb
                pixels -= rng.integers(0, 40, pixels.shape)
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{index}.png")
    if broken:
        (root / "red_shirt" / "broken.jpg").write_bytes(b"this is not a picture")
    return root


def compiled_mlp(n_classes=3, size=8, seed=0):
    keras.utils.set_random_seed(seed)
    model = models.build_mlp((size, size, 3), n_classes, final_activation="sigmoid")
    return training.compile_model(model, learning_rate=1e-3)


# ------------------------------------------------------------------------------ compile
@pytest.mark.parametrize(
    "task, loss, loss_type, metric_names",
    [
        ("multi_label", None, keras.losses.BinaryCrossentropy,
         {"binary_accuracy", "auc", "pr_auc", "f1", "precision", "recall"}),
        ("multi_label", "focal", keras.losses.BinaryFocalCrossentropy, {"binary_accuracy", "f1"}),
        ("multi_class", None, keras.losses.CategoricalCrossentropy, {"accuracy", "f1"}),
        ("multi_class", "sparse-cce", keras.losses.SparseCategoricalCrossentropy, {"accuracy"}),
    ],
)
def test_compile_model_picks_loss_and_metrics_per_task(task, loss, loss_type, metric_names):
    model = models.build_mlp((8, 8, 3), 4, final_activation="sigmoid")
    training.compile_model(model, task=task, loss=loss)
    assert isinstance(model.loss, loss_type)
    names = {metric.name for metric in training.task_metrics(task, 4)}
    assert metric_names <= names
    if task == "multi_label":
        f1 = next(m for m in training.task_metrics(task, 4) if m.name == "f1")
        assert f1.threshold == 0.5 and f1.average == "micro"  # not argmax


def test_weighted_bce_needs_training_labels():
    model = models.build_mlp((8, 8, 3), 2, final_activation="sigmoid")
    with pytest.raises(ValueError, match="y_train"):
        training.compile_model(model, loss="weighted-bce")
    y = np.array([[1, 0], [0, 0], [0, 1], [0, 0]], dtype="float32")
    training.compile_model(model, loss="weighted-bce", y_train=y)
    assert model.loss.__class__.__name__ == "WeightedBinaryCrossentropy"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task": "multilabel"}, "task must be one of"),
        ({"loss": "hinge"}, "loss must be"),
        ({"optimizer": "adagrad2"}, "optimizer must be one of"),
        ({"loss": "cce"}, "multi_class"),
        ({"task": "multi_class", "loss": "focal"}, "binary loss for multi_label"),
    ],
)
def test_compile_model_rejects_bad_arguments(kwargs, message):
    model = models.build_mlp((8, 8, 3), 2, final_activation="sigmoid")
    with pytest.raises(ValueError, match=message):
        training.compile_model(model, **kwargs)


# ---------------------------------------------------------------------------- callbacks
@pytest.mark.parametrize("task", ["multi_label", "multi_class"])
def test_threshold_metrics_match_scikit_learn(task):
    rng = np.random.default_rng(3)
    y_prob = rng.random((30, 4))
    if task == "multi_label":
        y_true = (rng.random((30, 4)) < 0.4).astype(int)
        y_pred = (y_prob >= 0.5).astype(int)
    else:
        y_true = np.eye(4, dtype=int)[rng.integers(0, 4, 30)]
        y_pred = np.eye(4, dtype=int)[y_prob.argmax(axis=1)]
    values = training.threshold_metrics(y_true, y_prob, task, prefix="val_")
    for average in training.AVERAGES:
        expected = f1_score(y_true, y_pred, average=average, zero_division=0)
        assert values[f"val_f1_{average}"] == pytest.approx(expected)


def test_metrics_callback_values_reach_history_and_csv(tmp_path):
    images, labels = tiny_arrays(32, size=8)
    model = compiled_mlp()
    lines = []
    callbacks = training.make_callbacks(
        tmp_path, validation_data=(images[:16], labels[:16]), log=lines.append, n_images=16
    )
    assert isinstance(callbacks[0], training.MetricsCallback)  # first, so others see its values
    assert isinstance(callbacks[-1], training.EpochLogger)
    order = [type(callback).__name__ for callback in callbacks]
    assert order.index("ReduceLROnPlateau") < order.index("CSVLogger") < order.index("BackupAndRestore")
    history = model.fit(images[16:], labels[16:], validation_data=(images[:16], labels[:16]),
                        epochs=2, batch_size=8, callbacks=callbacks, verbose=0)

    _, y_prob = training.predict_dataset(model, (images[:16], labels[:16]))
    last_epoch_f1 = f1_score(labels[:16], y_prob >= 0.5, average="micro", zero_division=0)
    assert history.history["val_f1_micro"][-1] == pytest.approx(last_epoch_f1, abs=1e-6)
    csv = pd.read_csv(tmp_path / training.HISTORY_FILE)
    for key in ("val_f1_micro", "val_f1_macro", "val_f1_weighted", "val_precision_micro",
                "val_recall_weighted", "learning_rate"):
        assert key in csv.columns
    assert csv["epoch"].tolist() == [0, 1]
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2") and "val_f1_micro" in lines[0]
    assert "img/s" in lines[0]


def test_monitoring_f1_needs_validation_data(tmp_path):
    with pytest.raises(ValueError, match="needs validation_data"):
        training.make_callbacks(tmp_path, monitor="val_f1_micro")


@pytest.mark.parametrize("build", [
    lambda: models.build_mlp((16, 16, 3), 3, final_activation="sigmoid"),
    lambda: models.build_smallvggnet((16, 16, 3), 3),
])
def test_a_few_epochs_on_tiny_data_make_the_loss_fall(build):
    keras.utils.set_random_seed(0)
    images, labels = tiny_arrays(48)
    model = training.compile_model(build(), learning_rate=1e-3)
    history = model.fit(images, labels, epochs=4, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0]


class Crash(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise RuntimeError("simulated interruption")


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs, self.weights_at_start = [], None

    def on_train_begin(self, logs=None):
        self.weights_at_start = [w.copy() for w in self.model.get_weights()]

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_interrupted_fit_resumes_from_its_last_finished_epoch(tmp_path):
    images, labels = tiny_arrays(32, size=8)
    validation = (images[:8], labels[:8])

    first = compiled_mlp(seed=1)
    callbacks = training.make_callbacks(tmp_path, validation_data=validation, log=None)
    with pytest.raises(RuntimeError, match="simulated"):
        first.fit(images[8:], labels[8:], validation_data=validation, epochs=5, batch_size=8,
                  callbacks=callbacks + [Crash(at_epoch=2)], verbose=0)
    assert training.backup_epoch(tmp_path) == 2
    weights_after_two_epochs = first.get_weights()

    second = compiled_mlp(seed=2)  # different random start
    recorder = Recorder()
    callbacks = training.make_callbacks(tmp_path, validation_data=validation, log=None)
    second.fit(images[8:], labels[8:], validation_data=validation, epochs=4, batch_size=8,
               callbacks=callbacks + [recorder], verbose=0)
    assert recorder.epochs == [2, 3]
    for restored, saved in zip(recorder.weights_at_start, weights_after_two_epochs):
        np.testing.assert_array_equal(restored, saved)
    assert training.read_history(tmp_path).index.tolist() == [0, 1, 2, 3]


def test_backup_epoch_is_zero_without_a_backup(tmp_path):
    assert training.backup_epoch(tmp_path) == 0
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "training_metadata.json").write_text("{broken")
    assert training.backup_epoch(tmp_path) == 0


# ---------------------------------------------------------------------------- artefacts
@pytest.fixture
def saved_model_dir(tmp_path):
    model = models.build_mlp((16, 16, 3), 3, final_activation="sigmoid")
    training.compile_model(model)
    training.save_artefacts(tmp_path, model, ["cat", "dog", "panda"], "multi_label", (16, 16),
                            thresholds=[0.4, 0.5, 0.6], metrics={"val": {"f1_micro": 0.5}})
    return tmp_path, model


def test_save_then_load_gives_identical_probabilities(saved_model_dir):
    model_dir, model = saved_model_dir
    assert sorted(os.listdir(model_dir)) == ["labels.json", "metrics.json", "model.keras"]
    loaded, metadata = training.load_artefacts(model_dir)
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
        training.save_artefacts(tmp_path, model, ["a", "b"], "multi_class", (8, 8))


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
        training.load_artefacts(model_dir)
    assert "labels.json" in str(error.value)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "labels.json").unlink(), "labels.json: file not found"),
        (lambda d: (d / "labels.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "labels.json").write_text("[1, 2]"), "must be a JSON object"),
        (lambda d: (d / "model.keras").unlink(), "model.keras: file not found"),
        (lambda d: (d / "model.keras").write_bytes(b"PK\x03\x04 nonsense"), "cannot load the model"),
    ],
)
def test_damaged_model_folders_raise_clear_errors(saved_model_dir, damage, message):
    model_dir, _ = saved_model_dir
    damage(model_dir)
    with pytest.raises(ValueError, match=message):
        training.load_artefacts(model_dir)


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="model folder not found"):
        training.load_artefacts(tmp_path / "nowhere")


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "labels.json"
    training.atomic_write_json(path, {"version": 1})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        training.atomic_write_json(path, {"version": 2})
    assert json.loads(path.read_text()) == {"version": 1}
    assert os.listdir(tmp_path) == ["labels.json"]  # no temporary file left behind


def test_update_thresholds_rewrites_labels_json(saved_model_dir):
    model_dir, _ = saved_model_dir
    training.update_thresholds(model_dir, [0.2, 0.3, 0.9])
    assert training.load_artefacts(model_dir)[1]["thresholds"] == [0.2, 0.3, 0.9]
    with pytest.raises(ValueError):
        training.update_thresholds(model_dir, [0.2, 0.3])


def test_custom_loss_model_loads_in_safe_mode(tmp_path):
    from helpers import imbalance

    model = models.build_mlp((8, 8, 3), 2, final_activation="sigmoid")
    training.compile_model(model, loss=imbalance.weighted_binary_crossentropy([2.0, 3.0]))
    training.save_artefacts(tmp_path, model, ["a", "b"], "multi_label", (8, 8))
    loaded, _ = training.load_artefacts(tmp_path, compile=True)
    assert loaded.loss.__class__.__name__ == "WeightedBinaryCrossentropy"


# ------------------------------------------------------------------------ train_from_source
@pytest.mark.slow
def test_train_from_source_writes_complete_artefacts(tmp_path):
    source = make_fashion_folders(tmp_path / "data")
    lines = []
    with pytest.warns(UserWarning, match="broken.jpg"):
        result = training.train_from_source(
            source, tmp_path / "run", layout="split-folders", model="mlp", epochs=2,
            image_size=16, batch_size=8, val_size=0.25, test_size=0.25, log=lines.append,
        )
    run = tmp_path / "run"
    for name in ("model.keras", "labels.json", "history.csv", "metrics.json", "splits.csv"):
        assert (run / name).is_file(), name
    assert not (run / "backup").exists()
    counts = result["counts"]
    assert counts == {"found": 33, "used": 32, "skipped": 1, "skipped_by_loader": 0, "unreadable": 1}
    assert counts["found"] == counts["used"] + counts["skipped"]
    assert any("1 skipped" in line for line in lines)
    assert sum(line.startswith("epoch ") for line in lines) == 2

    model, metadata = training.load_artefacts(run)
    assert metadata["classes"] == ["blue", "red", "shirt", "shoe"]
    assert metadata["task"] == "multi_label" and metadata["target_size"] == [16, 16]
    splits = training.read_splits(run)
    assert splits["split"].value_counts().to_dict() == {"train": 16, "val": 8, "test": 8}
    relative = pd.DataFrame({"filename": [os.path.relpath(p) for p in splits["absolute_path"]]})
    assert training.assign_splits(relative, run).tolist() == splits["split"].tolist()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["n_images"] == 8 and 0 <= metrics["test"]["f1_micro"] <= 1
    assert result["images_per_second"] > 0


@pytest.mark.slow
def test_train_from_source_multi_class_and_wrong_task(tmp_path):
    source = tmp_path / "animals"
    for index, name in enumerate(["cats", "dogs", "panda"]):
        (source / name).mkdir(parents=True)
        for k in range(6):
            colour = np.zeros((12, 12, 3), dtype=np.uint8)
            colour[..., index] = 200 + k
            Image.fromarray(colour).save(source / name / f"{k}.png")
    result = training.train_from_source(
        source, tmp_path / "run", layout="folders", model="mlp", task="auto", epochs=1,
        image_size=12, batch_size=6, val_size=0.2, test_size=0.2, log=None, augment=False,
    )
    assert result["metadata"]["task"] == "multi_class"
    assert result["model"].layers[-1].activation.__name__ == "softmax"

    fashion = make_fashion_folders(tmp_path / "fashion", per_folder=3, broken=False)
    with pytest.raises(ValueError, match="exactly one label per image"):
        training.train_from_source(fashion, tmp_path / "run2", layout="split-folders",
                                   task="multi_class", epochs=1, image_size=12, log=None)


TRAIN_SCRIPT = """
import sys
from helpers.training import train_from_source
train_from_source(sys.argv[1], sys.argv[2], layout="split-folders", model="mlp",
                  epochs=int(sys.argv[3]), image_size=16, batch_size=4, val_size=0.25,
                  test_size=0.25, patience=50, log=lambda line: print(line, flush=True))
"""


def _run_training(source, out_dir, epochs, kill_after_line=None, timeout=240):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(
        [sys.executable, "-c", TRAIN_SCRIPT, str(source), str(out_dir), str(epochs)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO_ROOT,
    )
    lines = []
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if kill_after_line and line.startswith(kill_after_line):
            process.send_signal(signal.SIGKILL)
            break
        if time.monotonic() > deadline:
            process.kill()
            break
    process.wait(timeout=30)
    process.stdout.close()
    return process.returncode, lines


@pytest.mark.slow
def test_sigkilled_training_resumes_and_ends_with_complete_artefacts(tmp_path):
    source = make_fashion_folders(tmp_path / "data", per_folder=6, broken=False)
    out_dir = tmp_path / "run"
    code, lines = _run_training(source, out_dir, epochs=4, kill_after_line="epoch 2/4")
    assert code == -signal.SIGKILL, lines
    assert not (out_dir / "labels.json").exists() and not (out_dir / "model.keras").exists()
    assert training.backup_epoch(out_dir) == 2  # a printed epoch line means a saved backup

    code, lines = _run_training(source, out_dir, epochs=4)
    assert code == 0, lines
    assert any(line.startswith("Resuming from epoch 3/4") for line in lines), lines
    assert [line.split(" - ")[0] for line in lines if line.startswith("epoch ")] == [
        "epoch 3/4", "epoch 4/4"
    ]
    model, metadata = training.load_artefacts(out_dir)
    assert metadata["classes"] == ["blue", "red", "shirt", "shoe"]
    assert training.read_history(out_dir).index.tolist() == [0, 1, 2, 3]
    assert not (out_dir / "backup").exists()
    assert not [name for name in os.listdir(out_dir) if name.startswith(".")]  # no temp files


def test_resuming_with_other_settings_is_refused(tmp_path):
    source = make_fashion_folders(tmp_path / "data", per_folder=2, broken=False)
    out_dir = tmp_path / "run"
    (out_dir / "backup").mkdir(parents=True)
    (out_dir / "backup" / "latest.weights.h5").write_bytes(b"")
    (out_dir / "backup" / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    training.atomic_write_json(out_dir / "run.json", {"model": "mlp", "image_size": [16, 16]})
    with pytest.raises(ValueError, match="interrupted run with other settings"):
        training.train_from_source(source, out_dir, layout="split-folders", model="smallvggnet",
                                   epochs=1, image_size=16, log=None)
