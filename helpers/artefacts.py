"""The model folder: everything needed to use a trained model later, and nothing that needs pickle.

``model.keras`` (loaded in Keras' safe mode), ``labels.json`` (class names, task, input size,
preprocessing, decision thresholds), ``history.csv`` (one row per epoch), ``metrics.json``,
``splits.csv`` (each image's split, so evaluation reuses the test split) and, while a run is
unfinished, ``run.json`` (its settings), ``backup/`` (Keras' ``BackupAndRestore`` or
``helpers.scale.distribute``'s checkpoint) and ``checkpoint.weights.h5`` (the best epoch so far).
Functions take the folder as ``model_dir``, or ``out_dir`` while a run writes it; files are
written atomically, and ``labels.json`` and ``model.keras`` checked before Keras loads anything.
"""
import datetime
import io
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from helpers.evaluation import DEFAULT_THRESHOLD
from helpers.files import fileio
from helpers.files.archive import load_model
from helpers.files.fileio import atomic_path, atomic_write_json, atomic_write_text, read_json
from helpers.labels import TASKS, check_task

MODEL_FILE = "model.keras"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
SPLITS_FILE = "splits.csv"
BACKUP_DIR = "backup"
CHECKPOINT_FILE = "checkpoint.weights.h5"
DISTRIBUTED_STATE_FILE = "distributed.json"  # in backup/: epochs of a multi-worker checkpoint
_RUN_FILE = "run.json"
# Written while a run is under way; a new run (not a resumed one) starts without them.
_RUN_FILES = (BACKUP_DIR, HISTORY_FILE, CHECKPOINT_FILE, SPLITS_FILE, METRICS_FILE)
_MAX_TARGET_SIDE = 4096  # pixels, the largest input size labels.json may ask for


def output_units(model):
    """Number of outputs of a single-output model (one per class)."""
    shape = model.output_shape
    if isinstance(shape, list):
        raise ValueError(f"model {model.name!r} has several outputs; expected one")
    return int(shape[-1])


def save_model(model, path):
    """Save ``model`` to a ``.keras`` path, atomically."""
    with atomic_path(path) as temporary:
        model.save(temporary)


def save_artefacts(out_dir, model, classes, task, target_size, preprocessing=None,
                   thresholds=None, metrics=None, extra=None):
    """Write ``model.keras``, ``metrics.json`` (``metrics``) and ``labels.json`` (last, with the
    ``extra`` fields); return the metadata. ``classes`` (names or a ``LabelVocabulary``) name the
    outputs in order; ``preprocessing`` defaults to ``helpers.models.describe_preprocessing`` and
    ``thresholds`` to 0.5."""
    from helpers.models import describe_preprocessing

    check_task(task)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = list(getattr(classes, "classes", classes))
    if len(classes) != output_units(model):
        raise ValueError(f"classes has {len(classes)} names but the model has "
                         f"{output_units(model)} outputs")
    thresholds = DEFAULT_THRESHOLD if thresholds is None else thresholds
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=float), (len(classes),))
    metadata = {
        "classes": classes, "task": task, "target_size": [int(size) for size in target_size],
        "preprocessing": preprocessing or describe_preprocessing(model),
        "thresholds": [float(value) for value in thresholds], "model": model.name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "keras_version": keras.__version__,
    }
    metadata.update(extra or {})
    save_model(model, out_dir / MODEL_FILE)
    if metrics is not None:
        atomic_write_json(out_dir / METRICS_FILE, metrics)
    atomic_write_json(out_dir / LABELS_FILE, metadata)
    return metadata


def update_thresholds(model_dir, thresholds):
    """Replace the decision thresholds saved in ``labels.json``; return the new metadata."""
    path = Path(model_dir) / LABELS_FILE
    metadata = validate_metadata(_read_labels(path), path)
    values = np.broadcast_to(np.asarray(thresholds, dtype=float), (len(metadata["classes"]),))
    metadata["thresholds"] = [float(value) for value in values]
    validate_metadata(metadata, path)
    atomic_write_json(path, metadata)
    return metadata


def _read_labels(path):
    path = Path(path)
    if not os.path.lexists(path):  # a folder or a broken link is named as such by read_json
        raise ValueError(f"{path}: file not found; a model folder needs {LABELS_FILE} and "
                         f"{MODEL_FILE} as written by helpers.artefacts.save_artefacts "
                         "(python -m helpers train)")
    return read_json(path, what="labels file")


def validate_metadata(metadata, path=LABELS_FILE):
    """Check a ``labels.json`` document (``ValueError`` naming ``path`` and the field); return it
    with ``thresholds`` filled with 0.5 when null."""
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
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= _MAX_TARGET_SIDE
                       for v in size)):
        fail("target_size", f"[height, width] of positive integers up to {_MAX_TARGET_SIDE}", size)
    preprocessing = metadata.get("preprocessing", {})
    if preprocessing is not None and not isinstance(preprocessing, dict):
        fail("preprocessing", "an object", preprocessing)
    thresholds = metadata.get("thresholds")
    thresholds = [DEFAULT_THRESHOLD] * len(classes) if thresholds is None else thresholds
    if not isinstance(thresholds, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0
            for v in thresholds):
        fail("thresholds", "a list of numbers between 0 and 1", thresholds)
    if len(thresholds) != len(classes):
        raise ValueError(f"{path}: field 'thresholds' has {len(thresholds)} values but "
                         f"'classes' has {len(classes)}; expected one threshold per class")
    return dict(metadata, thresholds=[float(v) for v in thresholds])


def load_artefacts(model_dir, compile=False):
    """Load a model folder written by ``save_artefacts``: ``(model, metadata)``, both checked
    (``compile=False`` is enough for prediction and needs no custom loss)."""
    # Register the custom layers and losses a saved model may hold, before loading it.
    from helpers import augment, imbalance, models  # noqa: F401

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ValueError(f"model folder not found: {model_dir}")
    labels_path = model_dir / LABELS_FILE
    metadata = validate_metadata(_read_labels(labels_path), labels_path)
    model_path = model_dir / MODEL_FILE
    if not model_path.is_file():
        raise ValueError(f"{model_path}: file not found (listed in {labels_path})")
    model = load_model(model_path, compile)
    units = output_units(model)
    if units != len(metadata["classes"]):
        raise ValueError(f"{labels_path}: field 'classes' lists {len(metadata['classes'])} "
                         f"classes but {model_path.name} has {units} outputs; the two files do "
                         "not belong together")
    input_size = list(model.input_shape[1:3])
    if None not in input_size and input_size != metadata["target_size"]:
        raise ValueError(f"{labels_path}: field 'target_size' is {metadata['target_size']} but "
                         f"{model_path.name} takes {input_size} images")
    return model, metadata


def read_history(out_dir):
    """Read ``history.csv`` as a DataFrame indexed by epoch (0-based, as Keras counts), or empty."""
    path = Path(out_dir) / HISTORY_FILE
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        history = pd.read_csv(path, on_bad_lines="skip")
    except (ValueError, UnicodeDecodeError) as error:  # pandas' parser errors are ValueErrors
        raise ValueError(f"{path}: cannot read the training history ({error}); delete it "
                         "to start afresh") from None
    if "epoch" in history:
        history = history.dropna(subset=["epoch"]).astype({"epoch": int})
        history = history.drop_duplicates("epoch", keep="last").set_index("epoch").sort_index()
    return history


def trim_history(out_dir, n_epochs):
    """Keep (and return) the rows of epochs before ``n_epochs``; a kill can leave a repeated row."""
    path = Path(out_dir) / HISTORY_FILE
    if not path.is_file():
        return pd.DataFrame()
    history = read_history(out_dir)
    history = history[history.index < n_epochs]
    atomic_write_text(path, history.reset_index().to_csv(index=False) if len(history) else "")
    return history


def write_splits(out_dir, parts):
    """Write (and return) ``splits.csv``: each image's file name, split, labels and absolute
    path; ``parts`` maps split names (``"train"``...) to ``filename``, ``labels`` frames."""
    frames = []
    for name, frame in parts.items():
        part = pd.DataFrame({"filename": frame["filename"].astype(str).to_numpy(), "split": name})
        part["labels"] = ["|".join(labels) for labels in frame["labels"]]
        part["absolute_path"] = [os.path.abspath(path) for path in part["filename"]]
        frames.append(part)
    table = pd.concat(frames, ignore_index=True)
    # A file name that is not valid UTF-8 is written as its own bytes, and read back as such.
    atomic_write_text(Path(out_dir) / SPLITS_FILE, table.to_csv(index=False),
                      errors="surrogateescape")
    return table


def read_splits(out_dir):
    """Read ``splits.csv``; ``ValueError`` naming it when missing, unreadable or short a column."""
    path = Path(out_dir) / SPLITS_FILE
    if not path.is_file():
        raise ValueError(f"{path}: file not found; it is written by train_from_source")
    data = fileio.read_bytes(path, "splits file")
    encoding = fileio.sniff_encoding(data) or "utf-8"
    try:
        table = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding=encoding,
                            encoding_errors="surrogateescape")
    except (ValueError, UnicodeError) as error:  # pandas' parser errors are ValueErrors
        raise ValueError(f"{path}: cannot read the splits file ({error})") from None
    missing = [name for name in ("split", "labels") if name not in table.columns]
    if "filename" not in table.columns and "absolute_path" not in table.columns:
        missing.insert(0, "filename")
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; a splits file has the columns "
                         "['filename', 'split', 'labels', 'absolute_path'], as train writes them")
    return table


def assign_splits(dataframe, out_dir):
    """The split of each row of ``dataframe`` in ``splits.csv`` (NaN when not there), as a Series;
    rows match on the absolute image path, so a different working directory is fine."""
    splits = read_splits(out_dir)
    key = "absolute_path" if "absolute_path" in splits else "filename"
    by_path = dict(zip(splits[key], splits["split"]))
    paths = dataframe["filename"].astype(str)
    if key == "absolute_path":
        paths = paths.map(os.path.abspath)
    return paths.map(by_path)


def splits_from_file(dataframe, out_dir):
    """``(train, val, test)`` rows of ``dataframe`` as ``splits.csv`` assigned them; None without
    a ``splits.csv`` or when some image of ``dataframe`` is not in it."""
    if not (Path(out_dir) / SPLITS_FILE).is_file():
        return None
    assigned = assign_splits(dataframe, out_dir)
    if assigned.isna().any():
        return None
    return tuple(dataframe[assigned == name].reset_index(drop=True)
                 for name in ("train", "val", "test"))


def backup_epoch(out_dir):
    """How many epochs an interrupted run in ``out_dir`` finished (0 if there is no backup)."""
    backup = Path(out_dir) / BACKUP_DIR
    state = backup / DISTRIBUTED_STATE_FILE  # helpers.scale.distribute's tf.train checkpoints
    if state.is_file() and (backup / "checkpoint").is_file():
        try:
            return int(read_json(state, what="distributed training state")["epochs"])
        except (ValueError, KeyError, TypeError, OverflowError):
            return 0
    for name in ("training_metadata.json", "training_metadata.json.bkp"):
        path = backup / name
        if path.is_file() and (backup / "latest.weights.h5").is_file():
            try:
                return int(read_json(path, what="backup state")["epoch"])
            except (ValueError, KeyError, TypeError, OverflowError):
                continue
    return 0


def start_or_resume(out_dir, settings):
    """Return the epochs an interrupted run with the same ``settings`` finished (0: a new run,
    which removes what an earlier one left); ``ValueError`` when ``backup/`` holds a run with
    other ``settings`` (``source`` may change). ``run.json`` then holds ``settings``."""
    out_dir = Path(out_dir)
    done_epochs = backup_epoch(out_dir)
    run_file = out_dir / _RUN_FILE
    if done_epochs and run_file.is_file():
        previous = read_json(run_file, what="run settings file")
        previous = previous if isinstance(previous, dict) else {}
        different = [f"{key}: {previous.get(key)!r} then, {value!r} now"
                     for key, value in settings.items()
                     if key != "source" and previous.get(key) != value]
        if different:
            raise ValueError(f"{out_dir / BACKUP_DIR} holds an interrupted run with other "
                             f"settings ({', '.join(different)}); use another output folder or "
                             f"delete {out_dir / BACKUP_DIR}")
    else:
        done_epochs = 0
        for name in _RUN_FILES:
            path = out_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    atomic_write_json(run_file, settings)
    return done_epochs


def finish_run(out_dir):
    """Remove what only an unfinished run needs (``backup/``, the checkpoint)."""
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir / BACKUP_DIR, ignore_errors=True)
    (out_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
