"""ImageNet weights the Keras way: from the Keras cache, or downloaded into it, hash checked.

When the file is not in the cache and cannot be downloaded (offline, server down, wrong file),
one warning says so and the model starts from random weights. ``HELPERS_OFFLINE=1`` (or
``download=False``, or ``helpers train --offline``) switches downloads off; a download waits at
most ``DOWNLOAD_TIMEOUT`` seconds for the server.
"""
import contextlib
import hashlib
import os
import socket
import urllib.error
from pathlib import Path

from helpers import warn

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
OFFLINE_ENVIRONMENT = "HELPERS_OFFLINE"
DOWNLOAD_TIMEOUT = 30  # seconds to connect, or to wait for the next block of data


def downloads_allowed(download=None):
    """``download`` if given, else False when ``HELPERS_OFFLINE`` is 1 (true, yes), else True."""
    if download is not None:
        return bool(download)
    value = os.environ.get(OFFLINE_ENVIRONMENT, "").strip().lower()
    return value in ("", "0", "false", "no")


def keras_cache_dir():
    """The Keras cache folder as ``keras.utils.get_file`` picks it: ``$KERAS_HOME``, else
    ``~/.keras``, else ``/tmp/.keras`` when the home folder is not writable."""
    if os.environ.get("KERAS_HOME"):
        return Path(os.environ["KERAS_HOME"]).expanduser()
    home = Path.home()
    return (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"


def imagenet_cache_paths(architecture):
    """Where Keras may keep the weights of ``architecture``, most specific first
    (``$KERAS_HOME``, ``~/.keras``, ``/tmp/.keras``)."""
    file_name = IMAGENET_WEIGHTS[architecture]["file"]
    paths = []
    for home in (keras_cache_dir(), Path.home() / ".keras", Path("/tmp/.keras")):
        path = home.expanduser() / "models" / file_name
        if path not in paths:
            paths.append(path)
    return paths


def _file_matches_hash(path, file_hash):
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

    Parameters
    ----------
    weights : None, "imagenet", str or Path
        ``None`` (random start), ``"imagenet"`` (the Keras cache, else a download into it,
        else a warning and a random start) or a ``.h5`` / ``.weights.h5`` file of the base
        without its top.
    architecture : {"resnet50", "vgg16"}
    download : bool, optional
        Allow a download (see ``downloads_allowed``).

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


def load_weights(base, weights_path):
    """Load a weights file into the model ``base``; ``ValueError`` when it does not fit."""
    try:
        base.load_weights(weights_path)
    except (OSError, ValueError) as error:
        raise ValueError(f"weights file {weights_path}: cannot load it into {base.name} without "
                         f"its top ({' '.join(str(error).split())[:300]})") from error


def _imagenet_weights(architecture, download):
    spec = IMAGENET_WEIGHTS[architecture]
    damaged = []
    for path in imagenet_cache_paths(architecture):
        if path.is_file():
            if _file_matches_hash(path, spec["file_hash"]):
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
    return _download(architecture, spec, found, by_hand)


def _download(architecture, spec, found, by_hand):
    """``keras.utils.get_file`` into the Keras cache, under a timeout; a failure is one warning."""
    import keras

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
        if target.is_file() and not _file_matches_hash(target, spec["file_hash"]):
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
