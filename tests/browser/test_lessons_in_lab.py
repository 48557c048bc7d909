"""Every lesson in a real JupyterLab: Run All, no traceback, its first widget control redraws its picture."""

from pathlib import Path

import pytest

from .conftest import ROOT, record_screenshot
from .lab import LabPage, shutdown_kernels

# Every lesson. `make test` runs them here after nbval has run them once: the trained weights come from its
# result cache (SEGEDU_CACHE, see segedu/cache.py), so this second run costs the lessons' other cells, not
# their training. Lesson 05 watches its training live (a callback), so it trains here too: its bar shows.
LESSONS = sorted(path.name for path in (ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))
RUN_TIMEOUT_S = 900


@pytest.mark.browser
@pytest.mark.parametrize("name", LESSONS, ids=[Path(n).stem for n in LESSONS])
def test_lesson_runs_and_its_widget_responds(name, lab_server, browser, screenshots):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    lab = LabPage(page, lab_server)
    stem = Path(name).stem
    try:
        lab.open(name)
        lab.run_all()
        if stem.startswith("05_"):
            # training in lesson 05 shows tqdm's progress bar as a widget
            page.locator(".jp-OutputArea-output .widget-hprogress, .jp-OutputArea-output .progress").first.wait_for(
                timeout=RUN_TIMEOUT_S * 1000
            )
        state = lab.wait_until_done(RUN_TIMEOUT_S)
        assert not state["errors"], f"{name}: traceback in an output:\n" + "\n".join(state["errors"])[:3000]

        demo = lab.first_demo()
        assert demo.count(), f"{name}: no widget demo (controls above a picture) found"
        demo.scroll_into_view_if_needed()
        image = demo.locator("img").first
        before = image.get_attribute("src")
        path = screenshots / f"{stem}_before.png"
        demo.screenshot(path=str(path))
        kind = lab.move_first_control(demo)
        page.wait_for_function(
            "([el, old]) => el.getAttribute('src') !== old", arg=[image.element_handle(), before], timeout=120_000
        )
        path = screenshots / f"{stem}_after_{kind}.png"
        demo.screenshot(path=str(path))
        record_screenshot(path)
    finally:
        page.screenshot(path=str(screenshots / f"{stem}_page.png"))
        page.close()
        shutdown_kernels(lab_server)
