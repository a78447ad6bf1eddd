"""Look at a dataset before training on it: label statistics, image sizes, broken files, copies.

Every function takes ``df``, the DataFrame of ``helpers.data.load_dataset`` (a ``labels`` column
of lists, a ``filename`` column); ``progress=True`` shows a progress bar. ``scan`` is cheap
(label table plus image headers) and works even when the images are not on disk yet; ``audit``
decodes every image fully, the way training will. Both keep to the pixel budget of
``helpers.files.images``: an image over it is reported, with its size, from its header alone.
"""
import os
from collections import Counter

import numpy as np
import pandas as pd
from scipy import sparse

from helpers import progress_bar
from helpers.files import copies
from helpers.files.images import ImageError, read_header, read_image


def _check_frame(df, columns=("filename", "labels")):
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame, got {type(df).__name__}")
    missing = [name for name in columns if name not in df.columns]
    if missing:
        raise ValueError(f"the DataFrame needs the column(s) {missing}; it has {list(df.columns)}")


def _filenames(df, enabled, description):
    """The checked ``filename`` column as a list, behind a progress bar when ``enabled``."""
    _check_frame(df, ("filename",))
    names = df["filename"].tolist()
    return progress_bar(names, total=len(names), desc=description, unit="img") if enabled else names


def _combinations(df):
    """(tuple of labels) → number of images: the small table every statistic works on
    (ChestX-ray14 has ~800 distinct label sets for 112k images)."""
    _check_frame(df, ("labels",))
    if len(df) and isinstance(df["labels"].iloc[0], str):
        raise ValueError(
            "the 'labels' column must hold a list of labels per row, got strings such as "
            f"{df['labels'].iloc[0]!r}; split them first, or load the data with helpers.data")
    try:
        return Counter(map(tuple, df["labels"].to_numpy(dtype=object)))
    except TypeError as error:
        raise ValueError(f"the 'labels' column must hold a list of labels per row ({error})") from error


def _label_counts_from(combinations):
    counts = Counter()
    for labels, n_images in combinations.items():
        for label in set(labels):
            counts[label] += n_images
    order = sorted(counts, key=lambda label: (-counts[label], label))
    return pd.Series([counts[label] for label in order], index=pd.Index(order, name="label"),
                     name="count", dtype="int64")


def label_counts(df):
    """Label → number of images carrying it (a Series), most frequent first, ties alphabetical."""
    return _label_counts_from(_combinations(df))


def _labels_per_image_from(combinations):
    per_image = Counter()
    for labels, n_images in combinations.items():
        per_image[len(set(labels))] += n_images
    index = pd.RangeIndex(max(per_image, default=0) + 1, name="n_labels")
    return pd.Series([per_image[n] for n in index], index=index, name="n_images", dtype="int64")


def labels_per_image(df):
    """Number of images (a Series) with 0, 1, ... labels, up to the most without gaps."""
    return _labels_per_image_from(_combinations(df))


def _cooccurrence_from(combinations, classes):
    position = {label: column for column, label in enumerate(classes)}
    pairs = [(row, position[label]) for row, labels in enumerate(combinations) for label in set(labels)]
    rows = np.array([row for row, _ in pairs], dtype=np.int64)
    columns = [column for _, column in pairs]
    weights = np.fromiter(combinations.values(), dtype=np.int64, count=len(combinations))
    shape = (len(combinations), len(classes))
    multi_hot = sparse.csr_matrix((np.ones(len(rows), dtype=np.int64), (rows, columns)), shape)
    weighted = sparse.csr_matrix((weights[rows], (rows, columns)), shape)
    counts = (multi_hot.T @ weighted).toarray().astype("int64")
    return pd.DataFrame(counts, index=pd.Index(list(classes), name="label"),
                        columns=pd.Index(list(classes), name="label"))


def cooccurrence(df):
    """Label × label table of the images carrying both, in :func:`label_counts`' order (the
    diagonal is each label's own count)."""
    combinations = _combinations(df)
    return _cooccurrence_from(combinations, _label_counts_from(combinations).index)


def _is_folder(entry):
    try:
        return entry.is_dir()
    except OSError:  # a symbolic link that loops: there, but not a folder (its read fails later)
        return False


def find_missing(filenames):
    """The file names (as in ``df.filename``) that are not on disk, in input order; each folder
    is listed once, so checking 100,000 names takes a fraction of a second."""
    contents, missing = {}, []
    for filename in filenames:
        folder, name = os.path.split(filename)
        if folder not in contents:
            try:
                with os.scandir(folder or ".") as entries:
                    contents[folder] = {entry.name for entry in entries if not _is_folder(entry)}
            except (OSError, ValueError):  # unreadable folder, or a NUL byte in the name
                contents[folder] = set()
        if name not in contents[folder]:
            missing.append(filename)
    return missing


def image_sizes(df, progress=False):
    """Read each image's size and mode from its header: ``filename``, ``width``, ``height`` (as
    displayed), ``mode``, ``format`` and ``error`` (None, or why the header could not be read)."""
    rows = []
    for filename in _filenames(df, progress, "headers"):
        try:
            header = read_header(filename)
            rows.append((filename, header["width"], header["height"], header["mode"],
                         header["format"], None))
        except ImageError as error:
            rows.append((filename, None, None, None, None, error.reason))
    table = pd.DataFrame(rows, columns=["filename", "width", "height", "mode", "format", "error"])
    return table.astype({"width": "Int64", "height": "Int64"})


def _describe(values):
    values = pd.Series(values, dtype="float64").dropna()
    if values.empty:
        return None
    return {name: round(float(getattr(values, name)()), 3) for name in ("min", "median", "mean", "max")}


def size_summary(sizes):
    """Summarise an :func:`image_sizes` table (rows with an ``error`` or no size left out):
    ``n_read``, ``width``/``height``/``aspect`` (min, median, mean, max; aspect = width / height),
    ``modes`` and ``formats`` (value → count, when those columns exist)."""
    readable = sizes[sizes["error"].isna()] if "error" in sizes else sizes
    width = pd.to_numeric(readable["width"], errors="coerce").astype("float64")
    height = pd.to_numeric(readable["height"], errors="coerce").astype("float64")
    known = (width > 0) & (height > 0)
    width, height = width[known], height[known]

    def tally(column):
        if column not in readable:
            return {}
        return {str(k): int(v) for k, v in Counter(readable.loc[known, column]).most_common()}

    return {"n_read": int(known.sum()), "width": _describe(width), "height": _describe(height),
            "aspect": _describe(width / height), "modes": tally("mode"), "formats": tally("format")}


def _sizes_of_present(df, missing, packed, progress):
    """``(size summary, unreadable)`` of the images on disk, from their headers."""
    present = df[~df["filename"].isin(set(missing))]
    table = present.assign(error=None) if packed else image_sizes(present, progress=progress)
    unreadable = [{"path": row.filename, "reason": row.error}
                  for row in table[table["error"].notna()].itertuples()]
    return size_summary(table), unreadable


def scan(df, sizes=True, progress=False):
    """Summarise a dataset: label statistics, image sizes from headers, missing files.

    ``sizes=False`` reads no image header. Returns a JSON-able dict: ``n_images``,
    ``n_labels``, ``label_counts``, ``label_fraction`` (share of images), ``labels_per_image``,
    ``cooccurrence`` (label → label → images), ``sizes`` (:func:`size_summary`, or None),
    ``missing``, ``unreadable`` (``{"path", "reason"}`` whose header failed), and the loader's
    ``skipped``, ``layout`` and ``directory``.
    """
    _check_frame(df)
    n_images = int(len(df))
    combinations = _combinations(df)
    counts = _label_counts_from(combinations)
    # Images packed in shards (helpers.scale.shards) are no files; their header facts are columns.
    packed = {"shard_file", "record_id"} <= set(df.columns)
    missing = [] if packed else find_missing(df["filename"].tolist())
    summary, unreadable = _sizes_of_present(df, missing, packed, progress) if sizes else (None, [])
    table = _cooccurrence_from(combinations, counts.index)
    return {
        "n_images": n_images, "n_labels": int(len(counts)),
        "label_counts": {str(k): int(v) for k, v in counts.items()},
        "label_fraction": {str(k): round(int(v) / n_images, 6) if n_images else 0.0
                           for k, v in counts.items()},
        "labels_per_image": {int(k): int(v) for k, v in _labels_per_image_from(combinations).items()},
        "cooccurrence": {str(row): {str(col): int(table.at[row, col]) for col in table.columns}
                         for row in table.index},
        "sizes": summary, "missing": missing, "unreadable": unreadable,
        "skipped": list(df.attrs.get("skipped", [])),
        "layout": df.attrs.get("layout"), "directory": df.attrs.get("directory"),
    }


def audit(df, progress=True):
    """Fully decode every image, the way training will, and report which ones fail.

    A JPEG over the pixel budget is decoded at a reduced scale; any other image over it is bad.
    Returns a JSON-able dict: ``files`` (one ``{"path", "ok", "error", "width", "height",
    "mode"}`` per row), ``n_images``, ``n_ok``, ``n_bad`` and the loader's ``skipped``.
    """
    files = []
    for filename in _filenames(df, progress, "audit"):
        record = {"path": filename, "ok": False, "error": None, "width": None, "height": None,
                  "mode": None}
        try:
            header = read_header(filename)
            record["mode"] = header["mode"]
            read_image(filename)
            record.update(ok=True, width=header["width"], height=header["height"])
        except ImageError as error:
            record["error"] = error.reason
        files.append(record)
    n_ok = sum(record["ok"] for record in files)
    return {"files": files, "n_images": len(files), "n_ok": n_ok, "n_bad": len(files) - n_ok,
            "skipped": list(df.attrs.get("skipped", []))}


def find_copies(df, max_distance=copies.MAX_DISTANCE, mirror=False, progress=False):
    """Find the images that show the same picture: byte-identical files and near copies
    (re-encoded, resized, cropped a little, brighter or darker; ``helpers.files.copies``).

    ``mirror=True`` counts a mirror image as a copy too. Returns a JSON-able dict: ``groups``
    (lists of file names), per group ``labels_differ`` (do its images carry different labels)
    and ``identical`` (byte-identical files), ``pairs_checked`` (hash comparisons made),
    ``n_images``, ``unreadable`` (``{"path", "reason"}``) and the loader's ``skipped``.
    """
    _check_frame(df)
    names, label_sets = df["filename"].tolist(), [frozenset(labels) for labels in df["labels"]]
    found = copies.find_copies(names, max_distance, mirror, progress=progress)
    groups = found.pop("groups")
    return {"groups": [[names[row] for row in group] for group in groups],
            "labels_differ": [len({label_sets[row] for row in group}) > 1 for group in groups],
            **found, "n_images": len(names), "skipped": list(df.attrs.get("skipped", []))}
