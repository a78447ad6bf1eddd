"""Read one image file robustly: any common format and mode in, RGB uint8 out.

Pillow does the decoding. Two things it does not do by itself, and that bite real
datasets, are handled here: EXIF orientation (phone photos are stored sideways and
rotated only on display) and the zoo of pixel modes (grayscale, palette, alpha,
CMYK, 16-bit). Every failure becomes an ``ImageError`` with a short reason, so a
caller can skip the file and say why.

Every decode has a pixel budget, ``MAX_PIXELS``, checked from the header before any
pixel memory is spent: a JPEG larger than that is decoded at 1/2, 1/4 or 1/8 scale
(libjpeg's DCT scaling), any other image is refused with a reason that names its size
(``too many pixels: 13000×13000 (169 megapixels, limit 30)``). Files over 256 MB
(``_MAX_FILE_BYTES``), folders, devices and pipes are refused before they are read. Pillow's
own decompression-bomb check, whose warning names no file, is not the one that fires.
"""
import contextlib
import io
import os
import stat
import threading

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from helpers.files.fileio import ReadError, format_size

# Content decides the format; these extensions are what the folder loaders list.
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff",
    ".avif", ".pbm", ".pgm", ".ppm", ".pnm",
)
# The formats Pillow may open. Others it knows, such as EPS (it would run Ghostscript) or
# PSD, are "not an image" here, whatever the file's name.
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "DIB", "WEBP", "TIFF", "AVIF", "PPM", "TGA", "ICO", "PCX")
# Pixels one decode may produce (a 30-megapixel image takes about 120 MB as Pillow RGB).
# Raise it for bigger scans or panoramas: helpers.files.images.MAX_PIXELS = 60_000_000.
MAX_PIXELS = 30_000_000
# No image file needs more; a larger one is refused before it is read into memory.
_MAX_FILE_BYTES = 256_000_000
# Above this many pixels, an image is shrunk without a float copy, and the input
# pipeline decodes it with Pillow (one copy of the pixels) rather than TensorFlow (four).
LARGE_PIXELS = 4_000_000
_JPEG_SCALES = (1, 2, 4, 8)
# Huffman-coded JPEG data needs at least about a bit per 8×8 block; a file 4 times smaller
# than that (above LARGE_PIXELS) is a forged header or cut-off data, which libjpeg would
# pad with grey without a word.
_JPEG_MIN_BITS_PER_BLOCK = 0.25

_EXIF_ORIENTATION = 0x0112
_FILE_END = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}  # end marker of a complete file
_TAIL_BYTES = 4096
# Orientations 5-8 turn the picture by 90 degrees: displayed width is stored height.
_SWAPPED_ORIENTATIONS = (5, 6, 7, 8)
_TRANSPOSE = {  # EXIF orientation -> what makes the stored pixels upright (as ImageOps.exif_transpose)
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90,
}
# Pillow checks image sizes against a module-wide limit when it opens a file; ours comes
# first, so its check is switched off while a header is read (under a lock: threads share it).
_PILLOW_LIMIT_LOCK = threading.Lock()
# One large image decoded at a time per process, however many threads decode: a few of
# them at once would each hold their pixels.
_LARGE_DECODES = threading.Semaphore(1)


class ImageError(ReadError):
    """An image file that cannot be read; ``str(error)`` is ``"path: reason"``.

    A ``ValueError`` (``helpers.files.fileio.ReadError``).

    Parameters
    ----------
    path : str or os.PathLike
        The file that failed.
    reason : str
        Short human reason, e.g. ``"empty file"`` or ``"truncated image"``.
    """


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
    if isinstance(error, MemoryError):
        return "not enough memory to decode it"
    message = str(error).strip() or type(error).__name__
    if "truncated" in message.lower() or isinstance(error, EOFError):
        return "truncated image"
    if isinstance(error, OSError) and error.strerror:
        return f"cannot read ({error.strerror})"
    return f"cannot decode ({message})"


def _megapixels(n_pixels):
    value = n_pixels / 1e6
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def _budget(max_pixels):
    return MAX_PIXELS if max_pixels is None else max_pixels


def _too_many_pixels(width, height, max_pixels, scale=1):
    at_scale = f" even at 1/{scale} scale" if scale > 1 else ""
    return (f"too many pixels{at_scale}: {width}×{height} ({_megapixels(width * height)} "
            f"megapixels, limit {_megapixels(max_pixels)}; raise helpers.files.images.MAX_PIXELS "
            f"to read it)")


def _scaled(size, scale):
    """The size libjpeg gives at 1/scale (it rounds up)."""
    return tuple(-(-side // scale) for side in size)


def decode_scale(size, image_format, target_size=None, max_pixels=None):
    """The reduced scale (1, 2, 4 or 8) at which an image will be decoded, within the budget.

    A JPEG is decoded at the largest scale that still gives at least ``target_size``
    (as Pillow's ``draft`` does), and at a larger one when that exceeds ``max_pixels``;
    other formats only at full scale.

    Parameters
    ----------
    size : (width, height)
        As stored in the file.
    image_format : str
        Pillow's format name (``"JPEG"``, ``"PNG"``...).
    target_size : (height, width), optional
        Stored orientation. None: the full size is wanted.
    max_pixels : int, optional
        Default ``MAX_PIXELS``.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        With the reason, when even the smallest decode exceeds the budget.
    """
    max_pixels = _budget(max_pixels)
    width, height = size
    scales = _JPEG_SCALES if image_format == "JPEG" else (1,)
    scale = 1
    if target_size is not None and len(scales) > 1:
        fits = min(width // max(1, target_size[1]), height // max(1, target_size[0]))
        scale = max(s for s in scales if s <= max(fits, 1))
    for candidate in (s for s in scales if s >= scale):
        scaled_width, scaled_height = _scaled(size, candidate)
        if scaled_width * scaled_height <= max_pixels:
            return candidate
    raise ValueError(_too_many_pixels(width, height, max_pixels, scales[-1]))


def _source(path_or_bytes, name=None):
    """``(what Pillow opens, the name used in messages)`` for a path or encoded bytes."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return io.BytesIO(path_or_bytes), name or "<bytes>"
    return path_or_bytes, name or path_or_bytes


def _file_size(source, name):
    """Bytes in a regular file (or buffer); ImageError for a folder, device, pipe or broken link."""
    if isinstance(source, io.BytesIO):
        return source.getbuffer().nbytes
    try:
        status = os.stat(source)
    except FileNotFoundError:
        broken = os.path.islink(source)
        raise ImageError(name, "file not found" + (" (broken symbolic link)" if broken else "")) from None
    if stat.S_ISDIR(status.st_mode):
        raise ImageError(name, "is a directory, not a file")
    if not stat.S_ISREG(status.st_mode):
        raise ImageError(name, "not a regular file (a device, pipe or socket)")
    return status.st_size


def _check_plausible(image, n_bytes, name):
    """Refuse a large JPEG whose file is far too small for the size its header claims,
    and a TIFF whose tiles exceed the pixel budget (Pillow allocates a whole tile)."""
    width, height = image.size
    tile = getattr(image, "_tile_size", None) if image.format == "TIFF" else None
    if tile and tile[0] * tile[1] > max(MAX_PIXELS, width * height):
        image.close()
        raise ImageError(name, f"too many pixels: TIFF tiles of {tile[0]}×{tile[1]} for a "
                               f"{width}×{height} image")
    if image.format == "JPEG" and width * height > LARGE_PIXELS:
        blocks = width * height / 64
        if n_bytes * 8 < blocks * _JPEG_MIN_BITS_PER_BLOCK:
            image.close()
            raise ImageError(name, f"truncated or corrupt: {n_bytes:,} bytes of JPEG data cannot "
                                   f"hold the {width}×{height} pixels its header claims")


def _open(path_or_bytes, name=None):
    """Open a file or encoded bytes lazily (header only), raising ImageError with a clear reason."""
    source, name = _source(path_or_bytes, name)
    try:
        size = _file_size(source, name)
        if size == 0:
            raise ImageError(name, "empty file")
        if size > _MAX_FILE_BYTES:
            raise ImageError(name, f"file too large ({format_size(size)}, limit "
                                   f"{format_size(_MAX_FILE_BYTES)})")
        with _PILLOW_LIMIT_LOCK:
            pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                image = Image.open(source, formats=FORMATS)
            finally:
                Image.MAX_IMAGE_PIXELS = pillow_limit
        _check_plausible(image, size, name)
        return image
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


def read_header(path, name=None, max_pixels=None):
    """Read an image's size, mode and format from its header, without decoding pixels.

    Parameters
    ----------
    path : str, os.PathLike or bytes
        Image file, or its encoded bytes (e.g. from a TFRecord shard).
    name : str, optional
        What to call it in error messages (default: the path).
    max_pixels : int, optional
        The pixel budget (default ``MAX_PIXELS``): an image that cannot be decoded within
        it, even at 1/8 scale for a JPEG, raises ``ImageError``.

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
        If the file is missing, empty, not a recognisable image, or over the budget.
    """
    image = _open(path, name)
    try:
        with image:
            width, height = image.size
            try:
                decode_scale(image.size, image.format, max_pixels=max_pixels)
            except ValueError as error:
                raise ImageError(_source(path, name)[1], str(error)) from None
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
    if mode.startswith("I;16"):
        # 0..65535 onto 0..255, rounded: (v + 128) // 257 equals round(v / 257) exactly.
        gray = ((np.asarray(image).astype(np.uint32) + 128) // 257).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image).astype(np.float32)
        if values.max(initial=0) > 255:
            values /= 257.0  # 16-bit range 0..65535 onto 0..255
        elif mode == "F" and values.max(initial=0) <= 1.0:
            values *= 255.0
        gray = np.clip(np.rint(values, out=values), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
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
    if (array.dtype == np.uint8 and height * width > LARGE_PIXELS
            and height >= target_height and width >= target_width):
        # A large image shrunk on both axes: OpenCV's area averaging of uint8 gives the
        # same values as in float32, without a float copy 4 times the image's size.
        shrunk = cv2.resize(array, (target_width, target_height), interpolation=cv2.INTER_AREA)
        return shrunk.reshape(target_height, target_width, channels)

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


def _upright_orientation(image):
    """EXIF orientation once the pixels are loaded (a PNG's EXIF may follow them)."""
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # unreadable EXIF block: the pixels are still fine
        return 1


def read_image(path, target_size=None, name=None, max_pixels=None):
    """Decode an image file into an RGB ``uint8`` array, upright, optionally resized.

    Parameters
    ----------
    path : str, os.PathLike or bytes
        Image file (JPEG, PNG, GIF, BMP, WebP, TIFF...; the content decides, not the
        extension), or its encoded bytes.
    target_size : tuple of int, optional
        ``(height, width)`` to resize to (see ``resize``; aspect ratio is not kept,
        as in Keras). ``None`` keeps the displayed size.
    name : str, optional
        What to call it in error messages (default: the path).
    max_pixels : int, optional
        The pixel budget (default ``MAX_PIXELS``), checked from the header before
        decoding. A JPEG over it is decoded at 1/2, 1/4 or 1/8 scale (then, with
        ``target_size`` None, the array is that much smaller than the displayed size);
        any other image over it raises ``ImageError``.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(height, width, 3)``.

    Raises
    ------
    ImageError
        On any failure: missing, empty, truncated, not an image, or over the budget.
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
    display_name = _source(path, name)[1]
    image = _open(path, name)
    try:
        with image:
            stored_target = None
            if target_size is not None:
                swapped = _orientation(image) in _SWAPPED_ORIENTATIONS
                stored_target = (target_width, target_height) if swapped else (target_height, target_width)
            try:
                scale = decode_scale(image.size, image.format, stored_target, max_pixels)
            except ValueError as error:
                raise ImageError(display_name, str(error)) from None
            if scale > 1:  # libjpeg decodes at 1/2, 1/4 or 1/8 scale
                image.draft(image.mode, tuple(max(1, side // scale) for side in image.size))
            decoded_width, decoded_height = _scaled(image.size, scale)
            large = decoded_width * decoded_height > LARGE_PIXELS
            with _LARGE_DECODES if large else contextlib.nullcontext():
                array = _decode(image)
                if target_size is not None:
                    array = resize(array, (target_height, target_width))
    except ImageError:
        raise
    except Exception as error:
        raise ImageError(display_name, _reason(error)) from error
    return np.ascontiguousarray(array)


def _decode(image):
    """Load, convert to RGB and turn upright; only the uint8 array is kept."""
    image.load()
    orientation = _upright_orientation(image)
    rgb = _to_rgb(image)
    if orientation in _TRANSPOSE:
        rgb = rgb.transpose(_TRANSPOSE[orientation])
    array = np.asarray(rgb, dtype=np.uint8)
    if rgb is not image:
        rgb.close()
    image.close()  # Pillow's copy of the pixels, released before the resize
    return array


def read_batches(paths, target_size, batch_size, failed):
    """Read ``paths`` with ``read_image`` at ``target_size``, ``batch_size`` at a time: yields
    lists of ``(position in paths, image)``. A path that is None is passed over; one that
    cannot be read is appended to ``failed`` as ``(position, reason)`` and never stops the
    others nor costs another image of its batch."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch = []
    for position, path in enumerate(paths):
        if path is not None:
            try:
                batch.append((position, read_image(path, target_size)))
            except ImageError as problem:
                failed.append((position, problem.reason))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
