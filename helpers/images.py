"""Read one image file robustly: any common format and mode in, RGB uint8 out.

Pillow does the decoding. Two things it does not do by itself, and that bite real
datasets, are handled here: EXIF orientation (phone photos are stored sideways and
rotated only on display) and the zoo of pixel modes (grayscale, palette, alpha,
CMYK, 16-bit). Every failure becomes an ``ImageError`` with a short reason, so a
caller can skip the file and say why.
"""
import io
import os

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")

_EXIF_ORIENTATION = 0x0112
_FILE_END = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}  # end marker of a complete file
_TAIL_BYTES = 4096
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


def _source(path_or_bytes, name=None):
    """``(what Pillow opens, the name used in messages)`` for a path or encoded bytes."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return io.BytesIO(path_or_bytes), name or "<bytes>"
    return path_or_bytes, name or path_or_bytes


def _open(path_or_bytes, name=None):
    """Open a file or encoded bytes lazily (header only), raising ImageError with a clear reason."""
    source, name = _source(path_or_bytes, name)
    try:
        size = source.getbuffer().nbytes if isinstance(source, io.BytesIO) else os.path.getsize(source)
        if size == 0:
            raise ImageError(name, "empty file")
        return Image.open(source)
    except ImageError:
        raise
    except Exception as error:  # Pillow raises many types; all mean "cannot read".
        raise ImageError(name, _reason(error)) from error


def _orientation(image):
    """EXIF orientation tag (1 when absent), read without decoding pixels."""
    # PNG keeps EXIF in a chunk that may follow the pixels: only use it if already parsed.
    if image.format != "JPEG" and "exif" not in image.info:
        return 1
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:
        return 1


def read_header(path, name=None):
    """Read an image's size, mode and format from its header, without decoding pixels.

    Parameters
    ----------
    path : str, os.PathLike or bytes
        Image file, or its encoded bytes (e.g. from a TFRecord shard).
    name : str, optional
        What to call it in error messages (default: the path).

    Returns
    -------
    dict
        ``width`` and ``height`` as displayed (swapped for EXIF orientations 5-8),
        ``mode`` (Pillow mode of the file, e.g. ``"RGB"``, ``"L"``, ``"CMYK"``,
        ``"I;16"``), ``format`` (e.g. ``"JPEG"``) and ``orientation`` (the EXIF
        orientation tag, 1 when there is none).

    Raises
    ------
    ImageError
        If the file is missing, empty or not a recognisable image.
    """
    image = _open(path, name)
    try:
        with image:
            width, height = image.size
            orientation = _orientation(image)
            if orientation in _SWAPPED_ORIENTATIONS:
                width, height = height, width
            return {
                "width": int(width),
                "height": int(height),
                "mode": image.mode,
                "format": image.format,
                "orientation": orientation,
            }
    except ImageError:
        raise
    except Exception as error:
        raise ImageError(_source(path, name)[1], _reason(error)) from error


def is_complete(path_or_bytes, image_format):
    """True when a JPEG ends with its end-of-image marker, or a PNG with its IEND chunk.

    A download cut short lacks them, although its header reads fine.

    Parameters
    ----------
    path_or_bytes : str, os.PathLike or bytes
    image_format : str
        ``"JPEG"`` or ``"PNG"`` (anything else counts as complete).

    Returns
    -------
    bool
    """
    end = _FILE_END.get(image_format)
    if end is None:
        return True
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return end in bytes(path_or_bytes[-_TAIL_BYTES:])
    with open(path_or_bytes, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - _TAIL_BYTES))
        return end in handle.read()


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


def read_image(path, target_size=None, name=None):
    """Decode an image file into an RGB ``uint8`` array, upright, optionally resized.

    Parameters
    ----------
    path : str, os.PathLike or bytes
        Image file (JPEG, PNG, GIF, BMP...; the content decides, not the extension), or
        its encoded bytes.
    name : str, optional
        What to call it in error messages (default: the path).
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
    image = _open(path, name)
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
        raise ImageError(_source(path, name)[1], _reason(error)) from error
    return np.ascontiguousarray(array)
