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
photos, suspicious files) goes through ``helpers.images.read_image`` (Pillow).
Both roads resize the same way (``helpers.images.resize``) and give the same pixels
to within one grey level, and the same as ``read_image`` gives at prediction time.
"""
import concurrent.futures
import hashlib
import json
import math
import numbers
import os
import warnings
from pathlib import Path

import cv2
import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import layers
from PIL import Image

from helpers import images
from helpers.labels import LabelVocabulary, to_label_lists

CLASS_MODES = ("multi_hot", "categorical", "sparse", None)
ON_ERROR = ("skip", "raise")
FILL_MODES = ("constant", "nearest", "reflect", "wrap")
AUGMENT_ARGUMENTS = (
    "rotation_range",
    "width_shift_range",
    "height_shift_range",
    "shear_range",
    "zoom_range",
    "horizontal_flip",
    "vertical_flip",
    "fill_mode",
    "cval",
)
# ImageDataGenerator arguments that mean something else (or nothing) here.
_AUGMENT_HINTS = {
    "rescale": "images are already scaled to [0, 1]; drop `rescale`",
    "validation_split": "split the DataFrame first (helpers.splits.split_dataframe)",
    "preprocessing_function": "map your function over the dataset: dataset.map(fn)",
}

# Decoding roads, chosen per file from its header. Road 0 is Pillow. The TensorFlow
# roads pair a decoder (JPEG at 1/1, 1/2, 1/4 or 1/8 scale, or PNG) with the filter of
# each axis (shrink or enlarge), so the decoding graph has one switch and no nested
# conditionals, which made the first epoch almost twice as slow.
_PILLOW = 0
_JPEG_RATIOS = (1, 2, 4, 8)
_TF_DECODERS = _JPEG_RATIOS + ("png",)
_SHRINKS = ((True, True), (True, False), (False, True), (False, False))  # (height, width)
_FILE_END = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}  # end marker of a complete file
_TAIL_BYTES = 4096


# --------------------------------------------------------------------------- augmentation


def _fraction(name, value, upper=1.0):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < upper:
        raise ValueError(f"augment[{name!r}]: expected a number in [0, {upper:g}), got {value!r}")
    return float(value)


def affine_matrices(xp, uniforms, params, height, width):
    """Affine maps (output pixel → input pixel) of ImageDataGenerator-style random transforms.

    Shared by the ``RandomAffine`` layer (``xp=keras.ops``) and ``augment_images``
    (``xp=numpy``), so both draw from the same distribution.

    Parameters
    ----------
    xp : module
        ``numpy`` or ``keras.ops``.
    uniforms : array of shape (batch, 8)
        Uniform random numbers in [0, 1): rotation, shear, x shift, y shift, x zoom,
        y zoom, horizontal flip, vertical flip.
    params : dict
        ``rotation_range`` and ``shear_range`` in degrees, the shift ranges as
        fractions, ``zoom_range`` as ``(lower, upper)``, the two flips as booleans.
    height, width : int

    Returns
    -------
    array of shape (batch, 6)
        ``[a0, a1, a2, b0, b1, b2]``: output pixel ``(x, y)`` samples the input at
        ``(a0 x + a1 y + a2, b0 x + b1 y + b2)``.
    """

    def between(column, low, high):
        return low + (high - low) * uniforms[:, column]

    rotation, shear_angle = params["rotation_range"], params["shear_range"]
    theta = between(0, -rotation, rotation) * (math.pi / 180)
    shear = between(1, -shear_angle, shear_angle) * (math.pi / 180)
    shift_x = between(2, -params["width_shift_range"], params["width_shift_range"]) * width
    shift_y = between(3, -params["height_shift_range"], params["height_shift_range"]) * height
    zoom_x = between(4, *params["zoom_range"])
    zoom_y = between(5, *params["zoom_range"])
    # A flip is a zoom by -1 about the centre (applied to the output, as in Keras 2).
    if params["horizontal_flip"]:
        zoom_x = xp.where(uniforms[:, 6] < 0.5, -zoom_x, zoom_x)
    if params["vertical_flip"]:
        zoom_y = xp.where(uniforms[:, 7] < 0.5, -zoom_y, zoom_y)
    cos, sin = xp.cos(theta), xp.sin(theta)
    # Keras 2's order: rotation @ shift @ shear @ zoom, about the image centre.
    a0 = cos * zoom_x
    a1 = -(cos * xp.sin(shear) + sin * xp.cos(shear)) * zoom_y
    b0 = sin * zoom_x
    b1 = (cos * xp.cos(shear) - sin * xp.sin(shear)) * zoom_y
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    a2 = centre_x - a0 * centre_x - a1 * centre_y + cos * shift_x - sin * shift_y
    b2 = centre_y - b0 * centre_x - b1 * centre_y + sin * shift_x + cos * shift_y
    return xp.stack([a0, a1, a2, b0, b1, b2], axis=1)


@keras.saving.register_keras_serializable(package="helpers")
class RandomAffine(layers.Layer):
    """Random flip, rotation, shift, shear and zoom in ONE resampling, in ImageDataGenerator's units.

    Keras 3 has one layer per transform, and chaining them resamples (and blurs) the
    image once per layer. Keras 2 composed them into one matrix; so does this layer,
    which is also several times faster.

    Parameters
    ----------
    rotation_range : float
        Degrees; each image turns by a random angle in ``[-rotation_range, rotation_range]``.
    width_shift_range, height_shift_range : float
        Fractions of the width/height to shift by, at most.
    shear_range : float
        Shear angle in degrees, at most (horizontal shear, as in Keras 2).
    zoom_range : tuple of float
        ``(lower, upper)`` scale of the sampled area per axis (below 1 zooms in).
    horizontal_flip, vertical_flip : bool
        Mirror half of the images left-right / top-bottom.
    fill_mode : {"nearest", "constant", "reflect", "wrap"}
    cval : float
        Fill value for ``fill_mode="constant"``, in the units of the images (0..1 here).
    interpolation : {"bilinear", "nearest"}
    seed : int, optional
    """

    def __init__(
        self,
        rotation_range=0.0,
        width_shift_range=0.0,
        height_shift_range=0.0,
        shear_range=0.0,
        zoom_range=(1.0, 1.0),
        horizontal_flip=False,
        vertical_flip=False,
        fill_mode="nearest",
        cval=0.0,
        interpolation="bilinear",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rotation_range = float(rotation_range)
        self.width_shift_range = float(width_shift_range)
        self.height_shift_range = float(height_shift_range)
        self.shear_range = float(shear_range)
        self.zoom_range = (float(zoom_range[0]), float(zoom_range[1]))
        self.horizontal_flip = bool(horizontal_flip)
        self.vertical_flip = bool(vertical_flip)
        self.fill_mode = fill_mode
        self.cval = float(cval)
        self.interpolation = interpolation
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True

    def transform(self, batch, height, width):
        """Random ``(batch, 8)`` projective transforms (output pixel → input pixel)."""
        ops = keras.ops
        uniforms = keras.random.uniform((batch, 8), seed=self.seed_generator)
        matrices = affine_matrices(ops, uniforms, self.get_config(), height, width)
        return ops.concatenate([matrices, ops.zeros_like(matrices[:, :2])], axis=1)

    def call(self, images, training=True):
        if not training:
            return images
        unbatched = len(images.shape) == 3
        if unbatched:
            images = keras.ops.expand_dims(images, 0)
        batch = keras.ops.shape(images)[0]
        height, width = images.shape[1], images.shape[2]
        outputs = keras.ops.image.affine_transform(
            images,
            self.transform(batch, height, width),
            interpolation=self.interpolation,
            fill_mode=self.fill_mode,
            fill_value=self.cval,
        )
        return outputs[0] if unbatched else outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "rotation_range": self.rotation_range,
            "width_shift_range": self.width_shift_range,
            "height_shift_range": self.height_shift_range,
            "shear_range": self.shear_range,
            "zoom_range": list(self.zoom_range),
            "horizontal_flip": self.horizontal_flip,
            "vertical_flip": self.vertical_flip,
            "fill_mode": self.fill_mode,
            "cval": self.cval,
            "interpolation": self.interpolation,
            "seed": self.seed,
        }


def _parse_augment(augment):
    """Validate ImageDataGenerator-style arguments; return them in Keras 2 units."""
    if not isinstance(augment, dict):
        raise ValueError(
            f"augment: expected a dict of ImageDataGenerator-style arguments, got {augment!r}"
        )
    unknown = sorted(set(augment) - set(AUGMENT_ARGUMENTS))
    if unknown:
        hints = "".join(f"; {key}: {_AUGMENT_HINTS[key]}" for key in unknown if key in _AUGMENT_HINTS)
        raise ValueError(
            f"augment: unsupported argument(s) {unknown}; supported are {list(AUGMENT_ARGUMENTS)}{hints}"
        )
    fill_mode = augment.get("fill_mode", "nearest")
    if fill_mode not in FILL_MODES:
        raise ValueError(f"augment['fill_mode']: expected one of {FILL_MODES}, got {fill_mode!r}")
    cval = augment.get("cval", 0.0)
    if isinstance(cval, bool) or not isinstance(cval, numbers.Real) or not 0 <= cval <= 255:
        raise ValueError(f"augment['cval']: expected a pixel value in [0, 255], got {cval!r}")
    for key in ("horizontal_flip", "vertical_flip"):
        if not isinstance(augment.get(key, False), bool):
            raise ValueError(f"augment[{key!r}]: expected True or False, got {augment[key]!r}")
    for name in ("width_shift_range", "height_shift_range"):
        value = augment.get(name, 0)
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and value >= 1:
            raise ValueError(
                f"augment[{name!r}]: {value!r} would be a shift in pixels in Keras 2; "
                f"give a fraction of the image size in [0, 1) instead"
            )
    zoom = augment.get("zoom_range", 0)
    if isinstance(zoom, (list, tuple)):
        if (
            len(zoom) != 2
            or not all(isinstance(z, numbers.Real) and not isinstance(z, bool) and z > 0 for z in zoom)
            or zoom[0] > zoom[1]
        ):
            raise ValueError(
                f"augment['zoom_range']: expected [lower, upper] with 0 < lower <= upper, got {zoom!r}"
            )
        zoom = (float(zoom[0]), float(zoom[1]))
    else:
        z = _fraction("zoom_range", zoom)
        zoom = (1 - z, 1 + z)
    return {
        "rotation_range": _fraction("rotation_range", augment.get("rotation_range", 0), upper=360),
        "width_shift_range": _fraction("width_shift_range", augment.get("width_shift_range", 0)),
        "height_shift_range": _fraction("height_shift_range", augment.get("height_shift_range", 0)),
        "shear_range": _fraction("shear_range", augment.get("shear_range", 0), upper=90),
        "zoom_range": zoom,
        "horizontal_flip": augment.get("horizontal_flip", False),
        "vertical_flip": augment.get("vertical_flip", False),
        "fill_mode": fill_mode,
        # Keras 2 filled before rescaling, in 0..255 units; our images are in [0, 1].
        "cval": float(cval) / 255.0,
    }


def augmentation(augment, seed=None, fused=True):
    """Build Keras 3 augmentation layers from ImageDataGenerator-style arguments.

    Units follow Keras 2 and are converted for Keras 3:

    - ``rotation_range`` is in degrees; ``RandomRotation`` wants a fraction of a full
      turn, so 25° becomes ``factor=25/360``.
    - ``width_shift_range``/``height_shift_range`` are fractions of the size, as in
      ``RandomTranslation``.
    - ``shear_range`` is an angle in DEGREES in Keras 2, so the common
      ``shear_range=0.2`` is a 0.2° shear, next to nothing. ``RandomShear`` wants a
      slope instead: we pass sin(angle), the horizontal shift per row of Keras 2.
    - ``zoom_range=z`` scales the sampled area by a random factor in ``[1 - z, 1 + z]``
      per axis (below 1 zooms in): ``RandomZoom(height_factor=(-z, z),
      width_factor=(-z, z))``, whose negative values also zoom in.
    - ``fill_mode`` defaults to ``"nearest"`` (Keras 2's default; Keras 3's is
      ``"reflect"``); ``cval`` is the fill value in 0..255 pixel units, as in Keras 2.

    Parameters
    ----------
    augment : dict
        Keys from ``AUGMENT_ARGUMENTS``; anything else raises ``ValueError``.
    seed : int, optional
        Seed for the random layers.
    fused : bool
        True: one ``RandomAffine`` layer that flips, rotates, shifts, shears and
        zooms in a single resampling, like Keras 2 and like the input pipeline
        (which does the same with OpenCV, see ``augment_images``).
        False: the one-to-one chain of stock Keras layers (``RandomRotation``,
        ``RandomTranslation``, ``RandomShear``, ``RandomZoom``), which resamples once
        per layer: blurrier and about four times slower.

    Returns
    -------
    keras.Sequential
        Call it with ``training=True`` on a batch of images; with ``training=False``
        (as in ``predict``/``evaluate``) it passes images through unchanged.
    """
    args = _parse_augment(augment)
    zoom = args["zoom_range"]
    if fused:
        if _is_identity(args):
            return keras.Sequential([], name="augmentation")
        return keras.Sequential([RandomAffine(**args, seed=seed)], name="augmentation")
    seeds = iter(range(seed, seed + 10) if seed is not None else [None] * 10)
    fill = {"fill_mode": args["fill_mode"], "fill_value": args["cval"]}
    steps = []
    flips = [d for d in ("horizontal", "vertical") if args[f"{d}_flip"]]
    if flips:
        steps.append(layers.RandomFlip("horizontal_and_vertical" if len(flips) == 2 else flips[0], seed=next(seeds)))
    if args["rotation_range"]:
        steps.append(layers.RandomRotation(args["rotation_range"] / 360, seed=next(seeds), **fill))
    if args["width_shift_range"] or args["height_shift_range"]:
        steps.append(
            layers.RandomTranslation(
                height_factor=args["height_shift_range"],
                width_factor=args["width_shift_range"],
                seed=next(seeds),
                **fill,
            )
        )
    if args["shear_range"]:
        slope = math.sin(math.radians(args["shear_range"]))
        steps.append(layers.RandomShear(x_factor=slope, y_factor=0.0, seed=next(seeds), **fill))
    if zoom != (1.0, 1.0):
        # Keras 2 draws the height and width scale independently; so do we.
        factor = (zoom[0] - 1, zoom[1] - 1)
        steps.append(layers.RandomZoom(height_factor=factor, width_factor=factor, seed=next(seeds), **fill))
    return keras.Sequential(steps, name="augmentation")


_CV2_BORDERS = {
    "nearest": cv2.BORDER_REPLICATE,
    "constant": cv2.BORDER_CONSTANT,
    "reflect": cv2.BORDER_REFLECT,  # d c b a | a b c d | d c b a, as in Keras and SciPy
    "wrap": cv2.BORDER_WRAP,
}
_CV2_INTERPOLATION = {"bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}


def warp_affine(images, matrices, fill_mode="nearest", cval=0.0, interpolation="bilinear"):
    """Resample each image of a NumPy batch through its own affine map, with OpenCV.

    The same operation as ``keras.ops.image.affine_transform`` on float images,
    several times faster on a CPU. One difference: with ``fill_mode="wrap"`` OpenCV
    tiles the image, while TensorFlow (like SciPy, hence Keras 2) repeats it with a
    period one pixel short of its size; pixels differ along the seams.

    Parameters
    ----------
    images : numpy.ndarray
        ``(batch, height, width, channels)``, at most 4 channels.
    matrices : numpy.ndarray
        ``(batch, 6)`` maps from output to input pixels, as ``affine_matrices`` gives.
    fill_mode : {"nearest", "constant", "reflect", "wrap"}
    cval : float
        Fill value for ``fill_mode="constant"``.
    interpolation : {"bilinear", "nearest"}

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as ``images``.
    """
    images = np.asarray(images)
    if images.ndim != 4 or not 1 <= images.shape[-1] <= 4:
        raise ValueError(f"images: expected (batch, height, width, 1..4 channels), got shape {images.shape}")
    matrices = np.asarray(matrices, dtype=np.float64).reshape(len(images), 2, 3)
    height, width = images.shape[1:3]
    flags = _CV2_INTERPOLATION[interpolation] | cv2.WARP_INVERSE_MAP
    output = np.empty_like(images)
    for image, matrix, target in zip(images, matrices, output):
        warped = cv2.warpAffine(
            image, matrix, (width, height), flags=flags,
            borderMode=_CV2_BORDERS[fill_mode], borderValue=(float(cval),) * 4,
        )
        target[...] = warped.reshape(target.shape)  # OpenCV drops a single channel axis
    return output


def _augment(images, params, seed):
    uniforms = np.random.default_rng(seed).random((len(images), 8))
    height, width = images.shape[1:3]
    matrices = affine_matrices(np, uniforms, params, height, width)
    return warp_affine(images, matrices, params["fill_mode"], params["cval"])


def _is_identity(params):
    moves = ("rotation_range", "width_shift_range", "height_shift_range", "shear_range",
             "horizontal_flip", "vertical_flip")
    return not any(params[key] for key in moves) and params["zoom_range"] == (1.0, 1.0)


def augment_images(images, augment, seed=None):
    """Augment a batch of images exactly as the input pipeline does for training.

    One random affine map per image (flip, rotation, shift, shear, zoom), applied in
    a single resampling with OpenCV. ``augmentation`` builds the same transforms as
    Keras layers, for use inside a model.

    Parameters
    ----------
    images : array-like
        ``(batch, height, width, channels)`` floats in [0, 1].
    augment : dict
        ImageDataGenerator-style arguments (see ``augmentation``).
    seed : int, optional
        The same seed gives the same transforms.

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``images``.
    """
    params = _parse_augment(augment)
    images = np.asarray(images, dtype=np.float32)
    if _is_identity(params):
        return images.copy()
    return _augment(images, params, seed)


# --------------------------------------------------------------------------- checking files


def _is_complete(path, image_format):
    """A JPEG ends with an EOI marker, a PNG with an IEND chunk; truncated files do not."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - _TAIL_BYTES))
        return _FILE_END[image_format] in handle.read()


def _choose_road(path, header, target_size):
    """Pick the decoder of one readable file: a TensorFlow road or Pillow."""
    if header["mode"] not in ("RGB", "L") or header["format"] not in ("JPEG", "PNG"):
        return _PILLOW
    with Image.open(path) as image:
        orientation = image.getexif().get(0x0112, 1) if "exif" in image.info else 1
    # Suspicious files go to Pillow, which names the problem if decoding fails.
    if orientation not in (None, 1) or not _is_complete(path, header["format"]):
        return _PILLOW
    height, width = header["height"], header["width"]
    if header["format"] == "PNG":
        decoder = "png"
    else:
        # Same rule as Pillow's draft(): the largest 1/ratio scale still >= the target.
        scale = min(width // target_size[1], height // target_size[0])
        decoder = max(r for r in _JPEG_RATIOS if r <= max(scale, 1))
        height, width = -(-height // decoder), -(-width // decoder)  # libjpeg rounds up
    shrinks = (height >= target_size[0], width >= target_size[1])
    return 1 + _TF_DECODERS.index(decoder) * len(_SHRINKS) + _SHRINKS.index(shrinks)


def _check_file(path, target_size, full_decode):
    """Return ``(road, None)`` for a usable file or ``(None, reason)`` for a bad one."""
    try:
        header = images.read_header(path)
        if full_decode:
            images.read_image(path, target_size)
    except images.ImageError as error:
        return None, error.reason
    except OSError as error:
        return None, f"cannot read ({error.strerror or error})"
    try:
        return _choose_road(path, header, target_size), None
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
    """``helpers.images.resize`` in TensorFlow: area averaging to shrink, bilinear to enlarge.

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


def _make_decoder(target_size, warned, roads):
    """Return ``decode(path, index) -> (uint8 image, ok)`` for use in ``Dataset.map``.

    ``index`` is a position in ``roads``, the distinct roads of the files: the graph
    holds only the decoders in use.
    """
    height, width = target_size

    def pillow(path):
        path = path.decode() if isinstance(path, bytes) else str(path)
        try:
            return images.read_image(path, target_size), True
        except images.ImageError as error:
            if path not in warned:
                warned.add(path)
                warnings.warn(f"skipping {path}: {error.reason}", stacklevel=2)
            return np.zeros((height, width, 3), dtype=np.uint8), False

    def pillow_branch(path):
        image, ok = tf.numpy_function(pillow, [path], [tf.uint8, tf.bool], stateful=False)
        return tf.ensure_shape(image, (height, width, 3)), tf.ensure_shape(ok, ())

    def tf_branch(path, decoder, shrinks):
        data = tf.io.read_file(path)
        if decoder == "png":
            image = tf.io.decode_png(data, channels=3, dtype=tf.uint8)
        else:
            image = tf.io.decode_jpeg(data, channels=3, ratio=decoder, dct_method="INTEGER_ACCURATE")
        return _tf_resize(image, target_size, *shrinks), tf.constant(True)

    def branch(road):
        if road == _PILLOW:
            return pillow_branch
        decoder, shrinks = divmod(road - 1, len(_SHRINKS))
        return lambda path: tf_branch(path, _TF_DECODERS[decoder], _SHRINKS[shrinks])

    branches = [branch(int(road)) for road in roads]

    def decode(path, index):
        if len(branches) == 1:
            image, ok = branches[0](path)
        else:
            image, ok = tf.switch_case(index, [lambda b=b: b(path) for b in branches])
        return tf.ensure_shape(image, (height, width, 3)), ok

    return decode


# --------------------------------------------------------------------------- datasets


def _check_target_size(target_size):
    if (
        not isinstance(target_size, (tuple, list))
        or len(target_size) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in target_size)
    ):
        raise ValueError(f"target_size: expected (height, width) positive integers, got {target_size!r}")
    return int(target_size[0]), int(target_size[1])


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


def _cache_file(cache, paths, target_size, labels):
    """File cache path with a fingerprint, so a changed dataset never reads a stale cache."""
    digest = hashlib.sha256()
    digest.update(json.dumps([list(paths), list(target_size)]).encode())
    if labels is not None:
        digest.update(np.ascontiguousarray(labels).tobytes())
    path = Path(cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"{path}-{digest.hexdigest()[:12]}"


def _warn_skipped(skipped, total):
    for item in skipped:
        warnings.warn(f"skipping {item['path']}: {item['reason']}", stacklevel=3)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} of {total} image files (see the warnings above)", stacklevel=3)


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
        ImageDataGenerator-style arguments (see ``augmentation``), applied to each
        batch with OpenCV (``augment_images``), or ready-made Keras layers, called on
        each batch with ``training=True``. Training data only.
    cache : bool or str
        ``True`` keeps decoded images in memory after the first epoch; a path
        caches them in files there (a fingerprint of the file list is appended
        to the name, so a changed dataset never reads an old cache).
    on_error : {"skip", "raise"}
        ``"skip"``: unreadable files are left out with one warning each and a total
        (files found broken only while decoding are left out with a warning then,
        never stopping an epoch). ``"raise"``: every image is decoded once up front
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
        ``file_paths`` (files kept, in row order) and ``skipped``
        (``{"path", "reason"}`` of files left out up front). With
        ``on_error="skip"`` the number of batches is unknown to TensorFlow until
        the first epoch ends (``len(dataset)`` fails; Keras shows "Unknown" steps
        in epoch 1); ``on_error="raise"`` checks every file first and keeps it known.
    """
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
    target_size = _check_target_size(target_size)
    for name, value in (("batch_size", batch_size), ("shuffle_buffer_size", shuffle_buffer_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if not (cache is False or cache is True or isinstance(cache, (str, os.PathLike))):
        raise ValueError(f"cache: expected False, True or a file path, got {cache!r}")
    augmenter, augment_params = None, None
    if isinstance(augment, keras.layers.Layer):
        augmenter = augment
    elif augment is not None:
        augment_params = _parse_augment(augment)
        if _is_identity(augment_params):
            augment_params = None

    names = dataframe[x_col].tolist()
    bad_names = [n for n in names if not isinstance(n, (str, os.PathLike))]
    if bad_names:
        raise ValueError(f"column {x_col!r}: expected file paths, got {bad_names[:5]!r}")
    paths = [os.path.join(directory, n) if directory is not None else os.fspath(n) for n in names]

    vocabulary, labels = None, None
    if class_mode is not None:
        label_lists = to_label_lists(dataframe[y_col], column=y_col)
        if classes is None:
            vocabulary = LabelVocabulary.from_labels(label_lists)
        elif isinstance(classes, LabelVocabulary):
            vocabulary = classes
        else:
            vocabulary = LabelVocabulary(classes)
        labels = _encode(label_lists, vocabulary, class_mode, y_col)

    roads, skipped = check_files(paths, target_size, full_decode=on_error == "raise")
    if skipped and on_error == "raise":
        listing = "\n".join(f"  {item['path']}: {item['reason']}" for item in skipped[:50])
        more = f"\n  ... and {len(skipped) - 50} more" if len(skipped) > 50 else ""
        raise ValueError(
            f"{len(skipped)} of {len(paths)} image files cannot be read:\n{listing}{more}\n"
            f"fix or remove them, or pass on_error='skip' to leave them out"
        )
    _warn_skipped(skipped, len(paths))
    keep = roads >= 0
    if not keep.any():
        raise ValueError(f"none of the {len(paths)} image files can be read (first: {paths[0]})")
    kept_paths = [p for p, k in zip(paths, keep) if k]
    roads = roads[keep]

    used_roads, road_indices = np.unique(roads, return_inverse=True)
    road_indices = road_indices.astype(np.int32)
    tensors = (kept_paths, road_indices) if labels is None else (kept_paths, road_indices, labels[keep])
    dataset = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle:
        dataset = dataset.shuffle(len(kept_paths), seed=seed, reshuffle_each_iteration=True)

    decode = _make_decoder(target_size, warned=set(), roads=used_roads)

    def load(path, road_index, *label):
        image, ok = decode(path, road_index)
        return (image, ok) + label

    # Map straight into batch (tf.data fuses the two); broken files are dropped per
    # batch afterwards, which is much cheaper than a per-image filter.
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if cache is not False:
        dataset = dataset.cache(
            "" if cache is True else _cache_file(cache, kept_paths, target_size, labels)
        )
        if shuffle:
            buffer = min(len(kept_paths), shuffle_buffer_size)
            dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    may_fail = on_error == "skip" and bool((roads == _PILLOW).any())
    if on_error == "skip":
        # Last line of defence (a file deleted or corrupted after the check): drop the
        # batch with a logged warning rather than stop training in mid-epoch.
        dataset = dataset.ignore_errors(log_warning=True)

    def finish(image, ok, *label, batch_seed=None):
        if may_fail:
            image = tf.boolean_mask(image, ok)
            label = tuple(tf.boolean_mask(y, ok) for y in label)
        image = tf.cast(image, tf.float32) / 255.0
        if augment_params is not None:
            image = tf.numpy_function(
                lambda x, s: _augment(x, augment_params, s), [image, batch_seed], tf.float32, stateful=False
            )
            image = tf.ensure_shape(image, (None, *target_size, 3))
        elif augmenter is not None:
            image = augmenter(image, training=True)
        return image if not label else (image, label[0])

    if augment_params is not None:
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
        dataset = dataset.filter(lambda image, *label: tf.shape(image)[0] > 0)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    dataset.class_names = None if vocabulary is None else list(vocabulary.classes)
    dataset.vocabulary = vocabulary
    dataset.file_paths = kept_paths
    dataset.skipped = skipped
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
    from helpers import data

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
