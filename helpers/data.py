"""Turn any common dataset layout on disk into one DataFrame of file names and labels.

Every loader returns the same thing, so everything downstream is layout-agnostic:

- ``filename``: the image path joined onto the image directory (opens from the cwd);
- ``labels``: a list of label strings per image (stripped, unique, sorted; ``[]`` = none);
- any other source column (``Patient ID``, ``width``, ``height``, ``split``...);
- ``df.attrs``: ``"layout"``, ``"directory"``, ``"skipped"`` (a ``{"path", "reason"}`` for
  every input left out, each also warned about), ``"merged_labels"`` (spelling → the label
  it was merged into) and ``"left_out"`` (files of the folder layouts that are not images
  by their extension).

Label hygiene, the same in every layout, each case reported in a warning:

- labels that differ only in case, spacing or Unicode form (``Dog``, ``dog``, `` DOG``) are
  one label, spelt as most images spell it (on a tie, in lower case);
- an image listed twice (two CSV rows, two VOC annotations) is one image with the labels
  of both; the second listing counts as skipped;
- a folder or file name that is not valid UTF-8 still opens; a label made from it shows
  the byte as ``\\xe9``.

Annotations are read by ``helpers.files.markup`` (VOC), ``tables`` (CSV), ``coco`` and
``yolo`` (the exports of labelling tools); what cannot be used is skipped. Their file names are trusted inside the image directory
only, unless ``allow_absolute=True``. ``drop_difficult=True`` ignores VOC objects marked
``<difficult>1</difficult>``.
"""
import collections
import functools
import inspect
import os
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import warn
from helpers.files import coco, fileio, folders, markup, tables, yolo

LAYOUTS = ("auto", "folders", "split-folders", "voc", "csv", "coco", "yolo")

# A CSV's label column by default, in order of preference (ours, then ChestX-ray14's).
_LABEL_COLUMN_CANDIDATES = ("labels", "Finding Labels")


# ------------------------------------------------------------------- label hygiene
def _skip(skipped, path, reason):
    """Record an input the loader leaves out, and say so once."""
    skipped.append({"path": str(path), "reason": reason})
    warn(f"skipped {fileio.printable(path)}: {reason}")


def _clean_labels(labels):
    """Strip, drop empty, de-duplicate and sort a list of label strings (Unicode NFC)."""
    return sorted({unicodedata.normalize("NFC", label.strip())
                   for label in labels if label and label.strip()})


def _label_key(label):
    """What makes two spellings one label: Unicode form, case and runs of spaces ignored."""
    return " ".join(unicodedata.normalize("NFKC", label).casefold().split())


def _merge_label_variants(labels):
    """The label lists with spellings of one label merged, and ``{spelling: label}``."""
    counts = collections.Counter(label for row in labels for label in row)
    groups = collections.defaultdict(list)
    for label in counts:
        groups[_label_key(label)].append(label)
    merged = {}
    for spellings in groups.values():
        if len(spellings) > 1:
            # Most images first; on a tie, the lower-case spelling, then alphabetical.
            kept = min(spellings, key=lambda label: (-counts[label], label != label.lower(), label))
            merged.update({label: kept for label in spellings if label != kept})
    if not merged:
        return labels, {}
    described = "; ".join(
        f"{kept!r} ({counts[kept]} images) also spelt "
        + ", ".join(f"{label!r} ({counts[label]})" for label in sorted(merged) if merged[label] == kept)
        for kept in sorted(set(merged.values())))
    warn(f"labels that differ only in case or spacing are merged into the most common "
         f"spelling: {described}")
    return [sorted({merged.get(label, label) for label in row}) for row in labels], merged


def _merge_duplicates(df, where, skipped):
    """One row per image: rows naming the same file are merged (labels united), each reported."""
    # Only names with "." or empty segments need normalising ("a/./b.jpg", "a//b.jpg").
    keys = pd.Series([os.path.normpath(name) if "/." in name or "//" in name else name
                      for name in df["filename"].tolist()])
    repeated = keys.duplicated(keep=False).to_numpy()
    if not repeated.any():
        return df
    first_row, drop, labels = {}, [], list(df["labels"])
    for row in np.flatnonzero(repeated):
        first = first_row.setdefault(keys.iat[row], row)
        if first == row:
            continue
        union = sorted(set(labels[first]) | set(labels[row]))
        detail = ("with the same labels: counted once" if set(labels[row]) == set(labels[first])
                  else f"with other labels {labels[row]}: merged into one image labelled {union}")
        _skip(skipped, df["filename"].iat[row], f"listed again ({where(row)}; first in "
                                                f"{where(first)}) {detail}")
        labels[first] = union
        drop.append(row)
    df = df.assign(labels=labels)
    return df.drop(index=df.index[drop]).reset_index(drop=True)


def _frame(filenames, labels, directory, layout, skipped, where=None, left_out=(), **columns):
    """The loaders' DataFrame, merged (``where(i)`` names row i's source) and described."""
    df = pd.DataFrame({"filename": filenames, "labels": labels, **columns})
    if where is not None:
        df = _merge_duplicates(df, where, skipped)
    new_labels, merged_labels = _merge_label_variants(list(df["labels"]))
    if merged_labels:
        df["labels"] = new_labels
    df.attrs.update(layout=layout, directory=str(directory), skipped=list(skipped),
                    merged_labels=merged_labels, left_out=list(left_out))
    return df


# ------------------------------------------------------------------- folder layouts
def _check_directory(directory, what):
    path = Path(directory)
    if not path.is_dir():
        raise ValueError(f"{what}: expected an existing directory, got {str(directory)!r}")
    return path


def list_images(directory):
    """Sorted paths of the image files below ``directory``, recursively.

    Hidden files and folders are left out, and so are files without an image extension
    (``IMAGE_EXTENSIONS``, compared case-insensitively); see ``helpers.files.folders``.
    """
    _check_directory(directory, "list_images(directory)")
    return folders.image_files(directory)[0]


def _folder_labels(names, separator):
    """Label lists from folder names; a name that is not UTF-8 gets a printable label, with a warning."""
    by_folder = {}
    for folder in dict.fromkeys(names):
        text = fileio.printable(folder)
        if text != folder:
            warn(f"the folder name {text!r} is not valid UTF-8; its images are labelled "
                 f"with it as shown")
        by_folder[folder] = _clean_labels(text.split(separator) if separator else [text])
    return [list(by_folder[folder]) for folder in names]


def _load_folder_tree(directory, layout, separator=None):
    _check_directory(directory, f"load_{layout.replace('-', '_')}(directory)")
    paths, others = folders.image_files(directory)
    prefix = os.path.join(os.fspath(directory), "")  # image_files joins onto it
    # The first folder below the directory holding each image ("" directly inside it).
    tops = [top if inside else "" for top, inside, _ in
            (path[len(prefix):].partition(os.sep) for path in paths)]
    labels = _folder_labels(tops, separator)
    n_unlabelled = tops.count("")
    if n_unlabelled and n_unlabelled < len(paths):
        warn(f"{n_unlabelled} image(s) directly inside {fileio.printable(directory)} are in no "
             "class folder; they get no label")
    return _frame(paths, labels, directory, layout, [], left_out=others, folder=tops)


def load_folders(directory):
    """Load a one-folder-per-class layout (``directory/cat/001.jpg``): one label per image.

    The label is the top-level folder's name (deeper images keep it); images directly
    inside ``directory`` get none (``[]``). Returns columns ``filename``, ``labels``, ``folder``.
    """
    return _load_folder_tree(directory, "folders")


def load_split_folders(directory, separator="_"):
    """Load folders whose names hold several labels (``red_shirt/`` → ``["red", "shirt"]``).

    ``separator`` splits a folder name; otherwise as :func:`load_folders`.
    """
    if not isinstance(separator, str) or not separator:
        raise ValueError(f"separator must be a non-empty string, got {separator!r}")
    return _load_folder_tree(directory, "split-folders", separator)


# ------------------------------------------------------------------- PASCAL VOC
def load_voc(root, drop_difficult=False, allow_absolute=False):
    """Load a PASCAL VOC layout: labels from ``Annotations/*.xml``, images in ``JPEGImages/``.

    The labels are the ``<object>/<name>`` (not a person's ``<part>`` or ``<actions>``).
    Columns: ``filename``, ``labels``, ``width`` and ``height`` (from ``<size>``, may be
    missing), and ``split`` (``"train"``/``"val"``/``"test"`` or None) when ``ImageSets/Main``
    lists exist.
    """
    root = _check_directory(root, "load_voc(root)")
    directory = os.path.join(os.fspath(root), "JPEGImages")
    skipped, rows, xml_paths = [], [], []
    skip = functools.partial(_skip, skipped)
    for xml_path, annotation, name in markup.annotations(root, "load_voc", allow_absolute, skip):
        labels = [obj.findtext("name") or "" for _, obj, _ in markup.objects(annotation, drop_difficult)]
        rows.append((os.path.join(directory, name), _clean_labels(labels),
                     *markup.image_size(annotation, xml_path)))
        xml_paths.append(str(xml_path))
    filenames, labels, widths, heights = ([list(column) for column in zip(*rows)] if rows
                                          else ([], [], [], []))
    columns = {"width": pd.array(widths, dtype="Int64"), "height": pd.array(heights, dtype="Int64")}
    splits = markup.image_splits(root)
    if splits:
        columns["split"] = [splits.get(Path(path).stem) for path in filenames]
    return _frame(filenames, labels, directory, "voc", skipped, where=xml_paths.__getitem__,
                  **columns)


def voc_boxes(root, drop_difficult=False, allow_absolute=False):
    """Read the object boxes of a PASCAL VOC layout: one row per ``<object>``.

    Columns: ``filename`` (as :func:`load_voc` writes it, so the two merge on it),
    ``label``, ``xmin``, ``ymin``, ``xmax``, ``ymax`` (VOC's 1-based pixels, both ends inside
    the box), the image's ``width`` and ``height`` (may be missing) and ``difficult``.
    """
    root = _check_directory(root, "voc_boxes(root)")
    directory = os.path.join(os.fspath(root), "JPEGImages")
    skipped, rows = [], []
    skip = functools.partial(_skip, skipped)
    for xml_path, annotation, name in markup.annotations(root, "voc_boxes", allow_absolute, skip):
        rows.extend((os.path.join(directory, name), *box)
                    for box in markup.boxes(annotation, xml_path, drop_difficult, skip))
    types = {"filename": object, "label": object, "xmin": "int64", "ymin": "int64",
             "xmax": "int64", "ymax": "int64", "width": "Int64", "height": "Int64", "difficult": bool}
    frame = pd.DataFrame(rows, columns=list(types)).astype(types)
    frame.attrs["skipped"] = list(skipped)
    return frame


# ------------------------------------------------------------------- CSV
def _default_image_directory(csv_path):
    folder = Path(csv_path).parent
    return os.fspath(next((candidate for candidate in (folder / "images", folder / "JPEGImages")
                           if candidate.is_dir()), folder))


def _pick_columns(csv_path, columns, image_column, label_column):
    if len(columns) < 2:
        raise ValueError(f"{csv_path}: expected at least two columns (image, labels), got {columns}")
    if image_column is None:
        image_column = columns[0]
    if label_column is None:
        label_column = next((name for name in _LABEL_COLUMN_CANDIDATES if name in columns),
                            columns[1])
    for argument, column in (("image_column", image_column), ("label_column", label_column)):
        if column not in columns:
            raise ValueError(f"{csv_path}: {argument}={column!r} is not a column; "
                             f"columns are {columns}")
    if image_column == label_column:
        raise ValueError(f"{csv_path}: image_column and label_column are both "
                         f"{image_column!r}; they must differ")
    return image_column, label_column


def _row_problems(names, raw_labels, image_column, label_column, no_label, allow_absolute):
    """``{row: reason}`` for rows without a file name, without a label, or with an unsafe name."""
    problems = {index: f"no file name in column {image_column!r}"
                for index in np.flatnonzero(names == "")}
    if no_label != "":
        for index in np.flatnonzero(pd.isna(raw_labels)):
            problems.setdefault(index, f"no label in column {label_column!r} "
                                       f"(use {no_label!r} for images without labels)")
    for index, name in enumerate(names):
        # Cheap test first; the exact one only for the few names that could be unsafe.
        if name and (name[:1] in ("/", "\\") or ".." in name or name[1:2] == ":" or "\x00" in name):
            reason = markup.unsafe_reason(name, allow_absolute)
            if reason:
                problems.setdefault(index, reason)
    return problems


def _skip_rows(skipped, csv_path, names, problems, long_rows):
    """Report each row left out, in row order."""
    for index in sorted(problems.keys() | long_rows.keys()):
        if index in long_rows:
            _skip(skipped, *long_rows[index])
        elif names[index] and "\x00" not in names[index]:
            _skip(skipped, names[index], f"{problems[index]} (row {index + 1} of {csv_path})")
        else:
            _skip(skipped, f"row {index + 1} of {csv_path}", problems[index])


def _label_lists(raw_labels, separator, no_label):
    """Split a column of joined label strings into clean lists, one per row."""
    cleaned = {}
    for text in pd.unique(raw_labels):  # few distinct combinations, even for 100k rows
        labels = [part.strip() for part in (text.split(separator) if separator else [text])]
        cleaned[text] = tuple(_clean_labels([label for label in labels if label != no_label]))
    # A fresh list per row, so editing one row's labels never changes another's.
    return [list(cleaned[text]) for text in raw_labels]


def load_csv(csv_path, image_directory=None, image_column=None, label_column=None,
             separator="|", no_label="No Finding", allow_absolute=False, encoding=None):
    """Load a CSV with one row per image and a column of joined labels (ChestX-ray14 style).

    Files listed but not on disk are kept (``helpers.scan.scan`` reports them). Rows
    without a file name or label, with too many fields, or with an unsafe file name are
    skipped with a warning. Columns: ``filename``, ``labels`` and the CSV's others.

    Parameters
    ----------
    csv_path : str or os.PathLike
        Comma-delimited, with a header row.
    image_directory : str or os.PathLike, optional
        Folder the file names are relative to. Default: ``images/`` or ``JPEGImages/``
        next to the CSV if there is one, else the CSV's folder.
    image_column, label_column : str, optional
        Default: the first column; ``"labels"``, else ``"Finding Labels"``, else the second.
    separator : str, default "|"
        What joins several labels in one cell; ``None`` or ``""``: one label per cell.
    no_label : str or None, default "No Finding"
        The token meaning "no label" (``[]``); with ``""`` an empty cell means no label
        instead of a skipped row.
    encoding : str, optional
        ``"latin-1"``, ``"shift_jis"``... Default: by the byte-order mark, else UTF-8.
    """
    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise ValueError(f"load_csv: expected an existing CSV file, got {csv_path!r}")
    data, encoding, columns = tables.read_header(csv_path, encoding)
    image_column, label_column = _pick_columns(csv_path, columns, image_column, label_column)
    directory = (os.fspath(image_directory) if image_directory is not None
                 else _default_image_directory(csv_path))
    skipped = []
    df, long_rows = tables.read_rows(csv_path, data, encoding, columns, (image_column, label_column),
                                     functools.partial(_skip, skipped))
    del data
    # Plain str objects in a numpy array: faster than the .str accessor for these steps.
    names = np.array([name.strip() if isinstance(name, str) else ""
                      for name in df[image_column].to_numpy()], dtype=object)
    raw_labels = df[label_column].to_numpy(dtype=object)
    problems = _row_problems(names, raw_labels, image_column, label_column, no_label, allow_absolute)
    _skip_rows(skipped, csv_path, names, problems, long_rows)
    keep = np.ones(len(df), dtype=bool)
    keep[list(problems.keys() | long_rows.keys())] = False
    if not keep.all():
        df = df.loc[keep].reset_index(drop=True)
    names, raw_labels = names[keep], raw_labels[keep]
    if no_label == "":
        raw_labels = np.where(pd.isna(raw_labels), "", raw_labels)
    prefix = directory if directory.endswith(os.sep) or not directory else directory + os.sep
    filenames = [name if allow_absolute and markup.is_absolute(name) else prefix + name
                 for name in names]
    others = {name: df[name] for name in df.columns
              if name not in (image_column, label_column, "filename", "labels")}
    if image_column != "filename":
        others = {image_column: list(names), **others}
    rows = np.flatnonzero(keep)
    return _frame(filenames, _label_lists(raw_labels, separator, no_label), directory, "csv",
                  skipped, where=lambda row: f"row {rows[row] + 1} of {csv_path}", **others)


# ------------------------------------------------------------------- any layout
def load_coco(json_path, image_directory=None, allow_absolute=False, label_field="name"):
    """Load a COCO instances file: labels = the category names of an image's annotations.

    Images are looked for in ``image_directory``, else where ``helpers.files.coco.image_directory``
    finds them. ``label_field="supercategory"`` labels with the supercategories instead.
    """
    if not Path(json_path).is_file():
        raise ValueError(f"load_coco: expected a COCO .json file, got {str(json_path)!r}")
    skipped = []
    rows = coco.read_coco(json_path, functools.partial(_skip, skipped), allow_absolute, label_field)
    names = [name for name, _ in rows]
    directory = image_directory or coco.image_directory(json_path, names)
    return _frame([os.path.join(directory, name) for name in names],
                  [_clean_labels(labels) for _, labels in rows], directory, "coco", skipped)


def load_yolo(root):
    """Load a YOLO folder (Ultralytics ``data.yaml`` or Darknet ``obj.names``): labels = the
    class names in each image's label file; ``split`` from ``train``/``val``/``test`` folders."""
    root = _check_directory(root, "load_yolo(root)")
    names, style = yolo.class_names(root)
    skipped, rows = [], []
    skip = functools.partial(_skip, skipped)
    images = [Path(path) for path in list_images(root) if "labels" not in Path(path).parts]
    for image in images:
        label_file = yolo.label_path(image, style)
        try:
            found = yolo.read_labels(label_file, names, skip) if label_file.is_file() else set()
        except ValueError as error:
            skip(label_file, f"{error} (its image {fileio.printable(image)} is left out)")
            continue
        rows.append((str(image), sorted(found), yolo.split_of(image, root)))
    yolo.orphan_labels(root, images, style, skip)
    filenames, labels, splits = (list(column) for column in zip(*rows)) if rows else ([], [], [])
    columns = {"split": splits} if any(splits) else {}
    return _frame(filenames, labels, root, "yolo", skipped, **columns)


def detect_layout(source):
    """``"csv"`` / ``"coco"`` for a ``.csv`` / ``.json`` file; for a folder ``"voc"`` with
    ``Annotations/``, ``"yolo"`` with ``data.yaml``, ``obj.names`` or ``classes.txt``, else
    ``"folders"`` (say ``layout="split-folders"`` yourself for ``colour_item`` names)."""
    path = Path(source)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".csv", ".json"):
            return "csv" if suffix == ".csv" else "coco"
        raise ValueError(f"detect_layout: expected a folder, a .csv or a .json file, got file {source!s}")
    if path.is_dir():
        if (path / "Annotations").is_dir():
            return "voc"
        markers = ("data.yaml", "data.yml", "dataset.yaml", "obj.names", "classes.txt")
        return "yolo" if any((path / name).is_file() for name in markers) else "folders"
    raise ValueError(f"detect_layout: {source!s} does not exist")


def load_dataset(source, layout="auto", folder_separator="_", drop_difficult=False,
                 allow_absolute=False, **csv_options):
    """Load a dataset folder or CSV file, in any of ``LAYOUTS``, into the DataFrame.

    ``layout="auto"`` uses :func:`detect_layout`; ``folder_separator`` is the ``separator``
    of :func:`load_split_folders`; ``csv_options`` are the other options of :func:`load_csv`
    (``image_directory`` serves COCO files too).
    """
    inspect.signature(load_csv).bind(source, **csv_options)  # a misspelt option: TypeError
    if layout in ("auto", "shards") and (Path(source) / "manifest.json").is_file():
        raise ValueError(f"{source} holds TFRecord shards (manifest.json): load it with "
                         "helpers.scale.shards.load_shards (or helpers.scale.shards.load_any)")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if not Path(source).exists():
        raise ValueError(f"load_dataset: source {source!s} does not exist")
    if layout == "auto":
        layout = detect_layout(source)
    if layout == "csv":
        return load_csv(source, allow_absolute=allow_absolute, **csv_options)
    if layout == "coco":
        return load_coco(source, csv_options.get("image_directory"), allow_absolute)
    if Path(source).is_file():
        raise ValueError(f"layout {layout!r} expects a folder, got file {source!s}")
    if layout == "voc":
        return load_voc(source, drop_difficult=drop_difficult, allow_absolute=allow_absolute)
    if layout == "yolo":
        return load_yolo(source)
    if layout == "split-folders":
        return load_split_folders(source, separator=folder_separator)
    return load_folders(source)
