"""Compile, train, save and load models: losses and metrics per task, callbacks, artefacts.

An artefact folder holds everything needed to use a trained model later, and nothing that
needs pickle:

- ``model.keras``: the model (loaded with ``keras.models.load_model(..., safe_mode=True)``),
- ``labels.json``: class names, task, input size, preprocessing, decision thresholds,
- ``history.csv``: one row per epoch (written by ``keras.callbacks.CSVLogger``),
- ``metrics.json``: final validation/test metrics,
- ``splits.csv``: which image went to train / val / test (so evaluation reuses the test split).

Files are written atomically (a temporary file in the same folder, then ``os.replace``): after
a crash there is the old file or the new one, never half of one.
"""
import contextlib
import datetime
import json
import os
import shutil
import time
import uuid
import warnings
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support

TASKS = ("multi_label", "multi_class")
MODEL_FILE = "model.keras"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
SPLITS_FILE = "splits.csv"
RUN_FILE = "run.json"
BACKUP_DIR = "backup"
CHECKPOINT_FILE = "checkpoint.weights.h5"
AVERAGES = ("micro", "macro", "weighted")
# ImageDataGenerator-style augmentation of SOURCES B and D, for `augment=True`.
DEFAULT_AUGMENT = {
    "rotation_range": 25,
    "width_shift_range": 0.1,
    "height_shift_range": 0.1,
    "shear_range": 0.2,
    "zoom_range": 0.2,
    "horizontal_flip": True,
    "fill_mode": "nearest",
}


def _check_task(task):
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def _output_units(model):
    shape = model.output_shape
    if isinstance(shape, list):
        raise ValueError(f"model {model.name!r} has several outputs; expected one")
    return int(shape[-1])


@contextlib.contextmanager
def quiet_upstream_warnings():
    """Silence two harmless warnings raised inside Keras/TensorFlow during fit and predict.

    - "Your input ran out of data": the pipeline filters unreadable files, so Keras cannot
      know the dataset's length and says so at every epoch end.
    - "__array__ implementation doesn't accept a copy keyword": TensorFlow tensors and
      NumPy 2 disagree on a keyword; the values are right.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept")
        yield


# ------------------------------------------------------------------------------ compile
def make_loss(loss, task="multi_label", y_train=None):
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

    Returns
    -------
    keras.losses.Loss
    """
    _check_task(task)
    if loss is None:
        loss = "bce" if task == "multi_label" else "cce"
    if not isinstance(loss, str):
        return loss
    name = loss.lower().replace("_", "-")
    if name in ("bce", "binary-crossentropy"):
        return keras.losses.BinaryCrossentropy()
    if name in ("cce", "categorical-crossentropy"):
        return keras.losses.CategoricalCrossentropy()
    if name in ("sparse-cce", "sparse-categorical-crossentropy"):
        return keras.losses.SparseCategoricalCrossentropy()
    if name in ("weighted-bce", "focal"):
        from helpers import imbalance

        if name == "focal":
            return imbalance.focal_loss()
        if y_train is None:
            raise ValueError("loss='weighted-bce' needs y_train to compute the class weights")
        return imbalance.weighted_binary_crossentropy(imbalance.positive_weights(y_train))
    raise ValueError(
        "loss must be None, a keras loss or one of 'bce', 'weighted-bce', 'focal', 'cce', "
        f"'sparse-cce'; got {loss!r}"
    )


def make_optimizer(optimizer="adam", learning_rate=1e-3):
    """Build an optimizer by name (``"adam"``, ``"sgd"``, ``"rmsprop"``); instances pass through.

    Parameters
    ----------
    optimizer : str or keras.optimizers.Optimizer
    learning_rate : float

    Returns
    -------
    keras.optimizers.Optimizer
    """
    if not isinstance(optimizer, str):
        return optimizer
    builders = {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
        "adamw": keras.optimizers.AdamW,
    }
    if optimizer.lower() not in builders:
        raise ValueError(f"optimizer must be one of {sorted(builders)}, got {optimizer!r}")
    return builders[optimizer.lower()](learning_rate=learning_rate)


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
    _check_task(task)
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
    threshold=0.5, y_train=None,
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
    learning_rate : float
        Used when ``optimizer`` is a name.
    optimizer : str or keras.optimizers.Optimizer
        ``"adam"`` (default), ``"sgd"``, ``"rmsprop"``, ``"adamw"`` or an instance.
    threshold : float
        Decision threshold of the multi-label metrics.
    y_train : array-like, optional
        Training labels, needed by ``loss="weighted-bce"``.

    Returns
    -------
    The same model, compiled.
    """
    n_classes = _output_units(model)
    _check_task(task)
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
        optimizer=make_optimizer(optimizer, learning_rate),
        loss=make_loss(loss, task, y_train),
        metrics=task_metrics(task, n_classes, threshold),
    )
    return model


# ---------------------------------------------------------------------------- callbacks
def predict_dataset(model, data):
    """Predict a whole labelled dataset, keeping labels aligned with predictions.

    Parameters
    ----------
    model : keras.Model
    data : tf.data.Dataset of (images, labels) or a tuple (images, labels) of arrays

    Returns
    -------
    (y_true, y_prob): numpy arrays.
    """
    if isinstance(data, (tuple, list)):
        images, labels = data[0], data[1]
        return np.asarray(labels), np.asarray(model.predict(images, verbose=0))
    truths, probabilities = [], []
    for batch in data:
        truths.append(np.asarray(batch[1]))
        probabilities.append(np.asarray(model.predict_on_batch(batch[0])))
    if not truths:
        raise ValueError("the validation dataset is empty")
    return np.concatenate(truths), np.concatenate(probabilities)


def decide(y_prob, task="multi_label", threshold=0.5):
    """Turn probabilities into 0/1 decisions: thresholds (multi-label) or argmax (multi-class).

    Parameters
    ----------
    y_prob : array-like (n, n_classes)
    task : str
    threshold : float or array-like (n_classes,)

    Returns
    -------
    numpy array of int, shape (n, n_classes)
    """
    y_prob = np.asarray(y_prob)
    if task == "multi_class":
        decisions = np.zeros_like(y_prob, dtype=int)
        decisions[np.arange(len(y_prob)), y_prob.argmax(axis=1)] = 1
        return decisions
    return (y_prob >= np.asarray(threshold, dtype=float)).astype(int)


def _as_multi_hot(y_true, n_classes):
    y_true = np.asarray(y_true)
    if y_true.ndim == 1 or (y_true.ndim == 2 and y_true.shape[1] == 1 and n_classes > 1):
        return np.eye(n_classes, dtype=int)[y_true.reshape(-1).astype(int)]
    return (y_true >= 0.5).astype(int)


def threshold_metrics(y_true, y_prob, task="multi_label", threshold=0.5, prefix=""):
    """Precision, recall and F1 (micro, macro, weighted) with scikit-learn.

    Parameters
    ----------
    y_true : array-like (n, n_classes) multi-hot, or (n,) class indices
    y_prob : array-like (n, n_classes)
    task : str
    threshold : float or array-like (n_classes,)
    prefix : str
        Put in front of every key, e.g. ``"val_"``.

    Returns
    -------
    dict like ``{"val_f1_micro": 0.91, "val_precision_micro": ..., ...}``
    """
    y_prob = np.asarray(y_prob)
    truth = _as_multi_hot(y_true, y_prob.shape[1])
    decisions = decide(y_prob, task, threshold)
    values = {}
    for average in AVERAGES:
        precision, recall, f1, _ = precision_recall_fscore_support(
            truth, decisions, average=average, zero_division=0
        )
        values[f"{prefix}f1_{average}"] = float(f1)
        values[f"{prefix}precision_{average}"] = float(precision)
        values[f"{prefix}recall_{average}"] = float(recall)
    return values


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
        _check_task(task)
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
    threshold=0.5, task="multi_label", reduce_lr_patience=None, min_lr=1e-6, log=print,
    n_images=None, backup=True, initial_best=None,
):
    """The training callbacks, in the order that makes them see each other's values.

    Order: MetricsCallback (adds ``val_f1_*`` to the logs) → ModelCheckpoint (best weights)
    → EarlyStopping (``restore_best_weights=True``) → ReduceLROnPlateau (adds
    ``learning_rate``) → CSVLogger (``history.csv``, appended so a resumed run continues it)
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
    reduce_lr_patience : int, optional
        ReduceLROnPlateau patience; default ``max(1, patience // 2)``. Factor 0.5 as SOURCES B.
    min_lr : float
        Lower bound of the learning rate.
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
        ),
        keras.callbacks.CSVLogger(str(out_dir / HISTORY_FILE), append=True),
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


def backup_epoch(out_dir):
    """How many epochs an interrupted run in ``out_dir`` finished (0 if there is no backup).

    Parameters
    ----------
    out_dir : str or Path

    Returns
    -------
    int
    """
    backup = Path(out_dir) / BACKUP_DIR
    for name in ("training_metadata.json", "training_metadata.json.bkp"):
        path = backup / name
        if path.is_file() and (backup / "latest.weights.h5").is_file():
            try:
                return int(json.loads(path.read_text())["epoch"])
            except (ValueError, KeyError, TypeError):
                continue
    return 0


# ---------------------------------------------------------------------------- artefacts
def atomic_write_text(path, text):
    """Write ``text`` to ``path`` atomically (temporary file in the same folder + os.replace).

    Parameters
    ----------
    path : str or Path
    text : str
    """
    path = Path(path)
    temporary = _temporary_name(path)
    try:
        # Mode "x" creates a new file with the usual permissions (umask), unlike mkstemp's 0600.
        with open(temporary, "x", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def _temporary_name(path, suffix=".tmp"):
    return path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{suffix}"


def atomic_write_json(path, document):
    """Write ``document`` as indented JSON, atomically.

    Parameters
    ----------
    path : str or Path
    document : json-able object
    """
    atomic_write_text(path, json.dumps(_json_ready(document), indent=2, allow_nan=False) + "\n")


def _json_ready(value):
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_ready(item) for item in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, Path):
        return str(value)
    return value


def atomic_save_model(model, path):
    """Save ``model`` as ``.keras`` atomically.

    Parameters
    ----------
    model : keras.Model
    path : str or Path
        Ends in ``.keras``.
    """
    path = Path(path)
    temporary = _temporary_name(path, suffix=".tmp.keras")
    try:
        model.save(temporary)
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def save_artefacts(
    out_dir, model, classes, task, target_size, preprocessing=None, thresholds=None,
    metrics=None, extra=None,
):
    """Write ``model.keras``, ``metrics.json`` and ``labels.json`` (last) into ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
    model : keras.Model
    classes : list of str or LabelVocabulary
        One name per output unit, in output order.
    task : str
        ``"multi_label"`` or ``"multi_class"``.
    target_size : (height, width)
        Input size the images are resized to.
    preprocessing : dict, optional
        How images are prepared; default ``helpers.models.describe_preprocessing(model)``.
    thresholds : float or array-like (n_classes,), optional
        Decision thresholds; default 0.5 for every class (multi-label only).
    metrics : dict, optional
        Written to ``metrics.json``.
    extra : dict, optional
        More fields for ``labels.json`` (e.g. ``weights``, ``image_count``).

    Returns
    -------
    dict: the metadata written to ``labels.json``.
    """
    from helpers.models import describe_preprocessing

    _check_task(task)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = list(getattr(classes, "classes", classes))
    if len(classes) != _output_units(model):
        raise ValueError(
            f"classes has {len(classes)} names but the model has {_output_units(model)} outputs"
        )
    if thresholds is None:
        thresholds = 0.5
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=float), (len(classes),))
    metadata = {
        "classes": classes,
        "task": task,
        "target_size": [int(size) for size in target_size],
        "preprocessing": preprocessing or describe_preprocessing(model),
        "thresholds": [float(value) for value in thresholds],
        "model": model.name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "keras_version": keras.__version__,
    }
    metadata.update(extra or {})
    atomic_save_model(model, out_dir / MODEL_FILE)
    if metrics is not None:
        atomic_write_json(out_dir / METRICS_FILE, metrics)
    atomic_write_json(out_dir / LABELS_FILE, metadata)
    return metadata


def update_thresholds(model_dir, thresholds):
    """Replace the decision thresholds saved in ``labels.json`` (atomically).

    Parameters
    ----------
    model_dir : str or Path
    thresholds : float or array-like (n_classes,)

    Returns
    -------
    dict: the new metadata.
    """
    path = Path(model_dir) / LABELS_FILE
    metadata = validate_metadata(_read_json(path), path)
    values = np.broadcast_to(np.asarray(thresholds, dtype=float), (len(metadata["classes"]),))
    metadata["thresholds"] = [float(value) for value in values]
    validate_metadata(metadata, path)
    atomic_write_json(path, metadata)
    return metadata


def _read_json(path):
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"{path}: file not found; a model folder needs {LABELS_FILE} and {MODEL_FILE} "
            "as written by helpers.training.save_artefacts (python -m helpers train)"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def validate_metadata(metadata, path=LABELS_FILE):
    """Check a ``labels.json`` document; raise ``ValueError`` naming the file and field.

    Parameters
    ----------
    metadata : dict
    path : str or Path
        Used in error messages.

    Returns
    -------
    dict: the same metadata (``thresholds`` filled with 0.5 when null).
    """
    def fail(field, expected, got):
        raise ValueError(f"{path}: field {field!r} must be {expected}, got {got!r}")

    if not isinstance(metadata, dict):
        fail("(top level)", "a JSON object", type(metadata).__name__)
    missing = [key for key in ("classes", "task", "target_size") if key not in metadata]
    if missing:
        raise ValueError(f"{path}: missing field(s) {missing}")
    classes = metadata["classes"]
    if (not isinstance(classes, list) or not classes
            or not all(isinstance(name, str) and name.strip() for name in classes)):
        fail("classes", "a non-empty list of non-empty strings", classes)
    if len(set(classes)) != len(classes):
        fail("classes", "a list without duplicates", classes)
    if metadata["task"] not in TASKS:
        fail("task", f"one of {TASKS}", metadata["task"])
    size = metadata["target_size"]
    if (not isinstance(size, list) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        fail("target_size", "[height, width] of positive integers", size)
    preprocessing = metadata.get("preprocessing", {})
    if preprocessing is not None and not isinstance(preprocessing, dict):
        fail("preprocessing", "an object", preprocessing)
    thresholds = metadata.get("thresholds")
    if thresholds is None:
        thresholds = [0.5] * len(classes)
    if not isinstance(thresholds, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0
        for v in thresholds
    ):
        fail("thresholds", "a list of numbers between 0 and 1", thresholds)
    if len(thresholds) != len(classes):
        raise ValueError(
            f"{path}: field 'thresholds' has {len(thresholds)} values but 'classes' has "
            f"{len(classes)}; expected one threshold per class"
        )
    metadata = dict(metadata, thresholds=[float(v) for v in thresholds])
    return metadata


def load_artefacts(model_dir, compile=False):
    """Load a model folder: validated ``labels.json`` and ``model.keras`` (safe mode).

    Parameters
    ----------
    model_dir : str or Path
        Folder written by ``save_artefacts``.
    compile : bool
        False (default) is enough for prediction and needs no custom loss.

    Returns
    -------
    (model, metadata): keras.Model and the ``labels.json`` dict.
    """
    from helpers import imbalance, models  # noqa: F401  register custom losses and layers

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ValueError(f"model folder not found: {model_dir}")
    labels_path = model_dir / LABELS_FILE
    metadata = validate_metadata(_read_json(labels_path), labels_path)
    model_path = model_dir / MODEL_FILE
    if not model_path.is_file():
        raise ValueError(f"{model_path}: file not found (listed in {labels_path})")
    try:
        model = keras.models.load_model(model_path, safe_mode=True, compile=compile)
    except Exception as error:
        raise ValueError(f"{model_path}: cannot load the model ({error})") from error
    units = _output_units(model)
    if units != len(metadata["classes"]):
        raise ValueError(
            f"{labels_path}: field 'classes' lists {len(metadata['classes'])} classes but "
            f"{model_path.name} has {units} outputs; the two files do not belong together"
        )
    input_size = list(model.input_shape[1:3])
    if None not in input_size and input_size != metadata["target_size"]:
        raise ValueError(
            f"{labels_path}: field 'target_size' is {metadata['target_size']} but "
            f"{model_path.name} takes {input_size} images"
        )
    return model, metadata


def read_history(out_dir):
    """Read ``history.csv`` as a DataFrame indexed by epoch (0-based, as Keras counts).

    Parameters
    ----------
    out_dir : str or Path

    Returns
    -------
    pandas.DataFrame (empty when there is no history yet)
    """
    path = Path(out_dir) / HISTORY_FILE
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    history = pd.read_csv(path, on_bad_lines="skip")
    if "epoch" in history:
        history = history.dropna(subset=["epoch"]).astype({"epoch": int})
        history = history.drop_duplicates("epoch", keep="last").set_index("epoch").sort_index()
    return history


def _trim_history(out_dir, n_epochs):
    """Keep the rows of epochs before ``n_epochs`` (a kill can leave a repeated last row)."""
    path = Path(out_dir) / HISTORY_FILE
    if not path.is_file():
        return pd.DataFrame()
    history = read_history(out_dir)
    history = history[history.index < n_epochs]
    atomic_write_text(path, history.reset_index().to_csv(index=False) if len(history) else "")
    return history


# ---------------------------------------------------------------------------- training
def infer_task(label_lists):
    """``"multi_class"`` when every image has exactly one label, else ``"multi_label"``.

    Parameters
    ----------
    label_lists : iterable of list of str

    Returns
    -------
    str
    """
    counts = [len(labels) for labels in label_lists]
    return "multi_class" if counts and all(count == 1 for count in counts) else "multi_label"


def _readable_rows(dataframe, target_size):
    """Decode every image once; return the rows that load and ``{"path", "reason"}`` of the rest."""
    from helpers.pipeline import check_files

    roads, skipped = check_files(dataframe["filename"].astype(str).tolist(), target_size,
                                 full_decode=True)
    for item in skipped:
        warnings.warn(f"skipped {item['path']}: {item['reason']}", stacklevel=3)
    return dataframe[roads >= 0].reset_index(drop=True), skipped


def _splits_frame(train_df, val_df, test_df):
    parts = []
    for name, frame in (("train", train_df), ("val", val_df), ("test", test_df)):
        part = pd.DataFrame({"filename": frame["filename"].astype(str), "split": name})
        part["labels"] = ["|".join(labels) for labels in frame["labels"]]
        part["absolute_path"] = [os.path.abspath(path) for path in part["filename"]]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def read_splits(out_dir):
    """Read ``splits.csv`` (filename, split, labels, absolute_path) saved by ``train_from_source``.

    Parameters
    ----------
    out_dir : str or Path

    Returns
    -------
    pandas.DataFrame
    """
    path = Path(out_dir) / SPLITS_FILE
    if not path.is_file():
        raise ValueError(f"{path}: file not found; it is written by train_from_source")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def assign_splits(dataframe, out_dir):
    """Look up the split (train / val / test) of each row in the ``splits.csv`` of ``out_dir``.

    Rows match on the absolute image path, so a different working directory is fine.

    Parameters
    ----------
    dataframe : pandas.DataFrame
        With a ``filename`` column.
    out_dir : str or Path
        Folder holding ``splits.csv``.

    Returns
    -------
    pandas.Series of str or NaN (image not in ``splits.csv``), aligned with ``dataframe``.
    """
    splits = read_splits(out_dir)
    key = "absolute_path" if "absolute_path" in splits else "filename"
    by_path = dict(zip(splits[key], splits["split"]))
    paths = dataframe["filename"].astype(str)
    if key == "absolute_path":
        paths = paths.map(os.path.abspath)
    return paths.map(by_path)


def _split_from_file(dataframe, out_dir):
    if not (Path(out_dir) / SPLITS_FILE).is_file():
        return None
    assigned = assign_splits(dataframe, out_dir)
    if assigned.isna().any():
        return None
    return tuple(
        dataframe[assigned == name].reset_index(drop=True) for name in ("train", "val", "test")
    )


def train_from_source(
    source, out_dir, layout="auto", model="smallvggnet", epochs=30, image_size=64,
    batch_size=32, seed=42, loss=None, task="multi_label", augment=True, val_size=0.15,
    test_size=0.15, group_column=None, learning_rate=1e-3, optimizer="adam", patience=10,
    weights=None, trainable_layers=0, monitor=None, log=print, **load_options,
):
    """Train a model on a dataset in any supported layout and save its artefact folder.

    Load → drop unreadable images → vocabulary → split (saved as ``splits.csv``) →
    tf.data pipelines (augmentation on training only) → fit with callbacks → artefacts.
    Rerun the same command after an interruption and it resumes from the last finished
    epoch (``backup/`` in ``out_dir``).

    Parameters
    ----------
    source : str or Path
        Dataset folder, VOC root or CSV file.
    out_dir : str or Path
        Artefact folder.
    layout : str
        One of ``helpers.data.LAYOUTS``.
    model : str
        ``"smallvggnet"``, ``"resnet50"``, ``"mlp"`` or ``"vgg16"``.
    epochs : int
        Maximum number of epochs (EarlyStopping may stop sooner).
    image_size : int or (height, width)
        Input size.
    batch_size : int
    seed : int
        Seeds the split, the shuffling and Keras.
    loss : None or str
        ``None``/``"bce"``, ``"weighted-bce"``, ``"focal"`` (multi-label); ``"cce"`` (multi-class).
    task : str
        ``"multi_label"`` (sigmoid + BCE), ``"multi_class"`` (softmax + CCE) or ``"auto"``
        (multi-class when every image has exactly one label).
    augment : bool or dict
        True: rotation/shift/shear/zoom/flip as SOURCES B; a dict of ImageDataGenerator-style
        arguments; False/None: none.
    val_size, test_size : float
        Split fractions.
    group_column : str, optional
        Keep each group (e.g. ``"Patient ID"``) in one split.
    learning_rate, optimizer : see ``compile_model``.
    patience : int
        EarlyStopping patience.
    weights, trainable_layers : for ``"resnet50"`` / ``"vgg16"`` (see ``helpers.models``).
    monitor : str, optional
        Value the callbacks watch; default ``val_f1_micro`` (``val_loss`` without validation).
    log : callable
        Receives progress lines.
    **load_options
        Passed to ``helpers.data.load_dataset`` (``image_column``, ``separator``...).

    Returns
    -------
    dict with ``model``, ``metadata``, ``history`` (DataFrame), ``metrics``, ``out_dir``,
    ``counts`` (found, used, skipped), ``images_per_second``.
    """
    from helpers import models as model_builders
    from helpers.labels import LabelVocabulary
    from helpers.pipeline import dataset_from_dataframe

    if task not in TASKS + ("auto",):
        raise ValueError(f"task must be one of {TASKS + ('auto',)}, got {task!r}")
    if model not in model_builders.BUILDERS:
        raise ValueError(f"model must be one of {sorted(model_builders.BUILDERS)}, got {model!r}")
    if int(epochs) < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs!r}")
    target_size = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    target_size = tuple(int(v) for v in target_size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = log or (lambda line: None)

    # 1. Data: every readable image, its labels, the task.
    dataframe, counts, skipped = _load_usable(source, layout, target_size, log, load_options)
    task = _choose_task(dataframe, task, log)
    if task == "multi_class" and loss in ("bce", "binary-crossentropy"):
        loss = None  # the CLI's default; categorical cross-entropy is the multi-class match
    vocabulary = LabelVocabulary.from_labels(dataframe["labels"])
    if len(vocabulary) == 0:
        raise ValueError(f"{source}: no image has a label")

    # 2. Resume an interrupted run with the same settings, or start afresh.
    run = {
        "source": str(source), "layout": layout, "model": model,
        "image_size": list(target_size), "task": task, "seed": seed,
        "loss": loss if isinstance(loss, (str, type(None))) else "custom",
        "classes": vocabulary.classes, "weights": None if weights is None else str(weights),
        "trainable_layers": trainable_layers,
    }
    done_epochs = _prepare_out_dir(out_dir, run)

    # 3. Split (reusing splits.csv when resuming) and build the pipelines.
    splits = _split_from_file(dataframe, out_dir) if done_epochs else None
    if splits is None:
        splits = _split_dataframe(dataframe, val_size, test_size, seed, group_column)
        atomic_write_text(out_dir / SPLITS_FILE, _splits_frame(*splits).to_csv(index=False))
    train_df, val_df, test_df = splits
    log(f"split: {len(train_df)} train, {len(val_df)} val, {len(test_df)} test "
        f"({len(vocabulary)} classes: {', '.join(vocabulary.classes)})")
    if len(train_df) == 0:
        raise ValueError("the training split is empty; use more images or smaller val/test sizes")
    keras.utils.set_random_seed(seed)
    cache = len(dataframe) * target_size[0] * target_size[1] * 3 * 4 < 1_500_000_000
    common = dict(classes=vocabulary, target_size=target_size, batch_size=batch_size)
    train_ds = dataset_from_dataframe(
        train_df, shuffle=True, seed=seed, cache=cache, **common,
        augment=(DEFAULT_AUGMENT if augment is True else augment) or None,
    )
    val_ds = (dataset_from_dataframe(val_df, shuffle=False, cache=cache, **common)
              if len(val_df) else None)

    # 4. Model, loss and metrics for the task.
    options = {}
    if model in ("resnet50", "vgg16"):
        options["weights"] = weights
    if model == "resnet50":
        options["trainable_layers"] = trainable_layers
    network = model_builders.build_model(
        model, target_size + (3,), len(vocabulary),
        final_activation="sigmoid" if task == "multi_label" else "softmax", **options,
    )
    compile_model(network, task=task, loss=loss, learning_rate=learning_rate,
                  optimizer=optimizer, y_train=vocabulary.encode(train_df["labels"]))

    # 5. Fit with the callbacks (resuming from backup/ when there is one).
    if monitor is None:
        monitor = "val_f1_micro" if val_ds is not None else "loss"
    mode = "min" if monitor.endswith("loss") else "max"
    initial_best = None
    if done_epochs:
        history = _trim_history(out_dir, done_epochs)
        if monitor in history and history[monitor].notna().any():
            column = history[monitor]
            initial_best = float(column.max() if mode == "max" else column.min())
        log(f"Resuming from epoch {done_epochs + 1}/{epochs}: epochs 1-{done_epochs} were "
            f"finished before the interruption ({out_dir / BACKUP_DIR})")
    callbacks = make_callbacks(
        out_dir, monitor=monitor, mode=mode, patience=patience, validation_data=val_ds,
        task=task, log=log, n_images=len(train_df), initial_best=initial_best,
    )
    logger = next(cb for cb in callbacks if isinstance(cb, EpochLogger))
    trainable = sum(int(np.prod(w.shape)) for w in network.trainable_weights)
    log(f"training {network.name} ({network.count_params():,} parameters, {trainable:,} "
        f"trainable) for up to {epochs} epochs, monitoring {monitor}")
    with quiet_upstream_warnings():
        network.fit(train_ds, validation_data=val_ds, epochs=int(epochs), callbacks=callbacks,
                    verbose=0, shuffle=False)
        network._initial_epoch = None  # set by BackupAndRestore; must not leak into a later fit
        _restore_best(network, out_dir)

        # 6. Final metrics and artefacts.
        history = read_history(out_dir)
        metrics = {"counts": counts, "skipped": skipped, "monitor": monitor,
                   "epochs_run": int(len(history)),
                   "images_per_second": logger.last_images_per_second}
        if monitor in history and history[monitor].notna().any():
            best = history[monitor].idxmax() if mode == "max" else history[monitor].idxmin()
            metrics["best_epoch"] = int(best) + 1
            metrics["best_" + monitor] = float(history.loc[best, monitor])
        for name, frame in (("val", val_df), ("test", test_df)):
            if len(frame):
                dataset = dataset_from_dataframe(frame, shuffle=False, **common)
                y_true, y_prob = predict_dataset(network, dataset)
                metrics[name] = dict(threshold_metrics(y_true, y_prob, task),
                                     n_images=int(len(y_true)))
        image_count = {"train": len(train_df), "val": len(val_df), "test": len(test_df)}
        metadata = save_artefacts(
            out_dir, network, vocabulary.classes, task, target_size, metrics=metrics,
            extra={"weights": getattr(network, "weights_source", None),
                   "image_count": image_count},
        )
    shutil.rmtree(out_dir / BACKUP_DIR, ignore_errors=True)
    (out_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    summary = " - ".join(f"{key} {value:.4f}" for key, value in metrics.get("test", {}).items()
                         if key.startswith("f1_"))
    log(f"saved {out_dir}/{{{MODEL_FILE}, {LABELS_FILE}, {HISTORY_FILE}, {METRICS_FILE}, "
        f"{SPLITS_FILE}}}" + (f"; test {summary}" if summary else ""))
    return {"model": network, "metadata": metadata, "history": history, "metrics": metrics,
            "out_dir": out_dir, "counts": counts,
            "images_per_second": logger.last_images_per_second}


def _load_usable(source, layout, target_size, log, load_options):
    """Load a dataset and drop the images that cannot be decoded; log what was skipped."""
    from helpers.data import load_dataset

    dataframe = load_dataset(source, layout=layout, **load_options)
    loader_skipped = list(dataframe.attrs.get("skipped", []))
    n_listed = len(dataframe)
    dataframe, unreadable = _readable_rows(dataframe, target_size)
    skipped = loader_skipped + unreadable
    counts = {
        "found": n_listed + len(loader_skipped), "used": len(dataframe),
        "skipped": len(skipped), "skipped_by_loader": len(loader_skipped),
        "unreadable": len(unreadable),
    }
    # Each skipped file was reported once, as a warning, by the loader or _readable_rows.
    log(f"{counts['found']} inputs found: {counts['used']} images used, {counts['skipped']} "
        f"skipped ({len(loader_skipped)} by the loader, {len(unreadable)} unreadable)")
    if len(dataframe) == 0:
        raise ValueError(f"{source}: no readable image found")
    return dataframe, counts, skipped


def _choose_task(dataframe, task, log):
    """Resolve ``task="auto"``, hint at multi-class data, refuse impossible multi-class."""
    if task == "auto":
        task = infer_task(dataframe["labels"])
        log(f"task: {task} (inferred from the labels)")
    elif task == "multi_label" and infer_task(dataframe["labels"]) == "multi_class":
        log("note: every image has exactly one label; task='multi_class' (softmax + CCE) "
            "may suit this data better")
    if task == "multi_class":
        wrong = sum(1 for labels in dataframe["labels"] if len(labels) != 1)
        if wrong:
            raise ValueError(
                f"task='multi_class' needs exactly one label per image; {wrong} of "
                f"{len(dataframe)} images have none or several (use task='multi_label')"
            )
    return task


def _prepare_out_dir(out_dir, run):
    """Return the epochs an interrupted run with the same settings finished (0 = start afresh)."""
    done_epochs = backup_epoch(out_dir)
    run_file = out_dir / RUN_FILE
    if done_epochs and run_file.is_file():
        previous = json.loads(run_file.read_text())
        different = {key: (previous.get(key), value) for key, value in run.items()
                     if key != "source" and previous.get(key) != value}
        if different:
            listing = ", ".join(f"{key}: {then!r} then, {now!r} now"
                                for key, (then, now) in different.items())
            raise ValueError(
                f"{out_dir / BACKUP_DIR} holds an interrupted run with other settings "
                f"({listing}); use another output folder or delete {out_dir / BACKUP_DIR}"
            )
    else:
        done_epochs = 0
        for name in (BACKUP_DIR, HISTORY_FILE, CHECKPOINT_FILE, SPLITS_FILE, METRICS_FILE):
            path = out_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    atomic_write_json(run_file, run)
    return done_epochs


def _split_dataframe(dataframe, val_size, test_size, seed, group_column):
    """Call ``helpers.splits.split_dataframe`` (imported late: it needs no TensorFlow)."""
    from helpers.splits import split_dataframe

    return split_dataframe(dataframe, val_size=val_size, test_size=test_size, seed=seed,
                           group_column=group_column)


def _restore_best(network, out_dir):
    """Load the best checkpoint (it spans resumed runs, unlike EarlyStopping's memory)."""
    path = out_dir / CHECKPOINT_FILE
    if path.is_file():
        try:
            network.load_weights(path)
        except Exception as error:  # a checkpoint cut by a kill: keep the current weights
            warnings.warn(f"{path}: not restored ({error})", stacklevel=3)
