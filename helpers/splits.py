"""Train/validation/test splits that keep every label's share, optionally by group.

A random split can leave a rare label out of the validation set. Iterative stratification
(Sechidis, Tsoumakas and Vlahavas, 2011; the ``iterative-stratification`` package) hands out the
images of the rarest label first, each to the split that still wants most of it, so every label
ends up in each split in roughly the requested proportion. ``y_col``: the label lists' column.
"""
import numbers

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import IterativeStratification

from helpers.files import copies
from helpers.labels import LabelVocabulary, to_label_lists

_SPLIT_NAMES = ("train", "val", "test")


def _check_size(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name}: expected a fraction in [0, 1), got {value!r}")
    return float(value)


def _check_arguments(df, val_size, test_size, y_col, group_column):
    """The three fractions ``(train, val, test)``, once the arguments are checked."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df: expected a pandas DataFrame, got {type(df).__name__}")
    for name, column in (("y_col", y_col), ("group_column", group_column)):
        if column is not None and column not in df.columns:
            raise ValueError(f"{name}: no column {column!r}; columns are {list(df.columns)}")
    val_size, test_size = _check_size("val_size", val_size), _check_size("test_size", test_size)
    if val_size + test_size >= 1:
        raise ValueError(f"val_size + test_size must be below 1 to leave training data, "
                         f"got {val_size} + {test_size}")
    return 1.0 - val_size - test_size, val_size, test_size


def _group_indicator(indicator, groups, group_column):
    """``(one indicator row per group: the union of its rows' labels, group of each row)``."""
    if groups.isna().any():
        raise ValueError(f"group_column {group_column!r}: {int(groups.isna().sum())} row(s) have "
                         f"no group; fill them in (e.g. one new group per row) before splitting")
    codes, uniques = pd.factorize(groups, sort=True)
    grouped = np.zeros((len(uniques), indicator.shape[1]), dtype=bool)
    np.logical_or.at(grouped, codes, indicator)
    return grouped, codes


def _assign_folds(indicator, proportions, seed):
    """Return the fold (index into ``proportions``) of each row of ``indicator``."""
    active = np.flatnonzero(np.asarray(proportions) > 0)
    ratios = np.asarray(proportions, dtype=np.float64)[active]
    rng = np.random.RandomState(seed)
    # The algorithm walks the rows in order; shuffling first makes ties random.
    order = rng.permutation(len(indicator))
    folds = IterativeStratification(labels=indicator[order], r=ratios / ratios.sum(), random_state=rng)
    assignment = np.empty(len(indicator), dtype=np.int64)
    assignment[order] = active[folds]
    return assignment


def split_dataframe(df, val_size=0.15, test_size=0.15, seed=42, y_col="labels", group_column=None):
    """Split a DataFrame into ``(train_df, val_df, test_df)`` by iterative stratification.

    ``val_size``, ``test_size``: fractions of the rows (groups) in [0, 1) with a sum below 1; 0
    gives an empty split. With ``group_column`` (``"Patient ID"``) a group's rows go to one split,
    stratified on their labels' union: no patient leaks from training into evaluation.
    """
    proportions = _check_arguments(df, val_size, test_size, y_col, group_column)
    label_lists = to_label_lists(df[y_col], column=y_col)
    indicator = LabelVocabulary.from_labels(label_lists).encode(label_lists).astype(bool)
    unit = "rows" if group_column is None else f"groups of {group_column!r}"
    if group_column is not None:
        indicator, codes = _group_indicator(indicator, df[group_column], group_column)
    for name, size in zip(_SPLIT_NAMES, proportions):
        if size > 0 and round(size * len(indicator)) < 1:
            raise ValueError(f"{name} split would be empty: {size:.3g} of {len(indicator)} {unit}; "
                             f"use more data or a larger fraction (or 0 for no {name} split)")
    assignment = _assign_folds(indicator, proportions, seed)
    if group_column is not None:
        assignment = assignment[codes]
    parts = tuple(df.iloc[np.flatnonzero(assignment == fold)].copy() for fold in range(3))
    for part, name in zip(parts, _SPLIT_NAMES):
        part.attrs = {**df.attrs, "split": name}
    return parts


def with_groups(df, group, column="group"):
    """Turn a grouping setting into a column: ``(df, group_column)`` for ``split_dataframe``.

    ``group`` is None (every image its own group), a column name (``"Patient ID"``), or a
    function of the file path, whose results go to ``column`` of a copy
    (``lambda path: Path(path).stem.split("_")[0]`` groups VOC2012's ``2008_000123.jpg`` by year).
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


def with_copies(df, groups, group_column=None, column="copy_group"):
    """``(df, column)`` for ``split_dataframe``: a copy of ``df`` whose ``column`` joins each group
    of copies (file names, as ``helpers.scan.find_copies`` gives them) with the ``group_column``
    groups of its images, so that no picture, nor patient, is in two splits."""
    keys = [df["filename"]] + ([df[group_column]] if group_column is not None else [])
    if keys[-1].isna().any():
        raise ValueError(f"{group_column!r}: some rows have no group; fill them in first")
    return df.assign(**{column: copies.component_labels(keys, groups)}), column


def split_report(train_df, val_df, test_df, y_col="labels"):
    """Count each label in each split, to check that the split kept the label shares: one row per
    label, then ``"(no label)"`` and ``"(images)"``; counts and each split's share (``train %``)."""
    counts = {}
    for name, part in zip(_SPLIT_NAMES, (train_df, val_df, test_df)):
        label_lists = to_label_lists(part[y_col], column=y_col)
        column = pd.Series([label for labels in label_lists for label in labels], dtype=object).value_counts()
        column["(no label)"] = sum(1 for labels in label_lists if not labels)
        column["(images)"] = len(label_lists)
        counts[name] = column
    table = pd.DataFrame(counts).fillna(0).astype(int)
    table = table.loc[sorted(i for i in table.index if not i.startswith("(")) + ["(no label)", "(images)"]]
    totals = table.sum(axis=1).replace(0, 1)
    for name in _SPLIT_NAMES:
        table[f"{name} %"] = (100 * table[name] / totals).round(1)
    return table
