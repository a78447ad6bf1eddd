"""Images for the plots, defensively: a file that cannot be read is a warning and a blank
panel, not an error; an array must be uint8 or floats in [0, 1]."""
import numpy as np

from helpers import warn


def check_unit_range(name, pixels):
    """Refuse float pixels outside [0, 1] (a 0-255 image), naming the argument ``name``."""
    if pixels.size and (pixels.min() < -0.01 or pixels.max() > 1.01):
        raise ValueError(f"{name}: expected pixel values in [0, 1], got "
                         f"[{pixels.min():.3g}, {pixels.max():.3g}] (divide by 255?)")


def load_image(path, target_size=None):
    """``helpers.files.images.read_image``, or None (and a warning) when it cannot be read."""
    # imported here: it loads OpenCV, which only the galleries need
    from helpers.files.images import read_image

    try:
        return read_image(path, target_size=target_size)
    except (OSError, ValueError) as error:  # ImageError is a ValueError
        warn(f"{path}: not shown ({error})")
        return None


def as_image(image):
    """An image array (uint8, or floats in [0, 1]), or a path read upright (None if unreadable)."""
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        return load_image(image)
    pixels = np.asarray(image)
    pixels = np.stack([pixels] * 3, axis=-1) if pixels.ndim == 2 else pixels
    if pixels.ndim != 3 or pixels.shape[-1] not in (3, 4):
        raise ValueError(f"image: expected an array (height, width, 3) or a path, got shape "
                         f"{pixels.shape}")
    if pixels.dtype != np.uint8:
        check_unit_range("image", pixels)
    return pixels
