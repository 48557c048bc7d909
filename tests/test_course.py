import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

from segedu import course
from segedu.course import lessons
from segedu.data.tasks import semantic_from_instances


def test_show_returns_the_real_source():
    code = course.show(semantic_from_instances)
    text = course.source(semantic_from_instances)
    assert text.startswith("def semantic_from_instances(")
    assert "semantic[mask] = label" in text
    assert "semantic_from_instances" in code._repr_html_() or text in str(code.data)


def test_show_rejects_builtins():
    with pytest.raises(TypeError, match="show"):
        course.source(len)


def test_lesson_index_follows_course_order(tmp_path):
    for name in ("02_upsampling.ipynb", "00_segmentation_task.ipynb"):
        (tmp_path / name).write_text("{}")
    assert [lesson.number for lesson in course.lesson_index(tmp_path)] == [0, 2]
    numbers = [lesson.number for lesson in course.LESSONS]
    assert numbers == sorted(numbers) == list(range(13))


# ----------------------------------------------------------------------------------------------------
# Google Colab: the badge and the install cell
# ----------------------------------------------------------------------------------------------------

def _run_install_cell(monkeypatch, on_colab: bool) -> list:
    """Run the Colab cell's source with ``exec`` in a fresh namespace; returns the commands it ran."""
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    if on_colab:  # what a Colab kernel has imported at start-up
        google = types.ModuleType("google")
        google.colab = types.ModuleType("google.colab")
        monkeypatch.setitem(sys.modules, "google", google)
        monkeypatch.setitem(sys.modules, "google.colab", google.colab)
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(lessons.colab_install_source(), "<colab cell>", "exec"), {"__name__": "__main__"})
    return calls


def test_the_colab_cell_does_nothing_elsewhere(monkeypatch):
    assert _run_install_cell(monkeypatch, on_colab=False) == []


def test_the_colab_cell_does_nothing_in_a_plain_python_process():
    # A fresh interpreter: the cell must neither fail nor print nor start a process (no pip on the way).
    code = "import subprocess\nsubprocess.run = subprocess.Popen = None\n" + lessons.colab_install_source()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""


def test_the_colab_cell_installs_the_course_on_colab(monkeypatch):
    calls = _run_install_cell(monkeypatch, on_colab=True)
    assert len(calls) == 1
    (command,), options = calls[0]
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    assert command[-1] == f"segedu @ git+{lessons.REPOSITORY}@{lessons.BRANCH}"
    assert options == {"check": True}


def test_the_badge_opens_the_lesson_from_the_repository():
    badge = lessons.colab_badge("11_capstone.ipynb")
    owner_name = lessons.REPOSITORY.removeprefix("https://github.com/")
    assert badge.startswith("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](")
    assert badge.endswith(
        f"(https://colab.research.google.com/github/{owner_name}/blob/{lessons.BRANCH}/lessons/11_capstone.ipynb)"
    )
    with pytest.raises(ValueError, match="filename"):
        lessons.colab_url("lessons/11_capstone.ipynb")
    with pytest.raises(TypeError, match="filename"):
        lessons.colab_url(11)


def test_the_repository_is_named_in_one_place():
    import segedu

    package = Path(segedu.__file__).parent
    hits = [p for p in package.rglob("*.py") if lessons.REPOSITORY in p.read_text(encoding="utf-8")]
    assert hits == [package / "course" / "lessons.py"]


def test_add_colab_cells_is_idempotent(monkeypatch):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Lesson"), nbformat.v4.new_code_cell("x = 1")])
    original = [dict(cell) for cell in nb.cells]
    once = nbformat.writes(lessons.add_colab_cells(nb, "05_fcn.ipynb"))
    assert [cell.id for cell in nb.cells[:2]] == [lessons.COLAB_BADGE_ID, lessons.COLAB_INSTALL_ID]
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source == lessons.colab_badge("05_fcn.ipynb")
    assert nb.cells[1].cell_type == "code" and nb.cells[1].source == lessons.colab_install_source()
    assert nb.cells[1].outputs == [] and nb.cells[1].execution_count is None  # committed without outputs
    assert [dict(cell) for cell in nb.cells[2:]] == original
    assert nbformat.writes(lessons.add_colab_cells(nb, "05_fcn.ipynb")) == once
    nbformat.validate(nb)
    # a new repository address replaces the cells instead of adding a second pair
    monkeypatch.setattr(lessons, "REPOSITORY", "https://github.com/another/course")
    lessons.add_colab_cells(nb, "05_fcn.ipynb")
    assert len(nb.cells) == 4 and "another/course" in nb.cells[0].source + nb.cells[1].source
    with pytest.raises(TypeError, match="notebook"):
        lessons.add_colab_cells("05_fcn.ipynb", "05_fcn.ipynb")


def test_every_lesson_carries_the_current_colab_cells():
    # Once add_colab_cells has run on lessons/, every lesson carries the cells it writes today.
    root = Path(__file__).resolve().parents[1] / "lessons"
    notebooks = {
        lesson.filename: nbformat.read(root / lesson.filename, as_version=4) for lesson in course.lesson_index(root)
    }
    with_cells = [
        name for name, nb in notebooks.items() if any(c.get("id") == lessons.COLAB_INSTALL_ID for c in nb.cells)
    ]
    if not with_cells:
        pytest.skip("the lessons have no Colab cells yet (segedu.course.lessons.add_colab_cells adds them)")
    for name, nb in notebooks.items():
        expected = nbformat.writes(lessons.add_colab_cells(nbformat.from_dict(nb), name))
        assert nbformat.writes(nb) == expected, f"{name}: run segedu.course.lessons.add_colab_cells on it again"
