"""Tests for helpers.notebook: one setup call, outputs kept apart by run mode."""
import os
import subprocess
import sys

import matplotlib
import matplotlib.pyplot as plt
import pytest

from helpers import notebook, plots


@pytest.mark.parametrize("batch, quick, mode", [
    ("1", False, "full"), ("1", True, "quick"), (None, False, "interactive"),
    (None, True, "interactive-quick"),
])
def test_run_mode_keeps_batch_and_interactive_runs_apart(monkeypatch, batch, quick, mode):
    if batch is None:
        monkeypatch.delenv(notebook.BATCH_ENVIRONMENT, raising=False)
    else:
        monkeypatch.setenv(notebook.BATCH_ENVIRONMENT, batch)
    assert notebook.run_mode(quick=quick) == mode


def test_setup_gives_a_folder_per_mode_and_saves_any_figure(monkeypatch, tmp_path):
    monkeypatch.setattr(notebook, "OUTPUTS_DIR", tmp_path)
    monkeypatch.setenv(notebook.BATCH_ENVIRONMENT, "1")
    with matplotlib.rc_context():
        nb = notebook.setup("07_example")
        assert matplotlib.rcParams["axes.titleweight"] == "bold"  # the series' theme
    assert nb.out_dir == tmp_path / nb.mode / "07_example" and nb.out_dir.is_dir()
    display = plots.plot_label_counts({"a": 2, "b": 1})
    figure, ax = plt.subplots()
    assert [nb.save(display, "display"), nb.save(figure, "figure"), nb.save(ax, "axes")] == [None] * 3
    saved = [nb.out_dir / name for name in ("display.png", "figure.png", "axes.png")]
    assert all(path.stat().st_size > 0 for path in saved)
    assert nb.outputs_of("03_smallvggnet", "model") == tmp_path / nb.mode / "03_smallvggnet" / "model"
    with pytest.raises(ValueError, match="figure"):
        nb.save("not a figure", "x")
    plt.close("all")


def test_tensorflow_start_up_lines_are_held_back_and_others_pass(tmp_path):
    # a module that writes to file descriptor 2 as TensorFlow's C++ code does while loading
    (tmp_path / "chatty.py").write_text(
        "import os\n"
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are "
        "written to STDERR\\n')\n"
        "os.write(2, b'I0000 00:00:1796135137.717276   14140 port.cc:153] oneDNN custom "
        "operations are on.\\n')\n"
        "os.write(2, b'E0000 00:00:1.5 12 loader.cc:7] something real went wrong\\n')\n"
    )
    script = ("import sys\nfrom helpers.notebook import import_tensorflow_quietly\n"
              "import_tensorflow_quietly('chatty'); import_tensorflow_quietly('chatty')\n"
              "print('done', file=sys.stderr)\n")
    environment = dict(os.environ, PYTHONPATH=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=True, env=environment)
    assert result.stderr.splitlines() == [
        "E0000 00:00:1.5 12 loader.cc:7] something real went wrong", "done"]


def test_quiet_logs_hides_what_tensorflow_prints_when_it_loads():
    script = ("import sys\nfrom helpers.notebook import quiet_logs\nquiet_logs()\n"
              "import keras\nprint('tensorflow' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "True"
    assert "absl::InitializeLog" not in result.stderr and "port.cc" not in result.stderr


@pytest.mark.parametrize("batch", [False, True])
def test_in_jupyter_tensorflow_loads_quietly_and_progress_bars_do_not_warn(batch, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    if batch:
        monkeypatch.setenv("HELPERS_BATCH_RUN", "1")
    else:
        monkeypatch.delenv("HELPERS_BATCH_RUN", raising=False)
    cell = ("from helpers import progress_bar\nfrom helpers.notebook import quiet_logs\n"
            "quiet_logs()\nimport keras\nprint(sum(progress_bar(range(3), desc='count')))")
    executed = nbclient.NotebookClient(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)]), timeout=120,
        kernel_name="python3").execute()
    outputs = executed.cells[0].outputs
    assert not [output for output in outputs if output.get("name") == "stderr"]
    stdout = "".join(output.text for output in outputs if output.get("name") == "stdout")
    widgets = [output for output in outputs
               if "application/vnd.jupyter.widget-view+json" in output.get("data", {})]
    if batch:  # a plain text bar, saved with the notebook
        assert "count" in stdout and stdout.endswith("3\n") and not widgets
    else:  # JupyterLab's progress widget (ipywidgets)
        assert stdout == "3\n" and widgets
