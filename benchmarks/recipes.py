"""Training-recipe benchmark: how many epochs SmallVGGNet needs to reach a good model.

Trains SmallVGGNet (the tutorial's, or its global max-pooling variant) with each recipe on
two generated datasets of different kinds, the embedded ``fashion`` set (2,000 garments, 9 labels) and the ``shapes`` set
(1,080 coloured shapes, 7 labels), through ``helpers.app.workflows.train_from_source``, the
code path of ``helpers train``: same splits (seed 42, 15 % validation, 15 % test), same
pipeline, same callbacks. For each recipe and dataset it prints the epochs and seconds until
the validation micro-F1 first reaches 0.90 and 0.95, the best validation micro-F1 and its
epoch, and the test micro-F1 of the model the run kept (the test split is looked at once,
at the end; recipes are compared on validation numbers). Ratios are against ``baseline``
(today's recipe, written out below) in the same run: epochs are what to trust on a loaded
machine, seconds only on an idle one.

Run from the repository root (the full table takes about an hour on 2 idle cores):

    .venv/bin/python benchmarks/recipes.py
    .venv/bin/python benchmarks/recipes.py --recipes baseline default --datasets shapes
    .venv/bin/python benchmarks/recipes.py --quick        # a few minutes: checks the script
"""
import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

TARGETS = (0.90, 0.95)
DATASETS = ("fashion", "shapes")

# Today's recipe before the default changed, written out so the baseline stays what it was.
BASELINE_AUGMENT = {
    "rotation_range": 25,
    "width_shift_range": 0.1,
    "height_shift_range": 0.1,
    "shear_range": 0.2,
    "zoom_range": 0.2,
    "horizontal_flip": True,
    "fill_mode": "nearest",
}
LIGHT_AUGMENT = {
    "width_shift_range": 0.1,
    "height_shift_range": 0.1,
    "zoom_range": 0.1,
    "horizontal_flip": True,
    "fill_mode": "nearest",
}
# Each recipe: keyword arguments of train_from_source and its TrainOptions. "default" is their
# own defaults (what `helpers train` does); the others spell everything out.
_TODAY = dict(model="smallvggnet", schedule="plateau", learning_rate=1e-3, batch_size=32,
              optimizer="adam", augment=BASELINE_AUGMENT, patience=10, epochs=30)
_COSINE = dict(_TODAY, schedule="cosine", learning_rate=3e-3, warmup_epochs=1, patience=5,
               epochs=15)
RECIPES = {
    "baseline": _TODAY,
    "default": {},
    # the new schedule on the tutorial's SmallVGGNet: what the recipe alone does
    "smallvggnet-cosine": _COSINE,
    # the global max-pooling variant with today's recipe: what the architecture alone does
    "gmp-plateau": dict(_TODAY, model="smallvggnet_gmp"),
    # screened on shapes, 12 epochs: none of these learnt the shapes in time
    "smallvggnet-cosine-12": dict(_COSINE, epochs=12, patience=10),
    "smallvggnet-cosine-12-1e-3": dict(_COSINE, epochs=12, patience=10, learning_rate=1e-3),
    "smallvggnet-cosine-12-light": dict(_COSINE, epochs=12, patience=10, augment=LIGHT_AUGMENT),
    "smallvggnet-cosine-12-b16": dict(_COSINE, epochs=12, patience=10, batch_size=16),
    # ablation, 12 epochs: the tutorial's head without its dropout, the variant's head with
    # it, and the variant itself (models added by register_ablation_models)
    "smallvggnet-cosine-12-no-dropout": dict(_COSINE, epochs=12, patience=10,
                                             model="smallvggnet_no_dropout"),
    "gmp-cosine-12-dropout": dict(_COSINE, epochs=12, patience=10, model="smallvggnet_gmp_dropout"),
    "gmp-cosine-12": dict(_COSINE, epochs=12, patience=10, model="smallvggnet_gmp"),
}
def register_ablation_models():
    """Add the two models between the tutorial's SmallVGGNet (Flatten, dropout) and the variant
    (global max pooling, no dropout) to ``helpers.models.BUILDERS``, for this process only: the
    ablation recipes use them, ``helpers train`` does not offer them."""
    import functools

    from helpers import models

    models.BUILDERS.setdefault("smallvggnet_no_dropout",
                               functools.partial(models.build_smallvggnet, dropout=(0, 0)))
    models.BUILDERS.setdefault("smallvggnet_gmp_dropout", functools.partial(
        models.build_smallvggnet_gmp, dropout=models.SMALLVGGNET_DROPOUT))


def first_epoch_reaching(values, target):
    """1-based index of the first value >= target, or None."""
    for index, value in enumerate(values):
        if value >= target:
            return index + 1
    return None


def run_one(recipe_name, dataset_name, source, out_dir, seed, epochs=None):
    """Train one recipe on one dataset; return its per-epoch curve and summary numbers."""
    import keras

    from helpers.app.workflows import TrainOptions, train_from_source

    register_ablation_models()
    options = dict(RECIPES[recipe_name])
    if epochs is not None:
        options["epochs"] = epochs
    marks = {}

    def log(line):
        now = time.perf_counter()
        if line.startswith("training "):
            marks["start"] = now
        elif line.startswith("epoch "):
            marks[int(line.split()[1].split("/")[0])] = now
            print("      " + line, flush=True)

    load_before = os.getloadavg()[0]
    arguments = {key: value for key, value in options.items() if key in ("model", "epochs", "patience")}
    training = {key: value for key, value in options.items() if key not in arguments}
    result = train_from_source(source, out_dir, layout="split-folders", image_size=64, log=log,
                               options=TrainOptions(seed=seed, **training), **arguments)
    history = result["history"]
    curve = [float(value) for value in history["val_f1_micro"]]
    seconds = [marks[epoch] - marks["start"] for epoch in range(1, len(curve) + 1)]
    row = {
        "recipe": recipe_name, "dataset": dataset_name, "seed": seed,
        "epochs_budget": int(options.get("epochs", _default("epochs"))),
        "epochs_run": len(curve), "val_f1_micro": curve, "seconds": seconds,
        "best_val_f1_micro": max(curve), "best_epoch": curve.index(max(curve)) + 1,
        "test_f1_micro": float(result["metrics"]["test"]["f1_micro"]),
        "train_images_per_second": result["images_per_second"],
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    for target in TARGETS:
        epoch = first_epoch_reaching(curve, target)
        row[f"epochs_to_{target:.2f}"] = epoch
        row[f"seconds_to_{target:.2f}"] = None if epoch is None else seconds[epoch - 1]
    del result
    keras.backend.clear_session()
    gc.collect()
    return row


def _default(name):
    import inspect

    from helpers.app.workflows import train_from_source

    return inspect.signature(train_from_source).parameters[name].default


def describe(recipe_name):
    """The recipe's settings as one short line."""
    import dataclasses
    import inspect

    from helpers.app.workflows import DEFAULT_LEARNING_RATES, TrainOptions, train_from_source

    defaults = {name: parameter.default for name, parameter
                in inspect.signature(train_from_source).parameters.items()}
    defaults.update((field.name, field.default) for field in dataclasses.fields(TrainOptions))
    options = {**defaults, **RECIPES[recipe_name]}
    augment = options["augment"]
    if augment is True:
        from helpers.augment import DEFAULT_AUGMENT as augment
    augment_text = ("none" if not augment else
                    ", ".join(f"{key.replace('_range', '')} {value}" for key, value
                              in augment.items() if key != "fill_mode" and value))
    schedule = (f"warm-up {options['warmup_epochs']:g} epoch + cosine to 0"
                if options["schedule"] == "cosine" else "ReduceLROnPlateau(0.5)")
    rate = options["learning_rate"] or DEFAULT_LEARNING_RATES.get(options["model"], 1e-3)
    return (f"{options['model']}; {options['optimizer']} {rate:g}, {schedule}, batch "
            f"{options['batch_size']}, up to {options['epochs']} epochs, patience "
            f"{options['patience']}; augment: {augment_text}")


def _ratio(value, reference, budget_reference):
    """value / reference as text; a reference that never got there gives an upper bound."""
    if value is None:
        return "–"
    if reference is None:
        return f"< {value / budget_reference:.2f}"
    return f"{value / reference:.2f}"


def _reached(value, budget, unit=""):
    if value is None:
        return f"> {budget}" if unit == "" else "–"
    return f"{value:.0f}{unit}"


def table(rows):
    """The Markdown table of the results, ratios against the baseline of the same dataset."""
    lines = ["| dataset | recipe | seed | epochs to 0.90 | epochs to 0.95 | s to 0.90 | s to 0.95 "
             "| epochs vs baseline (0.95) | s vs baseline (0.95) | best val F1 (epoch) "
             "| test micro-F1 | epochs run | load |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        base = next((other for other in rows if other["recipe"] == "baseline"
                     and other["dataset"] == row["dataset"] and other["seed"] == row["seed"]),
                    None)
        if base is None or row is base:
            epoch_ratio = seconds_ratio = "1.00" if row is base else "–"
        else:
            epoch_ratio = _ratio(row["epochs_to_0.95"], base["epochs_to_0.95"],
                                 base["epochs_run"])
            seconds_ratio = _ratio(row["seconds_to_0.95"], base["seconds_to_0.95"],
                                   base["seconds"][-1])
        lines.append(
            f"| {row['dataset']} | {row['recipe']} | {row['seed']} "
            f"| {_reached(row['epochs_to_0.90'], row['epochs_run'])} "
            f"| {_reached(row['epochs_to_0.95'], row['epochs_run'])} "
            f"| {_reached(row['seconds_to_0.90'], None, ' s')} "
            f"| {_reached(row['seconds_to_0.95'], None, ' s')} "
            f"| {epoch_ratio} | {seconds_ratio} "
            f"| {row['best_val_f1_micro']:.3f} ({row['best_epoch']}) "
            f"| {row['test_f1_micro']:.3f} | {row['epochs_run']}/{row['epochs_budget']} "
            f"| {row['load_average'][0]:.1f}–{row['load_average'][1]:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=["default", "smallvggnet-cosine", "baseline"],
                        choices=list(RECIPES), help="default: default smallvggnet-cosine baseline")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42],
                        help="seeds of the split, the initial weights and the shuffling")
    parser.add_argument("--epochs", type=int, help="override every recipe's epoch budget")
    parser.add_argument("--quick", action="store_true",
                        help="the quick datasets (a quarter of the images) and 2 epochs")
    parser.add_argument("--json", help="also write every run (with its curve) to this file")
    parser.add_argument("--output", help="also write the table to this Markdown file")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from helpers.datasets.generate import ensure_dataset

    epochs = 2 if args.quick and args.epochs is None else args.epochs
    sources = {name: ensure_dataset(name, quick=args.quick) for name in args.datasets}
    recipes = list(dict.fromkeys(args.recipes))
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start")
    for name in recipes:
        print(f"  {name}: {describe(name)}")
    rows = []
    work = Path(tempfile.mkdtemp(prefix="recipes-"))
    try:
        for dataset_name, source in sources.items():
            for seed in args.seeds:
                for name in recipes:
                    print(f"{dataset_name} · {name} · seed {seed}", flush=True)
                    out_dir = work / f"{dataset_name}-{name}-{seed}"
                    rows.append(run_one(name, dataset_name, source, out_dir, seed, epochs))
                    shutil.rmtree(out_dir, ignore_errors=True)
                    if args.json:
                        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    text = table(rows)
    speeds = [row["train_images_per_second"] for row in rows if row["train_images_per_second"]]
    footer = (f"Training throughput (last epochs, median): {statistics.median(speeds):.0f} "
              f"images/s; load average {os.getloadavg()[0]:.2f} at the end." if speeds else "")
    print("\n" + text + "\n\n" + footer)
    if args.output:
        recipes_text = "\n".join(f"- `{name}`: {describe(name)}" for name in recipes)
        Path(args.output).write_text(f"{recipes_text}\n\n{text}\n\n{footer}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
