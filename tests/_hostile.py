"""A hostile corpus: small, deterministic datasets that each hold one kind of bad input.

Every case is a dataset of a few good images (classes ``cat`` and ``dog``) plus one
hostile input (or a model folder with one hostile file), built at test time from code
in a few seconds. ``build_corpus(root)`` writes them all and returns the ``Case``
records that say what each one is and what a command should do with it:

- ``"skip"``: the hostile input is named once with its reason and left out; every good
  image is still used;
- ``"read"``: an odd input that must simply work (UTF-16, WebP, a latin-1 file name...);
- ``"error"``: the whole input is unusable (a CSV that cannot be parsed, a tampered
  model folder): one ``error: ...`` line naming the file, exit code 2.

Run ``python tests/_hostile.py OUT_DIR`` to write the corpus to a folder, and
``python tests/_hostile.py OUT_DIR --run NAME=PYTHON ...`` to run every command on every
case with each given interpreter (a checkout's ``.venv/bin/python``), in child processes
with a time limit, and write ``OUT_DIR/report-NAME.json`` (exit code, traceback or not,
peak memory, whether the bad input was named, the key counts) and a Markdown table.
"""
import dataclasses
import io
import json
import os
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("cat", "dog")
COLOURS = {"cat": (200, 60, 40), "dog": (40, 80, 200)}
GOOD_PER_CLASS = 4
SIZE = (20, 24)  # (height, width) of the good images


@dataclasses.dataclass
class Case:
    """One hostile dataset.

    Attributes
    ----------
    name : str
    kind : {"images", "voc", "csv", "model"}
    what : str
        One line for the report table.
    source : Path
        What a command reads (dataset folder or CSV file).
    layout : str
    expect : {"skip", "read", "error"}
    bad : list of str
        The hostile inputs a message must name (file paths, or a model folder file).
    n_good : int
        Images that must be used.
    model_dir : Path or None
        For ``kind == "model"``: the tampered model folder.
    options : list of str
        Extra CLI options (e.g. ``--encoding``).
    """

    name: str
    kind: str
    what: str
    source: Path
    layout: str
    expect: str
    bad: list
    n_good: int
    model_dir: Path = None
    options: list = dataclasses.field(default_factory=list)


# ----------------------------------------------------------------------------- images


def _pixels(label, index, size=SIZE):
    rng = np.random.default_rng(index + (0 if label == "cat" else 100))
    pixels = np.zeros((*size, 3), dtype=np.int16) + COLOURS[label]
    return (pixels + rng.integers(-30, 30, pixels.shape)).clip(0, 255).astype(np.uint8)


def good_image(path, label, index, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pixels(label, index)).save(path, format=fmt)
    return path


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width=13000, height=13000):
    """A grey PNG of ``width`` × ``height`` zero pixels: 164 KB on disk, 169 megapixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(bytes((width + 1) * height), 9)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data)
            + _png_chunk(b"IEND", b""))


def corrupt_png(label="cat", index=0):
    """A PNG whose header and IEND are fine (and its CRCs right) but whose pixel data is not."""
    buffer = io.BytesIO()
    Image.fromarray(_pixels(label, index, (40, 40))).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    start = data.find(b"IDAT")
    length = struct.unpack(">I", data[start - 4:start])[0]
    for offset in range(start + 4 + 8, start + 4 + length - 4, 5):
        data[offset] ^= 0x5A
    crc = zlib.crc32(bytes(data[start:start + 4 + length]))
    data[start + 4 + length:start + 8 + length] = struct.pack(">I", crc)
    return bytes(data)


def jpeg_huge_header(width=16000, height=11000):
    """A 1 KB JPEG whose frame header claims ``width`` × ``height``; its data stops short."""
    buffer = io.BytesIO()
    Image.fromarray(_pixels("cat", 0, (64, 64))).save(buffer, "JPEG", quality=90)
    data = bytearray(buffer.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data[:1000]) + b"\xff\xd9"


def gif_bomb(width=65535, height=65535):
    """A GIF whose logical screen is ``width`` × ``height`` with a single 1×1 frame."""
    screen = b"GIF89a" + struct.pack("<HH", width, height) + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHH", 0, 0, 1, 1) + b"\x00" + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def truncated_jpeg():
    buffer = io.BytesIO()
    Image.fromarray(_pixels("cat", 1, (64, 64))).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


def _sparse(path, n_bytes, start=b""):
    with open(path, "wb") as stream:
        stream.write(start)
        stream.truncate(n_bytes)


def _image_dataset(root, n_per_class=GOOD_PER_CLASS):
    for label in CLASSES:
        for index in range(n_per_class):
            good_image(root / label / f"{label}_{index}.png", label, index)
    return root


def _image_cases(base):
    """Class folders with one hostile file in ``cat/`` (or one odd thing about the folders)."""
    cases = []
    n_good = 2 * GOOD_PER_CLASS

    def case(name, what, expect, make, n_extra_good=0):
        root = _image_dataset(base / name)
        bad = make(root / "cat")
        bad = [str(path) for path in (bad if isinstance(bad, list) else [bad] if bad else [])]
        cases.append(Case(name, "images", what, root, "folders", expect, bad, n_good + n_extra_good))

    def write(name, data):
        def make(folder):
            (folder / name).write_bytes(data)
            return folder / name
        return make

    case("corrupt_png", "PNG with good header and IEND, corrupt pixel data", "skip",
         write("corrupt.png", corrupt_png()))
    case("truncated_jpeg", "JPEG cut in half (no end marker)", "skip",
         write("cut.jpg", truncated_jpeg()))
    case("png_bomb", "164 KB PNG of 13000×13000 pixels", "skip", write("bomb.png", png_bomb()))
    case("jpeg_huge_header", "1 KB JPEG whose header claims 16000×11000", "skip",
         write("claims_16000x11000.jpg", jpeg_huge_header()))
    case("gif_bomb", "GIF with a 65535×65535 screen and a 1×1 frame", "skip",
         write("screen.gif", gif_bomb()))

    def huge_file(folder):
        buffer = io.BytesIO()
        Image.fromarray(_pixels("cat", 9)).save(buffer, "PNG")
        _sparse(folder / "huge.png", 300_000_000, buffer.getvalue())
        return folder / "huge.png"

    case("huge_file", "300 MB (sparse) file that starts as a valid PNG", "skip", huge_file)
    case("empty_file", "empty file named .jpg", "skip", write("empty.jpg", b""))
    case("random_bytes", "random bytes named .png", "skip",
         write("noise.png", np.random.default_rng(5).bytes(700)))

    def fifo(folder):
        os.mkfifo(folder / "pipe.jpg")
        return folder / "pipe.jpg"

    case("fifo", "named pipe called pipe.jpg (reading it would block forever)", "skip", fifo)

    def dangling(folder):
        os.symlink(folder / "nowhere.jpg", folder / "dangling.jpg")
        return folder / "dangling.jpg"

    case("dangling_symlink", "symbolic link to a missing file", "skip", dangling)

    def loop(folder):
        os.symlink("loop.jpg", folder / "loop.jpg")
        return folder / "loop.jpg"

    case("symlink_loop", "symbolic link pointing at itself", "skip", loop)

    def strip(folder):
        Image.new("RGB", (20000, 5), (200, 60, 40)).save(folder / "strip.png")

    case("strip", "valid 20000×5 strip (annotate must cap its copy)", "read", strip, 1)

    def tiny(folder):
        Image.new("RGB", (1, 1), (200, 60, 40)).save(folder / "tiny.png")

    case("tiny", "valid 1×1 image", "read", tiny, 1)

    def large(folder):
        Image.new("RGB", (5400, 5400), (190, 70, 50)).save(folder / "large.png")

    case("large_png", "valid 5400×5400 PNG (29 megapixels, under the budget)", "read", large, 1)

    def large_jpeg(folder):
        Image.new("RGB", (8000, 6000), (190, 70, 50)).save(folder / "large.jpg", quality=80)

    case("large_jpeg", "valid 8000×6000 JPEG (48 megapixels: decoded at a reduced scale)", "read",
         large_jpeg, 1)

    def formats(folder):
        for index, (name, fmt) in enumerate([("a.webp", "WEBP"), ("b.tif", "TIFF"), ("c.tiff", "TIFF")]):
            good_image(folder / name, "cat", 10 + index, fmt)

    case("webp_tiff", ".webp, .tif and .tiff images in a class folder", "read", formats, 3)

    def odd_modes(folder):
        Image.fromarray(_pixels("cat", 20)).convert("CMYK").save(folder / "cmyk.jpg")
        ramp = np.linspace(0, 65535, 20 * 24).reshape(20, 24).astype(np.uint16)
        Image.fromarray(ramp).save(folder / "sixteen_bit.png")
        Image.fromarray(_pixels("cat", 21)).convert("P", palette=Image.Palette.ADAPTIVE).save(
            folder / "palette.png")
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(_pixels("cat", 22)).save(folder / "rotated.jpg", exif=exif)

    case("odd_modes", "CMYK JPEG, 16-bit PNG, palette PNG, EXIF-rotated JPEG", "read", odd_modes, 4)

    def other_extensions(folder):
        (folder / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
        (folder / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
        (folder / "notes.txt").write_text("not an image")
        return [folder / "clip.mp4", folder / "photo.heic"]

    case("other_extensions", ".heic and .mp4 files beside the images (listed, not loaded)",
         "read", other_extensions)

    def latin1_name(folder):
        good_image(folder / os.fsdecode(b"caf\xe9.png"), "cat", 30)

    case("latin1_name", "file name with a raw latin-1 byte (not UTF-8)", "read", latin1_name, 1)

    def latin1_folder(folder):
        good_image(folder / os.fsdecode(b"vieux_r\xe9pertoire") / "old.png", "cat", 31)

    case("latin1_subfolder", "sub-folder name with a raw latin-1 byte", "read", latin1_folder, 1)

    def directory_named_jpg(folder):
        (folder / "folder.jpg").mkdir()

    case("folder_named_jpg", "empty folder named folder.jpg", "read", directory_named_jpg)

    # Label hygiene: three spellings of one class.
    root = base / "case_variants"
    for index, folder in enumerate(("cat", "Cat", " CAT")):
        for k in range(2):
            good_image(root / folder / f"{index}_{k}.png", "cat", index * 2 + k)
    for k in range(GOOD_PER_CLASS):
        good_image(root / "dog" / f"{k}.png", "dog", k)
    cases.append(Case("case_variants", "images", "class folders cat/, Cat/ and ' CAT'/", root,
                      "folders", "read", [], 6 + GOOD_PER_CLASS))
    return cases


# ----------------------------------------------------------------------------- VOC

VOC_XML = """<annotation>
  <folder>VOC2012</folder>
  <filename>{filename}</filename>
  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>
  <object><name>{label}</name><difficult>0</difficult></object>
</annotation>
"""


def _voc_dataset(root):
    (root / "Annotations").mkdir(parents=True)
    for label in CLASSES:
        for index in range(GOOD_PER_CLASS):
            stem = f"{label}_{index}"
            good_image(root / "JPEGImages" / f"{stem}.jpg", label, index, "JPEG")
            (root / "Annotations" / f"{stem}.xml").write_text(VOC_XML.format(
                filename=f"{stem}.jpg", width=SIZE[1], height=SIZE[0], label=label))
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("".join(f"{label}_{i}\n" for label in CLASSES for i in range(3)))
    (main / "val.txt").write_text("".join(f"{label}_3\n" for label in CLASSES))
    return root


def _extra_image(root, stem="extra"):
    good_image(root / "JPEGImages" / f"{stem}.jpg", "cat", 40, "JPEG")
    return f"{stem}.jpg"


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE annotation [
 <!ENTITY a "lol">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
 <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
 <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
 <!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">
 <!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">
]>
<annotation><filename>extra.jpg</filename><object><name>&h;</name></object></annotation>
"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE annotation SYSTEM "http://127.0.0.1:9/voc.dtd" [
 <!ENTITY secret SYSTEM "file:///etc/passwd">
]>
<annotation><filename>extra.jpg</filename><object><name>&secret;</name></object></annotation>
"""


def _voc_cases(base):
    cases = []
    n_good = 2 * GOOD_PER_CLASS

    def case(name, what, expect, make, n_extra_good=0, bad_path=True):
        root = _voc_dataset(base / name)
        bad = make(root)
        bad = [str(path) for path in (bad if isinstance(bad, list) else [bad] if bad else [])]
        cases.append(Case(name, "voc", what, root, "voc", expect, bad if bad_path else [],
                          n_good + n_extra_good))

    def annotation(text, name="hostile.xml", encoding="utf-8", extra=True):
        def make(root):
            if extra:
                _extra_image(root)
            path = root / "Annotations" / name
            path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
            return path
        return make

    plain = VOC_XML.format(filename="extra.jpg", width=24, height=20, label="cat")
    case("voc_shift_jis", "annotation in Shift_JIS (declared), Japanese text", "read",
         annotation(plain.replace("<annotation>", '<?xml version="1.0" encoding="Shift_JIS"?>\n'
                                  "<annotation>").replace("VOC2012", "日本の写真"),
                    encoding="shift_jis"), 1)
    case("voc_utf16", "annotation in UTF-16 with a byte-order mark", "read",
         annotation(plain, encoding="utf-16"), 1)
    case("voc_latin1", "annotation in ISO-8859-1 (declared)", "read",
         annotation(plain.replace("<annotation>", '<?xml version="1.0" encoding="ISO-8859-1"?>\n'
                                  "<annotation>").replace("VOC2012", "caf\u00e9"),
                    encoding="latin-1"), 1)
    case("voc_wrong_encoding", "declares UTF-8, holds a latin-1 byte", "skip",
         annotation(plain.replace("VOC2012", "caf\u00e9"), encoding="latin-1"))
    case("voc_unknown_encoding", "declares encoding x-no-such-codec", "skip",
         annotation('<?xml version="1.0" encoding="x-no-such-codec"?>\n' + plain))
    case("voc_inf_width", "<width>inf</width>", "read",
         annotation(plain.replace("<width>24</width>", "<width>inf</width>")), 1)
    case("voc_huge_width", "a 23-digit <width>", "read",
         annotation(plain.replace("<width>24</width>", "<width>12345678901234567890123</width>")), 1)
    case("voc_malformed", "malformed XML (unclosed elements)", "skip",
         annotation("<annotation><filename>extra.jpg</filename><object><name>cat</name>"))
    case("voc_binary", "random bytes named .xml", "skip",
         annotation(np.random.default_rng(3).bytes(400), extra=False))
    case("voc_billion_laughs", "entity expansion bomb (billion laughs)", "skip",
         annotation(BILLION_LAUGHS))
    case("voc_external_entity", "external DTD and an entity reading /etc/passwd", "skip",
         annotation(EXTERNAL_ENTITY))
    case("voc_deep_nesting", "valid annotation with 100,000 nested elements", "read",
         annotation(plain.replace("</annotation>", "<x>" * 100000 + "</x>" * 100000 + "</annotation>")), 1)

    def huge(root):
        _sparse(root / "Annotations" / "huge.xml", 20_000_000, b"<annotation>")
        return root / "Annotations" / "huge.xml"

    case("voc_huge_xml", "20 MB annotation (sparse)", "skip", huge)

    def folder(root):
        (root / "Annotations" / "folder.xml").mkdir()
        return root / "Annotations" / "folder.xml"

    case("voc_xml_is_folder", "Annotations/folder.xml is a folder", "skip", folder)

    def loop(root):
        os.symlink("loop.xml", root / "Annotations" / "loop.xml")
        return root / "Annotations" / "loop.xml"

    case("voc_symlink_loop", "Annotations/loop.xml links to itself", "skip", loop)

    def dangling(root):
        os.symlink(root / "gone.xml", root / "Annotations" / "dangling.xml")
        return root / "Annotations" / "dangling.xml"

    case("voc_dangling_symlink", "Annotations/dangling.xml links to a missing file", "skip", dangling)

    def fifo(root):
        os.mkfifo(root / "Annotations" / "pipe.xml")
        return root / "Annotations" / "pipe.xml"

    case("voc_fifo", "Annotations/pipe.xml is a named pipe", "skip", fifo)
    case("voc_escape", "<filename>../../etc/passwd</filename>", "skip",
         annotation(plain.replace("extra.jpg", "../../etc/passwd"), extra=False))

    def duplicate(root):
        path = root / "Annotations" / "dog_0_again.xml"
        path.write_text(VOC_XML.format(filename="dog_0.jpg", width=24, height=20, label="cat"))
        return path

    case("voc_duplicate", "two annotations name dog_0.jpg (labels dog, then cat)", "read",
         duplicate, bad_path=False)

    def utf16_listing(root):
        listing = root / "ImageSets" / "Main" / "train.txt"
        listing.write_bytes(listing.read_text().encode("utf-16"))

    case("voc_utf16_imagesets", "ImageSets/Main/train.txt in UTF-16", "read", utf16_listing)
    return cases


# ----------------------------------------------------------------------------- CSV


def _csv_dataset(root, rows=None, encoding="utf-8", header="filename,labels,group\n", raw=None):
    images = root / "images"
    lines = []
    for label in CLASSES:
        for index in range(GOOD_PER_CLASS):
            good_image(images / f"{label}_{index}.png", label, index)
            lines.append(f"{label}_{index}.png,{label},{index}\n")
    if rows is not None:
        lines = rows(lines)
    path = root / "labels.csv"
    path.write_bytes(raw if raw is not None else (header + "".join(lines)).encode(encoding))
    return path


def _csv_cases(base):
    cases = []
    n_good = 2 * GOOD_PER_CLASS

    def case(name, what, expect, n_extra_good=0, options=(), **make):
        path = _csv_dataset(base / name, **make)
        cases.append(Case(name, "csv", what, path, "csv", expect, [str(path)],
                          n_good + n_extra_good, options=list(options)))

    case("csv_first_row_extra", "only the first data row has an extra field", "skip",
         n_extra_good=-1, rows=lambda lines: [lines[0].rstrip("\n") + ",extra\n"] + lines[1:])
    case("csv_latin1_body", "latin-1 byte deep in the body (no --encoding)", "error",
         rows=lambda lines: lines + ["caf\u00e9.png,cat,9\n"], encoding="latin-1")
    case("csv_latin1_encoding", "the same file with --encoding latin-1", "read", n_extra_good=1,
         options=["--encoding", "latin-1"],
         rows=lambda lines: lines + ["caf\u00e9.png,cat,9\n"], encoding="latin-1")
    good_image(base / "csv_latin1_encoding" / "images" / "caf\u00e9.png", "cat", 9)
    case("csv_unterminated_quote", "an opening quote never closed, deep in the file", "error",
         rows=lambda lines: lines[:5] + ['"cat_9.png,cat,9\n'] + lines[5:])
    case("csv_utf16", "UTF-16 with a byte-order mark", "read", encoding="utf-16")
    case("csv_utf8_bom", "UTF-8 with a byte-order mark", "read", encoding="utf-8-sig")
    case("csv_duplicate_rows", "cat_0.png listed twice, labels cat then dog", "read",
         rows=lambda lines: lines + ["cat_0.png,dog,0\n"])
    case("csv_case_variants", "labels cat, Cat and ' CAT'", "read",
         rows=lambda lines: [line.replace(",cat,", ",Cat,", 1) if i == 1 else
                             line.replace(",cat,", ", CAT,", 1) if i == 2 else line
                             for i, line in enumerate(lines)])
    case("csv_escape", "rows ../outside.png and /etc/passwd", "skip",
         rows=lambda lines: lines + ["../outside.png,cat,9\n", "/etc/passwd,cat,9\n"])
    case("csv_nul_in_name", "a file name with a NUL byte", "skip",
         rows=lambda lines: lines + ["cat\x00.png,cat,9\n"])
    case("csv_binary", "random bytes named .csv", "error",
         raw=np.random.default_rng(4).bytes(600))
    case("csv_empty", "empty .csv file", "error", raw=b"")
    case("csv_header_only", "header, no rows", "read", n_extra_good=-n_good, rows=lambda lines: [])
    return cases


# ----------------------------------------------------------------------------- model folders


def _zip(path, members):
    """Write a zip by hand: ``members`` is a list of (name, method, stored bytes, crc, size).

    ``zipfile`` cannot store data compressed elsewhere, nor declare a size of our choosing.
    """
    with open(path, "wb") as stream:
        central = b""
        for name, method, data, crc, size in members:
            offset = stream.tell()
            encoded = name.encode()
            stream.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc,
                                     len(data), size, len(encoded), 0) + encoded)
            stream.write(data)
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, crc,
                                   len(data), size, len(encoded), 0, 0, 0, 0, 0, offset) + encoded
        start = stream.tell()
        stream.write(central)
        stream.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members),
                                 len(central), start, 0))


def _stored(name, data):
    return (name, 0, data, zlib.crc32(data), len(data))


def _members(model_file):
    with zipfile.ZipFile(model_file) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def deflated_padding(content, n_spaces):
    """Raw deflate of ``n_spaces`` spaces then ``content``, from one repeated 1 MB block."""
    block = b" " * 2**20
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    compressor.compress(block)
    compressor.flush(zlib.Z_FULL_FLUSH)  # first block (it may differ: no history yet)
    repeated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    n_blocks = n_spaces // len(block)
    crc = 0
    for _ in range(n_blocks):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(content, crc)
    data = repeated * n_blocks + compressor.compress(content) + compressor.flush()
    return data, crc, n_blocks * len(block) + len(content)


def save_clean_model(model_dir, size=(16, 16)):
    """A small untrained network for cat/dog saved as a model folder (helpers.artefacts)."""
    import keras

    from helpers import artefacts

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((*size, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(len(CLASSES), activation="sigmoid")], name="tiny")
    artefacts.save_artefacts(model_dir, model, list(CLASSES), "multi_label", size)
    return model_dir


def _model_cases(base, clean_model, images_source):
    cases = []

    def case(name, what, damage, expect="error", bad_file="model.keras"):
        model_dir = base / name
        shutil.copytree(clean_model, model_dir)
        damage(model_dir)
        cases.append(Case(name, "model", what, images_source, "folders", expect,
                          [str(model_dir / bad_file)], 2 * GOOD_PER_CLASS, model_dir=model_dir))

    def labels(text=None, raw=None):
        def damage(model_dir):
            path = model_dir / "labels.json"
            path.write_bytes(raw if raw is not None else text.encode())
        return damage

    metadata = json.loads((clean_model / "labels.json").read_text())
    case("labels_deep", "labels.json nested 100,000 deep", labels("[" * 100000 + "]" * 100000),
         bad_file="labels.json")
    case("labels_utf16", "labels.json saved as UTF-16 (Notepad)", labels(
        raw=json.dumps(metadata).encode("utf-16")), expect="read", bad_file="labels.json")
    case("labels_binary", "labels.json of random bytes", labels(raw=np.random.default_rng(6).bytes(300)),
         bad_file="labels.json")
    case("labels_huge_size", "labels.json asks for 100000×100000 inputs",
         labels(json.dumps(dict(metadata, target_size=[100000, 100000]))), bad_file="labels.json")
    case("labels_is_folder", "labels.json is a folder",
         lambda d: ((d / "labels.json").unlink(), (d / "labels.json").mkdir()), bad_file="labels.json")

    def zip_bomb(model_dir):
        members = _members(model_dir / "model.keras")
        data, crc, size = deflated_padding(members["config.json"], 1500 * 2**20)
        _zip(model_dir / "model.keras", [_stored("metadata.json", members["metadata.json"]),
                                         ("config.json", 8, data, crc, size),
                                         _stored("model.weights.h5", members["model.weights.h5"])])

    case("model_zip_bomb", "model.keras whose config.json inflates to 1.5 GB", zip_bomb)

    def deep_config(model_dir):
        members = _members(model_dir / "model.keras")
        members["config.json"] = b"[" * 100000 + b"]" * 100000
        _zip(model_dir / "model.keras", [_stored(name, data) for name, data in members.items()])

    case("model_config_deep", "model.keras whose config.json nests 100,000 deep", deep_config)

    def unstored_weights(model_dir):
        import h5py

        members = _members(model_dir / "model.keras")
        source = io.BytesIO(members["model.weights.h5"])
        target = io.BytesIO()
        with h5py.File(source, "r") as old, h5py.File(target, "w") as new:
            for key in old:
                old.copy(key, new)
            kernel = next(name for name in _datasets(new) if name.endswith("vars/0"))
            del new[kernel]
            new.create_dataset(kernel, shape=(20000, 20000), dtype="f4", chunks=(1000, 1000),
                               compression="gzip")
        members["model.weights.h5"] = target.getvalue()
        _zip(model_dir / "model.keras", [_stored(name, data) for name, data in members.items()])

    case("model_unstored_weights", "weights declaring a 1.6 GB array they do not store",
         unstored_weights)
    case("model_not_zip", "model.keras of random bytes",
         lambda d: (d / "model.keras").write_bytes(np.random.default_rng(7).bytes(900)))

    def lambda_layer(model_dir):
        import keras

        from helpers import artefacts

        model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Lambda(lambda x: x * 1.0),
                                  keras.layers.Flatten(), keras.layers.Dense(2, activation="sigmoid")])
        artefacts.save_model(model, model_dir / "model.keras")

    case("model_lambda_layer", "model.keras with a Lambda layer (Python code: safe mode refuses)",
         lambda_layer)

    def splits(text=None, raw=None):
        def damage(model_dir):
            (model_dir / "splits.csv").write_bytes(raw if raw is not None else text.encode())
        return damage

    rows = [(str(Path(images_source) / label / f"{label}_{index}.png"), "test", label)
            for label in CLASSES for index in range(GOOD_PER_CLASS)]
    good_splits = "filename,split,labels,absolute_path\n" + "".join(
        f"{path},{split},{labels},{os.path.abspath(path)}\n" for path, split, labels in rows)
    case("splits_no_split_column", "splits.csv without its split column",
         splits("filename,labels\n" + "".join(f"{p},{l}\n" for p, _, l in rows)), bad_file="splits.csv")
    case("splits_utf16", "splits.csv saved as UTF-16", splits(raw=good_splits.encode("utf-16")),
         expect="read", bad_file="splits.csv")
    case("splits_binary", "splits.csv of random bytes", splits(raw=np.random.default_rng(8).bytes(500)),
         bad_file="splits.csv")
    return cases


def _datasets(group, prefix=""):
    import h5py

    for key, item in group.items():
        if isinstance(item, h5py.Dataset):
            yield prefix + key
        else:
            yield from _datasets(item, prefix + key + "/")


# ----------------------------------------------------------------------------- one dataset


def build_mixed(root, large=True):
    """One class-folder dataset holding every hostile image and every odd-but-good one.

    Returns
    -------
    Case
        ``bad``: the files that must be skipped and named; ``n_good``: images to use.
    """
    root = Path(root)
    cases = _image_cases(root / "parts")
    mixed = _image_dataset(root / "mixed")
    n_good, bad = 2 * GOOD_PER_CLASS, []
    for case in cases:
        if case.name == "case_variants" or (not large and case.name.startswith("large")):
            continue
        source = case.source / "cat"
        for entry in sorted(os.scandir(source), key=lambda entry: entry.name):
            if entry.name.startswith("cat_"):
                continue
            target = mixed / "cat" / entry.name
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), target)
            elif stat_is_fifo(entry.path):
                os.mkfifo(target)
            elif entry.is_dir():
                shutil.copytree(entry.path, target)
            elif entry.stat().st_size > 2**26:  # keep a sparse file sparse
                with open(entry.path, "rb") as stream:
                    _sparse(target, entry.stat().st_size, stream.read(2**16))
            else:
                shutil.copyfile(entry.path, target)
        n_good += case.n_good - 2 * GOOD_PER_CLASS
        bad += [str(mixed / "cat" / os.path.basename(path)) for path in case.bad
                if case.expect == "skip"]
    shutil.rmtree(root / "parts")
    return Case("mixed", "images", "every hostile and odd image in one dataset", mixed, "folders",
                "skip", sorted(bad), n_good)


def stat_is_fifo(path):
    import stat

    return stat.S_ISFIFO(os.lstat(path).st_mode)


# ----------------------------------------------------------------------------- all


def build_corpus(root, models=True):
    """Write every case under ``root``; return ``{name: Case}``.

    Parameters
    ----------
    root : str or Path
        An empty (or missing) folder.
    models : bool
        Also build the model-folder cases and ``root/clean_model`` (imports Keras).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cases = _image_cases(root / "images") + _voc_cases(root / "voc") + _csv_cases(root / "csv")
    if models:
        clean_images = _image_dataset(root / "clean_images")
        clean_model = save_clean_model(root / "clean_model")
        cases += _model_cases(root / "models", clean_model, clean_images)
    return {case.name: case for case in cases}


def describe(cases):
    """The corpus as JSON-able rows (for a report)."""
    return [dict(dataclasses.asdict(case), source=str(case.source),
                 model_dir=None if case.model_dir is None else str(case.model_dir))
            for case in cases.values()]


# ----------------------------------------------------------------------------- report

COMMANDS = {
    "images": ("scan", "audit", "train", "predict", "evaluate"),
    "voc": ("scan", "audit", "train", "evaluate"),
    "csv": ("scan", "audit", "train", "evaluate"),
    "model": ("predict", "evaluate"),
}


def command_line(case, command, out):
    """The ``helpers`` arguments that run ``command`` on ``case`` (outputs under ``out``)."""
    clean_model = str(Path(out) / "clean_model")
    dataset = [str(case.source), "--layout", case.layout, *case.options]
    if command in ("scan", "audit"):
        return [command, *dataset, "--format", "json"]
    if command == "train":
        return ["train", *dataset, "--model", "mlp", "--epochs", "1", "--image-size", "16",
                "--batch-size", "4", "--no-augment", "--out", str(Path(out) / "runs" / case.name)]
    model_dir = str(case.model_dir) if case.model_dir else clean_model
    if command == "predict":
        return ["predict", "--model-dir", model_dir, str(case.source), "--format", "json",
                "--annotate", str(Path(out) / "annotated" / case.name)]
    split = ["--split", "test"] if case.name.startswith("splits_") else []
    return ["evaluate", "--model-dir", model_dir, *dataset, *split, "--format", "json"]


# Runs ``python -m MODULE ...`` or ``python -c CODE ...`` and, at exit, writes the process's
# own peak resident memory (VmHWM, which exec resets) to the file named first. The rusage
# of wait4 is not used: its ru_maxrss also counts the parent's pages the child held between
# fork and exec, so a child of a large test process looked large.
_PEAK_WRAPPER = """
import atexit, runpy, sys
peak_file, mode, target, *rest = sys.argv[1:]
def write_peak():
    with open("/proc/self/status") as status, open(peak_file, "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(write_peak)
if mode == "-m":
    sys.argv = [target, *rest]
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    sys.argv = ["-c", *rest]
    exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})
"""


def run_child(argv, timeout, cwd):
    """Run argv; return (exit code or None on timeout, stdout, stderr, peak RSS in MB).

    ``argv`` is ``[python, "-m", module, ...]`` or ``[python, "-c", code, ...]``; the peak is
    the child's own (``VmHWM``), or ``ru_maxrss`` when it was killed before it could say.
    """
    import signal
    import subprocess
    import tempfile
    import threading

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".peak") as peak_file:
        if len(argv) >= 3 and argv[1] in ("-m", "-c"):
            argv = [argv[0], "-c", _PEAK_WRAPPER, peak_file.name, *argv[1:]]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="default")
        process = subprocess.Popen(argv, stdout=out, stderr=err, cwd=cwd, env=env,
                                   start_new_session=True)
        timed_out = threading.Event()

        def kill():
            timed_out.set()
            os.killpg(process.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        _, status, usage = os.wait4(process.pid, 0)
        timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        code = None if timed_out.is_set() else process.returncode
        reported = peak_file.read().strip()
        peak_kb = int(reported) if reported.isdigit() else usage.ru_maxrss
        return (code, out.read().decode("utf-8", "backslashreplace"),
                err.read().decode("utf-8", "backslashreplace"), peak_kb / 1024)


def _summary(case, command, code, stdout, stderr):
    """A few words on what a command did: counts, and whether the bad input was named."""
    parts = []
    try:
        report = json.loads(stdout) if stdout.strip().startswith(("{", "[")) else None
    except ValueError:
        report = None
    if isinstance(report, dict) and command == "scan":
        parts.append(f"{report.get('n_images')} listed, {len(report.get('unreadable', []))} unreadable, "
                     f"{len(report.get('skipped', []))} skipped")
    elif isinstance(report, dict) and command == "audit":
        parts.append(f"{report.get('n_ok')} ok / {report.get('n_bad')} bad")
    elif isinstance(report, dict) and command == "evaluate":
        parts.append(f"{report.get('n_images')} evaluated, {len(report.get('skipped', []))} skipped")
    elif isinstance(report, list) and command == "predict":
        parts.append(f"{sum(r.get('error') is None for r in report)} predicted, "
                     f"{sum(r.get('error') is not None for r in report)} with an error")
    elif command == "train":
        found = [line for line in stdout.splitlines() if "inputs found" in line]
        parts.append(found[0].split(": ", 1)[-1] if found else "no count line")
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    if errors:
        parts.append(errors[-1][:160])
    if case.bad and case.expect != "read":
        text = stdout + stderr
        names = [os.path.basename(path) for path in case.bad]
        shown = [name for name in names
                 if name in text or repr(name)[1:-1] in text or printable_name(name) in text]
        parts.append("named" if len(shown) == len(names) else "NOT named")
    return "; ".join(parts)


def printable_name(name):
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return name


def run_report(out, pythons, timeout=180, workers=2, only=None):
    """Run every command of every case with each interpreter; write the reports and a table.

    ``only``: case names to run again, their rows replacing those of an earlier report.
    """
    import concurrent.futures

    cases = {row["name"]: Case(**dict(row, source=Path(row["source"]),
                                      model_dir=row["model_dir"] and Path(row["model_dir"])))
             for row in json.loads((Path(out) / "cases.json").read_text())}
    results = {}
    for label, python in pythons.items():
        work = Path(out) / f"work-{label}"
        if not only:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            shutil.copytree(Path(out) / "clean_model", work / "clean_model")
        jobs = [(case, command) for case in cases.values() for command in COMMANDS[case.kind]
                if not only or case.name in only]

        def run(job):
            case, command = job
            argv = [python, "-m", "helpers", *command_line(case, command, work)]
            code, stdout, stderr, peak = run_child(argv, timeout, work)
            return {"case": case.name, "command": command, "code": code, "peak_mb": round(peak),
                    "traceback": "Traceback (most recent call last)" in stderr,
                    "summary": _summary(case, command, code, stdout, stderr),
                    "stderr_tail": stderr[-600:]}

        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            rows = list(pool.map(run, jobs))
        report = Path(out) / f"report-{label}.json"
        if only and report.exists():
            redone = {(row["case"], row["command"]): row for row in rows}
            rows = [redone.pop((row["case"], row["command"]), row)
                    for row in json.loads(report.read_text())] + list(redone.values())
        report.write_text(json.dumps(rows, indent=1))
    results = {path.stem[len("report-"):]: json.loads(path.read_text())
               for path in sorted(Path(out).glob("report-*.json"), key=lambda p: p.stat().st_mtime)}
    (Path(out) / "report.md").write_text(markdown_table(cases, results))
    return results


def _cell(row, case):
    if row is None:
        return ""
    if case.expect == "read":  # nothing to name
        row = dict(row, summary=row["summary"].replace("; NOT named", "").replace("; named", ""))
    if row["code"] is None:
        state = "HANG (killed)"
    elif row["traceback"]:
        state = f"TRACEBACK (exit {row['code']})"
    else:
        state = f"exit {row['code']}"
    memory = f", {row['peak_mb'] / 1024:.1f} GB" if row["peak_mb"] >= 1000 else ""
    return f"{state}{memory}: {row['summary']}".replace("|", "/")


def markdown_table(cases, results):
    """One row per case and interpreter: what each command did."""
    commands = ("scan", "audit", "train", "predict", "evaluate")
    by_key = {(label, row["case"], row["command"]): row for label, rows in results.items() for row in rows}
    lines = ["| case | what | run | " + " | ".join(commands) + " |",
             "|---|---|---|" + "---|" * len(commands)]
    for case in cases.values():
        for index, label in enumerate(results):
            cells = [_cell(by_key.get((label, case.name, command)), case) for command in commands]
            first = [case.name, case.what] if index == 0 else ["", ""]
            lines.append("| " + " | ".join(first + [label] + cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--run", nargs="*", default=None, metavar="NAME=PYTHON")
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument("--cases", nargs="*", default=None, help="run only these cases again")
    args = parser.parse_args()
    out = Path(args.out_dir)
    if not (out / "cases.json").exists():
        built = build_corpus(out)
        (out / "cases.json").write_text(json.dumps(describe(built), indent=1))
        print(f"{len(built)} cases in {out}")
    if args.run:
        run_report(out, dict(item.split("=", 1) for item in args.run), args.timeout, only=args.cases)
        print(f"wrote {out / 'report.md'}")
