"""How long does scanning the labels of a ChestX-ray14-sized CSV take?

Builds a deterministic 100,000-row CSV shaped like NIH's ``Data_Entry_2017.csv``
(same columns, label frequencies scaled from the real 112,120-image table), with no
images on disk, as when you scan the label table before downloading 45 GB of X-rays.
Then times, best of ``--repeat`` runs:

- helpers: ``load_csv``, ``label_counts``, ``labels_per_image``, ``cooccurrence`` and
  the missing-file check of ``scan`` (``scan(df, sizes=False)``, which includes the three
  statistics again);
- a plain-Python baseline: the ``csv`` module, ``collections.Counter`` and one
  ``os.path.exists`` per row.

Run:  .venv/bin/python benchmarks/scan_csv.py [--rows 100000] [--repeat 3]
"""
import argparse
import csv
import itertools
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.data import load_csv
from helpers.scan import (
    cooccurrence,
    find_missing,
    label_counts,
    labels_per_image,
    scan,
)

CLOCK = time.perf_counter
SOURCE_IMAGES = 112_120
NO_FINDING = 60_361
# Real per-finding image counts of Data_Entry_2017 (the chest X-ray question).
FINDINGS = {
    "Infiltration": 19_894, "Effusion": 13_317, "Atelectasis": 11_559, "Nodule": 6_331,
    "Mass": 5_782, "Pneumothorax": 5_302, "Consolidation": 4_667,
    "Pleural_Thickening": 3_385, "Cardiomegaly": 2_776, "Emphysema": 2_516,
    "Edema": 2_303, "Fibrosis": 1_686, "Pneumonia": 1_431, "Hernia": 227,
}


def make_chest_csv(path, n_rows=100_000, seed=0):
    """Write a ChestX-ray14-like CSV whose label counts are the real ones, scaled."""
    rng = np.random.default_rng(seed)
    names = list(FINDINGS)
    targets = np.array([round(FINDINGS[name] * n_rows / SOURCE_IMAGES) for name in names])
    n_positive = n_rows - round(NO_FINDING * n_rows / SOURCE_IMAGES)
    positive_rows = np.sort(rng.choice(n_rows, size=n_positive, replace=False))

    # Every image with a finding gets one first finding, then the remaining slots of each
    # finding go to random images that lack it, so marginal counts match the targets.
    has = np.zeros((n_positive, len(names)), dtype=bool)
    has[np.arange(n_positive), rng.choice(len(names), n_positive, p=targets / targets.sum())] = True
    for column, target in enumerate(targets):
        candidates = np.flatnonzero(~has[:, column])
        extra = max(0, target - has[:, column].sum())
        has[rng.choice(candidates, size=extra, replace=False), column] = True

    labels = np.full(n_rows, "No Finding", dtype=object)
    labels[positive_rows] = ["|".join(itertools.compress(names, row)) for row in has]
    patients = np.sort(rng.integers(1, n_rows // 3.6, size=n_rows))
    follow_up = pd.Series(patients).groupby(patients).cumcount().to_numpy()
    frame = pd.DataFrame({
        "Image Index": [f"{p:08d}_{f:03d}.png" for p, f in zip(patients, follow_up)],
        "Finding Labels": labels,
        "Follow-up #": follow_up,
        "Patient ID": patients,
        "Patient Age": rng.integers(1, 95, size=n_rows),
        "Patient Gender": rng.choice(["M", "F"], size=n_rows),
        "View Position": rng.choice(["PA", "AP"], size=n_rows, p=[0.6, 0.4]),
        "OriginalImage[Width": rng.choice([2048, 2500, 2992, 3056], size=n_rows),
        "Height]": rng.choice([2048, 2500, 2991, 3056], size=n_rows),
        "OriginalImagePixelSpacing[x": 0.143,
        "y]": 0.143,
    })
    frame.to_csv(path, index=False)
    return path


def plain_python(csv_path, image_directory):
    """The same statistics with the csv module and Counter, one row at a time."""
    timings = {}
    start = CLOCK()
    filenames, label_lists = [], []
    with open(csv_path, newline="") as handle:
        for row in csv.DictReader(handle):
            filenames.append(os.path.join(image_directory, row["Image Index"].strip()))
            parts = {part.strip() for part in row["Finding Labels"].split("|")}
            label_lists.append(sorted(parts - {"No Finding", ""}))
    timings["load"] = CLOCK() - start

    start = CLOCK()
    counts = Counter(label for labels in label_lists for label in labels)
    timings["label counts"] = CLOCK() - start

    start = CLOCK()
    per_image = Counter(len(labels) for labels in label_lists)
    timings["labels per image"] = CLOCK() - start

    start = CLOCK()
    pairs = Counter()
    for labels in label_lists:
        pairs.update(itertools.product(labels, repeat=2))
    timings["co-occurrence"] = CLOCK() - start

    start = CLOCK()
    missing = [path for path in filenames if not os.path.exists(path)]
    timings["missing files"] = CLOCK() - start
    return timings, counts, per_image, pairs, missing


def with_helpers(csv_path):
    """The same statistics with helpers.data and helpers.scan."""
    timings = {}
    start = CLOCK()
    df = load_csv(csv_path)
    timings["load"] = CLOCK() - start

    start = CLOCK()
    counts = label_counts(df)
    timings["label counts"] = CLOCK() - start

    start = CLOCK()
    per_image = labels_per_image(df)
    timings["labels per image"] = CLOCK() - start

    start = CLOCK()
    table = cooccurrence(df)
    timings["co-occurrence"] = CLOCK() - start

    start = CLOCK()
    find_missing(df["filename"].tolist())
    timings["missing files"] = CLOCK() - start

    start = CLOCK()
    result = scan(df, sizes=False)
    timings["scan(sizes=False)"] = CLOCK() - start
    return timings, counts, per_image, table, result


def best_of(function, repeat, *args):
    runs = [function(*args) for _ in range(repeat)]
    best = {step: min(run[0][step] for run in runs) for step in runs[0][0]}
    return best, runs[-1][1:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall",
        help="wall-clock time, or CPU time of this process (steadier on a busy machine)",
    )
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time

    with tempfile.TemporaryDirectory() as folder:
        csv_path = make_chest_csv(Path(folder) / "Data_Entry.csv", args.rows, args.seed)
        size_mb = csv_path.stat().st_size / 1e6
        ours, (counts, per_image, table, result) = best_of(with_helpers, args.repeat, csv_path)
        image_directory = result["directory"]
        plain, (plain_counts, plain_per_image, pairs, missing) = best_of(
            plain_python, args.repeat, csv_path, image_directory
        )

    # Both ways must agree before their speeds are compared.
    assert counts.to_dict() == dict(plain_counts)
    assert per_image[per_image > 0].to_dict() == dict(plain_per_image)
    assert all(table.at[a, b] == n for (a, b), n in pairs.items())
    assert result["missing"] == missing and len(missing) == args.rows

    # scan() = the three statistics + the missing-file check, in one call.
    scan_total = ours["scan(sizes=False)"]
    rows = [
        ("read CSV + parse labels", ours["load"], plain["load"]),
        ("label counts", ours["label counts"], plain["label counts"]),
        ("labels per image", ours["labels per image"], plain["labels per image"]),
        ("co-occurrence", ours["co-occurrence"], plain["co-occurrence"]),
        ("missing-file check", ours["missing files"], plain["missing files"]),
        ("load_csv + scan(df, sizes=False)", ours["load"] + scan_total, sum(plain.values())),
    ]
    print(f"{args.rows:,} rows, {len(counts)} labels, {size_mb:.1f} MB CSV, no images on disk; "
          f"best of {args.repeat}, {args.clock} seconds")
    print(f"{'step':<36}{'helpers':>10}{'csv+Counter':>13}{'speed-up':>10}")
    for step, mine, theirs in rows:
        mine_text = f"{mine:.3f}" if mine is not None else "-"
        theirs_text = f"{theirs:.3f}" if theirs is not None else "-"
        ratio = f"{theirs / mine:.1f}x" if mine and theirs else "-"
        print(f"{step:<36}{mine_text:>10}{theirs_text:>13}{ratio:>10}")
    print("label counts (top 5):", ", ".join(f"{k} {v}" for k, v in counts.head(5).items()))


if __name__ == "__main__":
    main()
