"""Whole jobs, from a dataset on disk to a model folder and back: what the CLI runs.

- :func:`train_from_source`: load any layout, drop unreadable images, split, stream, train
  with callbacks, save the model folder; rerun after an interruption and it resumes;
- :func:`evaluate_model_dir`: evaluate a model folder on a dataset or one of its saved
  splits, optionally tuning per-class thresholds on the validation split.

Each step is a function of its own here, so a notebook can run the steps one by one.
"""
import contextlib
import math
import numbers
from pathlib import Path

import keras
import numpy as np

from helpers import artefacts, evaluation, warn
from helpers.scale import distribute
from helpers import models as model_builders
from helpers.files.fileio import printable
from helpers.augment import DEFAULT_AUGMENT
from helpers.labels import TASKS, LabelVocabulary, infer_task
from helpers.pipeline import (
    check_files,
    missing_files,
    quiet_upstream_warnings,
)
from helpers.predict import predict_dataframe, predict_rows
from helpers.scale.shards import check_shards, dataset_for, is_shard_frame, load_any, worker_shares
from helpers.splits import split_dataframe
from helpers.training import (
    EpochLogger,
    compile_model,
    cosine_schedule,
    make_callbacks,
    restore_best,
)

# The decoded images of a dataset are kept in memory below this size (float32 pixels).
MEMORY_CACHE_BYTES = 1_500_000_000
SPLITS = ("all", "train", "val", "test")
SCHEDULES = ("cosine", "plateau")
# Peak learning rate of the default recipe (warm-up, then cosine decay); the transfer models
# keep Adam's usual 1e-3, gentler on pretrained weights.
DEFAULT_LEARNING_RATES = {"smallvggnet": 3e-3, "smallvggnet_gmp": 3e-3}


# ----------------------------------------------------------------------------- training
def train_from_source(
    source, out_dir, layout="auto", model="smallvggnet_gmp", epochs=15, image_size=64,
    batch_size=32, seed=42, loss=None, task="multi_label", augment=True, val_size=0.15,
    test_size=0.15, group_column=None, learning_rate=None, optimizer="adam", patience=5,
    weights=None, trainable_layers=0, monitor=None, log=print, schedule="cosine",
    warmup_epochs=1, strategy=None, **load_options,
):
    """Train a model on a dataset in any supported layout and save its artefact folder.

    Load → drop unreadable images → vocabulary → split (saved as ``splits.csv``) →
    tf.data pipelines (augmentation on training only) → fit with callbacks → artefacts.
    Rerun the same command after an interruption and it resumes from the last finished
    epoch (``backup/`` in ``out_dir``).

    The default recipe (chosen with ``benchmarks/recipes.py``): SmallVGGNet with a global
    max-pooling head, Adam with one epoch of warm-up to 3e-3 and a cosine decay to 0 at
    epoch ``epochs``, batch 32, ``DEFAULT_AUGMENT``, early stopping after ``patience``
    epochs without a better ``val_f1_micro``.

    Parameters
    ----------
    source : str or Path
        Dataset folder, VOC root, CSV file or shard folder (``helpers.scale.shards``).
    out_dir : str or Path
        Artefact folder.
    layout : str
        One of ``helpers.data.LAYOUTS``, or ``"shards"``.
    model : str
        ``"smallvggnet_gmp"`` (SmallVGGNet with a global max-pooling head), ``"smallvggnet"``
        (the tutorial's), ``"resnet50"``, ``"mlp"`` or ``"vgg16"``.
    epochs : int
        Number of epochs: the length of the cosine schedule, and the most that are run
        (EarlyStopping may stop sooner).
    image_size : int or (height, width)
        Input size.
    batch_size : int
    seed : int
        Seeds the split, the shuffling and Keras.
    loss : None or str
        ``None``/``"bce"``, ``"weighted-bce"``, ``"focal"`` (multi-label); ``"cce"`` (multi-class).
    task : str
        ``"multi_label"`` (sigmoid + BCE), ``"multi_class"`` (softmax + CCE) or ``"auto"``
        (multi-class when every image has exactly one label).
    augment : bool or dict
        True: ``helpers.augment.DEFAULT_AUGMENT`` (rotation, shift, shear, zoom, flip); a
        dict of ImageDataGenerator-style arguments; False/None: none.
    val_size, test_size : float
        Split fractions.
    group_column : str, optional
        Keep each group (e.g. ``"Patient ID"``) in one split.
    learning_rate : float, optional
        Peak (cosine) or starting (plateau) rate; default ``DEFAULT_LEARNING_RATES`` of the
        model, else 1e-3.
    optimizer : see ``helpers.training.compile_model``.
    patience : int
        EarlyStopping patience.
    schedule : {"cosine", "plateau"}
        ``"cosine"``: warm up to ``learning_rate`` for ``warmup_epochs``, then a cosine decay
        to 0 at epoch ``epochs`` (``helpers.training.cosine_schedule``); ``"plateau"``:
        start at ``learning_rate`` and halve it whenever the monitored value stalls for
        ``patience // 2`` epochs (ReduceLROnPlateau).
    warmup_epochs : float
        Warm-up of the cosine schedule.
    weights, trainable_layers : for ``"resnet50"`` / ``"vgg16"`` (see ``helpers.models``).
    monitor : str, optional
        Value the callbacks watch; default ``val_f1_micro`` (``loss`` without validation).
    log : callable
        Receives progress lines.
    strategy : tf.distribute.Strategy, optional
        ``helpers.scale.distribute.mirrored_strategy(N)``: N local devices, ``fit`` as usual;
        ``helpers.scale.distribute.multi_worker_strategy()`` (in each worker process, from
        ``TF_CONFIG``): the custom loop of ``helpers.scale.distribute.fit_multi_worker``, each worker
        reading its own shard files (or every N-th file), the chief (worker 0) alone writing
        ``out_dir``. ``batch_size`` stays the global batch, split between the replicas
        (it must be a multiple of their number), and ``learning_rate`` is used as given: the
        same training as in one process (see ``helpers.scale.distribute`` for larger batches).
    **load_options
        Passed to ``helpers.data.load_dataset`` (``image_column``, ``separator``...).

    Returns
    -------
    dict with ``model``, ``metadata``, ``history`` (DataFrame), ``metrics``, ``out_dir``,
    ``counts`` (found, used, skipped), ``images_per_second``.
    """
    _check_choices(task, model, epochs, schedule)
    target_size = _target_size(image_size)
    replicas, chief, multi_worker = _distribution(strategy)
    if batch_size % replicas:
        raise ValueError(f"batch_size {batch_size} is the global batch, split between the {replicas} "
                         f"replicas: give a multiple of {replicas}")
    out_dir = Path(out_dir)
    if chief:
        out_dir.mkdir(parents=True, exist_ok=True)
    log = log or (lambda line: None)

    dataframe, counts, skipped = load_usable(source, layout, target_size, log, **load_options)
    task = choose_task(dataframe, task, log)
    if task == "multi_class" and loss in ("bce", "binary-crossentropy"):
        loss = None  # the CLI's default; categorical cross-entropy is the multi-class match
    vocabulary = LabelVocabulary.from_labels(dataframe["labels"])
    if len(vocabulary) == 0:
        raise ValueError(f"{source}: no image has a label")

    settings = {
        "source": str(source), "layout": layout, "model": model,
        "image_size": list(target_size), "task": task, "seed": seed,
        "loss": loss if isinstance(loss, (str, type(None))) else "custom",
        "classes": vocabulary.classes, "weights": None if weights is None else str(weights),
        "trainable_layers": trainable_layers,
        # A run resumes with the same checkpoint format and global batch only.
        "distribution": None if strategy is None else f"{replicas} {'workers' if multi_worker else 'devices'}",
    }
    # In a multi-worker run only the chief writes; the others split the same way (same seed).
    done_epochs = artefacts.start_or_resume(out_dir, settings) if chief else 0
    train_df, val_df, test_df = saved_or_new_splits(
        dataframe, out_dir, done_epochs, val_size, test_size, seed, group_column, write=chief)
    log(f"split: {len(train_df)} train, {len(val_df)} val, {len(test_df)} test "
        f"({len(vocabulary)} classes: {', '.join(vocabulary.classes)})")

    keras.utils.set_random_seed(seed)
    cache = len(dataframe) * target_size[0] * target_size[1] * 3 * 4 < MEMORY_CACHE_BYTES
    common = dict(classes=vocabulary, target_size=target_size, batch_size=batch_size)
    train_options = dict(shuffle=True, seed=seed, cache=cache, classes=vocabulary,
                         target_size=target_size,
                         augment=(DEFAULT_AUGMENT if augment is True else augment) or None)
    val_ds = (dataset_for(val_df, shuffle=False, cache=cache, **common)
              if len(val_df) else None)

    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATES.get(model, 1e-3)
    peak_rate = learning_rate
    if multi_worker:
        steps_per_epoch = _worker_steps(strategy, train_df, batch_size)
    else:
        train_ds = dataset_for(train_df, batch_size=batch_size, **train_options)
        steps_per_epoch = len(train_ds)
    if schedule == "cosine":
        learning_rate = cosine_schedule(peak_rate, epochs, steps_per_epoch, warmup_epochs)
    build = dict(name=model, target_size=target_size, vocabulary=vocabulary, task=task, loss=loss,
                 learning_rate=learning_rate, optimizer=optimizer, weights=weights,
                 trainable_layers=trainable_layers, y_train=vocabulary.encode(train_df["labels"]))
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        network = build_compiled_model(**build)
    monitor = monitor or ("val_f1_micro" if val_ds is not None else "loss")
    if strategy is not None:
        where = (f"this is worker {distribute.worker_place(strategy)[1]}{' (chief)' if chief else ''}"
                 if multi_worker else ", ".join(strategy.extended.worker_devices))
        kind = ("worker" if multi_worker else "device") + ("s" if replicas > 1 else "")
        log(f"{replicas} {kind} ({where}): global batch "
            f"{batch_size} ({batch_size // replicas} per replica), learning rate {peak_rate:g}"
            + (" (peak of the cosine schedule)" if schedule == "cosine" else ""))
    if multi_worker:
        network, history, images_per_second = _fit_on_workers(
            strategy, network, train_df, train_options, val_ds, out_dir, epochs, batch_size,
            steps_per_epoch, monitor, patience, task, loss, build, log)
        if not chief:  # wait for the chief to save: a worker gone early looks like a crash
            distribute.barrier(strategy)
            return {"model": network, "metadata": None, "history": None, "metrics": None,
                    "out_dir": out_dir, "counts": counts, "images_per_second": images_per_second}
    else:
        history, images_per_second = fit_resumable(
            network, train_ds, val_ds, out_dir, epochs=epochs, done_epochs=done_epochs,
            monitor=monitor, patience=patience, task=task, log=log, n_train=len(train_df),
            reduce_lr=schedule == "plateau")

    metrics = final_metrics(network, history, monitor, {"val": val_df, "test": test_df},
                            common, task)
    metrics.update(counts=counts, skipped=skipped, images_per_second=images_per_second)
    metadata = artefacts.save_artefacts(
        out_dir, network, vocabulary.classes, task, target_size, metrics=metrics,
        extra={"weights": getattr(network, "weights_source", None),
               "image_count": {"train": len(train_df), "val": len(val_df), "test": len(test_df)}},
    )
    artefacts.finish_run(out_dir)
    if multi_worker:
        distribute.barrier(strategy)
    summary = " - ".join(f"{key} {value:.4f}" for key, value in metrics.get("test", {}).items()
                         if key.startswith("f1_"))
    log(f"saved {out_dir}/{{{artefacts.MODEL_FILE}, {artefacts.LABELS_FILE}, "
        f"{artefacts.HISTORY_FILE}, {artefacts.METRICS_FILE}, {artefacts.SPLITS_FILE}}}"
        + (f"; test {summary}" if summary else ""))
    return {"model": network, "metadata": metadata, "history": history, "metrics": metrics,
            "out_dir": out_dir, "counts": counts, "images_per_second": images_per_second}


def _distribution(strategy):
    """``(replicas, chief, multi_worker)`` of a ``tf.distribute`` strategy (or of none)."""
    if strategy is None:
        return 1, True, False
    return (int(strategy.num_replicas_in_sync), distribute.is_chief(strategy),
            distribute.is_multi_worker(strategy))


def _worker_steps(strategy, train_df, batch_size):
    """Training steps per epoch in a multi-worker run: those of the worker with the fewest images."""
    num_workers, _ = distribute.worker_place(strategy)
    if is_shard_frame(train_df):
        shares = [share["n_images"] for share in worker_shares(train_df, num_workers)]
    else:  # loose files: worker i reads the rows i, i + N, ...
        shares = [len(train_df.iloc[index::num_workers]) for index in range(num_workers)]
    if min(shares) == 0:
        raise ValueError(f"{num_workers} workers but only {len(train_df)} training images")
    return min(math.ceil(share / (batch_size // strategy.num_replicas_in_sync)) for share in shares)


def _fit_on_workers(strategy, network, train_df, train_options, val_ds, out_dir, epochs,
                    batch_size, steps, monitor, patience, task, loss, build, log):
    """Train with ``helpers.scale.distribute.fit_multi_worker``; on the chief, a plain copy of the
    best model (outside the strategy, so that ``predict`` and ``save`` work as usual)."""

    def train_dataset(n_workers, worker_index, per_replica_batch):
        if is_shard_frame(train_df):
            return dataset_for(train_df, batch_size=per_replica_batch, num_workers=n_workers,
                               worker_index=worker_index, **train_options)
        rows = train_df.iloc[worker_index::n_workers].reset_index(drop=True)
        return dataset_for(rows, batch_size=per_replica_batch, **train_options)

    with quiet_upstream_warnings():
        history, images_per_second = distribute.fit_multi_worker(
            strategy, network, train_dataset, steps, val_ds, out_dir, epochs, monitor=monitor,
            patience=patience, task=task, loss=loss, y_train=build["y_train"],
            batch_size=batch_size, log=log)
        if not distribute.is_chief(strategy):
            return network, history, images_per_second
        plain = build_compiled_model(**build)
        plain.optimizer.build(plain.trainable_variables)  # the checkpoint then loads quietly
        plain.set_weights(network.get_weights())
        restore_best(plain, out_dir)
    return plain, history, images_per_second


def _check_choices(task, model, epochs, schedule="plateau"):
    if task not in TASKS + ("auto",):
        raise ValueError(f"task must be one of {TASKS + ('auto',)}, got {task!r}")
    if model not in model_builders.BUILDERS:
        raise ValueError(f"model must be one of {sorted(model_builders.BUILDERS)}, got {model!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def _target_size(image_size):
    target_size = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    return tuple(int(value) for value in target_size)


def load_usable(source, layout="auto", target_size=(64, 64), log=print, **load_options):
    """Load a dataset and drop the images that cannot be decoded; log what was skipped.

    Parameters
    ----------
    source, layout, **load_options
        See ``helpers.data.load_dataset``.
    target_size : (height, width)
        The size the images will be decoded at.
    log : callable

    Returns
    -------
    (dataframe, counts, skipped): the usable rows, ``{"found", "used", "skipped",
    "skipped_by_loader", "unreadable"}``, and ``{"path", "reason"}`` of every input left out.
    """
    dataframe = load_any(source, layout=layout, **load_options)
    loader_skipped = list(dataframe.attrs.get("skipped", []))
    n_listed = len(dataframe)
    if is_shard_frame(dataframe):  # images were checked when packed; refuse damaged shards
        check_shards(dataframe["shard_file"], verify="sha256")
        unreadable = []
    else:
        roads, unreadable = check_files(dataframe["filename"].astype(str).tolist(), target_size,
                                        full_decode=True)
        for item in unreadable:
            warn(f"skipped {printable(item['path'])}: {item['reason']}")
        dataframe = dataframe[roads >= 0].reset_index(drop=True)
    skipped = loader_skipped + unreadable
    counts = {
        "found": n_listed + len(loader_skipped), "used": len(dataframe),
        "skipped": len(skipped), "skipped_by_loader": len(loader_skipped),
        "unreadable": len(unreadable),
    }
    # Each skipped file was reported once, as a warning, by the loader or above.
    log(f"{counts['found']} inputs found: {counts['used']} images used, {counts['skipped']} "
        f"skipped ({len(loader_skipped)} by the loader, {len(unreadable)} unreadable)")
    if len(dataframe) == 0:
        raise ValueError(f"{source}: no readable image found")
    return dataframe, counts, skipped


def choose_task(dataframe, task, log=print):
    """Resolve ``task="auto"``, hint at multi-class data, refuse impossible multi-class.

    Parameters
    ----------
    dataframe : pandas.DataFrame
        With a ``labels`` column.
    task : {"multi_label", "multi_class", "auto"}
    log : callable

    Returns
    -------
    str: ``"multi_label"`` or ``"multi_class"``.
    """
    if task == "auto":
        task = infer_task(dataframe["labels"])
        log(f"task: {task} (inferred from the labels)")
    elif task == "multi_label" and infer_task(dataframe["labels"]) == "multi_class":
        log("note: every image has exactly one label; task='multi_class' (softmax + CCE) "
            "may suit this data better")
    if task == "multi_class":
        wrong = sum(1 for labels in dataframe["labels"] if len(labels) != 1)
        if wrong:
            raise ValueError(
                f"task='multi_class' needs exactly one label per image; {wrong} of "
                f"{len(dataframe)} images have none or several (use task='multi_label')"
            )
    return task


def saved_or_new_splits(dataframe, out_dir, done_epochs, val_size, test_size, seed,
                        group_column=None, write=True):
    """The splits of an interrupted run (its ``splits.csv``), or new ones, saved there
    (unless ``write=False``).

    Returns
    -------
    (train_df, val_df, test_df)
    """
    splits = artefacts.splits_from_file(dataframe, out_dir) if done_epochs else None
    if splits is None:
        splits = split_dataframe(dataframe, val_size=val_size, test_size=test_size, seed=seed,
                                 group_column=group_column)
        if write:
            artefacts.write_splits(out_dir, dict(zip(("train", "val", "test"), splits)))
    if len(splits[0]) == 0:
        raise ValueError("the training split is empty; use more images or smaller val/test sizes")
    return splits


def build_compiled_model(name, target_size, vocabulary, task, loss=None, learning_rate=1e-3,
                         optimizer="adam", weights=None, trainable_layers=0, y_train=None):
    """Build a model of ``helpers.models.BUILDERS`` for the task and compile it.

    Returns
    -------
    keras.Model
    """
    options = {}
    if name in ("resnet50", "vgg16"):
        options["weights"] = weights
    if name == "resnet50":
        options["trainable_layers"] = trainable_layers
    network = model_builders.build_model(
        name, tuple(target_size) + (3,), len(vocabulary),
        final_activation="sigmoid" if task == "multi_label" else "softmax", **options,
    )
    return compile_model(network, task=task, loss=loss, learning_rate=learning_rate,
                         optimizer=optimizer, y_train=y_train)


def fit_resumable(network, train_ds, val_ds, out_dir, epochs, done_epochs=0,
                  monitor="val_f1_micro", patience=10, task="multi_label", log=print,
                  n_train=None, reduce_lr=True):
    """``fit`` with the callbacks of ``make_callbacks``, resuming after ``done_epochs``.

    The best checkpoint is loaded into ``network`` afterwards. ``reduce_lr=False`` for an
    optimizer that follows a learning-rate schedule.

    Returns
    -------
    (history, images_per_second): ``history.csv`` as a DataFrame, the last epoch's
    training throughput.
    """
    mode = "min" if monitor.endswith("loss") else "max"
    initial_best = None
    if done_epochs:
        history = artefacts.trim_history(out_dir, done_epochs)
        if monitor in history and history[monitor].notna().any():
            column = history[monitor]
            initial_best = float(column.max() if mode == "max" else column.min())
        log(f"Resuming from epoch {done_epochs + 1}/{epochs}: epochs 1-{done_epochs} were "
            f"finished before the interruption ({Path(out_dir) / artefacts.BACKUP_DIR})")
    callbacks = make_callbacks(
        out_dir, monitor=monitor, mode=mode, patience=patience, validation_data=val_ds,
        task=task, log=log, n_images=n_train, initial_best=initial_best, reduce_lr=reduce_lr,
    )
    logger = next(callback for callback in callbacks if isinstance(callback, EpochLogger))
    trainable = sum(int(np.prod(weight.shape)) for weight in network.trainable_weights)
    log(f"training {network.name} ({network.count_params():,} parameters, {trainable:,} "
        f"trainable) for up to {epochs} epochs, monitoring {monitor}")
    with quiet_upstream_warnings():
        network.fit(train_ds, validation_data=val_ds, epochs=int(epochs), callbacks=callbacks,
                    verbose=0, shuffle=False)
    network._initial_epoch = None  # set by BackupAndRestore; must not leak into a later fit
    restore_best(network, out_dir)
    return artefacts.read_history(out_dir), logger.last_images_per_second


def final_metrics(network, history, monitor, frames, dataset_options, task):
    """The best epoch of ``monitor`` and the metrics on each non-empty frame of ``frames``.

    Returns
    -------
    dict: ``monitor``, ``epochs_run``, ``best_epoch``, ``best_<monitor>``, and per frame
    name its threshold metrics, ``n_images`` (predicted) and ``skipped`` (``{"path",
    "reason"}`` of its images that could not be decoded, each warned about once).
    """
    mode = "min" if monitor.endswith("loss") else "max"
    metrics = {"monitor": monitor, "epochs_run": int(len(history))}
    if monitor in history and history[monitor].notna().any():
        best = history[monitor].idxmax() if mode == "max" else history[monitor].idxmin()
        metrics["best_epoch"] = int(best) + 1
        metrics["best_" + monitor] = float(history.loc[best, monitor])
    for name, frame in frames.items():
        if len(frame):
            dataset = dataset_for(frame, shuffle=False, **dataset_options)
            y_true, y_prob, rows = predict_rows(network, dataset)
            skipped = list(dataset.skipped) + missing_files(dataset, rows)
            values = evaluation.threshold_metrics(y_true, y_prob, task) if len(rows) else {}
            metrics[name] = dict(values, n_images=int(len(rows)), skipped=skipped)
    return metrics


# ----------------------------------------------------------------------------- evaluation
def rows_of_split(dataframe, model_dir, split):
    """The rows of ``dataframe`` that the model folder's ``splits.csv`` puts in ``split``."""
    chosen = dataframe[(artefacts.assign_splits(dataframe, model_dir) == split).to_numpy()]
    chosen = chosen.reset_index(drop=True)
    if len(chosen) == 0:
        raise ValueError(
            f"{Path(model_dir) / artefacts.SPLITS_FILE}: none of its {split!r} images is in "
            "this dataset; evaluate a split with the same SOURCE (same path) as at training "
            "time, or use split='all'"
        )
    return chosen


def evaluate_model_dir(model_dir, dataframe, split="all", tune_thresholds=False, batch_size=32,
                       min_precision=None):
    """Evaluate a model folder on a dataset; optionally tune and save per-class thresholds.

    Parameters
    ----------
    model_dir : str or Path
    dataframe : pandas.DataFrame
        From ``helpers.data.load_dataset``.
    split : str
        ``"all"``, or ``"train"`` / ``"val"`` / ``"test"`` as saved in ``splits.csv``.
    tune_thresholds : bool
        Tune each class's threshold on the validation split with
        ``helpers.evaluation.choose_thresholds`` (the best F1, kept only where it helps
        beyond noise without turning the class into "always yes"), save the result in
        ``labels.json`` and evaluate with it (multi-label only).
    batch_size : int
    min_precision : float, optional
        With ``tune_thresholds``: only thresholds whose validation precision reaches it.

    Returns
    -------
    dict: ``helpers.evaluation.evaluation_report`` plus ``n_images`` (evaluated), ``split``,
    ``skipped`` (``{"path", "reason"}`` of the split's images that could not be used, each
    warned about once), ``counts`` (``found`` = ``used`` + ``skipped``) and ``task``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    model, metadata = artefacts.load_artefacts(model_dir)
    if is_shard_frame(dataframe):
        check_shards(dataframe["shard_file"], verify="sha256")
    classes, task = metadata["classes"], metadata["task"]
    thresholds = np.asarray(metadata["thresholds"], dtype=float)
    if tune_thresholds:
        if task != "multi_label":
            raise ValueError("tune_thresholds only applies to multi_label models")
        val_rows = rows_of_split(dataframe, model_dir, "val")
        y_val, p_val, _, _ = predict_dataframe((model, metadata), val_rows, batch_size,
                                            make_dataset=dataset_for)
        thresholds, table = evaluation.choose_thresholds(y_val, p_val, classes=classes,
                                                         min_precision=min_precision)
        metadata = artefacts.update_thresholds(model_dir, thresholds)

    rows = dataframe if split == "all" else rows_of_split(dataframe, model_dir, split)
    y_true, y_prob, _, skipped = predict_dataframe((model, metadata), rows, batch_size,
                                              make_dataset=dataset_for)
    report = evaluation.evaluation_report(y_true, y_prob, classes, thresholds, task)
    counts = {"found": int(len(rows)), "used": int(len(y_true)), "skipped": len(skipped)}
    report.update({"n_images": int(len(y_true)), "split": split, "skipped": skipped,
                   "counts": counts, "task": task})
    if tune_thresholds:
        report["threshold_choice"] = {
            "per_class": {label: {key: row[key] for key in ("prevalence", "tuned", "share_tuned",
                                                            "gain", "noise", "threshold", "kept",
                                                            "reason")}
                          for label, row in table.iterrows()},
            "validation": dict(table.attrs),
        }
    return report
