"""Does Grad-CAM point at the object? The pointing game on the generated colour/shape images.

Trains a SmallVGGNet (``--model``: the global max-pooling one by default) on the ``shapes``
preset with ``helpers.app.workflows.train_from_source``
(what ``python -m helpers train DATA --layout split-folders`` runs) unless ``--model-dir``
already holds a model, then predicts the images of its test split, or every image of
``--test-data`` (a shapes folder the model never saw, e.g. ``helpers make-data shapes DIR
--seed 7``). For each correctly predicted label (a true positive at the model's thresholds)
it asks whether the peak of the label's heatmap (``helpers.explain``: HiResCAM, its default,
and Grad-CAM) falls inside the shape's box, grown by ``--margin`` of the image height and
width on each side, and compares with always pointing at the image centre. The table has one
row per label and one for all of them.

Run:  .venv/bin/python benchmarks/pointing_game.py [--model smallvggnet] [--epochs 40] [--test-data DIR]
"""
import argparse
import time
from pathlib import Path

import numpy as np

from helpers import OUTPUTS_DIR
from helpers.artefacts import load_artefacts, read_history
from helpers.data import load_split_folders
from helpers.evaluation import apply_thresholds, threshold_metrics
from helpers.explain import (
    DEFAULT_MARGIN,
    METHODS,
    GradCAM,
    box_fractions,
    explain_files,
    pointing_game,
    pointing_summary,
)
from helpers.datasets.generate import ensure_dataset, shape_boxes
from helpers.predict import predict_dataframe, predict_split
from helpers.app.workflows import TrainOptions, train_from_source

# What the issue asks of a SmallVGGNet trained with `train`.
TARGET_HIT_RATE = 0.80
TARGET_GAIN = 0.15


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="shapes dataset to train on (default: the embedded one)")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="model folder; trained there when it holds no model (default: "
                             "outputs/benchmarks/pointing_game/<model>_<size>px_<epochs>ep)")
    parser.add_argument("--test-data", type=Path, default=None,
                        help="score every image of this shapes folder instead of the test split")
    parser.add_argument("--model", default="smallvggnet_gmp", choices=("smallvggnet_gmp", "smallvggnet"),
                        help="network, trained with the default recipe of `helpers train` "
                             "(default: its default network)")
    parser.add_argument("--epochs", type=int, default=15,
                        help="length of the learning-rate schedule (default 15, as `helpers train`)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                        help="box growth, as a share of the image size (default 0.05)")
    parser.add_argument("--layer", default=None,
                        help="layer to explain (default: the last convolution)")
    return parser.parse_args()


def images_to_score(args, data, model_dir, loaded):
    """(filenames, y_true, y_prob, boxes, description) of the images the game is played on."""
    if args.test_data is None:
        split = predict_split(model_dir, "test", loaded=loaded)
        return (split["frame"]["filename"].tolist(), split["y_true"], split["y_prob"],
                shape_boxes(data), f"the test split of {data} ({len(split['frame'])} images)")
    frame = load_split_folders(args.test_data)
    y_true, y_prob, paths, skipped = predict_dataframe(loaded, frame)
    for item in skipped:
        print(f"skipped {item['path']}: {item['reason']}")
    return ([str(path) for path in paths], np.asarray(y_true).round().astype(int), y_prob,
            shape_boxes(args.test_data), f"every image of {args.test_data} ({len(paths)} images)")


def main():
    args = parse_arguments()
    data = args.data or ensure_dataset("shapes", quick=False)
    model_dir = args.model_dir or (OUTPUTS_DIR / "benchmarks" / "pointing_game"
                                   / f"{args.model}_{args.image_size}px_{args.epochs}ep")
    if not (Path(model_dir) / "labels.json").is_file():
        start = time.perf_counter()
        train_from_source(data, model_dir, layout="split-folders", model=args.model,
                          epochs=args.epochs, image_size=args.image_size,
                          options=TrainOptions(seed=args.seed))
        print(f"trained in {time.perf_counter() - start:.0f} s")
    loaded = load_artefacts(model_dir)
    model, metadata = loaded
    filenames, y_true, y_prob, boxes, description = images_to_score(args, data, model_dir, loaded)
    classes, task = metadata["classes"], metadata["task"]
    decisions = apply_thresholds(y_prob, metadata["thresholds"], task)
    correct = [[classes[column] for column in np.flatnonzero(row)]
               for row in decisions & (y_true == 1)]

    games = {}
    for method in METHODS:
        cam = GradCAM(model, layer=args.layer, classes=classes, method=method)
        points = explain_files(cam, filenames, correct)
        games[method] = pointing_game(points, box_fractions(boxes, convention="edges"),
                                      margin=args.margin)
    summaries = {method: pointing_summary(game) for method, game in games.items()}
    main_method = METHODS[0]  # helpers.explain's default

    metrics = threshold_metrics(y_true, y_prob, task, metadata["thresholds"])
    print(f"model: {model_dir} ({len(read_history(model_dir))} epochs run)")
    print(f"scored on {description}: micro-F1 {metrics['f1_micro']:.3f}, "
          f"{int(decisions.sum())} labels predicted, {int(y_true.sum())} true")
    print(f"layer {cam.layer.name!r} ({cam.map_size[0]}×{cam.map_size[1]} map at "
          f"{cam.input_size[0]}×{cam.input_size[1]} input); margin {args.margin:.0%} of the image")
    print()
    print("share of the correctly predicted labels whose peak falls in the shape's box")
    print()
    print("| label | correct labels | HiResCAM peak | Grad-CAM peak | image centre | "
          "HiResCAM gain |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, row in summaries[main_method].iterrows():
        name = f"**{label}**" if label == "all" else label
        other = summaries["gradcam"].loc[label]
        print(f"| {name} | {int(row['n'])} | {row['hit_rate']:.1%} | {other['hit_rate']:.1%} | "
              f"{row['centre_rate']:.1%} | {100 * row['gain']:+.1f} points |")
    overall = summaries[main_method].loc["all"]
    game = games[main_method]
    off_centre = pointing_summary(game[~game["centre_hit"]]).loc["all"]
    met = overall["hit_rate"] >= TARGET_HIT_RATE and overall["gain"] >= TARGET_GAIN
    print()
    print(f"{main_method}: peak in the box for {int(overall['hits'])} of {int(overall['n'])} "
          f"correctly predicted labels ({overall['hit_rate']:.1%}; target ≥ "
          f"{TARGET_HIT_RATE:.0%}), {100 * overall['gain']:+.1f} points above the image centre "
          f"(target ≥ {100 * TARGET_GAIN:.0f}): {'met' if met else 'NOT met'}")
    print(f"where the image centre misses the box ({int(off_centre['n'])} labels), the peak "
          f"hits it for {off_centre['hit_rate']:.1%}; empty heatmaps: "
          f"{int(game['peak_y'].isna().sum())}")


if __name__ == "__main__":
    main()
