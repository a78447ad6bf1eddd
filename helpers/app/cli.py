"""Command-line interface: ``helpers COMMAND ...`` (or ``python -m helpers COMMAND ...``).

Commands: make-data, scan, audit, duplicates, shard, train, worker, predict, evaluate,
export, fetch, label-issues. Each prints a human-readable
report by default and one JSON document with ``--format json``. Errors a user can fix
(a wrong path, a bad argument, a mismatched model folder) end with a one-line message
and exit code 2, never a traceback; an unexpected error (a bug) ends with a one-line
message and exit code 3 (``HELPERS_TRACEBACK=1`` shows the traceback).
"""
import argparse
import csv
import json
import os
import sys
import warnings
from pathlib import Path

from helpers import warn
from helpers.data import LAYOUTS, load_dataset
from helpers.files.fileio import printable
from helpers.datasets.generate import PRESETS
from helpers.app import copies_cli, label_issues

# Annotated copies keep the image's extension when Pillow writes it, else become PNG.
_ANNOTATE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _print_json(document):
    """Print ``document`` as indented strict JSON (NaN and infinity as null)."""
    from helpers.files.fileio import dumps

    print(dumps(document))


def _add_dataset_options(parser):
    """Options shared by every command that reads a dataset."""
    group = parser.add_argument_group("dataset layout")
    group.add_argument("source", help="dataset folder, VOC root, CSV file or shard folder")
    group.add_argument(
        "--layout",
        choices=LAYOUTS + ("shards",),
        default="auto",
        help="auto: shards when manifest.json exists, voc when Annotations/ exists, csv for a "
        ".csv file, folders otherwise",
    )
    group.add_argument(
        "--folder-separator", default="_", help="split-folders: separator in folder names (default _)"
    )
    group.add_argument("--image-column", default=None, help="csv: image column (default: first column)")
    group.add_argument(
        "--label-column", default=None, help="csv: label column (default: 'labels', 'Finding Labels' or the second)"
    )
    group.add_argument("--separator", default="|", help="csv: separator between labels (default |)")
    group.add_argument(
        "--no-label", default="No Finding", help="csv: token meaning 'no label' (default 'No Finding')"
    )
    group.add_argument("--image-directory", default=None, help="csv: folder the image column is relative to; coco: the images' folder")
    group.add_argument(
        "--encoding", default=None,
        help="csv: text encoding of the file, e.g. latin-1 (default: UTF-8, or what its byte-order mark says)",
    )
    group.add_argument("--drop-difficult", action="store_true", help="voc: ignore objects marked difficult")
    group.add_argument(
        "--allow-absolute",
        action="store_true",
        help="csv/voc/coco: accept absolute paths and paths leading out of the image directory",
    )


def _dataset_options(args):
    """The loader keyword arguments given on the command line."""
    return {
        "layout": args.layout,
        "folder_separator": args.folder_separator,
        "image_column": args.image_column,
        "label_column": args.label_column,
        "separator": args.separator,
        "no_label": args.no_label,
        "image_directory": args.image_directory,
        "drop_difficult": args.drop_difficult,
        "allow_absolute": args.allow_absolute,
        "encoding": args.encoding,
    }


def _load_from_args(args):
    from helpers.scale.shards import load_any

    return load_any(args.source, **_dataset_options(args))


def _skipped_note(dataframe):
    """One line counting the inputs the loader left out (each was already warned about)."""
    n_skipped = len(dataframe.attrs.get("skipped", []))
    return f"; {n_skipped} inputs skipped (see the warnings above)" if n_skipped else ""


# ----------------------------------------------------------------------------- commands


def _command_make_data(args):
    from helpers.datasets.generate import make_dataset

    out_dir = make_dataset(args.preset, args.out_dir, seed=args.seed, scale=args.scale, progress=True)
    print(f"wrote the {args.preset} dataset to {out_dir}")
    return 0


def command_scan(args):
    from helpers.scan import scan

    dataframe = _load_from_args(args)
    report = scan(dataframe)
    if args.format == "json":
        _print_json(report)
        return 0
    print(
        f"{report['n_images']} images, {len(report['label_counts'])} labels "
        f"({dataframe.attrs.get('layout')} layout){_skipped_note(dataframe)}"
    )
    print("\nlabel counts:")
    width = max((len(label) for label in report["label_counts"]), default=5)
    for label, count in report["label_counts"].items():
        print(f"  {label:<{width}} {count:>8}  {count / max(report['n_images'], 1):6.1%}")
    print("\nlabels per image:")
    for n_labels, count in report["labels_per_image"].items():
        print(f"  {n_labels:>3} labels: {count}")
    for key in ("missing", "unreadable"):
        items = report.get(key) or []
        if items:
            print(f"\n{len(items)} {key} files, for example:")
            for item in items[:10]:
                print(f"  {printable(item) if isinstance(item, str) else json.dumps(item)}")
    return 0


def _command_audit(args):
    from helpers.scan import audit
    from helpers.scale.shards import audit_shards, is_shard_frame

    dataframe = _load_from_args(args)
    report = (audit_shards if is_shard_frame(dataframe) else audit)(dataframe, progress=args.format != "json")
    if args.format == "json":
        _print_json(report)
    else:
        for item in report.get("shards", []) + report["files"]:
            if not item["ok"]:
                print(f"BAD  {printable(item['path'])}: {item['error']}")
        print(f"{report['n_ok']} of {report['n_images']} images load; {report['n_bad']} do not{_skipped_note(dataframe)}")
    return 0 if report["n_bad"] == 0 else 1


def _command_shard(args):
    from helpers.scale.shards import is_shard_folder, write_shards

    if args.layout == "shards" or (args.layout == "auto" and is_shard_folder(args.source)):
        raise ValueError(f"{args.source} already holds shards; give the dataset they were written from")
    options = _dataset_options(args)
    dataframe = _load_from_args(args)
    quiet = args.format == "json"
    manifest = write_shards(
        dataframe, args.out_dir, shard_size_mb=args.shard_size_mb, seed=args.seed,
        workers=args.workers, progress=not quiet, log=None if quiet else print,
        written_with={"source": os.path.abspath(args.source), **options},
    )
    if quiet:
        _print_json({key: manifest[key] for key in ("n_images", "n_shards", "classes", "skipped",
                                                   "bytes", "written", "kept")})
    return 0


def _command_train(args):
    if args.command == "train" and args.workers is not None:
        return _command_train_on_workers(args)
    from helpers.files.weights import OFFLINE_ENVIRONMENT
    from helpers.app.workflows import train_from_source

    previous = os.environ.get(OFFLINE_ENVIRONMENT)
    if args.offline:
        os.environ[OFFLINE_ENVIRONMENT] = "1"  # for this run only, restored below
    try:
        train_from_source(
            args.source, args.out, model=args.model, epochs=args.epochs,
            image_size=args.image_size, patience=args.patience, options=_train_options(args),
            **_dataset_options(args),
        )
    finally:
        if previous is None:
            os.environ.pop(OFFLINE_ENVIRONMENT, None)
        else:
            os.environ[OFFLINE_ENVIRONMENT] = previous
    return 0


def _train_options(args):
    """The ``TrainOptions`` given on the command line (``train`` and ``worker``)."""
    from helpers.app.workflows import TrainOptions

    return TrainOptions(
        batch_size=args.batch_size, seed=args.seed, loss=args.loss, task=args.task,
        group_column=args.group_column, learning_rate=args.learning_rate,
        allow_copies_across_splits=args.allow_copies_across_splits,
        schedule=args.schedule, augment=not args.no_augment, weights=args.weights,
        trainable_layers=args.trainable_layers, **_distribution_options(args),
    )


def _distribution_options(args):
    """``strategy=`` for ``train --devices N`` and ``worker`` (made before any TensorFlow op)."""
    from helpers.scale import distribute

    if args.command == "worker":
        if args.devices is not None or args.workers is not None:
            raise ValueError("worker: the cluster comes from TF_CONFIG; drop --devices / --workers")
        return {"strategy": distribute.multi_worker_strategy()}
    if args.devices is not None:
        return {"strategy": distribute.mirrored_strategy(args.devices)}
    return {}


def _command_train_on_workers(args):
    """``train --workers N``: the same command as N ``worker`` processes on loopback ports."""
    from helpers.scale.distribute import launch_workers

    if args.devices is not None:
        raise ValueError("--workers and --devices: choose one (each worker uses one device here)")
    argv, kept = list(args.argv), []
    argv = iter(argv[argv.index("train") + 1:])
    for item in argv:  # the same arguments, without --workers N and --worker-timeout S
        if item in ("--workers", "--worker-timeout"):
            next(argv, None)
        elif not item.startswith(("--workers=", "--worker-timeout=")):
            kept.append(item)
    try:
        launch_workers(kept, args.workers,
                       timeout=args.worker_timeout)
    except (RuntimeError, TimeoutError) as error:  # the workers' own output says why
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.workers} workers finished; artefacts in {args.out}")
    return 0


def _command_predict(args):
    from helpers.predict import predict_paths

    missing = [path for path in args.paths if not os.path.lexists(path)]
    if len(missing) == len(args.paths):
        raise ValueError(f"no such file or folder: {', '.join(map(printable, missing))}")
    if args.explain:
        from helpers.app.heatmaps import explain_paths

        results = explain_paths(args.model_dir, args.paths, args.explain,
                                batch_size=args.batch_size, layer=args.explain_layer,
                                method=args.explain_method)
    else:
        results = predict_paths(args.model_dir, args.paths, batch_size=args.batch_size)
    if args.annotate:
        _write_annotated(results, Path(args.annotate))
    if args.format == "json":
        _print_json(results)
    elif args.format == "csv":
        _print_predictions_csv(results)
    else:
        _print_predictions_text(results)
    n_bad = sum(1 for result in results if result.get("error"))
    if n_bad:
        print(f"{n_bad} of {len(results)} images could not be read", file=sys.stderr)
    return 0


def _write_annotated(results, out_dir):
    """``predict --annotate``: a copy of each readable image with its labels drawn on it."""
    from helpers.predict import annotate

    out_dir.mkdir(parents=True, exist_ok=True)
    for index, result in enumerate(results):
        if result.get("error") is None:
            name = Path(result["path"]).name
            if Path(name).suffix.lower() not in _ANNOTATE_SUFFIXES:
                name += ".png"
            try:
                annotate(result["path"], result, out_dir / f"{index:05d}_{name}")
            except (ValueError, OSError) as error:  # one copy that fails costs no other
                warn(f"could not annotate {printable(result['path'])}: {error}")


def _print_predictions_csv(results):
    labels = sorted({label for result in results for label in result.get("probabilities") or {}})
    writer = csv.writer(sys.stdout)
    writer.writerow(["path", "labels", "error", *labels])
    for result in results:
        probabilities = result.get("probabilities") or {}
        writer.writerow(
            [result["path"], "|".join(result.get("labels") or []), result.get("error") or "",
             *[f"{probabilities[label]:.6f}" if label in probabilities else "" for label in labels]]
        )


def _print_predictions_text(results):
    for result in results:
        if result.get("error"):
            print(f"{printable(result['path'])}: ERROR {result['error']}")
        else:
            shown = ", ".join(f"{label} {result['probabilities'][label]:.1%}" for label in result["labels"])
            print(f"{printable(result['path'])}: {shown or '(no label above its threshold)'}")
            for label, explanation in (result.get("explanations") or {}).items():
                peak = explanation["peak"]
                where = "nowhere (empty heatmap)" if None in peak else f"y {peak[0]:.2f}, x {peak[1]:.2f}"
                print(f"  {label}: looks at {where} -> {printable(explanation['heatmap'])}")


def _command_evaluate(args):
    from helpers.app.workflows import evaluate_model_dir

    dataframe = _load_from_args(args)
    if dataframe.empty:
        raise ValueError(f"{printable(args.source)}: no images listed "
                         f"({dataframe.attrs.get('layout')} layout){_skipped_note(dataframe)}")
    report = evaluate_model_dir(
        args.model_dir,
        dataframe,
        split=args.split,
        tune_thresholds=args.tune_thresholds,
        batch_size=args.batch_size,
        min_precision=args.min_precision,
    )
    if args.format == "json":
        _print_json(report)
        return 0
    counts = report["counts"]
    skipped = f"; {counts['skipped']} skipped (named in the warnings above)" if counts["skipped"] else ""
    print(f"{report['n_images']} images evaluated ({report['split']} split): {counts['found']} "
          f"found{skipped}{_skipped_note(dataframe)}")
    print(f"{'label':<20} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8} {'AP':>7} {'ROC-AUC':>8}")
    for label, row in report["per_class"].items():
        cells = [row[key] for key in ("precision", "recall", "f1")]
        extra = [row["average_precision"], row["roc_auc"]]
        print(
            f"{label:<20} " + " ".join(f"{value:9.3f}" for value in cells) + f" {row['support']:8d} "
            + " ".join("    n/a" if value is None or value != value else f"{value:7.3f}" for value in extra)
        )
    for average in ("micro", "macro", "weighted"):
        row = report[average]
        print(f"{average + ' avg':<20} {row['precision']:9.3f} {row['recall']:9.3f} {row['f1']:9.3f}")
    print(f"mAP {report['mAP']:.3f}")
    if args.tune_thresholds:
        print("thresholds tuned on the validation split:")
        for label, row in report["threshold_choice"]["per_class"].items():
            why = (f"kept: validation F1 {row['gain']:+.3f} over the default (gain noise {row['noise']:.3f})"
                   if row["kept"] else f"default kept: {row['reason']}")
            print(f"  {label:<20} {row['threshold']:.3f}  {why}")
        print(f"saved to {printable(Path(args.model_dir) / 'labels.json')}")
    return 0


# ----------------------------------------------------------------------------- parser


def _add_make_data_options(parser):
    parser.add_argument("preset", choices=PRESETS)
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="size relative to the default (1.0)")


def _add_report_options(parser):
    """``scan`` and ``audit``: a dataset, and a text or JSON report."""
    _add_dataset_options(parser)
    parser.add_argument("--format", choices=("text", "json"), default="text")


def _add_shard_options(parser):
    _add_dataset_options(parser)
    parser.add_argument("out_dir", help="folder for the shards, images.csv and manifest.json")
    parser.add_argument(
        "--shard-size-mb", type=float, default=None,
        help="target size of one shard (default: 100 MB, but at least 16 shards)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle across shards")
    parser.add_argument("--workers", type=int, default=None, help="shards written at once (default: CPUs)")
    parser.add_argument("--format", choices=("text", "json"), default="text")


def _add_train_options(parser):
    """``train`` and ``worker``: a dataset, the training recipe, and where and how to run."""
    _add_dataset_options(parser)
    _add_recipe_options(parser)
    parser.add_argument(
        "--weights",
        default=None,
        help="resnet50/vgg16: 'imagenet' (from the Keras cache, downloaded into it the first time) "
        "or a local weights file",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="never download (as HELPERS_OFFLINE=1): --weights imagenet then uses the Keras cache "
        "or starts from random weights",
    )
    parser.add_argument("--trainable-layers", type=int, default=0, help="resnet50/vgg16: unfreeze the top N layers")
    parser.add_argument("--group-column", default=None, help="keep each group (e.g. 'Patient ID') in one split")
    copies_cli.add_copies_option(parser)
    parser.add_argument("--out", required=True, help="folder for model.keras, labels.json, history.csv...")
    parser.add_argument("--devices", type=int, default=None,
                        help="train on N local devices with MirroredStrategy (GPUs, else the CPU split in N)")
    parser.add_argument("--workers", type=int, default=None,
                        help="train on N worker processes on this machine (MultiWorkerMirroredStrategy)")
    parser.add_argument("--worker-timeout", type=float, default=None, help="--workers: stop them after S seconds")


def _add_recipe_options(parser):
    """The model and how it learns; the defaults are those of ``train_from_source``."""
    parser.add_argument(
        "--model", choices=("smallvggnet_gmp", "smallvggnet", "mlp", "resnet50", "vgg16"), default="smallvggnet_gmp",
        help="smallvggnet_gmp: SmallVGGNet with a global max-pooling head (learns in far fewer epochs); smallvggnet: the tutorial's",
    )
    parser.add_argument("--epochs", type=int, default=15, help="length of the learning-rate schedule; early stopping may end sooner")
    parser.add_argument("--image-size", type=int, default=64, help="square input size in pixels")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--loss",
        choices=("bce", "weighted-bce", "focal", "cce"),
        default=None,
        help="default: bce for multi_label, cce for multi_class",
    )
    parser.add_argument(
        "--task",
        choices=("multi_label", "multi_class", "auto"),
        default="multi_label",
        help="multi_label: sigmoid + BCE; multi_class: softmax + CCE; auto: multi_class when every image has one label",
    )
    parser.add_argument("--learning-rate", type=float, default=None, help="peak rate; default 3e-3 for the SmallVGGNets, 1e-3 otherwise")
    parser.add_argument(
        "--schedule", choices=("cosine", "plateau"), default="cosine",
        help="cosine: 1 epoch of warm-up, then a cosine decay to 0 at the last epoch; plateau: halve the rate when validation stalls",
    )
    parser.add_argument("--patience", type=int, default=5, help="epochs without improvement before stopping")
    parser.add_argument("--no-augment", action="store_true", help="train without augmentation")


def _add_predict_options(parser):
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image file or folder (searched recursively)")
    parser.add_argument("--format", choices=("text", "json", "csv"), default="text")
    parser.add_argument("--annotate", metavar="OUT_DIR", help="write copies with labels drawn on them")
    parser.add_argument(
        "--explain", metavar="OUT_DIR",
        help="write a Grad-CAM overlay PNG per predicted label there; JSON results gain 'explanations'",
    )
    parser.add_argument("--explain-layer", default=None, help="with --explain: the layer to explain (default: the last convolution)")
    parser.add_argument(
        "--explain-method", choices=("hirescam", "gradcam"), default="hirescam",
        help="with --explain: gradient times feature map per position (hirescam) or Grad-CAM's averaged gradient",
    )
    parser.add_argument("--batch-size", type=int, default=32)


def _add_evaluate_options(parser):
    parser.add_argument("--model-dir", required=True)
    _add_dataset_options(parser)
    parser.add_argument(
        "--split",
        choices=("all", "test", "val", "train"),
        default="all",
        help="restrict to a split saved at training time (when SOURCE is the training dataset)",
    )
    parser.add_argument(
        "--tune-thresholds", action="store_true",
        help="tune per-class thresholds on the validation split, keep those that help beyond noise "
             "without predicting a class far more often than it occurs, and save them",
    )
    parser.add_argument("--min-precision", type=float, default=None,
                        help="with --tune-thresholds: only thresholds whose validation precision reaches this")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--batch-size", type=int, default=32)


def _add_export_options(parser):
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("out", metavar="OUT",
                        help="a new folder for saved_model/, model.tflite, model.onnx and labels.json")
    parser.add_argument("--check", metavar="SOURCE", default=None,
                        help="check the files on images of this dataset (default: the model's test split)")
    parser.add_argument("--layout", choices=LAYOUTS, default="auto", help="of --check SOURCE")
    parser.add_argument("--formats", nargs="+", choices=("saved_model", "litert", "onnx"),
                        default=["saved_model", "litert", "onnx"])


def _command_export(args):
    from helpers.app.export import TOLERANCES, export_model

    paths = None
    if args.check:
        paths = list(load_dataset(args.check, layout=args.layout)["filename"])
    document = export_model(args.model_dir, args.out, check_paths=paths, formats=tuple(args.formats))
    for name, difference in document["checks"].items():
        print(f"{name:12s} largest difference from the Keras model {difference:.1e} "
              f"(tolerance {TOLERANCES[name]:.0e})")
    print(f"exported {printable(args.model_dir)} to {printable(args.out)}: "
          f"{', '.join(sorted(document['sha256']))}")
    return 0


def _add_fetch_options(parser):
    from helpers.datasets.fetch import DATASETS

    parser.add_argument("name", nargs="?", choices=sorted(DATASETS), metavar="NAME",
                        help=f"one of {', '.join(sorted(DATASETS))}")
    parser.add_argument("--url", default=None, help="any tar or zip archive instead of NAME")
    parser.add_argument("--sha256", default=None, help="with --url: the archive's SHA-256 (or MD5)")
    parser.add_argument("--dir", default=None, help="cache folder (default: Keras', ~/.keras)")


def _command_fetch(args):
    from helpers.datasets.fetch import fetch

    source, layout = fetch(args.name, url=args.url, file_hash=args.sha256, directory=args.dir)
    print(f"SOURCE = {str(source)!r}\nLAYOUT = {layout!r}")
    return 0


def _subcommands():
    """Each command as ``(name, help, options builder, handler)``, in the order of ``--help``.

    Read when the parser is built, so that a handler replaced on this module is the one run.
    """
    return [
        ("make-data", "generate an embedded dataset (offline, deterministic)",
         _add_make_data_options, _command_make_data),
        ("scan", "label statistics and image sizes (headers only)", _add_report_options, command_scan),
        ("audit", "decode every image; exit code 1 if any fails", _add_report_options, _command_audit),
        ("duplicates", "groups of images showing the same picture (copies, near copies)",
         copies_cli.add_duplicates_options, copies_cli.command_duplicates),
        ("shard", "pack a dataset's images into TFRecord shards", _add_shard_options, _command_shard),
        ("train", "train a model and save its artefacts", _add_train_options, _command_train),
        ("worker", "one worker of a multi-worker run: train's options, the cluster from TF_CONFIG",
         _add_train_options, _command_train),
        ("predict", "predict labels of images or folders", _add_predict_options, _command_predict),
        ("evaluate", "per-class metrics of a trained model on a dataset",
         _add_evaluate_options, _command_evaluate),
        ("export", "a model folder as a SavedModel, LiteRT and ONNX with its labels and thresholds",
         _add_export_options, _command_export),
        ("fetch", "download and extract a public dataset (or any archive) the Keras way",
         _add_fetch_options, _command_fetch),
        ("label-issues", "images whose labels look wrong to a model that never saw them",
         label_issues.add_label_issues_options, label_issues.command_label_issues),
    ]


def build_parser():
    """The ``helpers`` argument parser: one subcommand per row of :func:`_subcommands`."""
    parser = argparse.ArgumentParser(prog="helpers", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, add_options, handler in _subcommands():
        command = commands.add_parser(name, help=help_text)
        add_options(command)
        command.set_defaults(handler=handler)
    return parser


def _format_warning(message, category, filename, lineno, line=None):
    return f"warning: {printable(str(message))}\n"


def _one_line(error):
    return printable(" ".join(str(error).split()) or type(error).__name__)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    original_format = warnings.formatwarning
    warnings.formatwarning = _format_warning
    # A file name that is not valid UTF-8 must not stop the report half-printed.
    stdout_errors = getattr(sys.stdout, "errors", None)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return args.handler(args)
    except (ValueError, OSError) as error:  # a wrong path or argument, a damaged file
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory; lower --batch-size or --image-size", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if os.environ.get("HELPERS_TRACEBACK"):
            raise
        print(f"error: unexpected {type(error).__name__}: {_one_line(error)} (this is a bug in "
              "helpers; set HELPERS_TRACEBACK=1 to see the traceback)", file=sys.stderr)
        return 3
    finally:
        warnings.formatwarning = original_format
        if stdout_errors and hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(errors=stdout_errors)
