"""Tests for helpers.notebook: one setup call, outputs kept apart by run mode."""
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
