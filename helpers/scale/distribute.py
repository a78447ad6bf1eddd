"""Training on several devices of one machine, and on several machines, with ``tf.distribute``.

- :func:`mirrored_strategy`: ``MirroredStrategy`` over N local devices (GPUs, or the CPU split
  into N logical devices). Training is then plain ``model.fit``, the model built and compiled
  under ``strategy.scope()`` (``helpers.app.workflows.TrainOptions(strategy=...)``).
- :func:`multi_worker_strategy` + :func:`fit_multi_worker`: ``MultiWorkerMirroredStrategy``
  from ``TF_CONFIG`` with a custom training loop over the Keras 3 model.
- :func:`launch_workers`: N worker processes on this machine (loopback ports), for trying
  the multi-worker path without a cluster.

Why a custom loop: on tensorflow-cpu 2.21 + Keras 3.15, ``model.fit`` under
``MultiWorkerMirroredStrategy`` fails on two loopback workers (checked on this project's
machine: ``ValueError: Attempt to convert a value (PerReplica:{...}) with an unsupported type
(<class 'tensorflow.python.distribute.values.PerReplica'>) to a Tensor`` in the first training
step; keras-team/keras#20585: Keras 3 does not support it), while the same model and
optimizer in a ``tf.function`` step run through ``strategy.run`` train, end with the same
weights on both workers, and save with ``tf.train.Checkpoint``. Keras 3's
``BackupAndRestore`` is not multi-worker aware either, hence ``tf.train.CheckpointManager``.

Global batch and learning rate: ``batch_size`` is the global batch, split between the
replicas (each takes ``batch_size / replicas`` images per step, the gradients are summed), and
the learning rate is used as given, so N workers train as one process does, with the same
steps per epoch: only the work per step is divided. To make use of more machines, raise the
batch with them (e.g. the same per-replica batch as on one device: ``batch_size × N``) and
the learning rate with it (the linear scaling rule of Goyal et al., "Accurate, large
minibatch SGD", 2017: N times the rate, with a few epochs of warm-up for a large N; with Adam,
whose steps are normalised, the rule matters less than with SGD).
"""
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from helpers.files.fileio import atomic_write_json, atomic_write_text

# TensorFlow, Keras and the training modules are imported where they are used, so that the
# launcher (``helpers train --workers N``) starts its workers without loading them first.

_CHECKPOINT_PREFIX = "epoch"


# ----------------------------------------------------------------------------- one machine
def _logical_cpus(n_devices):
    """Split the CPU into ``n_devices`` logical devices (before TensorFlow initialises them);
    return their names."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(n_devices)]
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError as error:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != n_devices:
            raise ValueError(
                f"devices={n_devices}: TensorFlow has already initialised its devices ({have} "
                "logical CPU); split the CPU first: call helpers.scale.distribute.mirrored_strategy "
                "before any TensorFlow operation, at the top of a fresh process "
                f"or kernel, or run `helpers train SOURCE --devices {n_devices}` ({error})"
            ) from None
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def mirrored_strategy(devices=None):
    """A ``tf.distribute.MirroredStrategy`` over ``devices`` local devices.

    With at least ``devices`` GPUs it uses the first ones (all-reduce with NCCL); without a GPU
    it splits the CPU into that many logical devices, which shows how the strategy splits
    batches and combines gradients but does not train faster (they share the same cores).

    Parameters
    ----------
    devices : int, optional
        Number of replicas; default: every GPU, else 1.

    Returns
    -------
    tf.distribute.MirroredStrategy
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if devices is None:
        devices = max(1, len(gpus))
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"devices: expected a positive integer, got {devices!r}")
    if gpus and len(gpus) >= devices:
        names = [f"/gpu:{index}" for index in range(devices)]
    elif gpus:
        raise ValueError(f"devices={devices}: this machine has {len(gpus)} GPUs")
    else:
        names = _logical_cpus(devices)
    return tf.distribute.MirroredStrategy(devices=names)


# ----------------------------------------------------------------------------- TF_CONFIG
def read_tf_config(environ=None):
    """The cluster and task of ``TF_CONFIG`` (a JSON string in the environment), checked.

    Returns
    -------
    dict with ``workers`` (list of "host:port"), ``index`` and ``chief`` (bool).
    """
    text = (environ or os.environ).get("TF_CONFIG", "")
    if not text.strip():
        raise ValueError(
            'TF_CONFIG is not set; each worker needs e.g. TF_CONFIG=\'{"cluster": {"worker": '
            '["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}\'')
    try:
        config = json.loads(text)
        workers = list(config["cluster"]["worker"])
        task = config["task"]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"TF_CONFIG: expected {{'cluster': {{'worker': [...]}}, 'task': "
                         f"{{'type': 'worker', 'index': i}}}}, got {text!r} ({error})") from None
    if "chief" in config["cluster"] or task.get("type") != "worker":
        raise ValueError("TF_CONFIG: use workers only (worker 0 is the chief), got "
                         f"cluster roles {sorted(config['cluster'])} and task {task}")
    if not 0 <= index < len(workers):
        raise ValueError(f"TF_CONFIG: task index {index} is not one of the {len(workers)} workers")
    return {"workers": workers, "index": index, "chief": index == 0}


def multi_worker_strategy():
    """``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``; create it before any TensorFlow op.

    The collectives pick RING on CPUs and NCCL when every worker has GPUs (``AUTO``).

    Returns
    -------
    tf.distribute.MultiWorkerMirroredStrategy
    """
    read_tf_config()
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO))


def is_multi_worker(strategy):
    """Whether ``strategy`` is a ``MultiWorkerMirroredStrategy`` (even of one worker)."""
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy):
    """Whether this process is the chief (worker 0, or the only process)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return resolver is None or not resolver.task_type or int(resolver.task_id or 0) == 0


def worker_place(strategy):
    """``(num_workers, worker_index)`` of this process under ``strategy``."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 1, 0
    return len(resolver.cluster_spec().as_dict().get("worker", [])) or 1, int(resolver.task_id)


def _weights_digest(model):
    """sha256 of a model's weights (equal on every worker of a synchronous run)."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- training loop
_REDUCERS = {}


def _all_reduce(strategy, values, chief_only=False):
    """Sum a float vector over the workers (a collective: every worker must call it).

    ``chief_only``: the chief's values alone (the others add zeros), i.e. a broadcast.
    """
    import tensorflow as tf

    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if chief_only and not is_chief(strategy):
        values = np.zeros_like(values)
    if id(strategy) not in _REDUCERS:
        _REDUCERS[id(strategy)] = tf.function(
            lambda vector: strategy.reduce("SUM", strategy.run(tf.identity, args=(vector,)), axis=None),
            input_signature=[tf.TensorSpec([None], tf.float64)])
    return np.asarray(_REDUCERS[id(strategy)](tf.constant(values)))


def _synchronise_batch_norm(model):
    """Make every BatchNormalization use the global batch's statistics (all-reduced), so that
    the moving means and variances, which no gradient updates, stay equal on every worker."""
    import keras

    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
        _synchronise_batch_norm(layer)


def _metric_results(strategy, metrics):
    """Sum every metric's state across workers, then read the results (Keras metric states are sums)."""
    variables = [variable for metric in metrics for variable in metric.variables]
    if variables:
        flat = [np.asarray(variable.numpy(), dtype=np.float64).reshape(-1) for variable in variables]
        total = _all_reduce(strategy, np.concatenate(flat))
        start = 0
        for variable, part in zip(variables, flat):
            value = total[start:start + part.size].reshape(variable.shape)
            variable.assign(value.astype(variable.dtype))
            start += part.size
    return {metric.name: float(metric.result()) for metric in metrics}


def _validate(predict_step, dataset, loss, task, val_metrics, update_metrics):
    from helpers.evaluation import threshold_metrics

    truths, probabilities = [], []
    for images, labels in dataset:
        truths.append(np.asarray(labels))
        probabilities.append(np.asarray(predict_step(images)))
    y_true, y_prob = np.concatenate(truths), np.concatenate(probabilities)
    values = {"val_loss": float(loss(y_true, y_prob))}
    for metric in val_metrics:
        metric.reset_state()
    update_metrics(y_true.astype(np.float32), y_prob.astype(np.float32))
    values.update({"val_" + metric.name: float(metric.result()) for metric in val_metrics})
    values.update(threshold_metrics(y_true, y_prob, task, prefix="val_"))
    return values


def _append_history(out_dir, row):
    import pandas as pd

    from helpers import artefacts

    history = artefacts.read_history(out_dir)
    table = history.reset_index() if len(history) else None

    table = pd.DataFrame([row]) if table is None else pd.concat([table, pd.DataFrame([row])])
    atomic_write_text(Path(out_dir) / artefacts.HISTORY_FILE, table.to_csv(index=False))


class _Backup:
    """The per-epoch ``tf.train.Checkpoint`` of the model, its optimizer and the epoch.

    Saving is a collective operation, so every worker saves: the chief into
    ``out_dir/backup``, the others into a temporary folder that :meth:`close` deletes.
    Every worker restores the chief's checkpoint.
    """

    def __init__(self, strategy, network, out_dir):
        import tensorflow as tf

        from helpers import artefacts

        self.strategy = strategy
        self.chief = is_chief(strategy)
        self.folder = Path(out_dir) / artefacts.BACKUP_DIR
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(model=network, optimizer=network.optimizer,
                                              epoch=self.epoch)
        self.own = (str(self.folder) if self.chief else
                    tempfile.mkdtemp(prefix=f"helpers-worker{worker_place(strategy)[1]}-"))
        self.manager = None

    def restore(self):
        """Load the chief's last checkpoint, if any; return the number of finished epochs."""
        import tensorflow as tf

        self.manager = tf.train.CheckpointManager(self.checkpoint, self.own, max_to_keep=1,
                                                  checkpoint_name=_CHECKPOINT_PREFIX)
        _all_reduce(self.strategy, [0.0])  # barrier: the chief has cleaned or checked the folder
        latest = tf.train.latest_checkpoint(str(self.folder))
        if latest:
            self.checkpoint.restore(latest).expect_partial()
        done = int(_all_reduce(self.strategy, [int(self.epoch.numpy())], chief_only=True)[0])
        self.epoch.assign(done)
        return done

    def save(self, finished_epochs):
        """Checkpoint after ``finished_epochs`` epochs (on every worker)."""
        from helpers import artefacts

        self.epoch.assign(finished_epochs)
        self.manager.save(checkpoint_number=finished_epochs)
        if self.chief:
            atomic_write_json(self.folder / artefacts.DISTRIBUTED_STATE_FILE,
                              {"epochs": finished_epochs})

    def close(self):
        if not self.chief:
            shutil.rmtree(self.own, ignore_errors=True)


def _best_so_far(strategy, out_dir, done, monitor, mode):
    """``(best, wait)`` of ``monitor`` over the chief's history of ``done`` epochs (which it
    trims to them), sent to every worker; ``(None, 0)`` on a new run."""
    from helpers import artefacts

    history = artefacts.trim_history(out_dir, done) if is_chief(strategy) else None
    best, wait = None, 0
    if done and history is not None and monitor in history and history[monitor].notna().any():
        column = history[monitor].to_numpy()
        best_index = int(np.nanargmax(column) if mode == "max" else np.nanargmin(column))
        best, wait = float(column[best_index]), len(column) - 1 - best_index
    best, wait = _all_reduce(strategy, [np.nan if best is None else best, wait], chief_only=True)
    return (None if np.isnan(best) else float(best)), int(wait)


def _worker_batches(strategy, train_dataset, batch_size):
    """An endless iterator over this worker's training batches (``train_dataset`` of
    :func:`fit_multi_worker` called with this worker's place and per-replica batch)."""
    dataset = strategy.distribute_datasets_from_function(
        lambda context: train_dataset(context.num_input_pipelines, context.input_pipeline_id,
                                      context.get_per_replica_batch_size(batch_size)
                                      ).repeat())
    return iter(dataset)


def _train_step(strategy, network, loss_fn):
    """A ``tf.function`` running one synchronous step on every replica; it returns the loss
    summed over the replicas and each replica's labels and probabilities."""
    import tensorflow as tf

    replicas = strategy.num_replicas_in_sync
    optimizer = network.optimizer

    @tf.function
    def train_step(iterator):
        def step(images, labels):
            with tf.GradientTape() as tape:
                probabilities = network(images, training=True)
                # The mean over this replica's batch, divided by the replicas: the summed
                # gradients are those of the global batch's mean. Keras 3 losses divide
                # by the replicas themselves in a replica context (scale_loss_for_distribution);
                # the model's own losses (regularisers) do not.
                value = loss_fn(labels, probabilities)
                if network.losses:
                    value += tf.add_n(network.losses) / replicas
            gradients = tape.gradient(value, network.trainable_variables)
            optimizer.apply_gradients(zip(gradients, network.trainable_variables))
            return value, labels, probabilities

        value, labels, probabilities = strategy.run(step, args=next(iterator))
        return strategy.reduce("SUM", value, axis=None), labels, probabilities

    return train_step


def _metrics_updater(metrics):
    """A ``tf.function`` updating ``metrics``, traced once (eager AUC updates retrace every call)."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def update(labels, probabilities):
        for metric in metrics:
            metric.update_state(labels, probabilities)
    return update


def _train_epoch(strategy, train_step, iterator, steps, metrics, update_metrics):
    """Run ``steps`` training steps; return the mean loss (``metrics`` hold this worker's part)."""
    for metric in metrics:
        metric.reset_state()
    total = 0.0
    for _ in range(steps):
        value, labels, probabilities = train_step(iterator)
        total += float(value)
        for truth, probability in zip(strategy.experimental_local_results(labels),
                                      strategy.experimental_local_results(probabilities)):
            update_metrics(truth, probability)
    return total / steps


def _track_best(row, monitor, mode, best, wait, save_best):
    """The new ``(best, wait)`` after an epoch's ``row``; ``save_best()`` runs when it improved."""
    if monitor not in row:
        raise ValueError(f"monitor={monitor!r} is not one of {sorted(row)}")
    value = row[monitor]
    if best is None or (value > best if mode == "max" else value < best):
        save_best()
        return value, 0
    return best, wait + 1


def _log_epoch(log, epoch, epochs, start, images_per_second, row):
    shown = " - ".join(f"{key} {row[key]:.4f}" for key in
                       ("loss", "val_loss", "f1", "val_f1_micro", "val_f1_macro", "val_auc")
                       if key in row)
    log(f"epoch {epoch + 1}/{epochs} - {time.perf_counter() - start:.1f}s - train "
        f"{images_per_second:.0f} img/s - {shown}")


def fit_multi_worker(
    strategy, network, train_dataset, steps_per_epoch, val_ds, out_dir, epochs, monitor="val_f1_micro",
    patience=10, task="multi_label", loss=None, y_train=None, batch_size=32, log=print,
):
    """Train ``network`` under ``MultiWorkerMirroredStrategy`` with a custom loop; resumable.

    Every worker runs the same steps (synchronous all-reduce of the gradients). Per epoch:
    training loss and the Keras metrics of ``helpers.training.task_metrics`` (their states
    summed over the workers), then on the validation set ``val_loss``, ``val_<metric>`` and the
    scikit-learn ``val_f1_*`` / ``val_precision_*`` / ``val_recall_*`` of
    ``helpers.training.MetricsCallback``. The chief appends the row to ``history.csv``, keeps
    the best weights of ``monitor`` in ``checkpoint.weights.h5``; training stops after
    ``patience`` epochs without improvement. After each epoch every worker saves the model,
    optimizer and epoch with ``tf.train.CheckpointManager`` (a collective operation): the
    chief into ``out_dir/backup``, the others into a temporary folder they delete. A rerun
    restores the chief's last checkpoint and continues with the next epoch.

    Parameters
    ----------
    strategy : tf.distribute.MultiWorkerMirroredStrategy
    network : keras.Model
        Built and compiled (optimizer) under ``strategy.scope()``.
    train_dataset : callable
        ``train_dataset(num_workers, worker_index, per_replica_batch)`` → this worker's batches.
    steps_per_epoch : int
        The same on every worker (the smallest share's batches).
    val_ds : tf.data.Dataset
        The whole validation set (each worker evaluates it: same weights, same numbers).
    out_dir : str or Path
    epochs : int
    monitor : str
    patience : int
    task : str
    loss, y_train
        As for ``helpers.training.make_loss``.
    batch_size : int
        The global batch (``batch_size / replicas`` per replica).
    log : callable

    Returns
    -------
    (history, images_per_second): the history DataFrame (chief; empty elsewhere) and the
    last epoch's training throughput of all workers together.
    """
    import tensorflow as tf

    from helpers import artefacts
    from helpers.training import make_loss, task_metrics

    out_dir = Path(out_dir)
    chief = is_chief(strategy)
    loss_fn = make_loss(loss, task, y_train)
    n_classes = artefacts.output_units(network)
    train_metrics = task_metrics(task, n_classes)  # outside the scope: plain local variables
    val_metrics = task_metrics(task, n_classes)
    mode = "min" if monitor.endswith("loss") else "max"
    _synchronise_batch_norm(network)

    def save_best():
        if chief:
            network.save_weights(str(out_dir / artefacts.CHECKPOINT_FILE))

    backup = _Backup(strategy, network, out_dir)
    try:
        done = backup.restore()
        best, wait = _best_so_far(strategy, out_dir, done, monitor, mode)
        if done:
            log(f"Resuming from epoch {done + 1}/{epochs}: epochs 1-{done} were finished "
                f"before the interruption ({backup.folder})")
        iterator = _worker_batches(strategy, train_dataset, batch_size)
        train_step = _train_step(strategy, network, loss_fn)
        predict_step = tf.function(lambda images: network(images, training=False))
        update_train, update_val = _metrics_updater(train_metrics), _metrics_updater(val_metrics)
        images_per_second = None
        for epoch in range(done, epochs):
            start = time.perf_counter()
            row = {"epoch": epoch, "loss": _train_epoch(strategy, train_step, iterator, steps_per_epoch,
                                                        train_metrics, update_train)}
            images_per_second = steps_per_epoch * batch_size / (time.perf_counter() - start)
            row.update(_metric_results(strategy, train_metrics))
            if val_ds is not None:
                row.update(_validate(predict_step, val_ds, loss_fn, task, val_metrics, update_val))
            row["learning_rate"] = float(network.optimizer.learning_rate.numpy())
            best, wait = _track_best(row, monitor, mode, best, wait, save_best)
            if chief:
                _append_history(out_dir, row)
            backup.save(epoch + 1)  # every worker (collective)
            _log_epoch(log, epoch, epochs, start, images_per_second, row)
            # Stop together: a worker leaving the loop alone would wait forever for the others.
            if _all_reduce(strategy, [float(wait >= patience)])[0] > 0:
                log(f"early stopping: {monitor} has not improved for {patience} epochs")
                break
    finally:
        backup.close()
    log(f"final weights sha256 {_weights_digest(network)}")
    return (artefacts.read_history(out_dir) if chief else None), images_per_second


# ----------------------------------------------------------------------------- launcher
def barrier(strategy):
    """Wait until every worker gets here (e.g. the others wait while the chief saves)."""
    _all_reduce(strategy, [0.0])


def free_ports(count):
    """``count`` distinct free TCP ports on 127.0.0.1 (held open together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_config(workers, index):
    """The ``TF_CONFIG`` string of worker ``index`` of ``workers`` ("host:port" each)."""
    return json.dumps({"cluster": {"worker": list(workers)}, "task": {"type": "worker", "index": index}})


def _stream(process, index, log):
    for line in process.stdout:
        log(f"[worker {index}] {line.rstrip()}")


def _stop(processes, grace=5.0):
    """SIGTERM each child's process group, then SIGKILL what is still there after ``grace``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [process for process in processes if process.poll() is None]
        for process in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
        deadline = time.monotonic() + grace
        for process in alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
    for process in processes:  # the group may hold grandchildren after the leader left
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def launch_workers(worker_args, n_workers, timeout=None, log=print, env=None, python=None):
    """Run ``python -m helpers worker *worker_args`` as ``n_workers`` processes on this machine.

    Each gets a free loopback port and its ``TF_CONFIG``, its own process group and a private
    temporary folder (``TMPDIR``); their output is passed to ``log`` line by line, prefixed
    ``[worker i]``. When one fails, on ``timeout``, Ctrl-C or SIGTERM, every worker is stopped
    (its whole process group) and the temporary folder removed: nothing is left behind.

    Parameters
    ----------
    worker_args : list of str
        Arguments of the ``worker`` command (``SOURCE --out DIR ...``).
    n_workers : int
    timeout : float, optional
        Seconds before the workers are stopped and ``TimeoutError`` raised.
    log : callable
    env : dict, optional
        Extra environment variables for the workers.
    python : str, optional
        Interpreter (default: this one).

    Returns
    -------
    dict with ``workers`` (the addresses), ``seconds`` and ``returncodes``.

    Raises
    ------
    RuntimeError
        When a worker exits with an error (the others are stopped).
    """
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"workers: expected a positive integer, got {n_workers!r}")
    addresses = [f"127.0.0.1:{port}" for port in free_ports(n_workers)]
    scratch = tempfile.mkdtemp(prefix="helpers-workers-")
    processes, readers, start = [], [], time.monotonic()
    try:
        with _sigterm_as_interrupt():
            for index in range(n_workers):
                child_env = dict(os.environ, **(env or {}), TF_CONFIG=tf_config(addresses, index),
                                 TMPDIR=scratch, PYTHONUNBUFFERED="1")
                child_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
                process = subprocess.Popen(
                    [python or sys.executable, "-m", "helpers", "worker", *map(str, worker_args)],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    text=True, env=child_env, start_new_session=True)
                processes.append(process)
                log(f"started worker {index} (pid {process.pid}) on {addresses[index]}")
                reader = threading.Thread(target=_stream, args=(process, index, log), daemon=True)
                reader.start()
                readers.append(reader)
            while True:
                codes = [process.poll() for process in processes]
                failed = [index for index, code in enumerate(codes) if code not in (None, 0)]
                if failed:
                    raise RuntimeError(f"worker {failed[0]} exited with code {codes[failed[0]]}; "
                                       "the other workers were stopped")
                if all(code == 0 for code in codes):
                    break
                if timeout is not None and time.monotonic() - start > timeout:
                    raise TimeoutError(f"the {n_workers} workers did not finish within {timeout:g} s; stopped")
                time.sleep(0.2)
    finally:
        _stop(processes)
        for reader in readers:
            reader.join(timeout=5)
        for process in processes:
            if process.stdout:
                process.stdout.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return {"workers": addresses, "seconds": time.monotonic() - start,
            "returncodes": [process.returncode for process in processes]}
