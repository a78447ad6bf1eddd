"""Read one image file robustly: any common format and mode in, RGB uint8 out.

Pillow does the decoding. Two things it does not do by itself, and that bite real
datasets, are handled here: EXIF orientation (phone photos are stored sideways and
rotated only on display) and the zoo of pixel modes (grayscale, palette, alpha,
CMYK, 16-bit). Every failure becomes an ``ImageError`` with a short reason, so a
caller can skip the file and say why.
"""
import os

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")

_EXIF_ORIENTATION = 0x0112
# Orientations 5-8 turn the picture by 90 degrees: displayed width is stored height.
_SWAPPED_ORIENTATIONS = (5, 6, 7, 8)


class ImageError(ValueError):
    """An image file that cannot be read; ``str(error)`` is ``"path: reason"``.

    Parameters
    ----------
    path : str or os.PathLike
        The file that failed.
    reason : str
        Short human reason, e.g. ``"empty file"`` or ``"truncated image"``.
    """

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


def _reason(error):
    """Turn an exception raised while opening or decoding into a short reason."""
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, IsADirectoryError):
        return "is a directory, not a file"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, UnidentifiedImageError):
        return "not an image (cannot identify)"
    if isinstance(error, Image.DecompressionBombError):
        return "too many pixels (possible decompression bomb)"
    message = str(error).strip() or type(error).__name__
    if "truncated" in message.lower() or isinstance(error, EOFError):
        return "truncated image"
    return f"cannot decode ({message})"


def _open(path):
    """Open ``path`` lazily (header only), raising ImageError with a clear reason."""
    try:
        if os.path.getsize(path) == 0:
            raise ImageError(path, "empty file")
        return Image.open(path)
    except ImageError:
        raise
    except Exception as error:  # Pillow raises many types; all mean "cannot read".
        raise ImageError(path, _reason(error)) from error


def _orientation(image):
    """EXIF orientation tag (1 when absent), read without decoding pixels."""
    # PNG keeps EXIF in a chunk that may follow the pixels: only use it if already parsed.
    if image.format != "JPEG" and "exif" not in image.info:
        return 1
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:
        return 1


def read_header(path):
    """Read an image's size, mode and format from its header, without decoding pixels.

    Parameters
    ----------
    path : str or os.PathLike
        Image file.

    Returns
    -------
    dict
        ``width`` and ``height`` as displayed (swapped for EXIF orientations 5-8),
        ``mode`` (Pillow mode of the file, e.g. ``"RGB"``, ``"L"``, ``"CMYK"``,
        ``"I;16"``) and ``format`` (e.g. ``"JPEG"``).

    Raises
    ------
    ImageError
        If the file is missing, empty or not a recognisable image.
    """
    image = _open(path)
    try:
        with image:
            width, height = image.size
            if _orientation(image) in _SWAPPED_ORIENTATIONS:
                width, height = height, width
            return {
                "width": int(width),
                "height": int(height),
                "mode": image.mode,
                "format": image.format,
            }
    except ImageError:
        raise
    except Exception as error:
        raise ImageError(path, _reason(error)) from error


def _to_rgb(image):
    """Convert any Pillow mode to 8-bit RGB; alpha is composited over black."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values / 257.0  # 16-bit range 0..65535 onto 0..255
        elif mode == "F" and values.max(initial=0) <= 1.0:
            values = values * 255.0
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([gray] * 3, axis=-1))
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, (0, 0, 0))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def resize(array, target_size):
    """Resize an image array: area averaging along an axis that shrinks, bilinear along one that grows.

    Area averaging (each output pixel is the mean of the input pixels it covers, in
    fractions at its edges) does not alias when shrinking; bilinear interpolation
    (pixel centres, edge pixels repeated) is smooth when enlarging. The input
    pipeline's TensorFlow decoders resize the same way, to within a thousandth of a
    grey level, so an image reads the same for training and for prediction.

    Parameters
    ----------
    array : numpy.ndarray
        ``(height, width, channels)``, any numeric dtype.
    target_size : tuple of int
        ``(height, width)``.

    Returns
    -------
    numpy.ndarray
        ``(target height, target width, channels)`` of ``array``'s dtype, rounded
        (and clipped to 0..255 for ``uint8``).
    """
    target_height, target_width = target_size
    height, width, channels = array.shape
    if (height, width) == (target_height, target_width):
        return array.copy()

    def step(image, size, shrink):
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        # float32 so OpenCV interpolates exactly (uint8 uses fixed-point weights).
        return cv2.resize(image, size, interpolation=interpolation).reshape(size[1], size[0], channels)

    image = array.astype(np.float32)
    shrink_height, shrink_width = height >= target_height, width >= target_width
    if shrink_height == shrink_width:
        image = step(image, (target_width, target_height), shrink_height)
    else:  # one axis at a time: each with its own filter
        image = step(step(image, (width, target_height), shrink_height), (target_width, target_height), shrink_width)
    if array.dtype == np.uint8:
        return np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return image.astype(array.dtype)


def read_image(path, target_size=None):
    """Decode an image file into an RGB ``uint8`` array, upright, optionally resized.

    Parameters
    ----------
    path : str or os.PathLike
        Image file (JPEG, PNG, GIF, BMP...; the content decides, not the extension).
    target_size : tuple of int, optional
        ``(height, width)`` to resize to (see ``resize``; aspect ratio is not kept,
        as in Keras). ``None`` keeps the displayed size.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(height, width, 3)``.

    Raises
    ------
    ImageError
        On any failure: missing, empty, truncated or not an image.
    """
    if target_size is not None:
        if (
            isinstance(target_size, (str, bytes))
            or len(target_size) != 2
            or not all(isinstance(v, (int, np.integer)) and v > 0 for v in target_size)
        ):
            raise ValueError(
                f"target_size must be (height, width) with positive integers, got {target_size!r}"
            )
        target_height, target_width = (int(v) for v in target_size)
    image = _open(path)
    try:
        with image:
            if target_size is not None and image.format == "JPEG":
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale, never below the target.
                wanted = (target_width, target_height)
                if _orientation(image) in _SWAPPED_ORIENTATIONS:
                    wanted = (target_height, target_width)
                image.draft(image.mode, wanted)
            image.load()
            try:
                upright = ImageOps.exif_transpose(image)
            except Exception:  # unreadable EXIF block: the pixels are still fine
                upright = image
            array = np.asarray(_to_rgb(upright), dtype=np.uint8)
            if target_size is not None:
                array = resize(array, (target_height, target_width))
    except ImageError:
        raise
    except Exception as error:
        raise ImageError(path, _reason(error)) from error
    return np.ascontiguousarray(array)
