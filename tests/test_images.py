"""Tests for helpers.files.images: odd formats decode to RGB at the right size, broken ones fail clearly."""
import re

import numpy as np
import pytest
from conftest import ODD_IMAGES, make_exif_rotated_jpeg
from PIL import Image

from helpers.files.images import IMAGE_EXTENSIONS, ImageError, read_header, read_image, resize

GOOD = [name for name, (ok, *_rest) in ODD_IMAGES.items() if ok]
BAD = {
    "empty.jpg": "empty file",
    "truncated.jpg": "truncated image",
    "random_bytes.jpg": "not an image (cannot identify)",
    "text.png": "not an image (cannot identify)",
}


@pytest.mark.parametrize("name", GOOD)
def test_read_image_gives_rgb_uint8_at_displayed_size(odd_images_dir, odd_images_expected, name):
    expected = odd_images_expected[name]
    image = read_image(odd_images_dir / name)
    assert image.dtype == np.uint8
    assert image.shape == (expected["height"], expected["width"], 3)


@pytest.mark.parametrize("name", GOOD)
def test_read_header_matches_expected(odd_images_dir, odd_images_expected, name):
    expected = odd_images_expected[name]
    header = read_header(odd_images_dir / name)
    assert (header["width"], header["height"], header["mode"]) == (
        expected["width"], expected["height"], expected["mode"]
    )


@pytest.mark.parametrize("name", GOOD)
@pytest.mark.parametrize("target_size", [(8, 12), (50, 30)])
def test_read_image_resizes_to_height_width(odd_images_dir, name, target_size):
    image = read_image(odd_images_dir / name, target_size=target_size)
    assert image.shape == (*target_size, 3)


def test_png_behind_jpg_name_is_read_by_content(odd_images_dir):
    assert read_header(odd_images_dir / "png_named.jpg")["format"] == "PNG"


@pytest.mark.parametrize("target_size", [None, (80, 40)])
def test_exif_orientation_is_applied(tmp_path, target_size):
    path = tmp_path / "phone.jpg"
    make_exif_rotated_jpeg(path, width=40, height=20, orientation=6)
    assert Image.open(path).size == (40, 20)  # stored sideways
    image = read_image(path, target_size=target_size)
    height, width = image.shape[:2]
    assert (height, width) == (target_size or (40, 20))
    # Orientation 6 turns the picture 90 degrees clockwise: stored top-left -> top-right.
    top_right = image[: height // 8, -(width // 8):].reshape(-1, 3).mean(axis=0)
    top_left = image[: height // 8, : width // 8].reshape(-1, 3).mean(axis=0)
    assert top_right[0] > 200 and top_right[2] < 60
    assert top_left[2] > 150 and top_left[0] < 60


def test_large_jpeg_draft_downscale_keeps_content(tmp_path):
    pixels = np.zeros((800, 1200, 3), dtype=np.uint8)
    pixels[:, 600:] = (0, 255, 0)  # right half green
    path = tmp_path / "big.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    image = read_image(path, target_size=(64, 96))
    assert image.shape == (64, 96, 3)
    assert image[:, :40, 1].mean() < 30 and image[:, 56:, 1].mean() > 220


def test_sixteen_bit_is_scaled_not_clipped(odd_images_dir):
    image = read_image(odd_images_dir / "sixteen_bit.png")
    assert image.min() == 0 and image.max() == 255
    assert np.all(image[..., 0] == image[..., 2])  # gray stays gray
    assert len(np.unique(image)) > 100


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_over_black(tmp_path, mode):
    pixels = np.full((4, 4, 4 if mode == "RGBA" else 2), 255, dtype=np.uint8)
    pixels[:2, ..., -1] = 0  # top half fully transparent
    path = tmp_path / f"alpha_{mode}.png"
    Image.fromarray(pixels, mode).save(path)
    image = read_image(path)
    assert np.all(image[:2] == 0) and np.all(image[2:] == 255)


@pytest.mark.parametrize("name, reason", BAD.items())
def test_broken_files_raise_image_error_with_reason(odd_images_dir, name, reason):
    with pytest.raises(ImageError) as caught:
        read_image(odd_images_dir / name)
    assert caught.value.reason == reason
    assert caught.value.path == str(odd_images_dir / name)
    assert str(caught.value) == f"{odd_images_dir / name}: {reason}"
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("name", ["empty.jpg", "random_bytes.jpg", "text.png"])
def test_read_header_fails_on_non_images(odd_images_dir, name):
    with pytest.raises(ImageError, match=re.escape(BAD[name])):
        read_header(odd_images_dir / name)


@pytest.mark.parametrize("reader", [read_image, read_header])
def test_missing_file(tmp_path, reader):
    with pytest.raises(ImageError, match="file not found"):
        reader(tmp_path / "nope.jpg")


@pytest.mark.parametrize("reader", [read_image, read_header])
def test_directory_is_not_an_image(tmp_path, reader):
    with pytest.raises(ImageError, match="directory"):
        reader(tmp_path)


@pytest.mark.parametrize("target_size", [(0, 10), (10,), "64", (6.5, 8)])
def test_bad_target_size_is_a_value_error(odd_images_dir, target_size):
    with pytest.raises(ValueError, match="target_size"):
        read_image(odd_images_dir / "gray.jpg", target_size=target_size)


def test_image_extensions_are_lower_case_with_dot():
    assert all(ext.startswith(".") and ext == ext.lower() for ext in IMAGE_EXTENSIONS)


def test_resize_averages_areas_when_shrinking():
    image = np.arange(36, dtype=np.float32).reshape(6, 6, 1)
    halved = resize(image, (3, 3))
    np.testing.assert_allclose(halved[..., 0], image[..., 0].reshape(3, 2, 3, 2).mean(axis=(1, 3)))
    # 3 -> 2 pixels: each output pixel covers 1.5 input pixels, the middle one split in half.
    row = np.array([[[0.0], [30.0], [90.0]]], dtype=np.float32)
    np.testing.assert_allclose(resize(row, (1, 2))[0, :, 0], [(0 + 15) / 1.5, (15 + 90) / 1.5])


def test_resize_interpolates_when_enlarging_and_mixes_per_axis():
    row = np.array([[[0], [100]]], dtype=np.uint8)
    # Pixel centres: outputs at 0.25 and 1.25 of the input spacing, edges repeated.
    np.testing.assert_array_equal(resize(row, (1, 4))[0, :, 0], [0, 25, 75, 100])
    tall = np.repeat(np.array([[[0], [100]]], dtype=np.uint8), 4, axis=0)  # 4 high, 2 wide
    mixed = resize(tall, (2, 4))  # shrink the height, enlarge the width
    np.testing.assert_array_equal(mixed[:, :, 0], [[0, 25, 75, 100]] * 2)


def test_resize_keeps_dtype_channels_and_same_size_copies():
    image = np.random.default_rng(0).integers(0, 256, (10, 7, 3), dtype=np.uint8)
    same = resize(image, (10, 7))
    np.testing.assert_array_equal(same, image)
    assert same is not image
    assert resize(image, (4, 5)).shape == (4, 5, 3) and resize(image, (4, 5)).dtype == np.uint8
    assert resize(image[..., :1], (20, 3)).shape == (20, 3, 1)


def test_encoded_bytes_read_like_the_file(odd_images_dir, odd_images_expected):
    for name, expected in odd_images_expected.items():
        path = odd_images_dir / name
        if expected["ok"]:
            np.testing.assert_array_equal(read_image(path.read_bytes(), (12, 10)),
                                          read_image(path, (12, 10)))
            assert read_header(path.read_bytes()) == read_header(path)
        else:
            with pytest.raises(ImageError) as error:
                read_image(path.read_bytes(), name=f"shard-00001:{name}")
            assert str(error.value).startswith(f"shard-00001:{name}: ")


def test_header_gives_the_exif_orientation(odd_images_dir):
    assert read_header(odd_images_dir / "rotated_exif6.jpg")["orientation"] == 6
    assert read_header(odd_images_dir / "UPPER.JPG")["orientation"] == 1


def test_a_cut_download_is_not_complete(odd_images_dir):
    from helpers.files.images import is_complete

    whole = (odd_images_dir / "UPPER.JPG").read_bytes()
    assert is_complete(whole, "JPEG") and is_complete(odd_images_dir / "UPPER.JPG", "JPEG")
    assert not is_complete(whole[: len(whole) // 2], "JPEG")
    assert not is_complete(odd_images_dir / "truncated.jpg", "JPEG")


def test_the_pixel_budget_fires_before_pillows_own_check(tmp_path):
    import warnings

    from _hostile import png_bomb

    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb(10000, 10000))  # 100 MP: above Pillow's warning threshold too
    limit = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning would raise here
        for read in (read_header, read_image, lambda p: read_image(p, (16, 16))):
            with pytest.raises(ImageError, match=r"too many pixels: 10000×10000 \(100 megapixels, limit 30"):
                read(path)
    assert Image.MAX_IMAGE_PIXELS == limit
    assert read_header(path, max_pixels=200_000_000)["width"] == 10000


def test_raising_max_pixels_lets_a_large_image_through(tmp_path, monkeypatch):
    from _hostile import png_bomb

    from helpers.files import images

    path = tmp_path / "large.png"
    path.write_bytes(png_bomb(10000, 10000))
    monkeypatch.setattr(images, "MAX_PIXELS", 200_000_000)  # what the refusal tells a user to do
    assert read_header(path)["width"] == 10000


@pytest.mark.parametrize("size, target, expected", [
    ((8000, 6000), None, 2), ((8000, 6000), (64, 64), 8), ((800, 600), None, 1),
    ((40000, 30000), (4000, 4000), 8),
])
def test_jpeg_decode_scale_keeps_to_the_budget(size, target, expected):
    from helpers.files.images import decode_scale

    assert decode_scale(size, "JPEG", target, max_pixels=30_000_000) == expected


def test_a_large_png_is_refused_but_a_large_jpeg_is_scaled():
    from helpers.files.images import decode_scale

    with pytest.raises(ValueError, match="too many pixels: 8000×6000"):
        decode_scale((8000, 6000), "PNG", max_pixels=30_000_000)
    with pytest.raises(ValueError, match="even at 1/8 scale"):
        decode_scale((80000, 60000), "JPEG", max_pixels=30_000_000)
