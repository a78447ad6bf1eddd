"""``helpers fetch``: archives downloaded the Keras way from a loopback server (resumed after an
interruption, checked, extracted safely) and the ``SOURCE`` / ``LAYOUT`` they give."""
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile

import pytest

from helpers import data
from helpers.datasets import fetch
from helpers.files.downloads import FetchError


class _Files(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` with HTTP ranges; ``server.cut[path]`` bytes then hangs up once."""

    def do_GET(self):  # noqa: N802 (the standard library's name)
        self.server.requests.append((self.path, self.headers.get("Range")))
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = self.server.cut.pop(self.path, None)
        self.wfile.write(body[start:cut] if cut else body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("HELPERS_OFFLINE", "0")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    httpd.files, httpd.cut, httpd.requests = {}, {}, []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_port}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def tar_bytes(members):
    """A tar.gz of ``{name: bytes}``; a value of ("link", target) makes a symbolic link."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, content[1]
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def zip_bytes(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def sha256(body):
    return hashlib.sha256(body).hexdigest()


def test_a_good_archive_is_downloaded_once_and_extracted(server, tmp_path):
    body = tar_bytes({"photos/a.txt": b"alpha", "photos/b/c.txt": b"gamma"})
    server.files["/photos.tar.gz"] = body
    source, layout = fetch.fetch(url=server.url + "/photos.tar.gz", file_hash=sha256(body),
                                 directory=tmp_path)
    assert layout == "auto" and (source / "photos" / "b" / "c.txt").read_bytes() == b"gamma"
    assert (tmp_path / "datasets" / "photos.tar.gz").read_bytes() == body
    again = fetch.fetch(url=server.url + "/photos.tar.gz", file_hash=sha256(body), directory=tmp_path)
    assert again == (source, layout) and len(server.requests) == 1


def test_a_wrong_checksum_keeps_nothing(server, tmp_path):
    server.files["/photos.zip"] = zip_bytes({"a.txt": b"alpha"})
    with pytest.raises(FetchError, match="checksum does not match"):
        fetch.fetch(url=server.url + "/photos.zip", file_hash="0" * 64, directory=tmp_path)
    assert not (tmp_path / "datasets" / "photos.zip").exists()
    assert not (tmp_path / "datasets" / "photos").exists()


@pytest.mark.parametrize("members, reason", [
    ({"ok.txt": b"fine", "../evil.txt": b"x"}, "leaves the folder"),
    ({"ok.txt": b"fine", "/etc/evil.txt": b"x"}, "absolute path"),
    ({"ok.txt": b"fine", "link": ("link", "/etc/passwd")}, "a link"),
])
def test_an_archive_whose_members_escape_is_refused_before_writing(server, tmp_path, members, reason):
    body = tar_bytes(members)
    server.files["/bad.tar.gz"] = body
    with pytest.raises(FetchError, match=reason):
        fetch.fetch(url=server.url + "/bad.tar.gz", file_hash=sha256(body), directory=tmp_path)
    extracted = tmp_path / "datasets" / "bad"
    assert not extracted.exists() or [p.name for p in extracted.rglob("*")] == []
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "datasets" / "evil.txt").exists()


def test_a_zip_member_that_escapes_is_refused(server, tmp_path):
    body = zip_bytes({"ok.txt": b"fine", "../../evil.txt": b"x"})
    server.files["/bad.zip"] = body
    with pytest.raises(FetchError, match="leaves the folder"):
        fetch.fetch(url=server.url + "/bad.zip", file_hash=sha256(body), directory=tmp_path)
    assert not list(tmp_path.rglob("evil.txt")) and not list(tmp_path.rglob("ok.txt"))


def test_an_interrupted_download_resumes_where_it_stopped(server, tmp_path):
    body = tar_bytes({f"photos/{index}.bin": bytes([index]) * 20_000 for index in range(20)})
    server.files["/big.tar.gz"] = body
    server.cut["/big.tar.gz"] = len(body) // 2
    with pytest.raises(FetchError, match="run again to continue"):
        fetch.fetch(url=server.url + "/big.tar.gz", file_hash=sha256(body), directory=tmp_path)
    part = tmp_path / "datasets" / "big.tar.gz.part"
    assert part.stat().st_size == len(body) // 2
    source, _ = fetch.fetch(url=server.url + "/big.tar.gz", file_hash=sha256(body), directory=tmp_path)
    assert server.requests[-1] == ("/big.tar.gz", f"bytes={len(body) // 2}-")
    assert (source / "photos" / "19.bin").read_bytes() == bytes([19]) * 20_000
    assert not part.exists()


def test_offline_names_the_url_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HELPERS_OFFLINE", "1")
    with pytest.raises(FetchError, match=r"offline.*VOCtrainval_06-Nov-2007\.tar by hand"):
        fetch.fetch("voc2007", directory=tmp_path)


def test_a_named_dataset_gives_the_source_and_layout_its_loader_takes(server, tmp_path, monkeypatch):
    annotation = (b"<annotation><filename>000001.jpg</filename><size><width>4</width>"
                  b"<height>4</height><depth>3</depth></size><object><name>dog</name></object>"
                  b"</annotation>")
    from PIL import Image

    image = io.BytesIO()
    Image.new("RGB", (4, 4)).save(image, format="JPEG")
    body = tar_bytes({"VOCdevkit/VOC2007/Annotations/000001.xml": annotation,
                      "VOCdevkit/VOC2007/JPEGImages/000001.jpg": image.getvalue()})
    server.files["/VOCtrainval_06-Nov-2007.tar"] = body
    md5 = hashlib.md5(body).hexdigest()
    monkeypatch.setitem(fetch.DATASETS, "voc2007", dict(
        fetch.DATASETS["voc2007"], archives=[(server.url + "/VOCtrainval_06-Nov-2007.tar", md5)]))
    source, layout = fetch.fetch("voc2007", directory=tmp_path)
    assert layout == "voc"
    frame = data.load_dataset(source, layout=layout)
    assert [sorted(labels) for labels in frame["labels"]] == [["dog"]]


def test_unknown_names_and_missing_checksums_are_refused(tmp_path):
    with pytest.raises(ValueError, match="expected one of"):
        fetch.fetch("imagenet", directory=tmp_path)
    with pytest.raises(ValueError, match="--sha256"):
        fetch.fetch(url="http://127.0.0.1:1/a.zip", directory=tmp_path)


def test_the_command_line_offline_is_one_line_and_exit_2(tmp_path):
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "helpers", "fetch", "coco2017-val", "--dir",
                             str(tmp_path)], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, HELPERS_OFFLINE="1"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "val2017.zip by hand" in result.stderr


def test_the_command_line_prints_source_and_layout(server, tmp_path):
    import os
    import subprocess
    import sys

    body = zip_bytes({"pics/a.txt": b"x"})
    server.files["/pics.zip"] = body
    result = subprocess.run([sys.executable, "-m", "helpers", "fetch", "--url", server.url + "/pics.zip",
                             "--sha256", sha256(body), "--dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, HELPERS_OFFLINE="0"))
    assert result.returncode == 0, result.stderr
    assert "LAYOUT = 'auto'" in result.stdout and "SOURCE = " in result.stdout
