"""Finding copies: how fast is the hashing, how does the search scale, how good are the groups?

Three measurements of ``helpers.files.copies`` (``helpers duplicates``, ``scan.find_copies``):

- **Hashing against audit-style decoding**, on the same files: ``helpers.scan.audit`` (what
  ``helpers audit`` runs: every image decoded in full, one after the other) against
  ``copies.hash_files`` (each image decoded to a 32×32 thumbnail, hashed; one thread, then the
  default threads). Images per second of wall time and CPU microseconds per image, on the
  embedded clothes (JPEGs of 96-320 px) and on the same pictures enlarged to 1024 px on the
  long side (photo-sized files, where decoding at a reduced scale pays off).
- **Scaling of the search** (``copies.near_pairs``): synthetic 384-bit hashes, 1% of them
  near copies of another (up to ``MAX_DISTANCE`` bits flipped), at 10,000, 30,000 and 100,000
  images (``--sizes``): wall and CPU seconds, peak memory the search allocates
  (``tracemalloc``), hash comparisons made, and the share of the planted pairs found.
- **Precision and recall** on a planted set: near copies of four kinds (re-encoded at
  JPEG quality 30-70, resized by 0.5-0.8 or 1.2-1.5, cropped by 2-6% of the width and height,
  made 10-20% brighter or darker), 200 of them, among the images of a generated dataset
  (``--preset``, seed 5) or of smooth noise pictures: pairs found against pairs planted, per
  kind of copy and for a few ``max_distance`` values.

Run:  .venv/bin/python benchmarks/copies.py [--sizes 10000 30000 100000] [--repeat 3]
"""
import argparse
import io
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance

from helpers.datasets.generate import make_dataset, planted_files
from helpers.files import copies
from helpers.scan import audit

KINDS = ("quality", "resize", "crop", "brightness")


# --------------------------------------------------------------------------- hashing speed
def enlarged_copies(paths, folder, long_side=1024):
    """The pictures at ``paths`` enlarged to ``long_side`` pixels, as JPEGs in ``folder``."""
    out = []
    for index, path in enumerate(paths):
        with Image.open(path) as image:
            factor = long_side / max(image.size)
            size = (round(image.width * factor), round(image.height * factor))
            target = os.path.join(folder, f"large_{index:04d}.jpg")
            image.convert("RGB").resize(size, Image.BICUBIC).save(target, quality=90)
        out.append(target)
    return out


def timed(function):
    """``(wall seconds, CPU seconds)`` of one call (CPU: this process, every thread)."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def hashing_speed(paths, repeat):
    """Median wall and CPU seconds of each method over ``repeat`` alternating runs."""
    frame = pd.DataFrame({"filename": paths, "labels": [[]] * len(paths)})
    methods = {
        "audit (full decode, 1 thread)": lambda: audit(frame, progress=False),
        "hash_files, 1 thread": lambda: copies.hash_files(paths, workers=1),
        "hash_files, default threads": lambda: copies.hash_files(paths),
    }
    runs = {name: [] for name in methods}
    for _ in range(repeat):
        for name, method in methods.items():
            runs[name].append(timed(method))
    return {name: tuple(np.median(np.array(values), axis=0)) for name, values in runs.items()}


def print_speed(label, paths, results):
    print(f"\nHashing against audit-style decoding: {len(paths)} {label}")
    print(f"| {'method':<31} | images/s | vs audit | CPU µs/image | vs audit |")
    print("|---|---:|---:|---:|---:|")
    base_wall, base_cpu = results["audit (full decode, 1 thread)"]
    for name, (wall, cpu) in results.items():
        print(f"| {name:<31} | {len(paths) / wall:8,.0f} | {base_wall / wall:7.2f}x | "
              f"{cpu / len(paths) * 1e6:12,.0f} | {base_cpu / cpu:7.2f}x |")


# --------------------------------------------------------------------------- scaling
def synthetic_hashes(n_images, seed=0):
    """Random hashes and colours, 1% of the rows near copies of another row: ``(hashes,
    colours, planted pairs)``."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 256, (n_images, copies.HASH_BYTES), dtype=np.uint8)
    colours = rng.dirichlet([20, 20, 20], n_images)
    n_copies = n_images // 100
    originals = rng.choice(n_images // 2, n_copies, replace=False)
    targets = n_images // 2 + rng.choice(n_images - n_images // 2, n_copies, replace=False)
    bits = np.unpackbits(hashes[originals], axis=1)
    for row, flips in enumerate(rng.integers(0, copies.MAX_DISTANCE + 1, n_copies)):
        flipped = rng.choice(bits.shape[1], flips, replace=False)
        bits[row, flipped] ^= 1
    hashes[targets] = np.packbits(bits, axis=1)
    colours[targets] = colours[originals]
    return hashes, colours, {tuple(sorted(pair)) for pair in zip(originals, targets)}


def search_scaling(sizes, repeat):
    rows = []
    for n_images in sizes:
        hashes, colours, planted = synthetic_hashes(n_images)
        runs = []
        for _ in range(repeat):
            tracemalloc.start()
            wall, cpu = time.perf_counter(), time.process_time()
            pairs, n_checked = copies.near_pairs(hashes, colours)
            runs.append((time.perf_counter() - wall, time.process_time() - cpu))
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        found = {tuple(pair) for pair in pairs.tolist()}
        wall, cpu = np.median(np.array(runs), axis=0)
        rows.append((n_images, float(wall), float(cpu), peak / 1e6, n_checked,
                     len(planted & found) / len(planted), hashes.nbytes / 1e6))
    return rows


def print_scaling(rows):
    print(f"\nScaling of the search (copies.near_pairs): synthetic 384-bit hashes, 1% planted near "
          f"copies (0-{copies.MAX_DISTANCE} bits flipped); median of the runs")
    print("| images | wall s | CPU s | peak memory (MB) | hashes (MB) | comparisons | of all pairs "
          "| planted pairs found |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n_images, wall, cpu, peak, n_checked, recall, size in rows:
        print(f"| {n_images:,} | {wall:.2f} | {cpu:.2f} | {peak:.1f} | {size:.1f} | {n_checked:,} | "
              f"{n_checked / (n_images * (n_images - 1) / 2):.2e} | {recall:.3f} |")
    for small, large in zip(rows, rows[1:]):
        growth = [large[column] / small[column] for column in (1, 2, 3, 4)]
        print(f"| {large[0] / small[0]:.0f}x images | {growth[0]:.1f}x | {growth[1]:.1f}x | "
              f"{growth[2]:.1f}x | | {growth[3]:.1f}x | | |")


# --------------------------------------------------------------------------- precision, recall
def near_copy(image, kind, rng):
    """``(copy, JPEG quality)``: ``image`` re-encoded, resized, cropped or brightened."""
    if kind == "quality":
        return image, int(rng.integers(30, 71))
    if kind == "resize":
        factor = rng.uniform(0.5, 0.8) if rng.random() < 0.5 else rng.uniform(1.2, 1.5)
        size = (max(8, round(image.width * factor)), max(8, round(image.height * factor)))
        return image.resize(size, Image.BICUBIC), 90
    if kind == "crop":
        fraction = rng.uniform(0.02, 0.06)
        cut_x, cut_y = round(image.width * fraction), round(image.height * fraction)
        left, top = int(rng.integers(cut_x + 1)), int(rng.integers(cut_y + 1))
        return image.crop((left, top, image.width - cut_x + left, image.height - cut_y + top)), 90
    factor = rng.uniform(0.8, 0.9) if rng.random() < 0.5 else rng.uniform(1.1, 1.2)
    return ImageEnhance.Brightness(image).enhance(factor), 90


def plant(paths, folder, n_copies, seed):
    """Write ``n_copies`` near copies of images of ``paths`` into ``folder``: ``[(original,
    copy, kind)]``, the kinds in turn."""
    rng = np.random.default_rng(seed)
    planted = []
    for number, index in enumerate(rng.choice(len(paths), n_copies, replace=False)):
        kind = KINDS[number % len(KINDS)]
        with Image.open(paths[index]) as image:
            copy, quality = near_copy(image.convert("RGB"), kind, rng)
        target = os.path.join(folder, f"copy_{number:04d}_{kind}.jpg")
        copy.save(target, quality=quality)
        planted.append((paths[index], target, kind))
    return planted


def noise_pictures(folder, n_images, seed):
    """Smooth random pictures (a coarse random grid enlarged, plus grain)."""
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(n_images):
        width, height = (int(side) for side in rng.integers(96, 321, 2))
        grid = rng.integers(0, 256, (rng.integers(3, 9), rng.integers(3, 9), 3), dtype=np.uint8)
        pixels = np.asarray(Image.fromarray(grid).resize((width, height), Image.BICUBIC), np.float32)
        pixels += rng.normal(0, 12, pixels.shape)
        path = os.path.join(folder, f"noise_{index:04d}.jpg")
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def pair_scores(groups, planted, paths):
    """Precision and recall of the pairs in one group against the pairs of copies (a planted
    copy of a copy is a copy too), false pairs, and the recall per kind of planted copy."""
    found = {frozenset((paths[a], paths[b])) for group in groups for a in group for b in group if a < b}
    index = {path: position for position, path in enumerate(paths)}
    links = np.array([(index[original], index[copy]) for original, copy, _ in planted])
    truth = {frozenset((paths[a], paths[b])) for group in copies.groups_of(len(paths), links)
             for a in group for b in group if a < b}
    hits = found & truth
    per_kind = {kind: np.mean([frozenset((original, copy)) in found
                               for original, copy, planted_kind in planted if planted_kind == kind])
                for kind in KINDS}
    return len(hits) / max(len(found), 1), len(hits) / len(truth), len(found) - len(hits), per_kind


def quality_rows(name, paths, planted, distances, known=()):
    """Scores at each of ``distances`` of the groups found among ``paths`` and the ``planted``
    copies; ``known``: pairs of ``paths`` that are copies too."""
    every = paths + [copy for _, copy, _ in planted]
    hashed = copies.hash_files(every)
    rows = []
    for max_distance in distances:
        pairs, _ = copies.near_pairs(hashed["hashes"][:, 0], hashed["colours"], max_distance)
        groups = [[hashed["read"][i] for i in group]
                  for group in copies.groups_of(len(hashed["read"]), pairs)]
        rows.append((name, len(paths), max_distance,
                     *pair_scores(groups, list(planted) + list(known), every)))
    return rows


def print_quality(rows):
    print("\nPrecision and recall on planted near copies (pairs in one group against pairs planted)")
    print("| images | originals | max_distance | precision | recall | false pairs | "
          + " | ".join(f"recall {kind}" for kind in KINDS) + " |")
    print("|---|---:|---:|---:|---:|---:|" + "---:|" * len(KINDS))
    for name, n_images, max_distance, precision, recall, false_pairs, per_kind in rows:
        marker = " (default)" if max_distance == copies.MAX_DISTANCE else ""
        print(f"| {name} | {n_images:,} | {max_distance}{marker} | {precision:.3f} | {recall:.3f} | "
              f"{false_pairs} | " + " | ".join(f"{per_kind[kind]:.2f}" for kind in KINDS) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--preset", choices=("fashion", "scenes", "shapes"), default="fashion")
    parser.add_argument("--scale", type=float, default=1.0, help="of the generated dataset")
    parser.add_argument("--copies", type=int, default=200, help="near copies planted")
    parser.add_argument("--distances", type=int, nargs="+", default=[36, 40, 44, 48])
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} before")

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        dataset = make_dataset(args.preset, folder / args.preset, seed=5, scale=args.scale,
                               progress=False)
        paths = sorted(str(path) for path in dataset.rglob("*.jpg"))
        print_speed(f"JPEGs of the generated {args.preset} (seed 5)", paths,
                    hashing_speed(paths, args.repeat))
        (folder / "large").mkdir()
        large = enlarged_copies(paths[:300], folder / "large")
        print_speed("of them enlarged to 1024 px on the long side", large,
                    hashing_speed(large, args.repeat))

        print_scaling(search_scaling(args.sizes, args.repeat))

        # The generated clothes and scenes hold near copies of their own: planted pairs too.
        own = [(entry["copy_of"], entry["path"], entry["kind"])
               for entry in planted_files(dataset)["near_copies"]] if args.preset != "shapes" else []
        rows = []
        for name, originals, known in ((f"{args.preset}, seed 5", paths, own),
                                       ("smooth noise", noise_pictures(str(folder), 1500, 5), [])):
            (folder / f"copies-{len(rows)}").mkdir()
            planted = plant(originals, str(folder / f"copies-{len(rows)}"), args.copies, seed=11)
            rows += quality_rows(name, originals, planted, args.distances, known)
        print_quality(rows)
    print(f"load average {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
