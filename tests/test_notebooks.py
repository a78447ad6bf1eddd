"""Every notebook runs top to bottom in quick mode (same code path, fewer images and epochs)."""
import importlib.util
import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("0*.ipynb"))

_spec = importlib.util.spec_from_file_location(
    "check_claims", NOTEBOOKS_DIR.parent / "tools" / "check_claims.py")
check_claims = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_claims)


def snapshot(folder):
    """Every file below ``folder`` with its size and modification time."""
    return {str(path): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in folder.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def outputs_dir(tmp_path_factory):
    """An outputs folder holding what a full and an interactive run left (broken on purpose:
    a quick run that read them would fail, one that wrote there would change them)."""
    root = tmp_path_factory.mktemp("outputs")
    for mode in ("full", "interactive"):
        for notebook, folder in (("03_smallvggnet", "model"), ("04_resnet50", "model"),
                                 ("04_resnet50", "best_scenes")):
            model_dir = root / mode / notebook / folder
            model_dir.mkdir(parents=True)
            (model_dir / "labels.json").write_text('{"classes": "not a list"}')
            (model_dir / "splits.csv").write_text("filename,split,labels\n")
    return root, snapshot(root / "full"), snapshot(root / "interactive")


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
def test_notebook_runs_in_quick_mode(notebook_path, monkeypatch, outputs_dir):
    monkeypatch.setenv("HELPERS_OUTPUTS_DIR", str(outputs_dir[0]))
    monkeypatch.setenv("QUICK", "1")
    monkeypatch.setenv("HELPERS_BATCH_RUN", "1")  # as `make run QUICK=1` runs them
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(notebook_path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs]
    errors = [output for output in outputs if output.output_type == "error"]
    assert not errors
    assert outputs
    # Warnings name the caller's line, never IPython's machinery.
    text = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    assert "interactiveshell.py" not in text
    # The text states no duration, epoch or image count that the outputs do not show.
    unsupported = check_claims.check(json.loads(nbformat.writes(notebook)))
    assert not unsupported, "\n".join(f"cell {index}: {kind} {claim!r}" for index, kind, claim in unsupported)


@pytest.mark.notebook
def test_quick_runs_leave_other_runs_outputs_untouched(outputs_dir):
    root, full, interactive = outputs_dir
    assert snapshot(root / "full") == full and snapshot(root / "interactive") == interactive
    assert sorted(path.name for path in root.iterdir()) == ["full", "interactive", "quick"]
    assert (root / "quick" / "03_smallvggnet" / "model" / "model.keras").is_file()


def kernel_metadata():
    """The kernelspec and language_info JupyterLab writes into a notebook it opens."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import start_new_kernel

    spec = KernelSpecManager().get_kernel_spec("python3")
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        reply = client.kernel_info(reply=True, timeout=60)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    kernelspec = {"display_name": spec.display_name, "language": spec.language, "name": "python3"}
    return kernelspec, reply["content"]["language_info"]


def test_opening_a_notebook_in_jupyterlab_changes_nothing():
    kernelspec, language_info = kernel_metadata()
    for path in NOTEBOOKS:
        metadata = json.loads(path.read_text(encoding="utf-8"))["metadata"]
        assert metadata.get("kernelspec") == kernelspec, path.name
        assert metadata.get("language_info") == language_info, path.name
