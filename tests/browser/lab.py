"""Drive JupyterLab in headless Chromium (Playwright) for the browser tests.

``JupyterLabServer`` serves a copy of the lessons on 127.0.0.1 with a random token; ``LabPage`` opens a
notebook, runs every cell, waits for the kernel, reads errors and moves widgets - the way a student does.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = os.environ.get("SEGEDU_CHROMIUM", "/usr/bin/chromium")
# Flags for a sandboxed root session on a machine with no outside network (see the env notes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLabServer:
    """``jupyter lab`` on a copy of ``lessons`` (so running cells never writes outputs into the repository)."""

    def __init__(self, lessons: Path, workdir: Path, env: dict[str, str] | None = None):
        self.root = workdir / "lessons"
        shutil.copytree(lessons, self.root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "jupyterlab.log"
        self._env = dict(os.environ, **(env or {}))
        self._env["JUPYTER_TOKEN"] = self.token
        self._env["JUPYTER_RUNTIME_DIR"] = str(workdir / "runtime")
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "JupyterLabServer":
        jupyter = Path(sys.executable).with_name("jupyter")
        args = [str(jupyter), "lab", f"--notebook-dir={self.root}", "--ip=127.0.0.1", f"--port={self.port}",
                "--no-browser", "--ServerApp.open_browser=False", "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if os.geteuid() == 0:
            args.append("--allow-root")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, env=self._env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        raise RuntimeError(f"jupyter lab did not start:\n{self.log_path.read_text()[-3000:]}")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}&reset"


# JavaScript run in the page: state of the open notebook's cells.
CELL_STATE_JS = """
() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return null;
  const cells = [...panel.querySelectorAll('.jp-Notebook .jp-CodeCell')];
  const prompts = cells.map(c => (c.querySelector('.jp-InputPrompt')?.textContent || '').trim());
  const errors = [...panel.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], .jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]')]
      .map(e => e.textContent).filter(t => /Traceback|Error/.test(t));
  const status = panel.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('data-status');
  return {prompts, errors, status, count: cells.length};
}
"""


def shutdown_kernels(server: JupyterLabServer) -> None:
    """Stop every kernel the page started (frees memory between lessons)."""
    import json

    headers = {"Authorization": f"token {server.token}"}
    request = urllib.request.Request(f"{server.url}/api/sessions", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        sessions = json.load(response)
    for session in sessions:
        delete = urllib.request.Request(f"{server.url}/api/sessions/{session['id']}", headers=headers, method="DELETE")
        urllib.request.urlopen(delete, timeout=30).close()


class LabPage:
    """One browser page showing one notebook."""

    def __init__(self, page, server: JupyterLabServer):
        self.page, self.server = page, server

    def open(self, name: str, timeout_s: float = 180) -> None:
        self.page.goto(self.server.notebook_url(name))
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=timeout_s * 1000)
        self.page.get_by_text("| Idle").first.wait_for(timeout=timeout_s * 1000)  # kernel started
        no_news = self.page.get_by_role("button", name="No", exact=True)  # the "Jupyter news?" toast
        if no_news.count():
            no_news.first.click()

    def run_all(self) -> None:
        self.page.get_by_role("menuitem", name="Run", exact=True).click()
        self.page.locator('li[data-command="runmenu:run-all"]').click()

    def state(self) -> dict:
        return self.page.evaluate(CELL_STATE_JS)

    def wait_until_done(self, timeout_s: float) -> dict:
        """Wait until every code cell has run (an execution count, no ``[*]``) and the kernel is idle."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            state = self.state()
            prompts = state["prompts"] if state else []
            if prompts and all(p.startswith("[") and p[1:-2].isdigit() for p in prompts) and state["status"] == "idle":
                return state
            time.sleep(1.0)
        raise TimeoutError(f"cells still running after {timeout_s:.0f} s: {self.state()}")

    def first_demo(self):
        """The first widget demo: a box holding a slider or dropdown and the image it drives."""
        return self.page.locator(".jp-OutputArea-output .widget-vbox").filter(has=self.page.locator("img")).first

    def move_first_control(self, demo) -> str:
        """Move the demo's first slider one step (right, or left from its maximum), or pick its dropdown's next
        option; returns which."""
        controls = demo.locator(".noUi-handle, select")
        control = controls.first
        control.scroll_into_view_if_needed()
        if control.evaluate("el => el.tagName") == "SELECT":
            options = control.locator("option").all_text_contents()
            current = control.input_value()
            control.select_option(next(o for o in options if o != current))
            return "dropdown"
        # noUiSlider exposes its value range as ARIA attributes: step left from a slider that starts at its maximum.
        now, top = (float(control.get_attribute(a) or 0) for a in ("aria-valuenow", "aria-valuemax"))
        control.focus()
        self.page.keyboard.press("ArrowLeft" if now >= top else "ArrowRight")
        return "slider"
