"""`make lab` works: JupyterLab starts headless on loopback and lists the notebooks."""
import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_jupyterlab_lists_the_notebooks(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={REPO_ROOT / 'notebooks'}",
        "--ServerApp.port_retries=0", "--allow-root",
    ]
    env = {"JUPYTER_RUNTIME_DIR": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/api/contents?token={token}"
        deadline, listing = time.monotonic() + 90, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    listing = json.load(response)
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        if listing is None:
            server.terminate()
            output = server.communicate(timeout=20)[0]
            pytest.fail(f"JupyterLab did not answer on loopback within 90 s:\n{output[-6000:]}")
        names = {item["name"] for item in listing["content"]}
        expected = {path.name for path in (REPO_ROOT / "notebooks").glob("0*.ipynb")}
        assert expected and expected <= names
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=10) as response:
            assert response.status == 200
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
