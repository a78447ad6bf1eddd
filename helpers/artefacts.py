"""The model folder: everything needed to use a trained model later, and nothing that needs pickle.

- ``model.keras``: the model (loaded with ``keras.models.load_model(..., safe_mode=True)``),
- ``labels.json``: class names, task, input size, preprocessing, decision thresholds,
- ``history.csv``: one row per epoch (written by ``keras.callbacks.CSVLogger``),
- ``metrics.json``: final validation/test metrics,
- ``splits.csv``: which image went to train / val / test (so evaluation reuses the test split),
- while a run is unfinished: ``run.json`` (its settings), ``backup/`` (Keras'
  ``BackupAndRestore``, or the per-epoch ``tf.train`` checkpoint of ``helpers.scale.distribute``)
  and ``checkpoint.weights.h5`` (the best epoch so far).

Every file is written atomically (``helpers.files.fileio.atomic_path``): after a crash there is the
old file or the new one, never half of one.

A model folder may have been edited by hand or come from elsewhere, so it is checked before
anything is loaded: ``labels.json`` within size and nesting limits, ``model.keras`` a zip
whose members declare sane sizes (a member that would inflate far beyond what it stores is
refused, not read), its JSON members readable without recursion, its weights not declaring
arrays it does not store; then Keras loads it with ``safe_mode=True``.
"""
import datetime
import io
import os
import shutil
import zipfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from helpers.files import fileio
from helpers.files.fileio import atomic_path, atomic_write_json, atomic_write_text, read_json
from helpers.labels import TASKS, check_task

MODEL_FILE = "model.keras"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
SPLITS_FILE = "splits.csv"
RUN_FILE = "run.json"
BACKUP_DIR = "backup"
CHECKPOINT_FILE = "checkpoint.weights.h5"
DISTRIBUTED_STATE_FILE = "distributed.json"  # in backup/: epochs of a multi-worker checkpoint
# Written while a run is under way; a new run (not a resumed one) starts without them.
RUN_FILES = (BACKUP_DIR, HISTORY_FILE, CHECKPOINT_FILE, SPLITS_FILE, METRICS_FILE)
DEFAULT_THRESHOLD = 0.5
SPLITS_COLUMNS = ("filename", "split", "labels", "absolute_path")
MAX_TARGET_SIDE = 4096  # pixels, the largest input size labels.json may ask for
# model.keras: a configuration is a few hundred KB; a member inflating to more than
# MAX_MEMBER_EXPANSION times what it stores (above MAX_MEMBER_FLOOR) is a zip bomb
# (Keras itself refuses such members only above 4 GB).
MAX_CONFIG_BYTES = 64_000_000
MAX_MEMBER_FLOOR = 16_000_000
MAX_MEMBER_EXPANSION = 100


def output_units(model):
    """Number of outputs of a single-output model (one per class)."""
    shape = model.output_shape
    if isinstance(shape, list):
        raise ValueError(f"model {model.name!r} has several outputs; expected one")
    return int(shape[-1])


# ------------------------------------------------------------------------------ saving
def save_model(model, path):
    """Save ``model`` as ``.keras``, atomically.

    Parameters
    ----------
    model : keras.Model
    path : str or Path
        Ends in ``.keras``.
    """
    with atomic_path(path) as temporary:
        model.save(temporary)


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

    check_task(task)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = list(getattr(classes, "classes", classes))
    if len(classes) != output_units(model):
        raise ValueError(
            f"classes has {len(classes)} names but the model has {output_units(model)} outputs"
        )
    if thresholds is None:
        thresholds = DEFAULT_THRESHOLD
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
    save_model(model, out_dir / MODEL_FILE)
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
    metadata = validate_metadata(_read_labels(path), path)
    values = np.broadcast_to(np.asarray(thresholds, dtype=float), (len(metadata["classes"]),))
    metadata["thresholds"] = [float(value) for value in values]
    validate_metadata(metadata, path)
    atomic_write_json(path, metadata)
    return metadata


# ------------------------------------------------------------------------------ loading
def _read_labels(path):
    path = Path(path)
    if not os.path.lexists(path):  # a folder or a broken link is named as such by read_json
        raise ValueError(
            f"{path}: file not found; a model folder needs {LABELS_FILE} and {MODEL_FILE} "
            "as written by helpers.artefacts.save_artefacts (python -m helpers train)"
        )
    return read_json(path, what="labels file")


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
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_TARGET_SIDE
                       for v in size)):
        fail("target_size", f"[height, width] of positive integers up to {MAX_TARGET_SIDE}", size)
    preprocessing = metadata.get("preprocessing", {})
    if preprocessing is not None and not isinstance(preprocessing, dict):
        fail("preprocessing", "an object", preprocessing)
    thresholds = metadata.get("thresholds")
    if thresholds is None:
        thresholds = [DEFAULT_THRESHOLD] * len(classes)
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
    return dict(metadata, thresholds=[float(v) for v in thresholds])


def _check_weights(archive, name, where):
    """Refuse HDF5 weights that declare arrays far larger than they store (read as fill values)."""
    import h5py

    problems = []

    def visit(key, item):
        if isinstance(item, h5py.Dataset):
            stored = item.id.get_storage_size()
            if item.nbytes > MAX_MEMBER_FLOOR and item.nbytes > MAX_MEMBER_EXPANSION * max(stored, 1):
                problems.append(f"{key} declares {fileio.format_size(item.nbytes)} but stores "
                                f"{fileio.format_size(stored)}")

    try:
        with archive.open(name) as stream, h5py.File(stream, "r") as weights:
            weights.visititems(visit)
    except Exception as error:  # h5py raises several types for a damaged file
        raise ValueError(f"{where}: {name} is not a readable HDF5 file ({error})") from None
    if problems:
        raise ValueError(f"{where}: refusing {name}, whose arrays would be created from "
                         f"nothing: {'; '.join(problems[:3])}")


def check_model_file(model_path):
    """Check a ``.keras`` file before Keras opens it; ``ValueError`` naming the file and member.

    Refuses a file that is not a zip, members whose declared size would inflate far beyond
    what they store, JSON members over ``MAX_CONFIG_BYTES`` or nested too deeply to read,
    and HDF5 weights declaring arrays they do not store.

    Parameters
    ----------
    model_path : str or Path
    """
    model_path = Path(model_path)
    try:
        archive = zipfile.ZipFile(model_path)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise ValueError(f"{model_path}: not a Keras model file (a .keras file is a zip "
                         f"archive: {error})") from None
    with archive:
        names = archive.namelist()
        if "config.json" not in names:
            raise ValueError(f"{model_path}: not a Keras model file (no config.json inside)")
        for info in archive.infolist():
            declared = fileio.format_size(info.file_size)
            if info.filename.endswith(".json") and info.file_size > MAX_CONFIG_BYTES:
                raise ValueError(f"{model_path}: {info.filename} declares {declared} (limit "
                                 f"{fileio.format_size(MAX_CONFIG_BYTES)}); a model's configuration "
                                 f"is far smaller: refusing to load it")
            if (info.file_size > MAX_MEMBER_FLOOR
                    and info.file_size > MAX_MEMBER_EXPANSION * max(info.compress_size, 1)):
                raise ValueError(f"{model_path}: {info.filename} declares {declared} but stores "
                                 f"{fileio.format_size(info.compress_size)}: refusing a potential "
                                 f"decompression bomb")
        for name in ("config.json", "metadata.json"):
            if name in names:
                try:
                    data = archive.read(name)
                except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
                    raise ValueError(f"{model_path}: cannot read {name} ({error})") from None
                text = fileio.decode_text(data, f"{model_path}:{name}", what="model configuration")
                fileio.loads(text, f"{model_path}:{name}", "model configuration")
        if "model.weights.h5" in names:
            _check_weights(archive, "model.weights.h5", model_path)


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
    check_model_file(model_path)
    try:
        model = keras.models.load_model(model_path, safe_mode=True, compile=compile)
    except Exception as error:
        raise ValueError(f"{model_path}: cannot load the model ({error})") from error
    units = output_units(model)
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


# ------------------------------------------------------------------------------ history
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
    """Keep the rows of epochs before ``n_epochs`` (a kill can leave a repeated last row).

    Parameters
    ----------
    out_dir : str or Path
    n_epochs : int

    Returns
    -------
    pandas.DataFrame: the history kept.
    """
    path = Path(out_dir) / HISTORY_FILE
    if not path.is_file():
        return pd.DataFrame()
    history = read_history(out_dir)
    history = history[history.index < n_epochs]
    atomic_write_text(path, history.reset_index().to_csv(index=False) if len(history) else "")
    return history


# ------------------------------------------------------------------------------ splits.csv
def write_splits(out_dir, parts):
    """Write ``splits.csv``: each image's file name, split, labels and absolute path.

    Parameters
    ----------
    out_dir : str or Path
    parts : dict
        Split name (``"train"``, ``"val"``, ``"test"``, or any other such as
        ``"held_out"``) → DataFrame with ``filename`` and ``labels`` columns.

    Returns
    -------
    pandas.DataFrame: what was written.
    """
    frames = []
    for name, frame in parts.items():
        part = pd.DataFrame({"filename": frame["filename"].astype(str).to_numpy(), "split": name})
        part["labels"] = ["|".join(labels) for labels in frame["labels"]]
        part["absolute_path"] = [os.path.abspath(path) for path in part["filename"]]
        frames.append(part)
    table = pd.concat(frames, ignore_index=True)
    # A file name that is not valid UTF-8 is written as its own bytes, and read back as such.
    atomic_write_text(Path(out_dir) / SPLITS_FILE, table.to_csv(index=False), errors="surrogateescape")
    return table


def read_splits(out_dir):
    """Read ``splits.csv`` (filename, split, labels, absolute_path) of a model folder.

    Parameters
    ----------
    out_dir : str or Path

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    ValueError
        Naming the file, when it is missing, unreadable, or lacks a column.
    """
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
                         f"{list(SPLITS_COLUMNS)}, as train writes them")
    return table


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


def splits_from_file(dataframe, out_dir):
    """``(train, val, test)`` rows of ``dataframe`` as ``splits.csv`` assigned them, or None.

    None when there is no ``splits.csv`` or when some image of ``dataframe`` is not in it.
    """
    if not (Path(out_dir) / SPLITS_FILE).is_file():
        return None
    assigned = assign_splits(dataframe, out_dir)
    if assigned.isna().any():
        return None
    return tuple(
        dataframe[assigned == name].reset_index(drop=True) for name in ("train", "val", "test")
    )


# ------------------------------------------------------------------------------ resuming
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
    """Return the epochs an interrupted run with the same settings finished (0: start afresh).

    A new run removes what an earlier run left (``RUN_FILES``); a resumed one keeps it.
    Either way ``run.json`` then holds ``settings``.

    Parameters
    ----------
    out_dir : str or Path
    settings : dict
        What must not change between an interrupted run and its resumption (``source`` may).

    Returns
    -------
    int

    Raises
    ------
    ValueError
        When ``backup/`` holds an interrupted run with other settings.
    """
    out_dir = Path(out_dir)
    done_epochs = backup_epoch(out_dir)
    run_file = out_dir / RUN_FILE
    if done_epochs and run_file.is_file():
        previous = read_json(run_file, what="run settings file")
        previous = previous if isinstance(previous, dict) else {}
        different = {key: (previous.get(key), value) for key, value in settings.items()
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
        for name in RUN_FILES:
            path = out_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    atomic_write_json(run_file, settings)
    return done_epochs


def finish_run(out_dir):
    """Remove what only an unfinished run needs (``backup/``, the checkpoint)."""
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir / BACKUP_DIR, ignore_errors=True)
    (out_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
