"""The course manifest (issue 17, point 6): what `release` writes beside the student notebooks and what the
package ships for the grader, built from the instructor lessons' cells."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest

from segedu import course
from segedu.course import manifest as manifest_module

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))
# Written independently of the builder: every check call of the lessons and the name it passes in.
CALL = re.compile(r"checks\.(check_\w+)\(\s*(\w+)\s*\)")


@pytest.fixture(scope="module")
def built():
    return course.build_manifest(ROOT / "lessons")


def test_every_check_call_of_the_lessons_appears_once_with_its_function_and_hash(built):
    assert built["format"] == "segedu-manifest-v1"
    assert [lesson["notebook"] for lesson in built["lessons"]] == [p.name for p in LESSONS]
    for path, lesson in zip(LESSONS, built["lessons"]):
        nb = nbformat.read(path, as_version=4)
        cells = {cell.id: cell for cell in nb.cells}
        calls = [(name, function, cell.id) for cell in nb.cells if cell.cell_type == "code"
                 for name, function in CALL.findall(cell.source)]
        assert calls, f"{path.name} has no exercise"
        exercises = lesson["exercises"]
        assert [(e["exercise"], e["function"], e["check_cell"]) for e in exercises] == calls, path.name
        for exercise in exercises:
            check, solved = cells[exercise["check_cell"]], cells[exercise["exercise_cell"]]
            assert exercise["check_sha256"] == course.check_cell_sha256(check.source)
            assert exercise["points"] == 1
            assert course.BEGIN_SOLUTION in solved.source and f"def {exercise['function']}(" in solved.source
            assert nb.cells.index(solved) < nb.cells.index(check)
        assert lesson["setup_cells"] == [c.id for c in nb.cells if c.metadata.get("segedu", {}).get("role") == "setup"]
    names = [e["exercise"] for lesson in built["lessons"] for e in lesson["exercises"]]
    assert len(names) == len(set(names)), "every check belongs to one exercise"


def test_the_shipped_manifest_is_the_lessons_manifest(built):
    """The grader's copy in the package. Stale? Run `make manifest` and commit segedu/course/manifest.json."""
    assert course.read_manifest() == built, "segedu/course/manifest.json is stale: run `make manifest`"
    assert manifest_module.SHIPPED.read_text() == manifest_module.manifest_text(built), "run `make manifest`"


def test_the_manifest_ships_with_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["segedu.course"]
    assert any(Path("manifest.json").match(pattern) for pattern in patterns)
    assert any(target.startswith("manifest:") for target in (ROOT / "Makefile").read_text().splitlines())


def test_the_manifest_command_prints_or_writes_it(tmp_path, built):
    out = tmp_path / "manifest.json"
    result = subprocess.run([sys.executable, "-m", "segedu", "manifest", str(ROOT / "lessons"), "--out", str(out)],
                            capture_output=True, text=True, check=True)
    assert "wrote" in result.stdout and json.loads(out.read_text()) == built
    result = subprocess.run([sys.executable, "-m", "segedu", "manifest", str(tmp_path / "nowhere")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "not found" in result.stderr


def test_check_cell_sha256_ignores_only_white_space_at_line_ends_and_at_the_ends():
    source = "from segedu import checks\n\nchecks.check_x(f)"
    digest = course.check_cell_sha256(source)
    assert len(digest) == 64
    assert course.check_cell_sha256("\n" + source.replace("checks\n", "checks   \n") + "\n\n") == digest
    assert course.check_cell_sha256(["from segedu import checks\n", "\n", "checks.check_x(f)"]) == digest
    for changed in ("from segedu import checks\nchecks.check_x(f)", source + "  # x", source.replace("(f)", "(g)")):
        assert course.check_cell_sha256(changed) != digest


def _exercise_notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import torch"),
        nbformat.v4.new_markdown_cell("An experiment follows."),
        nbformat.v4.new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION"),
        nbformat.v4.new_code_cell("from segedu import checks\nchecks.check_f(f)"),
        nbformat.v4.new_code_cell("big_experiment()"),
    ]
    return nb


def test_role_marks_give_setup_cells_exercise_cells_and_points():
    nb = _exercise_notebook()
    unmarked = manifest_module.lesson_manifest(nb, "l.ipynb")  # without marks: from the markers and the call
    assert unmarked["setup_cells"] == []
    assert unmarked["exercises"][0]["exercise_cell"] == nb.cells[2].id
    # A mark wins over the convention: cell 0 becomes the exercise, cell 2 a set-up cell.
    nb.cells[0].source = "import torch\ndef f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION"
    nb.cells[0].metadata["segedu"] = {"role": "exercise", "exercise": "check_f"}
    nb.cells[2].metadata["segedu"] = {"role": "setup"}
    nb.cells[3].metadata["segedu"] = {"role": "check", "exercise": "check_f", "points": 3}
    entry = manifest_module.lesson_manifest(nb, "l.ipynb")
    assert entry["setup_cells"] == [nb.cells[2].id]
    assert entry["exercises"] == [{
        "exercise": "check_f", "function": "f", "points": 3, "exercise_cell": nb.cells[0].id,
        "check_cell": nb.cells[3].id, "check_sha256": course.check_cell_sha256(nb.cells[3].source)}]


def test_instructor_only_cells_are_not_in_the_manifest():
    nb = _exercise_notebook()
    nb.cells[3].metadata["tags"] = ["instructor"]
    assert manifest_module.lesson_manifest(nb, "l.ipynb")["exercises"] == []


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda nb: nb.cells[3].metadata.update(segedu={"role": "grader"}), "segedu.role must be one of"),
        (lambda nb: nb.cells[3].metadata.update(segedu={"points": True}), "segedu.points must be an int"),
        (lambda nb: nb.cells[3].metadata.update(segedu={"points": -1}), "segedu.points must be an int"),
        (lambda nb: nb.cells[3].metadata.update(segedu={"role": "check", "exercise": "check_g"}), "check_g"),
        (lambda nb: setattr(nb.cells[3], "source", "checks.check_f(lambda x: x)"), "by name"),
        (lambda nb: setattr(nb.cells[2], "source", "def f(x):\n    return x"), "no exercise cell"),
        (lambda nb: setattr(nb.cells[3], "source", "checks.check_f(f)\nchecks.check_f(f)"), "called twice"),
    ],
)
def test_a_lesson_the_manifest_cannot_describe_is_refused_naming_the_cell(edit, message):
    nb = _exercise_notebook()
    edit(nb)
    with pytest.raises(course.ReleaseError, match=message) as caught:
        manifest_module.lesson_manifest(nb, "l.ipynb")
    assert str(caught.value).startswith("l.ipynb: cell ")


def test_read_manifest_refuses_what_is_not_a_manifest(tmp_path):
    bad = tmp_path / "m.json"
    for text in ("{", '{"format": "other", "lessons": []}', "[]"):
        bad.write_text(text)
        with pytest.raises(ValueError):
            course.read_manifest(bad)
    with pytest.raises(FileNotFoundError):
        course.read_manifest(tmp_path / "missing.json")
