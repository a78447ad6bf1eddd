"""Time to label one image: Keras ``model.predict`` against the exported files.

Saves the default network (``smallvggnet_gmp``, 64x64, 9 labels: the size ``helpers train``
gives the clothes) as a model folder, exports it with ``helpers.app.export.export_model`` and
times one image at a time, loading excluded, in one process:

- ``model.predict``: what a script that loads ``model.keras`` usually calls;
- ``model(x)``: the Keras model called directly;
- SavedModel ``serving_default`` (uint8 pixels at any size, resized inside);
- LiteRT (``ai_edge_litert`` interpreter) and ONNX (``onnxruntime``), on the resized image.

Each figure is the median of ``--repeats`` calls after ``--warmup`` calls; the ratio is
``model.predict``'s time over the row's. Run from the repository root:

    .venv/bin/python benchmarks/export.py
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _median_seconds(call, repeats, warmup):
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _runners(model, out, image, pixels):
    import onnxruntime
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    serving = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    session = onnxruntime.InferenceSession(str(out / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    onnx_input = session.get_inputs()[0].name
    interpreter = Interpreter(model_path=str(out / "model.tflite"))
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]

    def litert():
        interpreter.set_tensor(source, pixels)
        interpreter.invoke()
        return interpreter.get_tensor(target)

    uint8 = tf.constant(image[None])
    return {
        "Keras model.predict": lambda: model.predict(pixels, verbose=0),
        "Keras model(x)": lambda: model(pixels, training=False),
        "SavedModel serving_default": lambda: serving(images=uint8),
        "LiteRT": litert,
        "ONNX Runtime": lambda: session.run(None, {onnx_input: pixels}),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    import keras
    import numpy as np

    from helpers import artefacts, models
    from helpers.app.export import export_model

    size = (args.image_size, args.image_size)
    classes = ["bag", "black", "blue", "dress", "jeans", "red", "shirt", "shoe", "white"]
    keras.utils.set_random_seed(0)
    model = models.build_model("smallvggnet_gmp", (*size, 3), len(classes))
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    pixels = image[None].astype("float32") / 255.0
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        artefacts.save_artefacts(scratch / "model", model, classes, "multi_label", size,
                                 thresholds=[0.5] * len(classes))
        export_model(scratch / "model", scratch / "out")
        runners = _runners(model, scratch / "out", image, pixels)
        seconds = {name: _median_seconds(call, args.repeats, args.warmup)
                   for name, call in runners.items()}
    base = seconds["Keras model.predict"]
    print(f"one {size[0]}x{size[1]} image, median of {args.repeats} calls, "
          f"{model.count_params():,} weights (python {sys.version.split()[0]})")
    print(f"| {'runtime':28s} | {'ms per image':>12s} | {'vs model.predict':>16s} |")
    print(f"|{'-' * 30}|{'-' * 13}:|{'-' * 17}:|")
    for name, value in seconds.items():
        print(f"| {name:28s} | {value * 1000:12.2f} | {base / value:15.1f}x |")


if __name__ == "__main__":
    main()
