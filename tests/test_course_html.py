"""segedu.course.html (``make course``): executed lesson pages and their index, on two tiny notebooks.

One notebook runs, one raises: the build writes both pages and the index, marks the failing one with its cell
and error, and the command exits with 1 naming it. The real lessons are too slow to execute here; their
introductions are only read (every one must give the index a title, a question and what it measures).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from segedu.course import html as course_html

ROOT = Path(__file__).resolve().parents[1]


def tiny_lesson(path: Path, number: int, title: str, code: str) -> Path:
    nb = new_notebook(cells=[
        new_markdown_cell("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](x)"),
        new_code_cell("import sys"),
        new_markdown_cell(f"# Lesson {number:02d} · {title}\n\n**Question.** Does the {title.lower()} cell\n"
                          "run to the end?\n\nSome prose.\n\nIn this lesson you will measure:\n\n"
                          "1. the sum of **one** and one;\n2. a second thing that wraps\n   onto two lines.\n\n"
                          "More prose after the list.\n\n- not a measure"),
        new_code_cell(code),
    ])
    nbformat.write(nb, path / f"{number:02d}_{title.lower()}.ipynb")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    lessons = tmp_path_factory.mktemp("lessons")
    tiny_lesson(lessons, 0, "Working", "print('the answer is', 1 + 1)")
    tiny_lesson(lessons, 1, "Broken", "raise ValueError('boom in the lesson')")
    out = tmp_path_factory.mktemp("site") / "course"
    code = course_html.main([str(lessons), "--out", str(out), "--timeout", "120", "--no-progress"])
    return lessons, out, code


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.append(dict(attrs)["href"])


def test_the_index_lists_every_lesson_with_question_measures_and_time(built):
    _, out, _ = built
    index = (out / "index.html").read_text(encoding="utf-8")
    parser = Links()
    parser.feed(index)
    assert parser.links == ["00_working.html", "01_broken.html"]
    assert all((out / link).is_file() for link in parser.links)
    assert "Lesson 00 · Working" in index and "Lesson 01 · Broken" in index
    assert "<strong>Question.</strong> Does the working cell run to the end?" in index
    assert "<li>the sum of <strong>one</strong> and one;</li>" in index
    assert "<li>a second thing that wraps onto two lines.</li>" in index and "not a measure" not in index
    assert len(re.findall(r"run time \d+\.\d s", index)) == 2 and "2 lessons" in index


def test_a_lesson_page_holds_its_outputs(built):
    _, out, _ = built
    page = (out / "00_working.html").read_text(encoding="utf-8")
    assert "<title>Lesson 00 · Working</title>" in page
    assert "the answer is 2" in page


def test_a_failing_lesson_is_reported_and_the_others_still_built(built, capsys):
    lessons, out, code = built
    assert code == 1
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "FAILED: cell 3: ValueError: boom in the lesson" in index and "1 failed" in index
    assert index.count("ran without errors") == 1
    assert "boom in the lesson" in (out / "01_broken.html").read_text(encoding="utf-8")  # the traceback is shown
    assert all(not any(c.get("outputs") for c in nbformat.read(p, 4).cells if c.cell_type == "code")
               for p in lessons.glob("*.ipynb"))  # the sources stay without outputs


def test_main_names_the_failure_and_refuses_a_missing_folder(tmp_path, capsys):
    lessons = tiny_lesson(tmp_path, 2, "Broken", "1 / 0")
    assert course_html.main([str(lessons), "--out", str(tmp_path / "site"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "FAILED 02_broken.ipynb: cell 3: ZeroDivisionError: division by zero" in err
    assert course_html.main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "lessons must be a folder of notebooks" in capsys.readouterr().err
    with pytest.raises(TypeError, match="timeout"):
        course_html.build_course(lessons, tmp_path / "y", timeout=2.5)


@pytest.mark.parametrize("path", sorted((ROOT / "lessons").glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_real_lesson_gives_the_index_its_summary(path):
    title, question, measures = course_html.lesson_summary(nbformat.read(path, 4))
    assert title.startswith(f"Lesson {path.name[:2]}"), title
    assert question.startswith("**Question.**") and question.endswith("?"), question
    assert len(measures) >= 2, measures


def test_helpers():
    assert course_html.format_seconds(8.24) == "8.2 s" and course_html.format_seconds(83) == "1 min 23 s"
    nb = new_notebook(cells=[new_code_cell("x")])
    assert course_html.first_error(nb) is None
    nb.cells[0].outputs = [nbformat.v4.new_output("error", ename="KeyError", evalue="'k'", traceback=[])]
    assert course_html.first_error(nb) == "cell 0: KeyError: 'k'"
    nb.cells[0].metadata["tags"] = ["raises-exception"]  # meant to raise: not a failure
    assert course_html.first_error(nb) is None
