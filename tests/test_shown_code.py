"""The code notebooks 03 and 05 show agrees with the helpers the series then uses.

Each shown cell is read from its notebook (found by the comment on its first line), run on
small clean data and compared with its helper: the ``tf.data`` chain with
``pipeline.dataset_from_dataframe``, SmallVGGNet with ``models.build_smallvggnet``, Grad-CAM
with ``explain.grad_cam(method="gradcam")``.
"""
import json
import linecache
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from _factories import make_fashion_folders, tiny_arrays
from helpers import data, explain, models, pipeline
from helpers.labels import LabelVocabulary

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CHAIN = ("03_smallvggnet.ipynb", "# The tf.data chain, by hand")
CHAIN_USED = ("03_smallvggnet.ipynb", "# Flip, shift and zoom")
SMALLVGGNET = ("03_smallvggnet.ipynb", "# SmallVGGNet, by hand")
GRAD_CAM = ("05_post_mortem.ipynb", "# Grad-CAM by hand")
GREY_LEVEL = 1 / 255


def shown_cell(notebook, marker):
    """The source of the one code cell of ``notebook`` whose first line starts with ``marker``."""
    cells = json.loads((NOTEBOOKS / notebook).read_text(encoding="utf-8"))["cells"]
    found = ["".join(cell["source"]) for cell in cells
             if cell["cell_type"] == "code" and "".join(cell["source"]).startswith(marker)]
    assert len(found) == 1, f"{notebook}: expected one code cell starting {marker!r}, found {len(found)}"
    return found[0]


def run_cell(cell, namespace):
    """Execute a shown cell in ``namespace`` (the notebook's names it uses) and return it."""
    notebook, marker = cell
    source, name = shown_cell(notebook, marker), f"<{notebook}: {marker}>"
    linecache.cache[name] = (len(source), None, source.splitlines(keepends=True), name)  # as IPython
    exec(compile(source, name, "exec"), namespace)
    return namespace


def chain_namespace(frame, target_size, batch_size=8):
    vocabulary = LabelVocabulary.from_labels(frame["labels"])
    return run_cell(CHAIN, {"keras": keras, "IMAGE_SIZE": target_size, "BATCH_SIZE": batch_size,
                            "SEED": 0, "vocabulary": vocabulary})


def batches(dataset):
    pairs = [(images.numpy(), labels.numpy()) for images, labels in dataset]
    return [images for images, _ in pairs], [labels for _, labels in pairs]


@pytest.fixture(scope="module")
def png_frame(tmp_path_factory):
    root = make_fashion_folders(tmp_path_factory.mktemp("png"), per_folder=5, size=20, broken=False)
    return data.load_dataset(root, layout="split-folders")


@pytest.fixture(scope="module")
def jpeg_frame(tmp_path_factory):
    """The same kind of images as JPEGs of 40×40 pixels: the helper decodes them at half scale."""
    pngs = make_fashion_folders(tmp_path_factory.mktemp("png40"), per_folder=5, size=40, broken=False)
    root = tmp_path_factory.mktemp("jpeg")
    for path in pngs.rglob("*.png"):
        (root / path.parent.name).mkdir(exist_ok=True)
        Image.open(path).save(root / path.parent.name / f"{path.stem}.jpg", quality=90)
    return data.load_dataset(root, layout="split-folders")


def helper_batches(frame, namespace, target_size, batch_size=8):
    dataset = pipeline.dataset_from_dataframe(frame, classes=namespace["vocabulary"],
                                              target_size=target_size, batch_size=batch_size,
                                              shuffle=False)
    return batches(dataset)


@pytest.mark.parametrize("target_size", [(16, 16), (12, 18), (20, 20)])
def test_chain_by_hand_gives_the_helpers_batches_on_pngs(png_frame, target_size):
    shown = chain_namespace(png_frame, target_size)
    images, labels = batches(shown["dataset_by_hand"](png_frame))
    expected_images, expected_labels = helper_batches(png_frame, shown, target_size)
    assert [len(batch) for batch in images] == [len(batch) for batch in expected_images]
    for batch, expected in zip(labels, expected_labels):
        np.testing.assert_array_equal(batch, expected)
    for batch, expected in zip(images, expected_images):
        assert batch.shape == expected.shape == (len(batch), *target_size, 3)
        assert batch.dtype == expected.dtype == np.float32
        assert np.abs(batch - expected).max() <= GREY_LEVEL


def test_chain_by_hand_on_jpegs_differs_by_a_grey_level_or_two_for_most_pixels(jpeg_frame):
    """What notebook 03 says: the helper's JPEG decoding (accurate DCT, reduced scale) moves
    most pixels by at most two grey levels."""
    shown = chain_namespace(jpeg_frame, (16, 16))
    images, _ = batches(shown["dataset_by_hand"](jpeg_frame))
    expected, _ = helper_batches(jpeg_frame, shown, (16, 16))
    differences = np.abs(np.concatenate(images) - np.concatenate(expected))
    assert np.median(differences) <= 2 * GREY_LEVEL


def test_chain_by_hand_shuffles_and_augments_in_the_notebooks_cell(png_frame, capsys):
    shown = chain_namespace(png_frame, (16, 16), batch_size=32)
    keras.utils.set_random_seed(0)
    run_cell(CHAIN_USED, shown | {"train_df": png_frame})
    assert f"images ({len(png_frame)}, 16, 16, 3) float32" in capsys.readouterr().out

    flip = keras.layers.RandomFlip("horizontal", seed=0)
    images, labels = batches(shown["dataset_by_hand"](png_frame, shuffle=True, augmenter=flip))
    images, labels = np.concatenate(images), np.concatenate(labels)
    ordered = shown["vocabulary"].encode(png_frame["labels"])
    assert sorted(map(tuple, labels)) == sorted(map(tuple, ordered))  # every row once
    assert len(images) == len(png_frame) and 0 <= images.min() and images.max() <= 1


def layer_settings(model):
    """Each layer's type and configuration, without its name."""
    return [(type(layer).__name__, {key: value for key, value in layer.get_config().items()
                                    if key != "name"})
            for layer in model.layers]


@pytest.mark.parametrize("input_shape, n_labels", [((64, 64, 3), 9), ((32, 24, 3), 4)])
def test_smallvggnet_by_hand_is_the_helpers_network(input_shape, n_labels, capsys):
    shown = run_cell(SMALLVGGNET, {"keras": keras, "IMAGE_SIZE": input_shape[:2],
                                   "vocabulary": [str(label) for label in range(n_labels)]})
    by_hand = shown["smallvggnet"](input_shape, n_labels)
    helper = models.build_smallvggnet(input_shape, n_labels, final_activation="sigmoid")
    assert [type(layer) for layer in by_hand.layers] == [type(layer) for layer in helper.layers]
    assert by_hand.count_params() == helper.count_params()
    assert layer_settings(by_hand) == layer_settings(helper)
    assert f"{helper.count_params():,} weights" in capsys.readouterr().out


@pytest.fixture(scope="module")
def small_cnns(tmp_path_factory):
    """Both SmallVGGNets with moving statistics of their own in every BatchNormalization (so
    inference mode matters), and the head-flattening one saved and loaded again (as notebook 05
    loads its models); images whose label k lights up channel k."""
    rng = np.random.default_rng(0)
    cnns = {}
    for build in (models.build_smallvggnet_gmp, models.build_smallvggnet):
        keras.utils.set_random_seed(0)
        model = build((32, 32, 3), 3, final_activation="sigmoid")
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.moving_mean.assign(rng.normal(0, 0.2, layer.moving_mean.shape))
                layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
        cnns[model.name] = model
    path = tmp_path_factory.mktemp("model") / "model.keras"
    cnns["smallvggnet"].save(path)
    cnns["loaded"] = keras.models.load_model(path)
    return cnns, tiny_arrays(n=6, size=32, n_classes=3)[0]


@pytest.mark.parametrize("name", ["smallvggnet_gmp", "smallvggnet", "loaded"])
def test_grad_cam_by_hand_draws_the_helpers_map(small_cnns, name):
    cnns, images = small_cnns
    grad_cam_by_hand = run_cell(GRAD_CAM, {})["grad_cam_by_hand"]
    model = cnns[name]
    drawn = []
    for label in range(3):
        expected = explain.grad_cam(model, images, label, method="gradcam").heatmaps[:, 0]
        for image, heatmap in zip(images, expected):
            by_hand = grad_cam_by_hand(model, image, label)
            assert by_hand.shape == image.shape[:2]
            np.testing.assert_allclose(by_hand, heatmap, atol=1e-4)
            drawn.append(heatmap.max() == pytest.approx(1.0))
    assert sum(drawn) >= 3  # the agreement is not only between empty maps
