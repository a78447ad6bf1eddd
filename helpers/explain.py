"""Explain predictions with Grad-CAM: where in the image a model found each label.

Grad-CAM (Selvaraju et al., 2017) weighs a convolutional layer's feature maps by the gradient of
one label's score averaged over the map; HiResCAM (Draelos and Carin, 2020), the default, by the
gradient at each position. They agree when the head averages the map (ResNet50); when it
flattens the map (SmallVGGNet, VGG16), Grad-CAM can light up a region the model does not use.

Heatmaps come at the model's input size, scaled to a maximum of 1 (all zeros when no region
raises the label). A peak is the centre of the map's highest cell as fractions ``(y, x)`` of the
upright image's height and width, NaN for an all-zero map.
"""
import contextlib
import os
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import layers
from scipy.special import expit, softmax

from helpers import warn
from helpers.evaluation import DEFAULT_THRESHOLD, outcome_examples
from helpers.files.images import read_batches

METHODS = ("hirescam", "gradcam")
DEFAULT_MARGIN = 0.05  # the pointing game's tolerance, a share of the image height and width
_CONVOLUTIONS = (layers.Conv2D, layers.SeparableConv2D, layers.DepthwiseConv2D,
                 layers.Conv2DTranspose)
_ACTIVATIONS = {"sigmoid": expit, "softmax": lambda values: softmax(values, axis=-1)}
_MISSING = object()


# --------------------------------------------------------------------------- the model's layers
def _leaf_layers(model):
    """Every layer of ``model`` that is not itself a model (nested models opened), each once."""
    found = {}
    for layer in model.layers:
        for leaf in _leaf_layers(layer) if isinstance(layer, keras.Model) else [layer]:
            if not isinstance(leaf, layers.InputLayer):
                found.setdefault(id(leaf), leaf)
    return list(found.values())


@contextlib.contextmanager
def _swapped(changes):
    """Set ``(layer, attribute, value)`` outside Keras' tracking for the block, then restore."""
    saved = [(layer, name, layer.__dict__.get(name, _MISSING)) for layer, name, _ in changes]
    try:
        for layer, name, value in changes:
            object.__setattr__(layer, name, value)
        yield
    finally:
        for layer, name, original in reversed(saved):
            layer.__dict__.pop(name, None)
            if original is not _MISSING:
                object.__setattr__(layer, name, original)


def _hooked(hooks):
    """Pass each output of the layers of ``(layer, hook)`` pairs through ``hook(layer, output)``."""
    def wrapped(layer, hook, original):
        return lambda *args, **kwargs: hook(layer, original(*args, **kwargs))

    return _swapped([(layer, "call", wrapped(layer, hook, layer.call)) for layer, hook in hooks])


def _trace(model, probe):
    """The leaf layers as they ran on ``probe``, ``(layer, map shape or None)``; the outputs."""
    order = []

    def record(layer, output):
        shape = tuple(getattr(output, "shape", ()))
        order.append((layer, tuple(int(size) for size in shape[1:]) if len(shape) == 4 else None))
        return output

    with _hooked([(layer, record) for layer in _leaf_layers(model)]):
        outputs = model(probe, training=False)
    return order, np.asarray(outputs)


def _choose_layer(order, layer, model_name):
    """``layer`` among the layers that ran; for None, the last 2-D convolution, moved on past
    what follows it at its resolution (activation, normalisation, residual sum)."""
    if layer is None:
        convolutions = [index for index, (candidate, shape) in enumerate(order)
                        if isinstance(candidate, _CONVOLUTIONS) and shape is not None]
        if not convolutions:
            raise ValueError(
                f"model {model_name!r} has no 2-D convolution, so Grad-CAM has no feature map "
                "to weigh; pass layer=<name> of a layer whose output is (height, width, channels)")
        index = convolutions[-1]
        while index + 1 < len(order) and (order[index + 1][1] or ())[:2] == order[index][1][:2]:
            index += 1
        return order[index][0]
    name = layer if isinstance(layer, str) else getattr(layer, "name", None)
    matches = [(candidate, shape) for candidate, shape in order
               if (candidate.name == name if isinstance(layer, str) else candidate is layer)]
    if not matches:
        maps = [candidate.name for candidate, shape in order if shape is not None]
        raise ValueError(f"layer: model {model_name!r} has no layer {name!r}; the last layers "
                         f"with a feature map are {maps[-8:]}")
    if matches[-1][1] is None:
        raise ValueError(f"layer: {name!r} does not output a feature map (height, width, "
                         "channels), so Grad-CAM cannot weigh it; choose a convolutional layer")
    return matches[-1][0]


# --------------------------------------------------------------------------- Grad-CAM
@dataclass
class Explanation:
    """Heatmaps of ``n`` images for ``k`` labels each, arrays (n, k, ...): ``heatmaps``, ``peaks``,
    ``probabilities``, ``labels`` (class indices); ``classes`` (or None), ``layer``, ``method``."""

    heatmaps: np.ndarray
    peaks: np.ndarray
    probabilities: np.ndarray
    labels: np.ndarray
    classes: list
    layer: str
    method: str = "hirescam"

    def label_names(self):
        """``labels`` as names (indices when the classes are unknown), an (n, k) object array."""
        return (self.labels.astype(object) if self.classes is None
                else np.asarray(self.classes, dtype=object)[self.labels])


class GradCAM:
    """HiResCAM or Grad-CAM (``method``) of one Keras image model: the keras-io recipe, and

    - bases nested in the model (ResNet50, VGG16), where a model from the inputs to the layer's
      output fails ("not connected to inputs"): the model runs as it is, in inference mode,
      while the layer's ``call`` hands its output to the tape;
    - the gradient of logits, not of a saturated sigmoid (in float32 a sigmoid of 17 is 1, its
      gradient 0) or softmax: the same maps;
    - one map per label, in batches.

    ``model`` takes images ``(n, height, width, channels)`` in [0, 1] and gives one sigmoid or
    softmax output per class, however its layers are nested. ``layer`` (a name or a layer)
    defaults to the last 2-D convolution with what follows it at the same resolution (ResNet50's
    ``conv5_block3_out``, SmallVGGNet's last BatchNormalization); ``classes`` names the outputs.
    ``map_size`` (the layer's), ``input_size`` (the heatmaps') and ``activation`` (the one taken
    off to differentiate logits, or None) say what is explained.
    """

    def __init__(self, model, layer=None, classes=None, method="hirescam"):
        if method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
        if not isinstance(model, keras.Model):
            raise ValueError(f"model: expected a keras.Model, got {type(model).__name__}")
        shape = model.input_shape
        if isinstance(shape, list) or len(shape) != 4 or None in shape[1:]:
            raise ValueError(f"model {model.name!r}: Grad-CAM needs one image input of a fixed "
                             f"size (None, height, width, channels), got {shape}")
        self.model, self.method, self.activation = model, method, None
        self.input_size, self._channels = (int(shape[1]), int(shape[2])), int(shape[3])
        probe = np.random.default_rng(0).random((2, *self.input_size, self._channels))
        order, outputs = _trace(model, probe.astype("float32"))
        if outputs.ndim != 2:
            raise ValueError(f"model {model.name!r}: expected one output per class, shape "
                             f"(n, n_classes), got {outputs.shape}")
        self.n_classes = int(outputs.shape[1])
        self.classes = None if classes is None else [str(name) for name in classes]
        if self.classes is not None and len(self.classes) != self.n_classes:
            raise ValueError(f"classes: expected {self.n_classes} names (one per output of "
                             f"{model.name!r}), got {len(self.classes)}")
        self.layer = _choose_layer(order, layer, model.name)
        runs = [shape for candidate, shape in order if candidate is self.layer]
        if len(runs) != 1:
            raise ValueError(f"layer {self.layer.name!r} runs {len(runs)} times in one forward "
                             "pass (a shared layer); choose a layer that runs once")
        self.map_size, self._output_layer = runs[0][:2], order[-1][0]
        self.activation = self._logit_activation(probe.astype("float32"), outputs)

    def __repr__(self):
        return (f"GradCAM({self.model.name!r}, {self.method}, layer={self.layer.name!r}, "
                f"map {self.map_size[0]}×{self.map_size[1]}, input "
                f"{self.input_size[0]}×{self.input_size[1]})")

    def __call__(self, images, labels, batch_size=32):
        """An :class:`Explanation` of ``images`` (one or ``n``, at the model's input size, in
        [0, 1] or uint8) for ``labels``: a class name or index explained on every image, a list
        of them, or an ``(n, k)`` table of ``k`` per image."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        images = self._images(images)
        targets = self._targets(labels, len(images))
        n, k = targets.shape
        maps = np.zeros((n, k, *self.map_size), dtype=np.float32)
        probabilities = np.zeros((n, k))
        for start in range(0, n if k else 0, batch_size):
            chunk = slice(start, start + batch_size)
            maps[chunk], probabilities[chunk] = self._batch(images[chunk], targets[chunk])
        tops = maps.max(axis=(2, 3), keepdims=True, initial=0.0)
        maps = np.divide(maps, tops, out=np.zeros_like(maps), where=tops > 0)
        return Explanation(_enlarge(maps, self.input_size), _peaks(maps), probabilities,
                           targets, self.classes, self.layer.name, self.method)

    def explain_lists(self, images, label_lists, batch_size=32):
        """Heatmaps for a list of labels per image (empty allowed): a dict per image with
        ``labels``, ``heatmaps`` (k_i, height, width), ``peaks`` and ``probabilities``."""
        images = self._images(images)
        label_lists = [list(labels) for labels in label_lists]
        if len(label_lists) != len(images):
            raise ValueError(f"label_lists: expected {len(images)} lists (one per image), got "
                             f"{len(label_lists)}")
        width = max(map(len, label_lists), default=0)
        # Shorter rows repeat their first label: a little wasted work, one vectorised pass.
        table = [[*labels, *[labels[0] if labels else 0] * (width - len(labels))]
                 for labels in label_lists]
        explained = self(images, table, batch_size=batch_size)
        return [{"labels": labels, "heatmaps": explained.heatmaps[row, :len(labels)],
                 "peaks": explained.peaks[row, :len(labels)],
                 "probabilities": explained.probabilities[row, :len(labels)]}
                for row, labels in enumerate(label_lists)]

    def _batch(self, images, targets):
        """Unscaled maps (n, k, map height, map width) and the outputs explained: the recipe."""
        captured = []

        def keep(layer, output):
            tape.watch(output)
            captured.append(output)
            return output

        with tf.GradientTape(persistent=True) as tape:
            with _hooked([(self.layer, keep)]), self._logits():
                outputs = self.model(images, training=False)
            scores = self._scores(outputs, targets)
        features, maps = captured[0], []
        for score in scores:
            gradients = tape.gradient(score, features)
            if gradients is None:
                raise ValueError(f"layer {self.layer.name!r} does not lead to the model's output")
            if self.method == "gradcam":  # one weight per channel: the mean gradient
                gradients = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
            maps.append(tf.nn.relu(tf.reduce_sum(features * gradients, axis=-1)))
        values = np.asarray(outputs, dtype=np.float64)
        if self.activation is not None:
            values = _ACTIVATIONS[self.activation](values)
        return tf.stack(maps, axis=1).numpy(), np.take_along_axis(values, targets, axis=1)

    def _scores(self, outputs, targets):
        """Per column of ``targets``, the sum over the images of the score to differentiate."""
        scores = []
        for slot in range(targets.shape[1]):
            chosen = tf.one_hot(targets[:, slot], self.n_classes, dtype=outputs.dtype)
            score = tf.reduce_sum(outputs * chosen, axis=1)
            if self.activation == "softmax":  # minus the others, weighted by their share
                others = tf.where(chosen > 0, tf.constant(-np.inf, outputs.dtype), outputs)
                share = tf.stop_gradient(tf.nn.softmax(others, axis=1))
                score -= tf.reduce_sum(share * outputs, axis=1)
            scores.append(tf.reduce_sum(score))
        return scores

    def _logit_activation(self, probe, outputs):
        """``"sigmoid"`` or ``"softmax"`` when the output layer's activation can be taken off."""
        known = {id(getattr(keras.activations, name)): name for name in _ACTIVATIONS}
        self.activation = known.get(id(getattr(self._output_layer, "activation", None)))
        if self.activation is None or (self.activation == "softmax" and self.n_classes < 2):
            return None
        with self._logits():
            logits = np.asarray(self.model(probe, training=False))
        same = np.allclose(_ACTIVATIONS[self.activation](logits), outputs, atol=1e-5)
        return self.activation if same else None  # not when a later layer changes the output

    def _logits(self):
        """While the block runs, the output layer gives logits (when ``activation`` is set)."""
        linear = (self._output_layer, "activation", keras.activations.linear)
        return _swapped([linear] if self.activation else [])

    def _images(self, images):
        array = np.asarray(images)
        array = array[None] if array.ndim == 3 else array
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
        indices = np.vectorize(self._index, otypes=[np.int64])(array)
        if indices.ndim < 2:
            indices = np.broadcast_to(indices.reshape(1, -1), (n_images, indices.size))
        return np.ascontiguousarray(indices, dtype=np.int64)


def _peaks(maps):
    """Centre of each map's highest cell, as fractions (y, x); NaN for an all-zero map."""
    n, k, height, width = maps.shape
    flat = maps.reshape(n, k, height * width)
    if not flat.size:
        return np.full((n, k, 2), np.nan)
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
    enlarged = tf.image.resize(maps.reshape(n * k, height, width, 1), size, method="bilinear")
    return np.clip(enlarged.numpy().reshape(n, k, *size), 0.0, 1.0).astype(np.float32)


def grad_cam(model, images, labels, layer=None, classes=None, batch_size=32, method="hirescam"):
    """Heatmaps in one call: ``GradCAM(model, layer, classes, method)(images, labels)``."""
    return GradCAM(model, layer=layer, classes=classes, method=method)(
        images, labels, batch_size=batch_size)


# --------------------------------------------------------------------------- files and galleries
def explain_files(model_or_cam, paths, labels, batch_size=32, layer=None, classes=None):
    """Heatmaps of image files: a table with one row per image and label.

    ``model_or_cam`` is a :class:`GradCAM` or a model (explained with ``layer`` and
    ``classes``); ``labels`` holds a list of labels per path, or one list for every path (an
    empty list explains nothing). Images are read as for prediction; those that cannot be are
    listed in ``attrs["skipped"]`` (``path``, ``reason``). Columns: ``image`` (position in
    ``paths``), ``filename``, ``label``, ``probability``, ``peak_y``, ``peak_x``, ``heatmap``.
    """
    cam = model_or_cam if isinstance(model_or_cam, GradCAM) else \
        GradCAM(model_or_cam, layer=layer, classes=classes)
    paths = [os.fspath(path) for path in paths]
    if labels and all(not isinstance(item, (list, tuple, np.ndarray)) for item in labels):
        labels = [list(labels)] * len(paths)
    if len(labels) != len(paths):
        raise ValueError(f"labels: expected one list of labels per path ({len(paths)}), got "
                         f"{len(labels)}")
    rows, failed = [], []
    wanted = [path if len(labels[index]) else None for index, path in enumerate(paths)]
    for batch in read_batches(wanted, cam.input_size, batch_size, failed):
        images = np.stack([image for _, image in batch])
        results = cam.explain_lists(images, [labels[index] for index, _ in batch], batch_size)
        for (index, _), result in zip(batch, results):
            for slot, label in enumerate(result["labels"]):
                name = cam.classes[cam._index(label)] if cam.classes else cam._index(label)
                rows.append((index, paths[index], name, float(result["probabilities"][slot]),
                             *map(float, result["peaks"][slot]), result["heatmaps"][slot]))
    table = pd.DataFrame(rows, columns=["image", "filename", "label", "probability", "peak_y",
                                        "peak_x", "heatmap"])
    table.attrs["skipped"] = [{"path": paths[index], "reason": reason} for index, reason in failed]
    return table


def outcome_cases(model_or_cam, filenames, y_true, y_prob, classes, thresholds=DEFAULT_THRESHOLD,
                  n=2, labels=None, task="multi_label", batch_size=32):
    """``helpers.evaluation.outcome_examples`` plus ``filename`` (``filenames`` has one per row
    of ``y_prob``), ``peak_y``, ``peak_x`` and ``heatmap`` (None when unreadable) per case."""
    filenames = [os.fspath(name) for name in filenames]
    if len(filenames) != len(np.asarray(y_prob)):
        raise ValueError(f"filenames: expected {len(np.asarray(y_prob))} paths (one per row of "
                         f"y_prob), got {len(filenames)}")
    cases = outcome_examples(y_true, y_prob, classes, thresholds, n, labels, task)
    cases["filename"] = [filenames[sample] for sample in cases["sample"]]
    table = explain_files(model_or_cam, cases["filename"].tolist(),
                          [[label] for label in cases["label"]], batch_size, classes=classes)
    for item in table.attrs["skipped"]:
        warn(f"{item['path']}: not explained ({item['reason']})")
    found = table.set_index("image")
    for column, unread in (("peak_y", np.nan), ("peak_x", np.nan), ("heatmap", None)):
        cases[column] = [found[column].get(row, unread) for row in range(len(cases))]
    return cases


# --------------------------------------------------------------------------- pointing game
def box_fractions(boxes, convention="voc"):
    """Pixel boxes (``helpers.data.voc_boxes``, ``helpers.datasets.generate.shape_boxes``) as
    fractions ``ymin, xmin, ymax, xmax`` of the image height and width.

    ``convention`` ``"voc"``: 1-based pixels, both ends inside the box (VOC XML); ``"edges"``:
    0-based pixel edges, the box covering columns ``xmin`` to ``xmax - 1``. Rows without a
    usable ``width`` and ``height`` are left out, with a warning.
    """
    if convention not in ("voc", "edges"):
        raise ValueError(f"convention: expected one of ('voc', 'edges'), got {convention!r}")
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
    fractions = {"filename": boxes["filename"].astype(str), "label": boxes["label"]}
    for column, total, offset in [("ymin", height, shift), ("xmin", width, shift),
                                  ("ymax", height, 0.0), ("xmax", width, 0.0)]:
        fractions[column] = ((boxes[column].astype(float) - offset) / total).clip(0.0, 1.0)
    return pd.DataFrame(fractions)[usable].reset_index(drop=True)


def pointing_game(points, boxes, margin=DEFAULT_MARGIN):
    """Whether each peak falls inside a box of its label, and whether the image centre would.

    ``points``: :func:`explain_files`' columns ``filename``, ``label``, ``peak_y`` and
    ``peak_x``; ``boxes``: :func:`box_fractions` of the images, each grown by ``margin`` of the
    image on every side. Adds ``n_boxes`` (a row with 0 counts in neither game), ``hit`` (False
    for an empty map), ``centre_hit`` and ``other_label`` (another label's box holding a miss).
    """
    needed = ["filename", "label", "peak_y", "peak_x"]
    missing = [column for column in needed if column not in getattr(points, "columns", [])]
    if missing:
        raise ValueError(f"points: expected the columns {', '.join(needed)}; missing {missing}")
    if not 0 <= margin < 0.5:
        raise ValueError(f"margin: expected a share of the image in [0, 0.5), got {margin!r}")
    by_image = {}
    for row in boxes.itertuples(index=False):
        by_image.setdefault(str(row.filename), []).append(
            (row.label, (row.ymin, row.xmin, row.ymax, row.xmax)))
    scored = [_point(row, by_image.get(str(row.filename), []), margin)
              for row in points.itertuples(index=False)]
    columns = ["n_boxes", "hit", "centre_hit", "other_label"]
    return points.assign(**{name: [score[place] for score in scored]
                            for place, name in enumerate(columns)})


def _point(row, image_boxes, margin):
    """``(n_boxes, hit, centre_hit, other_label)`` of one row of :func:`pointing_game`."""
    def inside(y, x, box):
        return bool(box[0] - margin <= y <= box[2] + margin
                    and box[1] - margin <= x <= box[3] + margin)

    own = [box for label, box in image_boxes if label == row.label]
    found = bool(np.isfinite(row.peak_y) and np.isfinite(row.peak_x))
    hit = found and any(inside(row.peak_y, row.peak_x, box) for box in own)
    misses = [label for label, box in image_boxes if found and not hit
              and label != row.label and inside(row.peak_y, row.peak_x, box)]
    return len(own), hit, any(inside(0.5, 0.5, box) for box in own), next(iter(misses), None)


def pointing_summary(table):
    """Per label of :func:`pointing_game`'s table and for ``"all"``: ``n`` (labels with a box),
    ``hits``, ``hit_rate``, ``centre_rate`` and ``gain`` (``hit_rate - centre_rate``)."""
    scored = table[table["n_boxes"] > 0]
    parts = [*scored.groupby("label", sort=True), ("all", scored)]
    summary = pd.DataFrame(
        [{"n": len(part), "hits": int(part["hit"].sum()),
          "hit_rate": part["hit"].astype(float).mean(),
          "centre_rate": part["centre_hit"].astype(float).mean()} for _, part in parts],
        index=pd.Index([label for label, _ in parts], name="label"))
    return summary.assign(gain=summary["hit_rate"] - summary["centre_rate"])
