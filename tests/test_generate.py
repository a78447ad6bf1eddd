"""Tests for helpers.datasets.generate: determinism, layouts, markers and argument checks."""
import csv
import hashlib
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from helpers.datasets import generate
from helpers.datasets.generate import fashion_counts, make_dataset

TINY = 0.02  # ~40 fashion images, ~36 scene images: each dataset takes well under a second or two


def tree_hashes(root):
    """Relative path → sha256 of every file under ``root``."""
    root = Path(root)
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One tiny dataset per preset, shared by the read-only tests."""
    root = tmp_path_factory.mktemp("generated")
    return {preset: make_dataset(preset, root / preset, seed=0, scale=TINY, progress=False)
            for preset in generate.PRESETS}


@pytest.mark.parametrize("preset", generate.PRESETS)
def test_same_seed_gives_identical_bytes(preset, tiny, tmp_path):
    again = make_dataset(preset, tmp_path / "again", seed=0, scale=TINY, progress=False)
    assert tree_hashes(again) == tree_hashes(tiny[preset])


@pytest.mark.parametrize("preset", generate.PRESETS)
def test_other_seed_gives_other_images(preset, tiny, tmp_path):
    other = make_dataset(preset, tmp_path / "other", seed=1, scale=TINY, progress=False)
    first, second = tree_hashes(tiny[preset]), tree_hashes(other)
    jpegs = [name for name in first if name.endswith(".jpg") and name in second]
    assert jpegs
    assert all(first[name] != second[name] for name in jpegs)


def test_fashion_folders_and_counts(tiny):
    root = tiny["fashion"]
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert folders == sorted(generate.FASHION_SOURCE_COUNTS)
    expected = fashion_counts(TINY)
    for folder in folders:
        assert len(list((root / folder).glob("*.jpg"))) == expected[folder]


@pytest.mark.parametrize("scale", [0.25, 1.0])
def test_fashion_counts_are_proportional_to_the_source(scale):
    counts = fashion_counts(scale)
    assert sum(counts.values()) == round(generate.FASHION_IMAGES * scale)
    source_total = sum(generate.FASHION_SOURCE_COUNTS.values())
    for folder, count in counts.items():
        share = generate.FASHION_SOURCE_COUNTS[folder] / source_total
        assert abs(count - share * generate.FASHION_IMAGES * scale) < 1
    assert counts["white_shoe"] > counts["white_bag"] > counts["black_shoe"] > counts["red_shirt"]


def test_fashion_images_are_rgb_jpegs_of_varied_size(tiny):
    sizes = set()
    for path in sorted(tiny["fashion"].rglob("*.jpg")):
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert not image.info.get("exif")
            assert 96 <= min(image.size) and max(image.size) <= 320
            sizes.add(image.size)
    assert len(sizes) > 10


def test_smaller_scale_is_a_subset(tiny, tmp_path):
    smaller = make_dataset("fashion", tmp_path / "smaller", seed=0, scale=TINY / 2, progress=False)
    small, large = tree_hashes(smaller), tree_hashes(tiny["fashion"])
    jpegs = [name for name in small if name.endswith(".jpg")]
    assert jpegs and all(small[name] == large[name] for name in jpegs)


def read_voc(root):
    """image id → (size, objects) parsed straight from the XML files."""
    parsed = {}
    for path in sorted((root / "Annotations").glob("*.xml")):
        annotation = ET.parse(path).getroot()
        size = annotation.find("size")
        objects = []
        for element in annotation.findall("object"):
            box = element.find("bndbox")
            objects.append({
                "name": element.findtext("name"),
                "difficult": element.findtext("difficult"),
                "box": [int(box.findtext(key)) for key in ("xmin", "ymin", "xmax", "ymax")],
                "parts": [part.findtext("name") for part in element.findall("part")],
                "actions": element.find("actions"),
            })
        parsed[path.stem] = {
            "filename": annotation.findtext("filename"),
            "size": [int(size.findtext(key)) for key in ("width", "height", "depth")],
            "objects": objects,
        }
    return parsed


def test_scenes_voc_layout(tiny):
    root = tiny["scenes"]
    voc = read_voc(root)
    jpegs = sorted(p.stem for p in (root / "JPEGImages").glob("*.jpg"))
    assert sorted(voc) == jpegs
    train = (root / "ImageSets" / "Main" / "train.txt").read_text().split()
    val = (root / "ImageSets" / "Main" / "val.txt").read_text().split()
    assert train and val and not set(train) & set(val)
    assert sorted(train + val) == jpegs
    for image_id, entry in voc.items():
        assert entry["filename"] == f"{image_id}.jpg"
        width, height, depth = entry["size"]
        with Image.open(root / "JPEGImages" / entry["filename"]) as image:
            assert image.size == (width, height) and depth == 3
        assert 128 <= min(width, height) and max(width, height) <= 320
        assert len(entry["objects"]) <= generate.SCENE_MAX_OBJECTS
        for voc_object in entry["objects"]:
            assert voc_object["name"] in generate.SCENE_CLASS_PROBABILITY
            assert voc_object["difficult"] in ("0", "1")
            xmin, ymin, xmax, ymax = voc_object["box"]
            assert 1 <= xmin < xmax <= width and 1 <= ymin < ymax <= height
            if voc_object["parts"] or voc_object["actions"] is not None:
                assert voc_object["name"] == "person"


def test_scenes_full_scale_statistics(tmp_path):
    """At a moderate scale: empty images, skewed classes, person parts and actions all occur."""
    root = make_dataset("scenes", tmp_path / "scenes", seed=0, scale=0.15, progress=False)
    voc = read_voc(root)
    n_images = len(voc)
    presence = {}
    for entry in voc.values():
        for name in {o["name"] for o in entry["objects"]}:
            presence[name] = presence.get(name, 0) + 1
    assert sum(not entry["objects"] for entry in voc.values()) > 0.05 * n_images
    assert presence["person"] > 0.5 * n_images
    assert min(presence.get(name, 0) for name in ("tvmonitor", "sheep", "boat")) < 0.05 * n_images
    objects = [o for entry in voc.values() for o in entry["objects"]]
    assert any(o["parts"] for o in objects) and any(o["actions"] is not None for o in objects)
    assert any(o["difficult"] == "1" for o in objects)


def test_scenes_csv_matches_the_xml(tiny):
    root = tiny["scenes"]
    voc = read_voc(root)
    with open(root / "Data_Entry.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert {"Image Index", "Finding Labels", "Patient ID"} <= set(rows[0])
    assert sorted(row["Image Index"] for row in rows) == sorted(e["filename"] for e in voc.values())
    for row in rows:
        names = sorted({o["name"] for o in voc[Path(row["Image Index"]).stem]["objects"]})
        assert row["Finding Labels"] == ("|".join(names) if names else "No Finding")
    groups = {}
    for row in rows:
        groups.setdefault(row["Patient ID"], []).append(row)
    assert all(1 <= len(group) <= 5 for group in groups.values())
    assert any(len(group) > 1 for group in groups.values())
    # A patient (one place) is never split between train and val.
    val = set((root / "ImageSets" / "Main" / "val.txt").read_text().split())
    for group in groups.values():
        assert len({Path(row["Image Index"]).stem in val for row in group}) == 1


@pytest.mark.parametrize("preset", generate.PRESETS)
def test_marker_is_written_last_and_describes_the_run(preset, tiny):
    root = tiny[preset]
    marker = json.loads((root / generate.MARKER_COMPLETE).read_text())
    assert (marker["preset"], marker["seed"], marker["scale"]) == (preset, 0, TINY)
    newest = max(p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file())
    assert (root / generate.MARKER_COMPLETE).stat().st_mtime_ns == newest


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(generate, "DATA_DIR", tmp_path)
    monkeypatch.setattr(generate, "QUICK_SCALE", TINY)
    return tmp_path


def test_ensure_dataset_generates_once(data_dir):
    path = generate.ensure_dataset("fashion", quick=True)
    assert path == data_dir / "fashion-quick"
    marker = path / generate.MARKER_COMPLETE
    stamp = marker.stat().st_mtime_ns
    assert generate.ensure_dataset("fashion", quick=True) == path
    assert marker.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("change", [{"seed": 5}, {"scale": 1.0}, {"version": 0}])
def test_ensure_dataset_regenerates_other_settings_or_versions(change, data_dir):
    path = generate.ensure_dataset("fashion", quick=True)
    marker_path = path / generate.MARKER_COMPLETE
    marker = json.loads(marker_path.read_text())
    marker_path.write_text(json.dumps({**marker, **change}))
    generate.ensure_dataset("fashion", quick=True)
    assert json.loads(marker_path.read_text()) == marker


def test_ensure_dataset_regenerates_a_half_written_folder(data_dir):
    path = generate.ensure_dataset("scenes", quick=True)
    before = tree_hashes(path)
    # Simulate an interrupted run: marker missing, some files lost, a stray partial file.
    (path / generate.MARKER_COMPLETE).unlink()
    for image in sorted((path / "JPEGImages").glob("*.jpg"))[:5]:
        image.unlink()
    (path / "JPEGImages" / "half.jpg").write_bytes(b"\xff\xd8")
    assert generate.ensure_dataset("scenes", quick=True) == path
    assert tree_hashes(path) == before


def test_make_dataset_replaces_an_earlier_dataset_of_the_same_preset(tmp_path):
    out = make_dataset("fashion", tmp_path / "out", seed=0, scale=TINY, progress=False)
    make_dataset("fashion", out, seed=3, scale=TINY / 2, progress=False)
    marker = json.loads((out / generate.MARKER_COMPLETE).read_text())
    assert marker["seed"] == 3
    assert len(list(out.rglob("*.jpg"))) == sum(fashion_counts(TINY / 2).values())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"preset": "faces"}, "preset"),
        ({"scale": 0}, "scale"),
        ({"scale": -1.0}, "scale"),
        ({"scale": float("nan")}, "scale"),
        ({"scale": "big"}, "scale"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_arguments(kwargs, message, tmp_path):
    arguments = {"preset": "fashion", "out_dir": tmp_path / "out", "scale": TINY, "progress": False}
    with pytest.raises(ValueError, match=message):
        make_dataset(**{**arguments, **kwargs})
    assert not (tmp_path / "out").exists()


def test_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="out_dir"):
        make_dataset("fashion", tmp_path, scale=TINY, progress=False)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_refuses_a_dataset_of_the_other_preset(tmp_path):
    out = make_dataset("scenes", tmp_path / "out", scale=TINY, progress=False)
    with pytest.raises(ValueError, match="'scenes' dataset"):
        make_dataset("fashion", out, scale=TINY, progress=False)
    assert (out / "Data_Entry.csv").exists()


def test_refuses_a_file(tmp_path):
    path = tmp_path / "file.jpg"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="out_dir"):
        make_dataset("fashion", path, scale=TINY, progress=False)


def test_ensure_dataset_rejects_unknown_preset(data_dir):
    with pytest.raises(ValueError, match="preset"):
        generate.ensure_dataset("animals")


def test_shapes_folders_boxes_and_colours(tiny):
    import numpy as np

    root = tiny["shapes"]
    folders = sorted(path.name for path in root.iterdir() if path.is_dir())
    assert folders == sorted(f"{c}_{s}" for c in generate.SHAPE_COLOURS for s in generate.SHAPE_NAMES)
    with open(root / generate.SHAPE_BOXES_FILE, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == sum(1 for _ in root.rglob("*.jpg")) == 12 * max(1, round(90 * TINY))
    hues = {"red": 0.0, "green": 0.34, "blue": 0.62, "yellow": 0.15}
    for row in rows:
        image = Image.open(root / row["filename"])
        assert image.size == (int(row["width"]), int(row["height"]))
        assert 64 <= image.width <= 80 and image.width == image.height
        x0, y0, x1, y1 = (int(row[key]) for key in ("xmin", "ymin", "xmax", "ymax"))
        assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height
        # The middle of the box is the shape, in the colour its folder names.
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        patch = np.asarray(image.convert("HSV"))[cy - 2:cy + 3, cx - 2:cx + 3].reshape(-1, 3)
        hue = float(np.median(patch[:, 0])) / 255
        colour = row["filename"].split("/")[0].split("_")[0]
        assert min(abs(hue - hues[colour]), 1 - abs(hue - hues[colour])) < 0.06, row["filename"]


# ----------------------------------------------------------------------------- planted problems
@pytest.fixture(scope="module")
def with_planted(tmp_path_factory):
    """Clothes and scenes large enough to hold planted near copies and mislabelled images."""
    root = tmp_path_factory.mktemp("planted")
    return {preset: make_dataset(preset, root / preset, seed=0, scale=0.1, progress=False)
            for preset in ("fashion", "scenes")}


def jpeg_bytes(image):
    buffer = io.BytesIO()
    generate._save_jpeg(image, buffer)
    return buffer.getvalue()


def test_only_the_planted_files_differ_from_the_plain_drawing(with_planted):
    root = with_planted["fashion"]
    planted = generate.planted_files(root)
    changed = {entry["path"] for kind in planted.values() for entry in kind}
    folders = list(generate.FASHION_SOURCE_COUNTS)
    for path in sorted(root.rglob("*.jpg")):
        folder, index = path.parent.name, int(path.stem.rsplit("_", 1)[1])
        plain = generate._fashion_image(folder, generate._rng(0, "fashion", folders.index(folder), index))
        assert (path.read_bytes() == jpeg_bytes(plain)) == (str(path) not in changed), path
    root = with_planted["scenes"]
    planted = generate.planted_files(root)
    copied = {entry["path"] for entry in planted["near_copies"]}
    for path in sorted((root / "JPEGImages").glob("*.jpg")):
        patient, follow_up = (int(part) for part in path.stem.split("_"))
        plain, _ = generate._scene_drawing(0, patient - 1, follow_up)
        assert (path.read_bytes() == jpeg_bytes(plain)) == (str(path) not in copied), path


@pytest.mark.parametrize("preset", ["fashion", "scenes"])
def test_the_marker_lists_the_planted_files(preset, with_planted):
    root = with_planted[preset]
    planted = generate.planted_files(root)
    marker = json.loads((root / generate.MARKER_COMPLETE).read_text())
    assert len(planted["near_copies"]) == len(marker["planted"]["near_copies"]) >= 3
    assert len(planted["mislabelled"]) == len(marker["planted"]["mislabelled"]) >= 3
    changed = {entry["path"] for kind in planted.values() for entry in kind}
    for entry in planted["near_copies"]:
        assert Path(entry["path"]).is_file() and Path(entry["copy_of"]).is_file()
        assert entry["copy_of"] not in changed and entry["kind"] in ("quality", "resize", "crop", "brightness")
        with Image.open(entry["path"]) as image:
            low = 96 if preset == "fashion" else 128
            assert low <= min(image.size) and max(image.size) <= 320
    for entry in planted["mislabelled"]:
        assert len(set(entry["true"]) ^ set(entry["given"])) == (2 if preset == "fashion" else 1)


def test_mislabelled_clothes_are_filed_under_their_given_labels(with_planted):
    for entry in generate.planted_files(with_planted["fashion"])["mislabelled"]:
        folder = Path(entry["path"]).parent.name
        assert entry["given"] == sorted(folder.split("_"))
        assert len(set(entry["given"]) & set(entry["true"])) == 1  # the colour or the item


def test_mislabelled_scenes_lack_one_class_in_xml_and_csv(with_planted):
    root = with_planted["scenes"]
    voc = read_voc(root)
    with open(root / "Data_Entry.csv", newline="", encoding="utf-8") as file:
        rows = {row["Image Index"]: row["Finding Labels"] for row in csv.DictReader(file)}
    for entry in generate.planted_files(root)["mislabelled"]:
        name = Path(entry["path"]).name
        assert sorted({o["name"] for o in voc[Path(name).stem]["objects"]}) == entry["given"]
        assert rows[name] == ("|".join(entry["given"]) or "No Finding")
        assert set(entry["given"]) < set(entry["true"])


def test_planted_files_needs_a_dataset_with_planted_files(tiny):
    with pytest.raises(ValueError, match="planted"):
        generate.planted_files(tiny["shapes"])
