"""`make lab` serves JupyterLab on lessons/ with token authentication."""

import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _status(url: str) -> int:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        return opener.open(url, timeout=5).status
    except urllib.error.HTTPError as err:
        return err.code


def test_make_lab_serves_lessons_with_a_token(tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, PORT=str(port), JUPYTER_TOKEN=token, JUPYTER_RUNTIME_DIR=str(tmp_path))
    log = open(tmp_path / "lab.log", "w+")
    proc = subprocess.Popen(["make", "lab"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline, status = time.time() + 90, None
        while time.time() < deadline and proc.poll() is None:
            try:
                status = _status(f"{base}/lab?token={token}")
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.5)
        log.seek(0)
        output = log.read()
        assert status == 200, f"JupyterLab did not answer 200 at /lab (last status {status}):\n{output[-3000:]}"
        # authentication stays on: without the token the API refuses and /lab sends you to log in
        assert _status(f"{base}/api/contents") == 403
        assert _status(f"{base}/lab") in (302, 303)
        # the notebook directory is lessons/
        with urllib.request.urlopen(f"{base}/api/contents?token={token}", timeout=5) as response:
            listing = response.read().decode()
        assert "00_segmentation_task.ipynb" in listing
        assert f"{port}/lab?token=" in output, "make lab should print the URL with its token"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
