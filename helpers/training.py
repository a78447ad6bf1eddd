"""Compile a model for its task and train it with callbacks that measure what matters.

- ``compile_model``: sigmoid outputs + binary cross-entropy (multi-label) or softmax +
  categorical cross-entropy (multi-class), with the metrics worth watching for each;
- ``cosine_schedule``: a linear warm-up, then a cosine decay to zero at the last epoch
  (Keras' ``CosineDecay``), the learning rate of the default recipe;
- ``make_callbacks``: scikit-learn F1 per epoch (``MetricsCallback``), best-model checkpoint,
  early stopping, learning rate halved on plateaus or logged from a schedule,
  ``history.csv``, backup for resuming, one log line per epoch (``EpochLogger``).

The model folder these runs write is described in :mod:`helpers.artefacts`; the whole
train-and-save workflow is ``helpers.app.workflows.train_from_source``.
"""
import time
from pathlib import Path

import keras

from helpers import imbalance, warn
from helpers.artefacts import BACKUP_DIR, CHECKPOINT_FILE, HISTORY_FILE, output_units
from helpers.evaluation import threshold_metrics
from helpers.labels import check_task
from helpers.predict import predict_dataset


# ------------------------------------------------------------------------------ compile
def make_loss(loss, task="multi_label", y_train=None, label_smoothing=0.0):
    """Turn a loss name into a Keras loss (objects pass through).

    Parameters
    ----------
    loss : None, str or keras.losses.Loss
        ``None`` (the task's default), ``"bce"``, ``"weighted-bce"`` (positives weighted by
        negatives / positives per class, needs ``y_train``), ``"focal"`` (binary focal
        cross-entropy), ``"cce"`` (categorical) or ``"sparse-cce"`` (integer labels).
    task : str
        ``"multi_label"`` or ``"multi_class"``.
    y_train : array-like (n, n_classes), optional
        Multi-hot training labels, for ``"weighted-bce"``.
    label_smoothing : float
        Targets move this far towards 0.5 (binary) or towards uniform (categorical):
        ``"bce"`` and ``"cce"`` only.

    Returns
    -------
    keras.losses.Loss
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
    if name in ("weighted-bce", "focal"):
        if name == "focal":
            return imbalance.focal_loss()
        if y_train is None:
            raise ValueError("loss='weighted-bce' needs y_train to compute the class weights")
        return imbalance.weighted_binary_crossentropy(imbalance.positive_weights(y_train))
    raise ValueError(
        "loss must be None, a keras loss or one of 'bce', 'weighted-bce', 'focal', 'cce', "
        f"'sparse-cce'; got {loss!r}"
    )


def make_optimizer(optimizer="adam", learning_rate=1e-3, weight_decay=None):
    """Build an optimizer by name (``"adam"``, ``"sgd"``, ``"rmsprop"``, ``"adamw"``); instances pass through.

    Parameters
    ----------
    optimizer : str or keras.optimizers.Optimizer
    learning_rate : float or keras.optimizers.schedules.LearningRateSchedule
        A schedule (e.g. ``cosine_schedule``) sets the rate of every step.
    weight_decay : float, optional
        Decoupled weight decay (each step shrinks the weights by ``learning_rate *
        weight_decay`` of themselves); None keeps the optimizer's default (0, or 0.004
        for AdamW).

    Returns
    -------
    keras.optimizers.Optimizer
    """
    if not isinstance(optimizer, str):
        return optimizer
    options = {} if weight_decay is None else {"weight_decay": float(weight_decay)}
    builders = {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
        "adamw": keras.optimizers.AdamW,
    }
    if optimizer.lower() not in builders:
        raise ValueError(f"optimizer must be one of {sorted(builders)}, got {optimizer!r}")
    return builders[optimizer.lower()](learning_rate=learning_rate, **options)


def cosine_schedule(learning_rate, epochs, steps_per_epoch, warmup_epochs=1):
    """A linear warm-up from 0 to ``learning_rate``, then a cosine decay to 0 at the last step.

    The warm-up lets a freshly initialised network (and its BatchNormalization statistics)
    settle before the full rate; the decay takes large steps while far from a good model
    and ever smaller ones near it, so the last epochs refine instead of jumping about.
    The whole curve is fixed by ``epochs``: the run ends at rate 0, ready or not, so pick
    ``epochs`` for the budget and let early stopping end runs that stop improving.

    Parameters
    ----------
    learning_rate : float
        Peak rate, reached at the end of the warm-up.
    epochs : int
        Epochs the schedule spans (the ``epochs`` of ``fit``).
    steps_per_epoch : int
        Batches per epoch (``len(train_dataset)``).
    warmup_epochs : float
        Length of the warm-up; it is cut to half the run when that is shorter.

    Returns
    -------
    keras.optimizers.schedules.CosineDecay
    """
    if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(steps_per_epoch, bool) or int(steps_per_epoch) != steps_per_epoch \
            or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be 0 or more, got {warmup_epochs!r}")
    total = int(epochs) * int(steps_per_epoch)
    warmup = min(round(warmup_epochs * steps_per_epoch), total // 2)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else float(learning_rate),
        decay_steps=total - warmup,
        warmup_target=float(learning_rate) if warmup else None,
        warmup_steps=warmup,
    )


def task_metrics(task, n_classes, threshold=0.5):
    """The Keras metrics worth watching for a task.

    Multi-label: ``BinaryAccuracy`` (not ``"accuracy"``, which Keras 3 maps to categorical
    accuracy for a multi-unit output), ROC-AUC and PR-AUC averaged over labels, and F1,
    precision, recall at ``threshold`` over all label decisions (micro). Multi-class:
    categorical accuracy and macro F1 of the argmax.

    Parameters
    ----------
    task : str
        ``"multi_label"`` or ``"multi_class"``.
    n_classes : int
        Number of outputs.
    threshold : float
        Decision threshold of the thresholded multi-label metrics.

    Returns
    -------
    list of keras.metrics.Metric
    """
    check_task(task)
    if task == "multi_label":
        return [
            keras.metrics.BinaryAccuracy(name="binary_accuracy", threshold=threshold),
            keras.metrics.AUC(name="auc", multi_label=True, num_labels=n_classes),
            keras.metrics.AUC(name="pr_auc", curve="PR", multi_label=True, num_labels=n_classes),
            keras.metrics.F1Score(name="f1", average="micro", threshold=threshold),
            keras.metrics.Precision(name="precision", thresholds=threshold),
            keras.metrics.Recall(name="recall", thresholds=threshold),
        ]
    return [
        keras.metrics.CategoricalAccuracy(name="accuracy"),
        keras.metrics.F1Score(name="f1", average="macro"),
    ]


def compile_model(
    model, task="multi_label", loss=None, learning_rate=1e-3, optimizer="adam",
    threshold=0.5, y_train=None, weight_decay=None, label_smoothing=0.0,
):
    """Compile ``model`` with the loss and metrics that fit the task.

    Multi-label: sigmoid outputs + binary cross-entropy (each label is its own yes/no).
    Multi-class: softmax outputs + categorical cross-entropy (exactly one label).

    Parameters
    ----------
    model : keras.Model
    task : str
        ``"multi_label"`` or ``"multi_class"``.
    loss : None, str or keras.losses.Loss
        See ``make_loss``; ``None`` picks binary or categorical cross-entropy.
    learning_rate : float or keras.optimizers.schedules.LearningRateSchedule
        Used when ``optimizer`` is a name; see ``cosine_schedule``.
    optimizer : str or keras.optimizers.Optimizer
        ``"adam"`` (default), ``"sgd"``, ``"rmsprop"``, ``"adamw"`` or an instance.
    threshold : float
        Decision threshold of the multi-label metrics.
    y_train : array-like, optional
        Training labels, needed by ``loss="weighted-bce"``.
    weight_decay : float, optional
        See ``make_optimizer``.
    label_smoothing : float
        See ``make_loss``.

    Returns
    -------
    The same model, compiled.
    """
    n_classes = output_units(model)
    check_task(task)
    if isinstance(loss, str):
        categorical = "cce" in loss.replace("_", "-") or "categorical" in loss
        if task == "multi_label" and categorical:
            raise ValueError(f"loss {loss!r} is for multi_class; multi_label needs a binary loss")
        if task == "multi_class" and not categorical:
            raise ValueError(
                f"loss {loss!r} is a binary loss for multi_label; multi_class needs 'cce' or "
                "'sparse-cce' (or loss=None)"
            )
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate, weight_decay),
        loss=make_loss(loss, task, y_train, label_smoothing),
        metrics=task_metrics(task, n_classes, threshold),
    )
    return model


# ---------------------------------------------------------------------------- callbacks
class MetricsCallback(keras.callbacks.Callback):
    """Compute precision, recall and F1 over the whole validation set at each epoch end.

    The values go into ``logs`` (``val_f1_micro``, ``val_precision_macro``...), so the
    callbacks after this one (History, CSVLogger, ModelCheckpoint, EarlyStopping) see them:
    put it FIRST in the callback list.

    Parameters
    ----------
    validation_data : tf.data.Dataset of (images, labels), or (images, labels) arrays
    threshold : float or array-like (n_classes,)
        Decision threshold (multi-label).
    task : str
        ``"multi_label"`` (thresholds) or ``"multi_class"`` (argmax).
    prefix : str
        Prefix of the log keys.
    verbose : bool
        Print the values, like ``val_f1_micro: 0.28155 - val_precision_micro: ...``.
    """

    def __init__(self, validation_data, threshold=0.5, task="multi_label", prefix="val_",
                 verbose=False):
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
    """Put the optimizer's learning rate at the end of each epoch into the logs (``learning_rate``).

    ``ReduceLROnPlateau`` logs it too, but cannot be used with a ``LearningRateSchedule``
    (Keras refuses to set the rate of an optimizer that follows one); this callback only
    reads it, so ``history.csv`` has the rate of every epoch either way. Put it before
    ``CSVLogger``.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class EpochLogger(keras.callbacks.Callback):
    """Print one plain line per epoch (readable in a log file, unlike a progress bar).

    Parameters
    ----------
    log : callable
        Receives each line (``print`` by default).
    n_images : int, optional
        Training images per epoch, to report the training throughput in images per second
        (training steps only: validation and callbacks are left out).
    keys : list of str, optional
        Log keys to show; default: loss, the F1s, AUC and the learning rate.
    """

    DEFAULT_KEYS = (
        "loss", "val_loss", "f1", "val_f1_micro", "val_f1_macro", "val_auc",
        "val_accuracy", "learning_rate",
    )

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


def make_callbacks(
    out_dir, monitor="val_f1_micro", mode="max", patience=10, validation_data=None,
    threshold=0.5, task="multi_label", reduce_lr=True, reduce_lr_patience=None, min_lr=1e-6,
    log=print, n_images=None, backup=True, initial_best=None,
):
    """The training callbacks, in the order that makes them see each other's values.

    Order: MetricsCallback (adds ``val_f1_*`` to the logs) → ModelCheckpoint (best weights)
    → EarlyStopping (``restore_best_weights=True``) → ReduceLROnPlateau or
    LearningRateLogger (adds ``learning_rate``) → CSVLogger (``history.csv``; appended with
    ``backup=True``, so a resumed run continues it)
    → BackupAndRestore (``backup/``, after the CSV row so a kill can at worst repeat an
    epoch, never lose one) → EpochLogger (a printed epoch is a resumable epoch).

    Parameters
    ----------
    out_dir : str or Path
        Artefact folder.
    monitor : str
        Value to watch; ``val_f1_*`` needs ``validation_data``.
    mode : str
        ``"max"`` or ``"min"``.
    patience : int
        EarlyStopping patience (epochs without improvement).
    validation_data : tf.data.Dataset or (x, y), optional
        Enables MetricsCallback.
    threshold : float or array-like
        MetricsCallback decision threshold.
    task : str
        ``"multi_label"`` or ``"multi_class"``.
    reduce_lr : bool
        Halve the learning rate when ``monitor`` stops improving (ReduceLROnPlateau). Pass
        False when the optimizer follows a schedule (``cosine_schedule``): the rate is then
        only logged (LearningRateLogger).
    reduce_lr_patience : int, optional
        ReduceLROnPlateau patience; default ``max(1, patience // 2)``; the rate is halved each time.
    min_lr : float
        Lower bound of the learning rate (ReduceLROnPlateau).
    log : callable or None
        Where EpochLogger prints; None = no EpochLogger.
    n_images : int, optional
        Training images per epoch (throughput in the log line).
    backup : bool
        Add BackupAndRestore so a rerun after an interruption resumes.
    initial_best : float, optional
        Best monitored value so far (when resuming), so the checkpoint only keeps better ones.

    Returns
    -------
    list of keras.callbacks.Callback
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    needs_metrics = monitor.startswith(("val_f1_", "val_precision_", "val_recall_"))
    if needs_metrics and validation_data is None:
        raise ValueError(f"monitor={monitor!r} needs validation_data (for MetricsCallback)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    callbacks = []
    if validation_data is not None:
        callbacks.append(MetricsCallback(validation_data, threshold=threshold, task=task))
    callbacks += [
        keras.callbacks.ModelCheckpoint(
            str(out_dir / CHECKPOINT_FILE), monitor=monitor, mode=mode, save_best_only=True,
            save_weights_only=True, initial_value_threshold=initial_best,
        ),
        keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode=mode, factor=0.5,
            patience=reduce_lr_patience or max(1, patience // 2), min_lr=min_lr,
        ) if reduce_lr else LearningRateLogger(),
        # A run that can be resumed continues its history.csv; any other starts a new one.
        keras.callbacks.CSVLogger(str(out_dir / HISTORY_FILE), append=backup),
    ]
    if backup:
        callbacks.append(
            keras.callbacks.BackupAndRestore(
                str(out_dir / BACKUP_DIR), double_checkpoint=True, delete_checkpoint=False
            )
        )
    if log is not None:
        callbacks.append(EpochLogger(log=log, n_images=n_images))
    return callbacks


def restore_best(model, out_dir):
    """Load the best checkpoint of ``out_dir`` (it spans resumed runs, unlike EarlyStopping's memory).

    Parameters
    ----------
    model : keras.Model
    out_dir : str or Path
        The folder ``make_callbacks`` checkpointed into.
    """
    path = Path(out_dir) / CHECKPOINT_FILE
    if path.is_file():
        try:
            model.load_weights(path)
        except Exception as error:  # a checkpoint cut by a kill: keep the current weights
            warn(f"{path}: not restored ({error})")


