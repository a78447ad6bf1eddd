"""Public datasets fetched the Keras way: ``keras.utils.get_file``'s cache and hash check,
downloads that resume, archives extracted safely. :func:`fetch` returns the ``SOURCE`` and
``LAYOUT`` that ``helpers.data.load_dataset`` (and every notebook's settings cell) takes."""
import os
import urllib.error
from pathlib import Path

from helpers.files import downloads
from helpers.files.downloads import FetchError
from helpers.files.fileio import atomic_write_text, printable
from helpers.files.weights import DOWNLOAD_TIMEOUT, OFFLINE_ENVIRONMENT, downloads_allowed, keras_cache_dir

_VOC = "http://host.robots.ox.ac.uk/pascal/VOC"
_COCO = "http://images.cocodataset.org"
# Each archive: (URL, its published MD5).
DATASETS = {
    "voc2007": {
        "archives": [(f"{_VOC}/voc2007/VOCtrainval_06-Nov-2007.tar", "c52e279531787c972589f7e41ab4ae64"),
                     (f"{_VOC}/voc2007/VOCtest_06-Nov-2007.tar", "b6e924de25625d8de591ea690078ad9f")],
        "source": "VOCdevkit/VOC2007", "layout": "voc",
        "about": "PASCAL VOC 2007 trainval + test: 9,963 photos, 20 labels",
    },
    "voc2012": {
        "archives": [(f"{_VOC}/voc2012/VOCtrainval_11-May-2012.tar", "6cd6e144f989b92b3379bac3b3de84fd")],
        "source": "VOCdevkit/VOC2012", "layout": "voc",
        "about": "PASCAL VOC 2012 trainval: 17,125 photos, 20 labels",
    },
    "coco2017-val": {
        "archives": [(f"{_COCO}/zips/val2017.zip", "442b8da7639aecaf257c1dceb8ba8c80"),
                     (f"{_COCO}/annotations/annotations_trainval2017.zip", "f4bbac642086de4f52a3fdda2de5fa2c")],
        "source": "annotations/instances_val2017.json", "layout": "coco",
        "about": "COCO 2017 val: 5,000 photos, 80 labels",
    },
}
_DONE = ".extracted"


def fetch(name=None, *, url=None, file_hash=None, directory=None):
    """Download (or find in the cache) and extract a dataset; return ``(source, layout)``.

    Parameters
    ----------
    name : str, optional
        One of ``DATASETS``.
    url, file_hash : str, optional
        Any tar or zip archive instead, with its MD5 or SHA-256; its layout is ``"auto"``.
    directory : str or Path, optional
        The cache folder (default: Keras', ``~/.keras``); archives go to ``datasets/`` in it,
        their contents to ``datasets/NAME/``.
    """
    spec = _spec(name, url, file_hash)
    cache_dir = Path(directory) if directory is not None else keras_cache_dir()
    target = cache_dir / "datasets" / spec["name"]
    if not (target / _DONE).is_file():
        for archive_url, checksum in spec["archives"]:
            archive = _archive(archive_url, checksum, cache_dir)
            downloads.extract(archive, target)
        atomic_write_text(target / _DONE, "\n".join(url for url, _ in spec["archives"]) + "\n")
    return target / spec["source"], spec["layout"]


def _spec(name, url, file_hash):
    if (name is None) == (url is None):
        raise ValueError("fetch: give a dataset name or --url, not both")
    if url is not None:
        if not file_hash or len(file_hash) not in (32, 64):
            raise ValueError("fetch: --sha256 (64 hex digits, or an MD5 of 32) is required with --url")
        stem = os.path.basename(url.split("?")[0]).split(".")[0] or "archive"
        return {"name": stem, "archives": [(url, file_hash.lower())], "source": ".",
                "layout": "auto"}
    if name not in DATASETS:
        raise ValueError(f"fetch: expected one of {sorted(DATASETS)}, got {name!r}")
    return dict(DATASETS[name], name=name)


def _archive(url, checksum, cache_dir):
    """The archive's path in the cache, downloaded (or resumed) and checked."""
    file_name = os.path.basename(url.split("?")[0])
    target = cache_dir / "datasets" / file_name
    algorithm = "sha256" if len(checksum) == 64 else "md5"
    if not target.is_file() or downloads.file_hash(target, algorithm) != checksum:
        if not downloads_allowed():
            raise FetchError(f"offline ({OFFLINE_ENVIRONMENT}=1): download {url} by hand into "
                             f"{printable(target.parent)}/ and run again")
        target.parent.mkdir(parents=True, exist_ok=True)
        _download(url, target)
        if downloads.file_hash(target, algorithm) != checksum:
            target.unlink()
            raise FetchError(f"{url}: the {algorithm} checksum does not match {checksum}; "
                             "the download was deleted")
    import keras

    return keras.utils.get_file(file_name, url, file_hash=checksum, cache_dir=str(cache_dir),
                                cache_subdir="datasets")


def _download(url, target):
    print(f"Downloading {url} to {printable(target)}")
    try:
        downloads.download(url, target, timeout=DOWNLOAD_TIMEOUT)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise FetchError(f"{url}: download failed ({' '.join(str(reason).split())}); download it "
                         f"by hand into {printable(target.parent)}/ and run again") from error
