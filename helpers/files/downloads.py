"""Archives from the network, defensively: a download that resumes where it stopped, a
checksum before anything is used, and extraction that refuses members escaping the folder.

``keras.utils.get_file`` owns the cache (``~/.keras/datasets``) and the final hash check;
it starts a download from zero and deletes what it got when interrupted, so the bytes come
through :func:`download` first, which continues a ``.part`` file with an HTTP range request.
"""
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import PurePosixPath

from helpers.files.fileio import printable

_BLOCK = 1 << 20


class FetchError(ValueError):
    """A download or an archive that cannot be used; the message says what to do by hand."""


def file_hash(path, algorithm):
    """The hex digest of a file (``"md5"`` or ``"sha256"``)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url, target, timeout):
    """Download ``url`` to ``target``, continuing ``target.part`` if an earlier run stopped.

    Returns the number of bytes this call received.
    """
    part = f"{target}.part"
    done = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code != 416:  # 416: the part file already holds every byte
            raise
        os.replace(part, target)
        return 0
    with response:
        resumed = done and response.status == 206
        received = 0
        with open(part, "ab" if resumed else "wb") as out:
            for block in iter(lambda: response.read(_BLOCK), b""):
                out.write(block)
                received += len(block)
    expected = response.headers.get("Content-Length")
    if expected is not None and received < int(expected):
        raise FetchError(f"{url}: the connection closed after {received:,} of {int(expected):,} "
                         "bytes; run again to continue the download")
    os.replace(part, target)
    return received


def _unsafe_member(name, kind):
    """Why an archive member may not be extracted, or None."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (name[1:3] == ":\\" or name[1:3] == ":/"):
        return "an absolute path"
    if ".." in path.parts:
        return "a path that leaves the folder"
    if kind != "file" and kind != "dir":
        return f"a {kind}"
    return None


def _tar_kind(member):
    if member.issym() or member.islnk():
        return "link"
    if member.ischr() or member.isblk() or member.isfifo():
        return "device or pipe"
    return "dir" if member.isdir() else "file" if member.isfile() else "special file"


def _zip_kind(info):
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "link"
    return "dir" if info.is_dir() else "file"


def _check_members(archive_path, members):
    for name, kind in members:
        reason = _unsafe_member(name, kind)
        if reason:
            raise FetchError(f"{printable(archive_path)}: member {printable(name)} is {reason}; "
                             "nothing was extracted")


def extract(archive_path, directory):
    """Extract a tar (any compression) or zip archive into ``directory`` after checking every
    member: an absolute path, a ``..``, a link, a device or a pipe refuses the whole archive
    before anything is written. The members appear in ``directory`` all at once."""
    os.makedirs(directory, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".extract-", dir=directory)
    try:
        if zipfile.is_zipfile(archive_path):
            with zipfile.ZipFile(archive_path) as archive:
                _check_members(archive_path, [(i.filename, _zip_kind(i)) for i in archive.infolist()])
                archive.extractall(staging)
        elif tarfile.is_tarfile(archive_path):
            with tarfile.open(archive_path) as archive:
                members = archive.getmembers()
                _check_members(archive_path, [(m.name, _tar_kind(m)) for m in members])
                archive.extractall(staging, members=members, filter="data")
        else:
            raise FetchError(f"{printable(archive_path)}: not a tar or zip archive")
        _move_into(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into(staging, directory):
    """Merge the extracted tree into ``directory`` (archives such as VOC's trainval and test
    share their top folders)."""
    for root, folders, files in os.walk(staging):
        relative = os.path.relpath(root, staging)
        os.makedirs(os.path.join(directory, relative), exist_ok=True)
        for name in files:
            os.replace(os.path.join(root, name), os.path.join(directory, relative, name))
