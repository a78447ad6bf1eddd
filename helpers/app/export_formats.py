"""The exported files themselves: a SavedModel whose endpoints resize and threshold inside,
LiteRT and ONNX files of the bare network, and the checks that run each against Keras."""
import contextlib
import io
import os
import sys
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf


def resize_pixels(images, target_size):
    """uint8 ``[N, H, W, 3]`` → float32 ``[N, h, w, 3]`` in [0, 1], as ``helpers predict`` reads
    images: area averaging along an axis that shrinks, bilinear along one that grows, then
    rounded to whole grey levels."""
    image = tf.cast(images, tf.float32)
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    shrink_height, shrink_width = height >= target_size[0], width >= target_size[1]

    def both(method):
        return tf.image.resize(image, target_size, method=method)

    def one_axis_at_a_time(rows_method, columns_method):
        rows = tf.image.resize(image, tf.stack([target_size[0], width]), method=rows_method)
        return tf.image.resize(rows, target_size, method=columns_method)

    resized = tf.cond(
        tf.equal(shrink_height, shrink_width),
        lambda: tf.cond(shrink_height, lambda: both("area"), lambda: both("bilinear")),
        lambda: tf.cond(shrink_height, lambda: one_axis_at_a_time("area", "bilinear"),
                        lambda: one_axis_at_a_time("bilinear", "area")))
    return tf.clip_by_value(tf.round(resized), 0.0, 255.0) / 255.0


def _decode_jpeg(data, target_size):
    """A JPEG decoded as ``helpers predict`` decodes it: at the largest 1/2, 1/4 or 1/8 scale
    still at least ``target_size`` (Pillow's ``draft``), with libjpeg's accurate integer DCT
    (TensorFlow's default DCT differs from Pillow's by a few grey levels)."""
    shape = tf.io.extract_jpeg_shape(data)
    fits = tf.minimum(shape[1] // target_size[1], shape[0] // target_size[0])
    index = tf.reduce_sum(tf.cast(tf.maximum(fits, 1) >= tf.constant([2, 4, 8]), tf.int32))
    branches = [lambda ratio=ratio: tf.io.decode_jpeg(data, channels=3, ratio=ratio,
                                                      dct_method="INTEGER_ACCURATE")
                for ratio in (1, 2, 4, 8)]
    return tf.ensure_shape(tf.switch_case(index, branches), [None, None, 3])


def write_saved_model(model, metadata, path):
    """A SavedModel with ``serving_default(images)`` and ``from_bytes(image_bytes)``."""
    target_size = tuple(metadata["target_size"])
    thresholds = tf.constant(metadata["thresholds"], tf.float32)
    n_classes = len(metadata["classes"])
    multi_label = metadata["task"] == "multi_label"

    def outputs(pixels):
        probabilities = tf.cast(model(pixels, training=False), tf.float32)
        if multi_label:
            decisions = probabilities >= thresholds
        else:
            decisions = tf.cast(tf.one_hot(tf.argmax(probabilities, axis=-1), n_classes), tf.bool)
        return {"probabilities": probabilities, "decisions": decisions}

    def decode_one(data):
        image = tf.cond(tf.io.is_jpeg(data), lambda: _decode_jpeg(data, target_size),
                        lambda: tf.ensure_shape(
                            tf.io.decode_image(data, channels=3, expand_animations=False),
                            [None, None, 3]))
        return resize_pixels(image[tf.newaxis], target_size)[0]

    def from_bytes(image_bytes):
        pixels = tf.map_fn(decode_one, image_bytes,
                           fn_output_signature=tf.TensorSpec((*target_size, 3), tf.float32))
        return outputs(pixels)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", lambda images: outputs(resize_pixels(images, target_size)),
                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    archive.add_endpoint("from_bytes", from_bytes,
                         input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    with _quiet():
        archive.write_out(str(path), verbose=False)


def write_litert(model, metadata, path):
    """LiteRT (TFLite) float32, input ``[1, h, w, 3]`` in [0, 1]."""
    signature = [tf.TensorSpec([1, *metadata["target_size"], 3], tf.float32)]
    with _quiet():
        model.export(str(path), format="litert", input_signature=signature, verbose=False)


def write_onnx(model, metadata, path):
    """ONNX, input ``[N, h, w, 3]`` float32 in [0, 1]."""
    with _quiet():
        model.export(str(path), format="onnx", verbose=False)


@contextlib.contextmanager
def _quiet():
    """The converters' progress lines and their dependencies' deprecation warnings."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _without_delegate_notice():
    """LiteRT's C++ "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." (file descriptor 2,
    once a process) held back; any other line still shows."""
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            sys.stderr.writelines(line for line in lines if "XNNPACK delegate" not in line)


def _largest_difference(found, expected):
    return float(np.max(np.abs(np.asarray(found, dtype=np.float64) - expected)))


def check_saved_model(path, images, expected):
    """The largest difference from Keras of each SavedModel endpoint: ``serving_default`` on
    the stored pixels against ``expected["resized"]``, ``from_bytes`` on the files against
    ``expected["read"]``."""
    loaded = tf.saved_model.load(str(path))
    serving, from_bytes = loaded.signatures["serving_default"], loaded.signatures["from_bytes"]
    found = [serving(images=tf.constant(image[np.newaxis]))["probabilities"].numpy()[0]
             for image in images["originals"]]
    if images["paths"]:
        encoded = [tf.io.read_file(path) for path in images["paths"]]
    else:
        encoded = [tf.io.encode_png(image) for image in images["originals"]]
    from_files = from_bytes(image_bytes=tf.stack(encoded))["probabilities"].numpy()
    return {"saved_model": _largest_difference(found, expected["resized"]),
            "from_bytes": _largest_difference(from_files, expected["read"])}


def check_file(kind, path, resized, expected):
    """The largest difference from Keras of a LiteRT or ONNX file on the resized images."""
    pixels = resized.astype(np.float32) / 255.0
    if kind == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        found = session.run(None, {session.get_inputs()[0].name: pixels})[0]
    else:
        from ai_edge_litert.interpreter import Interpreter

        with _without_delegate_notice():
            interpreter = Interpreter(model_path=str(path))
            interpreter.allocate_tensors()
        source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        found = []
        for image in pixels:
            interpreter.set_tensor(source["index"], image[np.newaxis])
            interpreter.invoke()
            found.append(interpreter.get_tensor(target["index"])[0])
    return _largest_difference(found, expected)
