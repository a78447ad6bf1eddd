"""Listing the images below a folder, defensively: hidden entries, unreadable folders and
files that are not images by their extension are left out, each kind said once."""
import collections
import os

from helpers import warn
from helpers.files import fileio
from helpers.files.images import IMAGE_EXTENSIONS

# Files beside images that are left out without a word.
_COMPANION_EXTENSIONS = (".txt", ".md", ".rst", ".csv", ".tsv", ".json", ".xml", ".yaml",
                         ".yml", ".ini", ".db", ".log", ".xmp", ".names", ".data")
_MAX_LISTED = 10  # file names shown in one warning


def _walk(directory):
    """``(image paths, other files)`` below ``directory``, sorted; unreadable folders warned about."""
    found, others = [], []

    def unreadable(error):
        warn(f"cannot list the folder {fileio.printable(error.filename or directory)} "
             f"({error.strerror or error}); its images are left out")

    for folder, subfolders, files in os.walk(directory, onerror=unreadable):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.join(folder, name))
            elif not name.lower().endswith(_COMPANION_EXTENSIONS):
                others.append(os.path.join(folder, name))
    return sorted(found), sorted(others)


def image_files(directory):
    """``(image paths, other files)`` below ``directory``, each ``os.path.join(directory, ...)``
    and sorted; the other files that are not companions of images (``.txt``, ``.csv``,
    ``.json``, ``.xml``...) are listed in one warning."""
    directory = os.fspath(directory)
    found, others = _walk(directory)
    if others:
        extensions = collections.Counter(os.path.splitext(path)[1].lower() or "(none)"
                                         for path in others)
        summary = ", ".join(f"{ext} {n}" for ext, n in extensions.most_common())
        shown = ", ".join(fileio.printable(path) for path in others[:_MAX_LISTED])
        more = f" and {len(others) - _MAX_LISTED} more" if len(others) > _MAX_LISTED else ""
        warn(f"left out {len(others)} file(s) under {fileio.printable(directory)} that are not "
             f"images by their extension ({summary}): {shown}{more}")
    return found, others
