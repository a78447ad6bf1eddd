"""Set a notebook up in one call: its output folder, quiet logs, the series' plot style.

    from helpers.notebook import setup
    nb = setup("03_smallvggnet")      # before `import keras`: it quietens TensorFlow
    ...
    nb.save(display, "training_curves")

Outputs are kept apart by how the notebook runs, so that no run overwrites another's models
and figures:

==========================  ===========================================================
``outputs/full/``           ``make run`` (the runner sets ``HELPERS_BATCH_RUN=1``)
``outputs/quick/``          ``make run QUICK=1`` and the tests
``outputs/interactive/``    JupyterLab (``make lab``), or any other run
``outputs/interactive-quick/``  the same with ``QUICK=1``
==========================  ===========================================================
"""
import importlib
import logging
import os
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from helpers import OUTPUTS_DIR, QUICK

BATCH_ENVIRONMENT = "HELPERS_BATCH_RUN"
MODES = ("full", "quick", "interactive", "interactive-quick")


def run_mode(quick=QUICK):
    """``"full"``, ``"quick"``, ``"interactive"`` or ``"interactive-quick"`` (see the module docstring)."""
    batch = os.environ.get(BATCH_ENVIRONMENT, "").strip().lower() not in ("", "0", "false", "no")
    if batch:
        return "quick" if quick else "full"
    return "interactive-quick" if quick else "interactive"


@dataclass
class Notebook:
    """What ``setup`` prepared.

    Attributes
    ----------
    name : str
        The notebook, e.g. ``"03_smallvggnet"``.
    quick : bool
        The quick-run switch (environment variable ``QUICK=1``).
    mode : str
        One of ``MODES``.
    out_dir : Path
        ``outputs/<mode>/<name>/``: this notebook's figures and models.
    """

    name: str
    quick: bool
    mode: str
    out_dir: Path

    def save(self, figure_or_display, name):
        """Save a figure (or a plot Display, or an Axes) as ``out_dir/<name>.png``.

        Returns None, so that a cell ending with it shows the figure and nothing else; the
        file is ``nb.out_dir / f"{name}.png"``.
        """
        figure = getattr(figure_or_display, "figure_", None) or getattr(
            figure_or_display, "figure", figure_or_display)
        if not hasattr(figure, "savefig"):
            raise ValueError(f"save: expected a matplotlib figure, Axes or Display, got "
                             f"{type(figure_or_display).__name__}")
        figure.savefig(self.out_dir / f"{name}.png")

    def outputs_of(self, notebook, *parts):
        """Path of another notebook's output in this run's mode (``outputs/<mode>/<notebook>/...``)."""
        return OUTPUTS_DIR / self.mode / notebook / Path(*parts)

    def __repr__(self):
        return f"Notebook({self.name!r}, mode={self.mode!r}, out_dir='{self.out_dir}')"


def _errors_only(record):
    return record.levelno >= logging.ERROR


# TensorFlow's C++ start-up lines: written to the process's stderr while TensorFlow loads,
# before its log level applies (abseil-cpp logs below the threshold until it is initialised,
# abseil/abseil-cpp#1718), so TF_CPP_MIN_LOG_LEVEL does not hide them.
_STARTUP_CHATTER = re.compile(
    r"All log messages before absl::InitializeLog|^[IW]\d{4} [\d:. ]+\d+ "
    r"(port|cpu_feature_guard)\.cc:\d+\]|^To enable the following instructions:")


def import_tensorflow_quietly(module="tensorflow"):
    """Import TensorFlow with its C++ start-up lines held back; any other line still shows.

    The process's stderr (file descriptor 2, where the C++ code writes) goes to a temporary
    file while TensorFlow loads; afterwards every line of it that is not start-up chatter
    (``_STARTUP_CHATTER``) is written to ``sys.stderr``. Does nothing once TensorFlow is loaded.
    ``module`` names another module to import the same way.
    """
    if module in sys.modules:
        return
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            importlib.import_module(module)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not _STARTUP_CHATTER.search(line):
                    sys.stderr.write(line)


def quiet_logs():
    """Hide TensorFlow's start-up and retracing chatter, and one Keras notice about every dataset.

    Keras 3 warns "`shuffle=True` was passed, but will be ignored" whenever ``fit`` gets a
    ``tf.data.Dataset`` with its default ``shuffle=True``: our datasets shuffle themselves.
    Nothing else is filtered, so any other warning of your own code still shows.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import_tensorflow_quietly()
    logger = logging.getLogger("tensorflow")
    logger.setLevel(logging.ERROR)
    # Imported in Jupyter, TensorFlow sets its logger back to INFO; a filter stays.
    if _errors_only not in logger.filters:
        logger.addFilter(_errors_only)
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed, but will be ignored")


def setup(name, quiet=True, style=True):
    """Prepare a notebook: its output folder, quiet logs and the plot style.

    Parameters
    ----------
    name : str
        The notebook's name, e.g. ``"03_smallvggnet"``; its outputs go to
        ``outputs/<mode>/<name>/``.
    quiet : bool, default=True
        Hide TensorFlow's log lines (call ``setup`` before ``import keras`` for the C++ ones).
    style : bool, default=True
        Apply the series' plot theme (``helpers.plots.set_theme``).

    Returns
    -------
    Notebook
    """
    if quiet:
        quiet_logs()
    if style:
        from helpers import plots

        plots.set_theme()
        try:
            import pandas as pd

            pd.set_option("display.precision", 3)
            pd.set_option("display.max_colwidth", 60)
        except ImportError:  # pandas is a dependency; a partial install still gets its folder
            pass
    mode = run_mode()
    out_dir = OUTPUTS_DIR / mode / name
    out_dir.mkdir(parents=True, exist_ok=True)
    notebook = Notebook(name=name, quick=QUICK, mode=mode, out_dir=out_dir)
    print(f"{name}: {mode} mode, outputs in {out_dir}")
    return notebook
