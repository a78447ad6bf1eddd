"""Compile a model for its task and train it with callbacks that measure what matters.

:func:`compile_model` pairs sigmoid outputs with binary cross-entropy (multi-label) or softmax
with categorical cross-entropy (multi-class); :func:`cosine_schedule` warms up, then decays to
zero; :func:`make_callbacks` gathers the callbacks of a run. ``task`` is ``"multi_label"`` or
``"multi_class"`` throughout; ``out_dir`` is the model folder of :mod:`helpers.artefacts`. The
whole train-and-save workflow is ``helpers.app.workflows.train_from_source``.
"""
import time
from pathlib import Path

import keras

from helpers import imbalance, warn
from helpers.artefacts import (BACKUP_DIR, CHECKPOINT_FILE, HISTORY_FILE, backup_epoch,
                               output_units, read_history)
from helpers.evaluation import DEFAULT_THRESHOLD, threshold_metrics
from helpers.labels import check_task
from helpers.predict import predict_dataset

_OPTIMIZERS = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
               "rmsprop": keras.optimizers.RMSprop, "adamw": keras.optimizers.AdamW}
_MIN_LEARNING_RATE = 1e-6  # ReduceLROnPlateau's floor


def make_loss(loss, task="multi_label", y_train=None, label_smoothing=0.0):
    """Turn a loss name into a Keras loss (objects pass through; None: the task's default).

    ``"bce"``, ``"weighted-bce"`` (positives weighted by negatives / positives per class of
    the multi-hot ``y_train``), ``"focal"``, ``"cce"`` or ``"sparse-cce"`` (integer labels).
    ``label_smoothing`` moves the targets of ``"bce"`` and ``"cce"`` towards 0.5 or uniform.
    """
    check_task(task)
    if loss is None:
        loss = "bce" if task == "multi_label" else "cce"
    if isinstance(label_smoothing, bool) or not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    name = loss.lower().replace("_", "-") if isinstance(loss, str) else None
    if label_smoothing and name not in ("bce", "binary-crossentropy", "cce",
                                        "categorical-crossentropy"):
        raise ValueError(f"label_smoothing applies to 'bce' and 'cce' only, not loss={loss!r}")
    if name is None:
        return loss
    if name in ("bce", "binary-crossentropy"):
        return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
    if name in ("cce", "categorical-crossentropy"):
        return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    if name in ("sparse-cce", "sparse-categorical-crossentropy"):
        return keras.losses.SparseCategoricalCrossentropy()
    if name == "focal":
        return imbalance.focal_loss()
    if name == "weighted-bce":
        if y_train is None:
            raise ValueError("loss='weighted-bce' needs y_train to compute the class weights")
        return imbalance.weighted_binary_crossentropy(imbalance.positive_weights(y_train))
    raise ValueError("loss must be None, a keras loss or one of 'bce', 'weighted-bce', 'focal', "
                     f"'cce', 'sparse-cce'; got {loss!r}")


def _make_optimizer(optimizer, learning_rate, weight_decay):
    """An optimizer from its name (instances pass through)."""
    if not isinstance(optimizer, str):
        return optimizer
    options = {} if weight_decay is None else {"weight_decay": float(weight_decay)}
    if optimizer.lower() not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {optimizer!r}")
    return _OPTIMIZERS[optimizer.lower()](learning_rate=learning_rate, **options)


def cosine_schedule(learning_rate, epochs, steps_per_epoch, warmup_epochs=1):
    """A linear warm-up from 0 to ``learning_rate``, then a cosine decay to 0 at the last step.

    The warm-up lets a fresh network (and its BatchNormalization statistics) settle; the decay
    takes ever smaller steps near a good model. ``steps_per_epoch`` is ``len(train_dataset)``;
    a warm-up over half the run is cut.
    """
    for name, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be 0 or more, got {warmup_epochs!r}")
    total = int(epochs) * int(steps_per_epoch)
    warmup = min(round(warmup_epochs * steps_per_epoch), total // 2)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else float(learning_rate), decay_steps=total - warmup,
        warmup_target=float(learning_rate) if warmup else None, warmup_steps=warmup)


def task_metrics(task, n_classes):
    """The Keras metrics worth watching for a task with ``n_classes`` outputs.

    Multi-label: ``BinaryAccuracy`` (Keras 3 maps ``"accuracy"`` to categorical accuracy for a
    multi-unit output), ROC-AUC and PR-AUC averaged over labels, and micro F1, precision and
    recall at 0.5. Multi-class: categorical accuracy and macro F1 of the argmax.
    """
    if check_task(task) == "multi_label":
        return [
            keras.metrics.BinaryAccuracy(name="binary_accuracy", threshold=DEFAULT_THRESHOLD),
            keras.metrics.AUC(name="auc", multi_label=True, num_labels=n_classes),
            keras.metrics.AUC(name="pr_auc", curve="PR", multi_label=True, num_labels=n_classes),
            keras.metrics.F1Score(name="f1", average="micro", threshold=DEFAULT_THRESHOLD),
            keras.metrics.Precision(name="precision", thresholds=DEFAULT_THRESHOLD),
            keras.metrics.Recall(name="recall", thresholds=DEFAULT_THRESHOLD),
        ]
    return [keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.F1Score(name="f1", average="macro")]


def compile_model(model, task="multi_label", loss=None, learning_rate=1e-3, optimizer="adam",
                  y_train=None, weight_decay=None, label_smoothing=0.0):
    """Compile ``model`` with the loss (:func:`make_loss`) and metrics (:func:`task_metrics`).

    ``optimizer``: ``"adam"``, ``"sgd"``, ``"rmsprop"``, ``"adamw"`` or an instance;
    ``learning_rate``: a number or a schedule (:func:`cosine_schedule`); ``weight_decay``:
    each step shrinks the weights by ``learning_rate * weight_decay`` (None: the default).
    """
    n_classes = output_units(model)
    check_task(task)
    if isinstance(loss, str):
        categorical = "cce" in loss.replace("_", "-") or "categorical" in loss
        if task == "multi_label" and categorical:
            raise ValueError(f"loss {loss!r} is for multi_class; multi_label needs a binary loss")
        if task == "multi_class" and not categorical:
            raise ValueError(f"loss {loss!r} is a binary loss for multi_label; multi_class "
                             "needs 'cce' or 'sparse-cce' (or loss=None)")
    model.compile(optimizer=_make_optimizer(optimizer, learning_rate, weight_decay),
                  loss=make_loss(loss, task, y_train, label_smoothing),
                  metrics=task_metrics(task, n_classes))
    return model


class MetricsCallback(keras.callbacks.Callback):
    """Compute precision, recall and F1 over the whole validation set at each epoch end.

    The values go into ``logs`` (``{prefix}f1_micro``...): put it FIRST so that the callbacks
    after it see them. ``validation_data``: a ``tf.data.Dataset`` or an (images, labels) pair.
    """

    def __init__(self, validation_data, threshold=DEFAULT_THRESHOLD, task="multi_label",
                 prefix="val_", verbose=False):
        super().__init__()
        check_task(task)
        self.validation_data = validation_data
        self.threshold = threshold
        self.task = task
        self.prefix = prefix
        self.verbose = verbose

    def on_epoch_end(self, epoch, logs=None):
        y_true, y_prob = predict_dataset(self.model, self.validation_data)
        values = threshold_metrics(y_true, y_prob, self.task, self.threshold, self.prefix)
        if logs is not None:
            logs.update(values)
        if self.verbose:
            print(" - ".join(f"{key}: {value:.5f}" for key, value in values.items()))


class LearningRateLogger(keras.callbacks.Callback):
    """Put the optimizer's learning rate at each epoch end into the logs (``learning_rate``).

    ``ReduceLROnPlateau`` logs it too but refuses an optimizer that follows a schedule; this
    one only reads it, so ``history.csv`` has the rate either way. Put it before ``CSVLogger``.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class EpochLogger(keras.callbacks.Callback):
    """Print one plain line per epoch, with the training images per second given ``n_images``."""


    DEFAULT_KEYS = ("loss", "val_loss", "f1", "val_f1_micro", "val_f1_macro", "val_auc",
                    "val_accuracy", "learning_rate")

    def __init__(self, log=print, n_images=None, keys=None):
        super().__init__()
        self.log = log
        self.n_images = n_images
        self.keys = tuple(keys) if keys else self.DEFAULT_KEYS
        self.last_images_per_second = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._train_seconds = None

    def on_test_begin(self, logs=None):
        # fit() validates after the training steps: the time so far is training only.
        if getattr(self, "_train_seconds", 0) is None:
            self._train_seconds = time.perf_counter() - self._start

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.perf_counter() - getattr(self, "_start", time.perf_counter())
        train_seconds = getattr(self, "_train_seconds", None) or seconds
        parts = [f"epoch {epoch + 1}/{self.params.get('epochs', '?')}", f"{seconds:.1f}s"]
        if self.n_images and train_seconds > 0:
            self.last_images_per_second = self.n_images / train_seconds
            parts.append(f"train {self.last_images_per_second:.0f} img/s")
        for key in self.keys:
            if key in logs:
                value = float(logs[key])
                shown = f"{value:.2e}" if key == "learning_rate" else f"{value:.4f}"
                parts.append(f"{key} {shown}")
        self.log(" - ".join(parts))


def make_callbacks(out_dir, monitor="val_f1_micro", patience=10, validation_data=None,
                   task="multi_label", reduce_lr=True, log=print, n_images=None, backup=True):
    """The training callbacks, in the order that makes them see each other's values.

    :class:`MetricsCallback` (only with ``validation_data``, which a ``val_f1_*`` ``monitor``
    needs) → ModelCheckpoint (best weights; ``monitor`` is minimised if it ends in ``loss``)
    → EarlyStopping (``restore_best_weights``) → ReduceLROnPlateau (halves the rate after
    ``patience // 2`` epochs) or, with ``reduce_lr=False`` for a schedule,
    :class:`LearningRateLogger` → CSVLogger → BackupAndRestore (with ``backup``; after the CSV
    row, so a kill can at worst repeat an epoch; a resumed run's checkpoint must beat its best
    so far) → :class:`EpochLogger` (``log`` and ``n_images``; none when ``log`` is None).
    """
    mode = "min" if monitor.endswith("loss") else "max"
    if monitor.startswith(("val_f1_", "val_precision_", "val_recall_")) and validation_data is None:
        raise ValueError(f"monitor={monitor!r} needs validation_data (for MetricsCallback)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    history = read_history(out_dir) if backup and backup_epoch(out_dir) else {}
    best = None  # of the epochs an interrupted run finished
    if monitor in history and history[monitor].notna().any():
        best = float(history[monitor].max() if mode == "max" else history[monitor].min())
    callbacks = [] if validation_data is None else [MetricsCallback(validation_data, task=task)]
    callbacks += [
        keras.callbacks.ModelCheckpoint(
            str(out_dir / CHECKPOINT_FILE), monitor=monitor, mode=mode, save_best_only=True,
            save_weights_only=True, initial_value_threshold=best),
        keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience,
                                      restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode=mode, factor=0.5,
                                          patience=max(1, patience // 2), min_lr=_MIN_LEARNING_RATE)

        if reduce_lr else LearningRateLogger(),
        keras.callbacks.CSVLogger(str(out_dir / HISTORY_FILE), append=backup),
    ]
    if backup:
        callbacks.append(keras.callbacks.BackupAndRestore(
            str(out_dir / BACKUP_DIR), double_checkpoint=True, delete_checkpoint=False))
    if log is not None:
        callbacks.append(EpochLogger(log=log, n_images=n_images))
    return callbacks


def restore_best(model, out_dir):
    """Load ``out_dir``'s best checkpoint (it spans resumed runs, unlike EarlyStopping's memory)."""
    path = Path(out_dir) / CHECKPOINT_FILE
    if path.is_file():
        try:
            model.load_weights(path)
        except Exception as error:  # a checkpoint cut by a kill: keep the current weights
            warn(f"{path}: not restored ({error})")
