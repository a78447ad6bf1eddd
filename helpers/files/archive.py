"""Check a ``.keras`` file (a zip archive) before Keras opens it.

Its members must declare sane sizes (a member that would inflate far beyond what it stores is
refused, not read), its JSON members be readable without recursion, its HDF5 weights not
declare arrays they do not store. Keras itself refuses a member only above 4 GB; a model's
configuration is a few hundred KB.
"""
import zipfile
from pathlib import Path

from helpers.files import fileio

_MAX_CONFIG_BYTES = 64_000_000
# A member (or an HDF5 array) declaring more than _MAX_EXPANSION times what it stores, above
# _MAX_MEMBER_FLOOR, is a decompression bomb.
_MAX_MEMBER_FLOOR = 16_000_000
_MAX_EXPANSION = 100


def _inflates(declared, stored):
    return declared > _MAX_MEMBER_FLOOR and declared > _MAX_EXPANSION * max(stored, 1)


def check_model_file(model_path):
    """Refuse a ``.keras`` file that is not a zip, or whose members are unsafe to read.

    Raises ``ValueError`` naming the file and the member: sizes that would inflate far beyond
    what is stored, JSON members over 64 MB or nested too deeply to read, HDF5 weights
    declaring arrays they do not store.
    """
    model_path = Path(model_path)
    try:
        archive = zipfile.ZipFile(model_path)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise ValueError(f"{model_path}: not a Keras model file (a .keras file is a zip "
                         f"archive: {error})") from None
    with archive:
        names = archive.namelist()
        if "config.json" not in names:
            raise ValueError(f"{model_path}: not a Keras model file (no config.json inside)")
        for info in archive.infolist():
            _check_member(model_path, info)
        for name in ("config.json", "metadata.json"):
            if name in names:
                _check_json(archive, name, model_path)
        if "model.weights.h5" in names:
            _check_weights(archive, "model.weights.h5", model_path)


def load_model(model_path, compile=False):
    """Check a ``.keras`` file (:func:`check_model_file`), then load it in Keras' safe mode."""
    import keras  # here only: checking a file needs no TensorFlow

    check_model_file(model_path)
    try:
        return keras.models.load_model(model_path, safe_mode=True, compile=compile)
    except Exception as error:
        raise ValueError(f"{model_path}: cannot load the model ({error})") from error


def _check_member(model_path, info):
    declared = fileio.format_size(info.file_size)
    if info.filename.endswith(".json") and info.file_size > _MAX_CONFIG_BYTES:
        raise ValueError(f"{model_path}: {info.filename} declares {declared} (limit "
                         f"{fileio.format_size(_MAX_CONFIG_BYTES)}); a model's configuration "
                         f"is far smaller: refusing to load it")
    if _inflates(info.file_size, info.compress_size):
        raise ValueError(f"{model_path}: {info.filename} declares {declared} but stores "
                         f"{fileio.format_size(info.compress_size)}: refusing a potential "
                         f"decompression bomb")


def _check_json(archive, name, model_path):
    try:
        data = archive.read(name)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise ValueError(f"{model_path}: cannot read {name} ({error})") from None
    text = fileio.decode_text(data, f"{model_path}:{name}", what="model configuration")
    fileio.loads(text, f"{model_path}:{name}", "model configuration")


def _check_weights(archive, name, where):
    """Refuse HDF5 weights that declare arrays far larger than they store (read as fill values)."""
    import h5py

    problems = []

    def visit(key, item):
        if isinstance(item, h5py.Dataset):
            stored = item.id.get_storage_size()
            if _inflates(item.nbytes, stored):
                problems.append(f"{key} declares {fileio.format_size(item.nbytes)} but stores "
                                f"{fileio.format_size(stored)}")

    try:
        with archive.open(name) as stream, h5py.File(stream, "r") as weights:
            weights.visititems(visit)
    except Exception as error:  # h5py raises several types for a damaged file
        raise ValueError(f"{where}: {name} is not a readable HDF5 file ({error})") from None
    if problems:
        raise ValueError(f"{where}: refusing {name}, whose arrays would be created from "
                         f"nothing: {'; '.join(problems[:3])}")
