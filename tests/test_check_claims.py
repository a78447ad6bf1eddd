"""Tests for tools/check_claims.py: figures in the text must be printed by the notebook."""
import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parent.parent / "tools" / "check_claims.py"
spec = importlib.util.spec_from_file_location("check_claims", TOOL)
check_claims = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_claims)


def notebook(markdown, printed):
    return {"cells": [
        {"cell_type": "code", "source": "print()", "outputs": [
            {"output_type": "stream", "name": "stdout", "text": printed}]},
        {"cell_type": "markdown", "source": markdown},
    ]}


@pytest.mark.parametrize("markdown, printed, kinds", [
    ("The model trained for 25 epochs.", "12 epochs in 300 s", ["epochs"]),
    ("The model trained for 12 epochs in 300 s.", "12 epochs in 300 s", []),
    ("It took several minutes on two cores.", "", ["duration"]),
    ("Training takes 983 s here.", "took 983.0 s", []),
    ("We held out 1,360 images.", "1360 training images", []),
    ("We held out 1,360 images.", "1280 training images", ["images"]),
    ("The clothing tutorial trained for 150 epochs.", "", []),
    ("A full run uses about 2,000 images and 25 epochs.", "500 images, 2 epochs", []),
    ("Use `EPOCHS = 30` and 64×64 pixels.", "", []),
])
def test_claims_need_an_output_that_shows_them(markdown, printed, kinds):
    assert [kind for _, kind, _ in check_claims.check(notebook(markdown, printed))] == kinds


def test_the_command_line_names_each_claim(tmp_path, capsys):
    import json

    path = tmp_path / "03.ipynb"
    path.write_text(json.dumps(notebook("It ran for 25 epochs.", "2 epochs")))
    assert check_claims.main([str(path)]) == 1
    assert "03.ipynb: cell 1: epochs '25 epochs'" in capsys.readouterr().out
