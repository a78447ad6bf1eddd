"""Tests for helpers.files.fileio: atomic writes leave the old file or the new one; strict JSON."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from helpers.files import fileio


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
    (b'{"a": "caf\xe9"}', r"not UTF-8 text \(line 1: byte 0xe9"),
    (b"[" * 5000 + b"]" * 5000, "nests 5000 levels deep"),
])
def test_read_json_names_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "labels.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        fileio.read_json(path, what="labels file")
    assert str(path) in str(error.value)


def test_read_json_reads_utf16_and_utf8_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "labels.json"
    for encoding in ("utf-16", "utf-8-sig", "utf-32"):
        path.write_bytes('{"classes": ["caf\u00e9"]}'.encode(encoding))
        assert fileio.read_json(path) == {"classes": ["caf\u00e9"]}


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "found a folder"),
    (lambda p: os.symlink(p.parent / "gone", p), r"not found \(broken symbolic link\)"),
    (lambda p: os.symlink(p.name, p), "Too many levels of symbolic links"),
    (lambda p: os.mkfifo(p), "not a regular file"),
    (lambda p: p.write_bytes(b" " * 2000), "too large"),
])
def test_read_bytes_refuses_what_is_not_a_small_regular_file(tmp_path, make, message):
    path = tmp_path / "x.json"
    make(path)
    with pytest.raises(fileio.ReadError, match=message) as error:
        fileio.read_bytes(path, max_bytes=1000)
    assert str(error.value).startswith(str(path))


def test_printable_shows_bytes_that_are_not_utf8():
    name = os.fsdecode(b"caf\xe9.jpg")
    assert fileio.printable(name) == "caf\\xe9.jpg"
    assert fileio.printable(b"caf\xe9.jpg") == "caf\\xe9.jpg"
    assert fileio.printable(Path("caf\u00e9.jpg")) == "caf\u00e9.jpg"


def test_check_text_names_the_line_across_chunks():
    data = b"a,b\n" * 10 + b"x\xe9,1\n"
    with pytest.raises(fileio.ReadError, match=r"line 11: byte 0xe9"):
        fileio.check_text(data, "t.csv", "utf-8", what="CSV file", chunk_bytes=7)
    fileio.check_text(("a\u00e9b\n" * 50).encode(), "t.csv", "utf-8", chunk_bytes=5)
