"""Export a model folder for use without ``helpers``: a SavedModel with the preprocessing and
the per-label thresholds inside, a LiteRT file, an ONNX file and ``labels.json``.

Every file is checked against the Keras model on a few images before the folder appears:
``OUT`` is written into a temporary folder beside it and renamed at the end, so a failed
export leaves nothing behind.
"""
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from helpers import artefacts, warn
from helpers.files.fileio import atomic_write_json, printable, read_json
from helpers.files.images import ImageError, read_image, resize

FORMATS = ("saved_model", "litert", "onnx")
TOLERANCES = {"saved_model": 1e-4, "from_bytes": 1e-4, "litert": 1e-3, "onnx": 1e-3}
_FILES = {"saved_model": "saved_model", "litert": "model.tflite", "onnx": "model.onnx"}
_N_CHECK_IMAGES = 8


class ExportError(ValueError):
    """An export that cannot be made, or whose files disagree with the Keras model."""


def export_model(model_dir, out_dir, check_paths=None, formats=FORMATS):
    """Write ``OUT/saved_model``, ``OUT/model.tflite``, ``OUT/model.onnx`` and ``OUT/labels.json``.

    Parameters
    ----------
    model_dir : str or Path
        A model folder (``helpers train --out``).
    out_dir : str or Path
        Must not exist yet (or be an empty folder).
    check_paths : list of str, optional
        Images to compare the exported files on; default: up to 8 test (else validation)
        images of the model's ``splits.csv``, or random pixels when none can be read.
    formats : tuple of str
        A subset of ``FORMATS``.

    Returns
    -------
    dict
        The ``labels.json`` written, with ``checks``: the largest difference per file.
    """
    import keras  # noqa: F401  (registers the custom layers before loading)

    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or "saved_model" not in formats:
        raise ExportError(f"formats: expected 'saved_model' and any of {FORMATS}, got {list(formats)}")
    model, metadata = _load_for_export(model_dir)
    images = _check_images(model_dir, check_paths, metadata["target_size"])
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        checks = _write_and_check(model, metadata, staging, images, formats)
        document = _labels_document(metadata, staging, formats)
        atomic_write_json(staging / artefacts.LABELS_FILE, document)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dict(document, checks=checks)


def _check_out_dir(out_dir):
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{printable(out_dir)}: exists and is not an empty folder; "
                          "choose a new OUT or remove it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)


def _load_for_export(model_dir):
    """The model and its labels.json, refusing what would silently change a decision."""
    labels_path = Path(model_dir) / artefacts.LABELS_FILE
    model, metadata = artefacts.load_artefacts(model_dir)
    raw = read_json(labels_path)
    if metadata["task"] == "multi_label" and raw.get("thresholds") is None:
        raise ExportError(
            f"{printable(labels_path)}: no 'thresholds'; the export carries one per label, so "
            "set them (helpers evaluate --tune-thresholds, or 0.5 each by hand)")
    return model, metadata


def _check_images(model_dir, paths, target_size):
    """The images the files are checked on: ``originals`` (uint8, as stored), ``resized``
    (``helpers.files.images.resize`` of each, what ``serving_default`` must match) and
    ``read`` (as ``helpers predict`` reads each file, what ``from_bytes`` must match)."""
    size = tuple(target_size)
    if paths is None:
        paths = _split_paths(model_dir)
    found = {"paths": [], "originals": [], "read": []}
    for path in paths:
        try:
            original, read = read_image(path), read_image(path, size)
        except ImageError as error:
            warn(f"{printable(path)}: not used to check the export ({error})")
            continue
        for key, value in zip(found, (str(path), original, read)):
            found[key].append(value)
        if len(found["paths"]) == _N_CHECK_IMAGES:
            break
    if not found["paths"]:
        generator = np.random.default_rng(0)
        shapes = [(size[0] * 2, size[1] + 7, 3), (size[0] - 3, size[1] * 3, 3)]
        found["originals"] = [generator.integers(0, 256, shape, dtype=np.uint8) for shape in shapes]
        found["read"] = [resize(image, size) for image in found["originals"]]
    found["resized"] = np.stack([resize(image, size) for image in found["originals"]])
    found["read"] = np.stack(found["read"])
    return found


def _split_paths(model_dir):
    try:
        splits = artefacts.read_splits(model_dir)
    except (OSError, ValueError):
        return []
    column = "absolute_path" if "absolute_path" in splits else "filename"
    ordered = [*splits[splits["split"] == "test"][column], *splits[splits["split"] == "val"][column]]
    return [path for path in ordered if os.path.isfile(path)][: 4 * _N_CHECK_IMAGES]


def _write_and_check(model, metadata, staging, images, formats):
    """Write each format and compare it with the Keras model; the largest differences."""
    from helpers.app import export_formats

    def keras_probabilities(pixels):
        return np.asarray(model.predict_on_batch(pixels.astype("float32") / 255.0))

    expected = {key: keras_probabilities(images[key]) for key in ("resized", "read")}
    checks = {}
    path = staging / _FILES["saved_model"]
    export_formats.write_saved_model(model, metadata, path)
    checks.update(export_formats.check_saved_model(path, images, expected))
    writers = {"litert": export_formats.write_litert, "onnx": export_formats.write_onnx}
    for name, write in writers.items():
        if name in formats:
            target = staging / _FILES[name]
            write(model, metadata, target)
            checks[name] = export_formats.check_file(name, target, images["read"], expected["read"])
    for name, difference in checks.items():
        if not difference <= TOLERANCES[name]:
            raise ExportError(f"{name}: probabilities differ from the Keras model by up to "
                              f"{difference:.2e} (tolerance {TOLERANCES[name]:.0e}); not exported")
    return checks


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _labels_document(metadata, staging, formats):
    files = {}
    for path in sorted(staging.rglob("*")):
        if path.is_file():
            files[path.relative_to(staging).as_posix()] = _sha256(path)
    pixels = "uint8 RGB pixels 0-255, any height and width (resized inside)"
    inputs = {
        "saved_model": {"serving_default": {"images": f"[N, H, W, 3] {pixels}"},
                        "from_bytes": {"image_bytes": "[N] encoded JPEG, PNG, BMP or GIF files "
                                                      "(EXIF orientation is not applied)"},
                        "outputs": {"probabilities": "float32 [N, C]",
                                    "decisions": "bool [N, C]: the thresholds applied"
                                    if metadata["task"] == "multi_label" else
                                    "bool [N, C]: the most probable class"}},
    }
    size = "x".join(map(str, metadata["target_size"]))
    for name in ("litert", "onnx"):
        if name in formats:
            batch = "1" if name == "litert" else "N"
            inputs[name] = {"input": f"float32 [{batch}, {size.replace('x', ', ')}, 3] RGB in "
                                     "[0, 1] (pixels / 255), already resized to target_size",
                            "output": "float32 probabilities"}
    return {"classes": list(metadata["classes"]), "thresholds": list(metadata["thresholds"]),
            "target_size": list(metadata["target_size"]), "task": metadata["task"],
            "resize": "area averaging along an axis that shrinks, bilinear along one that grows",
            "inputs": inputs, "sha256": files}
