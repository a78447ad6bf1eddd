"""Tests for helpers.models: shapes, activations, freezing, offline weights, feature caching,
fine-tuning on cached activations."""
import hashlib
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import models
from helpers.files import weights


def _layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


def _output_layer(model):
    return next(layer for layer in _layers(model) if layer.name == "predictions")


REAL_CACHE_PATHS = weights.imagenet_cache_paths


@pytest.fixture(autouse=True)
def no_download(monkeypatch, tmp_path):
    """Point the Keras cache at empty folders, and fail a test in which anything calls
    ``get_file`` (downloads are off in every test: see ``conftest.no_network``)."""
    calls = []
    monkeypatch.setattr(keras.utils, "get_file", lambda *args, **kwargs: calls.append(args))
    monkeypatch.setattr("keras.src.utils.file_utils.get_file",
                        lambda *args, **kwargs: calls.append(args))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(weights, "imagenet_cache_paths",
                        _cache_paths_under(tmp_path), raising=True)
    yield
    assert not calls, f"tried to download {calls}"


def _cache_paths_under(tmp_path):
    def paths(architecture):
        name = weights.IMAGENET_WEIGHTS[architecture]["file"]
        return [tmp_path / "keras_home" / "models" / name, tmp_path / "home" / ".keras" / "models" / name]
    return paths


@pytest.mark.parametrize(
    "name, input_shape, n_classes, activation",
    [
        ("mlp", (16, 16, 3), 3, "softmax"),
        ("mlp", (16, 16, 3), 5, "sigmoid"),
        ("smallvggnet", (16, 16, 3), 4, "sigmoid"),
        ("smallvggnet", (24, 16, 3), 3, "softmax"),
        ("smallvggnet_gmp", (16, 16, 3), 4, "sigmoid"),
        ("smallvggnet_gmp", (24, 16, 3), 3, "softmax"),
        ("resnet50", (32, 32, 3), 6, "sigmoid"),
        ("vgg16", (32, 32, 3), 3, "softmax"),
    ],
)
def test_models_build_with_right_output(name, input_shape, n_classes, activation):
    model = models.build_model(name, input_shape, n_classes, final_activation=activation)
    assert model.name == name
    assert model.input_shape == (None, *input_shape)
    assert model.output_shape == (None, n_classes)
    assert _output_layer(model).activation.__name__ == activation
    images = np.random.default_rng(0).random((2, *input_shape)).astype("float32")
    probabilities = keras.ops.convert_to_numpy(model(images))
    assert probabilities.shape == (2, n_classes)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    if activation == "softmax":
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_smallvggnet_follows_the_source_architecture():
    model = models.build_smallvggnet((64, 64, 3), 9)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [conv.filters for conv in convs] == [32, 64, 64, 128, 128, 128]
    assert all(conv.kernel_size == (3, 3) and conv.padding == "same" for conv in convs)
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 7
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers) == 3
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.25, 0.25, 0.25, 0.5]
    dense = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert dense == [512, 9]


def test_smallvggnet_gmp_keeps_the_convolutions_and_pools_globally_without_dropout():
    tutorial = models.build_smallvggnet((64, 64, 3), 9)
    variant = models.build_smallvggnet_gmp((64, 64, 3), 9)

    def convolutions(model):
        return [(layer.filters, layer.kernel_size) for layer in model.layers
                if isinstance(layer, keras.layers.Conv2D)]

    assert convolutions(variant) == convolutions(tutorial)
    kinds = [type(layer).__name__ for layer in variant.layers]
    assert "Dropout" not in kinds and "Flatten" not in kinds
    assert kinds[kinds.index("GlobalMaxPooling2D") + 1] == "Dense"
    # the head on 128 pooled features instead of 8 x 8 x 128 positions
    assert variant.count_params() < tutorial.count_params() / 9


def test_smallvggnet_dropout_rates_can_be_set_for_the_ablation():
    def rates(model):
        return [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]

    assert rates(models.build_smallvggnet((16, 16, 3), 3, dropout=(0, 0))) == []
    assert rates(models.build_smallvggnet((16, 16, 3), 3, dropout=(0.1, 0))) == [0.1] * 3
    with_dropout = models.build_smallvggnet_gmp((16, 16, 3), 3, dropout=models.SMALLVGGNET_DROPOUT)
    assert rates(with_dropout) == [0.25, 0.25, 0.25, 0.5]
    kinds = [type(layer).__name__ for layer in with_dropout.layers]
    assert "GlobalMaxPooling2D" in kinds and "Flatten" not in kinds


def test_mlp_follows_the_source_architecture():
    model = models.build_mlp((32, 32, 3), 3)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [(layer.units, layer.activation.__name__) for layer in dense] == [
        (1024, "sigmoid"), (512, "sigmoid"), (3, "softmax")
    ]


def test_output_bias_starts_at_the_given_values():
    bias = np.log(np.array([0.1, 0.5, 0.9]) / (1 - np.array([0.1, 0.5, 0.9])))
    model = models.build_smallvggnet((16, 16, 3), 3, output_bias=bias)
    np.testing.assert_allclose(_output_layer(model).bias.numpy(), bias, rtol=1e-6)
    with pytest.raises(ValueError, match="one value per class"):
        models.build_smallvggnet((16, 16, 3), 3, output_bias=[0.0, 1.0])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: models.build_mlp((16, 16, 3), 0), "n_classes"),
        (lambda: models.build_mlp((16, 16), 3), "input_shape"),
        (lambda: models.build_smallvggnet((16, 16, 3), 3, final_activation="relu"), "final_activation"),
        (lambda: models.build_smallvggnet((4, 4, 3), 3), "at least 8x8"),
        (lambda: models.build_smallvggnet_gmp((4, 4, 3), 3), "at least 8x8"),
        (lambda: models.build_smallvggnet((16, 16, 3), 3, dropout=(0.25, 1.0)), "dropout must be"),
        (lambda: models.build_resnet50((16, 16, 3), 3), "at least 32x32"),
        (lambda: models.build_model("alexnet", (32, 32, 3), 3), "model must be one of"),
        (lambda: models.build_resnet50((32, 32, 3), 3, weights="missing.h5"), "file not found"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_resnet50_base_is_frozen_and_fine_tuning_keeps_batchnorm_frozen():
    model = models.build_resnet50((32, 32, 3), 4)
    base = model.get_layer("resnet50_features").get_layer("resnet50")
    assert not base.trainable
    head_weights = model.get_layer("head").trainable_weights
    assert len(model.trainable_weights) == len(head_weights) == 2

    models.unfreeze_top(model, 12)
    body = [layer for layer in base.layers if not isinstance(layer, keras.layers.InputLayer)]
    top, rest = body[-12:], body[:-12]
    assert all(not layer.trainable for layer in rest if layer.weights)
    assert all(layer.trainable != isinstance(layer, keras.layers.BatchNormalization) for layer in top)
    assert len(model.trainable_weights) > 2
    with pytest.raises(ValueError, match="trainable_layers"):
        models.unfreeze_top(model, 10_000)


def test_vgg16_freezes_its_first_15_layers_and_has_the_source_head():
    model = models.build_vgg16((32, 32, 3), 5)
    base = model.get_layer("vgg16_features").get_layer("vgg16")
    assert [layer.trainable for layer in base.layers[1:15]] == [False] * 14
    assert all(layer.trainable for layer in base.layers[15:])
    head = model.get_layer("head")
    dense = [layer for layer in head.layers if isinstance(layer, keras.layers.Dense)]
    assert dense[0].units == 256 and dense[0].activation.__name__ == "relu"
    assert isinstance(dense[0].kernel_initializer, keras.initializers.HeNormal)
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in head.layers)
    assert [layer.rate for layer in head.layers if isinstance(layer, keras.layers.Dropout)] == [0.5]


@pytest.mark.parametrize("architecture", ["resnet50", "vgg16"])
def test_imagenet_without_cached_file_and_downloads_off_warns_and_starts_at_random(architecture):
    with pytest.warns(UserWarning, match="not in the Keras cache, and downloads are off") as caught:
        model = models.build_model(architecture, (32, 32, 3), 3, weights="imagenet")
    assert len(caught) == 1 and caught[0].filename == __file__  # points at the caller's line
    message = str(caught[0].message)
    assert weights.IMAGENET_WEIGHTS[architecture]["file"] in message
    assert "storage.googleapis.com" in message  # says where to get the file by hand
    assert "random weights" in message
    assert model.weights_source == "none (imagenet requested, downloads off)"


def test_imagenet_uses_a_cached_file_with_the_published_hash(monkeypatch, capsys):
    cached = weights.imagenet_cache_paths("resnet50")[1]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"placeholder")
    spec = dict(weights.IMAGENET_WEIGHTS["resnet50"], file_hash=hashlib.md5(b"placeholder").hexdigest())
    monkeypatch.setitem(weights.IMAGENET_WEIGHTS, "resnet50", spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path, source = weights.resolve_weights("imagenet", "resnet50")
    assert path == str(cached) and source == f"imagenet ({cached})"
    assert capsys.readouterr().out == f"ImageNet weights for resnet50: {cached} (Keras cache)\n"


def test_resnet50_loads_a_local_weights_file(tmp_path):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    # Same format as Keras' downloadable *_notop.h5 files.
    reference = keras.applications.ResNet50(include_top=False, weights=None,
                                            input_shape=(32, 32, 3), pooling="avg")
    path = tmp_path / "resnet50_notop.h5"
    with h5py.File(path, "w") as stream:
        legacy_h5_format.save_weights_to_hdf5_group(stream, reference)
    model = models.build_resnet50((32, 32, 3), 2, weights=path)
    base = model.get_layer("resnet50_features").get_layer("resnet50")
    for loaded, expected in zip(base.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(loaded, expected)
    assert model.weights_source.startswith("file")


def test_imagenet_preprocessing_layer_matches_keras_preprocess_input():
    images = np.random.default_rng(1).random((2, 8, 8, 3)).astype("float32")
    expected = keras.applications.resnet50.preprocess_input(images * 255.0)
    np.testing.assert_allclose(models.ImageNetPreprocessing()(images), expected, atol=1e-4)
    described = models.describe_preprocessing(models.build_resnet50((32, 32, 3), 2))
    assert described["input_range"] == [0.0, 1.0] and "caffe" in described["in_model"][0]


def test_cached_features_and_head_give_the_same_model(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.random((6, 32, 32, 3)).astype("float32")
    labels = (rng.random((6, 3)) > 0.5).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)

    extractor = models.build_feature_extractor("resnet50", (32, 32, 3))
    features, cached_labels = models.extract_features(extractor, dataset)
    assert features.shape == (6, 2048)
    np.testing.assert_array_equal(cached_labels, labels)

    head = models.build_head(features.shape[1:], 3, dropout=0.2)
    full = models.attach_head(extractor, head)
    assert full.name == "resnet50" and full.output_shape == (None, 3)
    # Eager calls: tracing a predict function for ResNet50 costs more than the test itself.
    np.testing.assert_allclose(full(images), head(features), atol=1e-5)

    path = tmp_path / "full.keras"
    full.save(path)
    loaded = keras.models.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_allclose(loaded(images), full(images), atol=1e-6)


def test_extract_features_needs_labelled_batches():
    extractor = models.build_feature_extractor("resnet50", (32, 32, 3))
    images_only = tf.data.Dataset.from_tensor_slices(np.zeros((2, 32, 32, 3), "float32")).batch(2)
    with pytest.raises(ValueError, match="images, labels"):
        models.extract_features(extractor, images_only)


def test_keras_home_is_searched(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "custom"))
    paths = REAL_CACHE_PATHS("vgg16")
    assert paths[0] == tmp_path / "custom" / "models" / weights.IMAGENET_WEIGHTS["vgg16"]["file"]
    assert tmp_path / "home" / ".keras" / "models" / weights.IMAGENET_WEIGHTS["vgg16"]["file"] in paths
    assert weights.keras_cache_dir() == tmp_path / "custom"
    monkeypatch.delenv("KERAS_HOME")
    assert weights.keras_cache_dir() == Path("/tmp/.keras")  # as Keras does: no writable home
    (tmp_path / "home").mkdir()
    assert weights.keras_cache_dir() == tmp_path / "home" / ".keras"


def test_a_weights_file_that_does_not_fit_is_a_clear_error(tmp_path):
    bad = tmp_path / "not_weights.h5"
    bad.write_bytes(b"not an HDF5 file")
    with pytest.raises(ValueError, match="cannot load it into resnet50"):
        models.build_resnet50((32, 32, 3), 2, weights=bad)


# ----------------------------------------------------------------------------- transfer


def _tiny_images(n=8, size=16, n_classes=3, seed=3):
    rng = np.random.default_rng(seed)
    images = rng.random((n, size, size, 3)).astype("float32")
    labels = (rng.random((n, n_classes)) > 0.5).astype("float32")
    return images, labels


@pytest.mark.parametrize("input_shape", [(16, 16, 3), (24, 24, 3)])
@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_convolutional_base_pools_the_trained_layers(input_shape, pooling):
    trained = models.build_smallvggnet((16, 16, 3), 4)
    extractor = models.convolutional_base(trained, input_shape=input_shape, pooling=pooling)
    assert extractor.name == "smallvggnet_features" and not extractor.trainable_weights
    assert extractor.output_shape == (None, 128)
    base = extractor.get_layer("smallvggnet")
    originals = [layer for layer in trained.layers[:24] if not isinstance(layer, keras.layers.Dropout)]
    assert len(base.layers) == 1 + 21 + 1  # input, the three blocks without dropout, the pooling
    for copy, original in zip(base.layers[1:-1], originals):
        assert type(copy) is type(original) and copy is not original
        for copied, weight in zip(copy.get_weights(), original.get_weights()):
            np.testing.assert_array_equal(copied, weight)
    images, _ = _tiny_images(n=2, size=input_shape[0])
    maps = images
    for layer in trained.layers[: trained.layers.index(
            next(layer for layer in trained.layers if isinstance(layer, keras.layers.Flatten)))]:
        maps = layer(maps, training=False)
    reduce = np.mean if pooling == "avg" else np.max
    np.testing.assert_allclose(extractor(images), reduce(np.asarray(maps), axis=(1, 2)), atol=1e-5)
    with pytest.raises(ValueError, match="pooling"):
        models.convolutional_base(trained, pooling="flatten")


def test_fine_tuning_on_cached_activations_equals_fine_tuning_on_images():
    """The same SGD steps either way: the frozen bottom's output is all the top ever sees."""
    images, labels = _tiny_images()
    keras.utils.set_random_seed(0)
    extractor = models.convolutional_base(models.build_smallvggnet((16, 16, 3), 3))
    model = models.attach_head(extractor, models.build_head(128, 3))
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())

    models.unfreeze_top(twin, 11)
    twin.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    twin.fit(images, labels, batch_size=4, epochs=2, shuffle=False, verbose=0)

    bottom, top = models.split_for_fine_tuning(model, 11)
    activations, _ = models.extract_features(
        bottom, tf.data.Dataset.from_tensor_slices((images, labels)).batch(4))
    assert activations.shape == (8, 4, 4, 64)  # the input of block 3, below the cut
    top.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    start = model.get_weights()
    history = top.fit(activations, labels, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]

    changed = [not np.allclose(before, after) for before, after in zip(start, model.get_weights())]
    assert any(changed)  # training the top trained the model itself
    for tuned, expected in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(tuned, expected, atol=1e-5)
    np.testing.assert_allclose(model(images), top(bottom(images)), atol=1e-5)


@pytest.mark.parametrize("architecture, trainable_layers, cut_shape",
                         [("resnet50", 33, (4, 4, 1024)), ("vgg16", 4, (4, 4, 512))])
def test_split_for_fine_tuning_cuts_imagenet_bases_between_blocks(
        architecture, trainable_layers, cut_shape):
    model = models.build_model(architecture, (64, 64, 3), 3)
    bottom, top = models.split_for_fine_tuning(model, trainable_layers)
    assert bottom.output_shape == (None, *cut_shape) and top.input_shape == (None, *cut_shape)
    assert not any(layer.trainable_weights for layer in bottom.layers)
    images, _ = _tiny_images(n=2, size=64)
    # Eager calls: tracing a predict function for ResNet50 costs more than the test itself.
    np.testing.assert_allclose(top(bottom(images)), model(images), atol=1e-4)


def test_split_inside_a_residual_block_names_the_cuts_that_work():
    model = models.build_resnet50((32, 32, 3), 2)
    with pytest.raises(ValueError, match=r"cuts resnet50 inside a block.*\b33\b"):
        models.split_for_fine_tuning(model, 5)
    with pytest.raises(ValueError, match="between 1 and"):
        models.split_for_fine_tuning(model, 0)
