"""Helpers for the multi-label image classification tutorial series.

The core, one module per stage of the data flow; a module imports only modules above it
and ``helpers.files`` (``tests/test_structure.py`` checks it, imports inside functions too):

======================  ===============================================================
``data``                a layout on disk (folders, VOC XML, CSV) → DataFrame
``scan``                DataFrame → label statistics, image sizes, audit
``labels``              label vocabulary: label lists ↔ multi-hot rows; the task
``splits``              train / validation / test splits (stratified, grouped)
``augment``             ImageDataGenerator-style augmentation for Keras 3
``pipeline``            DataFrame → ``tf.data`` batches
``evaluation``          truth + probabilities → metrics, thresholds (NumPy only)
``imbalance``           class and positive weights, weighted losses, priors
``models``              model builders (MLP, SmallVGGNet, ResNet50, VGG16)
``artefacts``           the model folder: save, load, validate, splits.csv, history
``predict``             a model → probabilities and labels (dataset, split, files)
``explain``             Grad-CAM: where the model found each label; the pointing game
``training``            compile, callbacks (validation uses ``predict``)
``plots``               figures in scikit-learn's Display style
``notebook``            a notebook's setup: output folder, quiet logs, plot style
======================  ===============================================================

What learners do not study lives in subpackages:

======================  ===============================================================
``files/``              defensive reading: encodings, strict JSON, images under a pixel
                        budget, the hardened XML / CSV readers, ImageNet weights
``scale/``              TFRecord shards, ``tf.distribute``
``app/``                the command line ``helpers …`` and the workflows behind it
``datasets/``           the generated datasets and public ones fetched the Keras way
======================  ===============================================================

Modules are imported on demand (``from helpers import data``), so the CLI's light commands,
such as ``scan``, start without loading TensorFlow.
"""
import os
import sys
import warnings
from pathlib import Path

__version__ = "0.2.0"

REPO_ROOT = Path(__file__).resolve().parent.parent
# The embedded datasets and every output live beside the package unless told otherwise.
DATA_DIR = Path(os.environ.get("HELPERS_DATA_DIR") or REPO_ROOT / "data")
OUTPUTS_DIR = Path(os.environ.get("HELPERS_OUTPUTS_DIR") or REPO_ROOT / "outputs")

# The one switch for quick runs: same code path, fewer images and epochs.
QUICK = os.environ.get("QUICK", "0").strip().lower() not in ("", "0", "false", "no")


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message, category=UserWarning):
    """``warnings.warn`` pointing at the first caller outside this package (your code's line).

    Parameters
    ----------
    message : str
    category : type, default UserWarning
    """
    # stacklevel 1 is this function, 2 its caller (the frame below), and so on.
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def progress_bar(iterable=None, **options):
    """``tqdm(iterable, **options)``: a widget in JupyterLab, a text bar in a terminal, and a
    text bar on stdout in a notebook run in batch (``HELPERS_BATCH_RUN``, as ``make run`` sets
    it), where a widget would not be saved."""
    if os.environ.get("HELPERS_BATCH_RUN"):
        from tqdm.std import tqdm

        return tqdm(iterable, file=sys.stdout, **options)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        from tqdm.auto import tqdm
    return tqdm(iterable, **options)
