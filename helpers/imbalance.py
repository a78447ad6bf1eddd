"""Tools for imbalanced multi-label data: weights, weighted losses, priors.

Imbalance is *between classes* (one label on most images, another on a handful) and *within a
class* (even a common label is absent from most images, so "always 0" looks accurate). Keras'
``model.fit(class_weight=...)`` only addresses the first, and for a multi-hot target wrongly
(:func:`keras_class_weight_sample_weights`). The tools here address both, per label: weighted
positives (:func:`positive_weights`, :func:`weighted_binary_crossentropy`), :func:`focal_loss`,
oversampling of rare labels (:func:`oversampling_weights`, :func:`oversample`) and
:func:`prior_bias` for the output layer.

Shared parameters: ``y``, the multi-hot targets ``(n_samples, n_classes)`` (0/1, an array or
a DataFrame; the training split); ``classes``, class names (a list or a ``LabelVocabulary``)
for warnings; ``from_logits``, True for a model that outputs logits; ``reduction``, as for
``keras.losses.Loss`` (None: one loss per image).
"""

import keras
import numpy as np
from keras import ops

from helpers import warn

_CLASS_WEIGHT_KINDS = ("source", "balanced")


def _label_matrix(y):
    """``y`` as a checked float64 multi-hot matrix."""
    try:
        matrix = np.asarray(y, dtype="float64")
    except (TypeError, ValueError) as error:
        raise ValueError("y: expected a numeric multi-hot matrix (n_samples, n_classes), got "
                         f"{type(y).__name__} that does not convert to numbers ({error})") from None
    if matrix.ndim != 2:
        raise ValueError("y: expected a 2-D multi-hot matrix (n_samples, n_classes), got an "
                         f"array of shape {matrix.shape}")
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"y: expected at least one sample and one class, got shape {matrix.shape}")
    if not np.all(np.isin(matrix, (0.0, 1.0))):
        bad = np.unique(matrix[~np.isin(matrix, (0.0, 1.0))])[:5]
        raise ValueError(f"y: expected only 0 and 1 (multi-hot), got values such as {bad.tolist()}")
    return matrix


def _class_names(y, classes, n_classes):
    """Names used in warnings: from ``classes``, DataFrame columns, or indices."""
    if classes is None and hasattr(y, "columns"):
        classes = list(y.columns)
    if classes is not None:
        classes = list(getattr(classes, "classes", classes))
        if len(classes) != n_classes:
            raise ValueError(f"classes: expected {n_classes} names (one per column of y), "
                             f"got {len(classes)}")
        return [str(c) for c in classes]
    return [str(i) for i in range(n_classes)]


def _describe(names, indices):
    return ", ".join(f"{i} ({names[i]})" if names[i] != str(i) else str(i) for i in indices)


def class_weights(y, kind="source", classes=None):
    """Per-class weights from label counts, as the dict of ``model.fit(class_weight=...)``.

    ``kind="source"`` is ``total / count`` (the VOC write-up); ``"balanced"`` is ``total /
    (n_classes * count)`` (scikit-learn's rule), ``total`` being the positive labels of all
    images. A class with no positive is warned about and counted as 1.
    """
    if kind not in _CLASS_WEIGHT_KINDS:
        raise ValueError(f"kind: expected one of {_CLASS_WEIGHT_KINDS}, got {kind!r}")
    matrix = _label_matrix(y)
    names = _class_names(y, classes, matrix.shape[1])
    counts = matrix.sum(axis=0)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        warn(f"class_weights: class {_describe(names, empty)} has no positive label in y; "
             "its count is taken as 1 to keep the weight finite")
    total = counts.sum()
    if total == 0:
        raise ValueError("y: expected at least one positive label, got an all-zero matrix")
    weights = total / np.maximum(counts, 1.0) / (matrix.shape[1] if kind == "balanced" else 1)
    return {index: float(weight) for index, weight in enumerate(weights)}


def positive_weights(y, clip=None, smoothing=0.0, classes=None):
    """Per-class weight of the positive term, negatives / positives, as float32 ``(n_classes,)``.

    Each class's positives and negatives then weigh equally in a weighted binary
    cross-entropy; a class with no positive (or no negative) is warned about and gets 1.0.
    ``smoothing`` is added to both counts; ``clip`` is an upper bound or (lower, upper)
    bounds: rare classes otherwise get weights in the hundreds.
    """
    matrix = _label_matrix(y)
    names = _class_names(y, classes, matrix.shape[1])
    if not np.isscalar(smoothing) or not np.isfinite(smoothing) or smoothing < 0:
        raise ValueError(f"smoothing: expected a finite number >= 0, got {smoothing!r}")
    positives = matrix.sum(axis=0) + smoothing
    negatives = (1.0 - matrix).sum(axis=0) + smoothing
    degenerate = (positives == 0) | (negatives == 0)
    if degenerate.any():
        problems = [f"no {side} label for class {_describe(names, np.flatnonzero(counts == 0))}"
                    for side, counts in (("positive", positives), ("negative", negatives))
                    if (counts == 0).any()]
        warn(f"positive_weights: {'; '.join(problems)}; those classes get weight 1.0 "
             "(pass smoothing > 0 to avoid this)")
    weights = np.divide(negatives, positives, out=np.ones(matrix.shape[1]), where=~degenerate)
    if clip is not None:
        weights = np.clip(weights, *_clip_bounds(clip))
    return weights.astype("float32")


def _clip_bounds(clip):
    if np.isscalar(clip):
        low, high = 0.0, float(clip)
    else:
        try:
            low, high = (float(value) for value in clip)
        except (TypeError, ValueError):
            raise ValueError(
                f"clip: expected a number or a (low, high) pair, got {clip!r}") from None
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
            f"{name}: expected a 1-D list with one value per class, got shape {vector.shape}")
    if not np.all(np.isfinite(vector)) or np.any(vector < 0):
        raise ValueError(f"{name}: expected finite values >= 0, got {vector.tolist()}")
    return [float(value) for value in vector]


def _check_outputs(y_pred, values, name):
    n_outputs = y_pred.shape[-1]
    if n_outputs is not None and n_outputs != len(values):
        raise ValueError(f"{name}: got {len(values)} values (one per class) for a model with "
                         f"{n_outputs} outputs")


@keras.saving.register_keras_serializable(package="helpers")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy whose positive term is weighted per class.

    ``mean_c(-(w_c y_c log p_c + (1 - y_c) log(1 - p_c)))`` from Keras' own
    ``ops.binary_crossentropy``: with all weights 1 it equals ``keras.losses.BinaryCrossentropy``.
    """

    def __init__(self, positive_weights, from_logits=False, reduction="sum_over_batch_size",
                 name="weighted_binary_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.positive_weights = _weight_vector(positive_weights, "positive_weights")
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        _check_outputs(y_pred, self.positive_weights, "positive_weights")
        y_true = ops.cast(y_true, y_pred.dtype)
        weights = ops.convert_to_tensor(self.positive_weights, dtype=y_pred.dtype)
        # -log p and -log(1 - p), each from Keras' own binary cross-entropy.
        positive_term = ops.binary_crossentropy(ops.ones_like(y_pred), y_pred,
                                                from_logits=self.from_logits)
        negative_term = ops.binary_crossentropy(ops.zeros_like(y_pred), y_pred,
                                                from_logits=self.from_logits)
        losses = weights * y_true * positive_term + (1.0 - y_true) * negative_term
        return ops.mean(losses, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(positive_weights=self.positive_weights, from_logits=self.from_logits)
        return config


def weighted_binary_crossentropy(positive_weights, from_logits=False,
                                 reduction="sum_over_batch_size"):
    """:class:`WeightedBinaryCrossentropy`, for ``model.compile(loss=...)``.

    ``keras.models.load_model`` restores it once ``helpers.imbalance`` is imported.
    """
    return WeightedBinaryCrossentropy(positive_weights, from_logits=from_logits,
                                      reduction=reduction)


@keras.saving.register_keras_serializable(package="helpers")
class PerClassBinaryFocalCrossentropy(keras.losses.Loss):
    """``keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True)`` with one ``alpha``
    (weight of the positives, in [0, 1]) per class; see :func:`focal_loss`."""

    def __init__(self, alpha, gamma=2.0, from_logits=False, reduction="sum_over_batch_size",
                 name="per_class_binary_focal_crossentropy", dtype=None):
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
    """A binary focal cross-entropy loss (Lin et al. 2017).

    ``(1 - p_t) ** gamma`` shrinks the loss of examples the model already gets right, so the
    many easy negatives stop drowning the few positives; ``gamma=0`` is plain cross-entropy.
    ``alpha`` weighs the positives (negatives ``1 - alpha``): None, one number for every class,
    or one per class (e.g. ``1 - y.mean(axis=0)``, the ratio of :func:`positive_weights`).
    """
    if not np.isscalar(gamma) or gamma < 0:
        raise ValueError(f"gamma: expected a number >= 0, got {gamma!r}")
    if alpha is None or np.isscalar(alpha):
        if alpha is not None and not 0 <= alpha <= 1:
            raise ValueError(f"alpha: expected a number in [0, 1], got {alpha!r}")
        return keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=alpha is not None, alpha=0.25 if alpha is None else float(alpha),
            gamma=float(gamma), from_logits=from_logits, reduction=reduction)
    return PerClassBinaryFocalCrossentropy(alpha, gamma=gamma, from_logits=from_logits,
                                           reduction=reduction)


def oversampling_weights(y, power=1.0, reduce="max"):
    """Per-image weights (float32, mean 1) that favour images carrying rare labels.

    A class weighs ``(n_samples / count) ** power`` (1: full, 0.5: softer, 0: uniform); an
    image the largest (``reduce="max"``) or the mean of its labels' weights; images with no
    label count as one more class. For ``model.fit(sample_weight=...)`` or :func:`oversample`.
    """
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce: expected 'max' or 'mean', got {reduce!r}")
    if not np.isscalar(power) or power < 0:
        raise ValueError(f"power: expected a number >= 0, got {power!r}")
    matrix = _label_matrix(y)
    extended = np.hstack([matrix, (matrix.sum(axis=1) == 0)[:, None]])
    counts = extended.sum(axis=0)
    inverse = np.divide(len(extended), counts, out=np.zeros_like(counts), where=counts > 0)
    per_label = extended * inverse ** power
    weights = (per_label.max(axis=1) if reduce == "max"
               else per_label.sum(axis=1) / extended.sum(axis=1))
    return (weights / weights.mean()).astype("float32")


def oversample(dataframe, weights, n_samples=None, seed=0):
    """Draw ``n_samples`` rows (default: all) with replacement, with probability proportional
    to ``weights``; the original index is kept, so repeats show."""
    weights = np.asarray(weights, dtype="float64")
    if weights.shape != (len(dataframe),):
        raise ValueError(f"weights: expected shape ({len(dataframe)},) to match the DataFrame, "
                         f"got {weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() == 0:
        raise ValueError("weights: expected finite values >= 0 with a positive sum")
    n_samples = len(dataframe) if n_samples is None else int(n_samples)
    if n_samples < 1:
        raise ValueError(f"n_samples: expected a positive integer, got {n_samples}")
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(dataframe), size=n_samples, replace=True, p=weights / weights.sum())
    return dataframe.iloc[rows]


def prior_bias(y, epsilon=1e-3):
    """Output-layer bias ``log(p / (1 - p))`` from each class's label frequency ``p``.

    An untrained sigmoid output then predicts each class's prior instead of 0.5, so the first
    epochs are not spent unlearning a flood of false positives. ``p`` is clipped to
    ``[epsilon, 1 - epsilon]``. Use as ``bias_initializer=keras.initializers.Constant(bias)``.
    """
    if not 0 < epsilon < 0.5:
        raise ValueError(f"epsilon: expected a number in (0, 0.5), got {epsilon!r}")
    prior = np.clip(_label_matrix(y).mean(axis=0), epsilon, 1.0 - epsilon)
    return np.log(prior / (1.0 - prior)).astype("float32")


def keras_class_weight_sample_weights(y, class_weight, path="array"):
    """The per-sample weights ``model.fit(class_weight=class_weight)`` really uses on ``y``.

    Runs Keras' own conversion for NumPy targets (``path="array"``) or a ``tf.data.Dataset``
    (``"dataset"``): both turn a multi-column target into ONE class with ``argmax``, so an
    image weighs as its first positive label, and one with no label as class 0. If the private
    Keras functions move, a re-implementation of the same rule is used, with a warning.
    """
    if path not in ("array", "dataset"):
        raise ValueError(f"path: expected 'array' or 'dataset', got {path!r}")
    if not isinstance(class_weight, dict) or not class_weight:
        raise ValueError("class_weight: expected a non-empty dict {class index: weight}, "
                         f"got {class_weight!r}")
    matrix = _label_matrix(y).astype("float32")
    try:
        if path == "array":
            from keras.src.trainers.data_adapters.data_adapter_utils import \
                class_weight_to_sample_weights
            return np.asarray(class_weight_to_sample_weights(matrix, class_weight), "float32")
        import tensorflow as tf
        from keras.src.trainers.data_adapters.tf_dataset_adapter import make_class_weight_map_fn
        x = np.zeros((len(matrix), 1), "float32")
        dataset = tf.data.Dataset.from_tensor_slices((x, matrix)).batch(len(matrix))
        dataset = dataset.map(make_class_weight_map_fn(class_weight))
        return np.concatenate([sw.numpy() for _, _, sw in dataset]).astype("float32")
    except ImportError as error:
        warn(f"keras_class_weight_sample_weights: Keras' own function is not importable "
             f"({error}); using a re-implementation of its argmax rule")
        classes = np.argmax(matrix, axis=-1) if matrix.shape[1] > 1 else np.round(matrix[:, 0])
        return np.array([class_weight.get(int(c), 1.0) for c in classes], dtype="float32")
