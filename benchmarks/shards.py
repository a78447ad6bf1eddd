"""Shard benchmark: loose image files against TFRecord shards (helpers.scale.shards).

Speed: images per second (and CPU time per image) through the same input pipeline (decode, resize to 64x64, batch
32, shuffle; no augmentation, so that only the reading differs), read from the loose JPEG
files (``helpers.pipeline.dataset_from_dataframe``) and from shards of the same files
(``helpers.scale.shards.dataset_from_shards``): the first epoch (reading and decoding, filling the
memory cache) and the later epochs (from the cache), at 4x the data by default (every file
listed four times, its shards holding every image four times), so that a first epoch lasts
long enough to measure; and the setup before the first batch (listing the files and reading
their headers, against reading the shard index).

Memory: peak resident memory (RSS) of one streamed epoch (no cache) at 1x and 4x the data
(4x lists every file four times; its shards hold every image four times).

Writing: images and MB per second of ``helpers.scale.shards.write_shards`` at 1x and 4x.

Every measurement runs in its own child process; the speed runs alternate between loose files
and shards, so a busy machine slows both alike. The machine's load average is printed with
the tables. Run from the repository root:

    .venv/bin/python benchmarks/shards.py                       # about 10 minutes on 2 cores
    .venv/bin/python benchmarks/shards.py --repeats 1 --epochs 2 --speed-scale 1 --scales 1   # a quick check
"""
import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE = 64
BATCH = 32


def _peak_rss_mb():
    """Peak resident memory of this process so far, in MB.

    Linux's ``VmHWM`` counts this program only; ``ru_maxrss`` also keeps the peak of the
    process it was forked from (a notebook kernel's gigabyte, say), which would hide ours.
    """
    try:
        with open("/proc/self/status") as status:
            return int(re.search(r"VmHWM:\s+(\d+) kB", status.read()).group(1)) / 1024
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _frame(spec):
    import pandas as pd

    from helpers.data import load_split_folders

    frame = load_split_folders(spec["data"])
    repeated = pd.concat([frame] * spec.get("repeat", 1), ignore_index=True)
    repeated.attrs = frame.attrs
    return repeated


def _evict(paths):
    """Drop these files from the page cache (clean pages only, so flush first): a cold read follows.

    ``posix_fadvise(DONTNEED)`` needs no privileges and touches no other file on the machine.
    """
    for path in paths:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


def _dataset(spec, cache):
    from helpers import pipeline
    from helpers.scale import shards

    common = dict(target_size=(SIZE, SIZE), batch_size=BATCH, shuffle=True, seed=42, cache=cache)
    if spec["method"] == "shards":
        return shards.dataset_from_shards(shards.load_shards(spec["shards"]), **common)
    return pipeline.dataset_from_dataframe(_frame(spec), **common)


# --------------------------------------------------------------------------- child processes


def child_speed(spec):
    """Images/s of each epoch: the first reads and decodes (and fills the cache), the rest replay it.

    Setup (listing the files and checking their headers, or reading the shard index) is timed
    apart, after the imports. CPU time per image is less sensitive to other jobs than wall time.
    """
    from helpers import pipeline  # noqa: F401  (imports TensorFlow: not part of the setup)
    from helpers.scale import shards  # noqa: F401

    if spec.get("cold"):
        folder = Path(spec["shards"] if spec["method"] == "shards" else spec["data"])
        _evict([str(path) for path in folder.rglob("*") if path.is_file()])
    start = time.perf_counter()
    dataset = _dataset(spec, cache=True)
    setup = time.perf_counter() - start
    epochs, cpu = [], []
    for _ in range(spec["epochs"]):
        start, start_cpu, count = time.perf_counter(), time.process_time(), 0
        for images, _ in dataset:
            count += int(images.shape[0])
        epochs.append(count / (time.perf_counter() - start))
        cpu.append((time.process_time() - start_cpu) / count * 1e6)
    return {"setup_s": setup, "epochs": epochs, "cpu_us": cpu, "n_images": count}


def child_memory(spec):
    """Peak RSS of one streamed epoch (no cache), above the RSS after importing TensorFlow."""
    import tensorflow  # noqa: F401

    baseline = _peak_rss_mb()
    count = sum(int(images.shape[0]) for images, _ in _dataset(spec, cache=False))
    return {"baseline_mb": baseline, "peak_mb": _peak_rss_mb(), "n_images": count}


def child_write(spec):
    """Seconds to write the shards of the data (fresh folder), with every CPU."""
    from helpers.scale import shards

    frame = _frame(spec)
    start = time.perf_counter()
    manifest = shards.write_shards(frame, spec["shards"], progress=False, log=None)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "n_images": manifest["n_images"], "n_shards": manifest["n_shards"],
            "input_mb": sum(os.path.getsize(path) for path in frame["filename"]) / 2**20,
            "shard_mb": manifest["bytes"] / 2**20}


CHILDREN = {"speed": child_speed, "memory": child_memory, "write": child_write}


def run_child(name, spec):
    """Run one measurement in a fresh Python process and return its JSON result."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    completed = subprocess.run(
        [sys.executable, __file__, "--child", name, "--spec", json.dumps(spec)],
        capture_output=True, text=True, env=env, check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"child {name} failed:\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1])


# --------------------------------------------------------------------------- tables


def speed_table(runs, n_images, load):
    lines = [
        f"Speed: {n_images:,} images (JPEGs of the embedded fashion data) at {SIZE}x{SIZE}, batch {BATCH}, "
        f"shuffled, no augmentation; load average {load}. Median of the runs, and the slowest and "
        "fastest run. Warm: the files are in the page cache; cold: evicted from it before the run "
        "(`posix_fadvise`), so the first epoch reads the disk.",
        "",
        "| Read from | Page cache | Setup (s) | First epoch (images/s) | Runs | Setup + first epoch "
        "(images/s) | CPU µs per image | Cached epochs (images/s) | Runs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for state in ("warm", "cold"):
        medians = {}
        for method, label in (("files", "loose files"), ("shards", "TFRecord shards")):
            measured = runs[(method, state)]
            first = [run["epochs"][0] for run in measured]
            later = [statistics.median(run["epochs"][1:]) for run in measured if len(run["epochs"]) > 1]
            # From nothing to one epoch done: the loose reader's header check is part of its reading.
            overall = [run["n_images"] / (run["setup_s"] + run["n_images"] / run["epochs"][0]) for run in measured]
            medians[method] = (statistics.median(run["setup_s"] for run in measured), statistics.median(first),
                               statistics.median(overall), statistics.median(run["cpu_us"][0] for run in measured),
                               statistics.median(later) if later else None)
            setup, speed, total, cpu, cached = medians[method]
            cached = f"{cached:,.0f} | {min(later):,.0f}–{max(later):,.0f}" if later else "– | –"
            lines.append(f"| {label} | {state} | {setup:.2f} | {speed:,.0f} | {min(first):,.0f}–{max(first):,.0f} | "
                         f"{total:,.0f} | {cpu:,.0f} | {cached} |")
        files, packed = medians["files"], medians["shards"]
        cached_ratio = f"{packed[4] / files[4]:.2f}x" if files[4] else "–"
        lines.append(f"| shards ÷ files | {state} | {packed[0] / files[0]:.2f}x | {packed[1] / files[1]:.2f}x | | "
                     f"{packed[2] / files[2]:.2f}x | {packed[3] / files[3]:.2f}x | {cached_ratio} | |")
    return "\n".join(lines)


def memory_table(rows):
    lines = [
        "Peak memory of one streamed epoch (no cache; RSS of the process, after importing TensorFlow).",
        "",
        "| Read from | Data | Images | Peak RSS (MB) | Above baseline (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for (method, scale), result in rows.items():
        lines.append(f"| {'loose files' if method == 'files' else 'TFRecord shards'} | {scale}x | "
                     f"{result['n_images']:,} | {result['peak_mb']:,.0f} | "
                     f"{result['peak_mb'] - result['baseline_mb']:,.0f} |")
    scales = sorted({scale for _, scale in rows})
    if len(scales) > 1:
        low, high = scales[0], scales[-1]
        for method in ("files", "shards"):
            grow = [rows[(method, s)]["peak_mb"] - rows[(method, s)]["baseline_mb"] for s in (low, high)]
            lines.append(f"| {method}: growth {high}x ÷ {low}x | | | | {grow[1] / max(grow[0], 1):.2f}x |")
    return "\n".join(lines)


def write_table(rows):
    lines = [
        "Writing the shards (`helpers.scale.shards.write_shards`: read, check by decoding at 1/8 scale, pack; "
        f"{os.cpu_count()} threads).",
        "",
        "| Data | Images | Input (MB) | Shards | Shard data (MB) | Seconds | Images/s | MB/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scale, result in rows.items():
        lines.append(f"| {scale}x | {result['n_images']:,} | {result['input_mb']:,.1f} | {result['n_shards']} | "
                     f"{result['shard_mb']:,.1f} | {result['seconds']:.1f} | "
                     f"{result['n_images'] / result['seconds']:,.0f} | {result['input_mb'] / result['seconds']:,.1f} |")
    return "\n".join(lines)


def _load():
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="folder of colour_item class folders (default: the embedded fashion data)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per speed run (the first from disk)")
    parser.add_argument("--repeats", type=int, default=5, help="speed runs per method; the median is reported")
    parser.add_argument("--speed-scale", type=int, default=4, help="data multiple for the speed runs")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4], help="data multiples for memory and writing")
    parser.add_argument("--output", help="also write the tables to this Markdown file")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(CHILDREN[args.child](json.loads(args.spec))), flush=True)
        return 0

    if args.data:
        data_dir = Path(args.data).resolve()
    else:
        from helpers.datasets.generate import ensure_dataset

        data_dir = ensure_dataset("fashion", quick=False)
    load_before = _load()
    with tempfile.TemporaryDirectory() as tmp:
        writes, folders = {}, {}
        for scale in sorted(set(args.scales) | {args.speed_scale}):
            folders[scale] = str(Path(tmp) / f"shards-{scale}x")
            writes[scale] = run_child("write", {"data": str(data_dir), "repeat": scale, "shards": folders[scale]})
            print(f"wrote the {scale}x shards", file=sys.stderr, flush=True)

        runs = {(method, state): [] for method in ("files", "shards") for state in ("warm", "cold")}
        for repeat in range(args.repeats):
            for state in ("warm", "cold"):
                for method in ("files", "shards"):
                    spec = {"method": method, "data": str(data_dir), "repeat": args.speed_scale,
                            "shards": folders[args.speed_scale], "epochs": args.epochs, "cold": state == "cold"}
                    runs[(method, state)].append(run_child("speed", spec))
            print(f"speed run {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)

        memory = {}
        for scale in args.scales:
            for method in ("files", "shards"):
                spec = {"method": method, "data": str(data_dir), "repeat": scale, "shards": folders[scale]}
                memory[(method, scale)] = run_child("memory", spec)
        load = f"{load_before} before, {_load()} after (1, 5, 15 min)"
        tables = [speed_table(runs, runs[("files", "warm")][0]["n_images"], load), memory_table(memory),
                  write_table({scale: writes[scale] for scale in sorted(writes)})]

    text = "\n\n".join(tables)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
