"""Tests for helpers.fileio: atomic writes leave the old file or the new one; strict JSON."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from helpers import fileio


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "labels.json"
    fileio.atomic_write_json(path, {"version": 1})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write_json(path, {"version": 2})
    assert json.loads(path.read_text()) == {"version": 1}
    assert os.listdir(tmp_path) == ["labels.json"]  # no temporary file left behind


def test_to_jsonable_gives_strict_json():
    document = {1: np.float32(0.5), "nan": float("nan"), "inf": np.inf, "ints": np.arange(3),
                "path": Path("a/b"), "tuple": (np.int64(2), True, np.bool_(False)), "none": None}
    text = fileio.dumps(document)
    assert json.loads(text) == {"1": 0.5, "nan": None, "inf": None, "ints": [0, 1, 2],
                                "path": "a/b", "tuple": [2, True, False], "none": None}
    assert "NaN" not in text and "Infinity" not in text


def test_atomic_path_keeps_the_suffixes_keras_checks(tmp_path):
    with fileio.atomic_path(tmp_path / "checkpoint.weights.h5") as temporary:
        assert temporary.name.endswith(".weights.h5") and temporary.parent == tmp_path
        temporary.write_bytes(b"weights")
    assert (tmp_path / "checkpoint.weights.h5").read_bytes() == b"weights"
    assert os.listdir(tmp_path) == ["checkpoint.weights.h5"]


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(tmp_path / "model.keras") as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("content, message", [
    (None, "labels file not found"),
    (b"{broken", "not valid JSON"),
    (b"\xff\xfe{\x00}\x00", "not UTF-8"),
])
def test_read_json_names_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "labels.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        fileio.read_json(path, what="labels file")
    assert str(path) in str(error.value)
