"""Turn any common dataset layout on disk into one DataFrame of file names and labels.

Every loader returns the same thing, so everything downstream is layout-agnostic:

- ``filename``: the image path joined onto the image directory (opens from the cwd);
- ``labels``: a list of label strings per image (stripped, unique, sorted; ``[]`` = none);
- any other source column (``Patient ID``, ``width``, ``height``, ``split``...);
- ``df.attrs``: ``"layout"``, ``"directory"``, ``"skipped"``, a list of
  ``{"path", "reason"}`` for every input that was left out (each also warned about),
  ``"merged_labels"`` (spelling → the label it was merged into, see below) and
  ``"left_out"`` (files of the folder layouts that are not images by their extension).

Supported layouts (``LAYOUTS``): one folder per class, ``colour_item`` folders split
into several labels, PASCAL VOC XML annotations, and a CSV with a label column.

Label hygiene, the same in every layout, each case reported in a warning:

- labels that differ only in case, spacing or Unicode form (``Dog``, ``dog``, `` DOG``,
  ``sea  lion``) are one label, spelt as most images spell it (on a tie, in lower case;
  ``merged_labels`` maps each other spelling to it);
- an image listed twice (two CSV rows, two VOC annotations naming one file) is one image
  with the labels of both; the second listing counts as a skipped input;
- a folder or file name that is not valid UTF-8 (a raw latin-1 byte from an old archive)
  still opens; a label made from it shows the byte as ``\\xe9``.

Annotations are read defensively: XML in its declared encoding (Shift_JIS, latin-1...)
with entities and DTDs refused (``defusedxml``), CSVs in UTF-8 (or UTF-16 with a
byte-order mark, or the ``encoding`` given), and any file that cannot be used, is a
folder, a broken link or too large, skipped with a reason naming it.
"""
import collections
import csv
import io
import os
import re
import unicodedata
import warnings
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import defusedxml
import defusedxml.ElementTree as SafeElementTree
import numpy as np
import pandas as pd

from helpers import warn
from helpers.files import fileio
from helpers.files.images import IMAGE_EXTENSIONS

LAYOUTS = ("auto", "folders", "split-folders", "voc", "csv")

# Defaults for a CSV's label column, in order of preference (ours, then ChestX-ray14's).
LABEL_COLUMN_CANDIDATES = ("labels", "Finding Labels")
# Files beside images that are not images, left out of the folder layouts without a word;
# any other file that is not an image by its extension is listed in a warning.
COMPANION_EXTENSIONS = (
    ".txt", ".md", ".rst", ".csv", ".tsv", ".json", ".xml", ".yaml", ".yml", ".ini", ".db",
    ".log", ".xmp",
)
MAX_ANNOTATION_BYTES = 16_000_000  # a VOC annotation is a few KB
MAX_CSV_BYTES = 1_000_000_000
MAX_LISTED = 10  # file names shown in one warning

_VOC_SPLITS = ("train", "val", "test")
# pandas' own missing-value strings, applied to the CSV's other columns only.
_PANDAS_NA_STRINGS = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]
_ABSOLUTE_PATTERN = r"^(?:[/\\]|[A-Za-z]:[/\\])"
_PARENT_SEGMENT_PATTERN = r"(?:^|[/\\])\.\.(?:[/\\]|$)"
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_XML_ENCODING = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']")
_MAX_SIZE_VALUE = 10**7  # no image is wider or taller than this many pixels


def _is_image_name(name):
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _listing(paths, limit=MAX_LISTED):
    shown = ", ".join(fileio.printable(path) for path in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _label_key(label):
    """What makes two spellings one label: Unicode form, case and runs of spaces ignored."""
    return " ".join(unicodedata.normalize("NFKC", label).casefold().split())


def _merge_label_variants(labels):
    """Merge labels that differ only in case or spacing into their most common spelling.

    Returns the new label lists and ``{spelling: label it became}``; warns once.
    """
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
    by_target = collections.defaultdict(list)
    for label, kept in merged.items():
        by_target[kept].append(label)
    described = "; ".join(
        f"{kept!r} ({counts[kept]} images) also spelt "
        + ", ".join(f"{label!r} ({counts[label]})" for label in sorted(variants))
        for kept, variants in sorted(by_target.items())
    )
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
    first_row = {}
    drop = []
    labels = list(df["labels"])
    for row in np.flatnonzero(repeated):
        key = keys.iat[row]
        if key not in first_row:
            first_row[key] = row
            continue
        first = first_row[key]
        union = sorted(set(labels[first]) | set(labels[row]))
        same = set(labels[row]) == set(labels[first])
        detail = ("with the same labels: counted once" if same
                  else f"with other labels {labels[row]}: merged into one image labelled {union}")
        _skip(skipped, df["filename"].iat[row],
              f"listed again ({where[row]}; first in {where[first]}) {detail}")
        labels[first] = union
        drop.append(row)
    df = df.assign(labels=labels)
    return df.drop(index=df.index[drop]).reset_index(drop=True)


def _frame(filenames, labels, directory, layout, skipped, where=None, left_out=(), **columns):
    df = pd.DataFrame({"filename": filenames, "labels": labels, **columns})
    if where is not None:
        df = _merge_duplicates(df, where, skipped)
    merged_labels = {}
    if len(df):
        new_labels, merged_labels = _merge_label_variants(list(df["labels"]))
        if merged_labels:
            df["labels"] = new_labels
    df.attrs["layout"] = layout
    df.attrs["directory"] = str(directory)
    df.attrs["skipped"] = list(skipped)
    df.attrs["merged_labels"] = merged_labels
    df.attrs["left_out"] = list(left_out)
    return df


def _skip(skipped, path, reason):
    """Record an input the loader leaves out, and say so once."""
    skipped.append({"path": str(path), "reason": reason})
    warn(f"skipped {fileio.printable(path)}: {reason}")


def _clean_labels(labels):
    """Strip, drop empty, de-duplicate and sort a list of label strings (Unicode NFC)."""
    return sorted({unicodedata.normalize("NFC", label.strip())
                   for label in labels if label and label.strip()})


def _check_directory(directory, what):
    path = Path(directory)
    if not path.is_dir():
        raise ValueError(f"{what}: expected an existing directory, got {str(directory)!r}")
    return path


def _list_files(directory):
    """``(image paths, other files)`` below ``directory``, sorted; unreadable folders warned about."""
    directory = os.fspath(directory)
    found, others = [], []

    def unreadable(error):
        warn(f"cannot list the folder {fileio.printable(error.filename or directory)} "
             f"({error.strerror or error}); its images are left out")

    for folder, subfolders, files in os.walk(directory, onerror=unreadable):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in files:
            if _is_image_name(name):
                found.append(os.path.join(folder, name))
            elif not name.startswith(".") and not name.lower().endswith(COMPANION_EXTENSIONS):
                others.append(os.path.join(folder, name))
    return sorted(found), sorted(others)


def _warn_left_out(others, directory):
    if others:
        extensions = collections.Counter(os.path.splitext(path)[1].lower() or "(none)"
                                         for path in others)
        summary = ", ".join(f"{ext} {n}" for ext, n in extensions.most_common())
        warn(f"left out {len(others)} file(s) under {fileio.printable(directory)} that are not "
             f"images by their extension ({summary}): {_listing(others)}")


def list_images(directory):
    """List image files below a directory, recursively.

    Hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``) and files without an
    image extension (``IMAGE_EXTENSIONS``: JPEG, PNG, GIF, BMP, WebP, TIFF, PNM) are left
    out; extensions are compared case-insensitively (``.JPG`` counts). Other files are
    listed in one warning, except the usual companions of images (``.txt``, ``.csv``,
    ``.json``, ``.xml``, ``Thumbs.db``..., see ``COMPANION_EXTENSIONS``).

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
    found, others = _list_files(directory)
    _warn_left_out(others, directory)
    return found


def _folder_of(path, prefix):
    """First folder below the directory ``prefix`` (ending in a separator) holding ``path``."""
    folder, separator, _ = path[len(prefix):].partition(os.sep)
    return folder if separator else ""


def _folder_labels(folders, separator):
    """Label lists from folder names; a name that is not UTF-8 gets a printable label, with a warning."""
    by_folder = {}
    for folder in dict.fromkeys(folders):
        text = fileio.printable(folder)
        if text != folder:
            warn(f"the folder name {text!r} is not valid UTF-8; its images are labelled "
                 f"with it as shown")
        by_folder[folder] = _clean_labels(text.split(separator) if separator else [text])
    return [list(by_folder[folder]) for folder in folders]


def _load_folder_tree(directory, layout, separator=None):
    _check_directory(directory, f"load_{layout.replace('-', '_')}(directory)")
    paths, others = _list_files(directory)
    _warn_left_out(others, directory)
    prefix = os.path.join(os.fspath(directory), "")  # _list_files joins onto it
    folders = [_folder_of(path, prefix) for path in paths]
    labels = _folder_labels(folders, separator)
    n_unlabelled = folders.count("")
    if n_unlabelled and n_unlabelled < len(paths):
        warn(
            f"{n_unlabelled} image(s) directly inside {fileio.printable(directory)} are in no "
            "class folder; they get no label")
    return _frame(paths, labels, directory, layout, [], left_out=others, folder=folders)


def load_folders(directory):
    """Load a one-folder-per-class layout (``directory/cat/001.jpg``): one label per image.

    The label is the name of the top-level folder holding the image (images deeper inside
    it keep that label). Images directly inside ``directory`` get no label (``[]``), so a
    flat folder of pictures can still be scanned, audited or predicted on. Folders whose
    names differ only in case or spacing (``Dog/``, ``dog/``) give one label, with a
    warning (see the module docstring).

    Parameters
    ----------
    directory : str or os.PathLike
        Root folder of the dataset.

    Returns
    -------
    pandas.DataFrame
        Columns ``filename``, ``labels`` and ``folder``.
    """
    return _load_folder_tree(directory, "folders")


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
    return _load_folder_tree(directory, "split-folders", separator)


def _unsafe_reason(name):
    """Why a file name from an annotation must not be trusted, or None if it is fine."""
    if "\x00" in name:
        return "file name contains a NUL character"
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
            try:
                text = fileio.read_text(listing, "image list", errors="surrogateescape")
            except fileio.ReadError as error:
                warn(f"ignored {fileio.printable(listing)}: {error.reason}; its images get no split")
                continue
            for line in text.split():
                splits.setdefault(line.strip(), split)
    return splits


def _size_value(text, field, xml_path):
    """A ``<size>`` value in whole pixels, or None (warned about when it is there but absurd)."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value == value and 0 < value <= _MAX_SIZE_VALUE:
        return int(value)
    shown = text.strip()
    shown = shown if len(shown) <= 30 else shown[:30] + "..."
    warn(f"ignored <{field}>{shown}</{field}> in {fileio.printable(xml_path)}: not a size in "
         f"pixels (the image is kept; its size is read from the image itself)")
    return None


def _xml_text(data, xml_path):
    """Decode an annotation's bytes by its byte-order mark or declared encoding."""
    encoding = fileio.sniff_encoding(data)
    if encoding is None:
        declared = _XML_ENCODING.match(data[:512])
        encoding = declared.group(1).decode("ascii") if declared else "utf-8"
    text = fileio.decode_text(data, xml_path, encoding, what="annotation")
    # The text is decoded now: a declared encoding would only confuse the parser.
    return _XML_DECLARATION.sub("", text.lstrip("\ufeff"), count=1)


def _parse_annotation(xml_path):
    """The root element of one VOC annotation, or raise ValueError with the reason to skip it."""
    try:
        data = fileio.read_bytes(xml_path, "annotation", MAX_ANNOTATION_BYTES)
        text = _xml_text(data, xml_path)
    except fileio.ReadError as error:
        raise ValueError(error.reason) from None
    try:
        return SafeElementTree.fromstring(text, forbid_dtd=True)
    except ElementTree.ParseError as error:
        raise ValueError(f"malformed XML ({error})") from None
    except defusedxml.DTDForbidden:
        raise ValueError("refused: the XML declares a DTD (<!DOCTYPE ...>), which can pull in "
                         "entities or outside files; VOC annotations have none") from None
    except defusedxml.EntitiesForbidden:
        raise ValueError("refused: the XML declares entities (<!ENTITY ...>)") from None
    except defusedxml.DefusedXmlException as error:
        raise ValueError(f"refused: {type(error).__name__} ({error})") from None


def _voc_annotations(root, caller, allow_absolute, skipped):
    """Yield ``(xml_path, root element, file name)`` of each usable VOC annotation under ``root``.

    What cannot be used (see ``load_voc``) goes to ``skipped`` with its reason.
    """
    annotations = root / "Annotations"
    if not annotations.is_dir():
        raise ValueError(f"{caller}: expected a folder {annotations}, but it does not exist")
    with os.scandir(annotations) as entries:
        xml_files = sorted(
            Path(entry.path) for entry in entries
            if entry.name.lower().endswith(".xml") and not entry.name.startswith(".")
        )
    for xml_path in xml_files:
        try:
            annotation = _parse_annotation(xml_path)
        except ValueError as error:
            _skip(skipped, xml_path, str(error))
            continue
        name = (annotation.findtext("filename") or "").strip()
        if not name:
            _skip(skipped, xml_path, "no <filename> in the annotation")
            continue
        unsafe = None if allow_absolute and "\x00" not in name else _unsafe_reason(name)
        if unsafe:
            _skip(skipped, xml_path, unsafe)
            continue
        yield xml_path, annotation, name


def _int_or_none(text):
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return None


def load_voc(root, drop_difficult=False, allow_absolute=False):
    """Load a PASCAL VOC layout: labels from ``Annotations/*.xml``, images in ``JPEGImages/``.

    Only ``<object>/<name>`` are labels: the ``<part>`` names (head, hand, foot) and
    ``<actions>`` of person objects are not. Several objects of one class give one label.
    An annotation is read in the encoding its XML declaration names (UTF-8 by default,
    UTF-16 with a byte-order mark). One that is malformed, cannot be read (a folder, a
    broken or looping link, over 16 MB), declares a DTD or entities, has no
    ``<filename>``, or whose file name is absolute or climbs out of ``JPEGImages/`` with
    ``..`` is skipped with a warning, not fatal; a ``<size>`` that is not a plausible
    number of pixels is ignored with a warning. Two annotations naming one image give one
    row with the labels of both.

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
    directory = os.path.join(os.fspath(root), "JPEGImages")
    skipped = []
    rows = []
    where = []
    for xml_path, annotation, name in _voc_annotations(root, "load_voc", allow_absolute, skipped):
        labels = []
        for obj in annotation.findall("object"):
            if drop_difficult and (obj.findtext("difficult") or "0").strip() == "1":
                continue
            labels.append(obj.findtext("name") or "")
        size = annotation.find("size")
        rows.append((
            os.path.join(directory, name),
            _clean_labels(labels),
            _size_value(size.findtext("width"), "width", xml_path) if size is not None else None,
            _size_value(size.findtext("height"), "height", xml_path) if size is not None else None,
        ))
        where.append(str(xml_path))
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
    return _frame(filenames, labels, directory, "voc", skipped, where=where, **columns)


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


def _csv_buffer(csv_path, encoding):
    """The CSV's bytes and the encoding they decode with, checked; ValueError naming the line."""
    try:
        data = fileio.read_bytes(csv_path, "CSV file", MAX_CSV_BYTES)
        encoding = encoding or fileio.sniff_encoding(data) or "utf-8"
        fileio.check_text(data, csv_path, encoding, what="CSV file")
    except fileio.ReadError as error:
        hint = ("; if it is in another encoding, say which: encoding='latin-1' "
                "(--encoding latin-1 on the command line)" if "cannot be decoded" in error.reason else "")
        raise ValueError(f"{error}{hint}") from None
    return data, encoding


def _parser_error(csv_path, error):
    """A pandas parser error as a message naming the file and the line."""
    message = str(error).replace("Error tokenizing data. C error: ", "").strip()
    row = re.search(r"(?:row|line) (\d+)", message)
    if "EOF inside string" in message and row:
        return (f"{csv_path}: line {int(row.group(1)) + 1}: a quoted field is never closed "
                f"(an opening \" without its closing \"); fix the quotes from that line on")
    return f"{csv_path}: cannot parse the CSV ({message})"


def _long_rows(data, encoding, n_columns):
    """``(row, line, n_fields)`` of each data row with more fields than the header, or None.

    With ``index_col=False`` pandas drops extra fields with one warning naming no row;
    Python's csv module finds them (only run when that warning came).
    """
    reader = csv.reader(io.StringIO(data.decode(encoding)), skipinitialspace=True)
    records = [(reader.line_num, record) for record in reader if record]
    found = [(row, line, len(record)) for row, (line, record) in enumerate(records[1:])
             if len(record) > n_columns]
    return found, len(records) - 1


def _read_csv_recording_bad_lines(csv_path, data, encoding, image_column, label_column, columns,
                                  skipped):
    """pandas.read_csv (fast C parser) that records lines with too many fields."""
    na_values = {name: _PANDAS_NA_STRINGS for name in columns}
    # Keep label and file name text literal: a label called "NA" or "None" is a label.
    na_values[image_column] = [""]
    na_values[label_column] = [""]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            df = pd.read_csv(
                io.BytesIO(data),
                encoding=encoding,
                dtype={image_column: object, label_column: object},
                keep_default_na=False,
                na_values=na_values,
                on_bad_lines="warn",
                skipinitialspace=True,
                # A first data row with an extra field must not become the index
                # (pandas would shift every column by one).
                index_col=False,
            )
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
            raise ValueError(_parser_error(csv_path, error)) from None
    malformed = {}  # row -> (where, reason)
    for warning in caught:
        message = str(warning.message)
        bad_lines = re.findall(r"Skipping line (\d+): ([^\n]+)", message)
        if "Length of header or names does not match" in message:
            long_rows, n_records = _long_rows(data, encoding, len(columns))
            if n_records == len(df):
                for row, line, n_fields in long_rows:
                    malformed[row] = (f"{csv_path}:{line}", f"malformed row (expected "
                                      f"{len(columns)} fields, saw {n_fields})")
                continue
        if not bad_lines:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
        for line, reason in bad_lines:
            _skip(skipped, f"{csv_path}:{line}", f"malformed row ({reason.strip()})")
    return df, malformed


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
    encoding=None,
):
    """Load a CSV with one row per image and a column of joined labels (ChestX-ray14 style).

    Files listed but not on disk are kept: ``helpers.scan.scan`` reports them, so a label
    table can be scanned before its images are downloaded. Rows without a file name or
    label, rows with too many fields (the first row too), and file names that are
    absolute or climb out of the image directory with ``..`` are skipped with a warning.
    An image listed in several rows is one image with the labels of all of them (the
    other rows count as skipped, each with a warning).

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
    encoding : str, optional
        The file's text encoding (``"latin-1"``, ``"cp1252"``, ``"shift_jis"``...).
        Default: the one its byte-order mark names (UTF-8, UTF-16, UTF-32), else UTF-8;
        a byte that does not decode is a ``ValueError`` naming the line.

    Returns
    -------
    pandas.DataFrame
        ``filename``, ``labels`` and every other column of the CSV. The original label
        column is replaced by ``labels`` when it had another name.
    """
    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise ValueError(f"load_csv: expected an existing CSV file, got {csv_path!r}")
    data, encoding = _csv_buffer(csv_path, encoding)
    try:
        header = pd.read_csv(io.BytesIO(data), nrows=0, encoding=encoding)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{csv_path}: cannot read a CSV header ({error})") from error
    columns = [str(name) for name in header.columns]
    image_column, label_column = _pick_columns(csv_path, columns, image_column, label_column)
    directory = (
        os.fspath(image_directory) if image_directory is not None
        else _default_image_directory(csv_path)
    )

    skipped = []
    df, malformed = _read_csv_recording_bad_lines(
        csv_path, data, encoding, image_column, label_column, columns, skipped)
    del data
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
    for index, name in enumerate(names):
        # Cheap test first; the exact one only for the few names that could be unsafe.
        if name and ((name[:1] in ("/", "\\") or ".." in name or name[1:2] == ":")
                     and not allow_absolute or "\x00" in name):
            reason = _unsafe_reason(name)
            if reason:
                problems.setdefault(index, reason)
    for index in sorted(set(problems) | set(malformed)):
        if index in malformed:
            _skip(skipped, *malformed[index])
            continue
        where = f"row {index + 1} of {csv_path}"
        if names[index] and "\x00" not in names[index]:
            _skip(skipped, names[index], f"{problems[index]} ({where})")
        else:
            _skip(skipped, where, problems[index])
    problems.update(malformed)

    rows = np.arange(len(df))
    if problems:
        keep = np.ones(len(df), dtype=bool)
        keep[list(problems)] = False
        df = df.loc[keep].reset_index(drop=True)
        names, raw_labels, rows = names[keep], raw_labels[keep], rows[keep]
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
    where = _RowNames(csv_path, rows)
    return _frame(filenames, labels, directory, "csv", skipped, where=where, **others)


class _RowNames:
    """``where[i]`` is ``"row N of x.csv"`` for the i-th kept row, built only when asked."""

    def __init__(self, csv_path, rows):
        self.csv_path, self.rows = csv_path, rows

    def __getitem__(self, index):
        return f"row {int(self.rows[index]) + 1} of {self.csv_path}"


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
    encoding=None,
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
    encoding : str, optional
        CSV: the file's text encoding, see :func:`load_csv`.

    Returns
    -------
    pandas.DataFrame
        See the module docstring for the columns and ``attrs``.
    """
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
        return load_csv(
            source,
            image_directory=image_directory,
            image_column=image_column,
            label_column=label_column,
            separator=separator,
            no_label=no_label,
            allow_absolute=allow_absolute,
            encoding=encoding,
        )
    if Path(source).is_file():
        raise ValueError(f"layout {layout!r} expects a folder, got file {source!s}")
    if layout == "voc":
        return load_voc(source, drop_difficult=drop_difficult, allow_absolute=allow_absolute)
    if layout == "split-folders":
        return load_split_folders(source, separator=folder_separator)
    return load_folders(source)


VOC_BOX_COLUMNS = ("filename", "label", "xmin", "ymin", "xmax", "ymax", "width", "height",
                   "difficult")


def voc_boxes(root, drop_difficult=False, allow_absolute=False):
    """Read the object boxes of a PASCAL VOC layout: one row per ``<object>``.

    The same files as :func:`load_voc`, with the same rules: a malformed annotation, one
    without ``<filename>`` or with an unsafe one is skipped with a warning, and so is an
    object whose box is missing or not made of numbers (the other objects stay).

    Parameters
    ----------
    root : str or os.PathLike
        Folder holding ``Annotations/`` and ``JPEGImages/``.
    drop_difficult : bool, default False
        Leave out objects marked ``<difficult>1</difficult>``.
    allow_absolute : bool, default False
        Trust absolute file names and names containing ``..``.

    Returns
    -------
    pandas.DataFrame
        Columns ``filename`` (as :func:`load_voc` writes it, so the two merge on it),
        ``label``, ``xmin``, ``ymin``, ``xmax``, ``ymax`` (VOC's 1-based pixel numbers, both
        ends inside the box), ``width`` and ``height`` of the image (from ``<size>``, may be
        missing) and ``difficult`` (bool). ``attrs["skipped"]`` lists what was left out.
    """
    root = _check_directory(root, "voc_boxes(root)")
    directory = os.path.join(os.fspath(root), "JPEGImages")
    skipped, rows = [], []
    for xml_path, annotation, name in _voc_annotations(root, "voc_boxes", allow_absolute, skipped):
        size = annotation.find("size")
        width = _int_or_none(size.findtext("width")) if size is not None else None
        height = _int_or_none(size.findtext("height")) if size is not None else None
        for number, obj in enumerate(annotation.findall("object"), start=1):
            difficult = (obj.findtext("difficult") or "0").strip() == "1"
            if drop_difficult and difficult:
                continue
            label = (obj.findtext("name") or "").strip()
            box = obj.find("bndbox")
            corners = [_int_or_none(box.findtext(key)) if box is not None else None
                       for key in ("xmin", "ymin", "xmax", "ymax")]
            if not label or None in corners:
                _skip(skipped, f"{xml_path} (object {number})",
                      "no <name>" if not label else "no complete numeric <bndbox>")
                continue
            rows.append((os.path.join(directory, name), label, *corners, width, height,
                         difficult))
    frame = pd.DataFrame(rows, columns=list(VOC_BOX_COLUMNS))
    for column in ("xmin", "ymin", "xmax", "ymax"):
        frame[column] = frame[column].astype("int64")
    for column in ("width", "height"):
        frame[column] = pd.array(frame[column], dtype="Int64")
    frame["difficult"] = frame["difficult"].astype(bool)
    frame.attrs["skipped"] = list(skipped)
    return frame
