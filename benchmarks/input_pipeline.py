"""Input pipeline benchmark: Keras 2's ImageDataGenerator against helpers.pipeline.

Speed: images per second on the same JPEGs at the same size with the same
augmentation, for (a) ``ImageDataGenerator.flow_from_dataframe`` (Keras 2, from the
``tf_keras`` package), (b) our pipeline's first epoch (decoding from disk) and (c)
its later epochs (decoded images cached in memory); (b) and (c) again with the Keras
``RandomAffine`` layer doing the augmentation instead of OpenCV.

Memory: peak resident memory (RSS) of loading every image into one float64 array,
as the clothing and animals tutorials do, against streaming with our pipeline, at 1x and 4x the
dataset (4x lists every file four times).

Every measurement runs in its own child process, so imports, caches and peak
memory of one method never leak into another. Run from the repository root:

    .venv/bin/python benchmarks/input_pipeline.py

See benchmarks/README.md for installing ``tf_keras`` without a second TensorFlow.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# The clothing tutorial's augmentation, in ImageDataGenerator's units: the same values as
# helpers.augment.DEFAULT_AUGMENT, written out here because the Keras 2 child process
# (method a) must not import helpers.augment, which loads Keras 3.
AUGMENT = {
    "rotation_range": 25,
    "width_shift_range": 0.1,
    "height_shift_range": 0.1,
    "shear_range": 0.2,
    "zoom_range": 0.2,
    "horizontal_flip": True,
    "fill_mode": "nearest",
}
DEFAULT_TF_KERAS_PATH = REPO_ROOT / ".venv-bench"


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _read_frame(spec):
    import pandas as pd

    rows = json.loads(Path(spec["rows"]).read_text())
    frame = pd.DataFrame({"filename": [r[0] for r in rows], "labels": [r[1] for r in rows]})
    return pd.concat([frame] * spec.get("repeat", 1), ignore_index=True)


# --------------------------------------------------------------------------- child processes


def child_keras2_speed(spec):
    """(a) Keras 2 ImageDataGenerator.flow_from_dataframe, one pass over the data per epoch."""
    from tf_keras.preprocessing.image import ImageDataGenerator

    frame = _read_frame(spec)
    size = (spec["target_size"], spec["target_size"])
    start = time.perf_counter()
    flow = ImageDataGenerator(rescale=1 / 255, **AUGMENT).flow_from_dataframe(
        frame, x_col="filename", y_col="labels", class_mode="categorical",
        target_size=size, batch_size=spec["batch_size"], shuffle=True, seed=42,
        interpolation=spec.get("interpolation", "nearest"),
    )
    setup = time.perf_counter() - start
    epochs, cpu = [], []
    for _ in range(spec["epochs"]):
        start, start_cpu, count = time.perf_counter(), time.process_time(), 0
        for index in range(len(flow)):
            images, _ = flow[index]
            count += len(images)
        flow.on_epoch_end()
        epochs.append(count / (time.perf_counter() - start))
        cpu.append(count / (time.process_time() - start_cpu))
    return {"setup_s": setup, "epochs": epochs, "cpu": cpu, "n_images": count}


def child_ours_speed(spec):
    """(b) and (c): our pipeline, first epoch from disk, later epochs from the memory cache.

    With ``spec["keras_layers"]`` the augmentation is the Keras ``RandomAffine`` layer
    (``augment=augmentation(AUGMENT)``) instead of the pipeline's OpenCV path.
    """
    from helpers.augment import augmentation
    from helpers.pipeline import dataset_from_dataframe

    frame = _read_frame(spec)
    size = (spec["target_size"], spec["target_size"])
    start = time.perf_counter()
    augment = augmentation(AUGMENT, seed=42) if spec.get("keras_layers") else AUGMENT
    dataset = dataset_from_dataframe(
        frame, target_size=size, batch_size=spec["batch_size"], shuffle=True, seed=42,
        augment=augment, cache=True,
    )
    setup = time.perf_counter() - start
    epochs, cpu = [], []
    for _ in range(spec["epochs"]):
        start, start_cpu, count = time.perf_counter(), time.process_time(), 0
        for images, _ in dataset:
            count += int(images.shape[0])
        epochs.append(count / (time.perf_counter() - start))
        cpu.append(count / (time.process_time() - start_cpu))
    return {"setup_s": setup, "epochs": epochs, "cpu": cpu, "n_images": count}


def child_float64_memory(spec):
    """the clothing and animals tutorials: read every image with OpenCV, then one float64 array divided by 255."""
    import cv2
    import numpy as np
    import tensorflow  # noqa: F401  (both tutorials import Keras/TensorFlow first)

    frame = _read_frame(spec)
    baseline = _peak_rss_mb()
    size = spec["target_size"]
    data = []
    for path in frame["filename"]:
        image = cv2.resize(cv2.imread(path), (size, size))
        data.append(image)
    array = np.array(data, dtype="float") / 255.0
    return {"baseline_mb": baseline, "peak_mb": _peak_rss_mb(), "n_images": len(array)}


def child_ours_memory(spec):
    """Our pipeline, one full epoch with augmentation; ``cache`` as given."""
    import tensorflow  # noqa: F401

    from helpers.pipeline import dataset_from_dataframe

    frame = _read_frame(spec)
    baseline = _peak_rss_mb()
    size = (spec["target_size"], spec["target_size"])
    dataset = dataset_from_dataframe(
        frame, target_size=size, batch_size=spec["batch_size"], shuffle=True, seed=42,
        augment=AUGMENT, cache=spec["cache"],
    )
    count = sum(int(images.shape[0]) for images, _ in dataset)
    return {"baseline_mb": baseline, "peak_mb": _peak_rss_mb(), "n_images": count}


CHILDREN = {
    "keras2_speed": child_keras2_speed,
    "ours_speed": child_ours_speed,
    "float64_memory": child_float64_memory,
    "ours_memory": child_ours_memory,
}


def run_child(name, spec, tf_keras_path=None):
    """Run one measurement in a fresh Python process and return its JSON result."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    if tf_keras_path:
        env["PYTHONPATH"] = os.pathsep.join([str(tf_keras_path), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    completed = subprocess.run(
        [sys.executable, __file__, "--child", name, "--spec", json.dumps(spec)],
        capture_output=True, text=True, env=env, check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"child {name} failed:\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1])


# --------------------------------------------------------------------------- parent


def tf_keras_available(path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")]))
    probe = subprocess.run(
        [sys.executable, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('tf_keras') is None)"],
        env=env, check=False,
    )
    return probe.returncode == 0


def list_images(data_dir):
    from helpers.data import load_split_folders

    frame = load_split_folders(data_dir)
    return [[str(Path(f).resolve()), list(labels)] for f, labels in zip(frame["filename"], frame["labels"])]


def speed_table(results, spreads, n_images, size):
    keras2 = results.get("a")
    lines = [
        f"Speed: {n_images} JPEGs of the embedded fashion data at {size}x{size}, batch 32, "
        "the clothing tutorial's augmentation. Median of the runs (each run: median of its epochs), "
        "and the slowest and fastest run.",
        "",
        "| Method | Setup (s) | Images/s | vs (a) | Runs (images/s) | Images per CPU-second | vs (a) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in (
        ("a", "(a) Keras 2 `ImageDataGenerator.flow_from_dataframe`"),
        ("a2", "(a) with `interpolation=\"box\"` (averages areas, like ours)"),
        ("b", "(b) ours, first epoch (decode from disk)"),
        ("c", "(c) ours, later epochs (memory cache)"),
        ("bk", "(b) with the Keras `RandomAffine` layer as `augment`"),
        ("ck", "(c) with the Keras `RandomAffine` layer as `augment`"),
    ):
        if key not in results:
            lines.append(f"| {label} | – | not run | – | – | – | – |")
            continue
        setup, speed, cpu = results[key]
        low, high = spreads[key]
        ratio = f"{speed / keras2[1]:.1f}x" if keras2 else "–"
        cpu_ratio = f"{cpu / keras2[2]:.1f}x" if keras2 else "–"
        lines.append(
            f"| {label} | {setup:.2f} | {speed:,.0f} | {ratio} | {low:,.0f}–{high:,.0f} | {cpu:,.0f} | {cpu_ratio} |"
        )
    return "\n".join(lines)


def memory_table(rows, size):
    lines = [
        f"Peak memory (RSS of the process, after importing TensorFlow), {size}x{size} images.",
        "",
        "| Method | Images | Peak RSS (MB) | Above baseline (MB) |",
        "|---|---:|---:|---:|",
    ]
    for label, result in rows:
        lines.append(
            f"| {label} | {result['n_images']:,} | {result['peak_mb']:,.0f} | "
            f"{result['peak_mb'] - result['baseline_mb']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="folder of colour_item class folders (default: the embedded fashion data)")
    parser.add_argument("--target-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (the first is (b), the rest (c))")
    parser.add_argument("--repeats", type=int, default=5, help="runs per method; the median is reported")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4], help="dataset multiples for the memory table")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--tf-keras-path", default=str(DEFAULT_TF_KERAS_PATH),
                        help="folder holding the tf_keras package (see benchmarks/README.md)")
    parser.add_argument("--output", help="also write the tables to this Markdown file")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(CHILDREN[args.child](json.loads(args.spec))), flush=True)
        return 0

    if args.data:
        data_dir = Path(args.data)
    else:
        from helpers.datasets.generate import ensure_dataset

        data_dir = ensure_dataset("fashion", quick=False)
    rows = list_images(data_dir)
    if len(rows) < 2000:
        print(f"note: {data_dir} holds {len(rows)} images (the benchmark asks for 2,000 or more)", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "rows.json"
        rows_file.write_text(json.dumps(rows))
        spec = {"rows": str(rows_file), "target_size": args.target_size, "batch_size": args.batch_size,
                "epochs": args.epochs}
        have_tf_keras = tf_keras_available(args.tf_keras_path)
        if not have_tf_keras:
            print("tf_keras not found: (a) is skipped; see benchmarks/README.md", file=sys.stderr)

        runs = {"a": [], "a2": [], "b": [], "c": [], "bk": [], "ck": []}
        for repeat in range(args.repeats):
            # Alternate the methods so a busy machine slows them alike.
            if have_tf_keras:
                result = run_child("keras2_speed", spec, args.tf_keras_path)
                runs["a"].append((result["setup_s"], statistics.median(result["epochs"]), statistics.median(result["cpu"])))
                result = run_child("keras2_speed", dict(spec, interpolation="box"), args.tf_keras_path)
                runs["a2"].append((result["setup_s"], statistics.median(result["epochs"]), statistics.median(result["cpu"])))
            for suffix, keras_layers in (("", False), ("k", True)):
                result = run_child("ours_speed", dict(spec, keras_layers=keras_layers))
                runs["b" + suffix].append((result["setup_s"], result["epochs"][0], result["cpu"][0]))
                runs["c" + suffix].append(
                    (0.0, statistics.median(result["epochs"][1:]), statistics.median(result["cpu"][1:]))
                )
            print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
        medians = {
            key: tuple(statistics.median(run[i] for run in values) for i in range(3))
            for key, values in runs.items() if values
        }
        spreads = {key: (min(run[1] for run in values), max(run[1] for run in values))
                   for key, values in runs.items() if values}
        tables = [speed_table(medians, spreads, len(rows), args.target_size)]

        if not args.skip_memory:
            memory_rows = []
            for scale in args.scales:
                scaled = dict(spec, repeat=scale)
                memory_rows.append((f"float64 array (the clothing and animals tutorials), {scale}x", run_child("float64_memory", scaled)))
                memory_rows.append((f"ours, streaming (no cache), {scale}x", run_child("ours_memory", dict(scaled, cache=False))))
                memory_rows.append((f"ours, memory cache, {scale}x", run_child("ours_memory", dict(scaled, cache=True))))
            tables.append(memory_table(memory_rows, args.target_size))

    text = "\n\n".join(tables)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
