import json

import numpy as np
import pytest

from helpers.labels import LabelVocabulary, to_label_lists


@pytest.fixture
def vocabulary():
    return LabelVocabulary.from_labels([["red", "shirt"], ["blue", "jeans"], [], ["red", "shoe"]])


def test_classes_are_sorted_and_unique(vocabulary):
    assert vocabulary.classes == ["blue", "jeans", "red", "shirt", "shoe"]
    assert len(vocabulary) == 5
    assert "red" in vocabulary and "green" not in vocabulary
    assert LabelVocabulary(["b", "a"]).classes == ["a", "b"]


@pytest.mark.parametrize("classes", [["a", "a"], ["a", ""], ["a", 3], "abc"])
def test_bad_classes_raise(classes):
    with pytest.raises(ValueError, match="classes"):
        LabelVocabulary(classes)


def test_encode_matches_multilabelbinarizer(vocabulary):
    from sklearn.preprocessing import MultiLabelBinarizer

    rows = [["red", "shirt"], [], ["shoe", "blue", "red"], ["jeans"]]
    expected = MultiLabelBinarizer(classes=vocabulary.classes).fit_transform(rows)
    encoded = vocabulary.encode(rows)
    assert encoded.dtype == np.float32
    assert encoded.shape == (4, 5)
    np.testing.assert_array_equal(encoded, expected)


def test_encode_accepts_single_strings_and_missing(vocabulary):
    encoded = vocabulary.encode(["red", None, float("nan"), (" red ", "red")])
    np.testing.assert_array_equal(encoded.sum(axis=1), [1, 0, 0, 1])


def test_unknown_labels_are_listed(vocabulary):
    with pytest.raises(ValueError, match=r"2 label\(s\) not in the vocabulary: \['green', 'hat'\]"):
        vocabulary.encode([["red"], ["green", "hat"]])


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        (0.5, [["blue", "red"], []]),
        (0.1, [["blue", "jeans", "red"], ["shoe"]]),
        ([0.9, 0.1, 0.5, 0.5, 0.5], [["jeans", "red"], []]),
    ],
)
def test_decode_thresholds(vocabulary, threshold, expected):
    scores = np.array([[0.6, 0.2, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.3]])
    assert vocabulary.decode(scores, threshold=threshold) == expected


def test_decode_round_trip(vocabulary):
    rows = [["red", "shirt"], [], ["blue", "jeans"]]
    assert vocabulary.decode(vocabulary.encode(rows)) == rows


@pytest.mark.parametrize(("matrix", "threshold"), [(np.zeros((2, 4)), 0.5), (np.zeros((2, 5)), [0.5, 0.5])])
def test_decode_rejects_bad_shapes(vocabulary, matrix, threshold):
    with pytest.raises(ValueError, match="expected"):
        vocabulary.decode(matrix, threshold=threshold)


def test_sparse_helpers():
    vocabulary = LabelVocabulary(["cats", "dogs", "panda"])
    indices = vocabulary.encode_sparse(["panda", ["cats"], "dogs"])
    np.testing.assert_array_equal(indices, [2, 0, 1])
    assert indices.dtype == np.int32
    assert vocabulary.decode_sparse(indices) == ["panda", "cats", "dogs"]
    assert vocabulary.index("dogs") == 1
    with pytest.raises(ValueError, match="exactly one label"):
        vocabulary.encode_sparse([["cats", "dogs"]])
    with pytest.raises(ValueError, match="out of range"):
        vocabulary.decode_sparse([3])


def test_json_round_trip(vocabulary, tmp_path):
    path = vocabulary.save(tmp_path / "sub" / "labels.json")
    assert json.loads(path.read_text())["classes"] == vocabulary.classes
    assert LabelVocabulary.load(path) == vocabulary


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"labels": ["a"]}', "'classes' list"),
        ('{"classes": ["a", 1]}', "list of strings"),
        ('{"classes": ["a", "a"]}', "duplicate"),
    ],
)
def test_load_validates(tmp_path, content, message):
    path = tmp_path / "labels.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        LabelVocabulary.load(path)
    assert str(path) in str(error.value)


def test_load_missing_file(tmp_path):
    with pytest.raises(ValueError, match="nope.json: label file not found"):
        LabelVocabulary.load(tmp_path / "nope.json")


def test_to_label_lists_rejects_numbers():
    with pytest.raises(ValueError, match="column 'tags', row 1"):
        to_label_lists([["a"], 5], column="tags")
