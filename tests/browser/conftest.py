"""Browser tests: JupyterLab in headless Chromium, driven by Playwright (never `playwright install`)."""

import os
import tempfile
from pathlib import Path

import pytest

from .lab import CHROMIUM, CHROMIUM_ARGS, JupyterLabServer

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("SEGEDU_SCREENSHOTS", Path(__file__).parent / "screenshots")).resolve()
# The profile the browser runs the lessons in (the nbval run already covers `quick`).
BROWSER_PROFILE = os.environ.get("SEGEDU_BROWSER_PROFILE", os.environ.get("SEGEDU_PROFILE", "quick"))
_taken: list[Path] = []


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Without Chromium: skip locally, naming the install command; fail in CI, which must install it."""
    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM}: install it with `apt-get install chromium`"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message + " (CI=true: .ci/run must install it)")
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="session")
def lab_server(chromium_path):
    with tempfile.TemporaryDirectory(prefix="segedu-lab-") as work:
        with JupyterLabServer(ROOT / "lessons", Path(work), env={"SEGEDU_PROFILE": BROWSER_PROFILE}) as server:
            yield server


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def record_screenshot(path: Path) -> None:
    _taken.append(path)


def pytest_terminal_summary(terminalreporter):
    if _taken:
        terminalreporter.section("browser screenshots")
        terminalreporter.write_line(f"folder: {SCREENSHOTS}")
        for path in _taken:
            terminalreporter.write_line(f"  {path.name}")
