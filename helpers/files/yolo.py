"""Hardened reading of a YOLO dataset folder, as Ultralytics, Roboflow and CVAT write it.

- Ultralytics / Roboflow: ``data.yaml`` (``names:`` a list, or a mapping id → name); each
  image under an ``images`` folder has its ``.txt`` at the same place under ``labels``
  (``images/train/a.jpg`` → ``labels/train/a.txt``; ``train/images`` → ``train/labels``).
- Darknet / CVAT "YOLO 1.1": ``obj.names`` or ``classes.txt``, one name a line; each image
  has its ``.txt`` beside it.

A label line starts with a class id. A line that is not numeric, or names an id outside
the names, is left out and named (file and line) through ``skip(path, reason)``; so is a
label file without an image. An image without a label file, or with an empty one, has no
label. YAML is read with ``yaml.safe_load`` only: no tag constructs an object.
"""
import os
from pathlib import Path

from helpers.files import fileio

_MAX_YAML_BYTES = 16_000_000
_MAX_LABEL_BYTES = 64_000_000
_YAML_FILES = ("data.yaml", "data.yml", "dataset.yaml")
_NAME_FILES = ("obj.names", "classes.txt")
_SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def _names_from_yaml(path):
    import yaml

    text = fileio.read_text(path, what="YAML file", max_bytes=_MAX_YAML_BYTES)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        reason = " ".join(str(error).split())
        raise ValueError(f"{fileio.printable(path)}: not YAML that can be read safely ({reason})") from None
    if not isinstance(document, dict) or "names" not in document:
        raise ValueError(f"{fileio.printable(path)}: expected a mapping with 'names', "
                         f"got {type(document).__name__}")
    names = document["names"]
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise ValueError(f"{fileio.printable(path)}: 'names' must map the ids 0..{len(names) - 1} "
                             f"to names, got the ids {sorted(names, key=str)[:10]}")
        names = [names[index] for index in range(len(names))]
    if not isinstance(names, list) or not all(isinstance(n, (str, int)) and str(n).strip() for n in names):
        raise ValueError(f"{fileio.printable(path)}: 'names' must be a list of names")
    return [str(name).strip() for name in names]


def class_names(root):
    """The class names and the layout (``"ultralytics"`` or ``"darknet"``) of a YOLO folder."""
    root = Path(root)
    for name in _YAML_FILES:
        if (root / name).is_file():
            return _names_from_yaml(root / name), "ultralytics"
    for name in _NAME_FILES:
        if (root / name).is_file():
            lines = fileio.read_text(root / name, what="names file").splitlines()
            return [line.strip() for line in lines if line.strip()], "darknet"
    raise ValueError(f"{fileio.printable(root)}: no {' / '.join(_YAML_FILES + _NAME_FILES)}: "
                     "not a YOLO dataset folder")


def label_path(image, style):
    """The ``.txt`` holding an image's labels."""
    parts = list(image.parts)
    if style == "ultralytics" and "images" in parts:
        index = len(parts) - 1 - parts[::-1].index("images")
        parts[index] = "labels"
    return Path(*parts).with_suffix(".txt")


def split_of(path, root):
    """``train`` / ``val`` / ``test`` from a folder name on the way to ``path``, or None."""
    for part in Path(path).relative_to(root).parts[:-1]:
        if part.lower() in _SPLITS:
            return _SPLITS[part.lower()]
    return None


def read_labels(path, names, skip):
    """The set of class names in one label file; bad lines are skipped and named."""
    found = set()
    text = fileio.read_text(path, what="label file", max_bytes=_MAX_LABEL_BYTES)
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            value = None
        if value is None or value != int(value):
            skip(f"{path} line {number}", f"expected a class id first, got {fields[0][:40]!r}")
        elif not 0 <= int(value) < len(names):
            skip(f"{path} line {number}", f"class id {int(value)} is not one of the "
                                          f"{len(names)} names (0..{len(names) - 1})")
        else:
            found.add(names[int(value)])
    return found


def orphan_labels(root, images, style, skip):
    """Report each label file that belongs to no image."""
    expected = {label_path(image, style) for image in images}
    for folder, _, files in os.walk(root):
        for name in sorted(files):
            path = Path(folder) / name
            is_label = name.lower().endswith(".txt") and (
                "labels" in path.relative_to(root).parts if style == "ultralytics"
                else path.parent != Path(root))
            if is_label and path not in expected:
                skip(path, "a label file without an image")
