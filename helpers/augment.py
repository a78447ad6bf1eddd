"""Augmentation in ImageDataGenerator's names and units, for Keras 3.

Keras 3 removed ``ImageDataGenerator``. Its random transforms (flip, rotation, shift, shear,
zoom) are given here as the same dict of arguments, in the same units, and turned into ONE
affine map per image, as Keras 2 did:

- :func:`augment_images` applies the maps to a NumPy batch with OpenCV's ``warpAffine``
  (what the input pipeline does to training batches);
- :func:`augmentation` builds Keras layers (one :class:`RandomAffine` layer, or the chain of
  stock Keras layers) for augmentation inside a model.

Both draw their maps from :func:`affine_matrices`, so they agree.
"""
import math
import numbers

import cv2
import keras
import numpy as np
from keras import layers

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


# The clothing write-up's ImageDataGenerator settings; `train_from_source(augment=True)`.
DEFAULT_AUGMENT = {
    "rotation_range": 25,
    "width_shift_range": 0.1,
    "height_shift_range": 0.1,
    "shear_range": 0.2,
    "zoom_range": 0.2,
    "horizontal_flip": True,
    "fill_mode": "nearest",
}


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


def parse_augment(augment):
    """Check ImageDataGenerator-style arguments and fill in the defaults.

    Parameters
    ----------
    augment : dict
        Keys from ``AUGMENT_ARGUMENTS``; anything else raises ``ValueError`` (with a hint
        for ``rescale``, ``validation_split`` and ``preprocessing_function``).

    Returns
    -------
    dict
        Every key of ``AUGMENT_ARGUMENTS``, in Keras 2 units (degrees, fractions), with
        ``zoom_range`` as ``(lower, upper)`` and ``cval`` divided by 255 (images are in
        [0, 1] here).
    """
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
    args = parse_augment(augment)
    zoom = args["zoom_range"]
    if fused:
        if is_identity(args):
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


def augment_batch(images, params, seed):
    """Apply one random affine map per image to a float NumPy batch (``params`` parsed)."""
    uniforms = np.random.default_rng(seed).random((len(images), 8))
    height, width = images.shape[1:3]
    matrices = affine_matrices(np, uniforms, params, height, width)
    return warp_affine(images, matrices, params["fill_mode"], params["cval"])


def is_identity(params):
    """True when parsed ``params`` move no pixel (no flip, rotation, shift, shear or zoom)."""
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
    params = parse_augment(augment)
    images = np.asarray(images, dtype=np.float32)
    if is_identity(params):
        return images.copy()
    return augment_batch(images, params, seed)
