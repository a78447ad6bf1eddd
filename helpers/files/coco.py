"""Hardened reading of a COCO instances file, as CVAT, Label Studio, Roboflow and makesense
export it: ``images``, ``annotations``, ``categories``.

The file is read as strict JSON (size and nesting capped, UTF-8 or a byte-order mark). An
entry that cannot be used (an image without a usable ``id`` or ``file_name``, a duplicate id
or file name, a path escaping the folder, an annotation naming an unknown image or
category) is left out and named with its file and index through ``skip(path, reason)``;
the other entries are kept.
"""
from pathlib import Path

from helpers.files import fileio
from helpers.files.markup import unsafe_reason

_MAX_COCO_BYTES = 2_000_000_000  # COCO 2017 train's instances file is 448 MB
_LISTS = ("images", "annotations", "categories")


def _is_id(value):
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _entries(document, key, json_path, skip):
    """``(index, entry)`` of each object in ``document[key]``; other values are skipped."""
    for index, entry in enumerate(document[key]):
        if isinstance(entry, dict):
            yield index, entry
        else:
            skip(f"{json_path} {key}[{index}]", f"expected an object, got {type(entry).__name__}")


def _categories(document, json_path, skip, label_field):
    names = {}
    for index, entry in _entries(document, "categories", json_path, skip):
        name = entry.get(label_field)
        if not _is_id(entry.get("id")) or not isinstance(name, str) or not name.strip():
            skip(f"{json_path} categories[{index}]", f"needs an 'id' and a text {label_field!r}")
        elif entry["id"] in names:
            skip(f"{json_path} categories[{index}]", f"duplicate category id {entry['id']!r}")
        else:
            names[entry["id"]] = name.strip()
    return names


def _images(document, json_path, skip, allow_absolute):
    """``{image id: file name}`` in file order, each id and file name once."""
    images, seen = {}, set()
    for index, entry in _entries(document, "images", json_path, skip):
        where, name = f"{json_path} images[{index}]", entry.get("file_name")
        if not _is_id(entry.get("id")) or not isinstance(name, str) or not name.strip():
            skip(where, "needs an 'id' and a text 'file_name'")
            continue
        reason = unsafe_reason(name, allow_absolute)
        if entry["id"] in images:
            reason = f"duplicate image id {entry['id']!r} (first: {images[entry['id']]})"
        elif name in seen:
            reason = f"duplicate file_name {name!r}"
        if reason:
            skip(where, reason)
            continue
        images[entry["id"]] = name
        seen.add(name)
    return images


def read_coco(json_path, skip, allow_absolute=False, label_field="name"):
    """``[(file name, sorted label names), ...]`` of every usable image, in file order.

    ``label_field="supercategory"`` gives the categories' supercategories as labels. Images
    without annotations get no label; ``iscrowd`` annotations count like the others.
    """
    document = fileio.read_json(json_path, what="COCO annotation file", max_bytes=_MAX_COCO_BYTES)
    if not isinstance(document, dict) or any(not isinstance(document.get(key), list) for key in _LISTS):
        raise ValueError(f"{fileio.printable(json_path)}: expected a COCO object with the lists "
                         f"{list(_LISTS)} (an instances file, not a {type(document).__name__})")
    names = _categories(document, json_path, skip, label_field)
    images = _images(document, json_path, skip, allow_absolute)
    labels = {image_id: set() for image_id in images}
    for index, entry in _entries(document, "annotations", json_path, skip):
        image_id, category_id = entry.get("image_id"), entry.get("category_id")
        if not _is_id(image_id) or image_id not in images:
            skip(f"{json_path} annotations[{index}]", f"image_id {image_id!r} is not in 'images'")
        elif not _is_id(category_id) or category_id not in names:
            skip(f"{json_path} annotations[{index}]",
                 f"category_id {category_id!r} is not in 'categories' (image {images[image_id]})")
        else:
            labels[image_id].add(names[category_id])
    return [(name, sorted(labels[image_id])) for image_id, name in images.items()]


def image_directory(json_path, file_names):
    """Where the images of a COCO file are: beside it (Roboflow), in ``images/`` (or
    ``images/SUBSET``) next to its ``annotations/`` folder (CVAT), or in the folder named
    after its subset (``instances_val2017.json`` → ``val2017/``, COCO's own layout)."""
    here = Path(json_path).resolve().parent
    subset = Path(json_path).stem.split("instances_")[-1]
    candidates = [here, here.parent / "images", here.parent / "images" / subset, here.parent / subset]
    sample = [name for name in file_names[:20]]
    for candidate in candidates:
        if any((candidate / name).is_file() for name in sample):
            return candidate
    return here
