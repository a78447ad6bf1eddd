"""Predict with a model: probabilities for a dataset, a saved split or image files, and labels.

- :func:`predict_dataset`: a Keras model on a labelled ``tf.data`` dataset (truth and
  probabilities, aligned);
- :func:`predict_dataframe` and :func:`predict_split`: a model folder on a DataFrame, or on
  the train / val / test split saved with it (``splits.csv``);
- :func:`predict_paths`: a model folder on image files and folders, with label names;
- :func:`annotate`: a copy of an image with its predicted labels drawn on.

Images are read exactly as for training (``helpers.files.images.read_image``: EXIF-aware, any
mode converted to RGB, resized to the saved ``target_size`` by area averaging or bilinear
enlargement, scaled to [0, 1]). Probabilities become labels in one way,
``helpers.evaluation.apply_thresholds``: the thresholds saved in ``labels.json``, or the
argmax for a multi-class model. One bad image gives one entry with its error; it never
stops the others, and never costs another image of its batch: the datasets carry each
image's row, so the images that failed while decoding are named, with their reason, and
counted (found = used + skipped).
"""
import os
from pathlib import Path

import numpy as np

from helpers import REPO_ROOT, warn
from helpers.artefacts import (
    load_artefacts,
    output_units,
    read_splits,
    validate_metadata,
)
from helpers.data import list_images
from helpers.evaluation import DEFAULT_THRESHOLD, apply_thresholds
from helpers.files.fileio import printable
from helpers.files.images import ImageError, read_header, read_image
from helpers.labels import to_label_lists
from helpers.pipeline import dataset_from_dataframe, missing_files, quiet_upstream_warnings


def _batch_predictor(model):
    """``model.predict_on_batch``, or ``predict`` for a model built under several replicas."""
    strategy = getattr(model, "distribute_strategy", None)
    if getattr(strategy, "num_replicas_in_sync", 1) > 1:
        # Keras 3.15's predict_on_batch under MirroredStrategy returns every replica's rows.
        return lambda images: model.predict(images, verbose=0)
    return model.predict_on_batch


def predict_rows(model, dataset):
    """Predict each image of a ``helpers.pipeline`` dataset once, with the row it came from.

    Parameters
    ----------
    model : keras.Model
    dataset : tf.data.Dataset
        From ``helpers.pipeline.dataset_from_dataframe`` or
        ``helpers.scale.shards.dataset_from_shards`` (its ``for_prediction`` variant is used: no
        augmentation, every image once).

    Returns
    -------
    (y_true, y_prob, rows)
        In row order; ``rows`` index ``dataset.file_paths``, and the rows missing from
        it are the images that failed while decoding (``helpers.pipeline.missing_files``
        names them). ``y_true`` is None for a dataset without labels.
    """
    truths, probabilities, rows = [], [], []
    predict = _batch_predictor(model)
    with quiet_upstream_warnings():
        for batch in dataset.for_prediction:
            *parts, batch_rows = batch
            rows.append(np.asarray(batch_rows))
            probabilities.append(np.asarray(predict(parts[0])))
            if len(parts) > 1:
                truths.append(np.asarray(parts[1]))
    n_classes = model.output_shape[-1]
    rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    # Row order; should an image come twice, it is counted once.
    rows, first = np.unique(rows, return_index=True)
    y_prob = np.concatenate(probabilities)[first] if probabilities else np.zeros((0, n_classes))
    y_true = np.concatenate(truths)[first] if truths else None
    return y_true, y_prob, rows


def predict_dataset(model, data):
    """Predict a whole labelled dataset, keeping labels aligned with predictions.

    Parameters
    ----------
    model : keras.Model
    data : tf.data.Dataset of (images, labels) or a tuple (images, labels) of arrays
        A ``helpers.pipeline`` dataset is predicted through its ``for_prediction``
        variant: each image once, even when the repeat that keeps its number of batches
        fixed brought some twice.

    Returns
    -------
    (y_true, y_prob): numpy arrays, one row per image that could be decoded.
    """
    if isinstance(data, (tuple, list)):
        images, labels = data[0], data[1]
        return np.asarray(labels), np.asarray(model.predict(images, verbose=0))
    if hasattr(data, "for_prediction"):
        y_true, y_prob, rows = predict_rows(model, data)
        if not len(rows):
            raise ValueError(f"none of the {len(data.file_paths)} images of the dataset "
                             "could be decoded")
        return y_true, y_prob
    truths, probabilities = [], []
    predict = _batch_predictor(model)
    with quiet_upstream_warnings():
        for batch in data:
            truths.append(np.asarray(batch[1]))
            probabilities.append(np.asarray(predict(batch[0])))
    if not truths:
        raise ValueError("the dataset to predict is empty")
    return np.concatenate(truths), np.concatenate(probabilities)


def _loaded(model_dir_or_loaded):
    if isinstance(model_dir_or_loaded, (str, os.PathLike)):
        return load_artefacts(model_dir_or_loaded)
    if isinstance(model_dir_or_loaded, (tuple, list)) and len(model_dir_or_loaded) == 2:
        model, metadata = model_dir_or_loaded
        metadata = validate_metadata(metadata, "metadata")
        units = output_units(model)
        if units != len(metadata["classes"]):
            raise ValueError(
                f"metadata lists {len(metadata['classes'])} classes but the model has "
                f"{units} outputs"
            )
        return model, metadata
    raise ValueError(
        "expected a model folder or a (model, metadata) pair from load_artefacts, got "
        f"{type(model_dir_or_loaded).__name__}"
    )


def predict_dataframe(model_dir_or_loaded, dataframe, batch_size=32,
                      make_dataset=dataset_from_dataframe):
    """Predict every image of a DataFrame (``filename``, ``labels``) through the tf.data pipeline.

    Parameters
    ----------
    model_dir_or_loaded : str, Path or (model, metadata)
    dataframe : pandas.DataFrame
        Labels must all be classes of the model.
    batch_size : int
    make_dataset : callable, default ``helpers.pipeline.dataset_from_dataframe``
        Builds the dataset from the rows (``helpers.scale.shards.dataset_for`` reads shard rows).

    Returns
    -------
    (y_true, y_prob, file_paths, skipped): multi-hot truth and probabilities of the images
    that could be read, their paths (in row order), and ``{"path", "reason"}`` of the
    others: those left out up front and those that failed while decoding, each named
    once. ``len(y_true) + len(skipped) == len(dataframe)``.
    """
    model, metadata = _loaded(model_dir_or_loaded)
    classes = metadata["classes"]
    unknown = sorted({label for labels in to_label_lists(dataframe["labels"]) for label in labels}
                     - set(classes))
    if unknown:
        raise ValueError(
            f"the dataset has labels the model was not trained on: {unknown}; "
            f"the model knows {classes}"
        )
    dataset = make_dataset(
        dataframe, classes=classes, target_size=tuple(metadata["target_size"]),
        batch_size=batch_size, shuffle=False,
    )
    y_true, y_prob, rows = predict_rows(model, dataset)
    skipped = list(dataset.skipped) + missing_files(dataset, rows)
    if not len(rows):
        raise ValueError(f"none of the {len(dataframe)} images could be decoded (first: "
                         f"{printable(skipped[0]['path'])}: {skipped[0]['reason']})")
    return y_true, y_prob, [dataset.file_paths[row] for row in rows], skipped


def _existing_path(path):
    """``path`` as saved; relative paths that do not exist from here are tried from the repo."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    candidate = REPO_ROOT / path
    return str(candidate) if candidate.exists() else path


def predict_split(model_dir, split="test", *, batch_size=32, loaded=None):
    """Predict the images of one split saved with a model (its ``splits.csv``).

    Parameters
    ----------
    model_dir : str or Path
        Artefact folder written by ``helpers.app.workflows.train_from_source``.
    split : {"train", "val", "test"}, default="test"
        Which rows of ``splits.csv`` to predict.
    batch_size : int, default=32
        Images per prediction batch.
    loaded : (keras.Model, dict), optional
        ``helpers.artefacts.load_artefacts(model_dir)`` already called, to load only once.

    Returns
    -------
    dict
        ``frame`` (DataFrame: ``filename``, ``split``, ``labels`` as lists; the images
        that could be read), ``y_true`` (multi-hot int), ``y_prob``, ``classes``,
        ``metadata`` (``labels.json``) and ``skipped`` (``{"path", "reason"}`` of the
        split's other images, each also warned about).
    """
    loaded = loaded or load_artefacts(model_dir)
    splits = read_splits(model_dir)
    if split not in set(splits["split"]):
        raise ValueError(f"split: expected one of {sorted(set(splits['split']))} (the splits "
                         f"in {model_dir}/splits.csv), got {split!r}")
    frame = splits[splits["split"] == split].reset_index(drop=True)
    paths = frame["absolute_path"] if "absolute_path" in frame else frame["filename"]
    frame["filename"] = [_existing_path(path) for path in paths]
    frame["labels"] = [value.split("|") if value else [] for value in frame["labels"]]
    y_true, y_prob, read_paths, skipped = predict_dataframe(loaded, frame, batch_size)
    if skipped:
        warn(f"{len(skipped)} of the {len(frame)} images of the {split} split are left out "
             f"(each named above)")
        frame = frame[frame["filename"].isin(set(read_paths))].reset_index(drop=True)
    metadata = loaded[1]
    return {"frame": frame, "y_true": np.asarray(y_true).round().astype(int),
            "y_prob": np.asarray(y_prob, dtype=float), "classes": list(metadata["classes"]),
            "metadata": metadata, "skipped": skipped}


def expand_paths(paths):
    """Turn files and folders (searched recursively) into a list of image paths.

    Parameters
    ----------
    paths : str, Path or list of them

    Returns
    -------
    list of (str, str or None): each path with an error message when it cannot be used
    (missing path, folder without images).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    expanded = []
    for path in paths:
        path = os.fspath(path)
        if os.path.isdir(path):
            found = list_images(path)
            expanded += [(image, None) for image in found]
            if not found:
                expanded.append((path, "folder holds no image file"))
        elif os.path.isfile(path):
            expanded.append((path, None))
        else:
            expanded.append((path, "no such file or folder"))
    return expanded


def predict_paths(model_dir_or_loaded, paths, batch_size=32, thresholds=None):
    """Predict the labels of image files and folders.

    Parameters
    ----------
    model_dir_or_loaded : str, Path or (model, metadata)
        A folder written by ``helpers.artefacts.save_artefacts`` or what
        ``helpers.artefacts.load_artefacts`` returned.
    paths : str, Path or list of them
        Image files and folders (searched recursively, hidden files and non-images left out).
    batch_size : int
        Images per forward pass.
    thresholds : float or array-like (n_classes,), optional
        Override the thresholds saved in ``labels.json`` (multi-label only).

    Returns
    -------
    list of dict, one per image, in input order: ``{"path", "labels", "probabilities":
    {label: float}, "error"}``; ``error`` is None, or the reason the image could not be
    used (then ``labels`` and ``probabilities`` are None).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    model, metadata = _loaded(model_dir_or_loaded)
    classes, task = metadata["classes"], metadata["task"]
    target_size = tuple(metadata["target_size"])
    if thresholds is None:
        thresholds = metadata.get("thresholds") or DEFAULT_THRESHOLD
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=float), (len(classes),))

    results = []
    pending = []  # (index in results, image) waiting for a forward pass

    def flush():
        if not pending:
            return
        batch = np.stack([image for _, image in pending]).astype("float32") / 255.0
        probabilities = np.asarray(model.predict_on_batch(batch), dtype=float)
        decisions = apply_thresholds(probabilities, thresholds, task)
        for (index, _), row, decided in zip(pending, probabilities, decisions):
            results[index]["probabilities"] = {
                name: float(value) for name, value in zip(classes, row)
            }
            results[index]["labels"] = [name for name, yes in zip(classes, decided) if yes]
        pending.clear()

    with quiet_upstream_warnings():
        for path, error in expand_paths(paths):
            results.append({"path": path, "labels": None, "probabilities": None, "error": error})
            if error is not None:
                continue
            try:
                pending.append((len(results) - 1, read_image(path, target_size)))
            except ImageError as problem:
                results[-1]["error"] = problem.reason
            if len(pending) == batch_size:
                flush()
        flush()
    return results


def _font(size):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def annotate(path, result, out_path, min_size=320, max_lines=5, max_size=2048):
    """Write a copy of an image with its predicted labels drawn on, like ``label: 54.62%``.

    Parameters
    ----------
    path : str or Path
        The image (read upright, as for prediction).
    result : dict
        One entry of ``predict_paths``. Its labels are drawn with their probabilities;
        when no label passed its threshold, the most likely one is drawn, marked "(below
        threshold)".
    out_path : str or Path
        Where to write the copy (format from the extension; folders are created).
    min_size : int
        Small images are enlarged so their shorter side is at least this, to stay legible.
    max_lines : int
        At most this many labels are drawn (most probable first).
    max_size : int
        The longer side of the copy is at most this (large images are shrunk, and a thin
        strip is not enlarged past it).

    Returns
    -------
    Path of the written file.
    """
    from PIL import Image, ImageDraw

    if result.get("error"):
        raise ValueError(f"{path}: cannot annotate an image that failed: {result['error']}")
    probabilities = result.get("probabilities") or {}
    header = read_header(path)  # decode straight at the output size (a JPEG at a reduced scale)
    width, height = header["width"], header["height"]
    scale = min(max(1.0, min_size / min(width, height)), max_size / max(width, height))
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    image = Image.fromarray(read_image(path, size))
    chosen = sorted(result.get("labels") or [], key=lambda name: -probabilities.get(name, 0))
    lines = [f"{name}: {probabilities[name]:.2%}" for name in chosen[:max_lines]]
    if not lines and probabilities:
        best = max(probabilities, key=probabilities.get)
        lines = [f"{best}: {probabilities[best]:.2%} (below threshold)"]
    font = _font(max(12, image.height // 18))
    draw = ImageDraw.Draw(image, "RGBA")
    x, y = 8, 8
    for line in lines:
        left, top, right, bottom = draw.textbbox((x, y), line, font=font)
        draw.rectangle((left - 4, top - 3, right + 4, bottom + 3), fill=(0, 0, 0, 160))
        draw.text((x, y), line, font=font, fill=(0, 255, 0))
        y = bottom + 8
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    image.convert("RGB").save(out_path)
    return out_path

