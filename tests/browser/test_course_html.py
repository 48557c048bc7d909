"""The course website of ``make course`` in headless Chromium: open the index, follow a lesson's link.

Built from two tiny notebooks (the real lessons take minutes; tests/test_course_html.py checks the builder) and
served on 127.0.0.1. The pages name CDN scripts (MathJax, require.js); the machine has no outside network, so
every request that is not to the local server is aborted, as an offline reader's browser would fail them.
"""

from __future__ import annotations

import functools
import http.server
import threading

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from segedu.course.html import build_course

from .conftest import record_screenshot


def _lesson(folder, number: int, title: str, code: str) -> None:
    nb = new_notebook(cells=[
        new_markdown_cell(f"# Lesson {number:02d} · {title}\n\n**Question.** What does the {title} lesson print?\n\n"
                          "In this lesson you will measure:\n\n1. a sum;\n2. a product."),
        new_code_cell(code),
    ])
    nbformat.write(nb, folder / f"{number:02d}_{title.lower()}.ipynb")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    lessons = tmp_path_factory.mktemp("lessons")
    _lesson(lessons, 0, "Sums", "print('sum', 20 + 22)")
    _lesson(lessons, 1, "Products", "print('product', 6 * 7)")
    out = tmp_path_factory.mktemp("site")
    pages = build_course(lessons, out, timeout=120, progress=False)
    assert [page.error for page in pages] == [None, None]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.browser
def test_the_index_links_to_the_executed_lessons(site, browser, screenshots):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(site) else route.abort())
    try:
        page.goto(f"{site}/index.html", wait_until="domcontentloaded")
        assert page.title() == "segedu: the lessons, executed"
        lessons = page.locator("article.lesson")
        assert lessons.count() == 2
        assert "What does the Products lesson print?" in lessons.nth(1).inner_text()
        assert "run time" in lessons.nth(1).inner_text()
        path = screenshots / "course_index.png"
        page.screenshot(path=str(path), full_page=True)
        record_screenshot(path)

        page.get_by_role("link", name="Lesson 01 · Products").click()
        page.wait_for_url(f"{site}/01_products.html", wait_until="domcontentloaded")
        assert page.title() == "Lesson 01 · Products"
        page.get_by_role("heading", name="Lesson 01 · Products").first.wait_for(timeout=30_000)
        assert "product 42" in page.locator("body").inner_text()  # the executed cell's output
    finally:
        page.close()
