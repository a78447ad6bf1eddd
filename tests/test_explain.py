"""Grad-CAM (helpers.explain): known answers, flat and nested networks alike, odd images, the
pointing game and ``predict --explain`` (helpers.app.heatmaps)."""
import json

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import artefacts, explain, models
from helpers.app.cli import main
from helpers.app.heatmaps import explain_paths
from helpers.data import list_images, voc_boxes
from helpers.datasets.generate import make_dataset, shape_boxes
from helpers.files import overlays

SIZE = 32
CLASSES = ["red", "bright"]


def detector_model(final_activation="sigmoid", nested=False, logit_scale=10.0, bias=-1.0):
    """A network whose evidence is known: label 0 is red pixels, label 1 bright pixels.

    A 4×4 convolution with stride 4 measures, per cell, how red (R - G/2 - B/2) and how
    bright ((R+G+B)/3 - 1/2) it is; the head averages each map and scales it. So the gradient
    of a label's score weighs only its own map, and the heatmap is that map.
    """
    convolution = keras.layers.Conv2D(2, 4, strides=4, activation="relu", name="cells")
    pooling = keras.layers.GlobalAveragePooling2D(name="pool")
    output = keras.layers.Dense(2, activation=final_activation, name="predictions")
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    if nested:
        base = keras.Sequential([keras.Input((SIZE, SIZE, 3)), convolution], name="base")
        head = keras.Model(*_head_graph(base.output_shape[1:], pooling, output), name="head")
        model = keras.Model(inputs, head(base(inputs)), name="nested_detector")
    else:
        model = keras.Model(inputs, output(pooling(convolution(inputs))), name="detector")
    kernel = np.zeros((4, 4, 3, 2), dtype="float32")
    kernel[:, :, :, 0] = np.array([1.0, -0.5, -0.5]) / 16
    kernel[:, :, :, 1] = 1.0 / 48
    convolution.set_weights([kernel, np.array([0.0, -0.5], dtype="float32")])
    output.set_weights([np.eye(2, dtype="float32") * logit_scale,
                        np.full(2, bias, dtype="float32")])
    return model


def _head_graph(shape, pooling, output):
    features = keras.Input(shape)
    return features, output(pooling(features))


def blobs(red_at=(4, 4), bright_at=(20, 20), side=8, n=1):
    """Grey images with a red and a white square whose top-left corners are given (pixels)."""
    images = np.full((n, SIZE, SIZE, 3), 0.2, dtype="float32")
    (ry, rx), (by, bx) = red_at, bright_at
    images[:, ry:ry + side, rx:rx + side] = (1.0, 0.0, 0.0)
    images[:, by:by + side, bx:bx + side] = (1.0, 1.0, 1.0)
    return images


def centre_of(corner, side=8):
    return tuple((value + side / 2) / SIZE for value in corner)


# --------------------------------------------------------------------------- known answers
@pytest.mark.parametrize("nested", [False, True])
def test_each_label_points_at_its_own_evidence(nested):
    cam = explain.GradCAM(detector_model(nested=nested), classes=CLASSES)
    assert cam.layer.name == "cells" and cam.map_size == (8, 8)
    result = cam(blobs(), ["red", "bright"])
    assert isinstance(result, explain.Explanation) and result.heatmaps.shape == (1, 2, SIZE, SIZE)
    np.testing.assert_allclose(result.peaks[0, 0], centre_of((4, 4)), atol=1 / 8)
    np.testing.assert_allclose(result.peaks[0, 1], centre_of((20, 20)), atol=1 / 8)
    red, bright = result.heatmaps[0]
    assert red[4:12, 4:12].mean() > 0.6 and red[20:28, 20:28].max() < 0.05
    assert bright[20:28, 20:28].mean() > 0.6 and bright[4:12, 4:12].max() < 0.05


def test_a_batch_gives_each_image_its_own_peak_and_labels_per_image():
    images = np.concatenate([blobs((0, 0), (24, 24)), blobs((24, 0), (0, 24))])
    cam = explain.GradCAM(detector_model(), classes=CLASSES)
    result = cam(images, [["red"], ["bright"]])
    assert result.label_names().tolist() == [["red"], ["bright"]]
    np.testing.assert_allclose(result.peaks[0, 0], centre_of((0, 0)), atol=1 / 8)
    np.testing.assert_allclose(result.peaks[1, 0], centre_of((0, 24)), atol=1 / 8)
    # The same images one by one give the same maps as the batch.
    one = cam(images[1], ["bright"])
    np.testing.assert_allclose(one.heatmaps[0], result.heatmaps[1], atol=1e-6)


def test_a_saturated_sigmoid_still_gives_a_map():
    # Logits near 100: float32 sigmoid outputs are exactly 1, so their gradient is 0.
    model = detector_model(logit_scale=400.0, bias=60.0)
    cam = explain.GradCAM(model, classes=CLASSES)
    result = cam(blobs(), ["red", "bright"])
    assert np.all(result.probabilities == 1.0) and cam.activation == "sigmoid"
    np.testing.assert_allclose(result.peaks[0, 0], centre_of((4, 4)), atol=1 / 8)
    assert result.heatmaps.max() == pytest.approx(1.0)


def test_softmax_maps_weigh_the_class_against_the_others():
    cam = explain.GradCAM(detector_model("softmax"), classes=CLASSES)
    assert cam.activation == "softmax"
    result = cam(blobs(), ["red", "bright"])
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(result.peaks[0, 0], centre_of((4, 4)), atol=1 / 8)
    np.testing.assert_allclose(result.peaks[0, 1], centre_of((20, 20)), atol=1 / 8)


def test_both_methods_agree_when_the_head_averages_the_map():
    images = blobs((0, 8), (16, 16), n=2)
    hires = explain.grad_cam(detector_model(), images, [0, 1], method="hirescam")
    original = explain.grad_cam(detector_model(), images, [0, 1], method="gradcam")
    assert (hires.method, original.method) == ("hirescam", "gradcam")
    np.testing.assert_allclose(hires.heatmaps, original.heatmaps, atol=1e-6)


def test_with_a_flattening_head_only_hirescam_finds_where_the_weights_look():
    """Label 0 counts red pixels in the top half only (a Flatten → Dense head with weights on
    the top rows); the image has red in the top-left and the bottom-right corners."""
    convolution = keras.layers.Conv2D(1, 4, strides=4, activation="relu", name="cells")
    output = keras.layers.Dense(1, activation="sigmoid", name="predictions")
    inputs = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(inputs, output(keras.layers.Flatten()(convolution(inputs))))
    kernel = np.zeros((4, 4, 3, 1), dtype="float32")
    kernel[:, :, :, 0] = np.array([1.0, -0.5, -0.5]) / 16
    convolution.set_weights([kernel, np.zeros(1, dtype="float32")])
    weights = np.zeros((8, 8), dtype="float32")
    weights[:4] = 1.0
    output.set_weights([weights.reshape(64, 1), np.zeros(1, dtype="float32")])
    images = blobs(red_at=(0, 0), bright_at=(0, 0))
    images[:, :8, :8] = images[:, 24:, 24:] = (1.0, 0.0, 0.0)
    hires = explain.grad_cam(model, images, 0, method="hirescam")
    assert hires.peaks[0, 0, 0] < 0.5  # in the top half, where the weights are
    assert hires.heatmaps[0, 0, 24:, 24:].max() == 0.0
    # Grad-CAM averages the gradient over the map first: both corners light up alike.
    original = explain.grad_cam(model, images, 0, method="gradcam")
    corners = original.heatmaps[0, 0]
    assert corners[:8, :8].mean() == pytest.approx(corners[24:, 24:].mean(), rel=1e-5)


def test_an_image_without_evidence_has_an_empty_map_and_no_peak():
    result = explain.grad_cam(detector_model(), np.full((1, SIZE, SIZE, 3), 0.2), 0)
    assert not result.heatmaps.any() and np.isnan(result.peaks).all()


# --------------------------------------------------------------------------- nesting
def reference_grad_cam(model, layer_name, images, label, method="gradcam"):
    """The keras-io recipe (a second model from the inputs to the layer's output and the
    predictions), which works on a flat model only."""
    import tensorflow as tf

    inputs = x = keras.Input(model.input_shape[1:])
    features = None
    for layer in model.layers:
        x = layer(x)
        if layer.name == layer_name:
            features = x
    grad_model = keras.Model(inputs, [features, x])
    with tf.GradientTape() as tape:
        features, outputs = grad_model(images, training=False)
        score = outputs[:, label]
    gradients = tape.gradient(score, features).numpy()
    if method == "gradcam":
        maps = np.einsum("bhwc,bc->bhw", features.numpy(), gradients.mean(axis=(1, 2)))
    else:  # HiResCAM: gradient times feature map, position by position
        maps = (features.numpy() * gradients).sum(axis=-1)
    maps = np.maximum(maps, 0)
    return maps / maps.max(axis=(1, 2), keepdims=True)


def smallvggnet_flat_and_nested(final_activation):
    keras.utils.set_random_seed(0)
    flat = models.build_smallvggnet((SIZE, SIZE, 3), 3, final_activation=final_activation)
    cut = next(index for index, layer in enumerate(flat.layers)
               if isinstance(layer, keras.layers.Flatten))
    base = keras.Sequential([keras.Input((SIZE, SIZE, 3)), *flat.layers[:cut]], name="base")
    head = keras.Sequential([keras.Input(base.output_shape[1:]), *flat.layers[cut:]], name="head")
    inputs = keras.Input((SIZE, SIZE, 3))
    return flat, keras.Model(inputs, head(base(inputs)), name="outer")


@pytest.mark.parametrize("final_activation", ["sigmoid", "softmax"])
def test_flat_and_nested_versions_of_a_network_give_the_same_heatmaps(final_activation):
    flat, nested = smallvggnet_flat_and_nested(final_activation)
    images = np.random.default_rng(0).random((4, SIZE, SIZE, 3)).astype("float32")
    flat_cam, nested_cam = explain.GradCAM(flat), explain.GradCAM(nested)
    assert flat_cam.layer is nested_cam.layer
    assert isinstance(flat_cam.layer, keras.layers.BatchNormalization)  # after the last conv
    flat_result, nested_result = flat_cam(images, [0, 2]), nested_cam(images, [0, 2])
    np.testing.assert_allclose(flat_result.heatmaps, nested_result.heatmaps, atol=1e-5)
    np.testing.assert_array_equal(flat_result.peaks, nested_result.peaks)
    # ...and the maps of the keras-io recipe on the flat model, at the layer's resolution.
    for method in explain.METHODS:
        expected = reference_grad_cam(flat, flat_cam.layer.name, images, 2, method)
        np.testing.assert_allclose(_coarse(nested, images, 2, method), expected, atol=1e-4)


def _coarse(model, images, label, method):
    """The maps at the layer's resolution (the heatmaps before enlarging)."""
    cam = explain.GradCAM(model, method=method)
    maps, _ = cam._batch(cam._images(images), np.full((len(images), 1), label))
    maps = maps[:, 0]
    return maps / maps.max(axis=(1, 2), keepdims=True)


def keras_io_grad_cam(model, layer_name, image, label):
    """Grad-CAM for one image and label as keras-io writes it (and notebook 05 shows it)."""
    import tensorflow as tf

    grad_model = keras.Model(model.inputs[0],
                             [model.get_layer(layer_name).output, model.outputs[0]])
    with tf.GradientTape() as tape:
        features, predictions = grad_model(image[None], training=False)
        score = predictions[:, label]
    gradients = tape.gradient(score, features)
    weights = tf.reduce_mean(gradients, axis=(0, 1, 2))  # one weight per channel
    heatmap = tf.nn.relu(tf.reduce_sum(features[0] * weights, axis=-1))
    heatmap = heatmap / tf.reduce_max(heatmap)
    return tf.image.resize(heatmap[..., None], image.shape[:2])[..., 0].numpy()


@pytest.mark.parametrize("final_activation", ["sigmoid", "softmax"])
def test_the_helper_gives_the_heatmap_of_the_keras_io_recipe(final_activation):
    keras.utils.set_random_seed(0)
    model = models.build_smallvggnet((SIZE, SIZE, 3), 3, final_activation=final_activation)
    images = np.random.default_rng(0).random((2, SIZE, SIZE, 3)).astype("float32")
    result = explain.grad_cam(model, images, 1, method="gradcam")
    for image, heatmap in zip(images, result.heatmaps[:, 0]):
        expected = keras_io_grad_cam(model, result.layer, image, 1)
        np.testing.assert_allclose(heatmap, expected, atol=1e-4)


def smallvggnet_with_a_head():
    """As notebook 04 does with a pretrained base: a SmallVGGNet's body as a feature extractor,
    joined to a head with ``models.attach_head``."""
    body = models.build_smallvggnet((SIZE, SIZE, 3), 3)
    cut = next(index for index, layer in enumerate(body.layers)
               if isinstance(layer, keras.layers.Flatten))
    inputs = keras.Input((SIZE, SIZE, 3))
    features = keras.Sequential([keras.Input((SIZE, SIZE, 3)), *body.layers[:cut]],
                                name="smallvggnet")(inputs)
    extractor = keras.Model(inputs, features, name="smallvggnet_features")
    return models.attach_head(extractor, models.build_head(extractor.output_shape[1:], 3))


@pytest.mark.parametrize("build, layer_name, map_size", [
    (lambda: models.build_resnet50((SIZE, SIZE, 3), 3), "conv5_block3_out", (1, 1)),
    (lambda: models.build_vgg16((SIZE, SIZE, 3), 3), "block5_conv3", (2, 2)),
    (smallvggnet_with_a_head, "batch_normalization", (8, 8)),
], ids=["resnet50", "vgg16", "smallvggnet_attach_head"])
def test_bases_nested_in_the_model_are_found_and_explained(build, layer_name, map_size):
    keras.utils.set_random_seed(0)
    model = build()
    cam = explain.GradCAM(model)
    assert cam.layer.name.startswith(layer_name) and cam.map_size == map_size
    result = cam(np.random.default_rng(1).random((2, SIZE, SIZE, 3)), [0, 1, 2])
    assert result.heatmaps.shape == (2, 3, SIZE, SIZE) and np.isfinite(result.heatmaps).all()
    np.testing.assert_allclose(result.probabilities, model.predict(
        np.random.default_rng(1).random((2, SIZE, SIZE, 3)), verbose=0), atol=1e-5)
    # The model is left as it was: no wrapped call, the output activation back in place.
    assert all("call" not in layer.__dict__ for layer in explain._leaf_layers(model))
    assert model.layers[-1].get_layer("predictions").activation is keras.activations.sigmoid


def test_a_layer_can_be_chosen_by_name_and_bad_choices_are_explained():
    model = models.build_resnet50((SIZE, SIZE, 3), 2)
    cam = explain.GradCAM(model, layer="conv4_block6_out")
    assert cam.map_size == (2, 2) and cam.layer.name == "conv4_block6_out"
    with pytest.raises(ValueError, match="no layer 'nope'.*conv5_block3_out"):
        explain.GradCAM(model, layer="nope")
    with pytest.raises(ValueError, match="avg_pool.*feature map"):
        explain.GradCAM(model, layer="avg_pool")
    with pytest.raises(ValueError, match="method: expected one of"):
        explain.GradCAM(model, method="cam")
    with pytest.raises(ValueError, match="no 2-D convolution"):
        explain.GradCAM(models.build_mlp((8, 8, 3), 2, final_activation="sigmoid"))


@pytest.mark.parametrize("images, labels, message", [
    (np.zeros((1, 16, 16, 3)), 0, r"expected an array \(n, 32, 32, 3\)"),
    (np.full((1, SIZE, SIZE, 3), 200.0), 0, r"pixels in \[0, 1\]"),
    (np.zeros((1, SIZE, SIZE, 3)), "blue", "not one of the classes"),
    (np.zeros((1, SIZE, SIZE, 3)), 5, "outside 0..1"),
    (np.zeros((2, SIZE, SIZE, 3)), [["red"], ["red", "bright"]], "explain_lists"),
])
def test_wrong_inputs_are_clear_errors(images, labels, message):
    with pytest.raises(ValueError, match=message):
        explain.GradCAM(detector_model(), classes=CLASSES)(images, labels)


def test_hooks_are_removed_when_the_forward_pass_fails():
    model = detector_model()
    layer = model.get_layer("cells")

    def fail(layer, output):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError), explain._hooked([(layer, fail)]):
        model(blobs(), training=False)
    assert "call" not in layer.__dict__
    assert np.isfinite(np.asarray(model(blobs(), training=False))).all()


def test_explain_lists_gives_each_image_its_own_labels():
    cam = explain.GradCAM(detector_model(), classes=CLASSES)
    results = cam.explain_lists(blobs(n=3), [["red", "bright"], [], ["bright"]])
    assert [result["heatmaps"].shape[0] for result in results] == [2, 0, 1]
    np.testing.assert_allclose(results[2]["heatmaps"][0], results[0]["heatmaps"][1], atol=1e-6)


# --------------------------------------------------------------------------- files
def save_detector(model_dir, thresholds=(0.0, 0.0)):
    model = detector_model()
    artefacts.save_artefacts(model_dir, model, CLASSES, "multi_label", (SIZE, SIZE),
                             thresholds=list(thresholds))
    return model_dir


def test_odd_images_are_explained_and_broken_ones_reported(odd_images_dir, odd_images_expected):
    paths = list_images(odd_images_dir)
    table = explain.explain_files(detector_model(), paths, [["red"]] * len(paths),
                                  classes=CLASSES)
    good = {name for name, item in odd_images_expected.items() if item["ok"]}
    assert {path.split("/")[-1] for path in table["filename"]} == good
    assert {item["path"].split("/")[-1] for item in table.attrs["skipped"]} == \
        set(odd_images_expected) - good
    assert all(heatmap.shape == (SIZE, SIZE) for heatmap in table["heatmap"])


def test_peaks_are_in_the_upright_image(odd_images_dir):
    # Stored 40×20 with a red block in its top-left corner; EXIF orientation 6 turns it
    # clockwise, so a person sees a 20×40 picture with the block in the top-right corner.
    table = explain.explain_files(detector_model(), [odd_images_dir / "rotated_exif6.jpg"],
                                  [["red"]], classes=CLASSES)
    assert table["peak_y"].iloc[0] < 0.25 and table["peak_x"].iloc[0] > 0.6


def test_overlay_blends_the_heatmap_at_the_image_size(tmp_path):
    image = np.zeros((10, 30, 3), dtype=np.uint8)
    heatmap = np.zeros((4, 4))
    heatmap[0, 3] = 1.0
    blended = overlays.overlay(image, heatmap, alpha=0.5)
    assert blended.shape == (10, 30, 3) and blended.dtype == np.uint8
    assert blended[0, -1, 0] > blended[0, -1, 2]  # the hot corner is red...
    assert blended[-1, 0, 2] > blended[-1, 0, 0]  # ...the cold one blue
    path = tmp_path / "tiny.png"
    Image.fromarray(image).save(path)
    written = overlays.write_overlay(path, heatmap, tmp_path / "out.png", peak=(0.1, 0.9))
    with Image.open(written) as result:
        assert min(result.size) == 224 and result.size[0] == 3 * result.size[1]


def test_explain_paths_writes_one_overlay_per_predicted_label(tmp_path):
    for name, corner in (("left.png", (4, 4)), ("right.png", (4, 20))):
        pixels = (blobs(red_at=corner, bright_at=(20, 4))[0] * 255).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / name)
    model_dir = save_detector(tmp_path / "model", thresholds=(0.3, 1.0))  # only red is predicted
    results = explain_paths(model_dir, [tmp_path / "left.png", tmp_path / "right.png"],
                            tmp_path / "explained")
    assert [list(result["explanations"]) for result in results] == [["red"], ["red"]]
    left, right = (result["explanations"]["red"] for result in results)
    assert left["peak"][1] < 0.5 < right["peak"][1]
    assert sorted(path.name for path in (tmp_path / "explained").iterdir()) == \
        ["00000_left_red.png", "00001_right_red.png"]


def test_cli_predict_explain_reports_broken_files_as_predict_does(tmp_path, odd_images_dir,
                                                                  odd_images_expected, capsys):
    model_dir = save_detector(tmp_path / "model")
    out_dir = tmp_path / "heatmaps"
    code = main(["predict", "--model-dir", str(model_dir), str(odd_images_dir), "--format",
                 "json", "--explain", str(out_dir)])
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert code == 0
    n_bad = sum(1 for item in odd_images_expected.values() if not item["ok"])
    assert f"{n_bad} of {len(odd_images_expected)} images could not be read" in captured.err
    for result in results:
        ok = odd_images_expected[result["path"].split("/")[-1]]["ok"]
        assert (result["error"] is None) == ok
        if not ok:
            assert result["explanations"] is None
            continue
        assert sorted(result["explanations"]) == sorted(result["labels"]) == sorted(CLASSES)
        for explanation in result["explanations"].values():
            with Image.open(explanation["heatmap"]) as overlay_image:
                assert min(overlay_image.size) >= 224
            assert explanation["peak"] == [None, None] or \
                all(0 <= value <= 1 for value in explanation["peak"])
    assert len(list(out_dir.iterdir())) == 2 * (len(odd_images_expected) - n_bad)


def test_cli_predict_explain_text_names_the_overlays(tmp_path, photos, capsys):
    model_dir = save_detector(tmp_path / "model")
    assert main(["predict", "--model-dir", str(model_dir), str(photos[0]), "--explain",
                 str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert out.count("looks at") == 2 * 3 and str(tmp_path / "out") in out


# --------------------------------------------------------------------------- pointing game
def test_box_fractions_follow_each_convention():
    boxes = pd.DataFrame({"filename": ["a"], "label": ["x"], "xmin": [1], "ymin": [1],
                          "xmax": [50], "ymax": [25], "width": [100], "height": [50]})
    voc = explain.box_fractions(boxes, "voc").iloc[0]
    assert (voc["xmin"], voc["ymin"], voc["xmax"], voc["ymax"]) == (0.0, 0.0, 0.5, 0.5)
    edges = explain.box_fractions(boxes, "edges").iloc[0]
    assert (edges["xmin"], edges["ymin"]) == (0.01, 0.02)
    with pytest.warns(UserWarning, match="without a usable image size"):
        assert explain.box_fractions(boxes.assign(width=[0]), "voc").empty


def test_pointing_game_counts_hits_centre_hits_and_peaks_on_other_objects():
    boxes = pd.DataFrame({"filename": ["a", "a", "b"], "label": ["chair", "person", "chair"],
                          "ymin": [0.6, 0.0, 0.4], "xmin": [0.0, 0.5, 0.4],
                          "ymax": [1.0, 1.0, 0.6], "xmax": [0.3, 1.0, 0.6]})
    points = pd.DataFrame({"filename": ["a", "a", "b", "b"],
                           "label": ["chair", "chair", "chair", "dog"],
                           "peak_y": [0.8, 0.5, 0.2, 0.5], "peak_x": [0.32, 0.7, 0.2, 0.5]})
    game = explain.pointing_game(points, boxes, margin=0.05)
    assert game["hit"].tolist() == [True, False, False, False]
    assert game["centre_hit"].tolist() == [False, False, True, False]
    # The dog has no box, and its peak lies on the chair.
    assert game["other_label"].fillna("").tolist() == ["", "person", "", "chair"]
    assert game["n_boxes"].tolist() == [1, 1, 1, 0]
    summary = explain.pointing_summary(game)
    assert summary.loc["all", "n"] == 3 and summary.loc["all", "hits"] == 1
    assert summary.loc["chair", "gain"] == pytest.approx(0.0)
    assert explain.pointing_game(points, boxes, margin=0.0)["hit"].tolist()[0] is False


def test_voc_boxes_match_the_annotations(tmp_path):
    root = make_dataset("scenes", tmp_path / "scenes", scale=0.01, progress=False)
    (root / "Annotations" / "broken.xml").write_text("<annotation><filename>x.jpg")
    with pytest.warns(UserWarning, match="broken.xml: malformed XML"):
        boxes = voc_boxes(root)
    assert list(boxes.columns[:6]) == ["filename", "label", "xmin", "ymin", "xmax", "ymax"]
    assert (boxes["xmin"] <= boxes["xmax"]).all() and (boxes["xmax"] <= boxes["width"]).all()
    assert len(boxes.attrs["skipped"]) == 1
    fractions = explain.box_fractions(boxes, "voc")
    assert fractions[["ymin", "xmin", "ymax", "xmax"]].stack().between(0, 1).all()


@pytest.mark.slow
def test_a_smallvggnet_trained_on_shapes_points_at_the_shape(tmp_path):
    """The fast version of benchmarks/pointing_game.py: a few epochs on a third of the shapes.

    The shapes are large, so the image centre often lies in their box; the peaks must also
    find the shapes where it does not. Every image is scored (the training images too): this
    checks the explanations of a given model, not how well it generalises."""
    from helpers.app.workflows import train_from_source
    from helpers.data import load_split_folders
    from helpers.evaluation import apply_thresholds
    from helpers.predict import predict_dataframe

    data = make_dataset("shapes", tmp_path / "shapes", scale=0.3, progress=False)
    result = train_from_source(data, tmp_path / "model", layout="split-folders", epochs=12,
                               image_size=48, patience=12, log=None)
    history = result["history"]
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    model, metadata = artefacts.load_artefacts(tmp_path / "model")
    y_true, y_prob, paths, _ = predict_dataframe((model, metadata), load_split_folders(data))
    decisions = apply_thresholds(y_prob, metadata["thresholds"])
    correct = [[metadata["classes"][column] for column in np.flatnonzero(row)]
               for row in decisions & (np.asarray(y_true) == 1)]
    points = explain.explain_files(model, paths, correct, classes=metadata["classes"])
    game = explain.pointing_game(points, explain.box_fractions(shape_boxes(data), "edges"))
    overall = explain.pointing_summary(game).loc["all"]
    off_centre = explain.pointing_summary(game[~game["centre_hit"]]).loc["all"]
    assert overall["n"] >= 200 and off_centre["n"] >= 30
    # Measured: 84% of all peaks, 74% of those the centre misses (a 12-epoch model).
    assert overall["hit_rate"] >= 0.75, overall.to_dict()
    assert off_centre["hit_rate"] >= 0.6, off_centre.to_dict()
