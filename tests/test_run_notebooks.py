"""tools/run_notebooks.py, the runner behind `make run`, on tiny notebooks."""
import importlib.util
import tempfile
from pathlib import Path

import nbformat
import pytest

TOOL = Path(__file__).resolve().parent.parent / "tools" / "run_notebooks.py"


@pytest.fixture(scope="module")
def runner():
    spec = importlib.util.spec_from_file_location("run_notebooks", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_notebook(path, *sources):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    nbformat.write(notebook, path)
    return path


def test_executes_in_the_notebook_folder_and_writes_ipynb_and_html(runner, tmp_path):
    notebook_dir = tmp_path / "notebooks"
    notebook_dir.mkdir()
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    path = write_notebook(notebook_dir / "01_tiny.ipynb", "import os\nprint(os.getcwd())", "6 * 7")
    socket_dirs_before = set(Path(tempfile.gettempdir()).glob("kernel-*"))

    runner.execute(path, output_dir, timeout=120)

    executed = nbformat.read(output_dir / "01_tiny.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"].strip() == str(notebook_dir)
    assert executed.cells[1].outputs[0]["data"]["text/plain"] == "42"
    assert "42" in (output_dir / "01_tiny.html").read_text(encoding="utf-8")
    left = set(Path(tempfile.gettempdir()).glob("kernel-*")) - socket_dirs_before
    assert not left, f"kernel sockets left behind: {left}"


def test_a_failing_notebook_is_kept_under_another_name(runner, tmp_path):
    path = write_notebook(tmp_path / "02_broken.ipynb", "x = 1", "raise ValueError('broken on purpose')", "y = 2")
    output_dir = tmp_path / "out"
    output_dir.mkdir()

    with pytest.raises(Exception, match="broken on purpose"):
        runner.execute(path, output_dir, timeout=120)

    assert not (output_dir / "02_broken.ipynb").exists(), "a failed run must not pass for an up-to-date one"
    failed = nbformat.read(output_dir / "02_broken.failed.ipynb", as_version=4)
    assert failed.cells[1].outputs[0]["output_type"] == "error"
    assert not failed.cells[2].outputs
    assert (output_dir / "02_broken.failed.html").exists()
