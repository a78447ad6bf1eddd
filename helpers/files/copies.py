"""Find the files that show the same picture: byte-identical files and near copies.

A near copy is a picture saved again: re-encoded at another JPEG quality, resized, cropped by a
few percent, made a little brighter or darker. Its perceptual hashes stay within a few bits of
the original's, where two different pictures differ in about half of them. Each colour channel
of a 32×32 thumbnail gets the two 64-bit hashes of ``imagehash`` (:func:`fingerprint`):
``phash`` (its lowest 8×8 frequencies, each above or below their median) and ``average_hash``
(its 8×8 shrunk copy, each pixel above or below the mean), which shrugs off a small crop better.
Hashing each channel tells a red shoe from a black one of the same shape, but not a green wall
from a purple one behind the same chair: the hashes keep where each channel is light or dark,
not how light, so two copies must also share their average colour (:func:`fingerprint`).

Two images are copies when their 384 bits differ in at most ``max_distance`` (``MAX_DISTANCE``,
chosen with ``benchmarks/copies.py``: re-encoded, resized, brighter or darker copies are found;
cut by 2% of the width and height too, by 4% mostly, by 8% seldom) and their colour shares in at
most ``MAX_COLOUR_DIFFERENCE``. A mirror image differs in about half the bits: ``mirror=True``
hashes each image flipped too.

Comparing every pair costs n²/2 comparisons (5 billion for 100,000 images). Instead a number of
tables each file every hash under 16 of its bits (more for over 32,768 images: log2(n) + 1),
chosen at random, and two hashes are compared only when they share all the bits of some table.
Two copies ``max_distance`` bits apart share the 16 bits of a table with a probability of 0.11,
so in at least one of 39 tables with a probability of 0.99 (:func:`_tables` counts them); two
unrelated pictures, with about half their bits different, with a probability of 2⁻¹⁶ per
table. The comparisons, time and memory then grow about linearly with the number of images.
Copies, and copies of copies, form one group: the connected components of the pairs found (what
union-find computes).

Every file is decoded under the pixel budget of ``helpers.files.images.read_image``; one that
cannot be read is reported with the reason ``helpers.scan.audit`` gives, and left out.
"""
import concurrent.futures
import hashlib
import itertools
import math
import os
from collections import Counter

import numpy as np
import pandas as pd
from PIL import Image
from scipy import fftpack, sparse
from scipy.sparse import csgraph

from helpers import progress_bar
from helpers.files.images import ImageError, read_image

MAX_DISTANCE = 48
# Colour shares (see fingerprint) of two copies differ by at most this much, summed.
MAX_COLOUR_DIFFERENCE = 0.03
HASH_BYTES = 48  # 2 hashes × 3 channels × 64 bits
_THUMBNAIL = (32, 32)  # what imagehash.phash shrinks an image to
_MAX_SEARCH_DISTANCE = 96  # a quarter of the bits: beyond, the tables get too many
_CHUNK = 64  # files hashed by one task of the thread pool


def fingerprint(pixels):
    """``(hash, colour shares)`` of a 32×32 RGB ``uint8`` thumbnail.

    The hash, 384 bits as 48 bytes, is ``imagehash.phash`` of the red, green and blue channels,
    then ``imagehash.average_hash`` of them, bit for bit: the same calls (scipy's DCT, Pillow's
    Lanczos resize) made for the three channels at once, in a third of the time of six calls to
    ``imagehash``. The colour shares are the average colour's shares of red, green and blue
    (summing to 1; 0 for black): the same for a picture made brighter or darker.
    """
    rows = fftpack.dct(pixels.astype(np.float64), axis=0)[:8]  # the lowest 8 vertically...
    lowest = fftpack.dct(rows, axis=1)[:, :8].reshape(64, 3)  # ...and horizontally
    middle = np.partition(lowest, (31, 32), axis=0)[31:33].mean(axis=0)  # the median
    shrunk = Image.fromarray(np.ascontiguousarray(pixels)).resize((8, 8), Image.Resampling.LANCZOS)
    shrunk = np.asarray(shrunk, dtype=np.float64).reshape(64, 3)
    means = shrunk.mean(axis=0)
    bits = np.concatenate([(lowest > middle).T, (shrunk > means).T])
    return np.packbits(bits), means / max(means.sum(), 1.0)


def _hash_file(path, mirror):
    """``(hashes, colour shares, file size, None)``, the mirror image's hash second with
    ``mirror``, or ``(None, None, None, reason)`` for a file that cannot be read."""
    try:
        pixels = read_image(path, target_size=_THUMBNAIL)
        size = os.stat(path).st_size
    except ImageError as error:
        return None, None, None, error.reason
    except (OSError, ValueError) as error:  # gone since it was read, or a NUL byte in the name
        return None, None, None, f"cannot read ({getattr(error, 'strerror', None) or error})"
    image_hash, shares = fingerprint(pixels)
    hashes = [image_hash] + ([fingerprint(pixels[:, ::-1])[0]] if mirror else [])
    return np.stack(hashes), shares, size, None


def _sha256(path):
    """The file's SHA-256 (hex), or None when it cannot be read."""
    try:
        with open(path, "rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()
    except OSError:
        return None


def hash_files(paths, mirror=False, workers=None, progress=False):
    """Hash image files, in threads (Pillow releases the GIL while it decodes).

    Parameters
    ----------
    paths : list of str
    mirror : bool
        Hash each image flipped left to right too.
    workers : int, optional
        Threads (default: the CPUs + 2, at most 8).
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        ``hashes`` (``(files read, 2 with mirror else 1, HASH_BYTES)`` ``uint8``), ``colours``
        (``(files read, 3)``: colour shares, see :func:`fingerprint`), ``read`` (the position in
        ``paths`` of each file read), ``digests`` (per file read, its SHA-256 when another file
        has its size, else None) and ``unreadable`` (``{"path", "reason"}`` of the files left out).
    """
    workers = workers or min(8, (os.cpu_count() or 1) + 2)
    chunks = [paths[start:start + _CHUNK] for start in range(0, len(paths), _CHUNK)]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        done = pool.map(lambda chunk: [_hash_file(path, mirror) for path in chunk], chunks)
        results = itertools.chain.from_iterable(done)
        if progress:
            results = progress_bar(results, total=len(paths), desc="hashes", unit="img")
        results = list(results)
    read = [position for position, result in enumerate(results) if result[0] is not None]
    sizes = Counter(results[position][2] for position in read)
    empty = np.zeros((0, 2 if mirror else 1, HASH_BYTES), dtype=np.uint8)
    return {
        "hashes": np.stack([results[position][0] for position in read]) if read else empty,
        "colours": np.array([results[position][1] for position in read]).reshape(-1, 3),
        "read": read,
        "digests": [_sha256(paths[position]) if sizes[results[position][2]] > 1 else None
                    for position in read],
        "unreadable": [{"path": paths[position], "reason": result[3]}
                       for position, result in enumerate(results) if result[3] is not None],
    }


def _same_key(keys):
    """Every pair ``(i, j)``, ``i`` before ``j`` in sorted order, of rows with equal ``keys``."""
    order = np.argsort(keys)
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.repeat(np.r_[starts[1:], len(keys)], np.diff(np.r_[starts, len(keys)]))
    partners = ends - np.arange(len(keys)) - 1  # the rows after each one in its bucket
    left = np.repeat(np.arange(len(keys)), partners)
    first_pair = np.cumsum(partners) - partners
    right = left + 1 + np.arange(len(left)) - np.repeat(first_pair, partners)
    return order[left], order[right]


def _check_distance(max_distance):
    if isinstance(max_distance, bool) or not isinstance(max_distance, (int, np.integer)) \
            or not 0 <= max_distance <= _MAX_SEARCH_DISTANCE:
        raise ValueError(f"max_distance: expected a whole number of bits from 0 to "
                         f"{_MAX_SEARCH_DISTANCE}, got {max_distance!r}")


def _tables(n_hashes, n_bits, max_distance):
    """``(key bits, tables)``: keys of 16 bits, or of log2(n) + 1 for more hashes, so that two
    unrelated hashes share one about n/2 times per table, and enough tables for two hashes
    ``max_distance`` bits apart to share a key with a probability of 0.99."""
    key_bits = max(16, math.ceil(math.log2(max(n_hashes, 2))) + 1)
    meet = math.comb(n_bits - max_distance, key_bits) / math.comb(n_bits, key_bits)
    return key_bits, math.ceil(math.log(0.01) / math.log1p(-meet))


def near_pairs(hashes, colours=None, max_distance=MAX_DISTANCE, seed=0):
    """Pairs of rows that join every group of copies, without comparing every pair.

    Parameters
    ----------
    hashes : numpy.ndarray
        ``(n, bytes)`` ``uint8``: one hash per row.
    colours : numpy.ndarray, optional
        ``(n, 3)`` colour shares (see :func:`fingerprint`): rows whose shares differ by more than
        ``MAX_COLOUR_DIFFERENCE`` (summed) are no copies, however close their hashes.
    max_distance : int
        Rows whose hashes differ in at most this many bits (at most 96) are copies.
    seed : int
        Chooses the bits of each table.

    Returns
    -------
    pairs : numpy.ndarray
        ``(m, 2)`` row indices: each row paired with the first row of the same hash (and
        colour, to 0.01), and those first rows paired when they are copies.
    n_checked : int
        The pairs of such first rows compared (once per table in which they met).
    """
    _check_distance(max_distance)
    colours = np.zeros((len(hashes), 3)) if colours is None else np.asarray(colours, dtype=np.float64)
    identity = np.hstack([hashes, np.round(colours * 100).astype(np.uint8)])
    _, first, inverse = np.unique(identity, axis=0, return_index=True, return_inverse=True)
    distinct, distinct_colours = hashes[first], colours[first]
    bits = np.unpackbits(distinct, axis=1).T.copy()  # one row per bit, for fast picking
    key_bits, n_tables = _tables(len(distinct), len(bits), max_distance)
    weights = 1 << np.arange(key_bits, dtype=np.int64)
    rng = np.random.default_rng(seed)
    found, n_checked = [], 0
    for _ in range(n_tables):
        positions = rng.choice(len(bits), key_bits, replace=False)
        left, right = _same_key(weights @ bits[positions])
        n_checked += len(left)
        distance = np.bitwise_count(distinct[left] ^ distinct[right]).sum(axis=1)
        colour = np.abs(distinct_colours[left] - distinct_colours[right]).sum(axis=1)
        close = (distance <= max_distance) & (colour <= MAX_COLOUR_DIFFERENCE)
        found.append(np.stack([first[left[close]], first[right[close]]], axis=1))
    same = np.stack([np.arange(len(hashes)), first[inverse.ravel()]], axis=1)
    pairs = np.concatenate(found + [same[same[:, 0] != same[:, 1]]])
    return np.unique(np.sort(pairs, axis=1), axis=0), n_checked


def _components(n, pairs):
    """The connected component of each of ``n`` items that ``pairs`` join, numbered in order
    of their first item (what union-find computes)."""
    graph = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return csgraph.connected_components(graph, directed=False)[1]


def groups_of(n, pairs):
    """The groups of 2 items or more (lists of indices, ascending) that ``pairs`` join among
    ``n`` items, in order of their first."""
    component = _components(n, pairs)
    sizes = np.bincount(component)
    members = {}
    for index in np.flatnonzero(sizes[component] > 1):
        members.setdefault(component[index], []).append(int(index))
    return list(members.values())


def component_labels(keys, groups=()):
    """A group number per row: rows that share a value of any of ``keys`` (sequences as long as
    the table), or whose ``keys[0]`` values are in one of ``groups``, get the same number."""
    rows, pairs = np.arange(len(keys[0])), []
    for key in keys:  # each row with the first row of its value
        codes = pd.factorize(pd.Series(key))[0]
        pairs.append(np.stack([rows, np.unique(codes, return_index=True)[1][codes]], axis=1))
    first = dict(zip(reversed(list(keys[0])), reversed(rows.tolist())))
    unknown = [name for group in groups for name in group if name not in first]
    if unknown:
        raise ValueError(f"groups: {len(unknown)} name(s) that are no row's, such as {unknown[0]!r}")
    pairs.append(np.array([(first[group[0]], first[name]) for group in groups for name in group[1:]],
                          dtype=np.int64).reshape(-1, 2))
    return _components(len(rows), np.concatenate(pairs))


def find_copies(paths, max_distance=MAX_DISTANCE, mirror=False, workers=None, progress=False):
    """Group image files that show the same picture.

    Parameters
    ----------
    paths : list of str
    max_distance : int
        Bits (of 384; at most 96) within which two hashes are copies.
    mirror : bool
        Count a mirror image (flipped left to right) as a copy too.
    workers, progress : see :func:`hash_files`.

    Returns
    -------
    dict
        ``groups`` (lists of positions in ``paths``, each ascending, in order of their first),
        ``identical`` (per group: are all its files byte-identical), ``pairs_checked``,
        ``n_hashed`` and ``unreadable`` (``{"path", "reason"}``).
    """
    _check_distance(max_distance)
    hashed = hash_files(paths, mirror, workers, progress)
    hashes, read, digests = hashed["hashes"], hashed["read"], hashed["digests"]
    per_image = hashes.shape[1]  # rows: image 0, with mirror its mirror image, image 1, ...
    pairs, n_checked = near_pairs(hashes.reshape(-1, HASH_BYTES),
                                  np.repeat(hashed["colours"], per_image, axis=0), max_distance)
    pairs = pairs // per_image  # a row's image
    groups = groups_of(len(read), pairs[pairs[:, 0] != pairs[:, 1]])
    identical = [digests[group[0]] is not None and len({digests[i] for i in group}) == 1
                 for group in groups]
    return {"groups": [[read[i] for i in group] for group in groups], "identical": identical,
            "pairs_checked": int(n_checked), "n_hashed": len(read),
            "unreadable": hashed["unreadable"]}
