"""Shared fixtures: a folder of odd-but-valid and broken image files; no network.

``odd_images_dir`` is a fresh copy per test (safe to modify); ``odd_images_expected``
says, per file name, whether it should load and at which displayed size and mode.
``no_network`` (automatic) fails any test that tries to reach another machine.
"""
import io
import ipaddress
import shutil
import socket

import matplotlib
import numpy as np
import pytest
from PIL import Image

matplotlib.use("Agg")

# name -> (ok, displayed width, displayed height, Pillow mode of the file)
ODD_IMAGES = {
    "gray.jpg": (True, 30, 20, "L"),
    "cmyk.jpg": (True, 32, 24, "CMYK"),
    "rgba.png": (True, 26, 18, "RGBA"),
    "palette.png": (True, 22, 16, "P"),
    "palette_transparent.gif": (True, 20, 12, "P"),
    "gray_alpha.png": (True, 18, 14, "LA"),
    "sixteen_bit.png": (True, 24, 12, "I;16"),
    "bilevel.png": (True, 16, 16, "1"),
    "bitmap.bmp": (True, 28, 20, "RGB"),
    "png_named.jpg": (True, 21, 13, "RGB"),
    "rotated_exif6.jpg": (True, 20, 40, "RGB"),  # stored 40x20, displayed 20x40
    "UPPER.JPG": (True, 15, 10, "RGB"),
    "empty.jpg": (False, None, None, None),
    "truncated.jpg": (False, None, None, None),
    "random_bytes.jpg": (False, None, None, None),
    "text.png": (False, None, None, None),
}


def _noise(height, width, channels, seed):
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def make_exif_rotated_jpeg(path, width=40, height=20, orientation=6):
    """Write a JPEG stored ``width`` x ``height`` with a red block in the stored top-left."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[..., 2] = 200  # blue everywhere
    pixels[:8, :8] = (255, 0, 0)  # red marker in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, format="JPEG", quality=95, exif=exif)


def build_odd_images(folder):
    """Create every file of ODD_IMAGES inside ``folder``."""
    Image.fromarray(_noise(20, 30, 1, 1), "L").save(folder / "gray.jpg")
    Image.fromarray(_noise(24, 32, 3, 2)).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(_noise(18, 26, 4, 3), "RGBA").save(folder / "rgba.png")
    Image.fromarray(_noise(16, 22, 3, 4)).convert("P", palette=Image.Palette.ADAPTIVE).save(
        folder / "palette.png"
    )
    gif = Image.fromarray(_noise(12, 20, 3, 5)).convert("P", palette=Image.Palette.ADAPTIVE)
    gif.save(folder / "palette_transparent.gif", transparency=0)
    Image.fromarray(_noise(14, 18, 2, 6), "LA").save(folder / "gray_alpha.png")
    ramp = np.linspace(0, 65535, 12 * 24).reshape(12, 24).astype(np.uint16)
    Image.fromarray(ramp).save(folder / "sixteen_bit.png")
    Image.fromarray(_noise(16, 16, 1, 7) > 127).convert("1").save(folder / "bilevel.png")
    Image.fromarray(_noise(20, 28, 3, 8)).save(folder / "bitmap.bmp")
    Image.fromarray(_noise(13, 21, 3, 9)).save(folder / "png_named.jpg", format="PNG")
    make_exif_rotated_jpeg(folder / "rotated_exif6.jpg")
    Image.fromarray(_noise(10, 15, 3, 10)).save(folder / "UPPER.JPG", format="JPEG")

    (folder / "empty.jpg").write_bytes(b"")
    buffer = io.BytesIO()
    Image.fromarray(_noise(64, 64, 3, 11)).save(buffer, format="JPEG", quality=90)
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "random_bytes.jpg").write_bytes(np.random.default_rng(12).bytes(500))
    (folder / "text.png").write_text("this is not a picture\n")

    # Clutter that must never be listed as an image.
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / "notes.txt").write_text("not an image\n")
    return folder


@pytest.fixture
def photos(tmp_path):
    """A few plain images in nested folders, plus clutter that must be ignored."""
    rng = np.random.default_rng(0)
    (tmp_path / "photos" / "nested" / ".hidden").mkdir(parents=True)
    paths = []
    for index, relative in enumerate(["a.png", "b.jpg", "nested/c.png", "nested/.hidden/d.png"]):
        path = tmp_path / "photos" / relative
        Image.fromarray(rng.integers(0, 256, (20 + index, 24, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    return tmp_path / "photos", paths


@pytest.fixture(scope="session")
def _odd_images_master(tmp_path_factory):
    return build_odd_images(tmp_path_factory.mktemp("odd_images_master"))


@pytest.fixture
def odd_images_dir(_odd_images_master, tmp_path):
    """A flat folder of odd-but-valid and broken image files (a fresh copy per test)."""
    return shutil.copytree(_odd_images_master, tmp_path / "odd_images")


@pytest.fixture
def odd_images_expected():
    """File name -> dict(ok, width, height, mode) for every image in ``odd_images_dir``."""
    return {
        name: {"ok": ok, "width": width, "height": height, "mode": mode}
        for name, (ok, width, height, mode) in ODD_IMAGES.items()
    }


def _is_loopback(host):
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """``make test`` and CI run offline: fail a test that looks up or connects to anything
    but loopback (after refusing it), and switch downloads off (``HELPERS_OFFLINE=1``) for
    the code under test and the notebook kernels. A test of the download path turns the
    switch back on and serves its files on 127.0.0.1."""
    monkeypatch.setenv("HELPERS_OFFLINE", "1")
    attempts = []
    real_getaddrinfo, real_connect, real_connect_ex = (
        socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host):
            attempts.append(f"look up {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"tests run offline: not looking up {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    def guarded(real):
        def connect(self, address):
            if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
                attempts.append(f"connect to {address}")
                raise OSError(f"tests run offline: not connecting to {address}")
            return real(self, address)
        return connect

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", guarded(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(real_connect_ex))
    yield
    assert not attempts, f"the test tried to reach the network: {attempts}"
