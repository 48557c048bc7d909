"""Grading that holds up (issue 17, points 4, 6 and 7), on a one-exercise lesson made here: the forgeries of the
issue do not pass, a correct solution does, and ``python -m segedu check`` survives bad notebooks, hung cells
and bad arguments with the documented exit codes.

The lesson is tiny (set-up ``import torch``, the IoU exercise of lesson 00, its check cell) and has its own
manifest, built from the instructor copy like the course's; each grading starts one worker process (seconds).
No wall-clock assertion is tighter than a generous bound: the machine may be busy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from segedu import course
from segedu.course.grading import check_notebooks, grade_notebook, lesson_entry
from segedu.course.manifest import build_manifest, manifest_text
from segedu.course.roles import mark_roles

NAME = "00_tiny.ipynb"
SETUP = "import torch\nP = 'quick'"
SOLVED = '''def iou_from_confusion(matrix):
    ### BEGIN SOLUTION
    matrix = matrix.double()
    tp = matrix.diagonal()
    return tp / (matrix.sum(dim=0) + matrix.sum(dim=1) - tp)
    ### END SOLUTION'''
CHECK = "from segedu import checks\n\nchecks.check_iou_from_confusion(iou_from_confusion)"
NOT_ATTEMPTED = "def iou_from_confusion(matrix):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
RECALL = "def iou_from_confusion(matrix):\n    m = matrix.double()\n    return m.diagonal() / m.sum(dim=1)"
HUNG = "import time\nwhile True:\n    try:\n        time.sleep(1)\n    except KeyboardInterrupt:\n        pass"
HUNG_FUNCTION = "import time\ndef iou_from_confusion(matrix):\n" + "\n".join("    " + s for s in HUNG.splitlines())
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _notebook(setup=SETUP, exercise=SOLVED, check=CHECK):
    nb = nbformat.v4.new_notebook()
    cells = [nbformat.v4.new_markdown_cell("# A tiny lesson")]
    for cell_id, source in (("setup0", setup), ("exercise0", exercise), ("check0", check)):
        if source is not None:
            cell = nbformat.v4.new_code_cell(source)
            cell.id = cell_id
            cells.append(cell)
    nb.cells = cells
    return nb


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """The tiny lesson's manifest, built from its marked instructor copy as the release builds the course's."""
    folder = tmp_path_factory.mktemp("instructor")
    nb = _notebook()
    mark_roles(nb, ["setup0"], NAME)
    nbformat.write(nb, folder / NAME)
    path = folder / "manifest.json"
    path.write_text(manifest_text(build_manifest(folder)))
    return path


def _student(folder: Path, **sources) -> Path:
    """A student's copy of the tiny lesson: the release of the marked instructor copy, then edited as a student
    would, ``sources`` giving the new source of the ``setup``, ``exercise`` or ``check`` cell."""
    nb = _notebook()
    mark_roles(nb, ["setup0"], NAME)
    released = course.release_notebook(nb, NAME)
    for cell in released.cells:
        role = cell.get("id", "").rstrip("0")
        if role in sources:
            cell.source = sources[role]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / NAME
    nbformat.write(released, path)
    return path


def _grade(path: Path, manifest: Path, timeout: float = 60) -> tuple[str, str]:
    [result] = grade_notebook(path, lesson_entry(json.loads(manifest.read_text()), NAME), timeout)
    assert result.exercise == "check_iou_from_confusion"
    return result.status, result.message


def _cli(*args, cwd: Path, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segedu", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=ENV, timeout=timeout)


# --- a correct solution passes; the other plain outcomes -----------------------------------------------------------


def test_a_correct_solution_passes_and_scores_its_points(tmp_path, manifest):
    [result] = grade_notebook(_student(tmp_path, exercise=SOLVED), lesson_entry(json.loads(manifest.read_text()), NAME))
    assert (result.status, result.points, result.max_points) == ("passed", 1, 1)


def test_not_attempted_and_failed_with_the_checks_message(tmp_path, manifest):
    assert _grade(_student(tmp_path / "a", exercise=NOT_ATTEMPTED), manifest)[0] == "not attempted"
    status, message = _grade(_student(tmp_path / "b", exercise=RECALL), manifest)
    assert status == "failed" and "(recall)" in message


def test_an_error_in_the_exercise_or_set_up_cell_is_an_error(tmp_path, manifest):
    status, message = _grade(_student(tmp_path / "a", exercise=SOLVED + "\n1 / 0"), manifest)
    assert status == "error" and "ZeroDivisionError" in message
    status, message = _grade(_student(tmp_path / "b", setup="import torch\nraise RuntimeError('broken set-up')"),
                             manifest)
    assert status == "error" and "set-up cell 1" in message and "broken set-up" in message


def test_the_student_functions_exceptions_reach_the_check(tmp_path, manifest):
    raising = "def iou_from_confusion(matrix):\n    return matrix[99]"
    status, message = _grade(_student(tmp_path, exercise=raising), manifest)
    assert status == "failed" and message.startswith("IndexError")


# --- the forgeries of the issue ------------------------------------------------------------------------------------


def test_forgery_replacing_the_check_in_the_exercise_cell_does_not_pass(tmp_path, manifest):
    forged = ('import segedu.checks as c; c.check_iou_from_confusion = lambda f: print("x: 9 cases - PASSED")\n'
              + RECALL)
    assert _grade(_student(tmp_path / "a", exercise=forged), manifest)[0] == "failed"
    forged = 'import segedu.checks as c; c.check_iou_from_confusion = lambda f: print("x: 9 cases - PASSED")\n'
    assert _grade(_student(tmp_path / "b", exercise=forged + NOT_ATTEMPTED), manifest)[0] == "not attempted"


def test_forgery_rewriting_the_check_cell_is_tampered(tmp_path, manifest):
    forged = 'print("check_iou_from_confusion: 9 cases - PASSED")  # checks.check_iou_from_confusion('
    status, message = _grade(_student(tmp_path, exercise=NOT_ATTEMPTED, check=forged), manifest)
    assert status == "tampered" and "differs" in message
    # even with a correct solution: a changed check cell scores 0
    assert _grade(_student(tmp_path / "b", exercise=SOLVED, check=CHECK + "  # mine"), manifest)[0] == "tampered"
    # trailing spaces and blank lines (what editors change) are not tampering
    edited = CHECK.replace("\n\n", "  \n\n") + "\n\n"
    assert _grade(_student(tmp_path / "c", exercise=SOLVED, check=edited), manifest)[0] == "passed"


def test_forgery_with_a_custom_exception_handler_does_not_pass(tmp_path, manifest):
    forged = 'get_ipython().set_custom_exc((Exception,), lambda *a, **k: print("x PASSED"))\n'
    assert _grade(_student(tmp_path / "a", exercise=forged + NOT_ATTEMPTED), manifest)[0] == "not attempted"
    assert _grade(_student(tmp_path / "b", exercise=forged + RECALL), manifest)[0] == "failed"


def test_forgery_deleting_the_check_cell_and_its_metadata_is_missing(tmp_path, manifest):
    path = _student(tmp_path, exercise=NOT_ATTEMPTED)
    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if c.get("id") != "check0"]
    nb.metadata.pop("segedu", None)
    nbformat.write(nb, path)
    assert _grade(path, manifest)[0] == "missing"
    result = _cli("check", path, "--manifest", manifest, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "missing" in result.stdout


def test_a_check_cell_pasted_back_from_the_release_is_found_by_its_hash(tmp_path, manifest):
    path = _student(tmp_path, exercise=SOLVED)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.get("id") == "check0":
            cell.id, cell.metadata = "pasted1", {}
    nbformat.write(nb, path)
    assert _grade(path, manifest)[0] == "passed"


def test_forgery_editing_segedu_in_the_submission_is_never_imported(tmp_path, manifest):
    submission = tmp_path / "student"
    _student(submission / "lessons", exercise=RECALL)
    marker = tmp_path / "imported.txt"
    fake = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    forged_check = "def check_iou_from_confusion(fn):\n    print('check_iou_from_confusion: 9 cases - PASSED')\n"
    for root in (submission, submission / "lessons"):  # the repository's root and the notebooks' folder (cwd)
        (root / "segedu" / "checks").mkdir(parents=True)
        (root / "segedu" / "__init__.py").write_text(fake)
        (root / "segedu" / "checks.py").write_text(fake + forged_check)
        (root / "segedu" / "checks" / "__init__.py").write_text(fake + forged_check)
        (root / "segedu" / "checks" / "lesson00.py").write_text(fake + forged_check)
    out = tmp_path / "grades.csv"
    result = _cli("grade", submission, "--out", out, "--manifest", manifest, "--jobs", 1, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = out.read_text().splitlines()
    assert rows[1].startswith("student,00_tiny.ipynb,check_iou_from_confusion,failed,0,")
    assert not marker.exists(), "the submission's segedu/ was imported"


def test_forgery_monkeypatching_torch_in_the_function_does_not_pass(tmp_path, manifest):
    forged = '''import torch
def iou_from_confusion(matrix):
    torch.allclose = lambda *a, **k: True
    torch.isclose = lambda a, b, *args, **kwargs: torch.ones(torch.broadcast_shapes(a.shape, b.shape), dtype=torch.bool)
    torch.equal = lambda *a, **k: True
    return torch.zeros(matrix.shape[0], dtype=torch.float64)'''
    assert _grade(_student(tmp_path, exercise=forged), manifest)[0] == "failed"


def test_a_function_that_kills_its_worker_is_an_error(tmp_path, manifest):
    dying = "import os\ndef iou_from_confusion(matrix):\n    os._exit(3)"
    status, message = _grade(_student(tmp_path, exercise=dying), manifest)
    assert status == "error" and "died" in message and "exit code 3" in message


# --- robust check: bad notebooks, hung cells, arguments, exit codes -------------------------------------------------


def test_a_bad_notebook_is_an_error_row_and_the_others_are_graded(tmp_path, manifest):
    good = _student(tmp_path / "good", exercise=SOLVED)
    (tmp_path / "json").mkdir()
    (tmp_path / "conflict").mkdir()
    broken = tmp_path / "json" / NAME
    broken.write_text('{"cells": [')
    conflict = tmp_path / "conflict" / NAME
    text = good.read_text()
    conflict.write_text(f"<<<<<<< HEAD\n{text}=======\n{text}>>>>>>> theirs\n")
    data = json.loads(manifest.read_text())
    results = check_notebooks([("broken", broken), ("conflict", conflict), ("good", good)], data, 60, jobs=2)
    assert [(r.notebook, r.status) for r in results] == [("broken", "error"), ("conflict", "error"), ("good", "passed")]
    assert "not a readable notebook" in results[0].message and "merge-conflict" in results[1].message
    result = _cli("check", broken, good, "--manifest", manifest, cwd=tmp_path)
    assert result.returncode == 1 and "error" in result.stdout and "passed" in result.stdout


@pytest.mark.parametrize("where", ["cell", "function"])
def test_a_hung_cell_or_function_is_a_timeout_and_its_worker_is_killed(tmp_path, manifest, where):
    exercise = HUNG if where == "cell" else HUNG_FUNCTION  # the cell never ends, or the check's call never returns
    path = _student(tmp_path, exercise=exercise)
    start = time.monotonic()
    status, message = _grade(path, manifest, timeout=3)
    assert status == "timeout" and "time limit" in message
    assert time.monotonic() - start < 3 + 60  # the limit plus the worker's start, on a busy machine


def test_after_a_timeout_the_next_exercise_gets_a_fresh_worker_with_the_cells_before(tmp_path):
    """Two exercises; the first one's function hangs. The second exercise's function calls a helper defined in
    the first exercise cell: the fresh worker re-runs the set-up and that cell before it."""
    hung = "\n".join("    " + line for line in HUNG.splitlines())
    sources = [("setup0", "import torch"),
               ("ex1", f"def helper(x):\n    return x\n\n\ndef first(matrix):\n    ### BEGIN SOLUTION\n{hung}\n"
                       "    ### END SOLUTION"),
               ("check1", "from segedu import checks\n\nchecks.check_iou_from_confusion(first)"),
               ("ex2", "def size(n, k, s=1, p=0, op=0, d=1):\n    ### BEGIN SOLUTION\n"
                       "    return helper((n - 1) * s - 2 * p + d * (k - 1) + op + 1)\n    ### END SOLUTION"),
               ("check2", "checks.check_transposed_output_size(size)")]
    nb = nbformat.v4.new_notebook()
    for cell_id, source in sources:
        nb.cells.append(nbformat.v4.new_code_cell(source))
        nb.cells[-1].id = cell_id
    mark_roles(nb, ["setup0"], NAME)
    (tmp_path / "course").mkdir()
    nbformat.write(nb, tmp_path / "course" / NAME)
    data = build_manifest(tmp_path / "course")
    results = check_notebooks([tmp_path / "course" / NAME], data, 3, jobs=1)
    assert [(r.exercise, r.status) for r in results] == [("check_iou_from_confusion", "timeout"),
                                                          ("check_transposed_output_size", "passed")]


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "soon"])
def test_timeout_must_be_positive(tmp_path, timeout):
    result = _cli("check", "--timeout", timeout, cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "--timeout" in result.stderr


def test_exit_codes(tmp_path, manifest):
    passed = _student(tmp_path / "a", exercise=SOLVED)
    todo = _student(tmp_path / "b", exercise=NOT_ATTEMPTED)
    wrong = _student(tmp_path / "c", exercise=RECALL)
    summary = tmp_path / "summary.md"
    result = _cli("check", passed, "--manifest", manifest, "--summary", summary, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1/1 points" in summary.read_text() and "| ✅ passed |" in summary.read_text()
    assert _cli("check", todo, "--manifest", manifest, cwd=tmp_path).returncode == 1
    assert _cli("check", todo, "--manifest", manifest, "--ignore-not-attempted", cwd=tmp_path).returncode == 0
    assert _cli("check", wrong, "--manifest", manifest, "--ignore-not-attempted", cwd=tmp_path).returncode == 1
    # usage and tool errors: no notebook, no such lesson, an unreadable manifest
    assert _cli("check", tmp_path / "nope.ipynb", "--manifest", manifest, cwd=tmp_path).returncode == 2
    assert _cli("check", passed, "--lessons", "07", "--manifest", manifest, cwd=tmp_path).returncode == 2
    (tmp_path / "bad.json").write_text("{}")
    assert _cli("check", passed, "--manifest", tmp_path / "bad.json", cwd=tmp_path).returncode == 2
    assert _cli("check", cwd=tmp_path).returncode == 2  # no lessons/ here


def test_a_notebook_the_manifest_does_not_know_is_an_error_row(tmp_path, manifest):
    path = _student(tmp_path, exercise=SOLVED)
    other = path.with_name("99_unknown.ipynb")
    path.rename(other)
    result = _cli("check", other, "--manifest", manifest, cwd=tmp_path)
    assert result.returncode == 1 and "not a lesson of this course" in result.stdout
