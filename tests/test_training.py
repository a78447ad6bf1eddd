"""Tests for helpers.training: compile for the task, callbacks, resuming a fit."""
import keras
import numpy as np
import pandas as pd
import pytest
from _factories import compiled_mlp, tiny_arrays
from sklearn.metrics import f1_score

from helpers import models, training


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


# ---------------------------------------------------------------------------- artefacts


# ------------------------------------------------------------------------ train_from_source


