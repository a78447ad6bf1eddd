"""Decode image files inside ``tf.data`` by the fastest road that gives the same pixels.

Each file takes a *road*, chosen from its header. Plain 8-bit RGB or grayscale JPEGs and
PNGs, upright and complete, are decoded by TensorFlow (JPEGs at the largest 1/2, 1/4 or 1/8
DCT scale that stays at least the target size, like Pillow's ``draft``), several times faster
than calling Python per image. Everything else (CMYK, 16-bit, palette, alpha, GIF, BMP,
EXIF-rotated photos, images over ``helpers.files.images.LARGE_PIXELS``, suspicious files)
goes through ``helpers.files.images.read_image`` (Pillow, road 0), which keeps to the pixel
budget (``helpers.files.images.MAX_PIXELS``) and needs one copy of a large image's pixels
where TensorFlow needs four. Both roads
resize the same way (area averaging to shrink, bilinear to enlarge, as
``helpers.files.images.resize``) and give the same pixels to within one grey level.

``target_size`` is ``(height, width)`` throughout.
"""
import concurrent.futures
import os

import numpy as np
import tensorflow as tf

from helpers import warn
from helpers.files import images
from helpers.files.fileio import printable

_PILLOW = 0
# The TensorFlow roads pair a decoder (JPEG at 1/1, 1/2, 1/4 or 1/8 scale, or PNG) with the
# filter of each axis (shrink or enlarge), so the decoding graph has one switch and no
# nested conditionals, which would make the first epoch almost twice as slow.
_JPEG_RATIOS = (1, 2, 4, 8)
_TF_DECODERS = _JPEG_RATIOS + ("png",)
_SHRINKS = ((True, True), (True, False), (False, True), (False, False))  # (height, width)


def choose_road(header, target_size, complete=True):
    """The road of one image: 0 for Pillow, or the TensorFlow decoder and filters it needs.

    ``header`` is what ``helpers.files.images.read_header`` gives; ``complete`` whether the
    file ends as a complete JPEG or PNG does (``helpers.files.images.is_complete``).
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
        return _PILLOW
    shrinks = (height >= target_size[0], width >= target_size[1])
    return 1 + _TF_DECODERS.index(decoder) * len(_SHRINKS) + _SHRINKS.index(shrinks)


def _check_file(path, target_size, full_decode):
    """Return ``(road, None)`` for a usable file or ``(None, reason)`` for a bad one."""
    try:
        header = images.read_header(path)
        if full_decode:
            images.read_image(path, target_size)
        complete = images.is_complete(path, header["format"])
    except (images.ImageError, OSError, ValueError) as error:  # ValueError: a NUL byte in the name
        return None, _reason(error)
    try:
        return choose_road(header, target_size, complete), None
    except Exception:  # anything odd in the header: let Pillow decide while decoding
        return _PILLOW, None


def _reason(error):
    """Why a file is skipped, from the error reading it."""
    if isinstance(error, images.ImageError):
        return error.reason
    return f"cannot read ({getattr(error, 'strerror', None) or error})"


def _warn_once(warned, name, reason):
    """Warn that ``name`` is skipped, unless it is in the set ``warned`` (then add it)."""
    if name not in warned:
        warned.add(name)
        warn(f"skipping {printable(name)}: {reason}")


def missing_reasons(paths, target_size, warned):
    """``{"path", "reason"}`` of files a pass did not deliver, read again with Pillow for the
    reason; each is warned about once (``warned``: the names already warned about)."""
    missing = []
    for path in paths:
        try:
            images.read_image(path, target_size)
            reason = ("TensorFlow could not decode it (Pillow can: save it again as a plain JPEG "
                      "or PNG)")
        except (images.ImageError, OSError, ValueError) as error:
            reason = _reason(error)
        missing.append({"path": path, "reason": reason})
        _warn_once(warned, path, reason)
    return missing


def check_files(paths, target_size=(64, 64), full_decode=False, workers=None):
    """Check image files up front (headers, or every pixel with ``full_decode``) and choose their roads.

    Returns
    -------
    roads : numpy.ndarray of int
        The road of each file, -1 for a bad one.
    skipped : list of dict
        ``{"path", "reason"}`` of each bad file.
    """
    workers = workers or min(8, (os.cpu_count() or 1) + 2)  # Pillow releases the GIL
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda p: _check_file(p, target_size, full_decode), paths))
    roads = np.array([-1 if road is None else road for road, _ in results], dtype=np.int32)
    skipped = [{"path": p, "reason": reason} for p, (_, reason) in zip(paths, results) if reason]
    return roads, skipped


def usable_files(paths, target_size, on_error):
    """Check the files; return the mask of usable ones, their roads, and the skipped ones.

    ``on_error="skip"`` warns once per bad file and once with the total; ``"raise"`` decodes
    every image and raises a ``ValueError`` listing the bad ones.
    """
    roads, skipped = check_files(paths, target_size, full_decode=on_error == "raise")
    if skipped and on_error == "raise":
        listing = "\n".join(f"  {printable(item['path'])}: {item['reason']}" for item in skipped[:50])
        more = f"\n  ... and {len(skipped) - 50} more" if len(skipped) > 50 else ""
        raise ValueError(
            f"{len(skipped)} of {len(paths)} image files cannot be read:\n{listing}{more}\n"
            f"fix or remove them, or pass on_error='skip' to leave them out")
    for item in skipped:
        warn(f"skipping {printable(item['path'])}: {item['reason']}")
    if skipped:
        warn(f"skipped {len(skipped)} of {len(paths)} image files (see the warnings above)")
    keep = roads >= 0
    if not keep.any():
        raise ValueError(f"none of the {len(paths)} image files can be read (first: "
                         f"{printable(paths[0])}: {skipped[0]['reason']})")
    return keep, roads[keep], skipped


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


def _pillow_branch(target_size, warned):
    """The Pillow road: never raises; an image it cannot read comes back black, ``ok`` False."""
    height, width = target_size

    def pillow(encoded, name):
        name = os.fsdecode(name) if isinstance(name, bytes) else str(name)
        try:
            return images.read_image(encoded, target_size, name=name), True
        except images.ImageError as error:
            _warn_once(warned, name, error.reason)
            return np.zeros((height, width, 3), dtype=np.uint8), False

    def branch(encoded, name):
        image, ok = tf.numpy_function(pillow, [encoded, name], [tf.uint8, tf.bool], stateful=False)
        return tf.ensure_shape(image, (height, width, 3)), tf.ensure_shape(ok, ())

    return branch


def _tf_branch(target_size, road):
    """A TensorFlow road: raises on a corrupt file (``Dataset.ignore_errors`` drops it)."""
    decoder, shrinks = divmod(road - 1, len(_SHRINKS))
    decoder, shrinks = _TF_DECODERS[decoder], _SHRINKS[shrinks]

    def branch(encoded, name):
        if decoder == "png":
            image = tf.io.decode_png(encoded, channels=3, dtype=tf.uint8)
        else:
            image = tf.io.decode_jpeg(encoded, channels=3, ratio=decoder, dct_method="INTEGER_ACCURATE")
        return _tf_resize(image, target_size, *shrinks), tf.constant(True)

    return branch


def make_decoder(target_size, roads, warned=None):
    """Return ``decode(encoded, road_index, name) -> (uint8 image, ok)`` for ``Dataset.map``.

    ``encoded`` is an image file's bytes (from ``tf.io.read_file`` or a TFRecord), ``name``
    what to call it in a warning (a file name's raw bytes are fine), and ``road_index`` a
    position in ``roads``, the distinct roads of the images: the graph holds only the
    decoders in use. ``warned`` is a set of names already warned about, shared so that each
    bad image is named once.
    """
    height, width = target_size
    warned = set() if warned is None else warned
    branches = [_pillow_branch(target_size, warned) if int(road) == _PILLOW
                else _tf_branch(target_size, int(road)) for road in roads]

    def decode(encoded, road_index, name):
        if len(branches) == 1:
            image, ok = branches[0](encoded, name)
        else:
            image, ok = tf.switch_case(road_index, [lambda b=b: b(encoded, name) for b in branches])
        return tf.ensure_shape(image, (height, width, 3)), ok

    return decode
