"""Helpers for the multi-label image classification tutorial series.

Modules are imported on demand (``from helpers import data``) so that the CLI's
light commands, such as ``scan``, start without loading TensorFlow.
"""
import os
from pathlib import Path

__version__ = "0.1.0"

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
OUTPUTS_DIR = REPO_ROOT / "outputs"

# The one switch for quick runs: same code path, fewer images and epochs.
QUICK = os.environ.get("QUICK", "0").strip().lower() not in ("", "0", "false", "no")
