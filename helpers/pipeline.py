"""A tf.data replacement for Keras 2's ``ImageDataGenerator.flow_from_dataframe``.

Images are streamed from disk, never loaded all at once: the file list is shuffled,
files are decoded and resized in parallel, optionally cached (in memory or in a
file), batched, augmented and prefetched. The argument names are Keras 2's
(``directory``, ``x_col``, ``y_col``, ``class_mode``, ``target_size``...), so old
code maps one to one.

Decoding takes the fast road when it can: plain 8-bit RGB/grayscale JPEGs and PNGs
without EXIF rotation are decoded by TensorFlow itself (JPEGs at a reduced DCT
scale, like Pillow's ``draft``), which is several times faster than calling Python
per image. Everything else (CMYK, 16-bit, palette, alpha, GIF, BMP, EXIF-rotated
photos, suspicious files) goes through ``helpers.files.images.read_image`` (Pillow).
Both roads resize the same way (area averaging to shrink, bilinear to enlarge, as
``helpers.files.images.resize``) and give the same pixels to within one grey level, and the
same as ``read_image`` gives at prediction time. Large images (over
``helpers.files.images.LARGE_PIXELS`` once decoded) take the Pillow road too, which needs one
copy of their pixels where TensorFlow needs four, and every decode keeps to the pixel
budget ``helpers.files.images.MAX_PIXELS``.

A file that fails costs that file alone: it is dropped from its batch (never the batch),
the number of batches stays fixed, and a prediction pass (``dataset.for_prediction``,
which carries each image's row) tells which files never arrived; :func:`missing_files`
names them with their reason.

Augmentation lives in :mod:`helpers.augment`; its public names are also importable from
here (``pipeline.augmentation``, ``pipeline.augment_images``...), as before.
"""
import concurrent.futures
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
from helpers import data, warn
from helpers.files import fileio
from helpers.files import images
from helpers.labels import LabelVocabulary, to_label_lists

CLASS_MODES = ("multi_hot", "categorical", "sparse", None)
ON_ERROR = ("skip", "raise")

# Decoding roads, chosen per file from its header. Road 0 is Pillow. The TensorFlow
# roads pair a decoder (JPEG at 1/1, 1/2, 1/4 or 1/8 scale, or PNG) with the filter of
# each axis (shrink or enlarge), so the decoding graph has one switch and no nested
# conditionals, which made the first epoch almost twice as slow.
_PILLOW = 0
_JPEG_RATIOS = (1, 2, 4, 8)
_TF_DECODERS = _JPEG_RATIOS + ("png",)
_SHRINKS = ((True, True), (True, False), (False, True), (False, False))  # (height, width)


# --------------------------------------------------------------------------- checking files


def choose_road(header, target_size, complete=True):
    """Pick how one image will be decoded: a TensorFlow road, or Pillow (road 0).

    Plain 8-bit RGB or grayscale JPEGs and PNGs, upright and complete, are decoded by
    TensorFlow (JPEGs at the largest 1/2, 1/4 or 1/8 DCT scale that stays at least
    ``target_size``, like Pillow's ``draft``); everything else by Pillow, which names the
    problem if decoding fails.

    Parameters
    ----------
    header : dict
        ``helpers.files.images.read_header`` of the image (``width``, ``height``, ``mode``,
        ``format``, ``orientation``).
    target_size : (height, width)
    complete : bool
        Whether the file ends as a complete JPEG or PNG does (``helpers.files.images.is_complete``).

    Returns
    -------
    int
    """
    if header["mode"] not in ("RGB", "L") or header["format"] not in ("JPEG", "PNG"):
        return _PILLOW
    if header.get("orientation", 1) not in (None, 1) or not complete:
        return _PILLOW
    height, width = header["height"], header["width"]
    if header["format"] == "PNG":
        decoder = "png"
    else:
        # Same rule as Pillow's draft(): the largest 1/ratio scale still >= the target.
        scale = min(width // target_size[1], height // target_size[0])
        decoder = max(r for r in _JPEG_RATIOS if r <= max(scale, 1))
        height, width = -(-height // decoder), -(-width // decoder)  # libjpeg rounds up
    if height * width > images.LARGE_PIXELS:
        return _PILLOW  # one copy of the pixels in Pillow, four in TensorFlow's decode and resize
    shrinks = (height >= target_size[0], width >= target_size[1])
    return 1 + _TF_DECODERS.index(decoder) * len(_SHRINKS) + _SHRINKS.index(shrinks)


def _check_file(path, target_size, full_decode):
    """Return ``(road, None)`` for a usable file or ``(None, reason)`` for a bad one."""
    try:
        header = images.read_header(path)
        if full_decode:
            images.read_image(path, target_size)
        complete = images.is_complete(path, header["format"])
    except images.ImageError as error:
        return None, error.reason
    except OSError as error:
        return None, f"cannot read ({error.strerror or error})"
    except ValueError as error:  # e.g. a NUL byte in the name
        return None, f"cannot read ({error})"
    try:
        return choose_road(header, target_size, complete), None
    except Exception:  # anything odd in the header: let Pillow decide while decoding
        return _PILLOW, None


def check_files(paths, target_size=(64, 64), full_decode=False, workers=None):
    """Check image files up front and choose how each one will be decoded.

    Parameters
    ----------
    paths : list of str
    target_size : tuple of int
        ``(height, width)`` the images will be resized to.
    full_decode : bool
        Decode every image completely (slow, finds truncated files too) instead of
        reading headers only.
    workers : int, optional
        Threads to use (Pillow releases the GIL while decoding).

    Returns
    -------
    roads : numpy.ndarray of int
        Decoder per file (-1 for a bad file).
    skipped : list of dict
        ``{"path", "reason"}`` of each bad file.
    """
    workers = workers or min(8, (os.cpu_count() or 1) + 2)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda p: _check_file(p, target_size, full_decode), paths))
    roads = np.array([-1 if road is None else road for road, _ in results], dtype=np.int32)
    skipped = [{"path": p, "reason": reason} for p, (_, reason) in zip(paths, results) if reason]
    return roads, skipped


# --------------------------------------------------------------------------- decoding


def _tf_resize(image, target_size, shrink_height, shrink_width):
    """``helpers.files.images.resize`` in TensorFlow: area averaging to shrink, bilinear to enlarge.

    Antialiased bilinear (``tf.image.resize(antialias=True)``) costs about as much as
    the JPEG decoding itself; area averaging costs about an eighth of it.
    """
    image = tf.cast(image, tf.float32)

    def method(shrink):
        return "area" if shrink else "bilinear"

    if shrink_height == shrink_width:
        resized = tf.image.resize(image, target_size, method=method(shrink_height))
    else:  # one axis at a time, each with its own filter
        rows = tf.image.resize(image, (target_size[0], tf.shape(image)[1]), method=method(shrink_height))
        resized = tf.image.resize(rows, target_size, method=method(shrink_width))
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def make_decoder(target_size, roads, warned=None):
    """Return ``decode(encoded, road_index, name) -> (uint8 image, ok)`` for ``Dataset.map``.

    ``encoded`` is an image file's bytes (from ``tf.io.read_file`` or a TFRecord), ``name``
    what to call it in a warning (a file name's raw bytes are fine), and ``road_index`` a
    position in ``roads``, the distinct roads of the images (``choose_road``): the graph
    holds only the decoders in use. The Pillow road never raises: an image it cannot read
    comes back black with ``ok`` False, after one warning naming it. The TensorFlow roads
    raise on a corrupt file; ``Dataset.ignore_errors()`` right after the ``map`` then
    drops that one element.

    Parameters
    ----------
    target_size : (height, width)
    roads : sequence of int
    warned : set, optional
        Names already warned about (shared, so each bad image is named once).

    Returns
    -------
    callable
    """
    height, width = target_size
    warned = set() if warned is None else warned

    def pillow(encoded, name):
        name = os.fsdecode(name) if isinstance(name, bytes) else str(name)
        try:
            return images.read_image(encoded, target_size, name=name), True
        except images.ImageError as error:
            if name not in warned:
                warned.add(name)
                warn(f"skipping {fileio.printable(name)}: {error.reason}")
            return np.zeros((height, width, 3), dtype=np.uint8), False

    def pillow_branch(encoded, name):
        image, ok = tf.numpy_function(pillow, [encoded, name], [tf.uint8, tf.bool], stateful=False)
        return tf.ensure_shape(image, (height, width, 3)), tf.ensure_shape(ok, ())

    def tf_branch(encoded, decoder, shrinks):
        if decoder == "png":
            image = tf.io.decode_png(encoded, channels=3, dtype=tf.uint8)
        else:
            image = tf.io.decode_jpeg(encoded, channels=3, ratio=decoder, dct_method="INTEGER_ACCURATE")
        return _tf_resize(image, target_size, *shrinks), tf.constant(True)

    def branch(road):
        if road == _PILLOW:
            return pillow_branch
        decoder, shrinks = divmod(road - 1, len(_SHRINKS))
        return lambda encoded, name: tf_branch(encoded, _TF_DECODERS[decoder], _SHRINKS[shrinks])

    branches = [branch(int(road)) for road in roads]

    def decode(encoded, road_index, name):
        if len(branches) == 1:
            image, ok = branches[0](encoded, name)
        else:
            image, ok = tf.switch_case(road_index, [lambda b=b: b(encoded, name) for b in branches])
        return tf.ensure_shape(image, (height, width, 3)), ok

    return decode


# --------------------------------------------------------------------------- datasets


@contextlib.contextmanager
def quiet_upstream_warnings():
    """Silence, inside the ``with`` block only, two harmless warnings Keras gives with these datasets.

    - "Your input ran out of data": with ``on_error="skip"`` the pipeline may leave out
      unreadable files, so Keras cannot know the dataset's length and says so when an
      epoch ends. In your own ``fit`` calls this warning can mean a real problem (a
      dataset shorter than ``steps_per_epoch``), so it is not silenced anywhere else.
    - "__array__ implementation doesn't accept a copy keyword": TensorFlow tensors and
      NumPy 2 disagree on a keyword; the values are right.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept")
        yield


def _check_target_size(target_size):
    if (
        not isinstance(target_size, (tuple, list))
        or len(target_size) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in target_size)
    ):
        raise ValueError(f"target_size: expected (height, width) positive integers, got {target_size!r}")
    return int(target_size[0]), int(target_size[1])


def _check_arguments(dataframe, x_col, y_col, class_mode, batch_size, shuffle_buffer_size, cache, on_error):
    if not isinstance(dataframe, pd.DataFrame):
        raise ValueError(f"dataframe: expected a pandas DataFrame, got {type(dataframe).__name__}")
    if class_mode not in CLASS_MODES:
        raise ValueError(f"class_mode: expected one of {CLASS_MODES}, got {class_mode!r}")
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error: expected one of {ON_ERROR}, got {on_error!r}")
    needed = [x_col] + ([y_col] if class_mode is not None else [])
    for column in needed:
        if column not in dataframe.columns:
            raise ValueError(f"no column {column!r} in the DataFrame; columns are {list(dataframe.columns)}")
    if len(dataframe) == 0:
        raise ValueError("dataframe: no rows")
    for name, value in (("batch_size", batch_size), ("shuffle_buffer_size", shuffle_buffer_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if not (cache is False or cache is True or isinstance(cache, (str, os.PathLike))):
        raise ValueError(f"cache: expected False, True or a file path, got {cache!r}")


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


def _encode(label_lists, vocabulary, class_mode, y_col):
    if class_mode == "multi_hot":
        return vocabulary.encode(label_lists)
    try:
        indices = vocabulary.encode_sparse(label_lists)
    except ValueError as error:
        raise ValueError(
            f"column {y_col!r}, class_mode={class_mode!r}: {error}; "
            f"use class_mode='multi_hot' for multi-label data"
        ) from None
    if class_mode == "sparse":
        return indices.astype(np.float32)
    return np.eye(len(vocabulary), dtype=np.float32)[indices]


def _labels(dataframe, y_col, classes, class_mode):
    """The vocabulary and the label array of every row (``(None, None)`` without labels)."""
    if class_mode is None:
        return None, None
    label_lists = to_label_lists(dataframe[y_col], column=y_col)
    if classes is None:
        vocabulary = LabelVocabulary.from_labels(label_lists)
    elif isinstance(classes, LabelVocabulary):
        vocabulary = classes
    else:
        vocabulary = LabelVocabulary(classes)
    return vocabulary, _encode(label_lists, vocabulary, class_mode, y_col)


def _warn_skipped(skipped, total):
    for item in skipped:
        warn(f"skipping {fileio.printable(item['path'])}: {item['reason']}")
    if skipped:
        warn(f"skipped {len(skipped)} of {total} image files (see the warnings above)")


def _usable_files(paths, target_size, on_error):
    """Check the files; return the mask of usable ones, their roads, and the skipped ones."""
    roads, skipped = check_files(paths, target_size, full_decode=on_error == "raise")
    if skipped and on_error == "raise":
        listing = "\n".join(f"  {fileio.printable(item['path'])}: {item['reason']}"
                            for item in skipped[:50])
        more = f"\n  ... and {len(skipped) - 50} more" if len(skipped) > 50 else ""
        raise ValueError(
            f"{len(skipped)} of {len(paths)} image files cannot be read:\n{listing}{more}\n"
            f"fix or remove them, or pass on_error='skip' to leave them out"
        )
    _warn_skipped(skipped, len(paths))
    keep = roads >= 0
    if not keep.any():
        raise ValueError(f"none of the {len(paths)} image files can be read (first: "
                         f"{fileio.printable(paths[0])}: {skipped[0]['reason']})")
    return keep, roads[keep], skipped


def _decoded_images(paths, roads, labels, target_size, shuffle, seed, warned, skip_errors):
    """Dataset of ``(uint8 image, ok, row, *label)``: the file list (shuffled whole), decoded in parallel.

    ``row`` is the position in ``paths``. File names go to TensorFlow as their bytes
    (``os.fsencode``), so a name that is not valid UTF-8 opens like any other.
    """
    used_roads, road_indices = np.unique(roads, return_inverse=True)
    road_indices = road_indices.astype(np.int32)
    encoded_paths = np.array([os.fsencode(path) for path in paths], dtype=object)
    rows = np.arange(len(paths), dtype=np.int64)
    tensors = (encoded_paths, road_indices, rows) + (() if labels is None else (labels,))
    dataset = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    decode = make_decoder(target_size, used_roads, warned)

    def load(path, road_index, row, *label):
        image, ok = decode(tf.io.read_file(path), road_index, path)
        return (image, ok, row) + label

    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if skip_errors:
        # A file that fails inside TensorFlow (corrupt data behind a good header, or deleted
        # since the check) is dropped here, alone; after batch() it would take its batch.
        dataset = dataset.ignore_errors()
    return dataset


def _cache_file(cache, paths, target_size, labels):
    """File cache path with a fingerprint, so a changed dataset never reads a stale cache."""
    digest = hashlib.sha256()
    digest.update(json.dumps([list(paths), list(target_size)]).encode())
    if labels is not None:
        digest.update(np.ascontiguousarray(labels).tobytes())
    path = Path(cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"{path}-{digest.hexdigest()[:12]}"


def _cached(dataset, cache, cache_file, shuffle, seed, shuffle_buffer_size, n_images):
    """Cache decoded images (memory, or ``cache_file``); a cache replays in one order, so reshuffle."""
    if cache is False:
        return dataset
    dataset = dataset.cache("" if cache is True else cache_file)
    if shuffle:
        buffer = min(n_images, shuffle_buffer_size)
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    return dataset


def _batched(dataset, n_images, batch_size, target_size, augmenter, augment_params, seed, may_fail,
             skip_errors, with_rows=False):
    """Batch, drop images that failed, scale to [0, 1], augment, and prefetch.

    ``with_rows``: the prediction variant, ``(images, *label, rows)`` batches, each image
    once, no augmentation and no top-up.
    """
    dataset = dataset.batch(batch_size)

    def finish(image, ok, row, *label, batch_seed=None):
        if may_fail:
            image = tf.boolean_mask(image, ok)
            row = tf.boolean_mask(row, ok)
            label = tuple(tf.boolean_mask(y, ok) for y in label)
        image = tf.cast(image, tf.float32) / 255.0
        if with_rows:
            return (image,) + label[:1] + (row,)
        if augment_params is not None:
            image = tf.numpy_function(
                lambda x, s: augmentations.augment_batch(x, augment_params, s), [image, batch_seed],
                tf.float32, stateful=False,
            )
            image = tf.ensure_shape(image, (None, *target_size, 3))
        elif augmenter is not None:
            image = augmenter(image, training=True)
        return image if not label else (image, label[0])

    if augment_params is not None and not with_rows:
        # One seed per batch, drawn anew each epoch: the augmentation is repeatable with
        # `seed` however many batches are augmented at once.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        dataset = tf.data.Dataset.zip(dataset, seeds).map(
            lambda batch, batch_seed: finish(*batch, batch_seed=batch_seed),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        dataset = dataset.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    if may_fail:
        dataset = dataset.filter(lambda image, *rest: tf.shape(image)[0] > 0)
    if skip_errors and not with_rows:
        # Dropping an image makes the length unknown to tf.data, and Keras then warns "Your
        # input ran out of data" at every epoch and every predict. Keep the number of
        # batches fixed instead: should an image fail while decoding (rare: the files were
        # checked), the pass is topped up with the first images of the next one.
        dataset = dataset.repeat().take(-(-n_images // batch_size))
    return dataset.prefetch(tf.data.AUTOTUNE)


def missing_files(dataset, rows):
    """The files of a dataset that a pass did not deliver, each with its reason, named once.

    Parameters
    ----------
    dataset : tf.data.Dataset
        From :func:`dataset_from_dataframe`.
    rows : array-like of int
        The rows that arrived (the last part of each ``dataset.for_prediction`` batch).

    Returns
    -------
    list of dict
        ``{"path", "reason"}`` per file of ``dataset.file_paths`` that never arrived, in
        row order. The reason comes from reading the file again with
        ``helpers.files.images.read_image``; each file not named yet is warned about once.
    """
    arrived = np.zeros(len(dataset.file_paths), dtype=bool)
    arrived[np.asarray(rows, dtype=np.int64)] = True
    missing = []
    for row in np.flatnonzero(~arrived):
        path = dataset.file_paths[row]
        try:
            images.read_image(path, dataset.target_size)
            reason = "TensorFlow could not decode it (Pillow can: save it again as a plain JPEG or PNG)"
        except images.ImageError as error:
            reason = error.reason
        except OSError as error:
            reason = f"cannot read ({error.strerror or error})"
        missing.append({"path": path, "reason": reason})
        if path not in dataset.warned:
            dataset.warned.add(path)
            warn(f"skipping {fileio.printable(path)}: {reason}")
    return missing


def dataset_from_dataframe(
    dataframe,
    directory=None,
    x_col="filename",
    y_col="labels",
    classes=None,
    class_mode="multi_hot",
    target_size=(64, 64),
    batch_size=32,
    shuffle=True,
    seed=None,
    augment=None,
    cache=False,
    on_error="skip",
    shuffle_buffer_size=1024,
):
    """Stream images listed in a DataFrame as a batched ``tf.data.Dataset``.

    The Keras 3 counterpart of ``ImageDataGenerator(rescale=1/255, ...)
    .flow_from_dataframe(...)``. Pass ``augment`` for the training set only:
    validation and test datasets must see the images as they are.

    Parameters
    ----------
    dataframe : pandas.DataFrame
        One row per image (e.g. from ``helpers.data.load_dataset``).
    directory : str, optional
        Joined in front of each ``x_col`` value (absolute values are kept). Leave it
        None for DataFrames from ``helpers.data``: their ``filename`` already
        includes the image directory.
    x_col, y_col : str
        Columns with the image paths and the label lists (or single label strings).
    classes : list of str or LabelVocabulary, optional
        The classes; by default every label found in ``y_col`` (sorted).
    class_mode : {"multi_hot", "categorical", "sparse", None}
        Multi-hot rows (multi-label), one-hot rows or class indices (one label per
        image), or no labels at all (for prediction).
    target_size : tuple of int
        ``(height, width)`` every image is resized to.
    batch_size : int
    shuffle : bool
        Shuffle every epoch. Pass False for evaluation and prediction, to get
        batches in DataFrame row order.
    seed : int, optional
        Seed for shuffling and augmentation.
    augment : dict or keras.Layer, optional
        ImageDataGenerator-style arguments (see ``helpers.augment.augmentation``),
        applied to each batch with OpenCV (``helpers.augment.augment_images``), or
        ready-made Keras layers, called on each batch with ``training=True``. Training
        data only.
    cache : bool or str
        ``True`` keeps decoded images in memory after the first epoch; a path
        caches them in files there (a fingerprint of the file list is appended
        to the name, so a changed dataset never reads an old cache).
    on_error : {"skip", "raise"}
        ``"skip"``: unreadable files are left out with one warning each and a total
        (a file found broken only while decoding is left out with a warning then,
        never stopping an epoch; the epoch keeps its number of batches). ``"raise"``: every image is decoded once up front
        and a ``ValueError`` lists the broken ones.
    shuffle_buffer_size : int
        Shuffle buffer used after a cache (before a cache the whole file list is
        shuffled, which costs nothing).

    Returns
    -------
    tf.data.Dataset
        Batches of ``(images, labels)``: images float32 in [0, 1] shaped
        ``(batch, height, width, 3)``, labels float32; only images when
        ``class_mode`` is None. Extra attributes: ``class_names``, ``vocabulary``,
        ``file_paths`` (files kept, in row order), ``skipped`` (``{"path", "reason"}``
        of files left out up front), ``target_size``, and ``for_prediction``: the same
        images without augmentation, each once, as ``(images, labels, rows)`` batches
        (``(images, rows)`` without labels), ``rows`` indexing ``file_paths``; give the
        rows that arrived to :func:`missing_files` to name the files that failed while
        decoding. ``len(dataset)`` is the number of batches,
        ``ceil(len(file_paths) / batch_size)``.
    """
    _check_arguments(dataframe, x_col, y_col, class_mode, batch_size, shuffle_buffer_size, cache, on_error)
    target_size = _check_target_size(target_size)
    augmenter, augment_params = _augmenter(augment)
    paths = _file_paths(dataframe, x_col, directory)
    vocabulary, labels = _labels(dataframe, y_col, classes, class_mode)

    keep, roads, skipped = _usable_files(paths, target_size, on_error)
    kept_paths = [path for path, kept in zip(paths, keep) if kept]
    kept_labels = None if labels is None else labels[keep]

    warned = {item["path"] for item in skipped}  # each file is named once
    skip_errors = on_error == "skip"
    decoded = _decoded_images(kept_paths, roads, kept_labels, target_size, shuffle, seed, warned,
                              skip_errors)
    cache_file = None if isinstance(cache, bool) else _cache_file(cache, kept_paths, target_size, kept_labels)
    decoded = _cached(decoded, cache, cache_file, shuffle, seed, shuffle_buffer_size, len(kept_paths))
    batching = dict(n_images=len(kept_paths), batch_size=batch_size, target_size=target_size,
                    augmenter=augmenter, augment_params=augment_params, seed=seed,
                    may_fail=skip_errors and bool((roads == _PILLOW).any()), skip_errors=skip_errors)
    dataset = _batched(decoded, **batching)
    dataset.for_prediction = _batched(decoded, **batching, with_rows=True)
    dataset.class_names = None if vocabulary is None else list(vocabulary.classes)
    dataset.vocabulary = vocabulary
    dataset.file_paths = kept_paths
    dataset.skipped = skipped
    dataset.target_size = target_size
    dataset.warned = warned
    return dataset


def dataset_from_directory(directory, classes=None, class_mode="categorical", folder_separator=None, **kwargs):
    """Stream images from class folders (``directory/<class>/...``) as a ``tf.data.Dataset``.

    The Keras 3 counterpart of ``flow_from_directory``. With ``class_mode=None``
    every image under ``directory`` is listed, no class sub-folder needed.

    Parameters
    ----------
    directory : str or Path
    classes : list of str or LabelVocabulary, optional
    class_mode : {"categorical", "sparse", "multi_hot", None}
    folder_separator : str, optional
        Split folder names into several labels (``"red_shirt"`` → red, shirt with
        ``"_"``); use with ``class_mode="multi_hot"``.
    **kwargs
        Everything else ``dataset_from_dataframe`` takes.

    Returns
    -------
    tf.data.Dataset
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
