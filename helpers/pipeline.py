"""DataFrame → ``tf.data`` batches: Keras 2's ``ImageDataGenerator.flow_from_dataframe`` for Keras 3.

The chain :func:`dataset_from_dataframe` builds, streaming the images from disk::

    file paths + multi-hot rows → from_tensor_slices → shuffle the list → map(read, decode, resize)
    → cache → shuffle → batch → scale to [0, 1] → augment → prefetch

The argument names are Keras 2's (``directory``, ``x_col``, ``y_col``, ``class_mode``...). What
the helper adds: every file is checked up front and decoded by the fastest road that gives the
same pixels (``helpers.files.decode``: TensorFlow for plain JPEGs and PNGs, Pillow for odd
files, EXIF rotation and the pixel budget), and a file that fails costs that file alone: it is
left out, the number of batches stays fixed, and :func:`missing_files` names the files a
prediction pass did not deliver. :func:`batch_dataset`, the chain from cache to prefetch, also
batches ``helpers.scale.shards``' images.
"""
import contextlib
import hashlib
import json
import numbers
import os
import warnings
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from helpers import augment as augmentations
from helpers import data
from helpers.files import decode
from helpers.labels import LabelVocabulary, to_label_lists

_CLASS_MODES = ("multi_hot", "categorical", "sparse", None)
_ON_ERROR = ("skip", "raise")


@contextlib.contextmanager
def quiet_upstream_warnings():
    """Silence, inside the ``with`` block only, two harmless warnings Keras gives with these datasets.

    "Your input ran out of data": files left out make the length unknown (in your own ``fit``
    it can mean a dataset shorter than ``steps_per_epoch``, so it is silenced nowhere else).
    "__array__ implementation doesn't accept a copy keyword": TensorFlow and NumPy 2 disagree
    on a keyword; the values are right.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept")
        yield


def check_arguments(dataframe, columns, *, class_mode, target_size, batch_size, shuffle_buffer_size,
                    cache, on_error, augment):
    """Check :func:`dataset_from_dataframe`'s arguments (``dataframe`` needs ``columns``) before
    any file is read; return ``target_size`` as two ints."""
    if not isinstance(dataframe, pd.DataFrame):
        raise ValueError(f"dataframe: expected a pandas DataFrame, got {type(dataframe).__name__}")
    if class_mode not in _CLASS_MODES:
        raise ValueError(f"class_mode: expected one of {_CLASS_MODES}, got {class_mode!r}")
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error: expected one of {_ON_ERROR}, got {on_error!r}")
    for column in columns:
        if column not in dataframe.columns:
            raise ValueError(f"no column {column!r} in the DataFrame; columns are {list(dataframe.columns)}")
    if len(dataframe) == 0:
        raise ValueError("dataframe: no rows")
    for name, value in (("batch_size", batch_size), ("shuffle_buffer_size", shuffle_buffer_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if not (cache is False or cache is True or isinstance(cache, (str, os.PathLike))):
        raise ValueError(f"cache: expected False, True or a file path, got {cache!r}")
    sizes = isinstance(target_size, (tuple, list)) and len(target_size) == 2 and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in target_size)
    if not sizes:
        raise ValueError(f"target_size: expected (height, width) positive integers, got {target_size!r}")
    _augmenter(augment)
    return int(target_size[0]), int(target_size[1])


def _augmenter(augment):
    """Split ``augment`` into a Keras layer to call, or parsed ImageDataGenerator arguments."""
    if augment is None:
        return None, None
    if isinstance(augment, keras.layers.Layer):
        return augment, None
    params = augmentations.parse_augment(augment)
    return None, (None if augmentations.is_identity(params) else params)


def _file_paths(dataframe, x_col, directory):
    names = dataframe[x_col].tolist()
    bad_names = [name for name in names if not isinstance(name, (str, os.PathLike))]
    if bad_names:
        raise ValueError(f"column {x_col!r}: expected file paths, got {bad_names[:5]!r}")
    return [os.path.join(directory, name) if directory is not None else os.fspath(name) for name in names]


def encode_labels(dataframe, y_col="labels", classes=None, class_mode="multi_hot"):
    """The vocabulary and the float32 label rows of ``dataframe`` (``(None, None)`` without labels)."""
    if class_mode is None:
        return None, None
    label_lists = to_label_lists(dataframe[y_col], column=y_col)
    if classes is None:
        vocabulary = LabelVocabulary.from_labels(label_lists)
    else:
        vocabulary = classes if isinstance(classes, LabelVocabulary) else LabelVocabulary(classes)
    if class_mode == "multi_hot":
        return vocabulary, vocabulary.encode(label_lists)
    try:
        indices = vocabulary.encode_sparse(label_lists)
    except ValueError as error:
        raise ValueError(f"column {y_col!r}, class_mode={class_mode!r}: {error}; "
                         f"use class_mode='multi_hot' for multi-label data") from None
    if class_mode == "sparse":
        return vocabulary, indices.astype(np.float32)
    return vocabulary, np.eye(len(vocabulary), dtype=np.float32)[indices]


def cache_path(cache, file_names, target_size, labels):
    """``cache``, a file path with a fingerprint of the images appended (never a stale cache)."""
    if isinstance(cache, bool):
        return cache
    digest = hashlib.sha256()
    digest.update(json.dumps([list(file_names), list(target_size)]).encode())
    if labels is not None:
        digest.update(np.ascontiguousarray(labels).tobytes())
    path = Path(cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"{path}-{digest.hexdigest()[:12]}"


def _decoded_images(paths, roads, labels, target_size, shuffle, seed, warned):
    """Dataset of ``(uint8 image, ok, row, *label)``: the file list (shuffled whole), decoded in parallel.

    File names go to TensorFlow as bytes, so a name that is not valid UTF-8 opens like any other.
    """
    used_roads, road_indices = np.unique(roads, return_inverse=True)
    encoded_paths = np.array([os.fsencode(path) for path in paths], dtype=object)
    rows = np.arange(len(paths), dtype=np.int64)
    tensors = (encoded_paths, road_indices.astype(np.int32), rows) + (() if labels is None else (labels,))
    dataset = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    decode_image = decode.make_decoder(target_size, used_roads, warned)

    def load(path, road_index, row, *label):
        image, ok = decode_image(tf.io.read_file(path), road_index, path)
        return (image, ok, row) + label

    return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)


def _batched(dataset, n_images, batch_size, augment, seed, on_error, with_rows):
    """Batch, scale to [0, 1], augment and prefetch; ``with_rows``: the prediction variant."""
    layer, params = (None, None) if with_rows else _augmenter(augment)
    target_size = tuple(dataset.element_spec[0].shape[:2])

    def finish(image, ok, row, *label, batch_seed=None):
        image = tf.cast(image, tf.float32) / 255.0
        if with_rows:
            return (image,) + label[:1] + (row,)
        if params is not None:
            image = tf.numpy_function(lambda x, s: augmentations.augment_batch(x, params, s),
                                      [image, batch_seed], tf.float32, stateful=False)
            image = tf.ensure_shape(image, (None, *target_size, 3))
        elif layer is not None:
            image = layer(image, training=True)
        return image if not label else (image, label[0])

    dataset = dataset.batch(batch_size)
    if params is not None:
        # One seed per batch, drawn anew each epoch: the augmentation is repeatable with
        # `seed` however many batches are augmented at once.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        dataset = tf.data.Dataset.zip(dataset, seeds).map(
            lambda batch, batch_seed: finish(*batch, batch_seed=batch_seed), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = dataset.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    if on_error == "skip" and not with_rows:
        # A fixed number of batches (else Keras warns "Your input ran out of data" each epoch):
        # should an image fail while decoding, the pass is topped up from the next one.
        dataset = dataset.repeat().take(-(-n_images // batch_size))
    return dataset.prefetch(tf.data.AUTOTUNE)


def batch_dataset(decoded, n_images, batch_size=32, shuffle=True, seed=None, augment=None, cache=False,
                  on_error="skip", shuffle_buffer_size=1024):
    """Cache, shuffle, batch, scale to [0, 1], augment and prefetch decoded images.

    ``decoded`` holds ``(uint8 image, ok, row, *label)`` as ``helpers.files.decode`` gives them
    (``ok`` False: not decoded; ``row``: index among the ``n_images``); ``cache`` is True or a
    path from :func:`cache_path`; the rest as for :func:`dataset_from_dataframe`. Returns
    ``(images, labels)`` batches (images alone without labels) with ``for_prediction``: the
    images unaugmented, each once, as ``(images, labels, rows)`` (``(images, rows)``) batches.
    """
    if on_error == "skip":
        # A file that fails inside TensorFlow (corrupt data behind a good header, or deleted
        # since the check) or in Pillow (ok False) is dropped here, alone: after batch() an
        # error would take its batch.
        decoded = decoded.ignore_errors().filter(lambda image, ok, *rest: ok)
    if cache is not False:
        decoded = decoded.cache("" if cache is True else cache)
        if shuffle:  # a cache replays in one order
            decoded = decoded.shuffle(min(n_images, shuffle_buffer_size), seed=seed, reshuffle_each_iteration=True)
    dataset = _batched(decoded, n_images, batch_size, augment, seed, on_error, with_rows=False)
    dataset.for_prediction = _batched(decoded, n_images, batch_size, None, seed, on_error, with_rows=True)
    return dataset


def missing_files(dataset, rows):
    """``{"path", "reason"}`` of each file of a :func:`dataset_from_dataframe` dataset whose row
    is not in ``rows`` (the last part of each ``for_prediction`` batch), in row order, each named
    once in a warning; the reason comes from reading the file again with Pillow."""
    arrived = np.zeros(len(dataset.file_paths), dtype=bool)
    arrived[np.asarray(rows, dtype=np.int64)] = True
    paths = [dataset.file_paths[row] for row in np.flatnonzero(~arrived)]
    return decode.missing_reasons(paths, dataset.target_size, dataset.warned)


def dataset_from_dataframe(dataframe, directory=None, x_col="filename", y_col="labels",
                           classes=None, class_mode="multi_hot", target_size=(64, 64),
                           batch_size=32, shuffle=True, seed=None, augment=None, cache=False,
                           on_error="skip", shuffle_buffer_size=1024):
    """Stream images listed in a DataFrame as a batched ``tf.data.Dataset``.

    The Keras 3 counterpart of ``ImageDataGenerator(rescale=1/255, ...).flow_from_dataframe(...)``.

    Parameters
    ----------
    dataframe : pandas.DataFrame
        One row per image (e.g. from ``helpers.data.load_dataset``).
    directory : str, optional
        Joined in front of each ``x_col`` value (absolute values are kept); None for
        ``helpers.data`` DataFrames, whose ``filename`` includes the folder.
    x_col, y_col : str
        Columns with the image paths and the label lists (or single label strings).
    classes : list of str or LabelVocabulary, optional
        By default every label found in ``y_col`` (sorted).
    class_mode : {"multi_hot", "categorical", "sparse", None}
        Multi-hot rows (multi-label), one-hot rows or class indices (one label per image),
        or no labels at all (for prediction).
    target_size : (height, width)
    shuffle : bool
        Shuffle every epoch. False for evaluation and prediction: batches in row order.
    seed : int, optional
        Seed for shuffling and augmentation.
    augment : dict or keras.Layer, optional
        For the training set only: ImageDataGenerator-style arguments (``helpers.augment``),
        applied with OpenCV, or Keras layers, called with ``training=True``.
    cache : bool or str
        ``True`` keeps decoded images in memory after the first epoch; a path, in files there.
    on_error : {"skip", "raise"}
        ``"skip"``: unreadable files are left out with one warning each and a total, even
        those found only while decoding (an epoch keeps its number of batches). ``"raise"``:
        every image is decoded up front and a ``ValueError`` lists the broken ones.
    shuffle_buffer_size : int
        Shuffle buffer used after a cache (before a cache the whole file list is shuffled).

    Returns
    -------
    tf.data.Dataset
        Batches of ``(images, labels)``: images float32 in [0, 1] shaped ``(batch, height,
        width, 3)``, labels float32; only images when ``class_mode`` is None. Attributes:
        ``class_names``, ``vocabulary``, ``file_paths`` (files kept, in row order),
        ``skipped`` (``{"path", "reason"}`` of files left out up front), ``target_size`` and
        ``for_prediction`` (see :func:`batch_dataset`; ``rows`` index ``file_paths``).
        ``len(dataset)`` is ``ceil(len(file_paths) / batch_size)``.
    """
    columns = [x_col] + ([y_col] if class_mode is not None else [])
    target_size = check_arguments(dataframe, columns, class_mode=class_mode, target_size=target_size,
                                  batch_size=batch_size, shuffle_buffer_size=shuffle_buffer_size,
                                  cache=cache, on_error=on_error, augment=augment)
    paths = _file_paths(dataframe, x_col, directory)
    vocabulary, labels = encode_labels(dataframe, y_col, classes, class_mode)

    keep, roads, skipped = decode.usable_files(paths, target_size, on_error)
    paths = [path for path, kept in zip(paths, keep) if kept]
    labels = None if labels is None else labels[keep]
    warned = {item["path"] for item in skipped}  # each file is named once
    decoded = _decoded_images(paths, roads, labels, target_size, shuffle, seed, warned)
    dataset = batch_dataset(decoded, len(paths), batch_size, shuffle, seed, augment,
                            cache_path(cache, paths, target_size, labels), on_error, shuffle_buffer_size)
    dataset.class_names = None if vocabulary is None else list(vocabulary.classes)
    dataset.vocabulary = vocabulary
    dataset.file_paths = paths
    dataset.skipped = skipped
    dataset.target_size = target_size
    dataset.warned = warned
    return dataset


def dataset_from_directory(directory, classes=None, class_mode="categorical", folder_separator=None, **kwargs):
    """Stream images from class folders (``directory/<class>/...``): Keras 2's ``flow_from_directory``.

    ``class_mode=None`` lists every image under ``directory``; ``folder_separator`` (``"_"``)
    splits folder names into labels (``red_shirt`` → red, shirt); ``kwargs`` as for
    :func:`dataset_from_dataframe`.
    """
    if not os.path.isdir(directory):
        raise ValueError(f"directory: {directory} is not a folder")
    if class_mode is None:
        frame = pd.DataFrame({"filename": data.list_images(directory), "labels": None})
    elif folder_separator is not None:
        frame = data.load_split_folders(directory, separator=folder_separator)
    else:
        frame = data.load_folders(directory)
    if frame.empty:
        raise ValueError(f"directory: no images found under {directory}")
    return dataset_from_dataframe(frame, classes=classes, class_mode=class_mode, **kwargs)
