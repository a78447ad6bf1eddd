"""Predict with a model: probabilities for a dataset, a saved split or image files, and labels.

``model_dir_or_loaded`` is a folder from ``helpers.artefacts.save_artefacts`` or the pair
``load_artefacts`` returned. Images are read as for training (``helpers.files.images``);
probabilities become labels through ``helpers.evaluation.apply_thresholds``. One bad image gives
one entry with its error and never stops the others nor costs another image of its batch: the
datasets carry each image's row, so the images that failed while decoding are named and counted.
"""
import os

import numpy as np

from helpers import REPO_ROOT, warn
from helpers.artefacts import load_artefacts, output_units, read_splits, validate_metadata
from helpers.data import list_images
from helpers.evaluation import DEFAULT_THRESHOLD, apply_thresholds
from helpers.files.fileio import printable
from helpers.files.images import read_batches
from helpers.files.overlays import write_captioned
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
    """Predict each image of a ``helpers.pipeline`` dataset once: ``(y_true, y_prob, rows)``.

    In row order; ``rows`` index ``dataset.file_paths``, the missing ones failed while decoding
    (``helpers.pipeline.missing_files`` names them); ``y_true`` is None without labels.
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
    """Predict a labelled dataset, or ``(images, labels)`` arrays: ``(y_true, y_prob)``, aligned.

    A ``helpers.pipeline`` dataset goes through ``predict_rows``: one row per image decoded.
    """
    if isinstance(data, (tuple, list)):
        return np.asarray(data[1]), np.asarray(model.predict(data[0], verbose=0))
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
        if output_units(model) != len(metadata["classes"]):
            raise ValueError(f"metadata lists {len(metadata['classes'])} classes but the model "
                             f"has {output_units(model)} outputs")
        return model, metadata
    raise ValueError("expected a model folder or a (model, metadata) pair from load_artefacts, "
                     f"got {type(model_dir_or_loaded).__name__}")


def predict_dataframe(model_dir_or_loaded, dataframe, batch_size=32,
                      make_dataset=dataset_from_dataframe):
    """Predict every image of a DataFrame (``filename``, ``labels``) through the tf.data pipeline.

    ``make_dataset`` builds the dataset (``helpers.scale.shards.dataset_for`` reads shard rows).
    Returns ``(y_true, y_prob, file_paths, skipped)``: the images read, in row order, and
    ``{"path", "reason"}`` of each other one; ``len(y_true) + len(skipped) == len(dataframe)``.
    """
    model, metadata = _loaded(model_dir_or_loaded)
    classes = metadata["classes"]
    unknown = sorted({label for labels in to_label_lists(dataframe["labels"]) for label in labels}
                     - set(classes))
    if unknown:
        raise ValueError(f"the dataset has labels the model was not trained on: {unknown}; "
                         f"the model knows {classes}")
    dataset = make_dataset(dataframe, classes=classes, target_size=tuple(metadata["target_size"]),
                           batch_size=batch_size, shuffle=False)
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
    """Predict the images of one split (``"train"``, ``"val"``, ``"test"``) of ``splits.csv``.

    ``loaded`` is ``load_artefacts(model_dir)`` already called. Returns a dict: ``frame``
    (``filename``, ``split``, ``labels`` lists of the images read), ``y_true`` (multi-hot int),
    ``y_prob``, ``classes``, ``metadata`` and ``skipped`` (``{"path", "reason"}``, warned about).
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
    return {"frame": frame, "y_true": np.asarray(y_true).round().astype(int),
            "y_prob": np.asarray(y_prob, dtype=float), "classes": list(loaded[1]["classes"]),
            "metadata": loaded[1], "skipped": skipped}


def _expand_paths(paths):
    """Files and folders (searched recursively) → ``(image path, error or None)`` pairs."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    expanded = []
    for path in map(os.fspath, paths):
        if os.path.isdir(path):
            found = list_images(path)
            expanded += [(image, None) for image in found] or [(path, "folder holds no image file")]
        elif os.path.isfile(path):
            expanded.append((path, None))
        else:
            expanded.append((path, "no such file or folder"))
    return expanded


def predict_paths(model_dir_or_loaded, paths, batch_size=32, thresholds=None):
    """Predict the labels of image files and folders (searched recursively, non-images left out).

    ``thresholds`` (one float or one per class) overrides those saved in ``labels.json``.
    Returns one ``{"path", "labels", "probabilities": {label: float}, "error"}`` per image, in
    input order; ``error`` is the reason an image could not be used (the rest then None).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    model, metadata = _loaded(model_dir_or_loaded)
    if thresholds is None:
        thresholds = metadata.get("thresholds") or DEFAULT_THRESHOLD
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=float), (len(metadata["classes"]),))
    results = [{"path": path, "labels": None, "probabilities": None, "error": error}
               for path, error in _expand_paths(paths)]
    readable = [None if result["error"] else result["path"] for result in results]
    failed = []
    with quiet_upstream_warnings():
        for batch in read_batches(readable, tuple(metadata["target_size"]), batch_size, failed):
            _predict_batch(model, metadata, thresholds, [(results[i], image) for i, image in batch])
    for position, reason in failed:
        results[position]["error"] = reason
    return results


def _predict_batch(model, metadata, thresholds, pairs):
    """Fill in the labels and probabilities of the ``(result, image)`` pairs."""
    classes = metadata["classes"]
    batch = np.stack([image for _, image in pairs]).astype("float32") / 255.0
    probabilities = np.asarray(model.predict_on_batch(batch), dtype=float)
    decisions = apply_thresholds(probabilities, thresholds, metadata["task"])
    for (result, _), row, decided in zip(pairs, probabilities, decisions):
        result["probabilities"] = {name: float(value) for name, value in zip(classes, row)}
        result["labels"] = [name for name, yes in zip(classes, decided) if yes]


def annotate(path, result, out_path, min_size=320, max_lines=5, max_size=2048):
    """Write a copy of an image with its predicted labels drawn on, like ``label: 54.62%``.

    ``result`` is one entry of ``predict_paths``; when no label passed its threshold the most
    likely one is drawn, marked "(below threshold)". At most ``max_lines`` labels, most probable
    first; ``min_size``, ``max_size`` and the path returned are
    ``helpers.files.overlays.write_captioned``'s.
    """
    if result.get("error"):
        raise ValueError(f"{path}: cannot annotate an image that failed: {result['error']}")
    probabilities = result.get("probabilities") or {}
    chosen = sorted(result.get("labels") or [], key=lambda name: -probabilities.get(name, 0))
    lines = [f"{name}: {probabilities[name]:.2%}" for name in chosen[:max_lines]]
    if not lines and probabilities:
        best = max(probabilities, key=probabilities.get)
        lines = [f"{best}: {probabilities[best]:.2%} (below threshold)"]
    return write_captioned(path, lines, out_path, min_size, max_size)
