"""Model builders: the pixel MLP, SmallVGGNet and its global max-pooling variant, ResNet50 and
VGG16 on pretrained bases, and the steps of transfer learning (cached features, head, fine-tuning).

Every model takes images as the pipeline yields them (float32 RGB in [0, 1]) and preprocesses
inside itself, so one pipeline feeds them all and a saved model carries its preprocessing.
Shared parameters: ``input_shape`` (height, width, channels); ``n_classes`` (one output per
label); ``final_activation``, the only thing that changes with the task: ``"sigmoid"`` for
multi-label (each label its own yes/no question), ``"softmax"`` for multi-class (one label per
image); ``output_bias``, the output layer's initial bias, one float or one per class (e.g.
``helpers.imbalance.prior_bias(y)``, so the first predictions match the label frequencies);
``weights`` of a pretrained base without its top: ``None`` (random), ``"imagenet"`` or a
``.h5`` file (``helpers.files.weights.resolve_weights``).
"""
import keras
import numpy as np
from keras import layers

from helpers.files.weights import IMAGENET_WEIGHTS, load_weights, resolve_weights

_FINAL_ACTIVATIONS = ("sigmoid", "softmax", "linear", None)
# Channel means of ImageNet in B, G, R order, as used by Caffe-trained ResNet50 and VGG16.
_IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
# Keras' default momentum (0.99) needs several hundred steps before the moving statistics match
# the batches: most of a run on a few thousand images, and predictions drift from training's.
_BATCH_NORM_MOMENTUM = 0.9
_MIN_INPUT_SIZE = 32
# The tutorial's dropout rates: after each convolution block, and before the output layer.
SMALLVGGNET_DROPOUT = (0.25, 0.5)


def _check_common(input_shape, n_classes, final_activation):
    input_shape = tuple(int(size) for size in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}")
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    if final_activation not in _FINAL_ACTIVATIONS:
        raise ValueError(f"final_activation must be one of {_FINAL_ACTIVATIONS}, "
                         f"got {final_activation!r}")
    return input_shape


def _set_output_bias(dense, output_bias, n_classes):
    if output_bias is None:
        return
    bias = np.asarray(output_bias, dtype="float32").reshape(-1)
    if bias.size == 1:
        bias = np.full(n_classes, bias.item(), dtype="float32")
    if bias.shape != (n_classes,):
        raise ValueError(f"output_bias must have one value per class ({n_classes}), "
                         f"got {bias.size}")
    dense.bias.assign(bias)


def build_mlp(input_shape=(32, 32, 3), n_classes=3, final_activation="softmax"):
    """Build the flattened-pixel baseline: Flatten → Dense 1024 → Dense 512 → output."""
    input_shape = _check_common(input_shape, n_classes, final_activation)
    return keras.Sequential([
        keras.Input(shape=input_shape, name="image"),
        layers.Flatten(),
        layers.Dense(1024, activation="sigmoid"),
        layers.Dense(512, activation="sigmoid"),
        layers.Dense(n_classes, activation=final_activation, name="predictions"),
    ], name="mlp")


def _smallvggnet(name, pooling, input_shape, n_classes, final_activation, output_bias, dropout):
    """SmallVGGNet's layers, top to bottom; ``pooling`` turns the last feature map into a vector."""
    input_shape = _check_common(input_shape, n_classes, final_activation)
    if min(input_shape[:2]) < 8:
        raise ValueError(f"SmallVGGNet needs images of at least 8x8, got {input_shape}")
    block_rate, head_rate = (float(rate) for rate in dropout)
    if not (0 <= block_rate < 1 and 0 <= head_rate < 1):
        raise ValueError(f"dropout must be two rates in [0, 1), got {dropout!r}")

    def conv(filters):  # CONV => RELU => BN
        return [layers.Conv2D(filters, (3, 3), padding="same"), layers.Activation("relu"),
                layers.BatchNormalization(momentum=_BATCH_NORM_MOMENTUM)]

    def pool():  # POOL => DROPOUT; a rate of 0 leaves the Dropout layer out
        return [layers.MaxPooling2D(pool_size=(2, 2))] + (
            [layers.Dropout(block_rate)] if block_rate else [])

    output = layers.Dense(n_classes, activation=final_activation, name="predictions")
    model = keras.Sequential([
        keras.Input(shape=input_shape, name="image"),
        *conv(32), *pool(),
        *conv(64), *conv(64), *pool(),
        *conv(128), *conv(128), *conv(128), *pool(),
        pooling,  # Flatten, or GlobalMaxPooling2D in the variant
        layers.Dense(512), layers.Activation("relu"),
        layers.BatchNormalization(momentum=_BATCH_NORM_MOMENTUM),
        *([layers.Dropout(head_rate)] if head_rate else []),
        output,
    ], name=name)
    _set_output_bias(output, output_bias, n_classes)
    return model


def build_smallvggnet(input_shape=(64, 64, 3), n_classes=3, final_activation="sigmoid",
                      output_bias=None, dropout=SMALLVGGNET_DROPOUT):
    """Build SmallVGGNet: three VGG-style blocks (32, 64x2, 128x3 filters) and a Dense 512 head;
    ``dropout``: the rates after each block and before the output layer (0: no such layer)."""
    return _smallvggnet("smallvggnet", layers.Flatten(), input_shape, n_classes,
                        final_activation, output_bias, dropout)


def build_smallvggnet_gmp(input_shape=(64, 64, 3), n_classes=3, final_activation="sigmoid",
                          output_bias=None, dropout=(0, 0)):
    """Build SmallVGGNet's convolutions with a global max-pooling head and no dropout.

    ``Flatten`` gives every position of the last feature map its own weights, so an object is
    learnt again at every place; the global maximum asks only *whether* a feature is anywhere,
    as a label does: 66,000 head weights instead of 4.2 million (64×64), faster learning.
    """
    return _smallvggnet("smallvggnet_gmp", layers.GlobalMaxPooling2D(), input_shape, n_classes,
                        final_activation, output_bias, dropout)


@keras.saving.register_keras_serializable(package="helpers")
class ImageNetPreprocessing(layers.Layer):
    """ResNet50's ``preprocess_input(x * 255)`` as a layer: saved with the model, safe to load."""

    def call(self, inputs):
        bgr = keras.ops.flip(inputs * 255.0, axis=-1)
        return bgr - keras.ops.convert_to_tensor(_IMAGENET_BGR_MEAN, dtype=bgr.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


def _body(base):
    return [layer for layer in base.layers if not isinstance(layer, keras.layers.InputLayer)]


def _freeze(base, trainable_layers=0):
    """Freeze ``base`` except its top ``trainable_layers`` layers; BatchNorm stays frozen."""
    base.trainable = True
    body = _body(base)
    if trainable_layers < 0 or trainable_layers > len(body):
        raise ValueError(f"trainable_layers must be between 0 and {len(body)} for "
                         f"{base.name}, got {trainable_layers}")
    cut = len(body) - trainable_layers
    for index, layer in enumerate(body):
        layer.trainable = index >= cut and not isinstance(layer, layers.BatchNormalization)
    if trainable_layers == 0:
        base.trainable = False


def unfreeze_top(model, trainable_layers, base_name=None):
    """Unfreeze the top ``trainable_layers`` layers of the base inside ``model``, in place;
    BatchNormalization stays frozen. Recompile afterwards, with a small learning rate."""
    _freeze(_find_base(model, base_name), trainable_layers)
    return model


def _find_base(model, base_name=None):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            # A base is named by the caller, or is an ImageNet architecture, or sits in the
            # extractor named after it ("smallvggnet" in "smallvggnet_features").
            if layer.name == base_name or (base_name is None and (
                    layer.name in IMAGENET_WEIGHTS or model.name == f"{layer.name}_features")):
                return layer
            try:
                return _find_base(layer, base_name)
            except ValueError:
                pass
    raise ValueError(f"model {model.name!r} holds no pretrained base named "
                     f"{base_name or ' or '.join(IMAGENET_WEIGHTS)} (nor an '<name>_features' "
                     "extractor)")


def split_for_fine_tuning(model, trainable_layers, base_name=None):
    """``unfreeze_top``, then cut ``model`` below the unfrozen layers into ``(bottom, top)``.

    ``extract_features(bottom, ...)`` runs once; fitting ``top`` on it fine-tunes ``model`` (they
    share layers). Cut between blocks: ResNet50 33 (stage ``conv5``), VGG16 4 (block 5).
    """
    base = _find_base(model, base_name)
    body = _body(base)
    if not 1 <= trainable_layers < len(body):
        raise ValueError(f"trainable_layers must be between 1 and {len(body) - 1} for "
                         f"{base.name}, got {trainable_layers}")
    _freeze(base, trainable_layers)
    cut = body[len(body) - trainable_layers - 1]
    try:
        base_top = keras.Model(cut.output, base.output, name=f"{base.name}_top")
    except ValueError as error:
        boundaries = [len(body) - 1 - index for index, layer in enumerate(body[:-1])
                      if layer.name.endswith(("_out", "pool"))]
        raise ValueError(
            f"trainable_layers={trainable_layers} cuts {base.name} inside a block (below "
            f"{cut.name!r}, whose output is not all the layers above it need); choose one of "
            f"{sorted(boundaries)[:12]}") from error
    base_bottom = keras.Model(base.input, cut.output, name=f"{base.name}_bottom")
    # model = image → extractor (preprocessing → base → ...) → head, or holds the base
    extractor = next(layer for layer in model.layers if layer is base or (
        isinstance(layer, keras.Model) and any(inner is base for inner in _all_layers(layer))))
    after_extractor = model.layers[model.layers.index(extractor) + 1:]
    inner = [extractor] if extractor is base else _body(extractor)
    position = next(index for index, layer in enumerate(inner) if layer is base)

    images = keras.Input(shape=model.input_shape[1:], name="image")
    bottom = keras.Model(images, base_bottom(_chain(inner[:position], images)),
                         name=f"{model.name}_bottom")
    activations = keras.Input(shape=cut.output.shape[1:], name="activations")
    y = _chain(inner[position + 1:] + after_extractor, base_top(activations))
    return bottom, keras.Model(activations, y, name=f"{model.name}_top")


def _chain(chained, x):
    for layer in chained:
        x = layer(x)
    return x


def _frozen_extractor(base, input_shape, name, weights_source, preprocessing=None):
    """``image → [preprocessing] → base`` named ``f"{name}_features"``, the base frozen."""
    base.trainable = False
    inputs = keras.Input(shape=input_shape, name="image")
    x = preprocessing(inputs) if preprocessing is not None else inputs
    extractor = keras.Model(inputs, base(x, training=False), name=f"{name}_features")
    extractor.weights_source = weights_source
    return extractor


def convolutional_base(model, input_shape=None, pooling="avg", name=None):
    """Turn a trained CNN such as SmallVGGNet into a frozen extractor ``f"{name}_features"``.

    A copy of the layers before the first ``Flatten`` or ``Dense`` without ``Dropout`` (a nested
    ``training=False`` does not keep it off while fine-tuning), then ``"avg"`` or ``"max"`` pooling.
    """
    if pooling not in ("avg", "max"):
        raise ValueError(f"pooling must be 'avg' or 'max', got {pooling!r}")
    name = name or model.name
    input_shape = tuple(input_shape or model.input_shape[1:])
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for layer in model.layers:
        if isinstance(layer, (keras.layers.InputLayer, layers.Dropout)):
            continue
        if isinstance(layer, (layers.Flatten, layers.Dense, layers.GlobalAveragePooling2D,
                              layers.GlobalMaxPooling2D)):
            break
        # A copy: the original's layers already belong to its own graph.
        copy = layer.__class__.from_config(layer.get_config())
        x = copy(x)
        copy.set_weights(layer.get_weights())
    if x is inputs:
        raise ValueError(f"model {model.name!r} has no layers before its first Flatten or Dense")
    pool = layers.GlobalAveragePooling2D if pooling == "avg" else layers.GlobalMaxPooling2D
    base = keras.Model(inputs, pool(name=f"{pooling}_pool")(x), name=name)
    return _frozen_extractor(base, input_shape, name, f"model {model.name}")


def _applications_base(architecture, input_shape, weights_path, pooling):
    if min(input_shape[:2]) < _MIN_INPUT_SIZE or input_shape[2] != 3:
        raise ValueError(f"{architecture} needs RGB images of at least {_MIN_INPUT_SIZE}x"
                         f"{_MIN_INPUT_SIZE}, got input_shape={input_shape}")
    application = {"resnet50": keras.applications.ResNet50,
                   "vgg16": keras.applications.VGG16}[architecture]
    # weights=None, then load_weights: resolve_weights has found or downloaded the file and
    # said which; Keras would download without a word and fail with a traceback offline.
    base = application(include_top=False, weights=None, input_shape=input_shape, pooling=pooling)
    base.name = architecture
    if weights_path is not None:
        load_weights(base, weights_path)
    return base


def build_feature_extractor(architecture="resnet50", input_shape=(64, 64, 3), weights=None,
                            pooling="avg"):
    """Build a frozen ``"resnet50"`` or ``"vgg16"`` base and its preprocessing: images → features,
    run once by ``extract_features`` for a ``build_head`` to train on (on a CPU far faster than
    the base at every epoch); ``attach_head`` joins both."""
    if architecture not in IMAGENET_WEIGHTS:
        raise ValueError(f"architecture must be one of {sorted(IMAGENET_WEIGHTS)}, "
                         f"got {architecture!r}")
    input_shape = _check_common(input_shape, 1, None)
    weights_path, weights_source = resolve_weights(weights, architecture)
    base = _applications_base(architecture, input_shape, weights_path, pooling)
    return _frozen_extractor(base, input_shape, architecture, weights_source,
                             ImageNetPreprocessing(name="imagenet_preprocessing"))


def extract_features(extractor, dataset, verbose=0):
    """Run ``extractor`` over ``(images, labels)`` batches (built with ``shuffle=False``, no
    augmentation: aligned, repeatable features): float32 ``(features, labels)`` arrays."""
    features, labels = [], []
    for batch in dataset:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("extract_features needs a dataset of (images, labels) batches")
        features.append(np.asarray(extractor.predict_on_batch(batch[0])))
        labels.append(np.asarray(batch[1]))
        if verbose:
            print(f"\rextracted {sum(len(f) for f in features)} images", end="")
    if verbose:
        print()
    if not features:
        raise ValueError("extract_features got an empty dataset")
    return np.concatenate(features).astype("float32"), np.concatenate(labels).astype("float32")


def build_head(feature_shape, n_classes, final_activation="sigmoid", dropout=0.0,
               output_bias=None, name="head"):
    """Build the head on pooled features: [Dropout →] one Dense layer, as in the VOC2012 tutorial;
    ``feature_shape`` is one feature vector's (2048 for ResNet50; a feature map is flattened)."""
    if isinstance(feature_shape, (int, np.integer)):
        feature_shape = (int(feature_shape),)
    _check_common((1, 1, 1), n_classes, final_activation)
    inputs = keras.Input(shape=tuple(feature_shape), name="features")
    x = layers.Flatten()(inputs) if len(feature_shape) > 1 else inputs
    if dropout:
        x = layers.Dropout(dropout)(x)
    output = layers.Dense(n_classes, activation=final_activation, name="predictions")
    head = keras.Model(inputs, output(x), name=name)
    _set_output_bias(output, output_bias, n_classes)
    return head


def attach_head(extractor, head, name=None):
    """Join a feature extractor and a (trained) head into one model named after the architecture."""
    inputs = keras.Input(shape=extractor.input_shape[1:], name="image")
    outputs = head(extractor(inputs, training=False))
    architecture = extractor.name.replace("_features", "")
    model = keras.Model(inputs, outputs, name=name or architecture)
    model.weights_source = getattr(extractor, "weights_source", None)
    return model


def build_resnet50(input_shape=(64, 64, 3), n_classes=20, weights=None, trainable_layers=0,
                   final_activation="sigmoid", output_bias=None, dropout=0.0):
    """Build ResNet50 (average pooling, frozen but the top ``trainable_layers``) with a Dense
    head (``dropout`` before it); ImageNet preprocessing inside."""
    extractor = build_feature_extractor("resnet50", input_shape, weights, pooling="avg")
    head = build_head(extractor.output_shape[1:], n_classes, final_activation, dropout,
                      output_bias)
    model = attach_head(extractor, head, name="resnet50")
    unfreeze_top(model, trainable_layers)
    return model


def build_vgg16(input_shape=(64, 64, 3), n_classes=20, weights=None, frozen_layers=15,
                final_activation="sigmoid", output_bias=None):
    """Build VGG16 with the VGG16 write-up's top: Flatten, Dense 256 (he_normal), BN, Dropout .5;
    ``frozen_layers`` stay frozen (15, the input counted as in the original: blocks 1-4)."""
    _check_common(input_shape, n_classes, final_activation)
    extractor = build_feature_extractor("vgg16", input_shape, weights, pooling=None)
    output = layers.Dense(n_classes, activation=final_activation, name="predictions")
    head_inputs = keras.Input(shape=extractor.output_shape[1:], name="features")
    x = layers.Flatten()(head_inputs)
    x = layers.Dense(256, activation="relu", kernel_initializer="he_normal")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Dropout(0.5)(x)
    head = keras.Model(head_inputs, output(x), name="head")
    _set_output_bias(output, output_bias, n_classes)
    model = attach_head(extractor, head, name="vgg16")
    base = _find_base(model, "vgg16")
    # Keras' VGG16 lists its input as layer 0, like the original's `model.layers[:15]`.
    if not 0 <= frozen_layers <= len(base.layers):
        raise ValueError(f"frozen_layers must be between 0 and {len(base.layers)}, "
                         f"got {frozen_layers}")
    _freeze(base, len(base.layers) - max(frozen_layers, 1))
    return model


BUILDERS = {"mlp": build_mlp, "smallvggnet": build_smallvggnet,
            "smallvggnet_gmp": build_smallvggnet_gmp, "resnet50": build_resnet50,
            "vgg16": build_vgg16}


def build_model(name, input_shape, n_classes, final_activation="sigmoid", **options):
    """Build one of the ``BUILDERS`` by name (the CLI's ``--model``), ``options`` to the builder."""
    if name not in BUILDERS:
        raise ValueError(f"model must be one of {sorted(BUILDERS)}, got {name!r}")
    return BUILDERS[name](input_shape=input_shape, n_classes=n_classes,
                          final_activation=final_activation, **options)


def describe_preprocessing(model):
    """What a model expects and the preprocessing inside it, for ``labels.json``."""
    inside = []
    for layer in _all_layers(model):
        if isinstance(layer, ImageNetPreprocessing):
            inside.append("imagenet caffe: x*255, RGB->BGR, minus ImageNet BGR mean")
        elif isinstance(layer, layers.Rescaling):
            inside.append(f"rescaling(scale={layer.scale}, offset={layer.offset})")
    return {"color_mode": "rgb", "rescale": 1 / 255, "input_range": [0.0, 1.0],
            "resize": "area averaging to shrink, bilinear to enlarge (per axis)",
            "exif_transpose": True, "in_model": inside}


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
