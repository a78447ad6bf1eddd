"""Use a trained model folder: predict labels of new images, draw them, evaluate on a dataset.

Images are read exactly as for training (``helpers.images.read_image``: EXIF-aware, any
mode converted to RGB, bilinear resize to the saved ``target_size``, scaled to [0, 1]);
the labels come from the thresholds saved in ``labels.json`` (argmax for multi-class).
One bad image gives one entry with its error; it never stops the others.
"""
import os
from pathlib import Path

import numpy as np

from helpers.images import ImageError, read_image

DEFAULT_THRESHOLD = 0.5


def _loaded(model_dir_or_loaded):
    from helpers.training import load_artefacts, validate_metadata

    if isinstance(model_dir_or_loaded, (str, os.PathLike)):
        return load_artefacts(model_dir_or_loaded)
    if isinstance(model_dir_or_loaded, (tuple, list)) and len(model_dir_or_loaded) == 2:
        model, metadata = model_dir_or_loaded
        metadata = validate_metadata(metadata, "metadata")
        units = int(model.output_shape[-1])
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
    from helpers.data import list_images

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


def _labels_of(probabilities, classes, task, thresholds):
    if task == "multi_class":
        return [classes[int(np.argmax(probabilities))]]
    return [name for name, value, threshold in zip(classes, probabilities, thresholds)
            if value >= threshold]


def predict_paths(model_dir_or_loaded, paths, batch_size=32, thresholds=None):
    """Predict the labels of image files and folders.

    Parameters
    ----------
    model_dir_or_loaded : str, Path or (model, metadata)
        A folder written by ``helpers.training.save_artefacts`` or what
        ``helpers.training.load_artefacts`` returned.
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
    from helpers.training import quiet_upstream_warnings

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
        for (index, _), row in zip(pending, probabilities):
            results[index]["probabilities"] = {
                name: float(value) for name, value in zip(classes, row)
            }
            results[index]["labels"] = _labels_of(row, classes, task, thresholds)
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


def annotate(path, result, out_path, min_size=320, max_lines=5):
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

    Returns
    -------
    Path of the written file.
    """
    from PIL import Image, ImageDraw

    if result.get("error"):
        raise ValueError(f"{path}: cannot annotate an image that failed: {result['error']}")
    probabilities = result.get("probabilities") or {}
    image = Image.fromarray(read_image(path))
    scale = max(1.0, min_size / min(image.size))
    if scale > 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)),
                             Image.Resampling.BILINEAR)
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


def predict_dataframe(model_dir_or_loaded, dataframe, batch_size=32):
    """Predict every image of a DataFrame (``filename``, ``labels``) through the tf.data pipeline.

    Parameters
    ----------
    model_dir_or_loaded : str, Path or (model, metadata)
    dataframe : pandas.DataFrame
        Labels must all be classes of the model.
    batch_size : int

    Returns
    -------
    (y_true, y_prob, file_paths, skipped): multi-hot truth and probabilities of the images
    that could be read, their paths, and ``{"path", "reason"}`` of the others.
    """
    from helpers.labels import to_label_lists
    from helpers.pipeline import dataset_from_dataframe
    from helpers.training import predict_dataset, quiet_upstream_warnings

    model, metadata = _loaded(model_dir_or_loaded)
    classes = metadata["classes"]
    unknown = sorted({label for labels in to_label_lists(dataframe["labels"]) for label in labels}
                     - set(classes))
    if unknown:
        raise ValueError(
            f"the dataset has labels the model was not trained on: {unknown}; "
            f"the model knows {classes}"
        )
    dataset = dataset_from_dataframe(
        dataframe, classes=classes, target_size=tuple(metadata["target_size"]),
        batch_size=batch_size, shuffle=False,
    )
    with quiet_upstream_warnings():
        y_true, y_prob = predict_dataset(model, dataset)
    skipped = list(dataset.skipped)
    if len(y_true) != len(dataset.file_paths):
        skipped.append({"path": "(while decoding)",
                        "reason": f"{len(dataset.file_paths) - len(y_true)} image(s) failed"})
    return y_true, y_prob, list(dataset.file_paths), skipped


def _rows_of_split(dataframe, model_dir, split):
    from helpers.training import assign_splits

    chosen = dataframe[(assign_splits(dataframe, model_dir) == split).to_numpy()]
    chosen = chosen.reset_index(drop=True)
    if len(chosen) == 0:
        raise ValueError(
            f"{Path(model_dir) / 'splits.csv'}: none of its {split!r} images is in this dataset; "
            "evaluate a split with the same SOURCE (same path) as at training time, "
            "or use split='all'"
        )
    return chosen


def evaluate_model_dir(model_dir, dataframe, split="all", tune_thresholds=False, batch_size=32):
    """Evaluate a model folder on a dataset; optionally tune and save per-class thresholds.

    Parameters
    ----------
    model_dir : str or Path
    dataframe : pandas.DataFrame
        From ``helpers.data.load_dataset``.
    split : str
        ``"all"``, or ``"train"`` / ``"val"`` / ``"test"`` as saved in ``splits.csv``.
    tune_thresholds : bool
        Choose each class's threshold for the best F1 on the validation split, save it in
        ``labels.json`` and evaluate with it (multi-label only).
    batch_size : int

    Returns
    -------
    dict: ``helpers.evaluation.evaluation_report`` plus ``n_images``, ``split``,
    ``skipped`` and ``task``.
    """
    from helpers import evaluation
    from helpers.training import load_artefacts, update_thresholds

    if split not in ("all", "train", "val", "test"):
        raise ValueError(f"split must be 'all', 'train', 'val' or 'test', got {split!r}")
    model, metadata = load_artefacts(model_dir)
    classes, task = metadata["classes"], metadata["task"]
    thresholds = np.asarray(metadata["thresholds"], dtype=float)
    if tune_thresholds:
        if task != "multi_label":
            raise ValueError("tune_thresholds only applies to multi_label models")
        val_rows = _rows_of_split(dataframe, model_dir, "val")
        y_val, p_val, _, _ = predict_dataframe((model, metadata), val_rows, batch_size)
        thresholds = evaluation.tune_thresholds(y_val, p_val, classes=classes)
        metadata = update_thresholds(model_dir, thresholds)

    rows = dataframe if split == "all" else _rows_of_split(dataframe, model_dir, split)
    y_true, y_prob, _, skipped = predict_dataframe((model, metadata), rows, batch_size)
    if task == "multi_class":
        decisions = np.zeros_like(y_prob)
        decisions[np.arange(len(y_prob)), y_prob.argmax(axis=1)] = 1.0
        report = evaluation.evaluation_report(y_true, decisions, classes, 0.5)
        ranking = evaluation.evaluation_report(y_true, y_prob, classes, 0.5)
        for label, row in report["per_class"].items():
            for key in ("average_precision", "roc_auc"):
                row[key] = ranking["per_class"][label][key]
        report["mAP"] = ranking["mAP"]
    else:
        report = evaluation.evaluation_report(y_true, y_prob, classes, thresholds)
    report.update({"n_images": int(len(y_true)), "split": split, "skipped": skipped, "task": task})
    return report
