"""ImageNet weights the Keras way, offline: a loopback HTTP server stands in for Keras' host.

Covers a good file, a wrong hash, a server that is down, one that never answers, an HTTP
error and downloads switched off, for ``helpers.files.weights.resolve_weights``, the builders
and ``helpers train``. Nothing here reaches beyond 127.0.0.1 (``conftest.no_network`` fails
any test that tries).
"""
import contextlib
import functools
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from helpers import models
from helpers.files import weights
from helpers.app.cli import main

PAYLOAD = b"not really ResNet50, but the right bytes\n" * 50


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serving(folder):
    """Serve ``folder`` on 127.0.0.1 at a free port; yield the base URL; shut down after."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def keras_home(monkeypatch, tmp_path):
    """An empty Keras cache, downloads allowed; returns the cache's models/ folder."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(weights.OFFLINE_ENVIRONMENT, raising=False)
    monkeypatch.setattr(weights, "imagenet_cache_paths", lambda architecture: [
        tmp_path / "keras_home" / "models" / weights.IMAGENET_WEIGHTS[architecture]["file"]])
    return tmp_path / "keras_home" / "models"


@pytest.fixture
def served(tmp_path, monkeypatch):
    """PAYLOAD served on loopback as Keras' ResNet50 file, with its MD5 as the published hash."""
    folder = tmp_path / "server"
    folder.mkdir()
    name = weights.IMAGENET_WEIGHTS["resnet50"]["file"]
    (folder / name).write_bytes(PAYLOAD)
    with serving(folder) as url:
        point_at(monkeypatch, url + name, hashlib.md5(PAYLOAD).hexdigest())
        yield url + name


def point_at(monkeypatch, origin, file_hash):
    spec = dict(weights.IMAGENET_WEIGHTS["resnet50"], origin=origin, file_hash=file_hash)
    monkeypatch.setitem(weights.IMAGENET_WEIGHTS, "resnet50", spec)


def test_a_good_file_is_downloaded_into_the_keras_cache(keras_home, served, capsys):
    path, source = weights.resolve_weights("imagenet", "resnet50")
    assert Path(path) == keras_home / weights.IMAGENET_WEIGHTS["resnet50"]["file"]
    assert Path(path).read_bytes() == PAYLOAD
    assert source == f"imagenet ({path})"
    ours = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ImageNet")]
    assert ours == [f"ImageNet weights for resnet50: downloaded {served} to {path} "
                    "(Keras cache, hash checked)"]


def test_the_cached_file_is_used_without_the_network(keras_home, served, monkeypatch, capsys):
    weights.resolve_weights("imagenet", "resnet50")
    point_at(monkeypatch, f"http://127.0.0.1:{closed_port()}/gone.h5",
             weights.IMAGENET_WEIGHTS["resnet50"]["file_hash"])
    monkeypatch.setenv(weights.OFFLINE_ENVIRONMENT, "1")
    capsys.readouterr()
    path, _ = weights.resolve_weights("imagenet", "resnet50")
    assert capsys.readouterr().out == f"ImageNet weights for resnet50: {path} (Keras cache)\n"


@pytest.mark.parametrize("case", ["wrong hash", "server down", "http error", "no answer"])
def test_a_failed_download_warns_once_and_starts_from_random_weights(
        case, keras_home, served, monkeypatch):
    if case == "wrong hash":
        point_at(monkeypatch, served, "0" * 32)
        reason = "hash does not match"
    elif case == "server down":
        point_at(monkeypatch, f"http://127.0.0.1:{closed_port()}/x.h5", "0" * 32)
        reason = "Connection refused"
    elif case == "http error":
        point_at(monkeypatch, served.rsplit("/", 1)[0] + "/missing.h5", "0" * 32)
        reason = "404"
    silent = socket.socket()
    if case == "no answer":  # accepts the connection (the backlog does) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        point_at(monkeypatch, f"http://127.0.0.1:{silent.getsockname()[1]}/x.h5", "0" * 32)
        monkeypatch.setattr(weights, "DOWNLOAD_TIMEOUT", 0.5)
        reason = "timed out"
    with silent, pytest.warns(UserWarning) as caught:
        path, source = weights.resolve_weights("imagenet", "resnet50")
    assert path is None and source == "none (imagenet requested, download failed)"
    assert len(caught) == 1 and caught[0].filename == __file__  # points at the caller's line
    message = str(caught[0].message)
    assert "\n" not in message and reason in message
    assert "the download from" in message and "failed (" in message
    assert "starts from random weights" in message
    assert list(keras_home.glob("*")) == []  # nothing half-written or wrong left in the cache
    assert socket.getdefaulttimeout() is None  # the download's timeout does not linger


@pytest.mark.parametrize("switch", ["environment", "argument"])
def test_downloads_switched_off_never_connect(switch, keras_home, served, monkeypatch):
    requests = []
    monkeypatch.setattr(QuietHandler, "do_GET", lambda self: requests.append(self.path))
    if switch == "environment":
        monkeypatch.setenv(weights.OFFLINE_ENVIRONMENT, "1")
    with pytest.warns(UserWarning, match="downloads are off") as caught:
        path, source = weights.resolve_weights("imagenet", "resnet50",
                                              download=False if switch == "argument" else None)
    assert path is None and source == "none (imagenet requested, downloads off)"
    assert weights.IMAGENET_WEIGHTS["resnet50"]["file"] in str(caught[0].message)
    assert requests == []


def test_a_damaged_cached_file_is_replaced_by_a_download(keras_home, served):
    keras_home.mkdir(parents=True)
    damaged = keras_home / weights.IMAGENET_WEIGHTS["resnet50"]["file"]
    damaged.write_bytes(PAYLOAD[:-10])
    path, _ = weights.resolve_weights("imagenet", "resnet50")
    assert Path(path) == damaged and damaged.read_bytes() == PAYLOAD


def test_a_damaged_cached_file_is_not_used_offline(keras_home, served, monkeypatch):
    keras_home.mkdir(parents=True)
    (keras_home / weights.IMAGENET_WEIGHTS["resnet50"]["file"]).write_bytes(b"cut short")
    with pytest.warns(UserWarning, match="is damaged .* downloads are off"):
        path, _ = weights.resolve_weights("imagenet", "resnet50", download=False)
    assert path is None


@pytest.mark.parametrize("value, allowed", [("1", False), ("true", False), ("yes", False),
                                            ("0", True), ("", True), ("no", True)])
def test_the_offline_switch_reads_the_usual_spellings(monkeypatch, value, allowed):
    monkeypatch.setenv(weights.OFFLINE_ENVIRONMENT, value)
    assert weights.downloads_allowed() is allowed
    assert weights.downloads_allowed(download=True) is True


def test_keras_own_names_addresses_and_hashes_are_used():
    # The same values as keras/src/applications, which is what get_file checks downloads against.
    from keras.src.applications import resnet, vgg16

    resnet50 = weights.IMAGENET_WEIGHTS["resnet50"]
    assert resnet50["origin"] == resnet.BASE_WEIGHTS_PATH + resnet50["file"]
    assert resnet50["file_hash"] == resnet.WEIGHTS_HASHES["resnet50"][1]
    assert weights.IMAGENET_WEIGHTS["vgg16"]["origin"] == vgg16.WEIGHTS_PATH_NO_TOP
    assert vgg16.WEIGHTS_PATH_NO_TOP.endswith("/" + weights.IMAGENET_WEIGHTS["vgg16"]["file"])


@pytest.mark.slow
def test_a_served_weights_file_is_loaded_into_resnet50(keras_home, tmp_path, monkeypatch):
    import h5py
    import keras
    import numpy as np
    from keras.src.legacy.saving import legacy_h5_format

    # The same format as Keras' *_notop.h5 files, with random weights we can recognise.
    reference = keras.applications.ResNet50(include_top=False, weights=None,
                                            input_shape=(32, 32, 3), pooling="avg")
    folder = tmp_path / "server"
    folder.mkdir()
    file = folder / weights.IMAGENET_WEIGHTS["resnet50"]["file"]
    with h5py.File(file, "w") as stream:
        legacy_h5_format.save_weights_to_hdf5_group(stream, reference)
    with serving(folder) as url:
        point_at(monkeypatch, url + file.name, hashlib.md5(file.read_bytes()).hexdigest())
        model = models.build_resnet50((32, 32, 3), 2, weights="imagenet")
    base = model.get_layer("resnet50_features").get_layer("resnet50")
    for loaded, expected in zip(base.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(loaded, expected)
    assert model.weights_source.startswith("imagenet (")


@pytest.fixture(scope="module")
def scenes_tiny(tmp_path_factory):
    from helpers.datasets.generate import make_dataset

    return make_dataset("scenes", tmp_path_factory.mktemp("data") / "scenes", scale=0.02,
                        progress=False)


# A real process, so that the warnings are printed as a user sees them; the origin is
# pointed at a closed loopback port first.
TRAIN_SCRIPT = """
import sys
from helpers.files import weights
from helpers.app.cli import main
weights.IMAGENET_WEIGHTS["resnet50"]["origin"] = sys.argv[1]
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["--offline", "server down"])
def test_train_with_imagenet_weights_offline_finishes_with_one_line(how, scenes_tiny, tmp_path):
    """The acceptance check: ``train --model resnet50 --weights imagenet --epochs 1`` offline."""
    env = {key: value for key, value in os.environ.items() if key != weights.OFFLINE_ENVIRONMENT}
    env.update(KERAS_HOME=str(tmp_path / "keras_home"), HOME=str(tmp_path / "home"),
               TF_CPP_MIN_LOG_LEVEL="3")
    argv = ["train", str(scenes_tiny), "--model", "resnet50", "--weights", "imagenet",
            "--epochs", "1", "--image-size", "32", "--out", str(tmp_path / "run")]
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_SCRIPT, f"http://127.0.0.1:{closed_port()}/x.h5", *argv,
         *(["--offline"] if how == "--offline" else [])],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "ImageNet" in line]
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("warning: ImageNet weights for resnet50")
    assert ("downloads are off" if how == "--offline" else "Connection refused") in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert (tmp_path / "run" / "model.keras").is_file()
    assert not (tmp_path / "keras_home" / "models").exists() or not any(
        (tmp_path / "keras_home" / "models").iterdir())


def test_offline_flag_sets_the_switch_for_the_run_only(monkeypatch):
    from helpers.app import cli

    seen = []
    monkeypatch.delenv(weights.OFFLINE_ENVIRONMENT, raising=False)
    monkeypatch.setattr("helpers.app.workflows.train_from_source",
                        lambda *args, **kwargs: seen.append(weights.downloads_allowed()))
    assert cli.main(["train", "data", "--out", "x", "--offline"]) == 0
    assert cli.main(["train", "data", "--out", "x"]) == 0
    assert seen == [False, True]
    assert weights.OFFLINE_ENVIRONMENT not in os.environ


def test_train_weights_path_that_is_not_a_weights_file_is_one_error_line(
        scenes_tiny, tmp_path, capsys):
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"not an HDF5 file")
    code = main(["train", str(scenes_tiny), "--model", "resnet50", "--weights", str(bad),
                 "--epochs", "1", "--image-size", "32", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: weights file {bad}: cannot load it into resnet50")
    assert "Traceback" not in err
