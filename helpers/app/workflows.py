"""Whole jobs, from a dataset on disk to a model folder and back: what the CLI runs.

- :func:`train_from_source`: load any layout, drop unreadable images, split, stream, train
  with callbacks, save the model folder; rerun after an interruption and it resumes;
- :func:`evaluate_model_dir`: evaluate a model folder on a dataset or one of its saved
  splits, optionally tuning per-class thresholds on the validation split.

Each step of a job is a function of its own, in the order the job runs them; the options of
training beyond the model, input size, epochs and patience are one :class:`TrainOptions`.
"""
import contextlib
import dataclasses
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
from helpers.files.decode import check_files
from helpers.pipeline import missing_files, quiet_upstream_warnings
from helpers.predict import predict_dataframe, predict_rows
from helpers.scale.shards import check_shards, dataset_for, is_shard_frame, load_any, worker_shares
from helpers.scan import find_copies
from helpers.splits import split_dataframe, with_copies
from helpers.training import (
    EpochLogger,
    compile_model,
    cosine_schedule,
    make_callbacks,
    restore_best,
)

# The decoded images of a dataset are kept in memory below this size (float32 pixels).
_MEMORY_CACHE_BYTES = 1_500_000_000
_SPLITS = ("all", "train", "val", "test")
_SCHEDULES = ("cosine", "plateau")
# Peak learning rate of the default recipe (warm-up, then cosine decay); the transfer models
# keep Adam's usual 1e-3, gentler on pretrained weights.
DEFAULT_LEARNING_RATES = {"smallvggnet": 3e-3, "smallvggnet_gmp": 3e-3}


# ----------------------------------------------------------------------------- training
@dataclasses.dataclass
class TrainOptions:
    """How :func:`train_from_source` trains, beyond the model, input size, epochs and patience.

    The defaults are the recipe of ``helpers train`` (see :func:`train_from_source`).

    Parameters
    ----------
    batch_size : int
        The global batch: with a ``strategy``, split between the replicas (it must be a
        multiple of their number).
    seed : int
        Seeds the split, the shuffling and Keras.
    task : {"multi_label", "multi_class", "auto"}
        ``"multi_label"`` (sigmoid + BCE), ``"multi_class"`` (softmax + CCE) or ``"auto"``
        (multi-class when every image has exactly one label).
    loss : None or str
        ``None``/``"bce"``, ``"weighted-bce"``, ``"focal"`` (multi-label); ``"cce"`` (multi-class).
    augment : bool or dict
        True: ``helpers.augment.DEFAULT_AUGMENT`` (rotation, shift, shear, zoom, flip); a
        dict of ImageDataGenerator-style arguments; False/None: none.
    learning_rate : float, optional
        Peak (cosine) or starting (plateau) rate; default ``DEFAULT_LEARNING_RATES`` of the
        model, else 1e-3. Used as given under a ``strategy`` (see ``helpers.scale.distribute``
        for larger batches).
    optimizer : see ``helpers.training.compile_model``.
    schedule : {"cosine", "plateau"}
        ``"cosine"``: warm up to ``learning_rate`` for ``warmup_epochs``, then a cosine decay
        to 0 at epoch ``epochs`` (``helpers.training.cosine_schedule``); ``"plateau"``:
        start at ``learning_rate`` and halve it whenever the monitored value stalls for
        ``patience // 2`` epochs (ReduceLROnPlateau).
    warmup_epochs : float
        Warm-up of the cosine schedule.
    val_size, test_size : float
        Split fractions.
    group_column : str, optional
        Keep each group (e.g. ``"Patient ID"``) in one split.
    allow_copies_across_splits : bool
        False: find the copies of a picture (``helpers.scan.find_copies``) and keep each group
        of them in one split, so that the test score is not measured on pictures seen in
        training; True: split without looking (the copies may leak into evaluation).
    weights, trainable_layers : for ``"resnet50"`` / ``"vgg16"`` (see ``helpers.models``).
    monitor : str, optional
        Value the callbacks watch; default ``val_f1_micro`` (``loss`` without validation).
    strategy : tf.distribute.Strategy, optional
        ``helpers.scale.distribute.mirrored_strategy(N)``: N local devices, ``fit`` as usual;
        ``helpers.scale.distribute.multi_worker_strategy()`` (in each worker process, from
        ``TF_CONFIG``): the custom loop of ``helpers.scale.distribute.fit_multi_worker``, each
        worker reading its own shard files (or every N-th file), the chief (worker 0) alone
        writing ``out_dir``: the same training as in one process.
    """

    batch_size: int = 32
    seed: int = 42
    task: str = "multi_label"
    loss: object = None
    augment: object = True
    learning_rate: float | None = None
    optimizer: object = "adam"
    schedule: str = "cosine"
    warmup_epochs: float = 1
    val_size: float = 0.15
    test_size: float = 0.15
    group_column: str | None = None
    allow_copies_across_splits: bool = False
    weights: object = None
    trainable_layers: int = 0
    monitor: str | None = None
    strategy: object = None


def train_from_source(source, out_dir, layout="auto", model="smallvggnet_gmp", epochs=15,
                      image_size=64, patience=5, options=None, log=print, **load_options):
    """Train a model on a dataset in any supported layout and save its artefact folder.

    Load → drop unreadable images → vocabulary → split, each group of copies of a picture in
    one split (saved as ``splits.csv``) → tf.data pipelines (augmentation on training only) → fit with callbacks → artefacts.
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
    patience : int
        EarlyStopping patience.
    options : TrainOptions, optional
        Batch, seed, task, loss, augmentation, learning rate and schedule, split sizes,
        transfer weights and ``tf.distribute`` strategy; default ``TrainOptions()``.
    log : callable or None
        Receives progress lines.
    **load_options
        Passed to ``helpers.data.load_dataset`` (``image_column``, ``separator``...).

    Returns
    -------
    dict with ``model``, ``metadata``, ``history`` (DataFrame), ``metrics``, ``out_dir``,
    ``counts`` (found, used, skipped), ``images_per_second``.
    """
    options = options or TrainOptions()
    _check_choices(options, model, epochs, load_options)
    target_size = _target_size(image_size)
    strategy, batch_size = options.strategy, options.batch_size
    _, chief, multi_worker = _distribution(strategy, batch_size)
    out_dir = Path(out_dir)
    if chief:
        out_dir.mkdir(parents=True, exist_ok=True)
    log = log or (lambda line: None)

    dataframe, counts, skipped = _load_usable(source, layout, target_size, log, **load_options)
    task, loss, vocabulary = _task_and_classes(source, dataframe, options, log)
    settings = _run_settings(source, layout, model, target_size, task, loss, vocabulary, options)
    # In a multi-worker run only the chief writes; the others split the same way (same seed).
    done_epochs = artefacts.start_or_resume(out_dir, settings) if chief else 0
    train_df, val_df, test_df = _saved_or_new_splits(dataframe, out_dir, done_epochs, options, chief, log)
    log(f"split: {len(train_df)} train, {len(val_df)} val, {len(test_df)} test "
        f"({len(vocabulary)} classes: {', '.join(vocabulary.classes)})")

    keras.utils.set_random_seed(options.seed)
    common, train_options, val_ds = _pipelines(dataframe, val_df, vocabulary, target_size, options)
    train_ds, steps_per_epoch = _training_batches(train_df, train_options, options, multi_worker)
    peak_rate = (DEFAULT_LEARNING_RATES.get(model, 1e-3) if options.learning_rate is None
                 else options.learning_rate)
    build = dict(name=model, target_size=target_size, vocabulary=vocabulary, task=task, loss=loss,
                 learning_rate=_rate_or_schedule(peak_rate, epochs, steps_per_epoch, options),
                 optimizer=options.optimizer, weights=options.weights,
                 trainable_layers=options.trainable_layers, y_train=vocabulary.encode(train_df["labels"]))
    network = _build_in_scope(strategy, build)
    monitor = options.monitor or ("val_f1_micro" if val_ds is not None else "loss")
    if strategy is not None:
        _log_distribution(strategy, batch_size, peak_rate, options.schedule, log)
    if multi_worker:
        network, history, images_per_second = _fit_on_workers(
            strategy, network, build, train_df, train_options, val_ds, out_dir, epochs,
            batch_size, steps_per_epoch, monitor, patience, log)
        if not chief:  # wait for the chief to save: a worker gone early looks like a crash
            distribute.barrier(strategy)
            return {"model": network, "metadata": None, "history": None, "metrics": None,
                    "out_dir": out_dir, "counts": counts, "images_per_second": images_per_second}
    else:
        history, images_per_second = _fit_resumable(
            network, train_ds, val_ds, out_dir, epochs=epochs, done_epochs=done_epochs,
            monitor=monitor, patience=patience, task=task, log=log, n_train=len(train_df),
            reduce_lr=options.schedule == "plateau")

    metrics = _final_metrics(network, history, monitor, {"val": val_df, "test": test_df}, common, task)
    metrics.update(counts=counts, skipped=skipped, images_per_second=images_per_second)
    metadata = _save_run(out_dir, network, metrics, vocabulary, task, target_size,
                         (train_df, val_df, test_df))
    if multi_worker:
        distribute.barrier(strategy)
    _log_saved(out_dir, metrics, log)
    return {"model": network, "metadata": metadata, "history": history, "metrics": metrics,
            "out_dir": out_dir, "counts": counts, "images_per_second": images_per_second}


def _distribution(strategy, batch_size=None):
    """``(replicas, chief, multi_worker)`` of a ``tf.distribute`` strategy (or of none); refuses
    a global ``batch_size`` the replicas cannot share evenly."""
    if strategy is None:
        return 1, True, False
    replicas = int(strategy.num_replicas_in_sync)
    if batch_size is not None and batch_size % replicas:
        raise ValueError(f"batch_size {batch_size} is the global batch, split between the {replicas} "
                         f"replicas: give a multiple of {replicas}")
    return replicas, distribute.is_chief(strategy), distribute.is_multi_worker(strategy)


def _task_and_classes(source, dataframe, options, log):
    """The task (``options.task`` resolved), the loss that goes with it and the vocabulary."""
    task = _choose_task(dataframe, options.task, log)
    loss = options.loss
    if task == "multi_class" and loss in ("bce", "binary-crossentropy"):
        loss = None  # the CLI's default; categorical cross-entropy is the multi-class match
    vocabulary = LabelVocabulary.from_labels(dataframe["labels"])
    if len(vocabulary) == 0:
        raise ValueError(f"{source}: no image has a label")
    return task, loss, vocabulary


def _run_settings(source, layout, model, target_size, task, loss, vocabulary, options):
    """What an interrupted run must share with its rerun (``run.json``)."""
    replicas, _, multi_worker = _distribution(options.strategy)
    return {
        "source": str(source), "layout": layout, "model": model,
        "image_size": list(target_size), "task": task, "seed": options.seed,
        "loss": loss if isinstance(loss, (str, type(None))) else "custom",
        "classes": vocabulary.classes,
        "weights": None if options.weights is None else str(options.weights),
        "trainable_layers": options.trainable_layers,
        # A run resumes with the same checkpoint format and global batch only.
        "distribution": (None if options.strategy is None
                         else f"{replicas} {'workers' if multi_worker else 'devices'}"),
    }


def _pipelines(dataframe, val_df, vocabulary, target_size, options):
    """``(common, train_options, val_ds)``: the ``dataset_for`` arguments of evaluation and of
    training, and the validation dataset (None when the split is empty). The decoded images
    are cached in memory when the whole dataset fits in ``_MEMORY_CACHE_BYTES``."""
    cache = len(dataframe) * target_size[0] * target_size[1] * 3 * 4 < _MEMORY_CACHE_BYTES
    common = dict(classes=vocabulary, target_size=target_size, batch_size=options.batch_size)
    augment = (DEFAULT_AUGMENT if options.augment is True else options.augment) or None
    train_options = dict(shuffle=True, seed=options.seed, cache=cache, classes=vocabulary,
                         target_size=target_size, augment=augment)
    val_ds = (dataset_for(val_df, shuffle=False, cache=cache, **common)
              if len(val_df) else None)
    return common, train_options, val_ds


def _training_batches(train_df, train_options, options, multi_worker):
    """``(train_ds, steps_per_epoch)``; in a multi-worker run each worker makes its own
    dataset later, so ``train_ds`` is None."""
    if multi_worker:
        return None, _worker_steps(options.strategy, train_df, options.batch_size)
    train_ds = dataset_for(train_df, batch_size=options.batch_size, **train_options)
    return train_ds, len(train_ds)


def _rate_or_schedule(peak_rate, epochs, steps_per_epoch, options):
    """The optimizer's learning rate: the cosine schedule to ``peak_rate``, or the rate itself."""
    if options.schedule == "cosine":
        return cosine_schedule(peak_rate, epochs, steps_per_epoch, options.warmup_epochs)
    return peak_rate


def _build_in_scope(strategy, build):
    """``_build_compiled_model(**build)``, under ``strategy.scope()`` when there is a strategy."""
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        return _build_compiled_model(**build)


def _log_distribution(strategy, batch_size, peak_rate, schedule, log):
    """One line: the replicas, where this process runs, the batch per replica and the rate."""
    replicas, chief, multi_worker = _distribution(strategy)
    where = (f"this is worker {distribute.worker_place(strategy)[1]}{' (chief)' if chief else ''}"
             if multi_worker else ", ".join(strategy.extended.worker_devices))
    kind = ("worker" if multi_worker else "device") + ("s" if replicas > 1 else "")
    log(f"{replicas} {kind} ({where}): global batch "
        f"{batch_size} ({batch_size // replicas} per replica), learning rate {peak_rate:g}"
        + (" (peak of the cosine schedule)" if schedule == "cosine" else ""))


def _save_run(out_dir, network, metrics, vocabulary, task, target_size, splits):
    """Write the artefact folder, mark the run finished and return the metadata."""
    train_df, val_df, test_df = splits
    metadata = artefacts.save_artefacts(
        out_dir, network, vocabulary.classes, task, target_size, metrics=metrics,
        extra={"weights": getattr(network, "weights_source", None),
               "image_count": {"train": len(train_df), "val": len(val_df), "test": len(test_df)}},
    )
    artefacts.finish_run(out_dir)
    return metadata


def _log_saved(out_dir, metrics, log):
    summary = " - ".join(f"{key} {value:.4f}" for key, value in metrics.get("test", {}).items()
                         if key.startswith("f1_"))
    log(f"saved {out_dir}/{{{artefacts.MODEL_FILE}, {artefacts.LABELS_FILE}, "
        f"{artefacts.HISTORY_FILE}, {artefacts.METRICS_FILE}, {artefacts.SPLITS_FILE}}}"
        + (f"; test {summary}" if summary else ""))


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


def _fit_on_workers(strategy, network, build, train_df, train_options, val_ds, out_dir, epochs,
                    batch_size, steps, monitor, patience, log):
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
            patience=patience, task=build["task"], loss=build["loss"], y_train=build["y_train"],
            batch_size=batch_size, log=log)
        if not distribute.is_chief(strategy):
            return network, history, images_per_second
        plain = _build_compiled_model(**build)
        plain.optimizer.build(plain.trainable_variables)  # the checkpoint then loads quietly
        plain.set_weights(network.get_weights())
        restore_best(plain, out_dir)
    return plain, history, images_per_second


def _check_choices(options, model, epochs, load_options):
    """Refuse a wrong choice before any work, and a training option given as a keyword."""
    misplaced = sorted(set(load_options) & {field.name for field in dataclasses.fields(TrainOptions)})
    if misplaced:
        raise TypeError(f"train_from_source: {', '.join(misplaced)} belong in options=TrainOptions(...)")
    task, schedule = options.task, options.schedule
    if task not in TASKS + ("auto",):
        raise ValueError(f"task must be one of {TASKS + ('auto',)}, got {task!r}")
    if model not in model_builders.BUILDERS:
        raise ValueError(f"model must be one of {sorted(model_builders.BUILDERS)}, got {model!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if schedule not in _SCHEDULES:
        raise ValueError(f"schedule must be one of {_SCHEDULES}, got {schedule!r}")


def _target_size(image_size):
    target_size = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    return tuple(int(value) for value in target_size)


def _load_usable(source, layout="auto", target_size=(64, 64), log=print, **load_options):
    """Load a dataset (``helpers.data.load_dataset``'s arguments) and drop the images that
    cannot be decoded at ``target_size``; log what was skipped.

    Returns ``(dataframe, counts, skipped)``: the usable rows, ``{"found", "used", "skipped",
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


def _choose_task(dataframe, task, log=print):
    """Resolve ``task="auto"``, hint at multi-class data, refuse impossible multi-class;
    return ``"multi_label"`` or ``"multi_class"``."""
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


def _saved_or_new_splits(dataframe, out_dir, done_epochs, options, write=True, log=print):
    """``(train_df, val_df, test_df)`` of an interrupted run (its ``splits.csv``), or new ones
    made with ``options``, saved there (unless ``write=False``)."""
    splits = artefacts.splits_from_file(dataframe, out_dir) if done_epochs else None
    if splits is None:
        grouped, group_column = _keep_copies_together(dataframe, options, log)
        splits = split_dataframe(grouped, val_size=options.val_size, test_size=options.test_size,
                                 seed=options.seed, group_column=group_column)
        if group_column is not None and group_column not in dataframe.columns:  # made for the copies
            splits = tuple(part.drop(columns=group_column) for part in splits)
        if write:
            artefacts.write_splits(out_dir, dict(zip(("train", "val", "test"), splits)))
    if len(splits[0]) == 0:
        raise ValueError("the training split is empty; use more images or smaller val/test sizes")
    return splits


def _keep_copies_together(dataframe, options, log):
    """``(dataframe, group_column)`` to split: unless ``options.allow_copies_across_splits``, the
    copies of each picture (``helpers.scan.find_copies``) are joined into one group."""
    if options.allow_copies_across_splits:
        log("copies: not searched (allow_copies_across_splits): copies may be in several splits")
        return dataframe, options.group_column
    if is_shard_frame(dataframe):
        log("copies: not searched in shards; run `helpers duplicates` on the dataset they were "
            "written from")
        return dataframe, options.group_column
    found = find_copies(dataframe, progress=False)
    groups, checked = found["groups"], f"{found['pairs_checked']:,} hash comparisons"
    if not groups:
        log(f"copies: none among {found['n_hashed']:,} images ({checked})")
        return dataframe, options.group_column
    log(f"copies: {len(groups)} groups of copies ({sum(map(len, groups))} images) kept together, "
        f"each in one split ({checked}; allow_copies_across_splits=True turns this off)")
    return with_copies(dataframe, groups, options.group_column)


def _build_compiled_model(name, target_size, vocabulary, task, loss=None, learning_rate=1e-3,
                          optimizer="adam", weights=None, trainable_layers=0, y_train=None):
    """Build a model of ``helpers.models.BUILDERS`` for the task and compile it."""
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


def _fit_resumable(network, train_ds, val_ds, out_dir, epochs, done_epochs=0,
                   monitor="val_f1_micro", patience=10, task="multi_label", log=print,
                   n_train=None, reduce_lr=True):
    """``fit`` with the callbacks of ``make_callbacks``, resuming after ``done_epochs``.

    The best checkpoint is loaded into ``network`` afterwards. ``reduce_lr=False`` for an
    optimizer that follows a learning-rate schedule. Returns ``(history, images_per_second)``:
    ``history.csv`` as a DataFrame, the last epoch's training throughput.
    """
    if done_epochs:  # make_callbacks then resumes from the trimmed history
        artefacts.trim_history(out_dir, done_epochs)
        log(f"Resuming from epoch {done_epochs + 1}/{epochs}: epochs 1-{done_epochs} were "
            f"finished before the interruption ({Path(out_dir) / artefacts.BACKUP_DIR})")
    callbacks = make_callbacks(out_dir, monitor=monitor, patience=patience, validation_data=val_ds,
                               task=task, log=log, n_images=n_train, reduce_lr=reduce_lr)
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


def _final_metrics(network, history, monitor, frames, dataset_options, task):
    """The best epoch of ``monitor`` and the metrics on each non-empty frame of ``frames``.

    A dict of ``monitor``, ``epochs_run``, ``best_epoch``, ``best_<monitor>``, and per frame
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
def _rows_of_split(dataframe, model_dir, split):
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
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    model, metadata = artefacts.load_artefacts(model_dir)
    if is_shard_frame(dataframe):
        check_shards(dataframe["shard_file"], verify="sha256")
    classes, task = metadata["classes"], metadata["task"]
    thresholds = np.asarray(metadata["thresholds"], dtype=float)
    if tune_thresholds:
        if task != "multi_label":
            raise ValueError("tune_thresholds only applies to multi_label models")
        val_rows = _rows_of_split(dataframe, model_dir, "val")
        y_val, p_val, _, _ = predict_dataframe((model, metadata), val_rows, batch_size,
                                            make_dataset=dataset_for)
        thresholds, table = evaluation.choose_thresholds(y_val, p_val, classes=classes,
                                                         min_precision=min_precision)
        metadata = artefacts.update_thresholds(model_dir, thresholds)

    rows = dataframe if split == "all" else _rows_of_split(dataframe, model_dir, split)
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
