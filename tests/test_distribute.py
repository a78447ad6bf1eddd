"""Several devices and several workers: the launcher leaves nothing behind, two loopback
workers train in step and resume after a kill, two logical CPU devices train with fit."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

pytest.importorskip("tensorflow")

from helpers.scale import distribute  # noqa: E402
from helpers.app.cli import main  # noqa: E402
from helpers.datasets.generate import make_dataset  # noqa: E402

TRAIN = ["--image-size", "32", "--batch-size", "16", "--no-augment", "--seed", "3"]
RUN_SECONDS = 240  # per command; a hung collective fails the test instead of CI


def alive(pid):
    """Whether ``pid`` is a running process (a zombie waiting to be reaped is not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_gone(pids, seconds=10):
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


def port_is_free(port):
    """Whether no process listens on ``port`` (connections closing in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def started(text):
    """``{worker index: (pid, port)}`` from the launcher's log."""
    return {int(index): (int(pid), int(port)) for index, pid, port in
            re.findall(r"started worker (\d+) \(pid (\d+)\) on 127\.0\.0\.1:(\d+)", text)}


def assert_nothing_left(text, scratch):
    workers = started(text)
    assert workers, text[-2000:]
    assert not wait_gone([pid for pid, _ in workers.values()]), "a worker is still running"
    assert all(port_is_free(port) for _, port in workers.values()), "a worker port is still taken"
    assert list(scratch.iterdir()) == [], "temporary files were left behind"


@pytest.fixture
def scratch(tmp_path):
    """The launcher's TMPDIR: it must be empty again afterwards."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    return folder


@pytest.fixture
def reaped():
    """Processes a test started: killed and waited for at the end, whatever happened."""
    processes = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdout:
            process.stdout.close()


# ----------------------------------------------------------------------------- launcher
@pytest.fixture
def sleeper(tmp_path):
    """A stand-in interpreter: each "worker" records its pid and a grandchild's, then hangs."""
    script = tmp_path / "sleeper.sh"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        touch "$TMPDIR/left-by-$$"
        sleep 120 &
        echo "$$ $!" >> {tmp_path}/pids
        echo "ready"
        wait
        """))
    script.chmod(0o755)
    return script


def recorded_pids(tmp_path):
    return [int(pid) for line in (tmp_path / "pids").read_text().split("\n") if line
            for pid in line.split()]


def wait_for_pids(tmp_path, count, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (tmp_path / "pids").is_file() and len(recorded_pids(tmp_path)) >= 2 * count:
            return recorded_pids(tmp_path)
        time.sleep(0.05)
    raise AssertionError("the workers did not start")


def test_a_timeout_stops_every_worker_and_its_children(sleeper, tmp_path, scratch, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(scratch))
    lines = []
    with pytest.raises(TimeoutError, match="2 workers did not finish within 2 s"):
        distribute.launch_workers(["x"], 2, timeout=2, log=lines.append, python=str(sleeper))
    assert not wait_gone(recorded_pids(tmp_path))
    assert "[worker 0] ready" in lines and "[worker 1] ready" in lines
    assert_nothing_left("\n".join(lines), scratch)


def test_a_failing_worker_stops_the_others(tmp_path, scratch, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(scratch))
    lines = []
    with pytest.raises(RuntimeError, match=r"worker \d exited with code 2"):
        distribute.launch_workers([str(tmp_path / "missing"), "--out", str(tmp_path / "m")], 2,
                                  timeout=RUN_SECONDS, log=lines.append)
    assert any("error:" in line and "missing" in line for line in lines)
    assert_nothing_left("\n".join(lines), scratch)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_the_workers(sig, sleeper, tmp_path, scratch, reaped):
    code = ("import signal\n"  # Ctrl-C raises KeyboardInterrupt even if started in the background
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            f"from helpers.scale.distribute import launch_workers\n"
            f"launch_workers(['x'], 2, timeout=60, python={str(sleeper)!r})\n")
    launcher = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ, TMPDIR=str(scratch)))
    reaped.append(launcher)
    pids = wait_for_pids(tmp_path, 2, seconds=90)
    launcher.send_signal(sig)
    output = launcher.communicate(timeout=30)[0]
    assert launcher.returncode != 0 and "KeyboardInterrupt" in output
    assert not wait_gone(pids)
    assert_nothing_left(output, scratch)


@pytest.mark.parametrize("config, message", [
    ("", "TF_CONFIG is not set"),
    ("{not json", "TF_CONFIG: expected"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "index 3 is not one"),
    ('{"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "chief", "index": 0}}',
     "workers only"),
])
def test_tf_config_is_checked(config, message):
    with pytest.raises(ValueError, match=message):
        distribute.read_tf_config({"TF_CONFIG": config})


def test_tf_config_names_the_chief():
    addresses = ["127.0.0.1:1", "127.0.0.1:2"]
    assert distribute.read_tf_config({"TF_CONFIG": distribute.tf_config(addresses, 1)}) == {
        "workers": addresses, "index": 1, "chief": False}
    ports = distribute.free_ports(4)
    assert len(set(ports)) == 4 and all(port_is_free(port) for port in ports)


def test_devices_and_workers_together_are_refused(tmp_path, capsys):
    assert main(["train", str(tmp_path), "--workers", "2", "--devices", "2", "--out", str(tmp_path / "m")]) == 2
    assert "choose one" in capsys.readouterr().err


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def shapes_shards(tmp_path_factory):
    source = make_dataset("shapes", tmp_path_factory.mktemp("data") / "shapes", scale=0.15,
                          seed=7, progress=False)
    out_dir = tmp_path_factory.mktemp("shards") / "shards"
    assert main(["shard", str(source), str(out_dir), "--layout", "split-folders",
                 "--shard-size-mb", "0.05", "--format", "json"]) == 0
    return out_dir


def helpers_command(argv, scratch, timeout=RUN_SECONDS, popen=False):
    """``python -m helpers ARGV`` with TMPDIR=scratch: finished, or started (``popen``)."""
    env = dict(os.environ, TMPDIR=str(scratch), TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "helpers", *map(str, argv)]
    if popen:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def finished(argv, scratch):
    """The output of ``python -m helpers ARGV``, which must succeed."""
    run = helpers_command(argv, scratch)
    text = run.stdout + run.stderr
    assert run.returncode == 0, text[-3000:]
    return text


def digests(text):
    return dict(re.findall(r"\[worker (\d)\] final weights sha256 ([0-9a-f]{64})", text))


@pytest.mark.slow
def test_two_workers_train_in_step_stop_when_one_is_killed_and_resume(shapes_shards, scratch, tmp_path,
                                                                      reaped):
    out = tmp_path / "model"
    argv = ["train", shapes_shards, "--workers", "2", "--epochs", "3", "--out", out, *TRAIN,
            "--patience", "10", "--worker-timeout", RUN_SECONDS]
    launcher = helpers_command(argv, scratch, popen=True)
    reaped.append(launcher)
    lines, deadline = [], time.monotonic() + RUN_SECONDS
    for line in launcher.stdout:  # the chief logs an epoch once its checkpoint is saved
        lines.append(line)
        if line.startswith("[worker 0] epoch 1/3"):
            os.kill(started("".join(lines))[1][0], signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "".join(lines)[-3000:]
    lines += launcher.communicate(timeout=60)[0]
    first = "".join(lines)
    assert "[worker 0] 2 workers (this is worker 0 (chief))" in first
    assert launcher.returncode == 1 and "worker 1 exited with code -9" in first, first[-3000:]
    assert not (out / "model.keras").exists()
    assert_nothing_left(first, scratch)

    # The same command again: it resumes, both workers end in step, the folder is complete.
    text = finished(argv, scratch)
    assert "[worker 0] Resuming from epoch 2/3" in text and "[worker 1] Resuming from epoch 2/3" in text
    assert "epoch 1/3" not in text and "[worker 0] epoch 3/3" in text and "2 workers finished" in text
    assert len(set(digests(text).values())) == 1 and set(digests(text)) == {"0", "1"}
    assert sorted(path.name for path in out.iterdir()) == [
        "history.csv", "labels.json", "metrics.json", "model.keras", "run.json", "splits.csv"]
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [0, 1, 2]
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert {"val_loss", "val_f1_micro", "val_auc", "f1", "learning_rate"} <= set(history.columns)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 3 and metrics["test"]["n_images"] > 0
    assert main(["evaluate", "--model-dir", str(out), str(shapes_shards), "--split", "test",
                 "--format", "json"]) == 0
    assert_nothing_left(text, scratch)


@pytest.mark.slow
def test_two_logical_cpu_devices_train_with_fit(shapes_shards, scratch, tmp_path):
    out = tmp_path / "model"
    text = finished(["train", shapes_shards, "--devices", "2", "--epochs", "2", "--out", out, *TRAIN],
                    scratch)
    assert re.search(r"2 devices \(/job:localhost/replica:0/task:0/device:CPU:0, .*CPU:1\): "
                     r"global batch 16 \(8 per replica\), learning rate [0-9.e-]+", text)
    assert (out / "model.keras").is_file() and len(pd.read_csv(out / "history.csv")) == 2
    assert list(scratch.iterdir()) == []


@pytest.mark.slow
def test_splitting_the_cpu_too_late_says_what_to_do():
    code = ("import tensorflow as tf; tf.constant(1.0) + 1\n"
            "from helpers.scale.distribute import mirrored_strategy\n"
            "try:\n    mirrored_strategy(2)\nexcept ValueError as error:\n    print(error)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert "already initialised its devices" in run.stdout and "fresh process" in run.stdout, run.stderr
