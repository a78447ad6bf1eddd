"""Look at a dataset before training on it: label statistics, image sizes, broken files.

``scan`` is cheap (label table plus image headers) and works even when the images are
not on disk yet; ``audit`` decodes every image fully, the way training will.
All functions take the DataFrame returned by ``helpers.data.load_dataset``.

Both keep to the pixel budget of ``helpers.files.images`` (``MAX_PIXELS``): an image that
could not be decoded within it is reported, with its size, from its header alone.
"""
import os
from collections import Counter

import numpy as np
import pandas as pd
from scipy import sparse

from helpers import progress_bar
from helpers.files.images import ImageError, read_header, read_image


def _check_frame(df, columns=("filename", "labels")):
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame, got {type(df).__name__}")
    missing = [name for name in columns if name not in df.columns]
    if missing:
        raise ValueError(
            f"the DataFrame needs the column(s) {missing}; it has {list(df.columns)}"
        )


def _progress(iterable, enabled, total, description):
    if not enabled:
        return iterable
    return progress_bar(iterable, total=total, desc=description, unit="img")


def _combinations(df):
    """Count each distinct label set once: (tuple of labels) -> number of images.

    Real datasets have few distinct label sets (ChestX-ray14: ~800 for 112k images), so
    every statistic below works on this small table instead of on every row.
    """
    _check_frame(df, ("labels",))
    if len(df) and isinstance(df["labels"].iloc[0], str):
        raise ValueError(
            "the 'labels' column must hold a list of labels per row, got strings such as "
            f"{df['labels'].iloc[0]!r}; split them first, or load the data with helpers.data"
        )
    try:
        return Counter(map(tuple, df["labels"].to_numpy(dtype=object)))
    except TypeError as error:
        raise ValueError(
            f"the 'labels' column must hold a list of labels per row ({error})"
        ) from error


def _label_counts_from(combinations):
    counts = Counter()
    for labels, n_images in combinations.items():
        for label in set(labels):
            counts[label] += n_images
    order = sorted(counts, key=lambda label: (-counts[label], label))
    series = pd.Series([counts[label] for label in order], index=order, dtype="int64")
    series.index.name = "label"
    series.name = "count"
    return series


def label_counts(df):
    """Count how many images carry each label.

    Parameters
    ----------
    df : pandas.DataFrame
        With a ``labels`` column of lists.

    Returns
    -------
    pandas.Series
        Label → number of images, most frequent first (ties alphabetical).
    """
    return _label_counts_from(_combinations(df))


def _labels_per_image_from(combinations):
    per_image = Counter()
    for labels, n_images in combinations.items():
        per_image[len(set(labels))] += n_images
    highest = max(per_image, default=0)
    series = pd.Series([per_image[n] for n in range(highest + 1)], dtype="int64")
    series.index.name = "n_labels"
    series.name = "n_images"
    return series


def labels_per_image(df):
    """Distribution of the number of labels per image.

    Parameters
    ----------
    df : pandas.DataFrame
        With a ``labels`` column of lists.

    Returns
    -------
    pandas.Series
        Index ``n_labels`` = 0, 1, ... max (no gaps), values = number of images with
        that many labels.
    """
    return _labels_per_image_from(_combinations(df))


def _cooccurrence_from(combinations, classes):
    position = {label: column for column, label in enumerate(classes)}
    rows, columns = [], []
    for row, labels in enumerate(combinations):
        for label in set(labels):
            rows.append(row)
            columns.append(position[label])
    weights = np.fromiter(combinations.values(), dtype=np.int64, count=len(combinations))
    rows = np.asarray(rows, dtype=np.int64)
    shape = (len(combinations), len(classes))
    multi_hot = sparse.csr_matrix((np.ones(len(rows), dtype=np.int64), (rows, columns)), shape)
    weighted = sparse.csr_matrix((weights[rows], (rows, columns)), shape)
    counts = (multi_hot.T @ weighted).toarray().astype("int64")
    table = pd.DataFrame(counts, index=list(classes), columns=list(classes))
    table.index.name = "label"
    table.columns.name = "label"
    return table


def cooccurrence(df):
    """Count, for every pair of labels, the images that carry both.

    Parameters
    ----------
    df : pandas.DataFrame
        With a ``labels`` column of lists.

    Returns
    -------
    pandas.DataFrame
        Square label × label table of counts, labels ordered as in
        :func:`label_counts`; the diagonal is each label's own count.
    """
    combinations = _combinations(df)
    return _cooccurrence_from(combinations, _label_counts_from(combinations).index)


def _is_folder(entry):
    try:
        return entry.is_dir()
    except OSError:  # a symbolic link that loops: there, but not a folder (its read fails later)
        return False


def find_missing(filenames):
    """Return the file names that do not exist on disk.

    Lists each folder once (``os.scandir``) instead of testing each file, so checking
    100,000 names takes a fraction of a second.

    Parameters
    ----------
    filenames : iterable of str
        Paths, as in ``df.filename``.

    Returns
    -------
    list of str
        The missing ones, in input order.
    """
    contents = {}
    missing = []
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
    """Read width, height and mode of every image from its header (no pixel decoding).

    Parameters
    ----------
    df : pandas.DataFrame
        With a ``filename`` column.
    progress : bool, default False
        Show a tqdm progress bar.

    Returns
    -------
    pandas.DataFrame
        ``filename``, ``width``, ``height`` (displayed, after EXIF rotation), ``mode``,
        ``format`` and ``error`` (None, or why the header could not be read).
    """
    _check_frame(df, ("filename",))
    rows = []
    filenames = df["filename"].tolist()
    for filename in _progress(filenames, progress, len(filenames), "headers"):
        try:
            header = read_header(filename)
            rows.append((filename, header["width"], header["height"], header["mode"],
                         header["format"], None))
        except ImageError as error:
            rows.append((filename, None, None, None, None, error.reason))
    table = pd.DataFrame(
        rows, columns=["filename", "width", "height", "mode", "format", "error"]
    )
    table["width"] = table["width"].astype("Int64")
    table["height"] = table["height"].astype("Int64")
    return table


def _describe(values):
    values = pd.Series(values, dtype="float64").dropna()
    if values.empty:
        return None
    return {
        name: round(float(getattr(values, name)()), 3) for name in ("min", "median", "mean", "max")
    }


def size_summary(sizes):
    """Summarise an :func:`image_sizes` table into plain numbers.

    Parameters
    ----------
    sizes : pandas.DataFrame
        Output of :func:`image_sizes` (or any table with ``width`` and ``height``; rows
        with an ``error`` or without a positive size are left out).

    Returns
    -------
    dict
        ``n_read``, ``width``/``height``/``aspect`` (min, median, mean, max; aspect =
        width / height), ``modes`` and ``formats`` (value → count, when those columns exist).
    """
    readable = sizes[sizes["error"].isna()] if "error" in sizes else sizes
    width = pd.to_numeric(readable["width"], errors="coerce").astype("float64")
    height = pd.to_numeric(readable["height"], errors="coerce").astype("float64")
    known = (width > 0) & (height > 0)
    width, height = width[known], height[known]

    def tally(column):
        if column not in readable:
            return {}
        return {str(k): int(v) for k, v in Counter(readable.loc[known, column]).most_common()}

    return {
        "n_read": int(known.sum()),
        "width": _describe(width),
        "height": _describe(height),
        "aspect": _describe(width / height),
        "modes": tally("mode"),
        "formats": tally("format"),
    }


def scan(df, sizes=True, progress=False):
    """Summarise a dataset: label statistics, image sizes from headers, missing files.

    Works on a label table whose images are not downloaded yet: they are listed under
    ``missing`` and the label statistics are still computed.

    Parameters
    ----------
    df : pandas.DataFrame
        From ``helpers.data.load_dataset``.
    sizes : bool, default True
        Read image headers for the size summary (one file open per image).
    progress : bool, default False
        Show a progress bar while reading headers.

    Returns
    -------
    dict
        JSON-able: ``n_images``, ``n_labels``, ``label_counts`` (label → int),
        ``label_fraction`` (label → share of images), ``labels_per_image`` (n → images),
        ``cooccurrence`` (label → label → int), ``sizes`` (see :func:`size_summary`, or
        None), ``missing`` (file names not on disk), ``unreadable`` (``{"path",
        "reason"}`` whose header failed), ``skipped`` (from the loader), ``layout``,
        ``directory``.
    """
    _check_frame(df)
    n_images = int(len(df))
    combinations = _combinations(df)
    counts = _label_counts_from(combinations)
    # Images packed in shards (helpers.scale.shards) are no files; their header facts are columns.
    packed = {"shard_file", "record_id"} <= set(df.columns)
    missing = [] if packed else find_missing(df["filename"].tolist())
    summary = None
    unreadable = []
    if sizes:
        missing_set = set(missing)
        present = df[~df["filename"].isin(missing_set)]
        table = present.assign(error=None) if packed else image_sizes(present, progress=progress)
        unreadable = [
            {"path": row.filename, "reason": row.error}
            for row in table[table["error"].notna()].itertuples()
        ]
        summary = size_summary(table)
    table = _cooccurrence_from(combinations, counts.index)
    return {
        "n_images": n_images,
        "n_labels": int(len(counts)),
        "label_counts": {str(k): int(v) for k, v in counts.items()},
        "label_fraction": {
            str(k): round(int(v) / n_images, 6) if n_images else 0.0 for k, v in counts.items()
        },
        "labels_per_image": {
            int(k): int(v) for k, v in _labels_per_image_from(combinations).items()
        },
        "cooccurrence": {
            str(row): {str(col): int(table.at[row, col]) for col in table.columns}
            for row in table.index
        },
        "sizes": summary,
        "missing": missing,
        "unreadable": unreadable,
        "skipped": list(df.attrs.get("skipped", [])),
        "layout": df.attrs.get("layout"),
        "directory": df.attrs.get("directory"),
    }


def audit(df, progress=True):
    """Fully decode every image, the way training will, and report which ones fail.

    Parameters
    ----------
    df : pandas.DataFrame
        With a ``filename`` column.
    progress : bool, default True
        Show a tqdm progress bar.

    Returns
    -------
    dict
        JSON-able: ``files`` (one ``{"path", "ok", "error", "width", "height", "mode"}``
        per row, ``path`` as in ``df.filename``, width/height as displayed, ``mode`` of
        the file), ``n_images``, ``n_ok``, ``n_bad`` and ``skipped`` (from the loader).
        A JPEG larger than the pixel budget is decoded at a reduced scale, as training
        would; any other image larger than it is bad (``error`` says its size).
    """
    _check_frame(df, ("filename",))
    files = []
    filenames = df["filename"].tolist()
    for filename in _progress(filenames, progress, len(filenames), "audit"):
        record = {"path": filename, "ok": False, "error": None,
                  "width": None, "height": None, "mode": None}
        try:
            header = read_header(filename)
            record["mode"] = header["mode"]
            read_image(filename)
            record.update(ok=True, width=header["width"], height=header["height"])
        except ImageError as error:
            record["error"] = error.reason
        files.append(record)
    n_ok = sum(record["ok"] for record in files)
    return {
        "files": files,
        "n_images": len(files),
        "n_ok": n_ok,
        "n_bad": len(files) - n_ok,
        "skipped": list(df.attrs.get("skipped", [])),
    }
