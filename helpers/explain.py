"""Explain predictions with Grad-CAM: where in the image a model found each label.

Grad-CAM (Selvaraju et al., 2017) weighs the feature maps of a convolutional layer by the
gradient of one label's score, averaged over the map, and keeps the positive part of the sum:
a coarse map of the regions that raise that label. Its variant HiResCAM (Draelos and Carin,
2020) multiplies gradient and feature map position by position instead, before summing
over the channels. The two are the same map for a model that averages its last feature map
(ResNet50 here: the gradient is then the same at every position), but when the head
flattens the map (SmallVGGNet, VGG16's head) every position has its own weights, and
averaging the gradient first mixes them up: Grad-CAM can then light up a region the model
does not use, HiResCAM shows each position's share of the score. ``method="hirescam"`` is
the default; ``method="gradcam"`` gives the original.

- :class:`GradCAM`: ``GradCAM(model)(images, labels)`` gives an :class:`Explanation`, one
  heatmap per image and label, vectorised over the batch;
- :func:`explain_files` and :func:`explain_paths`: the same for image files, and for a model
  folder on files and folders with one overlay PNG per predicted label (``predict --explain``);
- :func:`outcome_cases`: heatmaps of each class's true positives, false positives and
  false negatives, for ``helpers.plots.plot_outcome_gallery``;
- :func:`box_fractions`, :func:`pointing_game` and :func:`pointing_summary`: does the peak of
  a correctly predicted label fall inside a box of that label, and would the image centre?

How the maps are computed:

- **per label**: multi-label models get the gradient of the chosen label's sigmoid output,
  one map per label (an image with a person and a chair gets a map for each), never only the
  argmax; multi-class models get the gradient of the chosen class's softmax output;
- **any nesting**: ResNet50, VGG16 and notebook 04's models hold their base as a model inside
  the model, where the usual recipe (a second model from the inputs to the layer's output)
  fails with "Output ... is not connected to inputs". Here the model runs as it is, eagerly
  and in inference mode (``training=False``: BatchNormalization uses its moving statistics,
  Dropout is off), under a ``tf.GradientTape``, while the chosen layer's ``call`` is wrapped
  for the duration to hand its output to the tape;
- **the layer**: the last 2-D convolution, taken after what follows it at the same
  resolution (activation, normalisation, the residual sum): ResNet50's ``conv5_block3_out``,
  VGG16's ``block5_conv3``, SmallVGGNet's last BatchNormalization. ``layer=`` picks another
  one by name (a larger map, for instance: ResNet50's at 64×64 pixels is 2×2);
- **no saturation**: in float32 a sigmoid of 17 is exactly 1 and its gradient 0, so a
  confident model would get empty maps. The gradient is taken through the output layer's
  logits instead, which gives the same maps: for a sigmoid the output's gradient is the
  logit's times one positive number per image and label; for a softmax it is, up to such a
  number, the gradient of the class's logit minus the others' logits weighted by their
  share of the remaining probability. (Models whose output layer is not a Dense or
  Activation layer with a sigmoid or softmax are explained through their outputs.)

Heatmaps come at the model's input resolution, scaled to a maximum of 1 (all zeros when no
region raises the label). A peak is the centre of the map's highest cell, where the
bilinearly enlarged heatmap is highest, as fractions ``(y, x)`` of the image height and width:
images are read upright (EXIF orientation applied, ``helpers.files.images.read_image``) and resized
without keeping the aspect ratio, so the fractions hold for the picture as a person sees it,
at any size.
"""
import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import layers

from helpers import warn
from helpers.artefacts import load_artefacts
from helpers.evaluation import DEFAULT_THRESHOLD, outcome_examples
from helpers.files.fileio import atomic_path
from helpers.files.images import ImageError, read_image, resize
from helpers.predict import predict_paths

# Layers whose output is a 2-D feature map that Grad-CAM can weigh.
CONVOLUTIONS = (layers.Conv2D, layers.SeparableConv2D, layers.DepthwiseConv2D,
                layers.Conv2DTranspose)
CENTRE = (0.5, 0.5)
# The pointing game's tolerance: a box grows by this share of the image height and width.
DEFAULT_MARGIN = 0.05
BOX_CONVENTIONS = ("voc", "edges")
METHODS = ("hirescam", "gradcam")
_MISSING = object()


# --------------------------------------------------------------------------- the model's layers
def _leaf_layers(model):
    """Every layer of ``model`` that is not itself a model (nested models opened), each once."""
    found, seen = [], set()

    def visit(container):
        for layer in container.layers:
            if isinstance(layer, keras.Model):
                visit(layer)
            elif not isinstance(layer, layers.InputLayer) and id(layer) not in seen:
                seen.add(id(layer))
                found.append(layer)

    visit(model)
    return found


def _set_attribute(layer, name, value):
    """Set (or, with ``_MISSING``, remove) an instance attribute without Keras' tracking."""
    if value is _MISSING:
        layer.__dict__.pop(name, None)
    else:
        object.__setattr__(layer, name, value)


@contextlib.contextmanager
def _hooked(hooks):
    """Pass each output of the layers in ``hooks`` (``(layer, function)`` pairs) through its
    function while the block runs; the layers are as they were afterwards, even on error."""
    saved = []

    def wrapped(layer, hook, original):
        def call(*args, **kwargs):
            return hook(layer, original(*args, **kwargs))

        return call

    try:
        for layer, hook in hooks:
            saved.append((layer, layer.__dict__.get("call", _MISSING)))
            _set_attribute(layer, "call", wrapped(layer, hook, layer.call))
        yield
    finally:
        for layer, previous in reversed(saved):
            _set_attribute(layer, "call", previous)


def _map_shape(output):
    """``(height, width, channels)`` of a layer output, or None when it is no single 2-D map."""
    shape = getattr(output, "shape", None)
    if shape is None or len(shape) != 4:
        return None
    return tuple(int(size) for size in shape[1:])


def _trace(model, probe):
    """Run ``model`` once on ``probe``: the leaf layers in the order they ran, their map
    shapes, and the outputs."""
    order = []

    def record(layer, output):
        order.append((layer, _map_shape(output)))
        return output

    with _hooked([(layer, record) for layer in _leaf_layers(model)]):
        outputs = model(probe, training=False)
    return order, outputs


def _auto_layer(order, model_name):
    convolutions = [index for index, (layer, shape) in enumerate(order)
                    if isinstance(layer, CONVOLUTIONS) and shape is not None]
    if not convolutions:
        raise ValueError(
            f"model {model_name!r} has no 2-D convolution, so Grad-CAM has no feature map to "
            "weigh; pass layer=<name> of a layer whose output is (height, width, channels)")
    index = convolutions[-1]
    spatial = order[index][1][:2]
    while (index + 1 < len(order) and order[index + 1][1] is not None
           and order[index + 1][1][:2] == spatial):
        index += 1
    return order[index][0]


def _named_layer(order, layer, model_name):
    name = layer if isinstance(layer, str) else getattr(layer, "name", None)
    matches = [(candidate, shape) for candidate, shape in order
               if (candidate is layer if not isinstance(layer, str) else candidate.name == name)]
    if not matches:
        maps = [candidate.name for candidate, shape in order if shape is not None]
        raise ValueError(f"layer: model {model_name!r} has no layer {name!r}; the last layers "
                         f"with a feature map are {maps[-8:]}")
    chosen, shape = matches[-1]
    if shape is None:
        raise ValueError(f"layer: {name!r} does not output a feature map (height, width, "
                         "channels), so Grad-CAM cannot weigh it; choose a convolutional layer")
    return chosen


@dataclass
class Explanation:
    """Heatmaps (HiResCAM or Grad-CAM) of ``n`` images for ``k`` labels each.

    Attributes
    ----------
    heatmaps : np.ndarray (n, k, height, width)
        float32 in [0, 1] at the model's input resolution (1 = the map's maximum).
    peaks : np.ndarray (n, k, 2)
        ``(y, x)`` of each heatmap's peak as fractions of the image height and width; NaN
        for an all-zero heatmap (no region raises the label).
    probabilities : np.ndarray (n, k)
        The model's output for each image and label.
    labels : np.ndarray (n, k)
        Class indices explained.
    classes : list of str or None
        Class names, when known.
    layer : str
        The layer whose feature maps were weighed.
    method : str
        ``"hirescam"`` or ``"gradcam"``.
    """

    heatmaps: np.ndarray
    peaks: np.ndarray
    probabilities: np.ndarray
    labels: np.ndarray
    classes: list
    layer: str
    method: str = "hirescam"

    def label_names(self):
        """``labels`` as names (indices when the classes are unknown), an (n, k) object array."""
        if self.classes is None:
            return self.labels.astype(object)
        return np.asarray(self.classes, dtype=object)[self.labels].reshape(self.labels.shape)


class GradCAM:
    """Grad-CAM (or HiResCAM) of one Keras image model, ready for any number of batches.

    Parameters
    ----------
    model : keras.Model
        Images ``(n, height, width, channels)`` in [0, 1] → one output per class (sigmoid
        for multi-label, softmax for multi-class), however its layers are nested.
    layer : str or keras.layers.Layer, optional
        The layer whose output is explained; default: the last 2-D convolution, with what
        follows it at the same resolution (see the module docstring).
    classes : list of str, optional
        One name per output, so that labels can be given by name (``labels.json``'s
        ``classes``).
    method : {"hirescam", "gradcam"}, default="hirescam"
        Gradient times feature map position by position (HiResCAM), or the feature maps
        weighed by their average gradient (Grad-CAM); see the module docstring.

    Attributes
    ----------
    layer : keras.layers.Layer
        The layer explained (``layer.name``).
    map_size : (int, int)
        Height and width of its feature map.
    input_size : (int, int)
        Height and width of the model's input: the heatmaps' size.
    activation : {"sigmoid", "softmax", None}
        The output activation taken apart to reach the logits (None: explained through the
        outputs as they are).
    """

    def __init__(self, model, layer=None, classes=None, method="hirescam"):
        if method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
        self.method = method
        if not isinstance(model, keras.Model):
            raise ValueError(f"model: expected a keras.Model, got {type(model).__name__}")
        shape = model.input_shape
        if isinstance(shape, list) or len(shape) != 4 or None in shape[1:]:
            raise ValueError(f"model {model.name!r}: Grad-CAM needs one image input of a fixed "
                             f"size (None, height, width, channels), got {shape}")
        self.model = model
        self.input_size = (int(shape[1]), int(shape[2]))
        self._channels = int(shape[3])
        probe = np.random.default_rng(0).random((2, *self.input_size, self._channels))
        order, outputs = _trace(model, probe.astype("float32"))
        outputs = np.asarray(outputs)
        if outputs.ndim != 2:
            raise ValueError(f"model {model.name!r}: expected one output per class, shape "
                             f"(n, n_classes), got {outputs.shape}")
        self.n_classes = int(outputs.shape[1])
        if classes is not None:
            classes = [str(name) for name in classes]
            if len(classes) != self.n_classes:
                raise ValueError(f"classes: expected {self.n_classes} names (one per output of "
                                 f"{model.name!r}), got {len(classes)}")
        self.classes = classes
        self.layer = (_auto_layer(order, model.name) if layer is None
                      else _named_layer(order, layer, model.name))
        runs = sum(1 for candidate, _ in order if candidate is self.layer)
        if runs != 1:
            raise ValueError(f"layer {self.layer.name!r} runs {runs} times in one forward pass "
                             "(a shared layer); choose a layer that runs once")
        self.map_size = next(shape for candidate, shape in order if candidate is self.layer)[:2]
        self._output_layer = order[-1][0]
        self.activation = self._logit_activation(probe.astype("float32"), outputs)

    def __repr__(self):
        return (f"GradCAM({self.model.name!r}, {self.method}, layer={self.layer.name!r}, "
                f"map {self.map_size[0]}×{self.map_size[1]}, input "
                f"{self.input_size[0]}×{self.input_size[1]})")

    # ------------------------------------------------------------------ logits
    def _logit_activation(self, probe, outputs):
        """``"sigmoid"`` or ``"softmax"`` when the output layer's activation can be taken off."""
        activation = getattr(self._output_layer, "activation", None)
        name = {id(keras.activations.sigmoid): "sigmoid",
                id(keras.activations.softmax): "softmax"}.get(id(activation))
        if name is None or (name == "softmax" and self.n_classes < 2):
            return None
        self.activation = name
        with self._logits():
            logits = np.asarray(self.model(probe, training=False))
        if not np.allclose(_activate(logits, name), outputs, atol=1e-5):
            return None  # something after the output layer changes its result
        return name

    @contextlib.contextmanager
    def _logits(self):
        if self.activation is None:
            yield
            return
        layer = self._output_layer
        previous = layer.__dict__.get("activation", _MISSING)
        _set_attribute(layer, "activation", keras.activations.linear)
        try:
            yield
        finally:
            _set_attribute(layer, "activation", previous)

    def _scores(self, outputs, targets):
        """One differentiable score per image and slot: what the gradient is taken of."""
        scores = []
        for slot in range(targets.shape[1]):
            chosen = tf.one_hot(targets[:, slot], self.n_classes, dtype=outputs.dtype)
            own = tf.reduce_sum(outputs * chosen, axis=1)
            if self.activation == "softmax":
                others = tf.where(chosen > 0, tf.constant(-np.inf, outputs.dtype), outputs)
                weights = tf.stop_gradient(tf.nn.softmax(others, axis=1))
                own = own - tf.reduce_sum(weights * outputs, axis=1)
            scores.append(own)
        return scores

    # ------------------------------------------------------------------ inputs
    def _images(self, images):
        array = np.asarray(images)
        if array.ndim == 3:
            array = array[None]
        expected = (*self.input_size, self._channels)
        if array.ndim != 4 or array.shape[1:] != expected:
            raise ValueError(f"images: expected an array (n, {expected[0]}, {expected[1]}, "
                             f"{expected[2]}) as the model takes, got shape {array.shape}")
        if array.dtype == np.uint8:
            return array.astype("float32") / 255.0
        array = array.astype("float32")
        if array.size and (array.max() > 1.0 + 1e-6 or array.min() < -1e-6):
            raise ValueError("images: expected pixels in [0, 1] as the pipeline yields them "
                             f"(or uint8), got values from {array.min():.3g} to {array.max():.3g}")
        return array

    def _index(self, label):
        if isinstance(label, str):
            if self.classes is None:
                raise ValueError(f"labels: {label!r} is a name, but the classes are unknown; "
                                 "pass classes=[...] or class indices")
            if label not in self.classes:
                raise ValueError(f"labels: {label!r} is not one of the classes {self.classes}")
            return self.classes.index(label)
        if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
            raise ValueError(f"labels: expected class names or indices, got {label!r}")
        if not 0 <= label < self.n_classes:
            raise ValueError(f"labels: class index {label} is outside 0..{self.n_classes - 1}")
        return int(label)

    def _targets(self, labels, n_images):
        array = np.asarray(labels, dtype=object)  # ragged lists become a 1-D array of lists
        if array.ndim > 2 or (array.ndim == 1 and any(
                isinstance(item, (list, tuple, np.ndarray)) for item in array)):
            raise ValueError("labels: expected one label, a list of labels for every image or "
                             "an (n_images, k) table; for a different number of labels per "
                             "image use explain_lists")
        if array.ndim == 2 and array.shape[0] != n_images:
            raise ValueError(f"labels: expected {n_images} rows (one per image), got "
                             f"{array.shape[0]}")
        indices = np.vectorize(self._index, otypes=[np.int64])(array) if array.size else \
            np.zeros(array.shape, dtype=np.int64)
        if indices.ndim < 2:
            indices = np.broadcast_to(indices.reshape(1, -1), (n_images, indices.size))
        return np.ascontiguousarray(indices, dtype=np.int64)

    # ------------------------------------------------------------------ maps
    def _batch(self, images, targets):
        captured = []
        with tf.GradientTape(persistent=targets.shape[1] > 1) as tape:
            def keep(layer, output):
                tape.watch(output)
                captured.append(output)
                return output

            with _hooked([(self.layer, keep)]), self._logits():
                outputs = self.model(images, training=False)
            totals = [tf.reduce_sum(score) for score in self._scores(outputs, targets)]
        features = captured[0]
        gradients = [tape.gradient(total, features) for total in totals]
        del tape
        if any(gradient is None for gradient in gradients):
            raise ValueError(f"layer {self.layer.name!r} does not lead to the model's output")
        features = np.asarray(features, dtype=np.float32)
        gradients = [np.asarray(gradient, dtype=np.float32) for gradient in gradients]
        if self.method == "gradcam":
            maps = [np.einsum("bhwc,bc->bhw", features, gradient.mean(axis=(1, 2)))
                    for gradient in gradients]
        else:
            maps = [np.einsum("bhwc,bhwc->bhw", features, gradient) for gradient in gradients]
        maps = np.stack(maps, axis=1)
        values = np.asarray(outputs, dtype=np.float64)
        if self.activation is not None:
            values = _activate(values, self.activation)
        return np.maximum(maps, 0.0), np.take_along_axis(values, targets, axis=1)

    def __call__(self, images, labels, batch_size=32):
        """Heatmaps of ``images`` for ``labels``.

        Parameters
        ----------
        images : array-like (n, height, width, channels) or (height, width, channels)
            At the model's input size, in [0, 1] (or uint8 0-255), as the pipeline yields them.
        labels : label, list of labels, or (n, k) table
            A class name (with ``classes``) or index explained on every image, a list of them
            (each explained on every image), or one row of ``k`` labels per image.
        batch_size : int, default=32
            Images per forward pass.

        Returns
        -------
        Explanation
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        images = self._images(images)
        targets = self._targets(labels, len(images))
        n, k = targets.shape
        maps = np.zeros((n, k, *self.map_size), dtype=np.float32)
        probabilities = np.zeros((n, k))
        if n and k:
            for start in range(0, n, batch_size):
                chunk = slice(start, start + batch_size)
                maps[chunk], probabilities[chunk] = self._batch(images[chunk], targets[chunk])
        peaks = _peaks(maps)
        tops = maps.reshape(n, k, -1).max(axis=2, initial=0.0)[..., None, None]
        maps = np.divide(maps, tops, out=np.zeros_like(maps), where=tops > 0)
        return Explanation(heatmaps=_enlarge(maps, self.input_size), peaks=peaks,
                           probabilities=probabilities, labels=targets, classes=self.classes,
                           layer=self.layer.name, method=self.method)

    def explain_lists(self, images, label_lists, batch_size=32):
        """Heatmaps for a different number of labels per image.

        Parameters
        ----------
        images : array-like (n, height, width, channels)
        label_lists : list of n lists of labels (names or indices; empty lists allowed)
        batch_size : int, default=32

        Returns
        -------
        list of n dicts: ``labels`` (as given), ``heatmaps`` (k_i, height, width), ``peaks``
        (k_i, 2) and ``probabilities`` (k_i,).
        """
        images = self._images(images)
        label_lists = [list(labels) for labels in label_lists]
        if len(label_lists) != len(images):
            raise ValueError(f"label_lists: expected {len(images)} lists (one per image), got "
                             f"{len(label_lists)}")
        width = max((len(labels) for labels in label_lists), default=0)
        # Shorter rows repeat their first label: a little wasted work, one vectorised pass.
        table = [[*labels, *[labels[0] if labels else 0] * (width - len(labels))]
                 for labels in label_lists]
        explanation = self(images, table, batch_size=batch_size) if width else None
        return [{"labels": labels,
                 "heatmaps": explanation.heatmaps[row, :len(labels)] if width else
                 np.zeros((0, *self.input_size), dtype=np.float32),
                 "peaks": explanation.peaks[row, :len(labels)] if width else np.zeros((0, 2)),
                 "probabilities": explanation.probabilities[row, :len(labels)] if width else
                 np.zeros(0)}
                for row, labels in enumerate(label_lists)]


def _activate(values, name):
    if name == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * values))  # 1 / (1 + exp(-x)), without overflow
    shifted = np.exp(values - values.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _peaks(maps):
    """Centre of each map's highest cell, as fractions (y, x); NaN for an all-zero map."""
    n, k, height, width = maps.shape
    if not maps.size:
        return np.full((n, k, 2), np.nan)
    flat = maps.reshape(n, k, height * width)
    best = flat.argmax(axis=2)
    peaks = np.stack([(best // width + 0.5) / height, (best % width + 0.5) / width], axis=-1)
    peaks[~(flat.max(axis=2) > 0)] = np.nan
    return peaks


def _enlarge(maps, size):
    """Bilinear enlargement of (n, k, h, w) maps to (n, k, *size), pixel centres aligned."""
    n, k, height, width = maps.shape
    if not maps.size:
        return np.zeros((n, k, *size), dtype=np.float32)
    if (height, width) == tuple(size):
        return maps
    stacked = maps.reshape(n * k, height, width, 1)
    enlarged = tf.image.resize(stacked, size, method="bilinear").numpy()
    return np.clip(enlarged.reshape(n, k, *size), 0.0, 1.0).astype(np.float32)


def grad_cam(model, images, labels, layer=None, classes=None, batch_size=32,
             method="hirescam"):
    """Heatmaps in one call: ``GradCAM(model, layer, classes, method)(images, labels)``.

    Parameters
    ----------
    model : keras.Model
    images : array-like (n, height, width, channels), in [0, 1] or uint8
    labels : label, list of labels, or (n, k) table (see :meth:`GradCAM.__call__`)
    layer : str or Layer, optional
        Default: the last convolution (see the module docstring).
    classes : list of str, optional
        Class names, to give labels by name.
    batch_size : int, default=32
    method : {"hirescam", "gradcam"}, default="hirescam"

    Returns
    -------
    Explanation
    """
    return GradCAM(model, layer=layer, classes=classes, method=method)(
        images, labels, batch_size=batch_size)


# --------------------------------------------------------------------------- files
def explain_files(model_or_cam, paths, labels, batch_size=32, layer=None, classes=None):
    """Heatmaps of image files, one row per image and label.

    Images are read as for prediction (``helpers.files.images.read_image``: upright, RGB, resized
    to the model's input size). One that cannot be read is left out and listed in
    ``attrs["skipped"]``; it never stops the others.

    Parameters
    ----------
    model_or_cam : keras.Model or GradCAM
    paths : list of str or Path
    labels : list of label lists (one per path), or one list of labels for every path
        Names (with ``classes``) or indices; an empty list explains nothing for that image.
    batch_size : int, default=32
        Images read and explained at once.
    layer, classes
        For a model: see :class:`GradCAM`.

    Returns
    -------
    pandas.DataFrame
        Columns ``image`` (position in ``paths``), ``filename``, ``label``, ``probability``,
        ``peak_y``, ``peak_x`` and ``heatmap`` (an array at the model's input size);
        ``attrs["skipped"]`` lists ``{"path", "reason"}`` of the images that could not be read.
    """
    cam = model_or_cam if isinstance(model_or_cam, GradCAM) else \
        GradCAM(model_or_cam, layer=layer, classes=classes)
    paths = [os.fspath(path) for path in paths]
    if labels and all(not isinstance(item, (list, tuple, np.ndarray)) for item in labels):
        labels = [list(labels)] * len(paths)
    if len(labels) != len(paths):
        raise ValueError(f"labels: expected one list of labels per path ({len(paths)}), got "
                         f"{len(labels)}")
    rows, skipped, pending = [], [], []

    def flush():
        if not pending:
            return
        explained = cam.explain_lists(np.stack([image for _, image in pending]),
                                      [labels[index] for index, _ in pending], batch_size)
        for (index, _), result in zip(pending, explained):
            for slot, label in enumerate(result["labels"]):
                name = cam.classes[cam._index(label)] if cam.classes else cam._index(label)
                rows.append((index, paths[index], name, float(result["probabilities"][slot]),
                             *map(float, result["peaks"][slot]), result["heatmaps"][slot]))
        pending.clear()

    for index, path in enumerate(paths):
        if not len(labels[index]):
            continue
        try:
            pending.append((index, read_image(path, cam.input_size)))
        except ImageError as problem:
            skipped.append({"path": path, "reason": problem.reason})
        if len(pending) == batch_size:
            flush()
    flush()
    table = pd.DataFrame(rows, columns=["image", "filename", "label", "probability", "peak_y",
                                        "peak_x", "heatmap"])
    table.attrs["skipped"] = skipped
    return table


def overlay(image, heatmap, alpha=0.45, colormap=cv2.COLORMAP_JET):
    """An image with a heatmap blended over it, as an RGB ``uint8`` array.

    Parameters
    ----------
    image : np.ndarray (height, width, 3)
        uint8, or floats in [0, 1].
    heatmap : np.ndarray (h, w)
        Values in [0, 1], at any resolution (enlarged or shrunk to the image).
    alpha : float, default=0.45
        Weight of the heatmap's colours.
    colormap : int, default=cv2.COLORMAP_JET
        An OpenCV colour map.

    Returns
    -------
    np.ndarray (height, width, 3) uint8
    """
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)
    height, width = pixels.shape[:2]
    heat = resize(np.asarray(heatmap, dtype=np.float32)[..., None], (height, width))[..., 0]
    colours = cv2.applyColorMap(np.clip(np.rint(heat * 255), 0, 255).astype(np.uint8),
                                colormap)[..., ::-1]
    blended = (1.0 - alpha) * pixels.astype(np.float32) + alpha * colours.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def write_overlay(path, heatmap, out_path, peak=None, alpha=0.45, min_size=224, max_size=1024):
    """Write an image with a heatmap over it (and its peak marked) as a PNG, atomically.

    Parameters
    ----------
    path : str or Path
        The image, read upright at its own size.
    heatmap : np.ndarray (h, w)
        In [0, 1], at any resolution.
    out_path : str or Path
        The PNG to write (its folder must exist).
    peak : (y, x) fractions, optional
        Marked with a cross when given and not NaN.
    alpha : float, default=0.45
    min_size, max_size : int
        The copy is enlarged so that its shorter side is at least ``min_size`` and shrunk so
        that its longer side is at most ``max_size``.

    Returns
    -------
    Path of the written file.
    """
    from PIL import Image

    image = read_image(path)
    height, width = image.shape[:2]
    scale = min(max(1.0, min_size / min(height, width)), max_size / max(height, width))
    if abs(scale - 1.0) > 1e-9:
        image = resize(image, (max(1, round(height * scale)), max(1, round(width * scale))))
    picture = overlay(image, heatmap, alpha)
    if peak is not None and np.all(np.isfinite(peak)):
        centre = (int(peak[1] * picture.shape[1]), int(peak[0] * picture.shape[0]))
        size = max(9, min(picture.shape[:2]) // 12)
        cv2.drawMarker(picture, centre, (0, 0, 0), cv2.MARKER_CROSS, size + 4, 5)
        cv2.drawMarker(picture, centre, (255, 255, 255), cv2.MARKER_CROSS, size, 2)
    out_path = Path(out_path)
    with atomic_path(out_path) as temporary:
        Image.fromarray(picture).save(temporary, format="PNG")
    return out_path


def _file_label(label):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(label)).strip("._") or "label"


def explain_paths(model_dir_or_loaded, paths, out_dir, batch_size=32, thresholds=None,
                  layer=None, method="hirescam"):
    """Predict image files and folders, and explain every predicted label with an overlay PNG.

    Parameters
    ----------
    model_dir_or_loaded : str, Path or (model, metadata)
        A model folder or what ``helpers.artefacts.load_artefacts`` returned.
    paths : str, Path or list of them
        Image files and folders (searched recursively), as for ``helpers.predict.predict_paths``.
    out_dir : str or Path
        Where the overlays go (created): ``NNNNN_<image name>_<label>.png``, NNNNN being the
        image's position in the results.
    batch_size : int, default=32
    thresholds : float or array-like, optional
        Override the thresholds saved with the model (multi-label only).
    layer : str, optional
        The layer to explain (default: the last convolution).
    method : {"hirescam", "gradcam"}, default="hirescam"

    Returns
    -------
    list of dict
        ``predict_paths``' results, each with ``explanations``: ``{label: {"peak": [y, x],
        "heatmap": path of the overlay}}`` for the predicted labels (``peak`` in fractions of
        the upright image's height and width, None when the map is empty), or None for an
        image that could not be read (its ``error`` says why).
    """
    loaded = (load_artefacts(model_dir_or_loaded)
              if isinstance(model_dir_or_loaded, (str, os.PathLike)) else model_dir_or_loaded)
    results = predict_paths(loaded, paths, batch_size=batch_size, thresholds=thresholds)
    model, metadata = loaded
    cam = GradCAM(model, layer=layer, classes=metadata["classes"], method=method)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    good = [index for index, result in enumerate(results) if result.get("error") is None]
    for index, result in enumerate(results):
        result["explanations"] = {} if result.get("error") is None else None
    for start in range(0, len(good), batch_size):
        chunk = good[start:start + batch_size]
        table = explain_files(cam, [results[index]["path"] for index in chunk],
                              [results[index]["labels"] for index in chunk], batch_size)
        for item in table.attrs["skipped"]:
            warn(f"{item['path']}: not explained ({item['reason']})")
            for index in chunk:
                if results[index]["path"] == item["path"]:
                    results[index]["explanations"] = None
        for row in table.itertuples():
            result = results[chunk[row.image]]
            stem = Path(result["path"]).stem
            out_path = out_dir / f"{chunk[row.image]:05d}_{stem}_{_file_label(row.label)}.png"
            if any(entry["heatmap"] == str(out_path)
                   for entry in result["explanations"].values()):
                index = metadata["classes"].index(row.label)
                out_path = out_path.with_name(f"{out_path.stem}_{index}.png")
            peak = (row.peak_y, row.peak_x)
            write_overlay(result["path"], row.heatmap, out_path, peak=peak)
            result["explanations"][row.label] = {
                "peak": [float(value) if np.isfinite(value) else None for value in peak],
                "heatmap": str(out_path)}
    return results


# --------------------------------------------------------------------------- galleries
def outcome_cases(model_or_cam, filenames, y_true, y_prob, classes, thresholds=DEFAULT_THRESHOLD,
                  n=2, labels=None, task="multi_label", batch_size=32):
    """Heatmaps of each class's surest true and false positives and worst false negatives.

    Parameters
    ----------
    model_or_cam : keras.Model or GradCAM
    filenames : sequence of str
        One image per row of ``y_true``.
    y_true, y_prob : array-like (n_samples, n_classes)
        Multi-hot truth and probabilities (``helpers.predict.predict_split``).
    classes : list of str
    thresholds : float or array-like (n_classes,), default=0.5
    n : int, default=2
        Images per class and outcome.
    labels : list of str, optional
        Classes to show (default: all).
    task : {"multi_label", "multi_class"}
    batch_size : int

    Returns
    -------
    pandas.DataFrame
        ``helpers.evaluation.outcome_examples``' columns plus ``filename``, ``peak_y``,
        ``peak_x`` and ``heatmap`` (None for an image that could not be read), for
        ``helpers.plots.plot_outcome_gallery``.
    """
    filenames = [os.fspath(name) for name in filenames]
    if len(filenames) != len(np.asarray(y_prob)):
        raise ValueError(f"filenames: expected {len(np.asarray(y_prob))} paths (one per row of "
                         f"y_prob), got {len(filenames)}")
    cases = outcome_examples(y_true, y_prob, classes, thresholds, n, labels, task)
    cases["filename"] = [filenames[sample] for sample in cases["sample"]]
    cam = model_or_cam if isinstance(model_or_cam, GradCAM) else \
        GradCAM(model_or_cam, classes=classes)
    table = explain_files(cam, cases["filename"].tolist(), [[label] for label in cases["label"]],
                          batch_size)
    for item in table.attrs["skipped"]:
        warn(f"{item['path']}: not explained ({item['reason']})")
    found = table.set_index("image")
    cases["peak_y"] = [found["peak_y"].get(row, np.nan) for row in range(len(cases))]
    cases["peak_x"] = [found["peak_x"].get(row, np.nan) for row in range(len(cases))]
    cases["heatmap"] = [found["heatmap"].get(row) for row in range(len(cases))]
    return cases


# --------------------------------------------------------------------------- pointing game
def box_fractions(boxes, convention="voc"):
    """Pixel boxes as fractions ``ymin, xmin, ymax, xmax`` of the image height and width.

    Parameters
    ----------
    boxes : pandas.DataFrame
        Columns ``filename``, ``label``, ``xmin``, ``ymin``, ``xmax``, ``ymax``, ``width`` and
        ``height`` (``helpers.data.voc_boxes``, ``helpers.datasets.generate.shape_boxes``).
    convention : {"voc", "edges"}, default="voc"
        ``"voc"``: 1-based pixel numbers, both ends inside the box (VOC XML); ``"edges"``:
        0-based pixel edges, the box covering columns ``xmin`` to ``xmax - 1``.

    Returns
    -------
    pandas.DataFrame
        ``filename``, ``label``, ``ymin``, ``xmin``, ``ymax``, ``xmax`` in [0, 1]. Rows
        without a usable image size are left out, with a warning.
    """
    if convention not in BOX_CONVENTIONS:
        raise ValueError(f"convention: expected one of {BOX_CONVENTIONS}, got {convention!r}")
    needed = ["filename", "label", "xmin", "ymin", "xmax", "ymax", "width", "height"]
    missing = [column for column in needed if column not in getattr(boxes, "columns", [])]
    if missing:
        raise ValueError(f"boxes: expected the columns {needed}, missing {missing}")
    width = pd.to_numeric(boxes["width"], errors="coerce").astype(float)
    height = pd.to_numeric(boxes["height"], errors="coerce").astype(float)
    usable = (width > 0) & (height > 0)
    if not usable.all():
        warn(f"{int((~usable).sum())} box(es) without a usable image size left out, e.g. "
             f"{boxes.loc[~usable, 'filename'].iloc[0]}")
    shift = 1.0 if convention == "voc" else 0.0

    def share(column, total, offset=0.0):
        return ((boxes[column].astype(float) - offset) / total).clip(0.0, 1.0)[usable]

    return pd.DataFrame({
        "filename": boxes["filename"][usable].astype(str), "label": boxes["label"][usable],
        "ymin": share("ymin", height, shift), "xmin": share("xmin", width, shift),
        "ymax": share("ymax", height), "xmax": share("xmax", width),
    }).reset_index(drop=True)


def _inside(point, box, margin):
    y, x = point
    return bool(box[0] - margin <= y <= box[2] + margin and box[1] - margin <= x <= box[3] + margin)


def pointing_game(points, boxes, margin=DEFAULT_MARGIN):
    """Whether each peak falls inside a box of its label, and whether the image centre would.

    Parameters
    ----------
    points : pandas.DataFrame
        Columns ``filename``, ``label``, ``peak_y`` and ``peak_x`` (fractions), such as
        :func:`explain_files` gives for the correctly predicted labels.
    boxes : pandas.DataFrame
        :func:`box_fractions` of the same images.
    margin : float, default=0.05
        Each box grows by this share of the image height (top and bottom) and width (left
        and right).

    Returns
    -------
    pandas.DataFrame
        ``points`` with ``n_boxes`` (boxes of that label in the image), ``hit`` (the peak is
        inside one; False for an empty map), ``centre_hit`` (the centre is) and
        ``other_label`` (when the peak misses its label's boxes: the label of another box that
        holds it; missing otherwise). Rows with ``n_boxes == 0`` count in neither game.
    """
    missing = [column for column in ("filename", "label", "peak_y", "peak_x")
               if column not in getattr(points, "columns", [])]
    if missing:
        raise ValueError(f"points: expected the columns filename, label, peak_y, peak_x; "
                         f"missing {missing}")
    if not 0 <= margin < 0.5:
        raise ValueError(f"margin: expected a share of the image in [0, 0.5), got {margin!r}")
    by_image = {}
    for row in boxes.itertuples(index=False):
        by_image.setdefault(str(row.filename), []).append(
            (row.label, (row.ymin, row.xmin, row.ymax, row.xmax)))
    counts, hits, centre_hits, others = [], [], [], []
    for row in points.itertuples(index=False):
        image_boxes = by_image.get(str(row.filename), [])
        own = [box for label, box in image_boxes if label == row.label]
        peak = (row.peak_y, row.peak_x)
        hit = bool(np.all(np.isfinite(peak))) and any(_inside(peak, box, margin) for box in own)
        other = None
        if not hit and np.all(np.isfinite(peak)):
            other = next((label for label, box in image_boxes
                          if label != row.label and _inside(peak, box, margin)), None)
        counts.append(len(own))
        hits.append(hit)
        centre_hits.append(any(_inside(CENTRE, box, margin) for box in own))
        others.append(other)
    return points.assign(n_boxes=counts, hit=hits, centre_hit=centre_hits, other_label=others)


def pointing_summary(table):
    """Per label and overall: how often the peak, and the image centre, hit a box of the label.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`pointing_game`.

    Returns
    -------
    pandas.DataFrame
        Indexed by label, with a last row ``"all"``: ``n`` (labels with a box), ``hits``,
        ``hit_rate``, ``centre_rate`` and ``gain`` (``hit_rate - centre_rate``).
    """
    scored = table[table["n_boxes"] > 0]

    def row(part):
        n = len(part)
        hit_rate = part["hit"].mean() if n else np.nan
        centre_rate = part["centre_hit"].mean() if n else np.nan
        return {"n": n, "hits": int(part["hit"].sum()), "hit_rate": hit_rate,
                "centre_rate": centre_rate, "gain": hit_rate - centre_rate}

    rows = {label: row(part) for label, part in scored.groupby("label", sort=True)}
    rows["all"] = row(scored)
    summary = pd.DataFrame.from_dict(rows, orient="index").astype({"n": int, "hits": int})
    summary.index.name = "label"
    return summary
