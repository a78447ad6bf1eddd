"""Train/validation/test splits that keep every label's share, optionally by group.

A random split can leave a rare label out of the validation set entirely. Iterative
stratification (Sechidis, Tsoumakas and Vlahavas, 2011) hands out the images of the
rarest label first, each to the split that still wants most of that label, so every
label ends up in each split in roughly the requested proportion. We use the
implementation of the ``iterative-stratification`` package.
"""
import numbers

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import IterativeStratification

from helpers.labels import LabelVocabulary, to_label_lists

SPLIT_NAMES = ("train", "val", "test")


def _check_size(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name}: expected a fraction in [0, 1), got {value!r}")
    return float(value)


def _assign_folds(indicator, proportions, seed):
    """Return the fold (index into ``proportions``) of each row of ``indicator``."""
    active = np.flatnonzero(np.asarray(proportions) > 0)
    ratios = np.asarray(proportions, dtype=np.float64)[active]
    rng = np.random.RandomState(seed)
    # The algorithm walks the rows in order; shuffling first makes ties random.
    order = rng.permutation(len(indicator))
    folds = IterativeStratification(
        labels=indicator[order], r=ratios / ratios.sum(), random_state=rng
    )
    assignment = np.empty(len(indicator), dtype=np.int64)
    assignment[order] = active[folds]
    return assignment


def split_dataframe(df, val_size=0.15, test_size=0.15, seed=42, y_col="labels", group_column=None):
    """Split a DataFrame into train, validation and test sets by iterative stratification.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per image with a column of label lists (an empty list means no label;
        a plain string is one label, so multi-class data works too).
    val_size, test_size : float
        Fractions of the rows (of the groups when ``group_column`` is given) for
        validation and test, each in [0, 1) with a sum below 1. 0 gives an empty split.
    seed : int or None
        Same seed, same data → same split.
    y_col : str
        Column holding the labels.
    group_column : str or None
        Column such as ``"Patient ID"``: all rows of a group go to the same split
        (stratified on the union of the group's labels), so no patient leaks from
        training into evaluation.

    Returns
    -------
    tuple of pandas.DataFrame
        ``(train_df, val_df, test_df)``, rows in their original order and with their
        original index.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df: expected a pandas DataFrame, got {type(df).__name__}")
    for name, column in (("y_col", y_col), ("group_column", group_column)):
        if column is not None and column not in df.columns:
            raise ValueError(f"{name}: no column {column!r}; columns are {list(df.columns)}")
    val_size = _check_size("val_size", val_size)
    test_size = _check_size("test_size", test_size)
    if val_size + test_size >= 1:
        raise ValueError(
            f"val_size + test_size must be below 1 to leave training data, "
            f"got {val_size} + {test_size}"
        )

    label_lists = to_label_lists(df[y_col], column=y_col)
    indicator = LabelVocabulary.from_labels(label_lists).encode(label_lists).astype(bool)
    unit = "rows"
    if group_column is not None:
        groups = df[group_column]
        if groups.isna().any():
            raise ValueError(
                f"group_column {group_column!r}: {int(groups.isna().sum())} row(s) have no "
                f"group; fill them in (e.g. one new group per row) before splitting"
            )
        codes, uniques = pd.factorize(groups, sort=True)
        group_indicator = np.zeros((len(uniques), indicator.shape[1]), dtype=bool)
        np.logical_or.at(group_indicator, codes, indicator)
        indicator, unit = group_indicator, f"groups of {group_column!r}"

    proportions = (1.0 - val_size - test_size, val_size, test_size)
    n_units = len(indicator)
    for name, size in zip(SPLIT_NAMES, proportions):
        if size > 0 and round(size * n_units) < 1:
            raise ValueError(
                f"{name} split would be empty: {size:.3g} of {n_units} {unit}; "
                f"use more data or a larger fraction (or 0 for no {name} split)"
            )

    assignment = _assign_folds(indicator, proportions, seed)
    if group_column is not None:
        assignment = assignment[codes]
    splits = []
    for fold, size in enumerate(proportions):
        part = df.iloc[np.flatnonzero(assignment == fold)].copy()
        part.attrs = {**df.attrs, "split": SPLIT_NAMES[fold]}
        splits.append(part)
    return tuple(splits)


def with_groups(df, group, column="group"):
    """Turn a grouping setting into a column: ``(df, group_column)`` for ``split_dataframe``.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per image, with ``filename``.
    group : None, str or callable
        None: every image is its own group. A column name (``"Patient ID"``): that column.
        A function of the file path (``lambda path: Path(path).stem.split("_")[0]``): its
        result for each ``filename``, stored in ``column``; a file-name rule must fit the
        data (VOC2012's ``2008_000123.jpg`` would be grouped by year).
    column : str
        Name of the column a function's groups go to.

    Returns
    -------
    (pandas.DataFrame, str or None)
        ``df`` (a copy with ``column`` when ``group`` is a function) and the column to pass
        as ``group_column``.
    """
    if group is None:
        return df, None
    if isinstance(group, str):
        if group not in df.columns:
            raise ValueError(f"group: no column {group!r}; the DataFrame has {list(df.columns)}")
        return df, group
    if callable(group):
        return df.assign(**{column: df["filename"].map(group)}), column
    raise ValueError(f"group: expected None, a column name or a function of the file path, got {group!r}")


def split_report(train_df, val_df, test_df, y_col="labels"):
    """Count each label in each split, to check that the split kept the label shares.

    Parameters
    ----------
    train_df, val_df, test_df : pandas.DataFrame
    y_col : str

    Returns
    -------
    pandas.DataFrame
        One row per label (plus ``"(no label)"`` and ``"(images)"``), columns
        ``train``, ``val``, ``test`` with counts and ``train %``, ``val %``,
        ``test %`` with each split's share of that label.
    """
    counts = {}
    for name, part in zip(SPLIT_NAMES, (train_df, val_df, test_df)):
        label_lists = to_label_lists(part[y_col], column=y_col)
        column = pd.Series(
            [label for labels in label_lists for label in labels], dtype=object
        ).value_counts()
        column["(no label)"] = sum(1 for labels in label_lists if not labels)
        column["(images)"] = len(label_lists)
        counts[name] = column
    table = pd.DataFrame(counts).fillna(0).astype(int)
    ordered = sorted(i for i in table.index if not i.startswith("(")) + ["(no label)", "(images)"]
    table = table.loc[ordered]
    totals = table.sum(axis=1).replace(0, 1)
    for name in SPLIT_NAMES:
        table[f"{name} %"] = (100 * table[name] / totals).round(1)
    return table
