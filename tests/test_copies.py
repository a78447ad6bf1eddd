"""Tests for finding copies: the hashes, the search, the ``duplicates`` command, ``train``
keeping copies in one split, and the near copies planted in the generated datasets."""
import argparse
import json

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from helpers.app import copies_cli, workflows
from helpers.data import load_dataset, load_folders
from helpers.datasets.generate import make_dataset, planted_files
from helpers.files import copies
from helpers.files.images import read_image
from helpers.scan import audit, find_copies

SEED = 27_031  # this file's own: the planted set is one no other code tunes on
KINDS = ("quality", "resize", "crop", "brightness")


def smooth_picture(rng):
    """A random picture: a coarse grid of colours enlarged, with grain."""
    width, height = (int(side) for side in rng.integers(96, 257, 2))
    grid = rng.integers(0, 256, (rng.integers(3, 8), rng.integers(3, 8), 3), dtype=np.uint8)
    pixels = np.asarray(Image.fromarray(grid).resize((width, height), Image.BICUBIC), np.float32)
    pixels += rng.normal(0, 8, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def near_copy(image, kind, rng):
    """``(copy, JPEG quality)`` of the four kinds: re-encoded, resized, cropped by a few
    percent, a little brighter or darker."""
    if kind == "quality":
        return image, int(rng.integers(30, 71))
    if kind == "resize":
        factor = rng.uniform(0.5, 0.8) if rng.random() < 0.5 else rng.uniform(1.2, 1.5)
        return image.resize((round(image.width * factor), round(image.height * factor))), 90
    if kind == "crop":
        fraction = rng.uniform(0.02, 0.04)
        cut_x, cut_y = round(image.width * fraction), round(image.height * fraction)
        left, top = int(rng.integers(cut_x + 1)), int(rng.integers(cut_y + 1))
        return image.crop((left, top, image.width - cut_x + left, image.height - cut_y + top)), 90
    factor = rng.uniform(0.8, 0.9) if rng.random() < 0.5 else rng.uniform(1.1, 1.2)
    return ImageEnhance.Brightness(image).enhance(factor), 90


def plant_copies(originals, folder, n_copies, rng):
    """Save near copies of ``n_copies`` of the ``originals`` (paths) in ``folder``: ``[(original,
    copy)]``, the four kinds in turn."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for number, index in enumerate(rng.choice(len(originals), n_copies, replace=False)):
        with Image.open(originals[index]) as image:
            copy, quality = near_copy(image.convert("RGB"), KINDS[number % 4], rng)
        path = str(folder / f"copy_{number:03d}_{KINDS[number % 4]}.jpg")
        copy.save(path, quality=quality)
        pairs.append((originals[index], path))
    return pairs


def pairs_within(groups):
    return {frozenset((a, b)) for group in groups for a in group for b in group if a < b}


def scores(found_groups, true_pairs, paths):
    """Precision and recall of the pairs in one group (a copy of a copy is a copy too)."""
    index = {path: position for position, path in enumerate(paths)}
    links = np.array([(index[a], index[b]) for a, b in true_pairs]).reshape(-1, 2)
    truth = pairs_within([[paths[i] for i in group] for group in copies.groups_of(len(paths), links)])
    found = pairs_within(found_groups)
    return len(found & truth) / max(len(found), 1), len(found & truth) / len(truth)


@pytest.fixture(scope="module")
def planted_noise(tmp_path_factory):
    """80 random pictures and 40 near copies of them: ``(paths, planted pairs)``."""
    folder = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(SEED)
    originals = []
    for index in range(80):
        originals.append(str(folder / f"picture_{index:03d}.jpg"))
        smooth_picture(rng).save(originals[-1], quality=90)
    pairs = plant_copies(originals, folder / "copies", 40, rng)
    return originals + [copy for _, copy in pairs], pairs


@pytest.fixture(scope="module")
def planted_fashion(tmp_path_factory):
    """The generated clothes (seed SEED), their own planted copies and 40 more."""
    root = make_dataset("fashion", tmp_path_factory.mktemp("fashion") / "fashion", seed=SEED,
                        scale=0.06, progress=False)
    originals = load_dataset(root, layout="split-folders")["filename"].tolist()
    own = [(entry["copy_of"], entry["path"]) for entry in planted_files(root)["near_copies"]]
    pairs = plant_copies(originals, root.parent / "copies", 40, np.random.default_rng(SEED))
    return originals + [copy for _, copy in pairs], pairs + own


@pytest.mark.parametrize("dataset", ["planted_noise", "planted_fashion"])
def test_planted_near_copies_are_found(dataset, request):
    paths, pairs = request.getfixturevalue(dataset)
    result = copies.find_copies(paths)
    precision, recall = scores([[paths[i] for i in group] for group in result["groups"]], pairs, paths)
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)
    assert result["unreadable"] == [] and result["n_hashed"] == len(paths)
    assert result["pairs_checked"] < len(paths) * (len(paths) - 1) / 2 / 4


def flat_and_textured_pictures():
    rng = np.random.default_rng(1)
    flat = np.zeros((32, 32, 3), np.uint8)
    flat[:12] = (120, 200, 80)
    return [np.asarray(smooth_picture(rng).resize((32, 32))) for _ in range(3)] + [flat]


@pytest.mark.parametrize("pixels", flat_and_textured_pictures())
@pytest.mark.parametrize("mirrored", [False, True])
def test_the_hash_is_imagehash_bit_for_bit(pixels, mirrored):
    pixels = np.ascontiguousarray(pixels[:, ::-1] if mirrored else pixels)
    channels = [Image.fromarray(np.ascontiguousarray(pixels[..., channel])) for channel in range(3)]
    bits = [method(channel).hash.ravel() for method in (imagehash.phash, imagehash.average_hash)
            for channel in channels]
    image_hash, shares = copies.fingerprint(pixels)
    assert np.array_equal(image_hash, np.packbits(np.concatenate(bits)))
    assert shares.sum() == pytest.approx(1.0)


def save_picture(path, seed, mirrored=False):
    image = smooth_picture(np.random.default_rng(seed))
    image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else image
    image.save(path, quality=90)
    return str(path)


def test_a_mirror_image_is_a_copy_only_when_asked(tmp_path):
    paths = [save_picture(tmp_path / "a.jpg", 3), save_picture(tmp_path / "b.jpg", 3, mirrored=True),
             save_picture(tmp_path / "c.jpg", 4)]
    assert copies.find_copies(paths)["groups"] == []
    assert copies.find_copies(paths, mirror=True)["groups"] == [[0, 1]]


def test_byte_identical_files_form_an_identical_group(tmp_path):
    first = save_picture(tmp_path / "first.jpg", 5)
    (tmp_path / "again.jpg").write_bytes((tmp_path / "first.jpg").read_bytes())
    with Image.open(first) as image:
        image.save(tmp_path / "recoded.jpg", quality=50)
    paths = [first, str(tmp_path / "again.jpg"), save_picture(tmp_path / "other.jpg", 6),
             str(tmp_path / "recoded.jpg")]
    result = copies.find_copies(paths)
    assert result["groups"] == [[0, 1, 3]] and result["identical"] == [False]
    result = copies.find_copies(paths[:3])
    assert result["groups"] == [[0, 1]] and result["identical"] == [True]


def test_the_same_layout_in_other_colours_is_no_copy(tmp_path):
    paths = []
    for name, top, bottom in (("green", (90, 160, 90), (60, 60, 60)),
                              ("purple", (160, 90, 170), (90, 80, 40))):
        pixels = np.zeros((120, 160, 3), np.uint8)
        pixels[:50], pixels[50:] = top, bottom
        paths.append(str(tmp_path / f"{name}.png"))
        Image.fromarray(pixels).save(paths[-1])
    (first, first_colour), (second, second_colour) = (
        copies.fingerprint(read_image(path, target_size=(32, 32))) for path in paths)
    assert np.bitwise_count(first ^ second).sum() <= copies.MAX_DISTANCE  # the same pattern
    assert np.abs(first_colour - second_colour).sum() > copies.MAX_COLOUR_DIFFERENCE
    assert copies.find_copies(paths)["groups"] == []


def test_odd_files_are_reported_as_audit_does_and_cost_no_other_result(odd_images_dir):
    original = save_picture(odd_images_dir / "zz_picture.jpg", 21)
    with Image.open(original) as image:
        image.save(odd_images_dir / "zz_recoded.jpg", quality=40)
    frame = load_folders(odd_images_dir)
    expected = [{"path": record["path"], "reason": record["error"]}
                for record in audit(frame, progress=False)["files"] if not record["ok"]]
    result = find_copies(frame)
    assert len(expected) == 4 and result["unreadable"] == expected
    assert result["n_hashed"] == len(frame) - len(expected)
    assert [original, str(odd_images_dir / "zz_recoded.jpg")] in result["groups"]


def test_the_search_compares_few_pairs_and_finds_the_close_ones():
    rng = np.random.default_rng(SEED)
    hashes = rng.integers(0, 256, (20_000, copies.HASH_BYTES), dtype=np.uint8)
    colours = rng.dirichlet([20, 20, 20], len(hashes))
    bits = np.unpackbits(hashes[:100], axis=1)
    for row, flips in enumerate(rng.integers(0, copies.MAX_DISTANCE + 1, 100)):
        bits[row, rng.choice(bits.shape[1], flips, replace=False)] ^= 1
    hashes[-100:], colours[-100:] = np.packbits(bits, axis=1), colours[:100]
    pairs, n_checked = copies.near_pairs(hashes, colours)
    found = {tuple(pair) for pair in pairs.tolist()}
    assert sum((row, len(hashes) - 100 + row) in found for row in range(100)) >= 98
    assert len(found) <= 110
    assert n_checked < 1e-3 * len(hashes) ** 2 / 2


def test_groups_join_copies_of_copies_and_keep_input_order():
    pairs = np.array([[5, 2], [2, 7], [0, 3]])
    assert copies.groups_of(8, pairs) == [[0, 3], [2, 5, 7]]
    assert copies.groups_of(0, np.zeros((0, 2), dtype=np.int64)) == []


def run_duplicates(argv, capsys):
    parser = argparse.ArgumentParser()
    copies_cli.add_duplicates_options(parser)
    code = copies_cli.command_duplicates(parser.parse_args(argv))
    return code, capsys.readouterr().out


@pytest.fixture
def folders_with_copies(tmp_path):
    """Two class folders; red/1.jpg re-encoded as blue/copy.jpg, red/2.jpg byte for byte as
    red/again.jpg, and a broken file."""
    for label, seeds in (("red", (11, 12, 13)), ("blue", (14, 15))):
        (tmp_path / label).mkdir()
        for seed in seeds:
            save_picture(tmp_path / label / f"{seed % 10}.jpg", seed)
    with Image.open(tmp_path / "red" / "1.jpg") as image:
        image.save(tmp_path / "blue" / "copy.jpg", quality=45)
    (tmp_path / "red" / "again.jpg").write_bytes((tmp_path / "red" / "2.jpg").read_bytes())
    (tmp_path / "red" / "broken.jpg").write_bytes(b"\xff\xd8 not a picture")
    return tmp_path


def test_duplicates_command_json(folders_with_copies, capsys):
    code, out = run_duplicates([str(folders_with_copies), "--layout", "folders", "--format", "json"],
                               capsys)
    report = json.loads(out)
    assert code == 0 and len(report["groups"]) == 2
    by_first = {tuple(sorted(group)): (differ, identical) for group, differ, identical in
                zip(report["groups"], report["labels_differ"], report["identical"])}
    root = str(folders_with_copies)
    assert by_first == {(f"{root}/blue/copy.jpg", f"{root}/red/1.jpg"): (True, False),
                        (f"{root}/red/2.jpg", f"{root}/red/again.jpg"): (False, True)}
    assert report["unreadable"] == [{"path": f"{root}/red/broken.jpg",
                                     "reason": "not an image (cannot identify)"}]
    assert report["n_images"] == 8 and report["n_hashed"] == 7 and report["pairs_checked"] >= 0


def test_duplicates_command_table_and_mirror(folders_with_copies, capsys):
    save_picture(folders_with_copies / "blue" / "mirrored.jpg", 13, mirrored=True)
    _, out = run_duplicates([str(folders_with_copies), "--layout", "folders"], capsys)
    assert "2 groups of copies" in out and "labels differ" in out and "SKIP" in out
    _, out = run_duplicates([str(folders_with_copies), "--layout", "folders", "--mirror"], capsys)
    assert "3 groups of copies" in out and "mirrored.jpg" in out
    with pytest.raises(ValueError, match="max_distance: expected a whole number of bits"):
        run_duplicates([str(folders_with_copies), "--max-distance", "500"], capsys)


def test_train_keeps_each_group_of_copies_in_one_split(folders_with_copies, tmp_path):
    """The split step of ``train_from_source``: copies joined, or not when allowed."""
    frame = load_dataset(folders_with_copies, layout="folders")
    frame = frame[~frame["filename"].str.endswith("broken.jpg")].reset_index(drop=True)
    for seed in range(8):
        lines = []
        options = workflows.TrainOptions(seed=seed, val_size=0.25, test_size=0.25)
        parts = workflows._saved_or_new_splits(frame, tmp_path, 0, options, write=False,
                                               log=lines.append)
        split_of = {path: name for name, part in zip("tvs", parts) for path in part["filename"]}
        root = str(folders_with_copies)
        assert split_of[f"{root}/red/1.jpg"] == split_of[f"{root}/blue/copy.jpg"]
        assert split_of[f"{root}/red/2.jpg"] == split_of[f"{root}/red/again.jpg"]
        assert any("2 groups of copies (4 images) kept together" in line for line in lines)
        assert all(list(part.columns) == list(frame.columns) for part in parts)
    parser = argparse.ArgumentParser()
    copies_cli.add_copies_option(parser)
    flag = parser.parse_args(["--allow-copies-across-splits"]).allow_copies_across_splits
    allowed = workflows.TrainOptions(allow_copies_across_splits=flag, val_size=0.25, test_size=0.25)
    lines = []
    workflows._saved_or_new_splits(frame, tmp_path, 0, allowed, write=False, log=lines.append)
    assert any("not searched" in line for line in lines)


@pytest.mark.parametrize("preset, layout", [("fashion", "split-folders"), ("scenes", "voc")])
def test_the_generated_datasets_list_their_planted_copies_and_they_are_found(preset, layout,
                                                                             tmp_path):
    root = make_dataset(preset, tmp_path / preset, seed=0, scale=0.15, progress=False)
    planted = planted_files(root)
    assert len(planted["near_copies"]) >= 3 and len(planted["mislabelled"]) >= 3
    frame = load_dataset(root, layout=layout)
    result = find_copies(frame)
    group_of = {path: number for number, group in enumerate(result["groups"]) for path in group}
    for entry in planted["near_copies"]:
        assert group_of.get(entry["path"]) == group_of.get(entry["copy_of"]) is not None, entry
    planted_pairs = {frozenset((entry["path"], entry["copy_of"])) for entry in planted["near_copies"]}
    place = {row.filename: row.filename.rsplit("/", 1)[-1].split("_")[0] for row in frame.itertuples()}
    for group in result["groups"]:
        # Any other group: images of one place (scenes' Patient ID) that differ by a small object.
        assert pairs_within([group]) & planted_pairs or len({place[path] for path in group}) == 1, group
