"""Set a notebook up in one call: its output folder, quiet logs, the series' plot style.

    from helpers.notebook import setup
    nb = setup("03_smallvggnet")      # before `import keras`: it quietens TensorFlow
    nb.save(display, "training_curves")

Runs keep their outputs apart: ``outputs/full/`` for ``make run`` (it sets ``HELPERS_BATCH_RUN=1``),
``quick/`` for ``make run QUICK=1`` and tests, ``interactive[-quick]/`` in JupyterLab or elsewhere.
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


def run_mode(quick=QUICK):
    """``"full"``, ``"quick"``, ``"interactive"`` or ``"interactive-quick"`` (module docstring)."""
    if os.environ.get(BATCH_ENVIRONMENT, "").strip().lower() not in ("", "0", "false", "no"):
        return "quick" if quick else "full"
    return "interactive-quick" if quick else "interactive"


@dataclass
class Notebook:
    """What ``setup`` prepared; ``out_dir`` is ``outputs/<mode>/<name>/``."""

    name: str
    quick: bool
    mode: str
    out_dir: Path

    def save(self, figure, name):
        """Save a figure, Display or Axes as ``out_dir/<name>.png``; None, so the cell shows it."""
        drawn = getattr(figure, "figure_", None) or getattr(figure, "figure", figure)
        if not hasattr(drawn, "savefig"):
            raise ValueError(f"save: expected a matplotlib figure, Axes or Display, got "
                             f"{type(figure).__name__}")
        drawn.savefig(self.out_dir / f"{name}.png")

    def outputs_of(self, notebook, *parts):
        """Path of another notebook's output in this run's mode."""
        return OUTPUTS_DIR / self.mode / notebook / Path(*parts)


def _errors_only(record):
    return record.levelno >= logging.ERROR


# C++ start-up lines (abseil ignores TF_CPP_MIN_LOG_LEVEL until initialised: abseil/abseil-cpp#1718)
# and oneDNN's DT_BOOL "error" (TensorFlow falls back to Eigen), logged at the first bool transpose.
_STARTUP_CHATTER = re.compile(
    r"All log messages before absl::InitializeLog|^[IW]\d{4} [\d:. ]+\d+ (port|cpu_feature_guard)"
    r"\.cc:\d+\]|^To enable the following instructions:|util\.cc:\d+\] oneDNN supports DT_BOOL")


def import_tensorflow_quietly(module="tensorflow"):
    """Import ``module`` with its C++ start-up lines (file descriptor 2) held back; others show."""
    if module in sys.modules:
        return
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            tf = importlib.import_module(module)
            if module == "tensorflow":  # that transpose (Keras' AUC makes one), in a graph apart
                with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
                    session.run(tf.transpose(tf.zeros((1, 1), tf.bool)))  # (no device set up yet)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            sys.stderr.writelines(line for line in lines if not _STARTUP_CHATTER.search(line))


def quiet_logs():
    """Hide TensorFlow's chatter and Keras' notice that ``fit`` ignores ``shuffle`` on a dataset."""
    # 3: no C++ log line at all; oneDNN logs notices as errors ("E0000 ... supports DT_INT32 only
    # on platforms with AVX-512"). Python errors and warnings still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import_tensorflow_quietly()
    logger = logging.getLogger("tensorflow")
    logger.setLevel(logging.ERROR)
    # Imported in Jupyter, TensorFlow sets its logger back to INFO; a filter stays.
    if _errors_only not in logger.filters:
        logger.addFilter(_errors_only)
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed, but will be ignored")


def setup(name, quiet=True, style=True):
    """Make ``name``'s :class:`Notebook`, after :func:`quiet_logs` (``quiet``) and the ``style``."""
    if quiet:
        quiet_logs()
    if style:
        import pandas as pd

        from helpers import plots

        plots.set_theme()
        pd.set_option("display.precision", 3, "display.max_colwidth", 60)
    mode = run_mode()
    out_dir = OUTPUTS_DIR / mode / name
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"{name}: {mode} mode, outputs in {out_dir}")
    return Notebook(name=name, quick=QUICK, mode=mode, out_dir=out_dir)
