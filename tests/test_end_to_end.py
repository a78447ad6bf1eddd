"""Bad input, end to end: scan, audit, train, evaluate and predict on a dataset with broken
files, a malformed XML, hostile paths and bad CSV rows. Each command finishes, reports each
skipped file once with its reason, and the counts add up."""
import json
import re
import subprocess
import sys

import pytest

from helpers.app.cli import main
from helpers.datasets.generate import make_dataset

BROKEN_IMAGES = {
    "broken_empty.jpg": b"",
    "broken_text.jpg": b"this is not a picture\n",
    "broken_random.jpg": bytes(range(256)) * 3,
}
VOC_XML = """<annotation><folder>VOC</folder><filename>{filename}</filename>
<size><width>64</width><height>64</height><depth>3</depth></size>
<object><name>person</name><difficult>0</difficult>
<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object></annotation>
"""


@pytest.fixture(scope="module")
def hostile_scenes(tmp_path_factory):
    """The embedded scenes data plus broken images, a malformed XML, an escaping path and
    bad CSV rows."""
    root = tmp_path_factory.mktemp("e2e") / "scenes"
    make_dataset("scenes", root, scale=0.08, progress=False)
    images, annotations = root / "JPEGImages", root / "Annotations"
    for name, content in BROKEN_IMAGES.items():
        (images / name).write_bytes(content)
        (annotations / name.replace(".jpg", ".xml")).write_text(VOC_XML.format(filename=name))
    (annotations / "malformed.xml").write_text("<annotation><filename>x.jpg</filename><object>")
    (annotations / "escaping.xml").write_text(VOC_XML.format(filename="../../outside.jpg"))

    rows = (root / "Data_Entry.csv").read_text().splitlines()
    rows += [f"{name},person,999" for name in BROKEN_IMAGES]
    rows += ["../../outside.jpg,person,998", "only_one_field_row"]
    (root / "hostile.csv").write_text("\n".join(rows) + "\n")
    return root


def count_files(folder, suffix):
    return sum(1 for path in folder.iterdir() if path.suffix == suffix)


def test_scan_and_audit_account_for_every_input(hostile_scenes, capsys):
    n_xml = count_files(hostile_scenes / "Annotations", ".xml")
    assert main(["scan", str(hostile_scenes), "--format", "json"]) == 0
    scan = json.loads(capsys.readouterr().out)
    skipped = {item["path"].rsplit("/", 1)[-1]: item["reason"] for item in scan["skipped"]}
    assert set(skipped) == {"malformed.xml", "escaping.xml"}
    assert scan["n_images"] + len(skipped) == n_xml
    unreadable = {str(item.get("path", item)).rsplit("/", 1)[-1] for item in scan["unreadable"]}
    assert set(BROKEN_IMAGES) <= unreadable

    assert main(["audit", str(hostile_scenes), "--format", "json"]) == 1
    audit = json.loads(capsys.readouterr().out)
    bad = {entry["path"].rsplit("/", 1)[-1]: entry["error"] for entry in audit["files"] if not entry["ok"]}
    assert set(bad) == set(BROKEN_IMAGES) and all(bad.values())
    assert audit["n_ok"] + audit["n_bad"] == scan["n_images"]


def test_csv_with_bad_rows_is_loaded_with_reported_skips(hostile_scenes, capsys):
    csv_path = hostile_scenes / "hostile.csv"
    n_rows = len(csv_path.read_text().splitlines()) - 1
    assert main(["scan", str(csv_path), "--image-directory", str(hostile_scenes / "JPEGImages"),
                 "--format", "json"]) == 0
    scan = json.loads(capsys.readouterr().out)
    reasons = " ".join(item["reason"] for item in scan["skipped"])
    assert len(scan["skipped"]) == 2 and "outside" in " ".join(item["path"] for item in scan["skipped"])
    assert reasons
    assert scan["n_images"] + len(scan["skipped"]) == n_rows


@pytest.mark.slow
def test_train_evaluate_predict_finish_and_report_each_skip_once(hostile_scenes, tmp_path, capsys):
    out = tmp_path / "model"
    # A real process, so that the warnings are printed as a user sees them.
    train = subprocess.run(
        [sys.executable, "-m", "helpers", "train", str(hostile_scenes), "--model", "mlp", "--epochs", "2",
         "--image-size", "32", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    log = train.stdout + train.stderr
    assert train.returncode == 0, log
    found, used, skipped = map(int, re.search(r"(\d+) inputs found: (\d+) images used, (\d+) skipped", log).groups())
    assert found == used + skipped
    assert skipped == len(BROKEN_IMAGES) + 2
    for name in [*BROKEN_IMAGES, "malformed.xml", "escaping.xml"]:
        assert log.count(name) == 1, f"{name} reported {log.count(name)} times:\n{log}"
    for artefact in ("model.keras", "labels.json", "history.csv", "metrics.json"):
        assert (out / artefact).is_file()

    assert main(["evaluate", "--model-dir", str(out), str(hostile_scenes), "--split", "test",
                 "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_images"] > 0 and set(report["per_class"]) == set(json.loads((out / "labels.json").read_text())["classes"])

    assert main(["evaluate", "--model-dir", str(out), str(hostile_scenes), "--split", "test",
                 "--tune-thresholds", "--min-precision", "0.5"]) == 0
    text = capsys.readouterr().out
    saved = json.loads((out / "labels.json").read_text())
    # One line per class says which threshold was saved and why.
    for label, threshold in zip(saved["classes"], saved["thresholds"]):
        assert re.search(rf"^  {re.escape(label)} +{threshold:.3f}  (kept|default kept): ", text, re.M), text

    assert main(["predict", "--model-dir", str(out), str(hostile_scenes / "JPEGImages"), "--format", "json"]) == 0
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    n_jpegs = count_files(hostile_scenes / "JPEGImages", ".jpg")
    assert len(results) == n_jpegs
    errors = {result["path"].rsplit("/", 1)[-1] for result in results if result["error"]}
    assert errors == set(BROKEN_IMAGES)
    good = [result for result in results if not result["error"]]
    assert all(set(result["probabilities"]) == set(report["per_class"]) for result in good)


def test_predict_with_a_wrong_model_folder_is_a_clear_error(tmp_path, capsys, hostile_scenes):
    (tmp_path / "not_a_model").mkdir()
    assert main(["predict", "--model-dir", str(tmp_path / "not_a_model"), str(hostile_scenes / "JPEGImages")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "labels.json" in err
