"""Label vocabulary: turn label lists into multi-hot vectors and back.

Works like scikit-learn's ``MultiLabelBinarizer`` (classes sorted, one column per class), but
refuses labels it does not know and saves itself as JSON, not pickle. ``label_lists`` is always
one entry per image: a list of labels, one label string (multi-class data), or None/NaN for "no
label". Labels are compared exactly: ``Dog`` and ``dog`` are two classes here (with a warning);
the ``helpers.data`` loaders merge such spellings into one label before a vocabulary is built.
"""
import collections
import math
from pathlib import Path

import numpy as np

from helpers import warn
from helpers.files.fileio import atomic_write_json, read_json

FORMAT = "helpers.LabelVocabulary"
# multi_label: any number of labels per image (sigmoid outputs, binary cross-entropy);
# multi_class: exactly one (softmax outputs, categorical cross-entropy).
TASKS = ("multi_label", "multi_class")


def check_task(task):
    """Raise ``ValueError`` unless ``task`` is one of ``TASKS``; return it."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return task


def infer_task(label_lists):
    """``"multi_class"`` when every image has exactly one label, else ``"multi_label"``."""
    counts = [len(labels) for labels in to_label_lists(label_lists)]
    return "multi_class" if counts and all(count == 1 for count in counts) else "multi_label"


def _items(value, row, column):
    """One image's labels as a list, before cleaning."""
    if value is None or (isinstance(value, float) and math.isnan(value)) \
            or type(value).__name__ in ("NAType", "NaTType"):
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return list(value)
    raise ValueError(f"column {column!r}, row {row}: expected a list of labels or one label "
                     f"string, got {type(value).__name__} {value!r}")


def to_label_lists(values, column="labels"):
    """Normalise ``label_lists`` to lists of stripped, unique, sorted strings (``column`` names
    the values in error messages)."""
    lists = []
    for row, value in enumerate(values):
        cleaned = set()
        for item in _items(value, row, column):
            if not isinstance(item, str):
                raise ValueError(f"column {column!r}, row {row}: labels must be strings, "
                                 f"got {type(item).__name__} {item!r}")
            cleaned.add(item.strip())
        lists.append(sorted(cleaned - {""}))
    return lists


class LabelVocabulary:
    """Sorted ``classes`` (no duplicate or empty names) and conversions of label lists to arrays."""

    def __init__(self, classes):
        if isinstance(classes, str):
            raise ValueError(f"classes: expected a list of class names, got the string {classes!r}")
        classes = list(classes)
        bad = [c for c in classes if not isinstance(c, str) or not c.strip()]
        if bad:
            raise ValueError(f"classes: expected non-empty strings, got {bad!r}")
        stripped = [c.strip() for c in classes]
        duplicates = sorted({c for c in stripped if stripped.count(c) > 1})
        if duplicates:
            raise ValueError(f"classes: duplicate class names {duplicates}")
        self.classes = sorted(stripped)
        self._index = {name: i for i, name in enumerate(self.classes)}

    @classmethod
    def from_labels(cls, label_lists):
        """The vocabulary of all labels in ``label_lists`` (``Dog``, ``dog`` apart, warned of)."""
        vocabulary = cls(sorted({label for labels in to_label_lists(label_lists) for label in labels}))
        spellings = collections.defaultdict(list)
        for name in vocabulary.classes:
            spellings[" ".join(name.casefold().split())].append(name)
        alike = [names for names in spellings.values() if len(names) > 1]
        if alike:
            warn(f"classes that differ only in case or spacing are kept apart: "
                 f"{'; '.join(', '.join(map(repr, names)) for names in alike)} (the "
                 f"helpers.data loaders merge them; rename them to merge them here)")
        return vocabulary

    def __len__(self):
        return len(self.classes)

    def __iter__(self):
        return iter(self.classes)

    def __contains__(self, label):
        return label in self._index

    def __eq__(self, other):
        return isinstance(other, LabelVocabulary) and self.classes == other.classes

    def __repr__(self):
        return f"LabelVocabulary({self.classes!r})"

    def index(self, label):
        """Column index of one class."""
        try:
            return self._index[label]
        except KeyError:
            raise ValueError(f"unknown label {label!r}; known classes: {self.classes}") from None

    def _check_known(self, label_lists):
        unknown = sorted({label for labels in label_lists for label in labels} - set(self._index))
        if unknown:
            raise ValueError(f"{len(unknown)} label(s) not in the vocabulary: {unknown}; "
                             f"known classes: {self.classes}")

    def encode(self, label_lists):
        """Multi-hot rows, float32 of shape ``(n_images, n_classes)``; ``[]`` is all zeros."""
        label_lists = to_label_lists(label_lists)
        self._check_known(label_lists)
        matrix = np.zeros((len(label_lists), len(self.classes)), dtype=np.float32)
        for row, labels in enumerate(label_lists):
            matrix[row, [self._index[label] for label in labels]] = 1.0
        return matrix

    def encode_sparse(self, label_lists):
        """Class indices, int32 of shape ``(n_images,)``, of exactly one label per image."""
        label_lists = to_label_lists(label_lists)
        wrong = [(row, labels) for row, labels in enumerate(label_lists) if len(labels) != 1]
        if wrong:
            examples = ", ".join(f"row {row}: {labels}" for row, labels in wrong[:5])
            raise ValueError(f"sparse/categorical labels need exactly one label per image; "
                             f"{len(wrong)} row(s) have a different number ({examples})")
        self._check_known(label_lists)
        return np.array([self._index[labels[0]] for labels in label_lists], dtype=np.int32)

    def decode(self, matrix, threshold=0.5):
        """Turn scores of shape ``(n_images, n_classes)`` (or one image's) into label lists: those
        whose score is ``>= threshold`` (one number, or one per class)."""
        matrix = np.atleast_2d(np.asarray(matrix, dtype=np.float64))
        if matrix.ndim != 2 or matrix.shape[1] != len(self.classes):
            raise ValueError(f"matrix: expected shape (n, {len(self.classes)}), got {matrix.shape}")
        threshold = np.asarray(threshold, dtype=np.float64)
        if threshold.ndim > 1 or (threshold.ndim == 1 and threshold.shape[0] != len(self.classes)):
            raise ValueError(f"threshold: expected a number or {len(self.classes)} per-class "
                             f"values, got shape {threshold.shape}")
        return [[self.classes[i] for i in np.flatnonzero(row)] for row in matrix >= threshold]

    def decode_sparse(self, indices):
        """Class names of class indices (e.g. the ``argmax`` of softmax outputs)."""
        indices = np.asarray(indices).ravel()
        bad = indices[(indices < 0) | (indices >= len(self.classes))]
        if bad.size:
            raise ValueError(f"indices out of range 0..{len(self.classes) - 1}: {bad.tolist()}")
        return [self.classes[int(i)] for i in indices]

    def to_dict(self):
        """The vocabulary as a JSON-able dict."""
        return {"format": FORMAT, "version": 1, "classes": list(self.classes)}

    @classmethod
    def from_dict(cls, data, source="data"):
        """Rebuild a vocabulary from ``to_dict()`` output (or any dict with ``classes``, or a
        list); ``source`` names it in error messages."""
        if isinstance(data, list):
            data = {"classes": data}
        if not isinstance(data, dict) or "classes" not in data:
            raise ValueError(f"{source}: expected a JSON object with a 'classes' list, "
                             f"got {type(data).__name__}")
        classes = data["classes"]
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"{source}: 'classes' must be a list of strings, got {classes!r}")
        try:
            return cls(classes)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None

    def save(self, path):
        """Write the vocabulary as JSON, atomically; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path):
        """Read a vocabulary written by ``save`` (or any JSON with a ``classes`` list)."""
        return cls.from_dict(read_json(path, what="label file"), source=str(path))
