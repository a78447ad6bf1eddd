"""Generate the embedded datasets: synthetic images in real-world layouts, offline and deterministic.

Three presets:

- ``fashion``: one folder per ``colour_item`` pair, as in the clothing tutorial's dataset.
  Each image shows one garment silhouette (dress, jeans, shirt, shoe or bag) in a shade of its
  colour, rotated, scaled and placed anywhere, over a textured background with clutter that
  also uses the label colours. The colour histogram alone is ambiguous, so a model has to find
  the garment's shape to tell both its item and its colour.
- ``scenes``: PASCAL VOC layout (``Annotations/*.xml``, ``JPEGImages/``,
  ``ImageSets/Main/{train,val}.txt``) with 0–4 objects of 10 classes of very different
  frequencies, described a second time by a ChestX-ray14-like ``Data_Entry.csv``.
- ``shapes``: one folder per ``colour_shape`` pair (4 colours × 3 shapes, 90 images each at
  scale 1), 64-80 px JPEGs of one filled shape, rotated, sized and placed at random over a
  noisy background with neutral clutter; ``boxes.csv`` gives each shape's bounding box. A
  dataset of another kind than the clothes, for checking that a recipe or an explanation
  was not made to fit one dataset.

Every image is drawn from its own random generator, seeded by ``(seed, preset, index)``, so
the same seed and scale give byte-identical files, and a smaller scale gives a subset of the
images of a larger one.

``fashion`` and ``scenes`` carry what a real folder of photos carries: about 2 images in 100 are
a near copy of an earlier one (re-encoded at JPEG quality 35-70, resized by 0.6-0.85 or
1.15-1.5, cropped by 2-4% of the width and height and enlarged back, or made 10-20% brighter or
darker; ``fashion``: of an image of the same folder, ``scenes``: of one showing an object, from
any place), and about 1.5 in 100 have a wrong label (``fashion``: the garment of a folder that
differs in the colour or the item; ``scenes``: the objects of one class left out of the
annotation). Each image's own random generator decides, so the same seed and scale plant the
same files, and every other file is drawn as if nothing were planted. At seed 0 the quick sets
(scale 0.25) hold 5 near copies and 11 mislabelled clothes, 12 near copies and 6 mislabelled
scenes; the full sets 44 and 40 clothes, 40 and 25 scenes. The marker ``.complete.json`` lists them under ``"planted"`` (read them with
:func:`planted_files`). Scenes of one place (one ``Patient ID``) that differ only by a small
object look alike too: a copy finder groups some of them, as it would a burst of photos.
"""
import colorsys
import json
import math
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from helpers import DATA_DIR, QUICK, progress_bar

PRESETS = ("fashion", "scenes", "shapes")

# Scale used by ensure_dataset(quick=True): ~500 fashion images (>= 30 per folder) and
# ~450 scene images.
QUICK_SCALE = 0.25

_JPEG_QUALITY = 90
_MARKER_START = ".generator.json"
MARKER_COMPLETE = ".complete.json"

# Folder → number of images in the clothing tutorial's dataset (5,547 in all).
FASHION_SOURCE_COUNTS = {
    "black_dress": 333,
    "black_jeans": 344,
    "black_shirt": 436,
    "black_shoe": 534,
    "blue_dress": 386,
    "blue_jeans": 356,
    "blue_shirt": 369,
    "red_dress": 384,
    "red_shirt": 332,
    "red_shoe": 486,
    "white_bag": 747,
    "white_shoe": 840,
}
FASHION_IMAGES = 2000

# Scenes: probability that an image contains the class (person dominates, like VOC; the last
# three classes appear in fewer than 5% of the images).
SCENE_CLASS_PROBABILITY = {
    "person": 0.62,
    "car": 0.22,
    "chair": 0.14,
    "dog": 0.11,
    "cat": 0.09,
    "bird": 0.07,
    "bottle": 0.06,
    "tvmonitor": 0.04,
    "sheep": 0.03,
    "boat": 0.02,
}
_SCENE_IMAGES = 1800
SCENE_MAX_OBJECTS = 4
_SCENE_VAL_FRACTION = 0.25
_VOC_ACTIONS = (
    "jumping", "phoning", "playinginstrument", "reading", "ridingbike", "ridinghorse",
    "running", "takingphoto", "usingcomputer", "walking", "other",
)

SHAPE_COLOURS = ("red", "green", "blue", "yellow")
SHAPE_NAMES = ("circle", "square", "triangle")
_SHAPE_IMAGES_PER_FOLDER = 90
SHAPE_BOXES_FILE = "boxes.csv"

_PRESET_IDS = {"fashion": 1, "scenes": 2, "shapes": 3}
# Raised whenever a preset's drawing changes, so that ensure_dataset replaces older copies.
_GENERATOR_VERSIONS = {"fashion": 4, "scenes": 2, "shapes": 1}
# Share of the fashion and scenes images that are planted near copies, and mislabelled ones.
_PLANTED_COPIES = 0.02
_PLANTED_MISLABELLED = 0.015
_NEAR_COPY_KINDS = ("quality", "resize", "crop", "brightness")


# --------------------------------------------------------------------------- public API


def make_dataset(preset, out_dir, seed=0, scale=1.0, progress=True):
    """Write the synthetic dataset ``preset`` into ``out_dir``.

    Parameters
    ----------
    preset : {"fashion", "scenes", "shapes"}
        Which dataset to draw (see the module docstring).
    out_dir : str or Path
        Destination folder. It must not exist, be empty, or hold an earlier output of
        ``make_dataset`` for the same preset (which is replaced).
    seed : int, default 0
        Non-negative seed; the same seed and scale give byte-identical files.
    scale : float, default 1.0
        Multiplies the number of images (2,000 fashion, 1,800 scene and 1,080 shape images
        at 1.0).
    progress : bool, default True
        Show a progress bar (``helpers.progress_bar``) while writing images.

    Returns
    -------
    Path
        ``out_dir``, with a ``.complete.json`` marker written last.
    """
    preset, seed, scale = _validate(preset, seed, scale)
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, preset)
    settings = {"preset": preset, "seed": seed, "scale": scale, "version": _GENERATOR_VERSIONS[preset]}
    _write_json(out_dir / _MARKER_START, settings)
    writer = {"fashion": _write_fashion, "scenes": _write_scenes, "shapes": _write_shapes}[preset]
    summary = writer(out_dir, seed, scale, progress)
    _write_json(out_dir / MARKER_COMPLETE, {**settings, **summary})
    return out_dir


def ensure_dataset(preset, quick=QUICK):
    """Return the embedded dataset folder, generating it first if missing or incomplete.

    Parameters
    ----------
    preset : {"fashion", "scenes", "shapes"}
        Which dataset.
    quick : bool, default ``helpers.QUICK``
        Use the small version (``DATA_DIR/"<preset>-quick"``, scale ``QUICK_SCALE``) instead
        of the full one (``DATA_DIR/"<preset>"``, scale 1.0). Both use seed 0; a folder made
        with other settings or by an older version of this module is regenerated.

    Returns
    -------
    Path
        The dataset folder.
    """
    preset, _, _ = _validate(preset, 0, 1.0)
    scale = QUICK_SCALE if quick else 1.0
    out_dir = DATA_DIR / (f"{preset}-quick" if quick else preset)
    wanted = (preset, 0, scale, _GENERATOR_VERSIONS[preset])

    def is_current():
        marker = _read_json(out_dir / MARKER_COMPLETE) or {}
        return (marker.get("preset"), marker.get("seed"), marker.get("scale"), marker.get("version", 1)) == wanted

    if is_current():
        return out_dir
    # Generate beside the target and move it into place, so that two processes asking for the
    # same missing dataset at once (two notebooks, a notebook and a test) never mix their files.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        make_dataset(preset, staging / out_dir.name, seed=0, scale=scale)
        if not is_current():
            if out_dir.exists():
                shutil.rmtree(out_dir)
            os.replace(staging / out_dir.name, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def fashion_counts(scale=1.0):
    """Number of images per ``colour_item`` folder at ``scale``, proportional to the clothing tutorial's dataset.

    Parameters
    ----------
    scale : float, default 1.0
        Multiplies the 2,000 images of the full set; every folder keeps at least one image.

    Returns
    -------
    dict
        Folder name → number of images.
    """
    source_total = sum(FASHION_SOURCE_COUNTS.values())
    quotas = {name: count * FASHION_IMAGES * scale / source_total for name, count in FASHION_SOURCE_COUNTS.items()}
    counts = {name: math.floor(quota) for name, quota in quotas.items()}
    # Largest remainders get the images rounding down left over, so the total is exact.
    left = round(FASHION_IMAGES * scale) - sum(counts.values())
    for name in sorted(quotas, key=lambda n: counts[n] - quotas[n])[:left]:
        counts[name] += 1
    return {name: max(1, count) for name, count in counts.items()}


# --------------------------------------------------------------------------- validation and files


def _validate(preset, seed, scale):
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {PRESETS}, got {preset!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale: expected a positive number, got {scale!r}") from None
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale: expected a positive number, got {scale!r}")
    return preset, int(seed), scale


def _prepare_out_dir(out_dir, preset):
    """Create ``out_dir``, or empty it when it holds an earlier dataset of ``preset``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir: expected a folder, got the file {out_dir}")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        previous = _read_json(out_dir / _MARKER_START) or _read_json(out_dir / MARKER_COMPLETE)
        if not previous or previous.get("preset") != preset:
            found = previous.get("preset") if previous else None
            what = f"a {found!r} dataset" if found else "files not written by make_dataset"
            raise ValueError(
                f"out_dir: expected a new or empty folder, or an earlier {preset!r} dataset; "
                f"{out_dir} holds {what}. Choose another folder or empty it."
            )
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as file:
            value = json.load(file)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path, value):
    with open(path, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=2, sort_keys=True)
        file.write("\n")


def _save_jpeg(image, path, quality=_JPEG_QUALITY):
    # No EXIF, ICC or comment: Pillow then writes the same bytes for the same pixels.
    image.save(path, "JPEG", quality=quality, optimize=False)


def _rng(seed, preset, *index):
    return np.random.default_rng([seed, _PRESET_IDS[preset], *index])


# --------------------------------------------------------------------------- drawing tools


def _hsv(h, s, v):
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (round(r * 255), round(g * 255), round(b * 255))


def _label_colour(name, rng):
    """A random shade of one of the four label colours."""
    if name == "black":
        v = rng.uniform(0.05, 0.22)
        return _hsv(rng.uniform(0, 1), rng.uniform(0, 0.3), v)
    if name == "white":
        return _hsv(rng.uniform(0, 1), rng.uniform(0, 0.07), rng.uniform(0.88, 1.0))
    if name == "blue":
        return _hsv(rng.uniform(0.57, 0.67), rng.uniform(0.55, 0.95), rng.uniform(0.4, 0.9))
    if name == "red":
        return _hsv(rng.uniform(-0.025, 0.02), rng.uniform(0.7, 1.0), rng.uniform(0.55, 0.95))
    raise ValueError(name)


def _neutral_colour(rng, v_range=(0.35, 0.78)):
    """A background-like colour that is none of the label colours."""
    while True:
        h = rng.uniform(0, 1)
        s = rng.uniform(0.08, 0.6)
        near_red = h < 0.06 or h > 0.92
        near_blue = 0.52 < h < 0.72
        if s < 0.28 or not (near_red or near_blue):
            return _hsv(h, s, rng.uniform(*v_range))


def _shade(colour, factor):
    return tuple(int(min(255, max(0, round(c * factor)))) for c in colour)


def _transform(points, centre, size, angle, flip=False):
    """Scale unit-box ``points`` by ``size`` (sx, sy), rotate by ``angle`` (radians), move to ``centre``."""
    pts = np.asarray(points, dtype=float)
    if flip:
        pts = pts * [-1, 1]
    pts = pts * size
    c, s = math.cos(angle), math.sin(angle)
    x = pts[:, 0] * c - pts[:, 1] * s + centre[0]
    y = pts[:, 0] * s + pts[:, 1] * c + centre[1]
    return [(float(a), float(b)) for a, b in zip(x, y)]


def _arc(cx, cy, rx, ry, start, stop, n=10):
    t = np.linspace(math.radians(start), math.radians(stop), n)
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in t]


def _gradient_background(width, height, rng):
    """Two neutral colours blended along a random direction, with a faint pattern and grain."""
    first = np.array(_neutral_colour(rng), dtype=np.float32)
    second = np.array(_neutral_colour(rng), dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    t = (xx * math.cos(angle) + yy * math.sin(angle)) / max(width, height)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    image = first + (second - first) * t[..., None]
    if rng.random() < 0.5:
        period = rng.uniform(6, 30)
        direction = rng.uniform(0, math.pi)
        wave = np.sin((xx * math.cos(direction) + yy * math.sin(direction)) * 2 * math.pi / period)
        image += (wave * rng.uniform(4, 14))[..., None]
    return image


def _finish(pixels, rng, noise=(2, 9)):
    """Add sensor-like grain and return a Pillow image."""
    sigma = rng.uniform(*noise)
    pixels = pixels + rng.normal(0, sigma, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _texture_fill(canvas, mask, colour, rng):
    """Paint ``colour`` through ``mask`` with lighting, stripes or grain of the same hue."""
    height, width = mask.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    light = 1 + rng.uniform(0.05, 0.2) * ((xx * math.cos(angle) + yy * math.sin(angle))
                                          / max(width, height) - 0.5)
    base = np.array(colour, dtype=np.float32)
    kind = rng.integers(0, 3)
    layer = base * light[..., None]
    if kind == 1:
        period = rng.uniform(3, 10)
        direction = rng.uniform(0, math.pi)
        wave = np.sin((xx * math.cos(direction) + yy * math.sin(direction)) * 2 * math.pi / period)
        layer += (np.sign(wave) * rng.uniform(5, 12))[..., None]
    elif kind == 2:
        layer += rng.normal(0, rng.uniform(4, 12), (height, width, 1)).astype(np.float32)
    alpha = mask[..., None]
    canvas *= 1 - alpha
    canvas += layer * alpha
    return canvas


# --------------------------------------------------------------------------- fashion

# Outlines in a unit box (x right, y down), roughly [-1, 1] on both axes.
_DRESS = [(-0.28, -1), (-0.16, -1), (-0.1, -0.74), (0.1, -0.74), (0.16, -1), (0.28, -1),
          (0.3, -0.5), (0.18, -0.2), (0.8, 1), (-0.8, 1), (-0.18, -0.2), (-0.3, -0.5)]
_JEANS = [(-0.5, -1), (0.5, -1), (0.62, 1), (0.2, 1), (0.0, -0.5), (-0.2, 1), (-0.62, 1)]
_SHIRT = [(-0.18, -0.95), (0.0, -0.78), (0.18, -0.95), (0.5, -0.88), (1.0, -0.05), (0.76, 0.12),
          (0.46, -0.3), (0.46, 0.95), (-0.46, 0.95), (-0.46, -0.3), (-0.76, 0.12),
          (-1.0, -0.05), (-0.5, -0.88)]
_SHOE = [(-1, 0.55), (-1, 0.28), (-0.82, 0.06), (-0.35, -0.06), (0.05, -0.3), (0.12, -0.75),
         (0.78, -0.75), (0.82, -0.2), (1, 0.22), (1, 0.55)]
_BAG = [(-0.78, -0.12), (0.78, -0.12), (0.96, 0.92), (-0.96, 0.92)]
# Half-size of a garment as a fraction of the image's short side, its rotation in degrees, how
# far (as a fraction of its half-size) its centre keeps from the border, and the radius of the
# distractor shapes in label colours.
_GARMENT_SIZE = (0.27, 0.4)
_GARMENT_ROTATION = 15
_GARMENT_INSIDE = 1.0
_DISTRACTOR_SIZE = (0.1, 0.24)


def _garment_layers(item, rng):
    """Polygons (outline, detail lines) of ``item`` in the unit box, and its (sx, sy) aspect."""
    details = []
    polygons = []
    if item == "dress":
        polygons.append(_DRESS)
        details.append(([(-0.18, -0.2), (0.18, -0.2)], 0.05))
        aspect = (rng.uniform(0.8, 1.0), 1.0)
    elif item == "jeans":
        polygons.append(_JEANS)
        details += [([(-0.48, -0.82), (0.48, -0.82)], 0.04), ([(0.0, -0.82), (0.0, -0.5)], 0.025),
                    ([(-0.4, -0.82), (-0.25, -0.6)], 0.02), ([(0.4, -0.82), (0.25, -0.6)], 0.02)]
        aspect = (rng.uniform(0.75, 0.95), 1.0)
    elif item == "shirt":
        polygons.append(_SHIRT)
        details += [([(0.0, -0.78), (0.0, 0.95)], 0.02)]
        aspect = (1.0, rng.uniform(0.85, 1.0))
    elif item == "shoe":
        polygons.append(_SHOE)
        details += [([(-1, 0.4), (1, 0.4)], 0.07), ([(0.1, -0.55), (-0.2, -0.15)], 0.03)]
        aspect = (1.0, rng.uniform(0.5, 0.65))
    elif item == "bag":
        polygons.append(_BAG)
        handle = _arc(0, -0.12, 0.5, 0.72, 180, 360, 12)
        details += [(handle, 0.09), ([(-0.86, 0.3), (0.86, 0.3)], 0.03)]
        aspect = (1.0, rng.uniform(0.8, 1.0))
    else:
        raise ValueError(item)
    return polygons, details, aspect


def _draw_clutter(draw, width, height, rng, colour, scale_range):
    """One background shape that is not a garment: ellipse, bar, ring, blob or scribble."""
    side = min(width, height)
    r = side * rng.uniform(*scale_range)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    kind = rng.integers(0, 5)
    if kind == 0:
        ratio = rng.uniform(0.5, 1.5)
        draw.ellipse([cx - r, cy - r * ratio, cx + r, cy + r * ratio], fill=colour)
    elif kind == 1:
        angle = rng.uniform(0, math.pi)
        bar = [(-1, -0.25), (1, -0.25), (1, 0.25), (-1, 0.25)]
        draw.polygon(_transform(bar, (cx, cy), (r * 1.3, r * rng.uniform(0.4, 1.0)), angle), fill=colour)
    elif kind == 2:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=max(2, int(r * 0.3)))
    elif kind == 3:
        n = rng.integers(6, 10)
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = r * rng.uniform(0.6, 1.0, n)
        draw.polygon([(cx + a * math.cos(t), cy + a * math.sin(t)) for a, t in zip(radii, angles)],
                     fill=colour)
    else:
        points = [(cx, cy)]
        for _ in range(rng.integers(3, 6)):
            points.append((points[-1][0] + rng.uniform(-r, r), points[-1][1] + rng.uniform(-r, r)))
        draw.line(points, fill=colour, width=max(2, int(side * rng.uniform(0.015, 0.04))))


def _fashion_image(folder, rng):
    """Draw one ``colour_item`` image."""
    colour_name, item = folder.split("_")
    width, height = _image_size(rng, 96, 320)
    pixels = _gradient_background(width, height, rng)

    clutter = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(clutter)
    for _ in range(rng.integers(1, 5)):
        _draw_clutter(draw, width, height, rng, _neutral_colour(rng, (0.3, 0.8)), (0.05, 0.2))
    # Distractors in the other label colours, up to about a garment's size: the colour
    # histogram alone cannot tell which colour the garment has.
    others = [c for c in ("black", "blue", "red", "white") if c != colour_name]
    for name in rng.choice(others, size=rng.integers(1, 3), replace=False):
        for _ in range(rng.integers(1, 3)):
            _draw_clutter(draw, width, height, rng, _label_colour(str(name), rng), _DISTRACTOR_SIZE)
    pixels = np.asarray(clutter, dtype=np.float32).copy()

    polygons, details, aspect = _garment_layers(item, rng)
    side = min(width, height)
    size = side * rng.uniform(*_GARMENT_SIZE)
    size_xy = (size * aspect[0], size * aspect[1])
    angle = math.radians(rng.uniform(-_GARMENT_ROTATION, _GARMENT_ROTATION))
    flip = bool(rng.random() < 0.5)
    reach = max(size_xy) * _GARMENT_INSIDE
    centre = (rng.uniform(min(reach, width / 2), max(width - reach, width / 2)),
              rng.uniform(min(reach, height / 2), max(height - reach, height / 2)))
    colour = _label_colour(colour_name, rng)

    mask_image = Image.new("L", (width, height), 0)
    mask_draw = ImageDraw.Draw(mask_image)
    for polygon in polygons:
        mask_draw.polygon(_transform(polygon, centre, size_xy, angle, flip), fill=255)
    if item == "bag":
        handle, handle_width = details[0]
        mask_draw.line(_transform(handle, centre, size_xy, angle, flip), fill=255,
                       width=max(2, int(size * handle_width)), joint="curve")
    mask = np.asarray(mask_image, dtype=np.float32) / 255.0
    pixels = _texture_fill(pixels, mask, colour, rng)

    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    seam = _shade(colour, 0.65) if colour_name != "black" else _shade((60, 60, 60), rng.uniform(0.8, 1.3))
    for line, line_width in details[1 if item == "bag" else 0:]:
        draw.line(_transform(line, centre, size_xy, angle, flip), fill=seam,
                  width=max(1, int(size * line_width)))
    if rng.random() < 0.2:
        # A small object in front of the garment, as in real photos.
        _draw_clutter(draw, width, height, rng, _neutral_colour(rng, (0.3, 0.8)), (0.03, 0.08))

    pixels = np.asarray(image, dtype=np.float32)
    image = _finish(pixels, rng)
    if rng.random() < 0.15:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0)))
    return image


def _image_size(rng, low, high):
    """A random (width, height) between ``low`` and ``high`` pixels with a varied aspect ratio."""
    long_side = rng.integers(int(low * 1.2), high + 1)
    ratio = rng.uniform(0.6, 1.0)
    short_side = max(low, int(round(long_side * ratio)))
    return (int(long_side), short_side) if rng.random() < 0.5 else (short_side, int(long_side))


def _write_fashion(out_dir, seed, scale, progress):
    counts = fashion_counts(scale)
    planted = {"near_copies": [], "mislabelled": []}
    with progress_bar(total=sum(counts.values()), desc=f"fashion → {out_dir}", unit="img",
              disable=not progress) as bar:
        for class_index, (folder, count) in enumerate(counts.items()):
            (out_dir / folder).mkdir()
            for index in range(count):
                _write_fashion_image(out_dir, seed, class_index, index, planted)
                bar.update()
    return {"n_images": sum(counts.values()), "counts": counts, "planted": planted}


def _write_fashion_image(out_dir, seed, class_index, index, planted):
    """Draw and save one fashion image as its own generator plans it: as usual, as a near copy
    of an earlier image of its folder, or showing a garment of a neighbouring folder; add what
    was planted to ``planted``."""
    folders = list(FASHION_SOURCE_COUNTS)
    folder = folders[class_index]
    name = f"{folder}/{folder}_{index:04d}.jpg"
    plan = _fashion_plan(seed, folders, class_index, index)
    if plan is None:
        _save_jpeg(_fashion_image(folder, _rng(seed, "fashion", class_index, index)), out_dir / name)
    elif plan[0] == "copy":
        _, source, rng = plan
        original = _fashion_image(folder, _rng(seed, "fashion", class_index, source))
        copy, quality, kind, _ = _near_copy(original, rng, (96, 320))
        _save_jpeg(copy, out_dir / name, quality)
        planted["near_copies"].append({"path": name, "copy_of": f"{folder}/{folder}_{source:04d}.jpg",
                                       "kind": kind})
    else:
        shown = plan[1]
        _save_jpeg(_fashion_image(shown, _rng(seed, "fashion", class_index, index)), out_dir / name)
        planted["mislabelled"].append({"path": name, "given": sorted(folder.split("_")),
                                       "true": sorted(shown.split("_"))})


def _fashion_plan(seed, folders, class_index, index):
    """None (an ordinary image), ``("copy", index of the image copied, rng)`` or ``("mislabel",
    folder of the garment shown, rng)``: one image's plan, from its own generator."""
    rng = _rng(seed, "fashion", class_index, index, 1)
    plan = _plan(rng, index)
    if plan == "copy":
        source = int(rng.integers(index))
        ordinary = _plan(_rng(seed, "fashion", class_index, source, 1), source) is None
        return ("copy", source, rng) if ordinary else None
    if plan == "mislabel":  # the colour or the item differs, not both
        colour, item = folders[class_index].split("_")
        neighbours = [other for other in folders
                      if (other.split("_")[0] == colour) != (other.split("_")[1] == item)]
        return ("mislabel", neighbours[rng.integers(len(neighbours))], rng)
    return None


# --------------------------------------------------------------------------- planted problems


def _plan(rng, n_earlier):
    """What one image becomes: None (drawn as usual), ``"copy"`` (of one of the ``n_earlier``
    images before it) or ``"mislabel"``."""
    draw = rng.random()
    if draw < _PLANTED_COPIES:
        return "copy" if n_earlier else None
    return "mislabel" if draw < _PLANTED_COPIES + _PLANTED_MISLABELLED else None


def _near_copy(image, rng, sides):
    """A near copy of ``image`` whose sides stay within ``sides`` (low, high): ``(copy, JPEG
    quality, kind, (sx, sy, ox, oy))``, the last mapping a point (x, y) of the original to
    ((x - ox) * sx, (y - oy) * sy) in the copy."""
    kind = _NEAR_COPY_KINDS[rng.integers(len(_NEAR_COPY_KINDS))]
    width, height = image.size
    if kind == "resize":
        low = max(0.6, sides[0] / min(width, height))
        high = min(1.5, sides[1] / max(width, height))
        ranges = [(a, b) for a, b in ((low, 0.85), (1.15, high)) if a <= b]
        if not ranges:  # no room to resize: re-encode instead
            return image, int(rng.integers(35, 71)), "quality", (1.0, 1.0, 0, 0)
        factor = rng.uniform(*ranges[rng.integers(len(ranges))])
        size = (round(width * factor), round(height * factor))
        return (image.resize(size, Image.BICUBIC), _JPEG_QUALITY, kind,
                (size[0] / width, size[1] / height, 0, 0))
    if kind == "crop":  # cut 2-4% of the width and height, then enlarge back
        fraction = rng.uniform(0.02, 0.04)
        cut_x, cut_y = round(width * fraction), round(height * fraction)
        ox, oy = int(rng.integers(cut_x + 1)), int(rng.integers(cut_y + 1))
        box = (ox, oy, width - cut_x + ox, height - cut_y + oy)
        return (image.resize(image.size, Image.BICUBIC, box=box), _JPEG_QUALITY, kind,
                (width / (width - cut_x), height / (height - cut_y), ox, oy))
    if kind == "brightness":
        factor = rng.uniform(0.8, 0.9) if rng.random() < 0.5 else rng.uniform(1.1, 1.2)
        return ImageEnhance.Brightness(image).enhance(factor), _JPEG_QUALITY, kind, (1.0, 1.0, 0, 0)
    return image, int(rng.integers(35, 71)), kind, (1.0, 1.0, 0, 0)


def planted_files(root):
    """The near copies and mislabelled images planted in a ``fashion`` or ``scenes`` dataset.

    Parameters
    ----------
    root : str or Path
        A folder written by ``make_dataset("fashion" or "scenes", ...)``.

    Returns
    -------
    dict
        ``near_copies``: ``{"path", "copy_of", "kind"}`` (kind: quality, resize, crop or
        brightness); ``mislabelled``: ``{"path", "given", "true"}`` (label lists); paths
        joined onto ``root`` as the loaders write them.
    """
    marker = _read_json(Path(root) / MARKER_COMPLETE) or {}
    if not isinstance(marker.get("planted"), dict):
        raise ValueError(f"planted_files: expected {Path(root) / MARKER_COMPLETE} with a 'planted' "
                         "entry (a fashion or scenes dataset of make_dataset); it has none")

    def joined(name):
        return os.path.join(os.fspath(root), *name.split("/"))

    lists = marker["planted"]
    return {"near_copies": [{**entry, "path": joined(entry["path"]), "copy_of": joined(entry["copy_of"])}
                            for entry in lists["near_copies"]],
            "mislabelled": [{**entry, "path": joined(entry["path"])} for entry in lists["mislabelled"]]}


# --------------------------------------------------------------------------- scenes

# Class → (width/height aspect range, relative size range) of its bounding box.
_SCENE_BOXES = {
    "person": ((0.35, 0.55), (0.35, 0.8)),
    "car": ((1.6, 2.3), (0.22, 0.55)),
    "chair": ((0.65, 0.85), (0.25, 0.5)),
    "dog": ((1.2, 1.6), (0.2, 0.45)),
    "cat": ((0.9, 1.15), (0.2, 0.4)),
    "bird": ((1.1, 1.5), (0.12, 0.3)),
    "bottle": ((0.3, 0.42), (0.2, 0.45)),
    "tvmonitor": ((1.2, 1.5), (0.2, 0.42)),
    "sheep": ((1.25, 1.55), (0.22, 0.45)),
    "boat": ((1.0, 1.35), (0.25, 0.5)),
}


def _scene_background(width, height, rng):
    """A 'place': sky or wall above a floor or ground, with some texture."""
    yy = np.arange(height, dtype=np.float32)[:, None, None]
    horizon = height * rng.uniform(0.35, 0.7)
    top = np.array(_neutral_colour(rng, (0.55, 0.9)), dtype=np.float32)
    bottom = np.array(_neutral_colour(rng, (0.3, 0.65)), dtype=np.float32)
    blend = np.clip((yy - horizon) / max(2.0, height * 0.03) + 0.5, 0, 1)
    pixels = top * (1 - blend) + bottom * blend
    pixels = np.broadcast_to(pixels, (height, width, 3)).copy()
    if rng.random() < 0.5:
        period = rng.uniform(8, 24)
        xx = np.arange(width, dtype=np.float32)[None, :, None]
        pixels += (np.sin(xx * 2 * math.pi / period) * rng.uniform(4, 10)) * (1 - blend)
    return {"pixels": pixels, "horizon": horizon,
            "props": [(float(rng.uniform(0, width)), float(rng.uniform(0, horizon)),
                       float(rng.uniform(0.04, 0.12) * min(width, height)),
                       _neutral_colour(rng, (0.3, 0.9))) for _ in range(rng.integers(0, 4))]}


def _draw_person(draw, box, rng):
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    skin = _hsv(rng.uniform(0.03, 0.1), rng.uniform(0.25, 0.6), rng.uniform(0.45, 0.95))
    shirt = _hsv(rng.uniform(0, 1), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.9))
    trousers = _hsv(rng.uniform(0, 1), rng.uniform(0.1, 0.6), rng.uniform(0.15, 0.5))
    r = min(w * 0.32, h * 0.11)
    cx = x0 + w / 2
    head = (cx - r, y0, cx + r, y0 + 2 * r)
    draw.ellipse(head, fill=skin)
    body_top, body_bottom = y0 + 2 * r, y0 + h * 0.58
    draw.rectangle((x0 + w * 0.2, body_top, x1 - w * 0.2, body_bottom), fill=shirt)
    draw.rectangle((x0 + w * 0.22, body_bottom, cx - w * 0.03, y1), fill=trousers)
    draw.rectangle((cx + w * 0.03, body_bottom, x1 - w * 0.22, y1), fill=trousers)
    arm = max(2, int(w * 0.14))
    raised = rng.random() < 0.3
    hand = (x0 + w * 0.05, y0 + h * (0.12 if raised else 0.55))
    draw.line([(x0 + w * 0.22, body_top + arm), hand], fill=shirt, width=arm)
    draw.line([(x1 - w * 0.22, body_top + arm), (x1 - w * 0.05, y0 + h * 0.55)], fill=shirt, width=arm)
    hr = max(2.0, arm * 0.8)
    hand_box = (hand[0] - hr, hand[1] - hr, hand[0] + hr, hand[1] + hr)
    draw.ellipse(hand_box, fill=skin)
    return [("head", head), ("hand", hand_box)]


def _draw_car(draw, box, rng):
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    body = _hsv(rng.uniform(0, 1), rng.uniform(0.4, 1.0), rng.uniform(0.35, 0.95))
    draw.rounded_rectangle((x0, y0 + h * 0.35, x1, y1 - h * 0.18), radius=max(1, int(h * 0.12)), fill=body)
    draw.polygon([(x0 + w * 0.2, y0 + h * 0.36), (x0 + w * 0.32, y0), (x1 - w * 0.3, y0),
                  (x1 - w * 0.15, y0 + h * 0.36)], fill=body)
    draw.polygon([(x0 + w * 0.27, y0 + h * 0.33), (x0 + w * 0.35, y0 + h * 0.08),
                  (x1 - w * 0.33, y0 + h * 0.08), (x1 - w * 0.22, y0 + h * 0.33)], fill=(170, 210, 230))
    wr = h * 0.2
    for wx in (x0 + w * 0.22, x1 - w * 0.22):
        draw.ellipse((wx - wr, y1 - 2 * wr, wx + wr, y1), fill=(25, 25, 25))
        draw.ellipse((wx - wr * 0.45, y1 - wr * 1.45, wx + wr * 0.45, y1 - wr * 0.55), fill=(160, 160, 160))
    return []


def _draw_chair(draw, box, rng):
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    wood = _hsv(rng.uniform(0.05, 0.11), rng.uniform(0.5, 0.8), rng.uniform(0.3, 0.6))
    leg = max(2, int(w * 0.1))
    draw.rectangle((x0, y0, x0 + leg, y1), fill=wood)
    draw.rectangle((x0, y0 + h * 0.5, x1, y0 + h * 0.5 + leg), fill=wood)
    draw.rectangle((x1 - leg, y0 + h * 0.5, x1, y1), fill=wood)
    draw.rectangle((x0, y0 + h * 0.1, x0 + w * 0.35, y0 + h * 0.14 + leg), fill=wood)
    return []


def _draw_pet_body(draw, box, rng, fur, head_ratio):
    """Body, four legs and head of a dog or cat; return the head's centre x, its radius and
    whether the animal faces left."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    facing_left = rng.random() < 0.5
    hx = x0 + w * 0.2 if facing_left else x1 - w * 0.2
    body = (x0 + w * 0.15, y0 + h * 0.35, x1 - w * 0.1, y0 + h * 0.75)
    if not facing_left:
        body = (x0 + w * 0.1, y0 + h * 0.35, x1 - w * 0.15, y0 + h * 0.75)
    draw.ellipse(body, fill=fur)
    for lx in (0.25, 0.4, 0.62, 0.78):
        draw.rectangle((x0 + w * lx, y0 + h * 0.6, x0 + w * (lx + 0.07), y1), fill=fur)
    hr = h * head_ratio
    draw.ellipse((hx - hr, y0 + h * 0.08, hx + hr, y0 + h * 0.08 + 2 * hr), fill=fur)
    return hx, hr, facing_left


def _draw_dog(draw, box, rng):
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    fur = _hsv(rng.uniform(0.05, 0.1), rng.uniform(0.4, 0.8), rng.uniform(0.3, 0.7))
    hx, hr, facing_left = _draw_pet_body(draw, box, rng, fur, 0.22)
    ear = _shade(fur, 0.6)
    draw.ellipse((hx - hr * 1.2, y0 + h * 0.1, hx - hr * 0.5, y0 + h * 0.55), fill=ear)
    draw.ellipse((hx + hr * 0.5, y0 + h * 0.1, hx + hr * 1.2, y0 + h * 0.55), fill=ear)
    tail_x = x1 - w * 0.05 if facing_left else x0 + w * 0.05
    draw.line([(tail_x, y0 + h * 0.45), (tail_x, y0 + h * 0.2)], fill=fur, width=max(2, int(h * 0.06)))
    return []


def _draw_cat(draw, box, rng):
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    grey = rng.uniform(0.35, 0.75)
    fur = _hsv(rng.uniform(0.05, 0.12), rng.uniform(0.0, 0.25), grey)
    hx, hr, facing_left = _draw_pet_body(draw, box, rng, fur, 0.25)
    for side in (-1, 1):
        draw.polygon([(hx + side * hr * 0.95, y0), (hx + side * hr * 0.2, y0 + h * 0.16),
                      (hx + side * hr * 0.95, y0 + h * 0.22)], fill=fur)
    eye = (120, 200, 80)
    draw.ellipse((hx - hr * 0.5, y0 + h * 0.22, hx - hr * 0.2, y0 + h * 0.3), fill=eye)
    draw.ellipse((hx + hr * 0.2, y0 + h * 0.22, hx + hr * 0.5, y0 + h * 0.3), fill=eye)
    tail_x = x1 if facing_left else x0
    draw.line([(tail_x - (w * 0.1 if facing_left else -w * 0.1), y0 + h * 0.5), (tail_x, y0 + h * 0.15)],
              fill=fur, width=max(2, int(h * 0.05)))
    return []


def _draw_bird(draw, box, rng):
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    feathers = _hsv(rng.uniform(0.1, 0.17), rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0))
    draw.ellipse((x0 + w * 0.15, y0 + h * 0.3, x1 - w * 0.1, y1 - h * 0.1), fill=feathers)
    draw.ellipse((x0 + w * 0.05, y0 + h * 0.1, x0 + w * 0.45, y0 + h * 0.55), fill=feathers)
    draw.polygon([(x0, y0 + h * 0.32), (x0 + w * 0.1, y0 + h * 0.25), (x0 + w * 0.1, y0 + h * 0.4)],
                 fill=(230, 120, 20))
    draw.polygon([(x0 + w * 0.4, y0 + h * 0.5), (x1 - w * 0.2, y0), (x1 - w * 0.05, y0 + h * 0.55)],
                 fill=_shade(feathers, 0.7))
    draw.ellipse((x0 + w * 0.2, y0 + h * 0.22, x0 + w * 0.27, y0 + h * 0.3), fill=(10, 10, 10))
    return []


def _draw_bottle(draw, box, rng):
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    glass = _hsv(rng.uniform(0.25, 0.42), rng.uniform(0.5, 0.9), rng.uniform(0.3, 0.7))
    draw.rounded_rectangle((x0, y0 + h * 0.35, x1, y1), radius=max(1, int(w * 0.2)), fill=glass)
    draw.rectangle((x0 + w * 0.32, y0 + h * 0.05, x1 - w * 0.32, y0 + h * 0.4), fill=glass)
    draw.rectangle((x0 + w * 0.28, y0, x1 - w * 0.28, y0 + h * 0.07), fill=(200, 170, 60))
    draw.rectangle((x0, y0 + h * 0.55, x1, y0 + h * 0.75), fill=(235, 230, 210))
    return []


def _draw_tvmonitor(draw, box, rng):
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    frame = _hsv(0, 0, rng.uniform(0.05, 0.2))
    draw.rectangle((x0, y0, x1, y1 - h * 0.15), fill=frame)
    draw.rectangle((x0 + w * 0.07, y0 + h * 0.08, x1 - w * 0.07, y1 - h * 0.25),
                   fill=_hsv(rng.uniform(0.5, 0.6), rng.uniform(0.3, 0.7), rng.uniform(0.7, 1.0)))
    draw.rectangle((x0 + w * 0.45, y1 - h * 0.15, x1 - w * 0.45, y1 - h * 0.05), fill=frame)
    draw.rectangle((x0 + w * 0.3, y1 - h * 0.05, x1 - w * 0.3, y1), fill=frame)
    return []


def _draw_sheep(draw, box, rng):
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    wool = _hsv(rng.uniform(0.1, 0.15), rng.uniform(0.0, 0.12), rng.uniform(0.85, 1.0))
    for lx in (0.3, 0.45, 0.6, 0.75):
        draw.rectangle((x0 + w * lx, y0 + h * 0.65, x0 + w * (lx + 0.05), y1), fill=(30, 30, 30))
    for fx, fy in ((0.35, 0.35), (0.55, 0.3), (0.75, 0.35), (0.45, 0.5), (0.65, 0.5), (0.85, 0.45)):
        r = h * 0.2
        draw.ellipse((x0 + w * fx - r, y0 + h * fy - r, x0 + w * fx + r, y0 + h * fy + r), fill=wool)
    draw.ellipse((x0, y0 + h * 0.15, x0 + w * 0.25, y0 + h * 0.5), fill=(30, 30, 30))
    return []


def _draw_boat(draw, box, rng):
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    hull = _hsv(rng.uniform(0, 1), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.8))
    draw.polygon([(x0, y0 + h * 0.7), (x1, y0 + h * 0.7), (x1 - w * 0.15, y1), (x0 + w * 0.15, y1)], fill=hull)
    draw.line([(x0 + w * 0.5, y0), (x0 + w * 0.5, y0 + h * 0.7)], fill=(80, 60, 40), width=max(2, int(w * 0.03)))
    draw.polygon([(x0 + w * 0.53, y0 + h * 0.02), (x0 + w * 0.53, y0 + h * 0.65), (x1 - w * 0.08, y0 + h * 0.65)],
                 fill=(245, 245, 240))
    draw.polygon([(x0 + w * 0.47, y0 + h * 0.12), (x0 + w * 0.47, y0 + h * 0.65), (x0 + w * 0.15, y0 + h * 0.65)],
                 fill=_hsv(rng.uniform(0, 1), 0.6, 0.9))
    return []


# Class → function drawing it as ``drawer(draw, box, rng)`` and returning its VOC parts.
_SCENE_DRAWERS = {
    "person": _draw_person, "car": _draw_car, "chair": _draw_chair, "dog": _draw_dog,
    "cat": _draw_cat, "bird": _draw_bird, "bottle": _draw_bottle, "tvmonitor": _draw_tvmonitor,
    "sheep": _draw_sheep, "boat": _draw_boat,
}


def _draw_scene_object(draw, name, box, rng):
    """Draw a recognisable ``name`` inside ``box`` = (x0, y0, x1, y1); return its VOC parts
    as (part name, box) pairs."""
    if name not in _SCENE_DRAWERS:
        raise ValueError(name)
    return _SCENE_DRAWERS[name](draw, box, rng)


def _scene_objects(rng):
    """Class names of the objects in one image (0 to SCENE_MAX_OBJECTS, person repeated most)."""
    names = []
    for name, probability in SCENE_CLASS_PROBABILITY.items():
        if rng.random() < probability:
            repeats = rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]) if name == "person" else rng.choice([1, 2], p=[0.85, 0.15])
            names += [name] * int(repeats)
    if len(names) > SCENE_MAX_OBJECTS:
        # Keep one object of every class first, then fill up with the repeats.
        distinct = list(dict.fromkeys(names))
        rng.shuffle(distinct)
        keep = distinct[:SCENE_MAX_OBJECTS]
        extra = [n for n in names if n in keep]
        for name in keep:
            extra.remove(name)
        names = keep + extra[: SCENE_MAX_OBJECTS - len(keep)]
    return names


def _scene_image(background, width, height, rng):
    """Draw one scene; return the image and its VOC objects."""
    pixels = background["pixels"] * rng.uniform(0.9, 1.1) + rng.uniform(-8, 8, 3).astype(np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for px, py, pr, colour in background["props"]:
        draw.rectangle((px - pr, py - pr, px + pr, py + pr * 0.6), fill=colour)
    side = min(width, height)
    placed = []
    for name in _scene_objects(rng):
        aspect_range, size_range = _SCENE_BOXES[name]
        box_h = side * rng.uniform(*size_range)
        box_w = box_h * rng.uniform(*aspect_range)
        if box_w > width * 0.9:
            box_w, box_h = width * 0.9, width * 0.9 / (box_w / box_h)
        x0 = rng.uniform(-0.15 * box_w, width - 0.85 * box_w)
        y_low = min(background["horizon"] - box_h * 0.8, height - box_h)
        y0 = rng.uniform(max(-0.1 * box_h, y_low), height - 0.85 * box_h)
        placed.append((name, (x0, y0, x0 + box_w, y0 + box_h)))
    placed.sort(key=lambda item: item[1][3])  # nearer (lower) objects drawn last, in front

    objects = []
    for name, box in placed:
        parts = _draw_scene_object(draw, name, box, rng)
        bndbox = _clip_box(box, width, height)
        if bndbox is None:
            continue
        full_area = (box[2] - box[0]) * (box[3] - box[1])
        visible = (bndbox[2] - bndbox[0]) * (bndbox[3] - bndbox[1])
        truncated = visible < 0.97 * full_area
        difficult = (visible < 0.02 * width * height or visible < 0.65 * full_area
                     or rng.random() < 0.03)
        voc_object = {"name": name, "bndbox": bndbox, "truncated": int(truncated),
                      "difficult": int(difficult), "parts": [], "actions": None}
        if name == "person" and rng.random() < 0.3:
            voc_object["parts"] = [(part, b) for part, box_part in parts
                                   if (b := _clip_box(box_part, width, height)) is not None]
        if name == "person" and rng.random() < 0.12:
            action = rng.integers(0, len(_VOC_ACTIONS))
            voc_object["actions"] = {a: int(i == action) for i, a in enumerate(_VOC_ACTIONS)}
        objects.append(voc_object)
    image = _finish(np.asarray(image, dtype=np.float32), rng, noise=(2, 7))
    return image, objects


def _clip_box(box, width, height):
    """VOC's 1-based inclusive pixel box of ``box`` inside the image, or None when outside."""
    x0, y0, x1, y1 = box
    xmin, ymin = max(1, int(math.floor(x0)) + 1), max(1, int(math.floor(y0)) + 1)
    xmax, ymax = min(width, int(math.ceil(x1))), min(height, int(math.ceil(y1)))
    if xmax - xmin < 2 or ymax - ymin < 2:
        return None
    return (xmin, ymin, xmax, ymax)


def _voc_xml(image_id, width, height, objects):
    """The annotation of one image as PASCAL VOC XML text."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2012"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "Synthetic scenes (helpers.datasets.generate)"
    ET.SubElement(source, "annotation").text = "PASCAL VOC2012 layout"
    ET.SubElement(source, "image").text = "generated"
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(width)
    ET.SubElement(size, "height").text = str(height)
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(root, "segmented").text = "0"
    for voc_object in objects:
        element = ET.SubElement(root, "object")
        ET.SubElement(element, "name").text = voc_object["name"]
        ET.SubElement(element, "pose").text = "Unspecified"
        ET.SubElement(element, "truncated").text = str(voc_object["truncated"])
        ET.SubElement(element, "occluded").text = "0"
        _bndbox(element, voc_object["bndbox"])
        ET.SubElement(element, "difficult").text = str(voc_object["difficult"])
        for part_name, part_box in voc_object["parts"]:
            part = ET.SubElement(element, "part")
            ET.SubElement(part, "name").text = part_name
            _bndbox(part, part_box)
        if voc_object["actions"]:
            actions = ET.SubElement(element, "actions")
            for action, value in voc_object["actions"].items():
                ET.SubElement(actions, action).text = str(value)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def _bndbox(parent, box):
    bndbox = ET.SubElement(parent, "bndbox")
    for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
        ET.SubElement(bndbox, key).text = str(value)


def _scene_groups(seed, n_images):
    """(patient_id, group_index, n_in_group) until ``n_images`` images: a 'patient' is one place."""
    groups, total, index = [], 0, 0
    while total < n_images:
        size = int(_rng(seed, "scenes", 0, index).choice([1, 2, 3, 4, 5], p=[0.3, 0.25, 0.2, 0.15, 0.1]))
        size = min(size, n_images - total)
        groups.append((index + 1, index, size))
        total += size
        index += 1
    return groups


def _write_scenes(out_dir, seed, scale, progress):
    n_images = max(2, round(_SCENE_IMAGES * scale))
    annotations = out_dir / "Annotations"
    images = out_dir / "JPEGImages"
    main = out_dir / "ImageSets" / "Main"
    for folder in (annotations, images, main):
        folder.mkdir(parents=True)
    splits = {"train": [], "val": []}
    rows, sources, planted = [], [], {"near_copies": [], "mislabelled": []}
    with progress_bar(total=n_images, desc=f"scenes → {out_dir}", unit="img", disable=not progress) as bar:
        for patient_id, group, size in _scene_groups(seed, n_images):
            group_rng = _rng(seed, "scenes", 1, group)
            width, height = _image_size(group_rng, 128, 320)
            background = _scene_background(width, height, group_rng)
            split = "val" if group_rng.random() < _SCENE_VAL_FRACTION else "train"
            for follow_up in range(size):
                image_id = f"{patient_id:06d}_{follow_up:03d}"
                image, quality, objects = _planned_scene(seed, (group, follow_up, image_id),
                                                         background, sources, planted)
                _save_jpeg(image, images / f"{image_id}.jpg", quality)
                (annotations / f"{image_id}.xml").write_text(
                    _voc_xml(image_id, image.width, image.height, objects), encoding="utf-8")
                labels = sorted({o["name"] for o in objects})
                rows.append((f"{image_id}.jpg", "|".join(labels) or "No Finding", follow_up, patient_id))
                splits[split].append(image_id)
                bar.update()
    for split, ids in splits.items():
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    lines = ["Image Index,Finding Labels,Follow-up #,Patient ID"]
    lines += [",".join(str(value) for value in row) for row in rows]
    (out_dir / "Data_Entry.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"n_images": n_images, "n_train": len(splits["train"]), "n_val": len(splits["val"]),
            "planted": planted}


def _planned_scene(seed, place, background, sources, planted):
    """One scene as its own generator plans it: ``(image, JPEG quality, annotated objects)``.

    ``place`` is ``(group, follow_up, image_id)``; ``sources`` the places of the ordinary images
    with an object so far (what a near copy copies; this one is added when it is one); what is
    planted is added to ``planted``.
    """
    group, follow_up, image_id = place
    rng = _rng(seed, "scenes", 3, group, follow_up)
    plan = _plan(rng, len(sources))
    if plan == "copy":
        source = sources[rng.integers(len(sources))]
        original, objects = _scene_drawing(seed, *source[:2])
        copy, quality, kind, mapping = _near_copy(original, rng, (128, 320))
        planted["near_copies"].append({"path": f"JPEGImages/{image_id}.jpg",
                                       "copy_of": f"JPEGImages/{source[2]}.jpg", "kind": kind})
        return copy, quality, _moved_objects(objects, mapping, copy.size)
    height, width = background["pixels"].shape[:2]
    image, objects = _scene_image(background, width, height, _rng(seed, "scenes", 2, group, follow_up))
    names = sorted({voc_object["name"] for voc_object in objects})
    if plan == "mislabel" and names:  # the objects of one class left out of the annotation
        left_out = names[rng.integers(len(names))]
        planted["mislabelled"].append({"path": f"JPEGImages/{image_id}.jpg", "true": names,
                                       "given": [name for name in names if name != left_out]})
        return image, _JPEG_QUALITY, [o for o in objects if o["name"] != left_out]
    if objects:
        sources.append(place)
    return image, _JPEG_QUALITY, objects


def _scene_drawing(seed, group, follow_up):
    """The ordinary scene image ``(group, follow_up)`` drawn again: ``(image, objects)``."""
    group_rng = _rng(seed, "scenes", 1, group)
    width, height = _image_size(group_rng, 128, 320)
    background = _scene_background(width, height, group_rng)
    return _scene_image(background, width, height, _rng(seed, "scenes", 2, group, follow_up))


def _moved_objects(objects, mapping, size):
    """The VOC objects of a picture as they lie in its near copy of ``size`` (``mapping`` of
    :func:`_near_copy`); an object or part the copy cuts off is left out."""
    sx, sy, ox, oy = mapping

    def move(box):  # VOC's 1-based inclusive pixels to edges, moved, and back
        xmin, ymin, xmax, ymax = box
        return _clip_box(((xmin - 1 - ox) * sx, (ymin - 1 - oy) * sy, (xmax - ox) * sx,
                          (ymax - oy) * sy), *size)

    moved = []
    for voc_object in objects:
        box = move(voc_object["bndbox"])
        if box is not None:
            parts = [(name, moved_box) for name, part_box in voc_object["parts"]
                     if (moved_box := move(part_box)) is not None]
            moved.append({**voc_object, "bndbox": box, "parts": parts})
    return moved


# --------------------------------------------------------------------------- shapes

_SHAPE_HUES = {"red": (-0.02, 0.02), "green": (0.28, 0.40), "blue": (0.58, 0.66), "yellow": (0.13, 0.17)}


def _shape_colour(name, rng):
    """A random shade of one of the shape colours."""
    low, high = _SHAPE_HUES[name]
    return _hsv(rng.uniform(low, high), rng.uniform(0.65, 1.0), rng.uniform(0.6, 1.0))


def _shape_outline(shape, centre, radius, angle):
    """Polygon points of a square or triangle (or None for a circle) around ``centre``."""
    if shape == "circle":
        return None
    corners = 4 if shape == "square" else 3
    turn = [angle + 2 * math.pi * k / corners for k in range(corners)]
    return [(centre[0] + radius * math.cos(a), centre[1] + radius * math.sin(a)) for a in turn]


def _shape_image(folder, rng):
    """Draw one ``colour_shape`` image; return it and the shape's box (x0, y0, x1, y1)."""
    colour_name, shape = folder.split("_")
    side = int(rng.integers(64, 81))
    width, height = side, side
    pixels = _gradient_background(width, height, rng)
    clutter = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(clutter)
    for _ in range(rng.integers(1, 4)):
        _draw_clutter(draw, width, height, rng, _neutral_colour(rng, (0.3, 0.8)), (0.06, 0.16))
    pixels = np.asarray(clutter, dtype=np.float32).copy()

    radius = side * rng.uniform(0.14, 0.28)
    # A square's corners reach sqrt(2) r from the centre only when turned; keep it inside.
    margin = radius * 1.05 + 2
    centre = (rng.uniform(margin, width - margin), rng.uniform(margin, height - margin))
    angle = rng.uniform(0, 2 * math.pi)
    mask_image = Image.new("L", (width, height), 0)
    mask_draw = ImageDraw.Draw(mask_image)
    outline = _shape_outline(shape, centre, radius, angle)
    if outline is None:
        mask_draw.ellipse((centre[0] - radius, centre[1] - radius,
                           centre[0] + radius, centre[1] + radius), fill=255)
    else:
        mask_draw.polygon(outline, fill=255)
    mask = np.asarray(mask_image, dtype=np.float32) / 255.0
    pixels = _texture_fill(pixels, mask, _shape_colour(colour_name, rng), rng)
    rows, columns = np.nonzero(mask > 0.5)
    box = (int(columns.min()), int(rows.min()), int(columns.max()) + 1, int(rows.max()) + 1)
    return _finish(pixels, rng, noise=(2, 8)), box


def _write_shapes(out_dir, seed, scale, progress):
    per_folder = max(1, round(_SHAPE_IMAGES_PER_FOLDER * scale))
    folders = [f"{colour}_{shape}" for colour in SHAPE_COLOURS for shape in SHAPE_NAMES]
    rows = ["filename,width,height,xmin,ymin,xmax,ymax"]
    with progress_bar(total=per_folder * len(folders), desc=f"shapes → {out_dir}", unit="img",
              disable=not progress) as bar:
        for class_index, folder in enumerate(folders):
            (out_dir / folder).mkdir()
            for index in range(per_folder):
                image, (x0, y0, x1, y1) = _shape_image(folder, _rng(seed, "shapes", class_index, index))
                name = f"{folder}/{folder}_{index:04d}.jpg"
                _save_jpeg(image, out_dir / name)
                rows.append(f"{name},{image.width},{image.height},{x0},{y0},{x1},{y1}")
                bar.update()
    (out_dir / SHAPE_BOXES_FILE).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return {"n_images": per_folder * len(folders), "per_folder": per_folder}


def shape_boxes(root):
    """The box of the shape in each image of a ``shapes`` dataset, once for each of its labels.

    Parameters
    ----------
    root : str or Path
        A folder written by ``make_dataset("shapes", ...)`` (it holds ``boxes.csv``).

    Returns
    -------
    pandas.DataFrame
        Columns ``filename`` (joined onto ``root``, as ``helpers.data.load_split_folders``
        writes it), ``label`` (the colour, then the shape), ``xmin``, ``ymin``, ``xmax``,
        ``ymax`` (pixel edges: the shape covers columns ``xmin`` to ``xmax - 1``), ``width``
        and ``height`` of the image.
    """
    import pandas as pd

    path = Path(root) / SHAPE_BOXES_FILE
    if not path.is_file():
        raise ValueError(f"shape_boxes: expected {path} (written with the shapes preset), "
                         "but it does not exist")
    boxes = pd.read_csv(path)
    expected = ["filename", "width", "height", "xmin", "ymin", "xmax", "ymax"]
    if list(boxes.columns) != expected:
        raise ValueError(f"{path}: expected the columns {expected}, got {list(boxes.columns)}")
    folders = boxes["filename"].str.split("/").str[0]
    boxes["filename"] = [os.path.join(os.fspath(root), *name.split("/")) for name in boxes["filename"]]
    per_label = [boxes.assign(label=folders.str.split("_").str[part]) for part in (0, 1)]
    columns = ["filename", "label", "xmin", "ymin", "xmax", "ymax", "width", "height"]
    return pd.concat(per_label, ignore_index=True)[columns]
