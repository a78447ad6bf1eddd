"""Model builders: the pixel MLP, SmallVGGNet (and its global max-pooling variant), and
ResNet50 / VGG16 transfer models.

Every model takes images as the pipeline yields them (float32 RGB in [0, 1]) and does any
further preprocessing inside itself, so one pipeline feeds them all and a saved model
carries its own preprocessing.

The output layer is the only thing that changes with the task:

- multi-label: ``final_activation="sigmoid"`` (each label is its own yes/no question),
- multi-class: ``final_activation="softmax"`` (exactly one label per image).
"""
import contextlib
import hashlib
import os
import socket
import urllib.error
from pathlib import Path

import keras
import numpy as np
from keras import layers

from helpers import warn

FINAL_ACTIVATIONS = ("sigmoid", "softmax", "linear", None)

# Keras' own file names, addresses and published hashes of the ImageNet weights without the
# classifier top (``keras/src/applications/resnet.py`` and ``vgg16.py``). ``origin`` may be
# pointed at a mirror; the hash still has to match.
IMAGENET_WEIGHTS = {
    "resnet50": {
        "file": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "origin": "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "file_hash": "4d473c1dd8becc155b73f8504c6f6626",
    },
    "vgg16": {
        "file": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "origin": "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "file_hash": "6d6bbae143d832006294945121d1f1fc",
    },
}
# The names and addresses alone, as version 0.2 had them.
IMAGENET_WEIGHT_FILES = {name: spec["file"] for name, spec in IMAGENET_WEIGHTS.items()}
IMAGENET_WEIGHT_URLS = {name: spec["origin"] for name, spec in IMAGENET_WEIGHTS.items()}
# Set to 1 (or pass ``download=False``, or ``helpers train --offline``) and nothing is ever
# downloaded: ``weights="imagenet"`` then uses the Keras cache or starts from random weights.
OFFLINE_ENVIRONMENT = "HELPERS_OFFLINE"
# Seconds a download may wait for the server (to connect, or for the next block of data).
DOWNLOAD_TIMEOUT = 30
# Channel means of ImageNet in B, G, R order, as used by Caffe-trained ResNet50 and VGG16.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
# Keras' default momentum (0.99) needs several hundred steps before BatchNormalization's
# moving statistics match the batches; on a few thousand images that is most of a run, and
# predictions (which use the moving statistics) drift far from training-mode outputs.
BATCH_NORM_MOMENTUM = 0.9
MIN_INPUT_SIZE = 32


def _check_common(input_shape, n_classes, final_activation):
    input_shape = tuple(int(size) for size in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(
            f"input_shape must be (height, width, channels), got {input_shape!r}"
        )
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    if final_activation not in FINAL_ACTIVATIONS:
        raise ValueError(
            f"final_activation must be one of {FINAL_ACTIVATIONS}, got {final_activation!r}"
        )
    return input_shape


def _set_output_bias(dense, output_bias, n_classes):
    if output_bias is None:
        return
    bias = np.asarray(output_bias, dtype="float32").reshape(-1)
    if bias.size == 1:
        bias = np.full(n_classes, bias.item(), dtype="float32")
    if bias.shape != (n_classes,):
        raise ValueError(
            f"output_bias must have one value per class ({n_classes}), got {bias.size}"
        )
    dense.bias.assign(bias)


def build_mlp(input_shape=(32, 32, 3), n_classes=3, final_activation="softmax"):
    """Build the flattened-pixel baseline: Flatten → Dense 1024 → Dense 512 → output.

    Parameters
    ----------
    input_shape : tuple
        (height, width, channels) of the input images.
    n_classes : int
        Number of output units, one per label.
    final_activation : str
        ``"softmax"`` for multi-class (as in the original), ``"sigmoid"`` for multi-label.

    Returns
    -------
    keras.Model named ``"mlp"``.
    """
    input_shape = _check_common(input_shape, n_classes, final_activation)
    return keras.Sequential(
        [
            keras.Input(shape=input_shape, name="image"),
            layers.Flatten(),
            layers.Dense(1024, activation="sigmoid"),
            layers.Dense(512, activation="sigmoid"),
            layers.Dense(n_classes, activation=final_activation, name="predictions"),
        ],
        name="mlp",
    )


def _conv_block(model, filters, n_convs, dropout=0.25):
    for _ in range(n_convs):
        model.add(layers.Conv2D(filters, (3, 3), padding="same"))
        model.add(layers.Activation("relu"))
        model.add(layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM))
    model.add(layers.MaxPooling2D(pool_size=(2, 2)))
    if dropout:
        model.add(layers.Dropout(dropout))


# The tutorial's dropout rates: after each convolution block, and before the output layer.
SMALLVGGNET_DROPOUT = (0.25, 0.5)


def _smallvggnet(name, head, input_shape, n_classes, final_activation, output_bias, dropout):
    input_shape = _check_common(input_shape, n_classes, final_activation)
    if min(input_shape[:2]) < 8:
        raise ValueError(f"SmallVGGNet needs images of at least 8x8, got {input_shape}")
    block_rate, head_rate = (float(rate) for rate in dropout)
    if not (0 <= block_rate < 1 and 0 <= head_rate < 1):
        raise ValueError(f"dropout must be two rates in [0, 1), got {dropout!r}")
    model = keras.Sequential(name=name)
    model.add(keras.Input(shape=input_shape, name="image"))
    _conv_block(model, 32, n_convs=1, dropout=block_rate)
    _conv_block(model, 64, n_convs=2, dropout=block_rate)
    _conv_block(model, 128, n_convs=3, dropout=block_rate)
    model.add(head)
    model.add(layers.Dense(512))
    model.add(layers.Activation("relu"))
    model.add(layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM))
    if head_rate:
        model.add(layers.Dropout(head_rate))
    output = layers.Dense(n_classes, activation=final_activation, name="predictions")
    model.add(output)
    _set_output_bias(output, output_bias, n_classes)
    return model


def build_smallvggnet(
    input_shape=(64, 64, 3), n_classes=3, final_activation="sigmoid", output_bias=None,
    dropout=SMALLVGGNET_DROPOUT,
):
    """Build SmallVGGNet: three VGG-style blocks (32, 64x2, 128x3 filters) and a Dense 512 head.

    Parameters
    ----------
    input_shape : tuple
        (height, width, channels); each side must be at least 8 (three 2x2 poolings).
    n_classes : int
        Number of output units, one per label.
    final_activation : str
        ``"sigmoid"`` for multi-label, ``"softmax"`` for multi-class.
    output_bias : float or array-like of length n_classes, optional
        Initial bias of the output layer, e.g. ``helpers.imbalance.prior_bias(y)`` so the
        first predictions already match the label frequencies.
    dropout : (float, float)
        Dropout rate after each convolution block and before the output layer; the
        tutorial's (0.25, 0.5) by default, 0 leaves that ``Dropout`` layer out.

    Returns
    -------
    keras.Model named ``"smallvggnet"``.
    """
    return _smallvggnet("smallvggnet", layers.Flatten(), input_shape, n_classes,
                        final_activation, output_bias, dropout)


def build_smallvggnet_gmp(
    input_shape=(64, 64, 3), n_classes=3, final_activation="sigmoid", output_bias=None,
    dropout=(0, 0),
):
    """Build SmallVGGNet's convolutions with a global max-pooling head and no dropout.

    The same three blocks as ``build_smallvggnet``, but ``GlobalMaxPooling2D`` instead of
    ``Flatten`` and no ``Dropout``. ``Flatten`` gives every position of the last feature map
    its own weights, so an object must be learnt again at every place it can appear;
    the global maximum asks only *whether* a feature is present anywhere, which is what a
    label says. The dense head shrinks from 4.2 million weights (64×64 input) to 66,000,
    and the dropout goes. On the generated shapes it reaches a validation micro-F1 of 0.95
    in 8-9 epochs, which the tutorial's SmallVGGNet did not reach in 30; on the clothes in
    3-4 epochs instead of 14 (``benchmarks/recipes.py``). On the shapes either change alone
    is not enough (the ablation there).

    Parameters
    ----------
    input_shape : tuple
        (height, width, channels); each side at least 8.
    n_classes : int
        Number of output units, one per label.
    final_activation : str
        ``"sigmoid"`` for multi-label, ``"softmax"`` for multi-class.
    output_bias : float or array-like of length n_classes, optional
        Initial bias of the output layer (see ``build_smallvggnet``).
    dropout : (float, float)
        As in ``build_smallvggnet``; none by default.

    Returns
    -------
    keras.Model named ``"smallvggnet_gmp"``.
    """
    return _smallvggnet("smallvggnet_gmp", layers.GlobalMaxPooling2D(), input_shape, n_classes,
                        final_activation, output_bias, dropout)


@keras.saving.register_keras_serializable(package="helpers")
class ImageNetPreprocessing(layers.Layer):
    """Turn [0, 1] RGB images into what Caffe-trained ImageNet models expect.

    Same result as ``keras.applications.resnet50.preprocess_input(x * 255)``: scale to
    0-255, reorder RGB → BGR, subtract the ImageNet channel means. Being a layer, it is
    saved with the model, and a saved model loads in safe mode (no Lambda layer).
    """

    def call(self, inputs):
        bgr = keras.ops.flip(inputs * 255.0, axis=-1)
        return bgr - keras.ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype=bgr.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


def downloads_allowed(download=None):
    """Whether ``weights="imagenet"`` may download: ``download`` if given, else not when
    the environment variable ``HELPERS_OFFLINE`` is set to 1 (true, yes), else yes."""
    if download is not None:
        return bool(download)
    value = os.environ.get(OFFLINE_ENVIRONMENT, "").strip().lower()
    return value in ("", "0", "false", "no")


def keras_cache_dir():
    """The Keras cache folder, as ``keras.utils.get_file`` picks it: ``$KERAS_HOME``, else
    ``~/.keras``, else ``/tmp/.keras`` when the home folder is not writable."""
    if os.environ.get("KERAS_HOME"):
        return Path(os.environ["KERAS_HOME"]).expanduser()
    home = Path.home()
    return (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"


def imagenet_cache_paths(architecture):
    """List the places where Keras keeps downloaded ImageNet weights for ``architecture``.

    Parameters
    ----------
    architecture : str
        ``"resnet50"`` or ``"vgg16"``.

    Returns
    -------
    list of Path, most specific first (``$KERAS_HOME``, ``~/.keras``, ``/tmp/.keras``).
    """
    file_name = IMAGENET_WEIGHTS[architecture]["file"]
    homes = [keras_cache_dir(), Path.home() / ".keras", Path("/tmp/.keras")]
    paths = []
    for home in homes:
        path = home.expanduser() / "models" / file_name
        if path not in paths:
            paths.append(path)
    return paths


def file_matches_hash(path, file_hash):
    """Whether the file's MD5 (32 hex digits) or SHA-256 (64) is ``file_hash``, as Keras checks."""
    digest = hashlib.sha256() if len(file_hash) == 64 else hashlib.md5()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == file_hash


@contextlib.contextmanager
def _socket_timeout(seconds):
    # keras.utils.get_file has no timeout of its own: without one a silent server hangs it.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def resolve_weights(weights, architecture, download=None):
    """Turn a ``weights`` argument into a local file or ``None`` (random start).

    ``"imagenet"`` follows Keras: the file in the Keras cache if it is there (and its hash
    is Keras' published one), otherwise ``keras.utils.get_file`` downloads it into the
    cache (``~/.keras/models/``) and checks the hash. One line says which it did. When
    downloads are off, the network is down or the file is wrong, one warning says so and
    the model starts from random weights.

    Parameters
    ----------
    weights : None, str or Path
        ``None`` (random start), ``"imagenet"`` or the path to a ``.h5`` /
        ``.weights.h5`` file for the base without its top.
    architecture : str
        ``"resnet50"`` or ``"vgg16"``.
    download : bool, optional
        Allow a download; by default yes, unless ``HELPERS_OFFLINE=1``
        (see ``downloads_allowed``).

    Returns
    -------
    (str or None, str): the path to load (or None) and a short description for metadata.
    """
    if weights is None:
        return None, "none (random initialisation)"
    if str(weights) == "imagenet":
        return _imagenet_weights(architecture, download)
    path = Path(weights)
    if not path.is_file():
        raise ValueError(
            f"weights must be None, 'imagenet' or an existing weights file; "
            f"file not found: {path}"
        )
    if not path.name.endswith(".h5"):
        raise ValueError(f"weights file must end in .h5 or .weights.h5, got {path.name}")
    return str(path), f"file ({path})"


def _imagenet_weights(architecture, download):
    spec = IMAGENET_WEIGHTS[architecture]
    damaged = []
    for path in imagenet_cache_paths(architecture):
        if path.is_file():
            if file_matches_hash(path, spec["file_hash"]):
                print(f"ImageNet weights for {architecture}: {path} (Keras cache)")
                return str(path), f"imagenet ({path})"
            damaged.append(path)
    found = (f"{damaged[0]} is damaged (not Keras' hash {spec['file_hash']})" if damaged
             else "not in the Keras cache")
    by_hand = (f"the model starts from random weights; put {spec['file']} in "
               f"{keras_cache_dir() / 'models'} or pass weights=PATH")
    if not downloads_allowed(download):
        warn(f"ImageNet weights for {architecture}: {found}, and downloads are off "
             f"({OFFLINE_ENVIRONMENT}=1 or --offline); {by_hand} (from {spec['origin']})")
        return None, "none (imagenet requested, downloads off)"
    cache_dir = keras_cache_dir()
    target = cache_dir / "models" / spec["file"]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _socket_timeout(DOWNLOAD_TIMEOUT):
            path = keras.utils.get_file(
                spec["file"], spec["origin"], cache_subdir="models",
                file_hash=spec["file_hash"], cache_dir=str(cache_dir),
            )
    except Exception as error:  # no network, server down or silent, HTTP error, wrong hash
        if target.is_file() and not file_matches_hash(target, spec["file_hash"]):
            target.unlink()  # get_file leaves a file that failed its hash check in the cache
        warn(f"ImageNet weights for {architecture}: {found}, and the download from "
             f"{spec['origin']} failed ({_download_error(error)}); {by_hand}")
        return None, "none (imagenet requested, download failed)"
    print(f"ImageNet weights for {architecture}: downloaded {spec['origin']} to {path} "
          f"(Keras cache, hash checked)")
    return str(path), f"imagenet ({path})"


def _download_error(error):
    """The reason inside ``get_file``'s "URL fetch failure on ...: None -- reason"."""
    cause = error.__cause__ or error.__context__
    if isinstance(cause, urllib.error.HTTPError):
        return f"HTTP {cause.code} {cause.reason}"
    if isinstance(cause, urllib.error.URLError):
        return " ".join(str(cause.reason).split())
    return " ".join(str(error).split()) or type(error).__name__


def _freeze(base, trainable_layers=0):
    """Freeze ``base`` except its top ``trainable_layers`` layers; BatchNorm stays frozen."""
    base.trainable = True
    body = [layer for layer in base.layers if not isinstance(layer, keras.layers.InputLayer)]
    if trainable_layers < 0 or trainable_layers > len(body):
        raise ValueError(
            f"trainable_layers must be between 0 and {len(body)} for {base.name}, "
            f"got {trainable_layers}"
        )
    cut = len(body) - trainable_layers
    for index, layer in enumerate(body):
        layer.trainable = index >= cut and not isinstance(layer, layers.BatchNormalization)
    if trainable_layers == 0:
        base.trainable = False


def unfreeze_top(model, trainable_layers, base_name=None):
    """Unfreeze the top ``trainable_layers`` layers of the pretrained base inside ``model``.

    BatchNormalization layers stay frozen, so fine-tuning does not disturb their statistics:
    in Keras 3 a BatchNormalization layer with ``trainable=False`` runs in inference mode
    whatever ``training`` is (the ``training=False`` of a nested call does not hold in a
    functional model, ``fit`` passes ``training=True`` to every layer). Recompile the model
    afterwards (with a small learning rate).

    Parameters
    ----------
    model : keras.Model
        A model from ``build_resnet50``, ``build_vgg16`` or ``attach_head``.
    trainable_layers : int
        How many of the base's top layers to train (0 = keep the whole base frozen).
    base_name : str, optional
        Name of the nested base model; found automatically when omitted.

    Returns
    -------
    The same model (changed in place).
    """
    base = _find_base(model, base_name)
    _freeze(base, trainable_layers)
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
    raise ValueError(
        f"model {model.name!r} holds no pretrained base named "
        f"{base_name or ' or '.join(IMAGENET_WEIGHTS)} (nor an '<name>_features' extractor)"
    )


def _body(base):
    return [layer for layer in base.layers if not isinstance(layer, keras.layers.InputLayer)]


def split_for_fine_tuning(model, trainable_layers, base_name=None):
    """Unfreeze the top of the base inside ``model`` and cut the model below it.

    Below the first unfrozen layer nothing trains, and (without augmentation) its output for
    an image never changes, so it can be computed once with ``extract_features(bottom, ...)``
    and ``top`` trained on it: the same training steps as fitting ``model`` on the images,
    at the cost of the unfrozen layers alone. Both parts share their layers with ``model``,
    so training ``top`` fine-tunes ``model`` itself.

    Parameters
    ----------
    model : keras.Model
        From ``attach_head``, ``build_resnet50`` or ``build_vgg16``.
    trainable_layers : int
        How many top layers of the base to train, as in ``unfreeze_top`` (at least 1, fewer
        than the base has). The cut must fall between two blocks: in ResNet50 after a
        block's ``_out`` layer (33 = stage ``conv5`` and the pooling), in VGG16 after a
        pooling layer (4 = block 5).
    base_name : str, optional
        Name of the nested base model; found automatically when omitted.

    Returns
    -------
    (bottom, top): ``bottom`` maps images to the activations below the cut (frozen, with
    the model's preprocessing); ``top`` maps them to probabilities (the unfrozen layers and
    the head). Compile and fit ``top``; ``model`` then holds the fine-tuned weights.
    """
    base = _find_base(model, base_name)
    body = _body(base)
    if not 1 <= trainable_layers < len(body):
        raise ValueError(
            f"trainable_layers must be between 1 and {len(body) - 1} for {base.name}, "
            f"got {trainable_layers}"
        )
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
            f"{sorted(boundaries)[:12]}"
        ) from error
    base_bottom = keras.Model(base.input, cut.output, name=f"{base.name}_bottom")
    # model = image → extractor (preprocessing → base → ...) → head; the base may also sit
    # directly in model.
    extractor = next(layer for layer in model.layers if layer is base or (
        isinstance(layer, keras.Model) and any(inner is base for inner in _all_layers(layer))))
    after_extractor = model.layers[model.layers.index(extractor) + 1:]
    inner = [extractor] if extractor is base else _body(extractor)
    position = next(index for index, layer in enumerate(inner) if layer is base)

    images = keras.Input(shape=model.input_shape[1:], name="image")
    x = images
    for layer in inner[:position]:
        x = layer(x)
    bottom = keras.Model(images, base_bottom(x), name=f"{model.name}_bottom")

    activations = keras.Input(shape=cut.output.shape[1:], name="activations")
    y = base_top(activations)
    for layer in inner[position + 1:] + after_extractor:
        y = layer(y)
    top = keras.Model(activations, y, name=f"{model.name}_top")
    return bottom, top


def convolutional_base(model, input_shape=None, pooling="avg", name=None):
    """Turn a trained CNN such as SmallVGGNet into a frozen feature extractor.

    Copies the layers before the first ``Flatten`` (or ``Dense``) with their weights, except
    ``Dropout`` (a no-op on features, and in Keras 3 a nested ``training=False`` does not
    keep it off while fine-tuning), adds global pooling, and wraps them like
    ``build_feature_extractor`` does ResNet50, so ``extract_features``, ``attach_head``,
    ``unfreeze_top`` and ``split_for_fine_tuning`` work on the result; fine-tuning it
    leaves ``model`` as it was. Pass a fresh ``build_smallvggnet(...)`` for the same
    architecture with random weights.

    Parameters
    ----------
    model : keras.Model
        A Sequential or plain functional CNN taking images.
    input_shape : tuple, optional
        (height, width, channels) to apply the layers to; default the model's own. The
        convolutions do not depend on it, the pooled features do not change length.
    pooling : {"avg", "max"}
        Global pooling of the last feature map.
    name : str, optional
        Name of the base; default ``model.name``. The extractor is ``f"{name}_features"``.

    Returns
    -------
    keras.Model named ``f"{name}_features"``, frozen, with ``weights_source`` set to
    ``f"model {model.name}"``.
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
    x = pool(name=f"{pooling}_pool")(x)
    base = keras.Model(inputs, x, name=name)
    base.trainable = False
    images = keras.Input(shape=input_shape, name="image")
    extractor = keras.Model(images, base(images, training=False), name=f"{name}_features")
    extractor.weights_source = f"model {model.name}"
    return extractor


def _applications_base(architecture, input_shape, weights_path, pooling):
    if min(input_shape[:2]) < MIN_INPUT_SIZE or input_shape[2] != 3:
        raise ValueError(
            f"{architecture} needs RGB images of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}, "
            f"got input_shape={input_shape}"
        )
    application = {
        "resnet50": keras.applications.ResNet50,
        "vgg16": keras.applications.VGG16,
    }[architecture]
    # weights=None, then load_weights: resolve_weights has found or downloaded the file and
    # said which; Keras would download without a word and fail with a traceback offline.
    base = application(
        include_top=False, weights=None, input_shape=input_shape, pooling=pooling
    )
    base.name = architecture
    if weights_path is not None:
        try:
            base.load_weights(weights_path)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"weights file {weights_path}: cannot load it into {architecture} without "
                f"its top ({' '.join(str(error).split())[:300]})"
            ) from error
    return base


def build_feature_extractor(
    architecture="resnet50", input_shape=(64, 64, 3), weights=None, pooling="avg"
):
    """Build a frozen pretrained base (with its preprocessing) that maps images to features.

    Run it once over the data with ``extract_features`` and train a small head from
    ``build_head`` on the cached features: on a CPU that is far faster than pushing every
    image through the base at every epoch. ``attach_head`` joins both for fine-tuning.

    Parameters
    ----------
    architecture : str
        ``"resnet50"`` (pooling ``"avg"`` → 2048 features) or ``"vgg16"``
        (``pooling=None`` keeps the feature map, as the VGG16 head flattens it).
    input_shape : tuple
        (height, width, 3), each side at least 32.
    weights : None, "imagenet" or path
        See ``resolve_weights``: ``"imagenet"`` comes from the Keras cache, or is downloaded
        into it.
    pooling : str or None
        Passed to ``keras.applications``.

    Returns
    -------
    keras.Model named ``f"{architecture}_features"``, frozen, with ``weights_source`` set.
    """
    if architecture not in IMAGENET_WEIGHT_FILES:
        raise ValueError(
            f"architecture must be one of {sorted(IMAGENET_WEIGHT_FILES)}, got {architecture!r}"
        )
    input_shape = _check_common(input_shape, 1, None)
    weights_path, weights_source = resolve_weights(weights, architecture)
    base = _applications_base(architecture, input_shape, weights_path, pooling)
    base.trainable = False
    inputs = keras.Input(shape=input_shape, name="image")
    x = ImageNetPreprocessing(name="imagenet_preprocessing")(inputs)
    features = base(x, training=False)
    extractor = keras.Model(inputs, features, name=f"{architecture}_features")
    extractor.weights_source = weights_source
    return extractor


def extract_features(extractor, dataset, verbose=0):
    """Run ``extractor`` over a labelled ``tf.data`` dataset and return the features in memory.

    Parameters
    ----------
    extractor : keras.Model
        Usually from ``build_feature_extractor``.
    dataset : tf.data.Dataset
        Yields ``(images, labels)`` batches; build it with ``shuffle=False`` and no
        augmentation so features and labels stay aligned and repeatable.
    verbose : int
        1 prints a running count of the images done (0 = silent).

    Returns
    -------
    (features, labels): float32 arrays of shape (n, ...) and (n, n_classes).
    """
    features, labels = [], []
    for step, batch in enumerate(dataset):
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("extract_features needs a dataset of (images, labels) batches")
        images, batch_labels = batch[0], batch[1]
        features.append(np.asarray(extractor.predict_on_batch(images)))
        labels.append(np.asarray(batch_labels))
        if verbose:
            print(f"\rextracted {sum(len(f) for f in features)} images", end="")
    if verbose:
        print()
    if not features:
        raise ValueError("extract_features got an empty dataset")
    return np.concatenate(features).astype("float32"), np.concatenate(labels).astype("float32")


def build_head(
    feature_shape, n_classes, final_activation="sigmoid", dropout=0.0, output_bias=None,
    name="head",
):
    """Build the classification head that sits on pooled features (as in the VOC2012 tutorial: one Dense layer).

    Parameters
    ----------
    feature_shape : int or tuple
        Shape of one feature vector, e.g. 2048 for ResNet50 with average pooling.
    n_classes : int
        Number of output units.
    final_activation : str
        ``"sigmoid"`` for multi-label, ``"softmax"`` for multi-class.
    dropout : float
        Dropout rate before the output layer (0 = none).
    output_bias : float or array-like, optional
        Initial output bias (see ``build_smallvggnet``).
    name : str
        Model name.

    Returns
    -------
    keras.Model mapping features to probabilities.
    """
    if isinstance(feature_shape, (int, np.integer)):
        feature_shape = (int(feature_shape),)
    _check_common((1, 1, 1), n_classes, final_activation)
    inputs = keras.Input(shape=tuple(feature_shape), name="features")
    x = layers.Flatten()(inputs) if len(feature_shape) > 1 else inputs
    if dropout:
        x = layers.Dropout(dropout)(x)
    output = layers.Dense(n_classes, activation=final_activation, name="predictions")
    outputs = output(x)
    _set_output_bias(output, output_bias, n_classes)
    return keras.Model(inputs, outputs, name=name)


def attach_head(extractor, head, name=None):
    """Join a feature extractor and a (trained) head into one image → probabilities model.

    Parameters
    ----------
    extractor : keras.Model
        From ``build_feature_extractor``.
    head : keras.Model
        From ``build_head`` (its weights are kept, so train it on cached features first).
    name : str, optional
        Model name; defaults to the architecture (``"resnet50"``).

    Returns
    -------
    keras.Model; unfreeze part of the base with ``unfreeze_top`` to fine-tune.
    """
    inputs = keras.Input(shape=extractor.input_shape[1:], name="image")
    outputs = head(extractor(inputs, training=False))
    architecture = extractor.name.replace("_features", "")
    model = keras.Model(inputs, outputs, name=name or architecture)
    model.weights_source = getattr(extractor, "weights_source", None)
    return model


def build_resnet50(
    input_shape=(64, 64, 3), n_classes=20, weights=None, trainable_layers=0,
    final_activation="sigmoid", output_bias=None, dropout=0.0,
):
    """Build ResNet50 (average pooling) with a Dense head; the base is frozen by default.

    The model expects [0, 1] RGB images like every other model here; the Caffe-style
    ImageNet preprocessing is its first layer. ``weights="imagenet"`` takes the file from
    the Keras cache or downloads it there, as Keras does; offline (or with downloads off,
    ``HELPERS_OFFLINE=1``) it falls back to random weights with a warning that says so.

    Parameters
    ----------
    input_shape : tuple
        (height, width, 3), each side at least 32.
    n_classes : int
        Number of output units.
    weights : None, "imagenet" or path
        Starting weights of the base (without top).
    trainable_layers : int
        Unfreeze this many top layers of the base (BatchNorm stays frozen); 0 = frozen base.
        Use a small learning rate when it is not 0.
    final_activation : str
        ``"sigmoid"`` for multi-label, ``"softmax"`` for multi-class.
    output_bias : float or array-like, optional
        Initial output bias.
    dropout : float
        Dropout before the output layer.

    Returns
    -------
    keras.Model named ``"resnet50"`` (``model.weights_source`` says which weights were used).
    """
    extractor = build_feature_extractor("resnet50", input_shape, weights, pooling="avg")
    head = build_head(
        extractor.output_shape[1:], n_classes, final_activation, dropout, output_bias
    )
    model = attach_head(extractor, head, name="resnet50")
    unfreeze_top(model, trainable_layers)
    return model


def build_vgg16(
    input_shape=(64, 64, 3), n_classes=20, weights=None, frozen_layers=15,
    final_activation="sigmoid", output_bias=None,
):
    """Build VGG16 with the large-scale VGG16 write-up's top: Flatten → Dense 256 (he_normal) → BN → Dropout .5.

    Parameters
    ----------
    input_shape : tuple
        (height, width, 3), each side at least 32.
    n_classes : int
        Number of output units.
    weights : None, "imagenet" or path
        Starting weights of the base (see ``build_resnet50``).
    frozen_layers : int
        Freeze the first ``frozen_layers`` layers of VGG16 (15 = blocks 1-4, the input
        counted as in the original; block 5 trains).
    final_activation : str
        ``"sigmoid"`` for multi-label (as in the chest X-ray write-up), ``"softmax"`` for
        multi-class (as in the large-scale VGG16 write-up).
    output_bias : float or array-like, optional
        Initial output bias.

    Returns
    -------
    keras.Model named ``"vgg16"``.
    """
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
        raise ValueError(
            f"frozen_layers must be between 0 and {len(base.layers)}, got {frozen_layers}"
        )
    _freeze(base, len(base.layers) - max(frozen_layers, 1))
    return model


BUILDERS = {
    "mlp": build_mlp,
    "smallvggnet": build_smallvggnet,
    "smallvggnet_gmp": build_smallvggnet_gmp,
    "resnet50": build_resnet50,
    "vgg16": build_vgg16,
}


def build_model(name, input_shape, n_classes, final_activation="sigmoid", **options):
    """Build one of the models in ``BUILDERS`` by name (what the CLI ``--model`` uses).

    Parameters
    ----------
    name : str
        ``"mlp"``, ``"smallvggnet"``, ``"smallvggnet_gmp"``, ``"resnet50"`` or ``"vgg16"``.
    input_shape : tuple
        (height, width, 3).
    n_classes : int
        Number of output units.
    final_activation : str
        ``"sigmoid"`` or ``"softmax"``.
    **options
        Passed to the builder (``weights``, ``trainable_layers``, ``output_bias``...).

    Returns
    -------
    keras.Model
    """
    if name not in BUILDERS:
        raise ValueError(f"model must be one of {sorted(BUILDERS)}, got {name!r}")
    return BUILDERS[name](
        input_shape=input_shape, n_classes=n_classes, final_activation=final_activation,
        **options,
    )


def describe_preprocessing(model):
    """Describe what a model expects, for ``labels.json``.

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    dict: json-able description of the input and of preprocessing done inside the model.
    """
    inside = []
    for layer in _all_layers(model):
        if isinstance(layer, ImageNetPreprocessing):
            inside.append("imagenet caffe: x*255, RGB->BGR, minus ImageNet BGR mean")
        elif isinstance(layer, layers.Rescaling):
            inside.append(f"rescaling(scale={layer.scale}, offset={layer.offset})")
    return {
        "color_mode": "rgb",
        "rescale": 1 / 255,
        "input_range": [0.0, 1.0],
        "resize": "area averaging to shrink, bilinear to enlarge (per axis)",
        "exif_transpose": True,
        "in_model": inside,
    }


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
