"""Turn any common dataset layout on disk into one DataFrame of file names and labels.

Every loader returns the same thing, so everything downstream is layout-agnostic:

- ``filename``: the image path joined onto the image directory (opens from the cwd);
- ``labels``: a list of label strings per image (stripped, unique, sorted; ``[]`` = none);
- any other source column (``Patient ID``, ``width``, ``height``, ``split``...);
- ``df.attrs``: ``"layout"``, ``"directory"`` and ``"skipped"``, a list of
  ``{"path", "reason"}`` for every input that was left out (each also warned about).

Supported layouts (``LAYOUTS``): one folder per class, ``colour_item`` folders split
into several labels, PASCAL VOC XML annotations, and a CSV with a label column.
"""
import os
import re
import warnings
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import warn
from helpers.images import IMAGE_EXTENSIONS

LAYOUTS = ("auto", "folders", "split-folders", "voc", "csv")

# Defaults for a CSV's label column, in order of preference (ours, then ChestX-ray14's).
LABEL_COLUMN_CANDIDATES = ("labels", "Finding Labels")

_VOC_SPLITS = ("train", "val", "test")
# pandas' own missing-value strings, applied to the CSV's other columns only.
_PANDAS_NA_STRINGS = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]
_ABSOLUTE_PATTERN = r"^(?:[/\\]|[A-Za-z]:[/\\])"
_PARENT_SEGMENT_PATTERN = r"(?:^|[/\\])\.\.(?:[/\\]|$)"


def _is_image_name(name):
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _frame(filenames, labels, directory, layout, skipped, **columns):
    df = pd.DataFrame({"filename": filenames, "labels": labels, **columns})
    df.attrs["layout"] = layout
    df.attrs["directory"] = str(directory)
    df.attrs["skipped"] = list(skipped)
    return df


def _skip(skipped, path, reason):
    """Record an input the loader leaves out, and say so once."""
    skipped.append({"path": str(path), "reason": reason})
    warn(f"skipped {path}: {reason}")


def _clean_labels(labels):
    """Strip, drop empty, de-duplicate and sort a list of label strings."""
    return sorted({label.strip() for label in labels if label and label.strip()})


def _check_directory(directory, what):
    path = Path(directory)
    if not path.is_dir():
        raise ValueError(f"{what}: expected an existing directory, got {str(directory)!r}")
    return path


def list_images(directory):
    """List image files below a directory, recursively.

    Hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``) and files without an
    image extension (``Thumbs.db``, ``.txt``, ``.xml``) are left out; extensions are
    compared case-insensitively (``.JPG`` counts).

    Parameters
    ----------
    directory : str or os.PathLike
        Folder to walk.

    Returns
    -------
    list of str
        Sorted paths, each ``os.path.join(directory, relative_path)``.
    """
    _check_directory(directory, "list_images(directory)")
    directory = os.fspath(directory)
    found = []
    for folder, subfolders, files in os.walk(directory):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found.extend(os.path.join(folder, name) for name in files if _is_image_name(name))
    return sorted(found)


def _folder_of(path, prefix):
    """First folder below the directory ``prefix`` (ending in a separator) holding ``path``."""
    folder, separator, _ = path[len(prefix):].partition(os.sep)
    return folder if separator else ""


def load_folders(directory):
    """Load a one-folder-per-class layout (``directory/cat/001.jpg``): one label per image.

    The label is the name of the top-level folder holding the image (images deeper inside
    it keep that label). Images directly inside ``directory`` get no label (``[]``), so a
    flat folder of pictures can still be scanned, audited or predicted on.

    Parameters
    ----------
    directory : str or os.PathLike
        Root folder of the dataset.

    Returns
    -------
    pandas.DataFrame
        Columns ``filename``, ``labels`` and ``folder``.
    """
    _check_directory(directory, "load_folders(directory)")
    paths = list_images(directory)
    prefix = os.path.join(os.fspath(directory), "")  # list_images joins onto it
    folders = [_folder_of(path, prefix) for path in paths]
    labels = [[folder] if folder else [] for folder in folders]
    n_unlabelled = folders.count("")
    if n_unlabelled and n_unlabelled < len(paths):
        warn(
            f"{n_unlabelled} image(s) directly inside {directory} are in no class folder; "
            "they get no label")
    return _frame(paths, labels, directory, "folders", [], folder=folders)


def load_split_folders(directory, separator="_"):
    """Load folders whose names hold several labels (``red_shirt/`` → ``["red", "shirt"]``).

    Parameters
    ----------
    directory : str or os.PathLike
        Root folder of the dataset.
    separator : str, default "_"
        What separates the labels inside a folder name.

    Returns
    -------
    pandas.DataFrame
        Columns ``filename``, ``labels`` and ``folder``.
    """
    if not isinstance(separator, str) or not separator:
        raise ValueError(f"separator must be a non-empty string, got {separator!r}")
    df = load_folders(directory)
    df["labels"] = [_clean_labels(folder.split(separator)) for folder in df["folder"]]
    df.attrs["layout"] = "split-folders"
    return df


def _unsafe_reason(name):
    """Why a file name from an annotation must not be trusted, or None if it is fine."""
    if re.match(_ABSOLUTE_PATTERN, name):
        return f"absolute path {name!r} refused (pass allow_absolute=True to allow it)"
    if re.search(_PARENT_SEGMENT_PATTERN, name):
        if os.path.normpath(name.replace("\\", "/")).split("/")[0] == "..":
            return (
                f"path {name!r} escapes the image directory "
                "(pass allow_absolute=True to allow it)"
            )
    return None


def _read_voc_splits(root):
    """Map image id (file stem) -> split name from ``ImageSets/Main/{train,val,test}.txt``."""
    splits = {}
    main = Path(root) / "ImageSets" / "Main"
    for split in _VOC_SPLITS:
        listing = main / f"{split}.txt"
        if listing.is_file():
            for line in listing.read_text().split():
                splits.setdefault(line.strip(), split)
    return splits


def _int_or_none(text):
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return None


def load_voc(root, drop_difficult=False, allow_absolute=False):
    """Load a PASCAL VOC layout: labels from ``Annotations/*.xml``, images in ``JPEGImages/``.

    Only ``<object>/<name>`` are labels: the ``<part>`` names (head, hand, foot) and
    ``<actions>`` of person objects are not. Several objects of one class give one label.
    A malformed XML file, one without ``<filename>``, or one whose file name is absolute
    or climbs out of ``JPEGImages/`` with ``..`` is skipped with a warning, not fatal.

    Parameters
    ----------
    root : str or os.PathLike
        Folder holding ``Annotations/``, ``JPEGImages/`` and optionally
        ``ImageSets/Main/train.txt`` and ``val.txt``.
    drop_difficult : bool, default False
        Ignore objects marked ``<difficult>1</difficult>``.
    allow_absolute : bool, default False
        Trust absolute file names and names containing ``..``.

    Returns
    -------
    pandas.DataFrame
        Columns ``filename``, ``labels``, ``width``, ``height`` (from ``<size>``, may be
        missing) and ``split`` (``"train"``/``"val"``/``"test"`` or None) when
        ``ImageSets/Main`` lists exist.
    """
    root = _check_directory(root, "load_voc(root)")
    annotations = root / "Annotations"
    if not annotations.is_dir():
        raise ValueError(f"load_voc: expected a folder {annotations}, but it does not exist")
    directory = os.path.join(os.fspath(root), "JPEGImages")
    skipped = []
    rows = []
    xml_files = sorted(
        path for path in annotations.iterdir()
        if path.suffix.lower() == ".xml" and not path.name.startswith(".")
    )
    for xml_path in xml_files:
        try:
            tree = ElementTree.parse(xml_path)
        except ElementTree.ParseError as error:
            _skip(skipped, xml_path, f"malformed XML ({error})")
            continue
        annotation = tree.getroot()
        name = (annotation.findtext("filename") or "").strip()
        if not name:
            _skip(skipped, xml_path, "no <filename> in the annotation")
            continue
        unsafe = None if allow_absolute else _unsafe_reason(name)
        if unsafe:
            _skip(skipped, xml_path, unsafe)
            continue
        labels = []
        for obj in annotation.findall("object"):
            if drop_difficult and (obj.findtext("difficult") or "0").strip() == "1":
                continue
            labels.append(obj.findtext("name") or "")
        size = annotation.find("size")
        rows.append((
            os.path.join(directory, name),
            _clean_labels(labels),
            _int_or_none(size.findtext("width")) if size is not None else None,
            _int_or_none(size.findtext("height")) if size is not None else None,
        ))
    filenames, labels, widths, heights = (list(column) for column in zip(*rows)) if rows else (
        [], [], [], []
    )
    columns = {
        "width": pd.array(widths, dtype="Int64"),
        "height": pd.array(heights, dtype="Int64"),
    }
    splits = _read_voc_splits(root)
    if splits:
        columns["split"] = [splits.get(Path(path).stem) for path in filenames]
    return _frame(filenames, labels, directory, "voc", skipped, **columns)


def _default_image_directory(csv_path):
    folder = Path(csv_path).parent
    for candidate in (folder / "images", folder / "JPEGImages"):
        if candidate.is_dir():
            return os.fspath(candidate)
    return os.fspath(folder)


def _pick_columns(csv_path, columns, image_column, label_column):
    if len(columns) < 2:
        raise ValueError(
            f"{csv_path}: expected at least two columns (image, labels), got {list(columns)}"
        )
    if image_column is None:
        image_column = columns[0]
    if label_column is None:
        candidates = [name for name in LABEL_COLUMN_CANDIDATES if name in columns]
        label_column = candidates[0] if candidates else columns[1]
    for argument, column in (("image_column", image_column), ("label_column", label_column)):
        if column not in columns:
            raise ValueError(
                f"{csv_path}: {argument}={column!r} is not a column; columns are {list(columns)}"
            )
    if image_column == label_column:
        raise ValueError(
            f"{csv_path}: image_column and label_column are both {image_column!r}; "
            "they must differ"
        )
    return image_column, label_column


def _read_csv_recording_bad_lines(csv_path, image_column, label_column, columns, skipped):
    """pandas.read_csv (fast C parser) that records lines with too many fields."""
    na_values = {name: _PANDAS_NA_STRINGS for name in columns}
    # Keep label and file name text literal: a label called "NA" or "None" is a label.
    na_values[image_column] = [""]
    na_values[label_column] = [""]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        df = pd.read_csv(
            csv_path,
            dtype={image_column: object, label_column: object},
            keep_default_na=False,
            na_values=na_values,
            on_bad_lines="warn",
            skipinitialspace=True,
        )
    for warning in caught:
        message = str(warning.message)
        bad_lines = re.findall(r"Skipping line (\d+): ([^\n]+)", message)
        if not bad_lines:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
        for line, reason in bad_lines:
            _skip(skipped, f"{csv_path}:{line}", f"malformed row ({reason.strip()})")
    return df


def _label_lists(raw_labels, separator, no_label):
    """Split a column of joined label strings into clean lists, one per row."""
    cleaned = {}
    for text in pd.unique(raw_labels):  # few distinct combinations, even for 100k rows
        parts = text.split(separator) if separator else [text]
        labels = [part.strip() for part in parts]
        if no_label is not None:
            labels = [label for label in labels if label != no_label]
        cleaned[text] = tuple(_clean_labels(labels))
    # A fresh list per row, so editing one row's labels never changes another's.
    return [list(cleaned[text]) for text in raw_labels]


def load_csv(
    csv_path,
    image_directory=None,
    image_column=None,
    label_column=None,
    separator="|",
    no_label="No Finding",
    allow_absolute=False,
):
    """Load a CSV with one row per image and a column of joined labels (ChestX-ray14 style).

    Files listed but not on disk are kept: ``helpers.scan.scan`` reports them, so a label
    table can be scanned before its images are downloaded. Rows without a file name or
    label, rows with too many fields, and file names that are absolute or climb out of
    the image directory with ``..`` are skipped with a warning.

    Parameters
    ----------
    csv_path : str or os.PathLike
        The CSV file (comma-delimited, header row).
    image_directory : str or os.PathLike, optional
        Folder the file names are relative to. Default: the first existing of
        ``images/`` and ``JPEGImages/`` next to the CSV, else the CSV's folder.
    image_column : str, optional
        Column of file names. Default: the first column.
    label_column : str, optional
        Column of labels. Default: ``"labels"`` if present, else ``"Finding Labels"``,
        else the second column.
    separator : str, default "|"
        What joins several labels in one cell. ``None`` or ``""``: one label per cell.
    no_label : str or None, default "No Finding"
        Token meaning "no label" (becomes ``[]``). With ``""``, an empty cell means no
        label instead of a skipped row.
    allow_absolute : bool, default False
        Trust absolute file names and names containing ``..``.

    Returns
    -------
    pandas.DataFrame
        ``filename``, ``labels`` and every other column of the CSV. The original label
        column is replaced by ``labels`` when it had another name.
    """
    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise ValueError(f"load_csv: expected an existing CSV file, got {csv_path!r}")
    try:
        header = pd.read_csv(csv_path, nrows=0)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{csv_path}: cannot read a CSV header ({error})") from error
    columns = [str(name) for name in header.columns]
    image_column, label_column = _pick_columns(csv_path, columns, image_column, label_column)
    directory = (
        os.fspath(image_directory) if image_directory is not None
        else _default_image_directory(csv_path)
    )

    skipped = []
    df = _read_csv_recording_bad_lines(csv_path, image_column, label_column, columns, skipped)
    # Plain str objects in a numpy array: faster than the .str accessor for these steps.
    names = np.array(
        [name.strip() if isinstance(name, str) else "" for name in df[image_column].to_numpy()],
        dtype=object,
    )
    raw_labels = df[label_column].to_numpy(dtype=object)
    unlabelled = pd.isna(raw_labels)
    if no_label == "":
        raw_labels = np.where(unlabelled, "", raw_labels)

    problems = {}
    for index in np.flatnonzero(names == ""):
        problems[index] = f"no file name in column {image_column!r}"
    if no_label != "":
        for index in np.flatnonzero(unlabelled):
            problems.setdefault(
                index,
                f"no label in column {label_column!r} "
                f"(use {no_label!r} for images without labels)",
            )
    if not allow_absolute:
        for index, name in enumerate(names):
            # Cheap test first; the exact one only for the few names that could be unsafe.
            if (name[:1] in ("/", "\\") or ".." in name or name[1:2] == ":") and name:
                reason = _unsafe_reason(name)
                if reason:
                    problems.setdefault(index, reason)
    for index in sorted(problems):
        where = f"row {index + 1} of {csv_path}"
        _skip(skipped, names[index] or where, f"{problems[index]} ({where})")

    if problems:
        keep = np.ones(len(df), dtype=bool)
        keep[list(problems)] = False
        df = df.loc[keep].reset_index(drop=True)
        names, raw_labels = names[keep], raw_labels[keep]
    labels = _label_lists(raw_labels, separator, no_label)

    prefix = directory if directory.endswith(os.sep) or not directory else directory + os.sep
    if allow_absolute:
        filenames = [
            name if re.match(_ABSOLUTE_PATTERN, name) else prefix + name for name in names
        ]
    else:
        filenames = [prefix + name for name in names]

    others = {
        name: df[name] for name in df.columns
        if name not in (image_column, label_column, "filename", "labels")
    }
    if image_column != "filename":
        others = {image_column: list(names), **others}
    return _frame(filenames, labels, directory, "csv", skipped, **others)


def detect_layout(source):
    """Guess a dataset's layout from what is on disk.

    Parameters
    ----------
    source : str or os.PathLike
        A folder or a CSV file.

    Returns
    -------
    str
        ``"csv"`` for a ``.csv`` file, ``"voc"`` for a folder with ``Annotations/``,
        ``"folders"`` for any other folder (one class per folder; say
        ``layout="split-folders"`` yourself for ``colour_item`` names).
    """
    path = Path(source)
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv"
        raise ValueError(f"detect_layout: expected a folder or a .csv file, got file {source!s}")
    if path.is_dir():
        return "voc" if (path / "Annotations").is_dir() else "folders"
    raise ValueError(f"detect_layout: {source!s} does not exist")


def load_dataset(
    source,
    layout="auto",
    folder_separator="_",
    image_column=None,
    label_column=None,
    separator="|",
    no_label="No Finding",
    image_directory=None,
    drop_difficult=False,
    allow_absolute=False,
):
    """Load any supported layout into the ``filename``/``labels`` DataFrame.

    Parameters
    ----------
    source : str or os.PathLike
        Dataset folder, or CSV file.
    layout : {"auto", "folders", "split-folders", "voc", "csv"}, default "auto"
        ``"auto"`` uses :func:`detect_layout`.
    folder_separator : str, default "_"
        Separator inside folder names for ``"split-folders"``.
    image_column, label_column, separator, no_label, image_directory
        CSV options, see :func:`load_csv`.
    drop_difficult : bool, default False
        VOC: ignore objects marked difficult.
    allow_absolute : bool, default False
        CSV and VOC: trust absolute file names and names containing ``..``.

    Returns
    -------
    pandas.DataFrame
        See the module docstring for the columns and ``attrs``.
    """
    if layout in ("auto", "shards") and (Path(source) / "manifest.json").is_file():
        raise ValueError(f"{source} holds TFRecord shards (manifest.json): load it with "
                         "helpers.shards.load_shards (or helpers.shards.load_any)")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if not Path(source).exists():
        raise ValueError(f"load_dataset: source {source!s} does not exist")
    if layout == "auto":
        layout = detect_layout(source)
    if layout == "csv":
        return load_csv(
            source,
            image_directory=image_directory,
            image_column=image_column,
            label_column=label_column,
            separator=separator,
            no_label=no_label,
            allow_absolute=allow_absolute,
        )
    if Path(source).is_file():
        raise ValueError(f"layout {layout!r} expects a folder, got file {source!s}")
    if layout == "voc":
        return load_voc(source, drop_difficult=drop_difficult, allow_absolute=allow_absolute)
    if layout == "split-folders":
        return load_split_folders(source, separator=folder_separator)
    return load_folders(source)
