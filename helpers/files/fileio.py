"""Files the project writes and reads back: atomic writes, strict JSON, careful reading.

Every file a run leaves behind (a model folder's ``labels.json``, ``metrics.json``,
``splits.csv``, a shard manifest...) is written through :func:`atomic_path`: the data goes
to a temporary file in the same folder, is flushed to disk, then renamed over the target.
After a crash there is the old file or the new one, never half of one.

:func:`to_jsonable` is the one place where NumPy numbers, paths and NaN become JSON.

Files that come from elsewhere (a hand-edited ``labels.json``, a ``splits.csv`` saved by a
spreadsheet, an annotation in Shift_JIS) are read through :func:`read_bytes`,
:func:`read_text` and :func:`read_json`: a size limit before anything is read, the
encoding taken from a byte-order mark (UTF-8, UTF-16, UTF-32) or else UTF-8, a JSON
nesting limit checked without recursion, and every failure a :class:`ReadError` naming
the file and the line. :func:`printable` turns a file name that is not valid UTF-8 into
text that can be printed (``caf\\xe9.jpg``).
"""
import codecs
import contextlib
import json
import math
import os
import re
import stat
import uuid
from pathlib import Path

import numpy as np

# Default limits for files read back: far above what the project writes, far below what
# would exhaust memory.
_MAX_TEXT_BYTES = 256_000_000
_MAX_JSON_BYTES = 64_000_000
_MAX_JSON_DEPTH = 100

_BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')


class ReadError(ValueError):
    """A file that cannot be read as asked; ``str(error)`` is ``"path: reason"``.

    Parameters
    ----------
    path : str or os.PathLike
    reason : str
        Short human reason, e.g. ``"is a folder, not a file"``.
    """

    def __init__(self, path, reason):
        self.path = os.fspath(path) if isinstance(path, os.PathLike) else path
        self.reason = reason
        super().__init__(f"{printable(self.path)}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


def printable(name):
    """A file name as text that any terminal or notebook can show.

    On Linux a file name is bytes; Python keeps the bytes that are not UTF-8 as lone
    surrogates (``os.fsdecode``), which cannot be printed or written as UTF-8. They are
    shown as ``\\xe9`` escapes here; the name itself (for opening the file) is unchanged.

    Parameters
    ----------
    name : str, bytes or os.PathLike

    Returns
    -------
    str
    """
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if isinstance(name, bytes):
        return name.decode("utf-8", "backslashreplace")
    name = str(name)
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        try:
            return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return name.encode("utf-8", "backslashreplace").decode("utf-8")


def format_size(n_bytes):
    """A byte count for messages: ``"1.6 GB"``, ``"340 bytes"``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} bytes"


def read_bytes(path, what="file", max_bytes=_MAX_TEXT_BYTES):
    """Read a regular file's bytes, refusing folders, devices, pipes and oversized files.

    Parameters
    ----------
    path : str or os.PathLike
    what : str
        What the file is, for the error message (``"annotation"``).
    max_bytes : int
        Refuse a larger file before reading it.

    Returns
    -------
    bytes

    Raises
    ------
    ReadError
        Naming the file: missing, a broken or looping symbolic link, a folder, not a
        regular file, too large, unreadable.
    """
    try:
        status = os.stat(path)
    except FileNotFoundError:
        broken = os.path.islink(path)
        raise ReadError(path, f"{what} not found" + (" (broken symbolic link)" if broken else "")) from None
    except (OSError, ValueError) as error:  # ELOOP, EACCES, a NUL byte in the name...
        raise ReadError(path, f"cannot read the {what} ({_os_reason(error)})") from None
    if stat.S_ISDIR(status.st_mode):
        raise ReadError(path, f"expected the {what}, found a folder")
    if not stat.S_ISREG(status.st_mode):
        raise ReadError(path, f"the {what} is not a regular file (a device, pipe or socket)")
    if status.st_size > max_bytes:
        raise ReadError(path, f"the {what} is too large ({format_size(status.st_size)}, limit {format_size(max_bytes)})")
    try:
        with open(path, "rb") as stream:
            data = stream.read(max_bytes + 1)
    except OSError as error:
        raise ReadError(path, f"cannot read the {what} ({_os_reason(error)})") from None
    if len(data) > max_bytes:  # it grew since stat()
        raise ReadError(path, f"the {what} is too large (over {format_size(max_bytes)})")
    return data


def _os_reason(error):
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def sniff_encoding(data):
    """The encoding a byte-order mark, or the pattern of NUL bytes of UTF-16, gives; else None.

    Parameters
    ----------
    data : bytes

    Returns
    -------
    str or None
        A codec name for ``bytes.decode`` (``"utf-8-sig"``, ``"utf-16"``, ``"utf-16-le"``...).
    """
    for mark, encoding in _BOMS:
        if data.startswith(mark):
            return encoding
    head = data[:4096]
    if len(head) >= 4 and head.count(0) >= len(head) // 4:
        # Mostly-ASCII text in UTF-16 without a mark: every other byte is NUL.
        even, odd = head[0::2].count(0), head[1::2].count(0)
        if odd > 2 * even:
            return "utf-16-le"
        if even > 2 * odd:
            return "utf-16-be"
    return None


def decode_text(data, name, encoding=None, errors="strict", what="file"):
    """Decode a file's bytes: ``encoding`` if given, else its byte-order mark, else UTF-8.

    Parameters
    ----------
    data : bytes
    name : str or os.PathLike
        The file, for messages.
    encoding : str, optional
        Any Python codec name (``"latin-1"``, ``"shift_jis"``).
    errors : str
        ``"strict"`` (a bad byte is a :class:`ReadError` naming the line), or
        ``"surrogateescape"`` to keep undecodable bytes (file names) as they are.
    what : str
        What the file is, for messages.

    Returns
    -------
    str
    """
    if encoding is None:
        encoding = sniff_encoding(data) or "utf-8"
    else:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ReadError(name, f"unknown text encoding {encoding!r}") from None
    try:
        return data.decode(encoding, errors)
    except UnicodeDecodeError as error:
        line = data[: error.start].decode(encoding, "replace").count("\n") + 1
        byte = data[error.start: error.start + 1].hex()
        label = "UTF-8" if codecs.lookup(encoding).name == "utf-8" else encoding
        raise ReadError(name, f"the {what} is not {label} text (line {line}: byte 0x{byte} "
                              f"cannot be decoded)") from None


def check_text(data, name, encoding, what="file", chunk_bytes=16 * 2**20):
    """Check that ``data`` decodes with ``encoding``, chunk by chunk (no copy of the text is kept).

    Raises
    ------
    ReadError
        Naming the line of the first byte that does not decode.
    """
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    view = memoryview(data)
    for offset in range(0, max(len(data), 1), chunk_bytes):
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(view[offset: offset + chunk_bytes], final=offset + chunk_bytes >= len(data))
        except UnicodeDecodeError as error:
            start = max(0, offset - pending + error.start)
            line = data.count(b"\n", 0, start) + 1 if _ascii_newlines(encoding) else \
                data[:start].decode(encoding, "replace").count("\n") + 1
            label = "UTF-8" if codecs.lookup(encoding).name == "utf-8" else encoding
            raise ReadError(name, f"the {what} is not {label} text (line {line}: byte "
                                  f"0x{data[start:start + 1].hex()} cannot be decoded)") from None


def _ascii_newlines(encoding):
    return codecs.lookup(encoding).name not in ("utf-16", "utf-16-le", "utf-16-be", "utf-32",
                                                "utf-32-le", "utf-32-be")


def read_text(path, what="file", encoding=None, errors="strict", max_bytes=_MAX_TEXT_BYTES):
    """:func:`read_bytes`, then :func:`decode_text`.

    Returns
    -------
    str
    """
    return decode_text(read_bytes(path, what, max_bytes), path, encoding, errors, what)


def _json_depth(text):
    """How deeply a JSON text nests arrays and objects, counted without recursion.

    Parameters
    ----------
    text : str

    Returns
    -------
    int
    """
    outside_strings = _JSON_STRING.sub('""', text).encode("ascii", "ignore")
    codes = np.frombuffer(outside_strings, dtype=np.uint8)
    steps = np.isin(codes, (0x5B, 0x7B)).astype(np.int32) - np.isin(codes, (0x5D, 0x7D))
    return int(np.cumsum(steps).max(initial=0))


def loads(text, name, what="JSON file", max_depth=_MAX_JSON_DEPTH):
    """``json.loads`` with a nesting limit, every failure a :class:`ReadError` naming ``name``.

    Returns
    -------
    object
    """
    depth = _json_depth(text)
    if depth > max_depth:
        raise ReadError(name, f"the {what} nests {depth} levels deep (limit {max_depth}); "
                              "it was not written by this project")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ReadError(name, f"the {what} is not valid JSON ({error})") from None
    except RecursionError:
        raise ReadError(name, f"the {what} nests too deeply to read") from None


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


def atomic_write_text(path, text, errors="strict"):
    """Write ``text`` (UTF-8) to ``path`` atomically.

    Parameters
    ----------
    path : str or Path
    text : str
    errors : str
        ``"surrogateescape"`` writes file names that are not valid UTF-8 as their own bytes.
    """
    with atomic_path(path) as temporary:
        # Mode "x": a new file with the usual permissions (umask), unlike mkstemp's 0600.
        with open(temporary, "x", encoding="utf-8", errors=errors) as stream:
            stream.write(text)


def atomic_write_json(path, document):
    """Write ``document`` as indented strict JSON (see :func:`to_jsonable`), atomically.

    Parameters
    ----------
    path : str or Path
    document : object
    """
    atomic_write_text(path, dumps(document) + "\n")


def read_json(path, what="JSON file", max_bytes=_MAX_JSON_BYTES, max_depth=_MAX_JSON_DEPTH):
    """Read a JSON file, with a ``ValueError`` naming the file when it cannot be used.

    UTF-8, or UTF-16/32 with a byte-order mark (a file saved by Windows Notepad); larger
    than ``max_bytes`` or nested deeper than ``max_depth`` is refused before parsing.

    Parameters
    ----------
    path : str or Path
    what : str
        What the file is, for the error message (``"labels file"``).
    max_bytes, max_depth : int

    Returns
    -------
    object

    Raises
    ------
    ReadError
        A ``ValueError`` whose message starts with the path.
    """
    text = read_text(path, what, max_bytes=max_bytes)
    return loads(text, path, what, max_depth)
