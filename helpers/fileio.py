"""Files the project writes and reads back: atomic writes and strict JSON.

Every file a run leaves behind (a model folder's ``labels.json``, ``metrics.json``,
``splits.csv``, a shard manifest...) is written through :func:`atomic_path`: the data goes
to a temporary file in the same folder, is flushed to disk, then renamed over the target.
After a crash there is the old file or the new one, never half of one.

:func:`to_jsonable` is the one place where NumPy numbers, paths and NaN become JSON.
"""
import contextlib
import json
import math
import os
import uuid
from pathlib import Path

import numpy as np


def to_jsonable(value):
    """Turn a value into something ``json.dumps`` writes as strict JSON.

    NumPy scalars and arrays become Python numbers and lists, tuples become lists, paths
    become strings, dictionary keys become strings, and NaN or infinity becomes ``None``
    (strict JSON has no NaN).

    Parameters
    ----------
    value : object

    Returns
    -------
    object
        Built from dict, list, str, int, float, bool and None only.
    """
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def dumps(document, indent=2):
    """``json.dumps`` of :func:`to_jsonable` (strict JSON, no NaN)."""
    return json.dumps(to_jsonable(document), indent=indent, allow_nan=False)


def _temporary_name(path):
    # Same folder (so the rename is atomic) and same suffixes (Keras checks ".keras",
    # ".weights.h5"), hidden, unique per process and call.
    suffixes = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffixes)] if suffixes else path.name
    return path.parent / f".{stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffixes}"


@contextlib.contextmanager
def atomic_path(path):
    """Give a temporary path to write; on success it replaces ``path`` in one step.

    Parameters
    ----------
    path : str or Path
        The file to (re)write. Its folder must exist.

    Yields
    ------
    Path
        Write the new content there (it has the same suffixes as ``path``). When the
        ``with`` block raises, ``path`` is left as it was and the temporary file is removed.
    """
    path = Path(path)
    temporary = _temporary_name(path)
    try:
        yield temporary
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically.

    Parameters
    ----------
    path : str or Path
    text : str
    """
    with atomic_path(path) as temporary:
        # Mode "x": a new file with the usual permissions (umask), unlike mkstemp's 0600.
        with open(temporary, "x", encoding="utf-8") as stream:
            stream.write(text)


def atomic_write_json(path, document):
    """Write ``document`` as indented strict JSON (see :func:`to_jsonable`), atomically.

    Parameters
    ----------
    path : str or Path
    document : object
    """
    atomic_write_text(path, dumps(document) + "\n")


def read_json(path, what="JSON file"):
    """Read a JSON file, with a ``ValueError`` naming the file when it cannot be used.

    Parameters
    ----------
    path : str or Path
    what : str
        What the file is, for the error message (``"labels file"``).

    Returns
    -------
    object
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: {what} not found") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot read the {what} ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: the {what} is not UTF-8 text ({error.reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: the {what} is not valid JSON ({error})") from None
