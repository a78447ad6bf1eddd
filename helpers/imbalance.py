"""Tools for imbalanced multi-label data: weights, weighted losses, priors.

Two kinds of imbalance matter in multi-label data. *Between classes*: one label
is on most images, another on a handful. *Within a class*: even a common label
is absent from most images, so "always predict 0" looks accurate. Keras'
``model.fit(class_weight=...)`` only addresses the first kind, and for a
multi-hot target it does so wrongly (see :func:`keras_class_weight_sample_weights`).
The tools here address both, per label:

- :func:`positive_weights` + :func:`weighted_binary_crossentropy`: weigh the
  positive term of each label's binary cross-entropy by negatives / positives.
- :func:`focal_loss`: down-weigh easy examples (``keras.losses.BinaryFocalCrossentropy``),
  optionally with a per-class ``alpha``.
- :func:`oversampling_weights` + :func:`oversample`: per-image weights that favour
  images carrying rare labels, used as ``sample_weight`` or to resample a DataFrame.
- :func:`prior_bias`: start the output layer at the label frequencies.

Keras is imported at module import (the losses subclass ``keras.losses.Loss``);
TensorFlow is imported only inside :func:`keras_class_weight_sample_weights`.
"""

import keras
import numpy as np
from keras import ops

from helpers import warn

__all__ = [
    "label_matrix",
    "class_weights",
    "positive_weights",
    "WeightedBinaryCrossentropy",
    "weighted_binary_crossentropy",
    "PerClassBinaryFocalCrossentropy",
    "focal_loss",
    "oversampling_weights",
    "oversample",
    "prior_bias",
    "keras_class_weight_sample_weights",
]

CLASS_WEIGHT_KINDS = ("source", "balanced")


def label_matrix(y, name="y"):
    """Return a multi-hot label matrix as float64 NumPy, checked.

    Parameters
    ----------
    y : array-like of shape (n_samples, n_classes) or pandas.DataFrame
        Multi-hot targets (0/1), e.g. ``LabelVocabulary.encode(df["labels"])``.
    name : str
        Argument name used in error messages.

    Returns
    -------
    numpy.ndarray of shape (n_samples, n_classes), dtype float64.
    """
    try:
        matrix = np.asarray(y, dtype="float64")
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name}: expected a numeric multi-hot matrix (n_samples, n_classes), "
            f"got {type(y).__name__} that does not convert to numbers ({error})"
        ) from None
    if matrix.ndim != 2:
        raise ValueError(
            f"{name}: expected a 2-D multi-hot matrix (n_samples, n_classes), "
            f"got an array of shape {matrix.shape}"
        )
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(
            f"{name}: expected at least one sample and one class, got shape {matrix.shape}"
        )
    if not np.all(np.isin(matrix, (0.0, 1.0))):
        bad = np.unique(matrix[~np.isin(matrix, (0.0, 1.0))])[:5]
        raise ValueError(
            f"{name}: expected only 0 and 1 (multi-hot), got values such as {bad.tolist()}"
        )
    return matrix


def _class_names(y, classes, n_classes):
    """Names used in warnings: from ``classes``, DataFrame columns, or indices."""
    if classes is None and hasattr(y, "columns"):
        classes = list(y.columns)
    if classes is not None:
        classes = list(getattr(classes, "classes", classes))
        if len(classes) != n_classes:
            raise ValueError(
                f"classes: expected {n_classes} names (one per column of y), "
                f"got {len(classes)}"
            )
        return [str(c) for c in classes]
    return [str(i) for i in range(n_classes)]


def _describe(names, indices):
    return ", ".join(f"{i} ({names[i]})" if names[i] != str(i) else str(i) for i in indices)


def class_weights(y, kind="source", classes=None):
    """Per-class weights from label counts, as a ``{index: weight}`` dict.

    ``"source"`` is ``total / count`` (the VOC write-up); ``"balanced"`` is
    ``total / (n_classes * count)`` (scikit-learn's "balanced" rule), where
    ``total`` is the number of positive labels over all images (the number of
    images when every image has exactly one label). A class with no positives
    would get an infinite weight: it is warned about and counted as 1.

    Parameters
    ----------
    y : array-like of shape (n_samples, n_classes)
        Multi-hot targets.
    kind : {"source", "balanced"}
        Which rule to use.
    classes : list of str or LabelVocabulary, optional
        Class names, used in warnings only.

    Returns
    -------
    dict of int to float
        The shape ``model.fit(class_weight=...)`` expects (see
        :func:`keras_class_weight_sample_weights` for why it misbehaves with
        multi-hot targets).
    """
    if kind not in CLASS_WEIGHT_KINDS:
        raise ValueError(f"kind: expected one of {CLASS_WEIGHT_KINDS}, got {kind!r}")
    matrix = label_matrix(y)
    names = _class_names(y, classes, matrix.shape[1])
    counts = matrix.sum(axis=0)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        warn(
            f"class_weights: class {_describe(names, empty)} has no positive label in y; "
            "its count is taken as 1 to keep the weight finite")
    total = counts.sum()
    if total == 0:
        raise ValueError("y: expected at least one positive label, got an all-zero matrix")
    weights = total / np.maximum(counts, 1.0)
    if kind == "balanced":
        weights = weights / matrix.shape[1]
    return {index: float(weight) for index, weight in enumerate(weights)}


def positive_weights(y, clip=None, smoothing=0.0, classes=None):
    """Per-class weight of the positive term: negatives / positives.

    With these weights each class's positives and negatives contribute equally
    to a weighted binary cross-entropy. A class with no positives (or no
    negatives) gets a warning naming it and the neutral weight 1.0: its positive
    term never fires on that data, so any finite value would do.

    Parameters
    ----------
    y : array-like of shape (n_samples, n_classes)
        Multi-hot targets (use the training split only).
    clip : float or (float, float), optional
        Upper bound, or (lower, upper) bounds, for the weights; rare classes
        otherwise get weights in the hundreds.
    smoothing : float
        Added to both counts: ``(negatives + smoothing) / (positives + smoothing)``.
    classes : list of str or LabelVocabulary, optional
        Class names, used in warnings only.

    Returns
    -------
    numpy.ndarray of shape (n_classes,), float32.
    """
    matrix = label_matrix(y)
    names = _class_names(y, classes, matrix.shape[1])
    if not np.isscalar(smoothing) or not np.isfinite(smoothing) or smoothing < 0:
        raise ValueError(f"smoothing: expected a finite number >= 0, got {smoothing!r}")
    positives = matrix.sum(axis=0) + smoothing
    negatives = (1.0 - matrix).sum(axis=0) + smoothing
    degenerate = (positives == 0) | (negatives == 0)
    if degenerate.any():
        no_positive = np.flatnonzero(positives == 0)
        no_negative = np.flatnonzero(negatives == 0)
        problems = []
        if no_positive.size:
            problems.append(f"no positive label for class {_describe(names, no_positive)}")
        if no_negative.size:
            problems.append(f"no negative label for class {_describe(names, no_negative)}")
        warn(
            f"positive_weights: {'; '.join(problems)}; those classes get weight 1.0 "
            "(pass smoothing > 0 to avoid this)")
    weights = np.ones(matrix.shape[1])
    ok = ~degenerate
    weights[ok] = negatives[ok] / positives[ok]
    if clip is not None:
        low, high = _clip_bounds(clip)
        weights = np.clip(weights, low, high)
    return weights.astype("float32")


def _clip_bounds(clip):
    if np.isscalar(clip):
        low, high = 0.0, float(clip)
    else:
        try:
            low, high = (float(value) for value in clip)
        except (TypeError, ValueError):
            raise ValueError(
                f"clip: expected a number or a (low, high) pair, got {clip!r}"
            ) from None
    if not (0 <= low <= high):
        raise ValueError(f"clip: expected 0 <= low <= high, got ({low}, {high})")
    return low, high


def _weight_vector(values, name):
    try:
        vector = np.asarray(values, dtype="float64")
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a list of numbers, got {values!r}") from None
    if vector.ndim != 1 or vector.size == 0:
        raise ValueError(
            f"{name}: expected a 1-D list with one value per class, got shape {vector.shape}"
        )
    if not np.all(np.isfinite(vector)) or np.any(vector < 0):
        raise ValueError(f"{name}: expected finite values >= 0, got {vector.tolist()}")
    return [float(value) for value in vector]


def _check_outputs(y_pred, values, name):
    n_outputs = y_pred.shape[-1]
    if n_outputs is not None and n_outputs != len(values):
        raise ValueError(
            f"{name}: got {len(values)} values (one per class) for a model with "
            f"{n_outputs} outputs"
        )


@keras.saving.register_keras_serializable(package="helpers")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy whose positive term is weighted per class.

    ``loss = mean_c( -(w_c * y_c * log p_c + (1 - y_c) * log(1 - p_c)) )``, computed
    with Keras' own ``ops.binary_crossentropy`` (same clipping with epsilon, and the
    same stable path when ``p`` comes straight from a sigmoid), so with all
    weights 1 it equals ``keras.losses.BinaryCrossentropy``.

    Parameters
    ----------
    positive_weights : list of float
        One weight per class (see :func:`positive_weights`).
    from_logits : bool
        True when the model outputs logits instead of sigmoid probabilities.
    reduction, name, dtype
        As for ``keras.losses.Loss``.
    """

    def __init__(
        self,
        positive_weights,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="weighted_binary_crossentropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.positive_weights = _weight_vector(positive_weights, "positive_weights")
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        _check_outputs(y_pred, self.positive_weights, "positive_weights")
        y_true = ops.cast(y_true, y_pred.dtype)
        weights = ops.convert_to_tensor(self.positive_weights, dtype=y_pred.dtype)
        # -log p and -log(1 - p), each from Keras' own binary cross-entropy.
        positive_term = ops.binary_crossentropy(
            ops.ones_like(y_pred), y_pred, from_logits=self.from_logits
        )
        negative_term = ops.binary_crossentropy(
            ops.zeros_like(y_pred), y_pred, from_logits=self.from_logits
        )
        losses = weights * y_true * positive_term + (1.0 - y_true) * negative_term
        return ops.mean(losses, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(positive_weights=self.positive_weights, from_logits=self.from_logits)
        return config


def weighted_binary_crossentropy(positive_weights, from_logits=False,
                                 reduction="sum_over_batch_size"):
    """Build a binary cross-entropy loss whose positives are weighted per class.

    Parameters
    ----------
    positive_weights : array-like of shape (n_classes,)
        Weight of each class's positive term, e.g. from :func:`positive_weights`.
    from_logits : bool
        True when the model's last layer has no sigmoid.
    reduction : str or None
        As for ``keras.losses.Loss``; None gives one loss per image.

    Returns
    -------
    WeightedBinaryCrossentropy
        A ``keras.losses.Loss``; use it in ``model.compile(loss=...)``. It is saved
        with the model and restored by ``keras.models.load_model`` once
        ``helpers.imbalance`` has been imported.
    """
    return WeightedBinaryCrossentropy(
        positive_weights, from_logits=from_logits, reduction=reduction
    )


@keras.saving.register_keras_serializable(package="helpers")
class PerClassBinaryFocalCrossentropy(keras.losses.Loss):
    """Binary focal cross-entropy with one ``alpha`` per class.

    Same formula as ``keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True)``
    except that ``alpha`` (weight of positives; negatives get ``1 - alpha``) is a
    vector with one entry per class.

    Parameters
    ----------
    alpha : list of float
        Per-class weight of positives, each in [0, 1].
    gamma : float
        Focusing parameter; 0 gives (alpha-weighted) binary cross-entropy.
    from_logits : bool
        True when the model outputs logits.
    reduction, name, dtype
        As for ``keras.losses.Loss``.
    """

    def __init__(
        self,
        alpha,
        gamma=2.0,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="per_class_binary_focal_crossentropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.alpha = _weight_vector(alpha, "alpha")
        if any(value > 1 for value in self.alpha):
            raise ValueError(f"alpha: expected values in [0, 1], got {self.alpha}")
        if gamma < 0:
            raise ValueError(f"gamma: expected a number >= 0, got {gamma!r}")
        self.gamma = float(gamma)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        _check_outputs(y_pred, self.alpha, "alpha")
        y_true = ops.cast(y_true, y_pred.dtype)
        alpha = ops.convert_to_tensor(self.alpha, dtype=y_pred.dtype)
        bce = ops.binary_crossentropy(y_true, y_pred, from_logits=self.from_logits)
        probabilities = ops.sigmoid(y_pred) if self.from_logits else y_pred
        p_t = y_true * probabilities + (1.0 - y_true) * (1.0 - probabilities)
        focal = ops.power(1.0 - p_t, self.gamma) * bce
        balance = y_true * alpha + (1.0 - y_true) * (1.0 - alpha)
        return ops.mean(balance * focal, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha, gamma=self.gamma, from_logits=self.from_logits)
        return config


def focal_loss(gamma=2.0, alpha=None, from_logits=False, reduction="sum_over_batch_size"):
    """Build a binary focal cross-entropy loss (Lin et al. 2017).

    ``(1 - p_t) ** gamma`` shrinks the loss of examples the model already gets
    right, so the many easy negatives stop drowning the few positives.

    Parameters
    ----------
    gamma : float
        Focusing parameter; 0 gives plain binary cross-entropy.
    alpha : None, float or array-like of shape (n_classes,)
        Weight of positives (negatives get ``1 - alpha``). None: no balancing.
        A float: one alpha for every class. A vector: one per class, e.g.
        ``1 - y.mean(axis=0)`` gives the same positive:negative ratio as
        :func:`positive_weights`.
    from_logits : bool
        True when the model outputs logits.
    reduction : str or None
        As for ``keras.losses.Loss``; None gives one loss per image.

    Returns
    -------
    keras.losses.BinaryFocalCrossentropy, or PerClassBinaryFocalCrossentropy
    when ``alpha`` is a vector.
    """
    if not np.isscalar(gamma) or gamma < 0:
        raise ValueError(f"gamma: expected a number >= 0, got {gamma!r}")
    if alpha is None or np.isscalar(alpha):
        if alpha is not None and not 0 <= alpha <= 1:
            raise ValueError(f"alpha: expected a number in [0, 1], got {alpha!r}")
        return keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=alpha is not None,
            alpha=0.25 if alpha is None else float(alpha),
            gamma=float(gamma),
            from_logits=from_logits,
            reduction=reduction,
        )
    return PerClassBinaryFocalCrossentropy(
        alpha, gamma=gamma, from_logits=from_logits, reduction=reduction
    )


def oversampling_weights(y, power=1.0, reduce="max"):
    """Per-image weights that favour images carrying rare labels.

    Each class weighs its inverse frequency ``n_samples / count``; an image takes
    the largest (``reduce="max"``) or the mean of the weights of its labels.
    Images with no label at all are treated as one more class ("no label"), so
    they get a defined weight that follows their own frequency. Weights are raised
    to ``power`` (0.5 softens them) and normalised to mean 1.

    Parameters
    ----------
    y : array-like of shape (n_samples, n_classes)
        Multi-hot targets.
    power : float
        Exponent applied to the inverse frequencies (1: full, 0: uniform).
    reduce : {"max", "mean"}
        How to combine the weights of an image's labels.

    Returns
    -------
    numpy.ndarray of shape (n_samples,), float32, mean 1. Pass it as
    ``model.fit(sample_weight=...)`` or to :func:`oversample`.
    """
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce: expected 'max' or 'mean', got {reduce!r}")
    if not np.isscalar(power) or power < 0:
        raise ValueError(f"power: expected a number >= 0, got {power!r}")
    matrix = label_matrix(y)
    no_label = (matrix.sum(axis=1) == 0).astype("float64")[:, None]
    extended = np.hstack([matrix, no_label])
    counts = extended.sum(axis=0)
    inverse = np.zeros_like(counts)
    present = counts > 0
    inverse[present] = (len(extended) / counts[present]) ** power
    per_label = extended * inverse
    if reduce == "max":
        weights = per_label.max(axis=1)
    else:
        weights = per_label.sum(axis=1) / extended.sum(axis=1)
    return (weights / weights.mean()).astype("float32")


def oversample(dataframe, weights, n_samples=None, seed=0):
    """Resample DataFrame rows with replacement, with probability proportional to weights.

    Parameters
    ----------
    dataframe : pandas.DataFrame
        Rows to resample (e.g. the training split with ``filename``/``labels``).
    weights : array-like of shape (len(dataframe),)
        Non-negative weights, e.g. from :func:`oversampling_weights`.
    n_samples : int, optional
        Number of rows to draw; defaults to ``len(dataframe)``.
    seed : int
        Random seed.

    Returns
    -------
    pandas.DataFrame with ``n_samples`` rows (original index kept, so repeats show).
    """
    weights = np.asarray(weights, dtype="float64")
    if weights.shape != (len(dataframe),):
        raise ValueError(
            f"weights: expected shape ({len(dataframe)},) to match the DataFrame, "
            f"got {weights.shape}"
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() == 0:
        raise ValueError("weights: expected finite values >= 0 with a positive sum")
    n_samples = len(dataframe) if n_samples is None else int(n_samples)
    if n_samples < 1:
        raise ValueError(f"n_samples: expected a positive integer, got {n_samples}")
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(dataframe), size=n_samples, replace=True, p=weights / weights.sum())
    return dataframe.iloc[rows]


def prior_bias(y, epsilon=1e-3):
    """Output-layer bias ``log(p / (1 - p))`` from each class's label frequency.

    With this bias (and small weights) an untrained sigmoid output predicts each
    class's prior instead of 0.5, so the first epochs are not spent unlearning a
    flood of false positives.

    Parameters
    ----------
    y : array-like of shape (n_samples, n_classes)
        Multi-hot targets (training split).
    epsilon : float
        Frequencies are clipped to ``[epsilon, 1 - epsilon]`` so that classes that
        are never (or always) present get a finite bias.

    Returns
    -------
    numpy.ndarray of shape (n_classes,), float32; use it as
    ``layers.Dense(n, activation="sigmoid", bias_initializer=keras.initializers.Constant(bias))``.
    """
    if not 0 < epsilon < 0.5:
        raise ValueError(f"epsilon: expected a number in (0, 0.5), got {epsilon!r}")
    prior = np.clip(label_matrix(y).mean(axis=0), epsilon, 1.0 - epsilon)
    return np.log(prior / (1.0 - prior)).astype("float32")


def keras_class_weight_sample_weights(y, class_weight, path="array"):
    """Return the per-sample weights ``model.fit(class_weight=...)`` really uses.

    Calls Keras' own conversion: for NumPy targets
    ``keras.src.trainers.data_adapters.data_adapter_utils.class_weight_to_sample_weights``,
    for a ``tf.data.Dataset`` the map function from
    ``tf_dataset_adapter.make_class_weight_map_fn``. Both turn a target with more
    than one column into ONE class with ``argmax``: an image weighs as its first
    positive label, and an image with no label as class 0. If the private Keras
    functions move, an equivalent re-implementation is used with a warning.

    Parameters
    ----------
    y : array-like of shape (n_samples, n_classes)
        Multi-hot targets.
    class_weight : dict of int to float
        What you would pass to ``model.fit(class_weight=...)``.
    path : {"array", "dataset"}
        Which Keras input path to run: NumPy arrays or ``tf.data.Dataset``.

    Returns
    -------
    numpy.ndarray of shape (n_samples,), float32.
    """
    if path not in ("array", "dataset"):
        raise ValueError(f"path: expected 'array' or 'dataset', got {path!r}")
    if not isinstance(class_weight, dict) or not class_weight:
        raise ValueError(
            f"class_weight: expected a non-empty dict {{class index: weight}}, got {class_weight!r}"
        )
    matrix = label_matrix(y).astype("float32")
    try:
        if path == "array":
            from keras.src.trainers.data_adapters.data_adapter_utils import (
                class_weight_to_sample_weights,
            )

            return np.asarray(class_weight_to_sample_weights(matrix, class_weight), "float32")
        import tensorflow as tf
        from keras.src.trainers.data_adapters.tf_dataset_adapter import (
            make_class_weight_map_fn,
        )

        x = np.zeros((len(matrix), 1), "float32")
        dataset = tf.data.Dataset.from_tensor_slices((x, matrix)).batch(len(matrix))
        dataset = dataset.map(make_class_weight_map_fn(class_weight))
        return np.concatenate([sw.numpy() for _, _, sw in dataset]).astype("float32")
    except ImportError as error:
        warn(
            f"keras_class_weight_sample_weights: Keras' own function is not importable "
            f"({error}); using a re-implementation of its argmax rule")
        classes = np.argmax(matrix, axis=-1) if matrix.shape[1] > 1 else np.round(matrix[:, 0])
        return np.array([class_weight.get(int(c), 1.0) for c in classes], dtype="float32")
