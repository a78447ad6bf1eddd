"""Tests for helpers.training: compile for the task, callbacks, resuming a fit."""
import keras
import numpy as np
import pandas as pd
import pytest
from _factories import compiled_mlp, tiny_arrays
from sklearn.metrics import f1_score

from helpers import artefacts, models, predict, training


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
        ({"loss": "focal", "label_smoothing": 0.1}, "label_smoothing applies to"),
        ({"label_smoothing": 1.0}, "label_smoothing must be"),
    ],
)
def test_compile_model_rejects_bad_arguments(kwargs, message):
    model = models.build_mlp((8, 8, 3), 2, final_activation="sigmoid")
    with pytest.raises(ValueError, match=message):
        training.compile_model(model, **kwargs)


@pytest.mark.parametrize("task, loss_type", [
    ("multi_label", keras.losses.BinaryCrossentropy),
    ("multi_class", keras.losses.CategoricalCrossentropy),
])
def test_label_smoothing_and_weight_decay_reach_the_compiled_model(task, loss_type):
    model = models.build_mlp((8, 8, 3), 3, final_activation="sigmoid")
    training.compile_model(model, task=task, optimizer="adamw", weight_decay=0.02,
                           label_smoothing=0.1)
    assert isinstance(model.loss, loss_type) and model.loss.label_smoothing == 0.1
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    assert model.optimizer.weight_decay == pytest.approx(0.02)


def _rates(schedule, steps):
    return np.array([float(schedule(step)) for step in steps])


@pytest.mark.parametrize("epochs, steps_per_epoch, warmup_epochs", [(12, 24, 1), (5, 3, 2), (3, 7, 0)])
def test_cosine_schedule_warms_up_peaks_and_decays_to_zero(epochs, steps_per_epoch, warmup_epochs):
    schedule = training.cosine_schedule(3e-3, epochs, steps_per_epoch, warmup_epochs)
    total = epochs * steps_per_epoch
    warmup = min(warmup_epochs * steps_per_epoch, total // 2)
    rates = _rates(schedule, range(total + 1))
    assert rates.max() == pytest.approx(3e-3)
    assert int(rates.argmax()) == warmup  # the peak ends the warm-up
    assert np.all(np.diff(rates[: warmup + 1]) > 0) and np.all(np.diff(rates[warmup:]) < 0)
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert rates[0] == pytest.approx(0.0 if warmup else 3e-3)


def test_a_warm_up_longer_than_half_the_run_is_cut_to_half():
    rates = _rates(training.cosine_schedule(1e-3, 2, 10, warmup_epochs=5), range(21))
    assert int(rates.argmax()) == 10


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be"),
    ({"epochs": 2.5}, "epochs must be"),
    ({"steps_per_epoch": 0}, "steps_per_epoch must be"),
    ({"warmup_epochs": -1}, "warmup_epochs must be"),
])
def test_cosine_schedule_rejects_bad_arguments(kwargs, message):
    arguments = dict(learning_rate=1e-3, epochs=4, steps_per_epoch=5) | kwargs
    with pytest.raises(ValueError, match=message):
        training.cosine_schedule(**arguments)


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

    _, y_prob = predict.predict_dataset(model, (images[:16], labels[:16]))
    last_epoch_f1 = f1_score(labels[:16], y_prob >= 0.5, average="micro", zero_division=0)
    assert history.history["val_f1_micro"][-1] == pytest.approx(last_epoch_f1, abs=1e-6)
    csv = pd.read_csv(tmp_path / artefacts.HISTORY_FILE)
    for key in ("val_f1_micro", "val_f1_macro", "val_f1_weighted", "val_precision_micro",
                "val_recall_weighted", "learning_rate"):
        assert key in csv.columns
    assert csv["epoch"].tolist() == [0, 1]
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2") and "val_f1_micro" in lines[0]
    assert "img/s" in lines[0]


def test_a_schedule_is_logged_per_epoch_not_reduced_on_plateau(tmp_path):
    images, labels = tiny_arrays(32, size=8)
    validation = (images[:8], labels[:8])
    keras.utils.set_random_seed(0)
    model = models.build_mlp((8, 8, 3), 3, final_activation="sigmoid")
    schedule = training.cosine_schedule(1e-3, epochs=4, steps_per_epoch=3, warmup_epochs=1)
    training.compile_model(model, learning_rate=schedule)
    # patience 1: ReduceLROnPlateau would try to set the rate, which Keras refuses for a schedule
    callbacks = training.make_callbacks(tmp_path, validation_data=validation, patience=1,
                                        reduce_lr=False, log=None, backup=False)
    names = [type(callback).__name__ for callback in callbacks]
    assert "ReduceLROnPlateau" not in names
    assert names.index("LearningRateLogger") < names.index("CSVLogger")
    model.fit(images[8:], labels[8:], validation_data=validation, epochs=4, batch_size=8,
              callbacks=callbacks, verbose=0)
    logged = artefacts.read_history(tmp_path)["learning_rate"].to_numpy()
    np.testing.assert_allclose(logged, _rates(schedule, [3, 6, 9, 12]), rtol=1e-5, atol=1e-12)
    assert logged[0] == pytest.approx(1e-3) and logged[-1] == pytest.approx(0.0, abs=1e-12)


def test_monitoring_f1_needs_validation_data(tmp_path):
    with pytest.raises(ValueError, match="needs validation_data"):
        training.make_callbacks(tmp_path, monitor="val_f1_micro")


@pytest.mark.parametrize("monitor, mode", [("val_loss", "min"), ("loss", "min"),
                                           ("val_f1_micro", "max"), ("val_pr_auc", "max")])
def test_the_direction_of_the_monitored_value_follows_its_name(tmp_path, monitor, mode):
    callbacks = training.make_callbacks(tmp_path, monitor=monitor, validation_data=([], []),
                                        log=None, backup=False)
    kinds = (keras.callbacks.ModelCheckpoint, keras.callbacks.EarlyStopping,
             keras.callbacks.ReduceLROnPlateau)
    watchers = [callback for callback in callbacks if isinstance(callback, kinds)]
    assert len(watchers) == 3 and {callback.mode for callback in watchers} == {mode}
    assert all(callback.best is None for callback in watchers)  # a fresh run


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
    assert artefacts.backup_epoch(tmp_path) == 2
    weights_after_two_epochs = first.get_weights()

    second = compiled_mlp(seed=2)  # different random start
    recorder = Recorder()
    callbacks = training.make_callbacks(tmp_path, validation_data=validation, log=None)
    # The resumed run's checkpoint must beat the best epoch before the interruption.
    checkpoint = next(callback for callback in callbacks
                      if isinstance(callback, keras.callbacks.ModelCheckpoint))
    best_so_far = artefacts.read_history(tmp_path)["val_f1_micro"].max()
    assert checkpoint.best == pytest.approx(best_so_far)

    second.fit(images[8:], labels[8:], validation_data=validation, epochs=4, batch_size=8,
               callbacks=callbacks + [recorder], verbose=0)
    assert recorder.epochs == [2, 3]
    for restored, saved in zip(recorder.weights_at_start, weights_after_two_epochs):
        np.testing.assert_array_equal(restored, saved)
    assert artefacts.read_history(tmp_path).index.tolist() == [0, 1, 2, 3]


# ---------------------------------------------------------------------------- artefacts


# ------------------------------------------------------------------------ train_from_source


