"""Every notebook runs top to bottom in quick mode (same code path, fewer images and epochs)."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("0*.ipynb"))


def test_notebooks_exist():
    names = [path.name[:2] for path in NOTEBOOKS]
    assert names == sorted(set(names)), f"notebook numbers should be unique and ordered: {names}"
    assert names, f"no notebooks in {NOTEBOOKS_DIR}"


@pytest.mark.parametrize("notebook_path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(notebook_path):
    notebook = nbformat.read(notebook_path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{notebook_path.name} has outputs"


@pytest.mark.notebook
@pytest.mark.parametrize("notebook_path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(notebook_path, monkeypatch):
    monkeypatch.setenv("QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(notebook_path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors
    assert any(cell.outputs for cell in notebook.cells if cell.cell_type == "code")
