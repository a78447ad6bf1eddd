"""Label vocabulary: turn label lists into multi-hot vectors and back.

Works like scikit-learn's ``MultiLabelBinarizer`` (classes sorted, one column per
class), but refuses labels it does not know and saves itself as JSON, not pickle.

Labels are compared exactly: ``Dog`` and ``dog`` are two classes here (with a warning
from :meth:`LabelVocabulary.from_labels`). The ``helpers.data`` loaders merge such
spellings into one label before a vocabulary is built.
"""
import collections
import json
import math
from pathlib import Path

import numpy as np

from helpers import warn
from helpers.files.fileio import read_json

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
    """``"multi_class"`` when every image has exactly one label, else ``"multi_label"``.

    Parameters
    ----------
    label_lists : iterable of list of str

    Returns
    -------
    str
    """
    counts = [len(labels) for labels in to_label_lists(label_lists)]
    return "multi_class" if counts and all(count == 1 for count in counts) else "multi_label"


def to_label_lists(values, column="labels"):
    """Normalise a column of labels to lists of stripped, unique, sorted strings.

    Parameters
    ----------
    values : iterable
        One entry per image: a list/tuple/set of labels, a single label string
        (multi-class data), or None/NaN/empty for "no label".
    column : str
        Name used in error messages.

    Returns
    -------
    list of list of str
    """
    lists = []
    for row, value in enumerate(values):
        if (
            value is None
            or (isinstance(value, float) and math.isnan(value))
            or type(value).__name__ in ("NAType", "NaTType")
        ):
            items = []
        elif isinstance(value, str):
            items = [value]
        elif isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
            items = list(value)
        else:
            raise ValueError(
                f"column {column!r}, row {row}: expected a list of labels or one label string, "
                f"got {type(value).__name__} {value!r}"
            )
        cleaned = set()
        for item in items:
            if not isinstance(item, str):
                raise ValueError(
                    f"column {column!r}, row {row}: labels must be strings, "
                    f"got {type(item).__name__} {item!r}"
                )
            item = item.strip()
            if item:
                cleaned.add(item)
        lists.append(sorted(cleaned))
    return lists


class LabelVocabulary:
    """The sorted list of classes, and conversions between label lists and arrays.

    Parameters
    ----------
    classes : iterable of str
        Class names; they are sorted. Duplicates or empty names raise ``ValueError``.
    """

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
        """Build the vocabulary of every label that occurs.

        Parameters
        ----------
        label_lists : iterable
            One list of labels per image (e.g. ``df["labels"]``).

        Returns
        -------
        LabelVocabulary
            Classes that differ only in case or spacing (``Dog``, ``dog``) stay apart,
            with a warning naming them.
        """
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
        """Column index of one class.

        Parameters
        ----------
        label : str

        Returns
        -------
        int
        """
        try:
            return self._index[label]
        except KeyError:
            raise ValueError(f"unknown label {label!r}; known classes: {self.classes}") from None

    def _check_known(self, label_lists):
        unknown = sorted({label for labels in label_lists for label in labels} - set(self._index))
        if unknown:
            raise ValueError(
                f"{len(unknown)} label(s) not in the vocabulary: {unknown}; "
                f"known classes: {self.classes}"
            )

    def encode(self, label_lists):
        """Multi-hot encode label lists.

        Parameters
        ----------
        label_lists : iterable
            One list of labels per image; an empty list is an all-zero row.

        Returns
        -------
        numpy.ndarray
            float32, shape ``(n_images, n_classes)``.
        """
        label_lists = to_label_lists(label_lists)
        self._check_known(label_lists)
        matrix = np.zeros((len(label_lists), len(self.classes)), dtype=np.float32)
        for row, labels in enumerate(label_lists):
            matrix[row, [self._index[label] for label in labels]] = 1.0
        return matrix

    def encode_sparse(self, label_lists):
        """Encode single-label (multi-class) data as class indices.

        Parameters
        ----------
        label_lists : iterable
            Exactly one label per image (a string or a one-element list).

        Returns
        -------
        numpy.ndarray
            int32, shape ``(n_images,)``.
        """
        label_lists = to_label_lists(label_lists)
        wrong = [(row, labels) for row, labels in enumerate(label_lists) if len(labels) != 1]
        if wrong:
            examples = ", ".join(f"row {row}: {labels}" for row, labels in wrong[:5])
            raise ValueError(
                f"sparse/categorical labels need exactly one label per image; "
                f"{len(wrong)} row(s) have a different number ({examples})"
            )
        self._check_known(label_lists)
        return np.array([self._index[labels[0]] for labels in label_lists], dtype=np.int32)

    def decode(self, matrix, threshold=0.5):
        """Turn scores (probabilities or multi-hot rows) back into label lists.

        Parameters
        ----------
        matrix : array-like, shape (n_images, n_classes)
            A 1-D vector is treated as one image.
        threshold : float or array-like of shape (n_classes,)
            A label is kept when its score is ``>= threshold`` (one threshold per
            class when an array is given).

        Returns
        -------
        list of list of str
        """
        matrix = np.atleast_2d(np.asarray(matrix, dtype=np.float64))
        if matrix.ndim != 2 or matrix.shape[1] != len(self.classes):
            raise ValueError(
                f"matrix: expected shape (n, {len(self.classes)}), got {matrix.shape}"
            )
        threshold = np.asarray(threshold, dtype=np.float64)
        if threshold.ndim > 1 or (threshold.ndim == 1 and threshold.shape[0] != len(self.classes)):
            raise ValueError(
                f"threshold: expected a number or {len(self.classes)} per-class values, "
                f"got shape {threshold.shape}"
            )
        keep = matrix >= threshold
        return [[self.classes[i] for i in np.flatnonzero(row)] for row in keep]

    def decode_sparse(self, indices):
        """Turn class indices (e.g. ``argmax`` of softmax outputs) into class names.

        Parameters
        ----------
        indices : array-like of int

        Returns
        -------
        list of str
        """
        indices = np.asarray(indices).ravel()
        bad = indices[(indices < 0) | (indices >= len(self.classes))]
        if bad.size:
            raise ValueError(f"indices out of range 0..{len(self.classes) - 1}: {bad.tolist()}")
        return [self.classes[int(i)] for i in indices]

    def to_dict(self):
        """JSON-able description of the vocabulary.

        Returns
        -------
        dict
        """
        return {"format": FORMAT, "version": 1, "classes": list(self.classes)}

    @classmethod
    def from_dict(cls, data, source="data"):
        """Rebuild a vocabulary from ``to_dict()`` output (or any dict with ``classes``).

        Parameters
        ----------
        data : dict
        source : str
            Name used in error messages (e.g. the file path).

        Returns
        -------
        LabelVocabulary
        """
        if isinstance(data, list):
            data = {"classes": data}
        if not isinstance(data, dict) or "classes" not in data:
            raise ValueError(
                f"{source}: expected a JSON object with a 'classes' list, got {type(data).__name__}"
            )
        classes = data["classes"]
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"{source}: 'classes' must be a list of strings, got {classes!r}")
        try:
            return cls(classes)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None

    def save(self, path):
        """Write the vocabulary as JSON.

        Parameters
        ----------
        path : str or Path

        Returns
        -------
        pathlib.Path
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path):
        """Read a vocabulary written by ``save`` (or any JSON with a ``classes`` list).

        Parameters
        ----------
        path : str or Path

        Returns
        -------
        LabelVocabulary
        """
        path = Path(path)
        return cls.from_dict(read_json(path, what="label file"), source=str(path))
