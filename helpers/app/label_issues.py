"""Labels that look wrong: each image's given labels against a model that never saw it.

- :func:`find_label_issues`: split the dataset into K folds (iterative stratification, as
  ``helpers.splits``; a group's images, and the copies of a picture, in one fold), train K
  models with the recipe of ``helpers train``, each on K-1 folds, and predict the held-out
  fold: every image gets out-of-fold probabilities;
- :func:`from_model_dir`: the same ranking for the validation and test images of a model
  folder, from that model's probabilities. Its training images cannot be scored that way: the
  model learnt their labels, right or wrong, and agrees with them.

Both rank with confident learning (Northcutt, Jiang and Chuang, "Confident Learning:
Estimating Uncertainty in Dataset Labels", 2021), through cleanlab's multi-label API. Each
image of the ranking, most suspicious first, is ``{"path", "given", "suggested", "score",
"issue"}``: ``score`` is ``cleanlab.multilabel_classification.rank.get_label_quality_scores``
(0 to 1, lower is more suspicious), ``issue`` whether
``cleanlab.multilabel_classification.filter.find_label_issues`` flags the image, and
``suggested`` the labels whose probability reaches the model's threshold (0.5 for the fold
models). Unreadable files are named in a warning and left out, as ``helpers audit`` reports
them; one bad file costs no other image its score.
"""
import dataclasses
import numbers
import sys
import tempfile
import warnings

import numpy as np
import pandas as pd

from helpers import warn
from helpers.files.fileio import printable
from helpers.labels import LabelVocabulary, to_label_lists

TRAINING_NOTE = ("the model learnt the labels of its training images, right or wrong, so it "
                 "cannot score them: run without a model folder (K folds) to score every image")


# ----------------------------------------------------------------------------- out of fold
def find_label_issues(source, layout="auto", folds=5, epochs=15, image_size=64, seed=None,
                      options=None, log=print, model="smallvggnet_gmp", patience=5,
                      **load_options):
    """Rank every image of a dataset by how well out-of-fold predictions agree with its labels.

    Parameters
    ----------
    source, layout, model, epochs, image_size, patience, **load_options
        As for ``helpers.app.workflows.train_from_source``; each fold trains that recipe.
    folds : int
        K: K models, each trained on K-1 folds (early-stopped on ``options.val_size`` of
        them) and predicting the fold it never saw.
    seed : int, optional
        Seeds the folds and the training; default ``options.seed``.
    options : helpers.app.workflows.TrainOptions, optional
        Batch, task, loss, augmentation, learning rate... (no ``strategy``);
        ``group_column`` keeps a group's images (a patient's, a place's) in one fold, by
        default the ``group`` column when the dataset has one; the copies of a picture
        (``helpers.scan.find_copies``) are kept in one fold too, unless
        ``allow_copies_across_splits``.
    log : callable or None
        Receives progress lines.

    Returns
    -------
    list of dict
        ``{"path", "given", "suggested", "score", "issue"}`` per image, most suspicious first.
    """
    import keras

    from helpers.app import workflows

    options = _fold_options(options or workflows.TrainOptions(), seed, folds)
    workflows._check_choices(options, model, epochs, load_options)
    target_size = workflows._target_size(image_size)
    log = log or (lambda line: None)
    dataframe, _, _ = workflows._load_usable(source, layout, target_size, log, **load_options)
    task, loss, vocabulary = workflows._task_and_classes(source, dataframe, options, log)
    options = dataclasses.replace(options, group_column=options.group_column or (
        "group" if "group" in dataframe.columns else None))
    # A copy of an image in the training folds would let its model remember the picture.
    dataframe, group_column = workflows._keep_copies_together(dataframe, options, log)
    recipe = dict(options=dataclasses.replace(options, group_column=group_column), model=model,
                  epochs=epochs, patience=patience, target_size=target_size, task=task,
                  loss=loss, vocabulary=vocabulary)
    fold_of_row = _fold_of_each_row(dataframe, folds, options.seed, group_column)
    y_prob = np.full((len(dataframe), len(vocabulary)), np.nan)
    for fold in range(folds):
        held_out = np.flatnonzero(fold_of_row == fold)
        log(f"fold {fold + 1}/{folds}: training on {len(dataframe) - len(held_out)} images, "
            f"scoring the {len(held_out)} held out")
        _train_and_score(dataframe, held_out, recipe, y_prob, log)
        keras.backend.clear_session()  # the next fold's model starts from a clean graph
    scored = ~np.isnan(y_prob).any(axis=1)
    log(f"{int(scored.sum())} images scored out of fold by {folds} models")
    return _ranking(dataframe[scored], y_prob[scored], vocabulary.classes, None, task)


def _fold_options(options, seed, folds):
    """``options`` with ``seed`` (when given), once ``folds`` and ``options`` are checked."""
    if isinstance(folds, bool) or not isinstance(folds, numbers.Integral) or folds < 2:
        raise ValueError(f"folds must be an integer of at least 2, got {folds!r}")
    if options.strategy is not None:
        raise ValueError("find_label_issues trains its folds one after another in this process; "
                         "leave options.strategy unset")
    return options if seed is None else dataclasses.replace(options, seed=seed)


def _fold_of_each_row(dataframe, folds, seed, group_column=None):
    """The fold (0 to ``folds`` - 1) of each row: iterative stratification on the labels, the
    rows of a group together (a row without a group is a group of its own)."""
    from iterstrat.ml_stratifiers import IterativeStratification

    label_lists = to_label_lists(dataframe["labels"])
    indicator = LabelVocabulary.from_labels(label_lists).encode(label_lists).astype(bool)
    codes = np.arange(len(dataframe))
    if group_column is not None:
        if group_column not in dataframe.columns:
            raise ValueError(f"group_column: no column {group_column!r}; columns are "
                             f"{list(dataframe.columns)}")
        codes, _ = pd.factorize(dataframe[group_column])
        alone = codes < 0
        codes[alone] = codes.max(initial=-1) + 1 + np.arange(int(alone.sum()))
    grouped = np.zeros((codes.max(initial=-1) + 1, indicator.shape[1]), dtype=bool)
    np.logical_or.at(grouped, codes, indicator)
    if len(grouped) < folds:
        raise ValueError(f"folds={folds} but only {len(grouped)} images (or groups) to share out")
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(grouped))  # the algorithm walks the rows in order: random ties
    assignment = np.empty(len(grouped), dtype=np.int64)
    assignment[order] = IterativeStratification(labels=grouped[order], r=np.full(folds, 1 / folds),
                                                random_state=rng)
    empty = sorted(set(range(folds)) - set(assignment.tolist()))
    if empty:
        raise ValueError(f"fold(s) {empty} of {folds} would be empty; use fewer folds")
    return assignment[codes]


def _train_and_score(dataframe, held_out, recipe, y_prob, log):
    """Train a fold's model on the rows not in ``held_out``; write the probabilities of the
    held-out images it could read into their rows of ``y_prob``."""
    import keras

    from helpers.pipeline import missing_files
    from helpers.predict import predict_rows
    from helpers.scale.shards import dataset_for

    keras.utils.set_random_seed(recipe["options"].seed)
    train_rows = dataframe.drop(index=dataframe.index[held_out])
    with tempfile.TemporaryDirectory(prefix="label-issues-") as fold_dir:
        network = _train_fold(train_rows, recipe, fold_dir, log)
    rows = dataframe.iloc[held_out]
    dataset = dataset_for(rows, shuffle=False, classes=recipe["vocabulary"],
                          target_size=recipe["target_size"],
                          batch_size=recipe["options"].batch_size)
    _, probabilities, read = predict_rows(network, dataset)
    missing_files(dataset, read)  # each image that failed while decoding, named in a warning
    kept = _positions([str(path) for path in rows["filename"]], dataset.file_paths)
    y_prob[held_out[kept[read]]] = probabilities


def _train_fold(train_df, recipe, fold_dir, log):
    """A model of the ``helpers train`` recipe fitted on ``train_df``, early-stopped on
    ``options.val_size`` of it, with the steps of ``train_from_source``."""
    from helpers.app import workflows
    from helpers.splits import split_dataframe

    options, vocabulary, epochs = recipe["options"], recipe["vocabulary"], recipe["epochs"]
    fit_df, val_df, _ = split_dataframe(train_df, val_size=options.val_size, test_size=0,
                                        seed=options.seed, group_column=options.group_column)
    _, train_options, val_ds = workflows._pipelines(train_df, val_df, vocabulary,
                                                    recipe["target_size"], options)
    train_ds, steps_per_epoch = workflows._training_batches(fit_df, train_options, options, False)
    peak_rate = (workflows.DEFAULT_LEARNING_RATES.get(recipe["model"], 1e-3)
                 if options.learning_rate is None else options.learning_rate)
    network = workflows._build_compiled_model(
        recipe["model"], recipe["target_size"], vocabulary, recipe["task"], loss=recipe["loss"],
        learning_rate=workflows._rate_or_schedule(peak_rate, epochs, steps_per_epoch, options),
        optimizer=options.optimizer, weights=options.weights,
        trainable_layers=options.trainable_layers, y_train=vocabulary.encode(fit_df["labels"]))
    monitor = options.monitor or ("val_f1_micro" if val_ds is not None else "loss")
    workflows._fit_resumable(network, train_ds, val_ds, fold_dir, epochs, monitor=monitor,
                             patience=recipe["patience"], task=recipe["task"], log=log,
                             n_train=len(fit_df), reduce_lr=options.schedule == "plateau")
    return network


def _positions(paths, kept):
    """Where each path of ``kept`` (the paths a dataset kept, in order) is in ``paths``."""
    positions, start = [], 0
    for path in kept:
        start = paths.index(str(path), start)
        positions.append(start)
        start += 1
    return np.asarray(positions, dtype=np.int64)


# ----------------------------------------------------------------------------- model folder
def from_model_dir(model_dir, source=None, layout="auto", batch_size=32, **load_options):
    """Rank the validation and test images of a model folder with that model's probabilities.

    Parameters
    ----------
    model_dir : str or Path
        A folder written by ``helpers train`` (``model.keras``, ``labels.json``, ``splits.csv``).
    source : str or Path, optional
        The dataset (with ``layout`` and ``**load_options``, as ``helpers.data.load_dataset``
        takes them), whose labels are checked; default the labels saved in ``splits.csv``.
    batch_size : int

    Returns
    -------
    dict
        ``issues`` (the ranking, as :func:`find_label_issues` returns it, with the model's
        thresholds), ``scored`` (images per split), ``not_scored`` (``train``: the training
        images, ``reason``: :data:`TRAINING_NOTE`) and ``skipped`` (``{"path", "reason"}`` of
        the inputs left out by the loader or unreadable, each named in a warning).
    """
    from helpers.artefacts import load_artefacts, read_splits
    from helpers.scale.shards import load_any

    loaded = load_artefacts(model_dir)
    saved = read_splits(model_dir)["split"]
    dataframe = None if source is None else load_any(source, layout=layout, **load_options)
    skipped = [] if dataframe is None else list(dataframe.attrs.get("skipped", []))
    parts = [_split_probabilities(model_dir, loaded, split, dataframe, batch_size)
             for split in ("val", "test") if (saved == split).any()]
    parts = [part for part in parts if part is not None]
    if not parts:
        raise ValueError(f"{printable(str(model_dir))}: none of its validation or test images is "
                         "in this dataset; give the SOURCE it was trained on (same path)")
    frame = pd.concat([part[0] for part in parts], ignore_index=True)
    metadata = loaded[1]
    issues = _ranking(frame, np.concatenate([part[1] for part in parts]), metadata["classes"],
                      metadata["thresholds"], metadata["task"])
    return {"issues": issues, "scored": {part[0].attrs["split"]: len(part[0]) for part in parts},
            "not_scored": {"train": int((saved == "train").sum()), "reason": TRAINING_NOTE},
            "skipped": skipped + [item for part in parts for item in part[2]]}


def _split_probabilities(model_dir, loaded, split, dataframe, batch_size):
    """``(frame, y_prob, skipped)`` of the images of one split, from ``dataframe`` or, when it
    is None, from ``splits.csv``; None when ``dataframe`` has none of them."""
    from helpers.artefacts import assign_splits
    from helpers.predict import predict_dataframe, predict_split
    from helpers.scale.shards import dataset_for

    if dataframe is None:
        found = predict_split(model_dir, split, batch_size=batch_size, loaded=loaded)
        frame, y_prob, skipped = found["frame"], found["y_prob"], found["skipped"]
    else:
        rows = dataframe[(assign_splits(dataframe, model_dir) == split).to_numpy()]
        if len(rows) == 0:
            return None
        rows = rows.reset_index(drop=True)
        _, y_prob, read, skipped = predict_dataframe(loaded, rows, batch_size,
                                                     make_dataset=dataset_for)
        frame = rows.iloc[_positions([str(path) for path in rows["filename"]], read)]
    frame = frame[["filename", "labels"]].reset_index(drop=True)
    frame.attrs = {"split": split}
    return frame, np.asarray(y_prob, dtype=float), skipped


# ----------------------------------------------------------------------------- ranking
def _ranking(frame, y_prob, classes, thresholds, task):
    """The images of ``frame`` (``filename``, ``labels``), most suspicious first, scored by
    cleanlab from ``y_prob``; ``suggested`` by ``thresholds`` (default 0.5; the argmax for
    multi-class)."""
    from cleanlab import filter as multi_class_filter, rank as multi_class_rank
    from cleanlab.multilabel_classification import filter as multi_label_filter
    from cleanlab.multilabel_classification import rank as multi_label_rank

    from helpers.evaluation import DEFAULT_THRESHOLD, apply_thresholds

    index = {name: position for position, name in enumerate(classes)}
    given = to_label_lists(frame["labels"])
    encoded = [[index[label] for label in labels] for labels in given]
    if len(encoded) == 0:
        return []
    n_given = sum(map(len, encoded))
    if task == "multi_label" and (len(classes) < 2 or n_given in (0, len(encoded) * len(classes))):
        raise ValueError(f"cannot rank {len(encoded)} images: cleanlab's multi-label ranking needs "
                         f"two classes or more (got {len(classes)}) and, among the images, some "
                         f"labels given and some not (got {n_given} of {len(encoded) * len(classes)})")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if task == "multi_label":
            flagged = multi_label_filter.find_label_issues(encoded, y_prob)
            # Each class's probabilities measured against its own typical confidence: a rare
            # class the model is unsure of does not fill the top with correctly labelled images.
            scores = multi_label_rank.get_label_quality_scores(encoded, y_prob,
                                                               adjust_pred_probs=True)
        else:
            single = np.asarray([labels[0] for labels in encoded])
            flagged = multi_class_filter.find_label_issues(single, y_prob)
            scores = multi_class_rank.get_label_quality_scores(single, y_prob)
    for message in sorted({str(item.message) for item in caught}):
        warn(f"cleanlab: {message}")
    suggested = apply_thresholds(y_prob, DEFAULT_THRESHOLD if thresholds is None else thresholds,
                                 task)
    paths = frame["filename"].astype(str).tolist()
    return [{"path": paths[row], "given": given[row],
             "suggested": [classes[column] for column in np.flatnonzero(suggested[row])],
             "score": float(scores[row]), "issue": bool(flagged[row])}
            for row in np.argsort(scores, kind="stable")]


# ----------------------------------------------------------------------------- command line
def add_label_issues_options(parser):
    """The options of ``helpers label-issues``: a dataset, the recipe, the folds or a model."""
    from helpers.app.cli import _add_dataset_options, _add_recipe_options

    _add_dataset_options(parser)
    _add_recipe_options(parser)
    parser.add_argument("--folds", type=int, default=5,
                        help="K: K models, each scoring the fold it never saw (default 5)")
    parser.add_argument("--group-column", default=None,
                        help="keep each group in one fold (default: the 'group' column, if any)")
    parser.add_argument("--model-dir", default=None,
                        help="score the validation and test images with this model instead "
                             "(its training images cannot be scored that way)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--top", type=int, default=20, help="table: rows shown (default 20)")


def command_label_issues(args):
    """``helpers label-issues``: print the ranking as a table or a JSON list."""
    from helpers.app.cli import _dataset_options, _print_json
    from helpers.app.workflows import TrainOptions

    load_options = _dataset_options(args)
    layout = load_options.pop("layout")
    quiet = args.format == "json"
    note = None
    if args.model_dir:
        result = from_model_dir(args.model_dir, args.source, layout, args.batch_size,
                                **load_options)
        issues = result["issues"]
        note = (f"note: {', '.join(f'{n} {name}' for name, n in result['scored'].items())} "
                f"images scored; the {result['not_scored']['train']} training images are not: "
                f"{TRAINING_NOTE}")
    else:
        options = TrainOptions(batch_size=args.batch_size, seed=args.seed, loss=args.loss,
                               task=args.task, group_column=args.group_column,
                               learning_rate=args.learning_rate, schedule=args.schedule,
                               augment=not args.no_augment)
        issues = find_label_issues(
            args.source, layout, folds=args.folds, epochs=args.epochs,
            image_size=args.image_size, options=options, model=args.model,
            patience=args.patience, log=_stderr if quiet else print, **load_options)
    if quiet:
        _print_json(issues)
    else:
        _print_table(issues, args.top)
    if note:
        print(note, file=sys.stderr if quiet else sys.stdout)
    return 0


def _stderr(line):
    print(line, file=sys.stderr)


def _print_table(issues, top):
    """The ``top`` most suspicious images, one line each, and how many cleanlab flags."""
    print(f"{'rank':>4} {'score':>6}  path: given -> suggested (* flagged by cleanlab)")
    for rank, item in enumerate(issues[:max(top, 0)], start=1):
        print(f"{rank:>4} {item['score']:6.3f}{'*' if item['issue'] else ' '} "
              f"{printable(item['path'])}: {', '.join(item['given']) or '(none)'} -> "
              f"{', '.join(item['suggested']) or '(none)'}")
    flagged = sum(item["issue"] for item in issues)
    print(f"{flagged} of {len(issues)} images flagged; most suspicious first "
          f"({min(max(top, 0), len(issues))} shown, --top for more)")
