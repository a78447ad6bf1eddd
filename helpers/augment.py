"""Augmentation in ImageDataGenerator's names and units, for Keras 3, which removed it.

Its random transforms, as the same ``augment`` dict, make ONE affine map per image, as in Keras 2:

- ``rotation_range`` in degrees; ``width_shift_range``, ``height_shift_range`` as fractions of
  the size, in [0, 1); ``shear_range``, a horizontal shear, as an angle in DEGREES (so the
  common ``shear_range=0.2`` is a 0.2° shear, next to nothing).
- ``zoom_range``: ``z`` scales the sampled area by a random factor in ``[1 - z, 1 + z]``, drawn
  for each axis independently (below 1 zooms in); or ``[lower, upper]``.
- ``horizontal_flip``, ``vertical_flip``: mirror half of the images.
- ``fill_mode``: ``"nearest"`` (Keras 2's default; Keras 3's is ``"reflect"``), ``"constant"``,
  ``"reflect"`` or ``"wrap"``; ``cval``: the constant fill, in 0..255 pixel units.

:func:`augment_images` applies the maps to a NumPy batch with OpenCV (as the input pipeline
does); :func:`augmentation` builds Keras layers. Both draw from :func:`affine_matrices`.
"""
import math
import numbers

import cv2
import keras
import numpy as np
from keras import layers

FILL_MODES = ("constant", "nearest", "reflect", "wrap")
_AUGMENT_ARGUMENTS = ("rotation_range", "width_shift_range", "height_shift_range", "shear_range",
                      "zoom_range", "horizontal_flip", "vertical_flip", "fill_mode", "cval")
# ImageDataGenerator arguments that mean something else (or nothing) here.
_AUGMENT_HINTS = {
    "rescale": "images are already scaled to [0, 1]; drop `rescale`",
    "validation_split": "split the DataFrame first (helpers.splits.split_dataframe)",
    "preprocessing_function": "map your function over the dataset: dataset.map(fn)",
}
# The clothing write-up's ImageDataGenerator settings; `TrainOptions(augment=True)`.
DEFAULT_AUGMENT = {"rotation_range": 25, "width_shift_range": 0.1, "height_shift_range": 0.1,
                   "shear_range": 0.2, "zoom_range": 0.2, "horizontal_flip": True, "fill_mode": "nearest"}
_CV2_BORDERS = {"nearest": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT, "wrap": cv2.BORDER_WRAP,
                "reflect": cv2.BORDER_REFLECT}  # d c b a | a b c d | d c b a, as in Keras and SciPy
_CV2_INTERPOLATION = {"bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}


def affine_matrices(xp, uniforms, params, height, width):
    """Affine maps (output pixel → input pixel) of random transforms, one row per image.

    ``xp`` is ``numpy`` or ``keras.ops``; ``uniforms``, ``(batch, 8)`` numbers in [0, 1) for
    rotation, shear, x and y shift, x and y zoom and the two flips. Row ``[a0, a1, a2, b0, b1,
    b2]`` samples output ``(x, y)`` at input ``(a0 x + a1 y + a2, b0 x + b1 y + b2)``.
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

    Chained Keras 3 layers resample (and blur) once per layer; this composes one matrix, as
    Keras 2 did. Arguments as :func:`parse_augment` returns them, plus ``interpolation``.
    """

    def __init__(self, rotation_range=0.0, width_shift_range=0.0, height_shift_range=0.0, shear_range=0.0,
                 zoom_range=(1.0, 1.0), horizontal_flip=False, vertical_flip=False, fill_mode="nearest",
                 cval=0.0, interpolation="bilinear", seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rotation_range, self.shear_range = float(rotation_range), float(shear_range)
        self.width_shift_range, self.height_shift_range = float(width_shift_range), float(height_shift_range)
        self.zoom_range = (float(zoom_range[0]), float(zoom_range[1]))
        self.horizontal_flip, self.vertical_flip = bool(horizontal_flip), bool(vertical_flip)
        self.fill_mode, self.cval, self.interpolation = fill_mode, float(cval), interpolation
        self.seed, self.seed_generator = seed, keras.random.SeedGenerator(seed)
        self.built = True

    def transform(self, batch, height, width):
        """Random ``(batch, 8)`` projective transforms (output pixel → input pixel)."""
        uniforms = keras.random.uniform((batch, 8), seed=self.seed_generator)
        matrices = affine_matrices(keras.ops, uniforms, self.get_config(), height, width)
        return keras.ops.concatenate([matrices, keras.ops.zeros_like(matrices[:, :2])], axis=1)

    def call(self, images, training=True):
        if not training:
            return images
        unbatched = len(images.shape) == 3
        if unbatched:
            images = keras.ops.expand_dims(images, 0)
        transforms = self.transform(keras.ops.shape(images)[0], images.shape[1], images.shape[2])
        outputs = keras.ops.image.affine_transform(images, transforms, interpolation=self.interpolation,
                                                   fill_mode=self.fill_mode, fill_value=self.cval)
        return outputs[0] if unbatched else outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = {name: getattr(self, name) for name in (*_AUGMENT_ARGUMENTS, "interpolation", "seed")}
        return {**super().get_config(), **config, "zoom_range": list(self.zoom_range)}


def _fraction(name, value, upper=1.0):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < upper:
        raise ValueError(f"augment[{name!r}]: expected a number in [0, {upper:g}), got {value!r}")
    return float(value)


def _check_keys_and_values(augment):
    """Refuse unknown keys (with a hint for the usual ones) and wrong fill, flip and shift values."""
    if not isinstance(augment, dict):
        raise ValueError(f"augment: expected a dict of ImageDataGenerator-style arguments, got {augment!r}")
    unknown = sorted(set(augment) - set(_AUGMENT_ARGUMENTS))
    if unknown:
        hints = "".join(f"; {key}: {_AUGMENT_HINTS[key]}" for key in unknown if key in _AUGMENT_HINTS)
        raise ValueError(f"augment: unsupported argument(s) {unknown}; supported are {list(_AUGMENT_ARGUMENTS)}{hints}")
    fill_mode, cval = augment.get("fill_mode", "nearest"), augment.get("cval", 0.0)
    if fill_mode not in FILL_MODES:
        raise ValueError(f"augment['fill_mode']: expected one of {FILL_MODES}, got {fill_mode!r}")
    if isinstance(cval, bool) or not isinstance(cval, numbers.Real) or not 0 <= cval <= 255:
        raise ValueError(f"augment['cval']: expected a pixel value in [0, 255], got {cval!r}")
    for key in ("horizontal_flip", "vertical_flip"):
        if not isinstance(augment.get(key, False), bool):
            raise ValueError(f"augment[{key!r}]: expected True or False, got {augment[key]!r}")
    for name in ("width_shift_range", "height_shift_range"):
        value = augment.get(name, 0)
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and value >= 1:
            raise ValueError(f"augment[{name!r}]: {value!r} would be a shift in pixels in Keras 2; "
                             f"give a fraction of the image size in [0, 1) instead")


def _zoom_range(zoom):
    """``zoom_range`` as ``(lower, upper)``."""
    if not isinstance(zoom, (list, tuple)):
        z = _fraction("zoom_range", zoom)
        return (1 - z, 1 + z)
    positive = all(isinstance(z, numbers.Real) and not isinstance(z, bool) and z > 0 for z in zoom)
    if len(zoom) != 2 or not positive or zoom[0] > zoom[1]:
        raise ValueError(f"augment['zoom_range']: expected [lower, upper] with 0 < lower <= upper, got {zoom!r}")
    return (float(zoom[0]), float(zoom[1]))


def parse_augment(augment):
    """Check ImageDataGenerator-style arguments; return all of them, defaults filled in,
    ``zoom_range`` as ``(lower, upper)`` and ``cval`` divided by 255 (images are in [0, 1])."""
    _check_keys_and_values(augment)
    upper = {"rotation_range": 360, "width_shift_range": 1, "height_shift_range": 1, "shear_range": 90}
    return {
        **{name: _fraction(name, augment.get(name, 0), limit) for name, limit in upper.items()},
        "zoom_range": _zoom_range(augment.get("zoom_range", 0)),
        **{key: augment.get(key, False) for key in ("horizontal_flip", "vertical_flip")},
        "fill_mode": augment.get("fill_mode", "nearest"),
        "cval": float(augment.get("cval", 0.0)) / 255.0,
    }


def _stock_layers(args, seed):
    """The one-to-one chain of stock Keras 3 layers, in their units."""
    seeds = iter(range(seed, seed + 10) if seed is not None else [None] * 10)
    fill = {"fill_mode": args["fill_mode"], "fill_value": args["cval"]}
    steps = []
    flips = [d for d in ("horizontal", "vertical") if args[f"{d}_flip"]]
    if flips:
        steps.append(layers.RandomFlip("horizontal_and_vertical" if len(flips) == 2 else flips[0], seed=next(seeds)))
    if args["rotation_range"]:  # RandomRotation wants a fraction of a full turn
        steps.append(layers.RandomRotation(args["rotation_range"] / 360, seed=next(seeds), **fill))
    if args["width_shift_range"] or args["height_shift_range"]:
        steps.append(layers.RandomTranslation(height_factor=args["height_shift_range"],
                                              width_factor=args["width_shift_range"], seed=next(seeds), **fill))
    if args["shear_range"]:  # RandomShear wants a slope: sin(angle) is Keras 2's shift per row
        slope = math.sin(math.radians(args["shear_range"]))
        steps.append(layers.RandomShear(x_factor=slope, y_factor=0.0, seed=next(seeds), **fill))
    if args["zoom_range"] != (1.0, 1.0):  # negative factors zoom in, as a scale below 1 does
        factor = (args["zoom_range"][0] - 1, args["zoom_range"][1] - 1)
        steps.append(layers.RandomZoom(height_factor=factor, width_factor=factor, seed=next(seeds), **fill))
    return steps


def augmentation(augment, seed=None, fused=True):
    """Keras 3 augmentation layers (a ``keras.Sequential``) from ImageDataGenerator-style ``augment``.

    ``fused=True``: one ``RandomAffine`` layer, like Keras 2; ``fused=False``: the stock Keras
    layers one to one, blurrier and four times slower. ``training=False`` changes nothing.
    """
    args = parse_augment(augment)
    if not fused:
        return keras.Sequential(_stock_layers(args, seed), name="augmentation")
    if is_identity(args):
        return keras.Sequential([], name="augmentation")
    return keras.Sequential([RandomAffine(**args, seed=seed)], name="augmentation")


def warp_affine(images, matrices, fill_mode="nearest", cval=0.0, interpolation="bilinear"):
    """Resample each image of a NumPy batch through its own affine map, with OpenCV.

    ``keras.ops.image.affine_transform``, several times faster on a CPU. With ``"wrap"`` OpenCV
    tiles the image; TensorFlow (like Keras 2) repeats it a pixel short: the seams differ.
    """
    images = np.asarray(images)
    if images.ndim != 4 or not 1 <= images.shape[-1] <= 4:
        raise ValueError(f"images: expected (batch, height, width, 1..4 channels), got shape {images.shape}")
    matrices = np.asarray(matrices, dtype=np.float64).reshape(len(images), 2, 3)
    height, width = images.shape[1:3]
    flags = _CV2_INTERPOLATION[interpolation] | cv2.WARP_INVERSE_MAP
    output = np.empty_like(images)
    for image, matrix, target in zip(images, matrices, output):
        warped = cv2.warpAffine(image, matrix, (width, height), flags=flags,
                                borderMode=_CV2_BORDERS[fill_mode], borderValue=(float(cval),) * 4)
        target[...] = warped.reshape(target.shape)  # OpenCV drops a single channel axis
    return output


def augment_batch(images, params, seed):
    """Apply one random affine map per image to a float NumPy batch (``params`` parsed)."""
    uniforms = np.random.default_rng(seed).random((len(images), 8))
    matrices = affine_matrices(np, uniforms, params, *images.shape[1:3])
    return warp_affine(images, matrices, params["fill_mode"], params["cval"])


def is_identity(params):
    """True when parsed ``params`` move no pixel (no flip, rotation, shift, shear or zoom)."""
    moves = (*_AUGMENT_ARGUMENTS[:4], "horizontal_flip", "vertical_flip")  # and zoom_range
    return not any(params[key] for key in moves) and params["zoom_range"] == (1.0, 1.0)


def augment_images(images, augment, seed=None):
    """Augment ``(batch, height, width, channels)`` floats in [0, 1] as the input pipeline does
    for training; the same ``seed`` gives the same transforms."""
    params = parse_augment(augment)
    images = np.asarray(images, dtype=np.float32)
    return images.copy() if is_identity(params) else augment_batch(images, params, seed)
