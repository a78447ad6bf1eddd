"""Tests for helpers.imbalance: weights, weighted/focal losses, priors, Keras' class_weight."""
import warnings

import keras
import numpy as np
import pandas as pd
import pytest
from keras import layers

from helpers import imbalance

EPSILON = keras.config.epsilon()

# 6 images, 3 classes: class 0 on 2 images, class 1 on 1, class 2 on 2; two unlabelled rows.
HAND_MADE = np.array(
    [
        [1, 0, 0],
        [0, 0, 1],
        [1, 1, 0],
        [0, 0, 0],
        [0, 0, 1],
        [0, 0, 0],
    ],
    dtype="float32",
)


def reference_weighted_bce(y_true, y_pred, weights, from_logits=False):
    """NumPy weighted BCE, mirroring Keras' float32 clipping of probabilities."""
    y_true = np.asarray(y_true, "float64")
    if from_logits:
        logits = np.asarray(y_pred, "float64")
        positive_term = np.logaddexp(0.0, -logits)
        negative_term = np.logaddexp(0.0, logits)
    else:
        p = np.clip(np.asarray(y_pred, "float32"), EPSILON, 1.0 - EPSILON)
        positive_term = -np.log(p.astype("float64"))
        negative_term = -np.log((np.float32(1.0) - p).astype("float64"))
    losses = np.asarray(weights) * y_true * positive_term + (1.0 - y_true) * negative_term
    return losses.mean(axis=-1)


def random_case(seed, n=32, n_classes=5):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((n, n_classes)) < 0.25).astype("float32")
    y_true[:4] = 0.0  # all-zero rows
    y_pred = rng.random((n, n_classes)).astype("float32")
    # probabilities at and near the edges
    y_pred[4] = [0.0, 1.0, 1e-9, 1.0 - 1e-9, 0.5][:n_classes]
    y_pred[5] = [1e-6, 1.0 - 1e-6, 1e-3, 0.999, 1.0][:n_classes]
    y_true[4:6] = [1, 1, 1, 0, 0][:n_classes]
    weights = rng.uniform(0.1, 20.0, size=n_classes).astype("float32")
    return y_true, y_pred, weights


# --- class_weights / positive_weights ------------------------------------------------


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("source", {0: 5 / 2, 1: 5 / 1, 2: 5 / 2}),
        ("balanced", {0: 5 / 6, 1: 5 / 3, 2: 5 / 6}),
    ],
)
def test_class_weights_hand_made(kind, expected):
    weights = imbalance.class_weights(HAND_MADE, kind=kind)
    assert set(weights) == {0, 1, 2}
    assert all(isinstance(key, int) for key in weights)
    for index, value in expected.items():
        assert weights[index] == pytest.approx(value)


def test_class_weights_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        imbalance.class_weights(HAND_MADE, kind="inverse")


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, [4 / 2, 5 / 1, 4 / 2]),
        ({"clip": 3.0}, [2.0, 3.0, 2.0]),
        ({"clip": (2.5, 4.0)}, [2.5, 4.0, 2.5]),
        ({"smoothing": 1.0}, [5 / 3, 6 / 2, 5 / 3]),
    ],
)
def test_positive_weights_hand_made(kwargs, expected):
    weights = imbalance.positive_weights(HAND_MADE, **kwargs)
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, expected, rtol=1e-6)


@pytest.mark.parametrize(
    "classes, expected_name",
    [(None, "class 1"), (["cat", "dog", "owl"], "dog"), ("dataframe", "dog")],
)
def test_positive_weights_warns_on_class_without_positives(classes, expected_name):
    y = HAND_MADE.copy()
    y[:, 1] = 0.0
    if classes == "dataframe":
        y, classes = pd.DataFrame(y, columns=["cat", "dog", "owl"]), None
    with pytest.warns(UserWarning, match=expected_name):
        weights = imbalance.positive_weights(y, classes=classes)
    assert np.all(np.isfinite(weights))
    assert weights[1] == 1.0


def test_positive_weights_smoothing_keeps_empty_class_finite_without_warning():
    y = HAND_MADE.copy()
    y[:, 1] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weights = imbalance.positive_weights(y, smoothing=1.0)
    assert weights[1] == pytest.approx(7.0)


@pytest.mark.parametrize(
    "y, message",
    [
        (np.array([1, 0, 1]), "2-D"),
        (np.array([[0, 2], [1, 0]]), "only 0 and 1"),
        (np.zeros((0, 3)), "at least one"),
        ([["a", "b"]], "numeric"),
    ],
)
def test_bad_label_matrix_raises(y, message):
    with pytest.raises(ValueError, match=message):
        imbalance.positive_weights(y)


# --- weighted binary cross-entropy ---------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("from_logits", [False, True])
def test_weighted_bce_matches_numpy_reference(seed, from_logits):
    y_true, y_pred, weights = random_case(seed)
    if from_logits:
        y_pred = (y_pred - 0.5) * 30.0  # logits up to +-15
    loss = imbalance.weighted_binary_crossentropy(weights, from_logits=from_logits)
    expected = reference_weighted_bce(y_true, y_pred, weights, from_logits=from_logits)
    assert float(loss(y_true, y_pred)) == pytest.approx(expected.mean(), rel=1e-5)
    unreduced = imbalance.WeightedBinaryCrossentropy(
        weights, from_logits=from_logits, reduction=None
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(unreduced(y_true, y_pred)), expected, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("seed", [0, 3])
def test_weighted_bce_with_unit_weights_equals_keras_bce(seed):
    y_true, y_pred, _ = random_case(seed)
    ours = imbalance.weighted_binary_crossentropy(np.ones(y_true.shape[1]))
    keras_bce = keras.losses.BinaryCrossentropy()
    assert float(ours(y_true, y_pred)) == pytest.approx(float(keras_bce(y_true, y_pred)), rel=1e-6)


@pytest.mark.parametrize(
    "loss",
    [imbalance.weighted_binary_crossentropy([1.0, 2.0]), imbalance.focal_loss(alpha=[0.5, 0.5])],
    ids=["weighted_bce", "per_class_focal"],
)
def test_per_class_losses_reject_wrong_number_of_classes(loss):
    with pytest.raises(ValueError, match="2 values .* 3 outputs"):
        loss(np.zeros((2, 3)), np.full((2, 3), 0.5))


@pytest.mark.parametrize("weights", [[], [[1.0, 2.0]], [1.0, -1.0], [np.inf]])
def test_weighted_bce_rejects_bad_weights(weights):
    with pytest.raises(ValueError, match="positive_weights"):
        imbalance.weighted_binary_crossentropy(weights)


# --- focal loss ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_focal_loss_at_gamma_zero_equals_bce(seed):
    y_true, y_pred, _ = random_case(seed)
    bce = float(keras.losses.BinaryCrossentropy()(y_true, y_pred))
    focal = imbalance.focal_loss(gamma=0.0, alpha=None)
    assert isinstance(focal, keras.losses.BinaryFocalCrossentropy)
    assert float(focal(y_true, y_pred)) == pytest.approx(bce, rel=1e-6)
    # per-class alpha of 0.5 everywhere halves the BCE
    per_class = imbalance.focal_loss(gamma=0.0, alpha=np.full(y_true.shape[1], 0.5))
    assert float(per_class(y_true, y_pred)) == pytest.approx(bce / 2, rel=1e-6)


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.8, 1.0)])
def test_per_class_focal_matches_keras_for_constant_alpha(alpha, gamma):
    y_true, y_pred, _ = random_case(4)
    keras_focal = keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=True, alpha=alpha, gamma=gamma
    )
    ours = imbalance.focal_loss(gamma=gamma, alpha=[alpha] * y_true.shape[1])
    assert isinstance(ours, imbalance.PerClassBinaryFocalCrossentropy)
    assert float(ours(y_true, y_pred)) == pytest.approx(float(keras_focal(y_true, y_pred)), rel=1e-5)


def test_focal_loss_down_weights_easy_examples():
    y_true = np.array([[1.0], [1.0]])
    y_pred = np.array([[0.95], [0.3]])
    focal = imbalance.focal_loss(gamma=2.0, alpha=None, reduction=None)
    bce = keras.losses.BinaryCrossentropy(reduction=None)
    focal_easy, focal_hard = keras.ops.convert_to_numpy(focal(y_true, y_pred))
    bce_easy, bce_hard = keras.ops.convert_to_numpy(bce(y_true, y_pred))
    # (1 - p_t) ** 2 shrinks the easy example 400x, the hard one only 2x
    assert focal_easy / bce_easy == pytest.approx(0.05**2, rel=1e-3)
    assert focal_hard / bce_hard == pytest.approx(0.7**2, rel=1e-3)


@pytest.mark.parametrize("kwargs", [{"gamma": -1.0}, {"alpha": 1.5}, {"alpha": [0.5, 2.0]}])
def test_focal_loss_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        imbalance.focal_loss(**kwargs)


# --- saving and loading --------------------------------------------------------------


def tiny_model(n_classes=3, bias=None):
    keras.utils.set_random_seed(0)
    bias_initializer = "zeros" if bias is None else keras.initializers.Constant(bias)
    return keras.Sequential(
        [
            keras.Input((4,)),
            layers.Dense(8, activation="relu"),
            layers.Dense(n_classes, activation="sigmoid", bias_initializer=bias_initializer),
        ]
    )


@pytest.mark.parametrize(
    "make_loss",
    [
        lambda: imbalance.weighted_binary_crossentropy([2.0, 5.0, 2.0]),
        lambda: imbalance.focal_loss(gamma=2.0, alpha=[0.6, 0.8, 0.6]),
    ],
    ids=["weighted_bce", "per_class_focal"],
)
def test_loss_survives_save_and_load(tmp_path, make_loss):
    rng = np.random.default_rng(0)
    x = rng.random((12, 4)).astype("float32")
    y = np.tile(HAND_MADE, (2, 1))
    model = tiny_model()
    loss = make_loss()
    model.compile(optimizer="adam", loss=loss)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)

    restored = keras.models.load_model(path)  # safe_mode=True by default
    assert type(restored.loss) is type(loss)
    assert restored.loss.get_config() == loss.get_config()
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))
    assert restored.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0))


def test_weighted_bce_trains():
    rng = np.random.default_rng(1)
    x = rng.random((64, 4)).astype("float32")
    y = (x[:, :3] > 0.7).astype("float32")
    model = tiny_model()
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=imbalance.weighted_binary_crossentropy(imbalance.positive_weights(y)),
    )
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]


# --- oversampling --------------------------------------------------------------------


def test_oversampling_weights_hand_made():
    weights = imbalance.oversampling_weights(HAND_MADE)
    assert weights.shape == (6,)
    assert weights.mean() == pytest.approx(1.0)
    assert np.all(np.isfinite(weights)) and np.all(weights > 0)
    # inverse frequencies: class0 6/2, class1 6/1, class2 6/2, "no label" 6/2
    raw = np.array([3, 3, 6, 3, 3, 3], dtype="float64")
    np.testing.assert_allclose(weights, raw / raw.mean(), rtol=1e-6)
    assert weights.argmax() == 2  # the only image with the rarest label


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_oversampling_weights_power(power):
    weights = imbalance.oversampling_weights(HAND_MADE, power=power)
    assert weights.mean() == pytest.approx(1.0)
    if power == 0.0:
        np.testing.assert_allclose(weights, 1.0)


def test_oversample_dataframe_favours_rare_rows():
    frame = pd.DataFrame({"filename": [f"{i}.png" for i in range(6)]})
    weights = imbalance.oversampling_weights(HAND_MADE)
    resampled = imbalance.oversample(frame, weights, n_samples=6000, seed=0)
    assert len(resampled) == 6000
    share = resampled.index.value_counts(normalize=True)
    assert share[2] == pytest.approx(weights[2] / weights.sum(), abs=0.02)
    with pytest.raises(ValueError, match="weights"):
        imbalance.oversample(frame, weights[:3])


# --- prior bias ----------------------------------------------------------------------


def test_prior_bias_values():
    bias = imbalance.prior_bias(HAND_MADE)
    prior = HAND_MADE.mean(axis=0)
    np.testing.assert_allclose(1 / (1 + np.exp(-bias)), prior, rtol=1e-5)
    clipped = imbalance.prior_bias(np.zeros((4, 2)), epsilon=1e-3)
    assert np.all(np.isfinite(clipped))
    assert clipped[0] == pytest.approx(np.log(1e-3 / (1 - 1e-3)), rel=1e-5)


def test_untrained_model_with_prior_bias_predicts_the_prior():
    rng = np.random.default_rng(0)
    y = (rng.random((500, 4)) < [0.02, 0.1, 0.3, 0.6]).astype("float32")
    prior = y.mean(axis=0)
    model = tiny_model(n_classes=4, bias=imbalance.prior_bias(y))
    x = 0.01 * rng.random((200, 4)).astype("float32")  # tiny inputs: the bias dominates
    mean_probability = model.predict(x, verbose=0).mean(axis=0)
    np.testing.assert_allclose(mean_probability, prior, atol=0.01)
    default = tiny_model(n_classes=4).predict(x, verbose=0).mean(axis=0)
    np.testing.assert_allclose(default, 0.5, atol=0.01)


# --- what model.fit(class_weight=...) really does ------------------------------------


@pytest.mark.parametrize("path", ["array", "dataset"])
def test_keras_class_weight_is_argmax(path):
    class_weight = {0: 1.0, 1: 10.0, 2: 100.0}
    y = np.array(
        [
            [1, 0, 0],  # class 0 -> 1
            [0, 1, 1],  # classes 1 and 2 -> weighs as 1 (first positive), not 100
            [1, 0, 1],  # classes 0 and 2 -> weighs as 0
            [0, 0, 0],  # no label -> weighs as class 0
            [0, 0, 1],  # class 2 -> 100
        ],
        dtype="float32",
    )
    weights = imbalance.keras_class_weight_sample_weights(y, class_weight, path=path)
    np.testing.assert_array_equal(weights, [1.0, 10.0, 1.0, 1.0, 100.0])


@pytest.mark.parametrize("as_dataset", [False, True])
def test_fit_with_class_weight_equals_fit_with_argmax_sample_weights(as_dataset):
    import tensorflow as tf

    rng = np.random.default_rng(2)
    x = rng.random((16, 4)).astype("float32")
    y = np.tile(HAND_MADE, (3, 1))[:16]
    class_weight = imbalance.class_weights(y)
    sample_weight = imbalance.keras_class_weight_sample_weights(y, class_weight)

    def one_step(**fit_kwargs):
        model = tiny_model()
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy")
        if as_dataset:
            sw = fit_kwargs.pop("sample_weight", None)
            tensors = (x, y) if sw is None else (x, y, sw)
            model.fit(
                tf.data.Dataset.from_tensor_slices(tensors).batch(16),
                shuffle=False,
                verbose=0,
                **fit_kwargs,
            )
        else:
            model.fit(x, y, batch_size=16, shuffle=False, verbose=0, **fit_kwargs)
        return model.get_weights()

    with_class_weight = one_step(class_weight=class_weight)
    with_sample_weight = one_step(sample_weight=sample_weight)
    unweighted = one_step()
    for a, b in zip(with_class_weight, with_sample_weight):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not np.allclose(with_class_weight[-1], unweighted[-1])


def test_keras_class_weight_sample_weights_rejects_bad_arguments():
    with pytest.raises(ValueError, match="class_weight"):
        imbalance.keras_class_weight_sample_weights(HAND_MADE, [1.0, 2.0])
    with pytest.raises(ValueError, match="path"):
        imbalance.keras_class_weight_sample_weights(HAND_MADE, {0: 1.0}, path="torch")
