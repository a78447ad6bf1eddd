"""TFRecord shards: a dataset's images packed into a few large files, and read back with tf.data.

Reading thousands of small files costs one open and one seek each, and on remote storage
(a bucket, a network filesystem) one request each, so large datasets are packed into
*shards*: ``*.tfrecord`` files of about 100 MB that are read sequentially, several at once.

- :func:`write_shards` packs any DataFrame the loaders give (any layout): per image one
  ``tf.train.Example`` holding the file's original encoded bytes (not decoded pixels), its
  labels, its file name and its header facts. Images are shuffled across the shards (a shard
  must not hold one class only), written in parallel, each shard to a temporary name and then
  moved into place; ``manifest.json`` is written last. An interrupted run, rerun, keeps
  every finished shard whose size and sha256 check out, and writes the rest; a rerun
  after a completed one repairs a shard that was damaged since.
- :func:`load_shards` gives the shard folder as the usual ``filename``/``labels`` DataFrame,
  with the header facts as columns (so ``helpers.scan.scan`` summarises it without reading a
  byte of the shards) and each image's place (``shard_file``, ``record``, ``record_id``).
- :func:`dataset_from_shards` reads such a DataFrame (or any subset of its rows, a split)
  back as ``helpers.pipeline.dataset_from_dataframe`` reads files: the same decoders
  (``helpers.files.decode``) and batching (``helpers.pipeline.batch_dataset``), after a
  parallel interleave of the shards, optionally only this worker's share of the files.

A shard folder::

    manifest.json                     classes, counts, per shard its size and sha256, skipped inputs
    images.csv                        one row per image: its shard, labels and header facts
    shard-00000-of-00016.tfrecord     the images
    ...
    .parts/shard-00000-of-00016.json  what each finished shard holds (for resuming)

Every path goes through ``tf.io.gfile``, so the folder may be on any filesystem TensorFlow
reaches (``gs://``, ``s3://`` with the matching plug-in, HDFS), as well as a local disk.
"""
import concurrent.futures
import hashlib
import io
import json
import numbers
import os
import threading
import types
import uuid

import numpy as np
import pandas as pd

from helpers import __version__, progress_bar, warn
from helpers.data import load_dataset
from helpers.files import images
from helpers.files.fileio import atomic_write_text, dumps
from helpers.labels import LabelVocabulary, to_label_lists

LAYOUT = "shards"
MANIFEST_FILE = "manifest.json"
INDEX_FILE = "images.csv"
PARTS_DIR = ".parts"
FORMAT = "helpers-image-shards"
_FORMAT_VERSION = 1
# The TensorFlow guide's advice: files of 100 MB or more, and at least 10x as many files as
# hosts reading them. Without --shard-size-mb, a small dataset still gets MIN_SHARDS shards.
DEFAULT_SHARD_MB = 100
MIN_SHARDS = 16
_DEFAULT_CYCLE_LENGTH = 8
# Read buffer per open shard: memory is bounded by it times the files read at once.
_READ_BUFFER_BYTES = 1 << 20
_PARSE_BATCH = 64
# The columns a shard folder's DataFrame has besides those of its source.
_FACT_COLUMNS = ("width", "height", "mode", "format", "orientation", "complete", "bytes")
_PLACE_COLUMNS = ("shard_file", "record", "record_id")
_VERIFY = ("size", "sha256")

_SHARD_PATTERN = "shard-?????-of-?????.tfrecord"
_HASH_CHUNK = 8 << 20


def _shard_name(index, count):
    return f"shard-{index:05d}-of-{count:05d}.tfrecord"


# ----------------------------------------------------------------------------- files


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def _join(directory, name):
    return os.path.join(os.fspath(directory), name)


def _is_local(path):
    return "://" not in os.fspath(path)


def _read_text(path, what):
    gfile = _gfile()
    if not gfile.exists(path):
        raise ValueError(f"{path}: {what} not found")
    with gfile.GFile(path, "r") as stream:
        return stream.read()


def _write_text(path, text):
    """Write ``text`` atomically: ``helpers.files.fileio`` locally, temporary file + rename elsewhere."""
    if _is_local(path):
        atomic_write_text(path, text)
        return
    gfile = _gfile()
    temporary = _join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    with gfile.GFile(temporary, "w") as stream:
        stream.write(text)
    gfile.rename(temporary, path, overwrite=True)


def _move_into_place(temporary, path):
    """Rename a finished shard onto its final name (after flushing it to disk, when local)."""
    if _is_local(temporary):
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
    _gfile().rename(temporary, path, overwrite=True)


def file_sha256(path):
    """sha256 (hex) and size in bytes of a file on any filesystem ``tf.io.gfile`` reaches.

    Parameters
    ----------
    path : str

    Returns
    -------
    (str, int)
    """
    digest, size = hashlib.sha256(), 0
    with _gfile().GFile(path, "rb") as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _stat(path):
    """``(size in bytes, modification time in ns)``, or ``(None, None)`` for a missing file."""
    try:
        stat = _gfile().stat(path)
    except Exception:  # tf.errors.NotFoundError and friends: the file is not there
        return None, None
    return int(stat.length), int(stat.mtime_nsec)


def _file_size(path):
    return _stat(path)[0]


# ----------------------------------------------------------------------------- manifest


def is_shard_folder(path):
    """True when ``path`` is a folder holding a shard ``manifest.json``."""
    path = os.fspath(path)
    if _is_local(path):
        return os.path.isfile(_join(path, MANIFEST_FILE))
    return _gfile().exists(_join(path, MANIFEST_FILE))


def is_shard_frame(dataframe):
    """True when a DataFrame came from :func:`load_shards` (its rows name their shard)."""
    return isinstance(dataframe, pd.DataFrame) and all(c in dataframe.columns for c in _PLACE_COLUMNS)


def _read_manifest(directory, complete=True):
    """Read and check a shard folder's ``manifest.json``; with ``complete``, refuse an unfinished run's."""
    path = _join(directory, MANIFEST_FILE)
    try:
        manifest = json.loads(_read_text(path, "shard manifest"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: the shard manifest is not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a manifest written by helpers.scale.shards (no \"format\": \"{FORMAT}\")")
    if manifest.get("format_version") != _FORMAT_VERSION:
        raise ValueError(
            f"{path}: format_version {manifest.get('format_version')!r}, this version of helpers "
            f"reads {_FORMAT_VERSION}; write the shards again with `helpers shard`")
    if complete and not manifest.get("complete"):
        written = manifest.get("written_with") or {}
        done = sum(1 for shard in manifest.get("shards", []) if shard.get("sha256"))
        raise ValueError(
            f"{path}: writing the shards did not finish ({done} of {len(manifest.get('shards', []))} "
            f"shards written); run `helpers shard {written.get('source', 'SOURCE')} {directory}` "
            "again to finish it (finished shards are kept)")
    return manifest


def _repair_hint(manifest, directory):
    written = manifest.get("written_with") or {}
    layout = written.get("layout")
    option = f" --layout {layout}" if layout and layout != "auto" else ""
    return (f"run `helpers shard {written.get('source', 'SOURCE')} {directory}{option}` again: "
            "it rewrites the damaged shards and keeps the others")


def load_shards(directory):
    """Load a shard folder as a DataFrame, like ``helpers.data.load_dataset`` loads a layout.

    Parameters
    ----------
    directory : str or os.PathLike
        A folder written by :func:`write_shards`.

    Returns
    -------
    pandas.DataFrame
        One row per packed image: ``filename`` (the original file name inside the shard
        folder; a name, not a file on disk), ``labels``, the header facts ``width``,
        ``height`` (as displayed), ``mode``, ``format``, ``orientation``, ``complete``,
        ``bytes``, where it lives (``shard_file``, ``record`` within it, ``record_id``
        across the folder), ``source_row`` (its row in the DataFrame it was packed from; the
        rows come in that order, so a split of them is the split of the source's readable
        rows) and the source's other columns. ``attrs``: ``layout``
        ``"shards"``, ``directory``, ``skipped`` (inputs left out when packing) and
        ``manifest``.
    """
    directory = os.fspath(directory)
    manifest = _read_manifest(directory)
    index = manifest.get("index") or {}
    path = _join(directory, index.get("file", INDEX_FILE))
    text = _read_text(path, "shard index")
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != index.get("sha256"):
        raise ValueError(f"{path}: does not match its sha256 in {MANIFEST_FILE} (edited or damaged); "
                         + _repair_hint(manifest, directory))
    frame = pd.read_csv(io.StringIO(text), dtype={"filename": str, "labels": str, "shard": str,
                                                  "mode": str, "format": str})
    missing = [c for c in ("record_id", "source_row", "shard", "record", "filename", "labels", *_FACT_COLUMNS)
               if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing}; " + _repair_hint(manifest, directory))
    decoded = {text: json.loads(text) for text in pd.unique(frame["labels"])}
    frame["labels"] = [list(decoded[text]) for text in frame["labels"]]
    frame["filename"] = [_join(directory, name) for name in frame["filename"]]
    frame["shard_file"] = [_join(directory, name) for name in frame.pop("shard")]
    frame["complete"] = frame["complete"].astype(bool)
    # In the source's order: a split of these rows is then the split of the source's rows.
    frame = frame.sort_values("source_row", kind="stable").reset_index(drop=True)
    frame.attrs.update(layout=LAYOUT, directory=directory, skipped=list(manifest.get("skipped", [])),
                       manifest=manifest)
    return frame


def load_any(source, layout="auto", **load_options):
    """``load_shards`` for a shard folder, ``helpers.data.load_dataset`` for anything else.

    Parameters
    ----------
    source : str or os.PathLike
    layout : str
        ``"shards"``, or any layout of ``helpers.data.LAYOUTS`` (``"auto"`` picks ``"shards"``
        when ``source`` holds a ``manifest.json``).
    **load_options
        Passed to ``helpers.data.load_dataset`` (ignored for shards).

    Returns
    -------
    pandas.DataFrame
    """
    if layout == LAYOUT or (layout == "auto" and is_shard_folder(source)):
        return load_shards(source)
    return load_dataset(source, layout=layout, **load_options)


# ----------------------------------------------------------------------------- writing


def _relative_names(paths, directory):
    """Each path relative to the dataset folder (the name kept in the shards)."""
    names = []
    root = os.path.abspath(directory) if directory else None
    for path in paths:
        absolute = os.path.abspath(path)
        if root and os.path.commonpath([root, absolute]) == root and absolute != root:
            names.append(os.path.relpath(absolute, root).replace(os.sep, "/"))
        else:
            names.append(path.replace(os.sep, "/").lstrip("/"))
    return names


def _scalar(value):
    """A source column's value as ``images.csv`` keeps it (missing values empty, lists as text)."""
    if isinstance(value, (list, tuple, set, dict, np.ndarray)):
        return str(value)
    return None if pd.isna(value) else value


def _plan(dataframe, shard_size_mb, seed):
    """Which image goes into which shard: a seeded shuffle, cut into shards of equal counts."""
    paths = dataframe["filename"].astype(str).tolist()
    stats = [_stat(path) for path in paths]
    sizes = [size for size, _ in stats]
    total = sum(size or 0 for size in sizes)
    if shard_size_mb is None:
        n_shards = max(-(-total // (DEFAULT_SHARD_MB << 20)), MIN_SHARDS)
    else:
        n_shards = max(1, -(-total // int(shard_size_mb * (1 << 20))))
    n_shards = int(min(n_shards, len(paths)))
    order = np.random.default_rng(seed).permutation(len(paths))
    names = _relative_names(paths, dataframe.attrs.get("directory"))
    labels = to_label_lists(dataframe["labels"])
    extra = [c for c in dataframe.columns
             if c not in ("filename", "labels", *_FACT_COLUMNS, *_PLACE_COLUMNS, "shard", "source_row")]
    shards, start = [], 0
    for shard, rows in enumerate(np.array_split(order, n_shards)):
        items = [{"record_id": start + offset, "source_row": int(row), "path": paths[row], "filename": names[row],
                  "labels": labels[row], "size": sizes[row], "mtime": stats[row][1],
                  "extra": {column: _scalar(dataframe[column].iloc[row]) for column in extra}}
                 for offset, row in enumerate(rows)]
        start += len(items)
        # What the shard must hold: a rerun keeps a finished shard only if this is unchanged.
        key = [[i["record_id"], i["source_row"], i["filename"], i["labels"], i["size"], i["mtime"]] for i in items]
        digest = hashlib.sha256(json.dumps([_FORMAT_VERSION, key], default=str).encode()).hexdigest()
        shards.append({"file": _shard_name(shard, n_shards), "items": items, "inputs_sha256": digest})
    return shards, total, extra


def _feature(value):
    import tensorflow as tf

    if isinstance(value, bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    if isinstance(value, str):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))
    if isinstance(value, (list, tuple)):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode("utf-8") for v in value]))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _pack(item):
    """``(serialized tf.train.Example, facts)`` of one input, or ``(None, reason)``."""
    import tensorflow as tf

    path = item["path"]
    try:
        with tf.io.gfile.GFile(path, "rb") as stream:
            encoded = stream.read()
    except Exception as error:  # NotFoundError, PermissionDeniedError...
        return None, getattr(error, "message", None) or f"cannot read ({error})"
    try:
        header = images.read_header(encoded, name=path)
        # Decoded once, at 1/8 scale for a JPEG (a full pass over its data all the same):
        # a file that cannot be read is never packed.
        images.read_image(encoded, (8, 8), name=path)
        complete = images.is_complete(encoded, header["format"])
    except images.ImageError as error:
        return None, error.reason
    facts = {"width": header["width"], "height": header["height"], "mode": header["mode"],
             "format": header["format"], "orientation": header.get("orientation") or 1,
             "complete": bool(complete), "bytes": len(encoded)}
    example = tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": _feature(encoded),
        "image/filename": _feature(item["filename"]),
        "image/labels": _feature(list(item["labels"])),
        "image/record_id": _feature(item["record_id"]),
        **{f"image/{key}": _feature(facts[key]) for key in ("width", "height", "mode", "format",
                                                          "orientation", "complete")},
    }))
    return example.SerializeToString(), facts


class _Stopped(Exception):
    """Raised inside a shard writer when the run is being interrupted."""


def _write_one(out_dir, shard, stop, advance):
    """Write one shard to a temporary name, record what it holds, then move it into place."""
    import tensorflow as tf

    final = _join(out_dir, shard["file"])
    temporary = _join(out_dir, f".{shard['file']}.{uuid.uuid4().hex[:8]}.tmp")
    rows, skipped = [], []
    try:
        with tf.io.TFRecordWriter(temporary) as writer:
            for item in shard["items"]:
                if stop.is_set():
                    raise _Stopped
                serialized, facts = _pack(item)
                if serialized is None:
                    skipped.append({"path": item["path"], "reason": facts})
                else:
                    writer.write(serialized)
                    rows.append({"record_id": item["record_id"], "source_row": item["source_row"],
                                 "shard": shard["file"],
                                 "record": len(rows), "filename": item["filename"],
                                 "labels": json.dumps(item["labels"]), **facts, **item["extra"]})
                advance()
        sha256, size = file_sha256(temporary)
        part = {"file": shard["file"], "inputs_sha256": shard["inputs_sha256"], "n_images": len(rows),
                "bytes": size, "sha256": sha256, "skipped": skipped, "images": rows}
        _write_text(_join(_join(out_dir, PARTS_DIR), shard["file"] + ".json"), dumps(part) + "\n")
        _move_into_place(temporary, final)
        return part
    finally:
        if tf.io.gfile.exists(temporary):
            tf.io.gfile.remove(temporary)


def _finished_part(out_dir, shard):
    """The record of a shard written earlier, if it is what the plan asks and intact; else None."""
    path = _join(_join(out_dir, PARTS_DIR), shard["file"] + ".json")
    try:
        part = json.loads(_read_text(path, "shard record"))
    except (ValueError, json.JSONDecodeError):
        return None
    if not isinstance(part, dict) or part.get("inputs_sha256") != shard["inputs_sha256"]:
        return None
    final = _join(out_dir, shard["file"])
    if _file_size(final) != part.get("bytes"):
        return None
    sha256, _ = file_sha256(final)
    return part if sha256 == part.get("sha256") else None


def _remove_leftovers(out_dir, plan, log):
    """Delete temporary files of interrupted runs and shards of an earlier, different plan."""
    gfile = _gfile()
    wanted = {shard["file"] for shard in plan}
    removed = 0
    for path in gfile.glob(_join(out_dir, _SHARD_PATTERN)):
        if os.path.basename(path) not in wanted:
            gfile.remove(path)
            removed += 1
    for path in gfile.glob(_join(_join(out_dir, PARTS_DIR), "shard-*.json")):
        if os.path.basename(path)[: -len(".json")] not in wanted:
            gfile.remove(path)
    for path in gfile.glob(_join(out_dir, ".shard-*.tmp")):
        gfile.remove(path)
    if removed:
        log(f"removed {removed} shards of an earlier run with other inputs or settings")


def _check_source(dataframe, shard_size_mb):
    """Refuse what cannot be packed; return ``shard_size_mb`` as a float (or None)."""
    if is_shard_frame(dataframe):
        raise ValueError("write_shards: this DataFrame already comes from a shard folder")
    if not isinstance(dataframe, pd.DataFrame) or "filename" not in dataframe or "labels" not in dataframe:
        raise ValueError("write_shards: expected a DataFrame with 'filename' and 'labels' columns "
                         "(from helpers.data.load_dataset)")
    if len(dataframe) == 0:
        raise ValueError("write_shards: the DataFrame has no rows")
    if shard_size_mb is None:
        return None
    if isinstance(shard_size_mb, bool) or not isinstance(shard_size_mb, numbers.Real) or not shard_size_mb > 0:
        raise ValueError(f"shard_size_mb: expected a positive number of megabytes, got {shard_size_mb!r}")
    return float(shard_size_mb)


def _kept_parts(out_dir, plan, base, pool_size):
    """The finished, intact shards of an earlier run; while others remain, a manifest saying so."""
    with concurrent.futures.ThreadPoolExecutor(pool_size) as pool:
        kept = list(pool.map(lambda shard: _finished_part(out_dir, shard), plan))
    parts = {part["file"]: part for part in kept if part is not None}
    if len(parts) < len(plan):
        # Until the last shard is in place, the folder says it is unfinished.
        _write_text(_join(out_dir, MANIFEST_FILE), dumps({
            **base, "complete": False,
            "shards": [{"file": s["file"], **({k: parts[s["file"]][k] for k in ("n_images", "bytes", "sha256")}
                                              if s["file"] in parts else {})} for s in plan],
        }) + "\n")
    return parts


def _write_missing(out_dir, todo, parts, pool_size, progress):
    """Write the shards of ``todo`` in parallel threads, adding each finished one to ``parts``."""
    lock, stop = threading.Lock(), threading.Event()
    n_todo = sum(len(shard["items"]) for shard in todo)
    with progress_bar(total=n_todo, desc=f"shards → {out_dir}", unit="img", disable=not progress or not todo) as bar:
        def advance():
            with lock:
                bar.update()

        with concurrent.futures.ThreadPoolExecutor(pool_size) as pool:
            futures = [pool.submit(_write_one, out_dir, shard, stop, advance) for shard in todo]
            try:
                for future in concurrent.futures.as_completed(futures):
                    part = future.result()
                    parts[part["file"]] = part
            except BaseException:  # Ctrl-C or a failure: running shards stop at their next image
                stop.set()
                for future in futures:
                    future.cancel()
                raise


def _write_index_and_manifest(out_dir, base, ordered, extra, skipped):
    """Write ``images.csv`` and then the complete ``manifest.json``; return the manifest."""
    frame = pd.DataFrame([row for part in ordered for row in part["images"]],
                         columns=["record_id", "source_row", "shard", "record", "filename", "labels",
                                  *_FACT_COLUMNS, *extra])
    index_text = frame.to_csv(index=False)
    _write_text(_join(out_dir, INDEX_FILE), index_text)
    label_lists = [json.loads(text) for text in frame["labels"]]
    manifest = {
        **base, "complete": True,
        "classes": LabelVocabulary.from_labels(label_lists).classes,
        "n_images": int(len(frame)), "n_shards": len(ordered),
        "bytes": int(sum(part["bytes"] for part in ordered)),
        "shards": [{key: part[key] for key in ("file", "n_images", "bytes", "sha256", "inputs_sha256")}
                   for part in ordered],
        "index": {"file": INDEX_FILE, "n_images": int(len(frame)),
                  "sha256": hashlib.sha256(index_text.encode("utf-8")).hexdigest()},
        "skipped": skipped,
    }
    _write_text(_join(out_dir, MANIFEST_FILE), dumps(manifest) + "\n")
    return manifest


def write_shards(dataframe, out_dir, shard_size_mb=None, seed=0, workers=None, progress=True,
                 written_with=None, log=print):
    """Pack the images of a DataFrame into TFRecord shards and write their ``manifest.json``.

    Run it again after an interruption (or after a shard was damaged) and it keeps every
    finished shard whose size and sha256 match what was recorded, and writes the others.

    Parameters
    ----------
    dataframe : pandas.DataFrame
        From ``helpers.data.load_dataset`` (any layout): ``filename``, ``labels``, any other
        columns (kept in ``images.csv``).
    out_dir : str or os.PathLike
        The shard folder (created; local or any ``tf.io.gfile`` filesystem).
    shard_size_mb : float, optional
        Target size of a shard in MB (2**20 bytes). Default: 100 MB, but at least
        ``MIN_SHARDS`` shards (16), so that a small dataset still spreads over several files.
    seed : int, default 0
        Seed of the shuffle that spreads the images over the shards.
    workers : int, optional
        Shards written at once (threads; default: the number of CPUs).
    progress : bool, default True
        Show a tqdm progress bar (images).
    written_with : dict, optional
        What to record about the source (``source``, ``layout``, loader options).
    log : callable or None
        Receives one line per step.

    Returns
    -------
    dict
        The manifest, plus ``written`` and ``kept``: how many shards this run wrote, and how
        many finished ones it kept.
    """
    import tensorflow as tf

    log = log or (lambda line: None)
    shard_size_mb = _check_source(dataframe, shard_size_mb)
    out_dir = os.fspath(out_dir)
    tf.io.gfile.makedirs(_join(out_dir, PARTS_DIR))
    plan, total_bytes, extra = _plan(dataframe, shard_size_mb, seed)
    settings = {"shard_size_mb": shard_size_mb, "seed": seed, "helpers": __version__,
                "tensorflow": tf.__version__, **(written_with or {})}
    base = {"format": FORMAT, "format_version": _FORMAT_VERSION, "written_with": settings}
    _remove_leftovers(out_dir, plan, log)

    pool_size = workers or os.cpu_count() or 1
    parts = _kept_parts(out_dir, plan, base, pool_size)
    todo = [shard for shard in plan if shard["file"] not in parts]
    log(f"{len(dataframe)} images ({total_bytes / 2**20:,.1f} MB) in {len(plan)} shards: "
        f"{len(parts)} already written and intact, {len(todo)} to write")
    _write_missing(out_dir, todo, parts, pool_size, progress)

    ordered = [parts[shard["file"]] for shard in plan]
    earlier = list(dataframe.attrs.get("skipped", []))
    skipped = earlier + [item for part in ordered for item in part["skipped"]]
    manifest = _write_index_and_manifest(out_dir, base, ordered, extra, skipped)
    for item in skipped[len(earlier):]:
        warn(f"skipped {item['path']}: {item['reason']}")
    log(f"wrote {len(todo)} shards, kept {len(parts) - len(todo)}: {manifest['n_images']} images, "
        f"{manifest['bytes'] / 2**20:,.1f} MB in {len(ordered)} shards"
        + (f"; {len(skipped)} inputs skipped" if skipped else ""))
    return {**manifest, "written": len(todo), "kept": len(ordered) - len(todo)}


# ----------------------------------------------------------------------------- checking


def _manifests_of(files):
    """The manifest of each shard folder the files live in, and each file's manifest entry."""
    manifests, entries = {}, {}
    for path in files:
        directory = os.path.dirname(path)
        if directory not in manifests:
            manifests[directory] = _read_manifest(directory)
        found = {s["file"]: s for s in manifests[directory]["shards"]}.get(os.path.basename(path))
        if found is None:
            raise ValueError(f"{path}: not a shard listed in {_join(directory, MANIFEST_FILE)}")
        entries[path] = found
    return manifests, entries


def _shard_problems(files, verify="sha256", workers=None):
    """``{"path", "reason"}`` of each file that is missing or differs from its manifest entry
    (``verify`` as for :func:`check_shards`); ``workers`` files are hashed at once."""
    if verify not in _VERIFY:
        raise ValueError(f"verify: expected one of {_VERIFY}, got {verify!r}")
    _, entries = _manifests_of(files)

    def check(path):
        expected = entries[path]
        size = _file_size(path)
        if size is None:
            return "missing"
        if size != expected["bytes"]:
            return f"{size:,} bytes, the manifest says {expected['bytes']:,} (truncated or replaced)"
        if verify == "sha256" and file_sha256(path)[0] != expected["sha256"]:
            return "sha256 differs from the manifest (damaged: bytes changed)"
        return None

    with concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        reasons = list(pool.map(check, files))
    return [{"path": path, "reason": reason} for path, reason in zip(files, reasons) if reason]


def check_shards(files, verify="sha256"):
    """Check shard files against their manifest; raise a ``ValueError`` naming every damaged or missing one.

    ``files`` are shard paths (``shard_file`` of a :func:`load_shards` DataFrame). ``verify``:
    ``"size"`` compares sizes only (cheap: finds a truncated copy); ``"sha256"`` also hashes
    every file (reads it all: finds flipped bytes too). A damaged shard is refused rather than
    skipped: training on part of the data without saying so would change the dataset behind
    the user's back. Nothing is deleted; rerun ``helpers shard`` to rewrite what is broken.
    Returns the sorted files.
    """
    files = sorted(set(files))
    problems = _shard_problems(files, verify=verify)
    if problems:
        manifest = _read_manifest(os.path.dirname(problems[0]["path"]))
        listing = "\n".join(f"  {item['path']}: {item['reason']}" for item in problems)
        raise ValueError(f"{len(problems)} of {len(files)} shards are damaged:\n{listing}\n"
                         + _repair_hint(manifest, os.path.dirname(problems[0]["path"])))
    return files


# ----------------------------------------------------------------------------- reading


def _check_workers(num_workers, worker_index, n_files):
    for name, value, low in (("num_workers", num_workers, 1), ("worker_index", worker_index, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    if worker_index >= num_workers:
        raise ValueError(f"worker_index: expected 0 to {num_workers - 1} for {num_workers} workers, got {worker_index}")
    if n_files < num_workers:
        raise ValueError(
            f"{n_files} shard files for {num_workers} workers: each worker reads whole files, so "
            f"it needs at least one; write at least {num_workers} shards (smaller --shard-size-mb; "
            "ideally 10x as many files as workers)")


def worker_shares(dataframe, num_workers):
    """Which shard files, and how many of the rows, each worker reads (as :func:`dataset_from_shards`).

    Worker ``i`` reads the files ``i, i + num_workers, ...`` of the sorted files that hold the
    rows, so the workers' image counts differ by up to a shard's worth: synchronous training
    on several workers must run the same number of steps on each (the smallest share's).

    Parameters
    ----------
    dataframe : pandas.DataFrame
        Rows of a shard folder (from :func:`load_shards`, or a split of them).
    num_workers : int

    Returns
    -------
    list of dict
        Per worker: ``worker``, ``files`` (paths) and ``n_images``.
    """
    files = sorted(set(dataframe["shard_file"]))
    _check_workers(num_workers, 0, len(files))
    counts = dataframe["shard_file"].value_counts()
    shares = []
    for index in range(num_workers):
        mine = files[index::num_workers]  # what Dataset.shard(num_workers, index) keeps
        shares.append({"worker": index, "files": mine, "n_images": int(counts[mine].sum())})
    return shares


# What dataset_from_shards takes besides its named arguments, with the defaults.
_READ_OPTIONS = {"y_col": "labels", "classes": None, "class_mode": "multi_hot", "augment": None,
                 "on_error": "skip", "shuffle_buffer_size": 1024, "deterministic": None,
                 "cycle_length": None, "verify": "size"}


def _read_options(options):
    """``options`` over the defaults of ``_READ_OPTIONS``; a ``TypeError`` for a name it lacks."""
    unknown = sorted(set(options) - set(_READ_OPTIONS))
    if unknown:
        raise TypeError(f"dataset_from_shards() got unexpected keyword argument(s) {unknown}")
    options = types.SimpleNamespace(**{**_READ_OPTIONS, **options})
    cycle_length = options.cycle_length
    if cycle_length is not None and (isinstance(cycle_length, bool) or not isinstance(cycle_length, numbers.Integral)
                                     or cycle_length < 1):
        raise ValueError(f"cycle_length: expected a positive integer, got {cycle_length!r}")
    return options


def _shard_rows(dataframe):
    """The rows of a shard folder to read (a folder is loaded); each record named once."""
    if isinstance(dataframe, (str, os.PathLike)):
        dataframe = load_shards(dataframe)
    if not is_shard_frame(dataframe):
        raise ValueError(f"dataframe: expected rows of a shard folder (columns {list(_PLACE_COLUMNS)}, "
                         f"from helpers.scale.shards.load_shards); got columns {list(getattr(dataframe, 'columns', []))}")
    if dataframe["record_id"].duplicated().any():
        raise ValueError("dataframe: some rows name the same record twice; each record is read once "
                         "per epoch (write the shards of a repeated DataFrame instead)")
    return dataframe


def _records(files, num_workers, worker_index, shuffle, seed, cycle_length, deterministic):
    """The serialized records of this worker's shard files, several files read at once."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(files)
    if num_workers > 1:
        dataset = dataset.shard(num_workers, worker_index)
    if shuffle:
        dataset = dataset.shuffle(len(files[worker_index::num_workers]), seed=seed, reshuffle_each_iteration=True)
    return dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path, buffer_size=_READ_BUFFER_BYTES),
        cycle_length=cycle_length, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def _kept_records(records, record_ids, deterministic):
    """``(encoded image, position)`` of the records whose ``record_id`` is in ``record_ids``.

    Records are parsed ``_PARSE_BATCH`` at a time (vectorised); ``position`` is the index in
    ``record_ids``.
    """
    import tensorflow as tf

    positions = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(record_ids, np.arange(len(record_ids), dtype=np.int64)),
        default_value=-1)
    features = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                "image/record_id": tf.io.FixedLenFeature([], tf.int64)}

    def parse(serialized):
        example = tf.io.parse_example(serialized, features)
        position = positions.lookup(example["image/record_id"])
        kept = position >= 0
        return tf.boolean_mask(example["image/encoded"], kept), tf.boolean_mask(position, kept)

    return records.batch(_PARSE_BATCH).map(parse, num_parallel_calls=tf.data.AUTOTUNE,
                                           deterministic=deterministic).unbatch()


def _decoded(records, rows, labels, target_size, warned, deterministic):
    """``(uint8 image, ok, position, *label)`` of each kept record, by the decoders of loose files."""
    import tensorflow as tf

    from helpers.files import decode

    roads = np.array([
        decode.choose_road({"width": w, "height": h, "mode": m, "format": f, "orientation": o}, target_size, bool(c))
        for w, h, m, f, o, c in zip(rows["width"], rows["height"], rows["mode"], rows["format"],
                                    rows["orientation"], rows["complete"])
    ], dtype=np.int32)
    used_roads, road_indices = np.unique(roads, return_inverse=True)
    road_of = tf.constant(road_indices.astype(np.int32))
    name_of = tf.constant(rows["filename"].astype(str).to_numpy())
    label_of = None if labels is None else tf.constant(labels)
    decode_image = decode.make_decoder(target_size, used_roads, warned)

    def load(encoded, position):
        image, ok = decode_image(encoded, road_of[position], name_of[position])
        return (image, ok, position) + (() if label_of is None else (label_of[position],))

    return records.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def _with_options(dataset, deterministic, num_workers):
    """``dataset`` and its prediction variant with the reading order, unsharded by tf.distribute."""
    import tensorflow as tf

    options = tf.data.Options()
    options.deterministic = deterministic
    if num_workers > 1:  # sharded here already: tf.distribute must not shard again
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    for_prediction = dataset.for_prediction.with_options(options)
    dataset = dataset.with_options(options)
    dataset.for_prediction = for_prediction
    return dataset


def dataset_from_shards(dataframe, target_size=(64, 64), batch_size=32, shuffle=True, seed=None, cache=False,
                        num_workers=1, worker_index=0, **options):
    """Stream the images of a shard folder (or of some of its rows) as batched ``tf.data``.

    ``from_tensor_slices(shard files)`` → ``.shard(num_workers, worker_index)`` (whole files
    per worker) → shuffle the files → ``interleave(TFRecordDataset, cycle_length, parallel)``
    → parse (64 records at a time) and keep the rows of ``dataframe`` → shuffle the records →
    decode, then ``helpers.pipeline.batch_dataset``: the decoders and batching of loose files.

    Parameters
    ----------
    dataframe : pandas.DataFrame or str
        From :func:`load_shards`, or any subset of its rows (e.g. a split); or a shard folder.
    target_size, batch_size, shuffle, seed, cache
        As for ``helpers.pipeline.dataset_from_dataframe``.
    num_workers, worker_index : int
        Read only the shard files ``worker_index, worker_index + num_workers, ...`` of those
        holding the rows (``Dataset.shard`` at file level, before any shuffle). There must be
        at least as many files as workers.
    **options
        ``y_col``, ``classes``, ``class_mode``, ``augment``, ``on_error`` and
        ``shuffle_buffer_size`` as for ``dataset_from_dataframe`` (the shuffle buffer is also
        that of the encoded records after the interleave), and:

        - ``deterministic`` (bool): yield elements in a fixed order (interleave and maps wait
          for the slowest file). Default ``not shuffle``: evaluation is deterministic, and
          training takes whatever file is ready first.
        - ``cycle_length`` (int): shard files read at once (default ``min(8, files)``).
        - ``verify`` (``"size"`` or ``"sha256"``, default ``"size"``): check the files against
          the manifest first (see :func:`check_shards`).

    Returns
    -------
    tf.data.Dataset
        As ``dataset_from_dataframe`` (``file_paths`` in the order of ``dataframe``'s rows;
        ``skipped`` always empty: images were checked when packed), plus ``shard_files`` (the
        files this worker reads) and ``n_images``.
    """
    from helpers import pipeline

    options = _read_options(options)
    rows = _shard_rows(dataframe)
    columns = ["filename"] + ([options.y_col] if options.class_mode is not None else [])
    target_size = pipeline.check_arguments(
        rows, columns, class_mode=options.class_mode, target_size=target_size, batch_size=batch_size,
        shuffle_buffer_size=options.shuffle_buffer_size, cache=cache, on_error=options.on_error,
        augment=options.augment)
    vocabulary, labels = pipeline.encode_labels(rows, options.y_col, options.classes, options.class_mode)

    files = sorted(set(rows["shard_file"]))
    _check_workers(num_workers, worker_index, len(files))
    mine = worker_shares(rows, num_workers)[worker_index]["files"]
    check_shards(mine, verify=options.verify)
    keep = rows["shard_file"].isin(set(mine)).to_numpy()
    rows, labels = rows[keep], None if labels is None else labels[keep]

    deterministic = (not shuffle) if options.deterministic is None else bool(options.deterministic)
    cycle_length = min(options.cycle_length or _DEFAULT_CYCLE_LENGTH, len(mine))
    records = _records(files, num_workers, worker_index, shuffle, seed, cycle_length, deterministic)
    records = _kept_records(records, rows["record_id"].to_numpy(np.int64), deterministic)
    if shuffle:
        records = records.shuffle(min(len(rows), options.shuffle_buffer_size), seed=seed,
                                  reshuffle_each_iteration=True)
    warned = set()
    decoded = _decoded(records, rows, labels, target_size, warned, deterministic)
    names = rows["filename"].astype(str).tolist()
    dataset = pipeline.batch_dataset(decoded, len(rows), batch_size, shuffle, seed, options.augment,
                                     pipeline.cache_path(cache, names, target_size, labels),
                                     options.on_error, options.shuffle_buffer_size)
    dataset = _with_options(dataset, deterministic, num_workers)
    dataset.class_names = None if vocabulary is None else list(vocabulary.classes)
    dataset.vocabulary = vocabulary
    dataset.file_paths = names
    dataset.skipped = []
    dataset.target_size = target_size
    dataset.warned = warned
    dataset.shard_files = list(mine)
    dataset.n_images = len(rows)
    return dataset


def dataset_for(dataframe, **kwargs):
    """:func:`dataset_from_shards` for rows of a shard folder, else ``dataset_from_dataframe``.

    Parameters
    ----------
    dataframe : pandas.DataFrame
    **kwargs
        Arguments both take (``classes``, ``target_size``, ``batch_size``, ``shuffle``...).

    Returns
    -------
    tf.data.Dataset
    """
    if is_shard_frame(dataframe):
        return dataset_from_shards(dataframe, **kwargs)
    from helpers.pipeline import dataset_from_dataframe

    return dataset_from_dataframe(dataframe, **kwargs)


# ----------------------------------------------------------------------------- audit


def audit_shards(dataframe, progress=True):
    """Decode every image packed in the shards, as ``helpers.scan.audit`` decodes files.

    Also checks each shard against its manifest (size and sha256) and reads it to the end:
    a damaged shard is reported (``shards``) with the images it no longer gives.

    Parameters
    ----------
    dataframe : pandas.DataFrame
        From :func:`load_shards` (or some of its rows).
    progress : bool, default True

    Returns
    -------
    dict
        As ``helpers.scan.audit`` (``files``, ``n_images``, ``n_ok``, ``n_bad``, ``skipped``),
        plus ``shards``: ``{"path", "ok", "error"}`` per shard file.
    """
    import tensorflow as tf

    if not is_shard_frame(dataframe):
        raise ValueError("audit_shards: expected rows of a shard folder (from helpers.scale.shards.load_shards)")
    files = sorted(set(dataframe["shard_file"]))
    problems = {item["path"]: item["reason"] for item in _shard_problems(files, verify="sha256")}
    wanted = {(f, int(r)): i for i, (f, r) in enumerate(zip(dataframe["shard_file"], dataframe["record"]))}
    records = [None] * len(dataframe)
    features = {"image/encoded": tf.io.FixedLenFeature([], tf.string)}
    with progress_bar(total=len(dataframe), desc="audit", unit="img", disable=not progress) as bar:
        for path in files:
            position = 0
            try:
                for serialized in tf.data.TFRecordDataset(path, buffer_size=_READ_BUFFER_BYTES):
                    row = wanted.get((path, position))
                    position += 1
                    if row is None:
                        continue
                    encoded = tf.io.parse_single_example(serialized, features)["image/encoded"].numpy()
                    name = dataframe["filename"].iloc[row]
                    record = {"path": name, "ok": False, "error": None, "width": None, "height": None, "mode": None}
                    try:
                        record["mode"] = images.read_header(encoded, name=name)["mode"]
                        height, width = images.read_image(encoded, name=name).shape[:2]
                        record.update(ok=True, width=int(width), height=int(height))
                    except images.ImageError as error:
                        record["error"] = error.reason
                    records[row] = record
                    bar.update()
            except (tf.errors.DataLossError, tf.errors.NotFoundError) as error:
                reason = problems.get(path) or "cannot be read"
                problems[path] = f"{reason}; reading stopped after {position} records ({error.message.strip()})"
    for row, record in enumerate(records):
        if record is None:
            path = dataframe["shard_file"].iloc[row]
            records[row] = {"path": dataframe["filename"].iloc[row], "ok": False,
                            "error": f"not found in {os.path.basename(path)} (damaged shard)",
                            "width": None, "height": None, "mode": None}
    n_ok = sum(record["ok"] for record in records)
    return {
        "files": records, "n_images": len(records), "n_ok": n_ok, "n_bad": len(records) - n_ok,
        "skipped": list(dataframe.attrs.get("skipped", [])),
        "shards": [{"path": path, "ok": path not in problems, "error": problems.get(path)} for path in files],
    }
