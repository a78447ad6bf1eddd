"""Pictures for people: a heatmap blended over an image, or text lines drawn on it."""
import re
from pathlib import Path

import cv2
import numpy as np

from helpers.files.fileio import atomic_path
from helpers.files.images import read_header, read_image, resize


def overlay(image, heatmap, alpha=0.45, colormap=cv2.COLORMAP_JET):
    """``image`` (uint8, or floats in [0, 1]) with ``heatmap`` (values in [0, 1], at any
    resolution) blended over it with weight ``alpha`` in an OpenCV ``colormap``: RGB uint8."""
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)
    height, width = pixels.shape[:2]
    heat = resize(np.asarray(heatmap, dtype=np.float32)[..., None], (height, width))[..., 0]
    colours = cv2.applyColorMap(np.clip(np.rint(heat * 255), 0, 255).astype(np.uint8),
                                colormap)[..., ::-1]
    blended = (1.0 - alpha) * pixels.astype(np.float32) + alpha * colours.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _copy(path, min_size, max_size):
    """The image at ``path``, upright, its shorter side enlarged to ``min_size`` and its longer
    side kept within ``max_size``: decoded straight at that size (a JPEG at a reduced scale)."""
    header = read_header(path)
    width, height = header["width"], header["height"]
    scale = min(max(1.0, min_size / min(width, height)), max_size / max(width, height))
    return read_image(path, (max(1, round(height * scale)), max(1, round(width * scale))))


def write_overlay(path, heatmap, out_path, peak=None, alpha=0.45, min_size=224, max_size=1024):
    """Write the image at ``path`` with ``heatmap`` over it as the PNG ``out_path`` (its folder
    must exist), atomically, and return ``out_path``.

    The copy's shorter side is enlarged to ``min_size`` and its longer side kept within
    ``max_size``; ``peak``, ``(y, x)`` fractions, is marked with a cross when given and not NaN.
    """
    from PIL import Image

    picture = overlay(_copy(path, min_size, max_size), heatmap, alpha)
    if peak is not None and np.all(np.isfinite(peak)):
        centre = (int(peak[1] * picture.shape[1]), int(peak[0] * picture.shape[0]))
        size = max(9, min(picture.shape[:2]) // 12)
        cv2.drawMarker(picture, centre, (0, 0, 0), cv2.MARKER_CROSS, size + 4, 5)
        cv2.drawMarker(picture, centre, (255, 255, 255), cv2.MARKER_CROSS, size, 2)
    out_path = Path(out_path)
    with atomic_path(out_path) as temporary:
        Image.fromarray(picture).save(temporary, format="PNG")
    return out_path


def write_overlays(path, rows, out_stem, classes):
    """Write the image at ``path`` with each heatmap of ``rows`` (a table with ``label``,
    ``heatmap``, ``peak_y`` and ``peak_x``) over it, as ``<out_stem>_<label>.png``.

    Labels are made safe for a file name; when two become the same, the second gets its index
    in ``classes`` too. Returns ``{label: {"peak": [y, x] (None for NaN), "heatmap": path}}``.
    """
    written = {}
    for row in rows.itertuples():
        label = re.sub(r"[^A-Za-z0-9._-]+", "_", str(row.label)).strip("._") or "label"
        out_path = Path(f"{out_stem}_{label}.png")
        if any(entry["heatmap"] == str(out_path) for entry in written.values()):
            out_path = out_path.with_name(f"{out_path.stem}_{classes.index(row.label)}.png")
        peak = (row.peak_y, row.peak_x)
        write_overlay(path, row.heatmap, out_path, peak=peak)
        written[row.label] = {"peak": [float(value) if np.isfinite(value) else None
                                       for value in peak], "heatmap": str(out_path)}
    return written


def write_captioned(path, lines, out_path, min_size=320, max_size=2048):
    """Write a copy of the image at ``path``, sized as by :func:`write_overlay`, with ``lines`` of
    text drawn green on dark boxes in its top-left corner; the format follows the extension of
    ``out_path`` and missing folders are created. Returns ``out_path`` as a Path."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(_copy(path, min_size, max_size))
    try:
        font = ImageFont.load_default(size=max(12, image.height // 18))
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(image, "RGBA")
    x, y = 8, 8
    for line in lines:
        left, top, right, bottom = draw.textbbox((x, y), line, font=font)
        draw.rectangle((left - 4, top - 3, right + 4, bottom + 3), fill=(0, 0, 0, 160))
        draw.text((x, y), line, font=font, fill=(0, 255, 0))
        y = bottom + 8
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    image.convert("RGB").save(out_path)
    return out_path
