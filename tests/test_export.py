"""``helpers export``: one folder with a SavedModel (resize and thresholds inside), LiteRT,
ONNX and labels.json, each checked against the Keras model and usable without ``helpers``."""
import hashlib
import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from PIL import Image

from _factories import CLASSES, save_model_folder
from helpers import artefacts
from helpers.app import export

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    save_model_folder(root / "model")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for index, (size, suffix) in enumerate([((40, 30), "png"), ((9, 50), "jpg"), ((16, 16), "bmp"),
                                            ((25, 12), "gif")]):
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(photos / f"{index}.{suffix}")
    # Large enough that helpers predict decodes it at 1/4 and 1/8 scale (Pillow's draft).
    for index, size in enumerate([(70, 90), (170, 200)], start=4):
        gradient = np.add.outer(np.arange(size[0]), 2 * np.arange(size[1]))[..., None] * [1, 3, 5]
        Image.fromarray((gradient % 256).astype(np.uint8)).save(photos / f"{index}.jpg", quality=90)
    paths = sorted(str(path) for path in photos.iterdir())
    document = export.export_model(root / "model", root / "out", check_paths=paths)
    return {"root": root, "out": root / "out", "paths": paths, "document": document}


def test_every_file_is_written_with_its_hash(exported):
    out = exported["out"]
    labels = json.loads((out / "labels.json").read_text())
    assert labels["classes"] == CLASSES and labels["thresholds"] == [0.45, 0.5, 0.55, 0.5]
    assert labels["target_size"] == [16, 16] and labels["task"] == "multi_label"
    assert {"saved_model/saved_model.pb", "model.tflite", "model.onnx"} <= set(labels["sha256"])
    for name, digest in labels["sha256"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert not [path for path in out.parent.iterdir() if path.name.startswith(".out-")]


def test_each_file_agrees_with_the_keras_model(exported):
    checks = exported["document"]["checks"]
    assert set(checks) == {"saved_model", "from_bytes", "litert", "onnx"}
    for name, difference in checks.items():
        assert difference <= export.TOLERANCES[name], name


# Loads each file with TensorFlow, LiteRT and onnxruntime only, as a user's service would.
WITHOUT_HELPERS = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf, onnxruntime
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image
    out, paths = sys.argv[1], sys.argv[2:]
    labels = json.load(open(f"{out}/labels.json"))
    model = tf.saved_model.load(f"{out}/saved_model")
    files = tf.stack([tf.io.read_file(path) for path in paths])
    result = model.signatures["from_bytes"](image_bytes=files)
    height, width = labels["target_size"]
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB").resize((width, height)))
                       for p in paths]).astype("float32") / 255
    session = onnxruntime.InferenceSession(f"{out}/model.onnx")
    onnx = session.run(None, {session.get_inputs()[0].name: pixels})[0]
    interpreter = Interpreter(model_path=f"{out}/model.tflite")
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels[:1])
    interpreter.invoke()
    litert = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    print(json.dumps({
        "helpers_imported": "helpers" in sys.modules,
        "decisions": result["decisions"].numpy().tolist(),
        "probabilities": result["probabilities"].numpy().tolist(),
        "onnx_shape": list(onnx.shape), "litert_shape": list(litert.shape)}))
""")


def test_the_files_load_without_helpers_and_give_the_labels_helpers_predict_gives(exported):
    from helpers.predict import predict_paths

    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_HELPERS, str(exported["out"]), *exported["paths"]],
        capture_output=True, text=True, timeout=300, cwd=exported["root"])
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["helpers_imported"] is False
    assert found["onnx_shape"] == [len(exported["paths"]), len(CLASSES)]
    assert found["litert_shape"] == [1, len(CLASSES)]
    expected = predict_paths(exported["root"] / "model", exported["paths"])
    for row, decisions, probabilities in zip(expected, found["decisions"], found["probabilities"]):
        assert [label for label, yes in zip(CLASSES, decisions) if yes] == row["labels"]
        np.testing.assert_allclose(probabilities, [row["probabilities"][c] for c in CLASSES],
                                   atol=1e-4)


def test_a_file_that_is_not_an_image_fails_clearly(exported):
    import tensorflow as tf

    model = tf.saved_model.load(str(exported["out"] / "saved_model"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="(?i)image"):
        model.signatures["from_bytes"](image_bytes=tf.constant([b"not a picture"]))


def test_any_image_size_is_resized_inside(exported):
    import tensorflow as tf

    model = tf.saved_model.load(str(exported["out"] / "saved_model"))
    for shape in [(1, 5, 300, 3), (2, 64, 16, 3), (1, 16, 16, 3)]:
        result = model.signatures["serving_default"](images=tf.zeros(shape, tf.uint8))
        assert result["probabilities"].shape == (shape[0], len(CLASSES))
        assert result["decisions"].dtype == tf.bool


def test_a_multi_class_model_decides_by_argmax(tmp_path):
    import tensorflow as tf

    save_model_folder(tmp_path / "model", task="multi_class")
    export.export_model(tmp_path / "model", tmp_path / "out", formats=("saved_model",))
    assert not (tmp_path / "out" / "model.onnx").exists()
    model = tf.saved_model.load(str(tmp_path / "out" / "saved_model"))
    images = np.random.default_rng(0).integers(0, 256, (5, 30, 20, 3), dtype=np.uint8)
    result = model.signatures["serving_default"](images=tf.constant(images))
    decisions = result["decisions"].numpy()
    assert (decisions.sum(axis=1) == 1).all()
    assert (decisions.argmax(axis=1) == result["probabilities"].numpy().argmax(axis=1)).all()


def edit_labels(model_dir, **changes):
    path = model_dir / artefacts.LABELS_FILE
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("edit, message", [
    (lambda d: edit_labels(d, classes=["a", "b"], thresholds=[0.5, 0.5]),
     "do not belong together"),
    (lambda d: edit_labels(d, thresholds=None), "no 'thresholds'"),
    (lambda d: (d / artefacts.MODEL_FILE).unlink(), "not found"),
])
def test_a_hand_edited_model_folder_is_refused_with_nothing_written(tmp_path, edit, message):
    save_model_folder(tmp_path / "model")
    edit(tmp_path / "model")
    with pytest.raises(ValueError, match=message):
        export.export_model(tmp_path / "model", tmp_path / "out")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]


def test_a_lambda_layer_is_refused(tmp_path):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    outputs = keras.layers.Dense(4, activation="sigmoid")(keras.layers.Flatten()(x))
    artefacts.save_artefacts(tmp_path / "model", keras.Model(inputs, outputs), CLASSES,
                             "multi_label", (16, 16), thresholds=[0.5] * 4)
    with pytest.raises(ValueError, match="(?i)lambda"):
        export.export_model(tmp_path / "model", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_disagreeing_file_stops_the_export_and_leaves_no_folder(tmp_path, monkeypatch):
    save_model_folder(tmp_path / "model")
    monkeypatch.setitem(export.TOLERANCES, "onnx", -1.0)
    with pytest.raises(export.ExportError, match="onnx: probabilities differ"):
        export.export_model(tmp_path / "model", tmp_path / "out")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]


def test_an_existing_output_folder_is_not_overwritten(tmp_path):
    save_model_folder(tmp_path / "model")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(export.ExportError, match="not an empty folder"):
        export.export_model(tmp_path / "model", tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_the_command_line_exports_and_says_what_it_checked(tmp_path):
    save_model_folder(tmp_path / "model")
    result = subprocess.run([sys.executable, "-m", "helpers", "export", "--model-dir",
                             str(tmp_path / "model"), str(tmp_path / "out"), "--formats",
                             "saved_model", "onnx"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "from_bytes" in result.stdout and "onnx" in result.stdout
    assert (tmp_path / "out" / "model.onnx").is_file() and not (tmp_path / "out" / "model.tflite").exists()


def test_the_command_line_refuses_a_bad_folder_in_one_line(tmp_path):
    save_model_folder(tmp_path / "model")
    edit_labels(tmp_path / "model", thresholds=None)
    result = subprocess.run([sys.executable, "-m", "helpers", "export", "--model-dir",
                             str(tmp_path / "model"), str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no 'thresholds'" in errors[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("shape", [(40, 30), (9, 50), (16, 16), (5, 300), (300, 7)])
def test_the_savedmodel_resizes_as_helpers_predict_does(shape):
    from helpers.app.export_formats import resize_pixels
    from helpers.files.images import resize

    pixels = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    inside = resize_pixels(pixels[None], (16, 16)).numpy()[0] * 255
    np.testing.assert_allclose(inside, resize(pixels, (16, 16)), atol=1.0)
    assert np.mean(np.abs(inside - resize(pixels, (16, 16))) > 0.5) < 0.01
