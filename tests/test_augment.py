"""Tests for helpers.augment: ImageDataGenerator units in Keras 3, OpenCV and Keras layers agree."""

import keras
import numpy as np
import pytest

from helpers import augment

AUGMENT = {"rotation_range": 30, "width_shift_range": 0.2, "zoom_range": 0.3, "horizontal_flip": True}


def test_augmentation_converts_keras2_units():
    stock = augment.augmentation(
        {"rotation_range": 25, "width_shift_range": 0.1, "height_shift_range": 0.2, "shear_range": 30,
         "zoom_range": 0.2, "horizontal_flip": True},
        fused=False,
    )
    configs = {type(layer).__name__: layer.get_config() for layer in stock.layers}
    assert configs["RandomFlip"]["mode"] == "horizontal"
    np.testing.assert_allclose(configs["RandomRotation"]["factor"], (-25 / 360, 25 / 360))
    assert (configs["RandomTranslation"]["height_factor"], configs["RandomTranslation"]["width_factor"]) == (0.2, 0.1)
    np.testing.assert_allclose(configs["RandomShear"]["x_factor"], (-0.5, 0.5))  # sin(30°)
    np.testing.assert_allclose(configs["RandomZoom"]["height_factor"], (-0.2, 0.2))
    np.testing.assert_allclose(configs["RandomZoom"]["width_factor"], (-0.2, 0.2))
    assert all(c.get("fill_mode", "nearest") == "nearest" for c in configs.values())


@pytest.mark.parametrize("zoom_range", [[0.5, 0.5], [1.5, 1.5]])
def test_fused_and_stock_zoom_agree(zoom_range):
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.random((2, 4, 4, 3)), np.ones((1, 8, 8, 1))).astype("float32")
    fused = augment.augmentation({"zoom_range": zoom_range})(smooth, training=True)
    stock = augment.augmentation({"zoom_range": zoom_range}, fused=False)(smooth, training=True)
    np.testing.assert_allclose(np.asarray(fused), np.asarray(stock), atol=1e-5)
    assert np.abs(np.asarray(fused) - smooth).max() > 0.1


def _keras_affine(batch, arguments, seed):
    return np.asarray(augment.augmentation(arguments, seed=seed)(batch, training=True))


@pytest.mark.parametrize("augmenter", [_keras_affine, augment.augment_images], ids=["keras", "opencv"])
def test_shear_is_horizontal_and_centred(augmenter):
    lines = np.zeros((16, 21, 21, 1), dtype="float32")
    lines[:, :, 10] = 1  # vertical line
    sheared = augmenter(lines, {"shear_range": 30, "fill_mode": "constant"}, seed=0)[..., 0]
    columns = sheared.argmax(axis=2)
    assert (columns[:, 10] == 10).all()  # centre row does not move
    slants = np.abs(columns[:, 0].astype(int) - columns[:, 20])
    assert slants.max() >= 6  # top and bottom move apart: a slant (20 tan 30° = 11.5 at most)
    assert slants.max() <= 12


def test_opencv_warp_matches_keras_affine_transform():
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.random((8, 6, 6, 3)), np.ones((1, 8, 8, 1))).astype("float32")
    params = augment.parse_augment(
        {"rotation_range": 40, "width_shift_range": 0.2, "height_shift_range": 0.1,
         "shear_range": 20, "zoom_range": 0.3, "horizontal_flip": True}
    )
    matrices = augment.affine_matrices(np, rng.random((8, 8)), params, 48, 48).astype("float32")
    for fill_mode in augment.FILL_MODES:
        ours = augment.warp_affine(smooth, matrices, fill_mode=fill_mode, cval=0.5)
        projective = np.concatenate([matrices, np.zeros((8, 2), "float32")], axis=1)
        keras_out = np.asarray(keras.ops.image.affine_transform(
            smooth, projective, fill_mode=fill_mode, fill_value=0.5))
        assert ours.shape == smooth.shape and ours.dtype == np.float32
        differ = np.abs(ours - keras_out) > 1e-4
        if fill_mode == "wrap":
            # TensorFlow (like SciPy's "wrap") repeats with a period one pixel short
            # of the image; OpenCV tiles the image. They differ along the seams only.
            assert differ.mean() < 0.05
        else:
            assert not differ.any(), fill_mode


def test_augment_images_is_repeatable_and_checks_its_arguments():
    batch = np.random.default_rng(2).random((4, 16, 16, 3)).astype("float32")
    one = augment.augment_images(batch, AUGMENT, seed=5)
    np.testing.assert_array_equal(one, augment.augment_images(batch, AUGMENT, seed=5))
    assert np.abs(one - augment.augment_images(batch, AUGMENT, seed=6)).mean() > 0.02
    np.testing.assert_array_equal(augment.augment_images(batch, {"zoom_range": 0}), batch)
    with pytest.raises(ValueError, match="brightness_range"):
        augment.augment_images(batch, {"brightness_range": [0.8, 1.2]})
    with pytest.raises(ValueError, match="expected \\(batch, height, width"):
        augment.augment_images(batch[0], AUGMENT)


def test_fused_flip_mirrors_exactly():
    rng = np.random.default_rng(1)
    batch = rng.random((16, 6, 8, 3)).astype("float32")
    flipped = np.asarray(augment.augmentation({"horizontal_flip": True}, seed=0)(batch, training=True))
    mirrored = [np.allclose(out, image[:, ::-1], atol=1e-5) for out, image in zip(flipped, batch)]
    unchanged = [np.allclose(out, image, atol=1e-5) for out, image in zip(flipped, batch)]
    assert all(m or u for m, u in zip(mirrored, unchanged))
    assert 0 < sum(mirrored) < len(batch)


def test_cval_is_in_pixel_units():
    layer = augment.augmentation({"width_shift_range": 0.5, "fill_mode": "constant", "cval": 255}, fused=True)
    assert layer.layers[0].cval == 1.0


def test_augmentation_rejects_unknown_arguments():
    with pytest.raises(ValueError, match="supported are") as error:
        augment.augmentation({"rotation_range": 10, "brightness_range": [0.8, 1.2]})
    assert "brightness_range" in str(error.value) and "zoom_range" in str(error.value)
    with pytest.raises(ValueError, match="shift in pixels"):
        augment.augmentation({"width_shift_range": 5})
    with pytest.raises(ValueError, match="fill_mode"):
        augment.augmentation({"fill_mode": "mirror"})


def test_random_affine_survives_a_keras_file(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((8, 8, 3)), augment.augmentation(AUGMENT, seed=0)])
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    assert [type(layer).__name__ for layer in loaded.layers[0].layers] == ["RandomAffine"]
    assert loaded.layers[0].layers[0].get_config()["rotation_range"] == 30
