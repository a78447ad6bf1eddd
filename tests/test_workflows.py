"""Tests for helpers.app.workflows: train a model folder from any layout, resume it, evaluate it."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from _factories import CLASSES, make_fashion_folders, save_model_folder
from PIL import Image

from helpers import REPO_ROOT, artefacts, training
from helpers.files import fileio
from helpers.app import workflows


@pytest.mark.slow
def test_train_from_source_writes_complete_artefacts(tmp_path):
    source = make_fashion_folders(tmp_path / "data")
    lines = []
    with pytest.warns(UserWarning, match="broken.jpg"):
        result = workflows.train_from_source(
            source, tmp_path / "run", layout="split-folders", model="mlp", epochs=2,
            image_size=16, log=lines.append,
            options=workflows.TrainOptions(batch_size=8, val_size=0.25, test_size=0.25),
        )
    run = tmp_path / "run"
    for name in ("model.keras", "labels.json", "history.csv", "metrics.json", "splits.csv"):
        assert (run / name).is_file(), name
    assert not (run / "backup").exists()
    counts = result["counts"]
    assert counts == {"found": 33, "used": 32, "skipped": 1, "skipped_by_loader": 0, "unreadable": 1}
    assert counts["found"] == counts["used"] + counts["skipped"]
    assert any("1 skipped" in line for line in lines)
    assert sum(line.startswith("epoch ") for line in lines) == 2

    model, metadata = artefacts.load_artefacts(run)
    assert metadata["classes"] == ["blue", "red", "shirt", "shoe"]
    assert metadata["task"] == "multi_label" and metadata["target_size"] == [16, 16]
    splits = artefacts.read_splits(run)
    assert splits["split"].value_counts().to_dict() == {"train": 16, "val": 8, "test": 8}
    relative = pd.DataFrame({"filename": [os.path.relpath(p) for p in splits["absolute_path"]]})
    assert artefacts.assign_splits(relative, run).tolist() == splits["split"].tolist()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["n_images"] == 8 and 0 <= metrics["test"]["f1_micro"] <= 1
    assert result["images_per_second"] > 0
    # the default cosine schedule: 1 epoch of warm-up to the peak, then down to 0 at the end
    assert result["history"]["learning_rate"].tolist() == pytest.approx([1e-3, 0.0], abs=1e-9)


@pytest.mark.slow
def test_train_from_source_multi_class_and_wrong_task(tmp_path):
    source = tmp_path / "animals"
    for index, name in enumerate(["cats", "dogs", "panda"]):
        (source / name).mkdir(parents=True)
        for k in range(6):
            colour = np.zeros((12, 12, 3), dtype=np.uint8)
            colour[..., index] = 200 + k
            Image.fromarray(colour).save(source / name / f"{k}.png")
    result = workflows.train_from_source(
        source, tmp_path / "run", layout="folders", model="mlp", epochs=1, image_size=12,
        log=None, options=workflows.TrainOptions(
            task="auto", batch_size=6, val_size=0.2, test_size=0.2, augment=False,
            schedule="plateau", learning_rate=2e-3),
    )
    assert result["history"]["learning_rate"].tolist() == pytest.approx([2e-3])
    assert result["metadata"]["task"] == "multi_class"
    assert result["model"].layers[-1].activation.__name__ == "softmax"

    fashion = make_fashion_folders(tmp_path / "fashion", per_folder=3, broken=False)
    with pytest.raises(ValueError, match="exactly one label per image"):
        workflows.train_from_source(fashion, tmp_path / "run2", layout="split-folders",
                                    epochs=1, image_size=12, log=None,
                                    options=workflows.TrainOptions(task="multi_class"))


TRAIN_SCRIPT = """
import sys
from helpers.app.workflows import TrainOptions, train_from_source
train_from_source(sys.argv[1], sys.argv[2], layout="split-folders", model="mlp",
                  epochs=int(sys.argv[3]), image_size=16, patience=50,
                  options=TrainOptions(batch_size=4, val_size=0.25, test_size=0.25),
                  log=lambda line: print(line, flush=True))
"""


def _run_training(source, out_dir, epochs, kill_after_line=None, timeout=240):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(
        [sys.executable, "-c", TRAIN_SCRIPT, str(source), str(out_dir), str(epochs)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO_ROOT,
    )
    lines = []
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if kill_after_line and line.startswith(kill_after_line):
            process.send_signal(signal.SIGKILL)
            break
        if time.monotonic() > deadline:
            process.kill()
            break
    process.wait(timeout=30)
    process.stdout.close()
    return process.returncode, lines


@pytest.mark.slow
def test_sigkilled_training_resumes_and_ends_with_complete_artefacts(tmp_path):
    source = make_fashion_folders(tmp_path / "data", per_folder=6, broken=False)
    out_dir = tmp_path / "run"
    code, lines = _run_training(source, out_dir, epochs=4, kill_after_line="epoch 2/4")
    assert code == -signal.SIGKILL, lines
    assert not (out_dir / "labels.json").exists() and not (out_dir / "model.keras").exists()
    assert artefacts.backup_epoch(out_dir) == 2  # a printed epoch line means a saved backup

    code, lines = _run_training(source, out_dir, epochs=4)
    assert code == 0, lines
    assert any(line.startswith("Resuming from epoch 3/4") for line in lines), lines
    assert [line.split(" - ")[0] for line in lines if line.startswith("epoch ")] == [
        "epoch 3/4", "epoch 4/4"
    ]
    model, metadata = artefacts.load_artefacts(out_dir)
    assert metadata["classes"] == ["blue", "red", "shirt", "shoe"]
    history = artefacts.read_history(out_dir)
    assert history.index.tolist() == [0, 1, 2, 3]
    # the optimizer's step count was restored, so the schedule went on where it stopped:
    # 12 training images in batches of 4 = 3 steps per epoch
    schedule = training.cosine_schedule(1e-3, epochs=4, steps_per_epoch=3)
    expected = [float(schedule(step)) for step in (3, 6, 9, 12)]
    np.testing.assert_allclose(history["learning_rate"], expected, rtol=1e-5, atol=1e-9)
    assert not (out_dir / "backup").exists()
    assert not [name for name in os.listdir(out_dir) if name.startswith(".")]  # no temp files


@pytest.mark.parametrize("kwargs, error, message", [
    ({"options": workflows.TrainOptions(schedule="step")}, ValueError, "schedule must be one of"),
    ({"options": workflows.TrainOptions(task="multi")}, ValueError, "task must be one of"),
    ({"model": "smallvgg"}, ValueError, "model must be one of"),
    ({"epochs": 0}, ValueError, "epochs must be a positive integer"),
    ({"batch_size": 8, "seed": 1}, TypeError, r"batch_size, seed belong in options=TrainOptions"),
])
def test_wrong_training_choices_are_refused_before_any_work(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        workflows.train_from_source(tmp_path / "missing", tmp_path / "run", log=None, **kwargs)
    assert not (tmp_path / "run").exists()


def test_resuming_with_other_settings_is_refused(tmp_path):
    source = make_fashion_folders(tmp_path / "data", per_folder=2, broken=False)
    out_dir = tmp_path / "run"
    (out_dir / "backup").mkdir(parents=True)
    (out_dir / "backup" / "latest.weights.h5").write_bytes(b"")
    (out_dir / "backup" / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    fileio.atomic_write_json(out_dir / "run.json", {"model": "mlp", "image_size": [16, 16]})
    with pytest.raises(ValueError, match="interrupted run with other settings"):
        workflows.train_from_source(source, out_dir, layout="split-folders", model="smallvggnet",
                                   epochs=1, image_size=16, log=None)


def test_evaluate_model_dir_uses_the_saved_split_and_tunes_thresholds(tmp_path, photos):
    save_model_folder(tmp_path)
    folder, paths = photos
    dataframe = pd.DataFrame({
        "filename": [str(p) for p in paths],
        "labels": [["red", "shirt"], ["blue"], ["shoe"], ["red"]],
    })
    splits = dataframe.assign(split=["val", "val", "test", "test"])
    splits["labels"] = ["|".join(labels) for labels in splits["labels"]]
    splits[["filename", "split", "labels"]].to_csv(tmp_path / "splits.csv", index=False)

    report = workflows.evaluate_model_dir(tmp_path, dataframe, split="test")
    assert report["n_images"] == 2 and report["split"] == "test"
    assert set(report["per_class"]) == set(CLASSES)
    assert {"micro", "macro", "weighted", "mAP"} <= set(report)

    # Two validation images: no tuned threshold beats the noise, so every class keeps 0.5,
    # each with its reason, and what is saved is what the report says.
    tuned = workflows.evaluate_model_dir(tmp_path, dataframe, split="all", tune_thresholds=True)
    choice = tuned["threshold_choice"]["per_class"]
    saved = artefacts.load_artefacts(tmp_path)[1]["thresholds"]
    assert list(choice) == CLASSES
    assert saved == pytest.approx([choice[label]["threshold"] for label in CLASSES])
    assert all(row["reason"] for row in choice.values())
    assert not any(row["kept"] for row in choice.values()) and saved == [0.5] * len(CLASSES)

    with pytest.raises(ValueError, match="not trained on"):
        workflows.evaluate_model_dir(tmp_path, dataframe.assign(labels=[["zebra"]] * 4))
    elsewhere = dataframe.assign(filename=[f"/elsewhere/{p.name}" for p in paths])
    with pytest.raises(ValueError, match="none of its 'test' images"):
        workflows.evaluate_model_dir(tmp_path, elsewhere, split="test")
