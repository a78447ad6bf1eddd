"""Hardened reading of a PASCAL VOC folder: the XML annotations, the image lists, the names.

An annotation over 16 MB is refused before it is read; the rest is decoded in the encoding
its byte-order mark or XML declaration names (Shift_JIS, latin-1...), then parsed by
``defusedxml`` with DTDs and entities refused. A file name from an annotation (or a CSV)
that is absolute or climbs out of the image folder with ``..`` is refused unless
``allow_absolute`` (see ``helpers.data``); a NUL character in it always is.

``skip`` is a function ``skip(path, reason)`` that records an input left out.
"""
import os
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import defusedxml
import defusedxml.ElementTree as SafeElementTree

from helpers import warn
from helpers.files import fileio

_MAX_ANNOTATION_BYTES = 16_000_000  # a VOC annotation is a few KB
_MAX_SIZE_VALUE = 10**7  # no image is wider or taller than this many pixels
_VOC_SPLITS = ("train", "val", "test")
_ABSOLUTE = re.compile(r"^(?:[/\\]|[A-Za-z]:[/\\])")
_PARENT_SEGMENT = re.compile(r"(?:^|[/\\])\.\.(?:[/\\]|$)")
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_XML_ENCODING = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']")


def is_absolute(name):
    """True for ``/a``, ``\\a`` and ``C:\\a`` (on any system)."""
    return _ABSOLUTE.match(name) is not None


def unsafe_reason(name, allow_absolute=False):
    """Why a file name from an annotation must not be trusted, or None if it is fine."""
    if "\x00" in name:
        return "file name contains a NUL character"
    if allow_absolute:
        return None
    if is_absolute(name):
        return f"absolute path {name!r} refused (pass allow_absolute=True to allow it)"
    if _PARENT_SEGMENT.search(name) and \
            os.path.normpath(name.replace("\\", "/")).split("/")[0] == "..":
        return f"path {name!r} escapes the image directory (pass allow_absolute=True to allow it)"
    return None


def _xml_text(data, xml_path):
    """Decode an annotation's bytes by its byte-order mark or declared encoding."""
    encoding = fileio.sniff_encoding(data)
    if encoding is None:
        declared = _XML_ENCODING.match(data[:512])
        encoding = declared.group(1).decode("ascii") if declared else "utf-8"
    text = fileio.decode_text(data, xml_path, encoding, what="annotation")
    # The text is decoded: a declared encoding would only confuse the parser.
    return _XML_DECLARATION.sub("", text.lstrip("\ufeff"), count=1)


def _parse_annotation(xml_path):
    """The root element of one annotation, or a ValueError with the reason to skip it."""
    try:
        text = _xml_text(fileio.read_bytes(xml_path, "annotation", _MAX_ANNOTATION_BYTES), xml_path)
    except fileio.ReadError as error:
        raise ValueError(error.reason) from None
    try:
        return SafeElementTree.fromstring(text, forbid_dtd=True)
    except ElementTree.ParseError as error:
        raise ValueError(f"malformed XML ({error})") from None
    except defusedxml.DTDForbidden:
        raise ValueError("refused: the XML declares a DTD (<!DOCTYPE ...>), which can pull in "
                         "entities or outside files; VOC annotations have none") from None
    except defusedxml.EntitiesForbidden:
        raise ValueError("refused: the XML declares entities (<!ENTITY ...>)") from None
    except defusedxml.DefusedXmlException as error:
        raise ValueError(f"refused: {type(error).__name__} ({error})") from None


def annotations(root, caller, allow_absolute, skip):
    """Yield ``(xml_path, root element, file name)`` of each usable ``root/Annotations/*.xml``.

    The others (malformed, unreadable, a DTD, no ``<filename>``, an unsafe one) are skipped.
    """
    folder = Path(root) / "Annotations"
    if not folder.is_dir():
        raise ValueError(f"{caller}: expected a folder {folder}, but it does not exist")
    with os.scandir(folder) as entries:
        xml_files = sorted(Path(entry.path) for entry in entries
                           if entry.name.lower().endswith(".xml") and not entry.name.startswith("."))
    for xml_path in xml_files:
        try:
            annotation = _parse_annotation(xml_path)
        except ValueError as error:
            skip(xml_path, str(error))
            continue
        name = (annotation.findtext("filename") or "").strip()
        unsafe = unsafe_reason(name, allow_absolute)
        if not name or unsafe:
            skip(xml_path, unsafe or "no <filename> in the annotation")
            continue
        yield xml_path, annotation, name


def _size_value(text, field, xml_path):
    """A ``<size>`` value in whole pixels, or None (warned about when it is there but absurd)."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value == value and 0 < value <= _MAX_SIZE_VALUE:
        return int(value)
    shown = text.strip()
    shown = shown if len(shown) <= 30 else shown[:30] + "..."
    warn(f"ignored <{field}>{shown}</{field}> in {fileio.printable(xml_path)}: not a size in "
         f"pixels (the image is kept; its size is read from the image itself)")
    return None


def image_size(annotation, xml_path):
    """``(width, height)`` from ``<size>``, each None when missing or not a plausible size."""
    size = annotation.find("size")
    if size is None:
        return None, None
    return tuple(_size_value(size.findtext(field), field, xml_path) for field in ("width", "height"))


def objects(annotation, drop_difficult=False):
    """``(number, <object>, difficult)`` of each object kept, numbered from 1 among all."""
    for number, obj in enumerate(annotation.findall("object"), start=1):
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        if not (drop_difficult and difficult):
            yield number, obj, difficult


def _whole_number(element, tag):
    """``int(float(text))`` of ``element``'s ``<tag>``, or None when missing or no finite number."""
    try:
        return int(float(element.findtext(tag)))
    except (AttributeError, TypeError, ValueError, OverflowError):
        return None


def boxes(annotation, xml_path, drop_difficult, skip):
    """Yield ``(label, xmin, ymin, xmax, ymax, width, height, difficult)`` of each object.

    An object without ``<name>`` or a complete numeric ``<bndbox>`` is skipped; ``width``
    and ``height`` are the image's, from ``<size>`` (None when missing).
    """
    size = [_whole_number(annotation.find("size"), tag) for tag in ("width", "height")]
    for number, obj, difficult in objects(annotation, drop_difficult):
        label = (obj.findtext("name") or "").strip()
        corners = [_whole_number(obj.find("bndbox"), tag) for tag in ("xmin", "ymin", "xmax", "ymax")]
        if not label or None in corners:
            skip(f"{xml_path} (object {number})",
                 "no <name>" if not label else "no complete numeric <bndbox>")
            continue
        yield (label, *corners, *size, difficult)


def image_splits(root):
    """Image id (file stem) → split name from ``ImageSets/Main/{train,val,test}.txt``."""
    splits = {}
    main = Path(root) / "ImageSets" / "Main"
    for split in _VOC_SPLITS:
        listing = main / f"{split}.txt"
        if not listing.is_file():
            continue
        try:
            text = fileio.read_text(listing, "image list", errors="surrogateescape")
        except fileio.ReadError as error:
            warn(f"ignored {fileio.printable(listing)}: {error.reason}; its images get no split")
            continue
        for line in text.split():
            splits.setdefault(line.strip(), split)
    return splits
